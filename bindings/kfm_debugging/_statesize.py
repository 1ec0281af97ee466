"""State size measures used by the Debugger's state tracking.

``deep_sizeof`` is the memory a value holds: sys.getsizeof of the object and
of everything reachable through containers, instance dicts and slots, each
object counted once.  It allocates nothing proportional to the data (unlike
pickling, which would copy a 50 MB state and disturb the memory profile it is
part of), and it is deterministic for a given value, so a node's state impact
is exact: the difference of two measures of the state.

``count_items`` is the number of entries of a top-level container value (a
list channel with N more entries has N more items), 1 for a scalar.
"""

from __future__ import annotations

import sys
from collections import deque
from collections.abc import Mapping
from typing import Any

_ATOMIC = (int, float, complex, bool, str, bytes, bytearray, type(None), range, memoryview)


def deep_sizeof(obj: Any) -> int:
    """Bytes held by obj and everything it references (each object once)."""
    seen: set[int] = set()
    total = 0
    stack = [obj]
    getsizeof = sys.getsizeof
    while stack:
        o = stack.pop()
        i = id(o)
        if i in seen:
            continue
        seen.add(i)
        try:
            total += getsizeof(o)
        except TypeError:  # objects that refuse (rare C types)
            continue
        if isinstance(o, _ATOMIC):
            continue
        if isinstance(o, Mapping):
            try:
                for k, v in o.items():
                    stack.append(k)
                    stack.append(v)
            except Exception:  # noqa: BLE001 - a mapping that cannot iterate
                pass
            continue
        if isinstance(o, (list, tuple, set, frozenset, deque)):
            stack.extend(o)
            continue
        if isinstance(o, type):
            continue  # classes are shared, not state
        d = getattr(o, "__dict__", None)
        if isinstance(d, dict):
            stack.append(d)
        for cls in type(o).__mro__:
            for slot in cls.__dict__.get("__slots__", ()):
                if isinstance(slot, str) and slot not in ("__dict__", "__weakref__"):
                    try:
                        stack.append(getattr(o, slot))
                    except AttributeError:
                        pass
    return total


def count_items(value: Any) -> int:
    """Entries of a container value (list, tuple, set, dict, deque); 1 otherwise."""
    if isinstance(value, (list, tuple, set, frozenset, deque, Mapping)):
        return len(value)
    return 1


def state_size(state: Any) -> tuple[int, int]:
    """(bytes, items) of a state mapping, measured as the Debugger measures it."""
    if isinstance(state, Mapping):
        return (
            sum(deep_sizeof(v) for v in state.values()),
            sum(count_items(v) for v in state.values()),
        )
    return deep_sizeof(state), count_items(state)
