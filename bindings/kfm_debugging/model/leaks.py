"""Result types of the memory leak detection (analysis/leaks.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .base import Record


@dataclass
class LeakInfo(Record):
    """A node (or the whole run) whose retained memory grows run after run."""

    node: str
    accumulated: float  # MB retained over the runs examined
    per_run: float  # MB per run (median of the runs' retained memory)
    confidence: float  # 1 - p of the one-sided test that it retains more than nothing
    p_value: float
    runs: int
    test: str
    retained: list[float] = field(default_factory=list)  # MB per run, oldest first


class MemoryLeaks(dict):  # type: ignore[type-arg]
    """detect_memory_leaks()'s value: {node: LeakInfo} of the nodes found
    leaking (empty, hence false, when none is), with what was examined:
    ``runs``, ``reason`` (why nothing could be tested, or ""), ``process``
    (the whole run's retained memory as a LeakInfo, leaking or not) and
    ``checked`` (the nodes examined)."""

    def __init__(self, leaks: dict[str, LeakInfo] | None = None, *, runs: int = 0,
                 reason: str = "", process: LeakInfo | None = None,
                 checked: list[str] | None = None) -> None:
        super().__init__(leaks or {})
        self.runs = runs
        self.reason = reason
        self.process = process
        self.checked = list(checked or [])

    def to_dict(self) -> dict[str, Any]:
        return {"leaks": {k: v.to_dict() for k, v in self.items()}, "runs": self.runs,
                "reason": self.reason,
                "process": self.process.to_dict() if self.process else None,
                "checked": self.checked}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MemoryLeaks:
        p = data.get("process")
        return cls({k: LeakInfo.from_dict(v) for k, v in data.get("leaks", {}).items()},
                   runs=data.get("runs", 0), reason=data.get("reason", ""),
                   process=LeakInfo.from_dict(p) if p else None, checked=data.get("checked"))
