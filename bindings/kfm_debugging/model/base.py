"""What every result type shares: mapping access, the JSON round trip, and
the one representation of "unavailable: <reason>".

A result is a dataclass deriving from ``Record``.  It reads both ways,
``r.peak_mb`` and ``r["peak_mb"]`` (the spec indexes results like dicts:
``suggestion['issue']``, ``comparison.items()``), and goes to and from plain
JSON data with ``to_dict()`` / ``from_dict()`` (baselines and continuous
logs load runs back).  Nested results are rebuilt from the field types.

A result that may not have been measured derives from ``Section``: its
``available`` and ``reason`` fields are the only way a section says so.
Calls whose result has no room for a reason (a per-node mapping) raise
``Unavailable``, a RuntimeError built from a Section's reason.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, TypeVar, Union

R = TypeVar("R", bound="Record")

_HINTS: dict[type, dict[str, Any]] = {}


class Record:
    """Mixin of the result dataclasses: mapping access and to_dict/from_dict."""

    __slots__ = ()

    # -- mapping access ----------------------------------------------------
    def __getitem__(self, key: str) -> Any:
        if isinstance(key, str) and key in self.__dataclass_fields__:  # type: ignore[attr-defined]
            return getattr(self, key)
        raise KeyError(key)

    def get(self, key: str, default: Any = None) -> Any:
        try:
            return self[key]
        except KeyError:
            return default

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key in self.__dataclass_fields__  # type: ignore[attr-defined]

    def keys(self) -> list[str]:
        return list(self.__dataclass_fields__)  # type: ignore[attr-defined]

    def values(self) -> list[Any]:
        return [getattr(self, k) for k in self.__dataclass_fields__]  # type: ignore[attr-defined]

    def items(self) -> list[tuple[str, Any]]:
        return [(k, getattr(self, k)) for k in self.__dataclass_fields__]  # type: ignore[attr-defined]

    def __iter__(self) -> Iterator[str]:
        return iter(self.__dataclass_fields__)  # type: ignore[attr-defined]

    def __len__(self) -> int:
        return len(self.__dataclass_fields__)  # type: ignore[attr-defined]

    # -- JSON round trip ---------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain data (dicts, lists, numbers, strings, None), nested results included."""
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls: type[R], data: dict[str, Any]) -> R:
        """The result back from to_dict()'s data (or that data through JSON)."""
        hints = _hints(cls)
        kw = {}
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]
            if f.name in data:
                kw[f.name] = _load(hints.get(f.name, Any), data[f.name])
        return cls(**kw)


def _hints(cls: type) -> dict[str, Any]:
    h = _HINTS.get(cls)
    if h is None:
        import sys

        mod = sys.modules[cls.__module__]
        h = _HINTS[cls] = typing.get_type_hints(cls, vars(mod))
    return h


def _load(tp: Any, v: Any) -> Any:
    """v (plain data) as type tp: results rebuilt, containers walked."""
    if v is None:
        return None
    if isinstance(tp, type) and issubclass(tp, Record):
        return tp.from_dict(v) if isinstance(v, dict) else v
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is Union or origin is types.UnionType:
        for a in args:
            if a is type(None):
                continue
            if isinstance(a, type) and issubclass(a, Record) and not isinstance(v, dict):
                continue
            return _load(a, v)
        return v
    if origin is dict and len(args) == 2 and isinstance(v, dict):
        return {k: _load(args[1], x) for k, x in v.items()}
    if origin is list and args and isinstance(v, list):
        return [_load(args[0], x) for x in v]
    return v


class Unavailable(RuntimeError):
    """A result that was not measured, raised where no Section can carry the
    reason: str() is "<what> unavailable: <reason>"."""

    def __init__(self, what: str, reason: str) -> None:
        super().__init__(f"{what} unavailable: {reason}")
        self.what = what
        self.reason = reason


@dataclass
class Section(Record):
    """A result that may be unavailable: ``available`` False and ``reason``
    saying why (the level was too low, a backend is missing, ...).  Text
    reports print it as "unavailable: <reason>"."""

    available: bool = True
    reason: str = ""

    def require(self, what: str) -> None:
        """Raise Unavailable(what, reason) when not available."""
        if not self.available:
            raise Unavailable(what, self.reason)
