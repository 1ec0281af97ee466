"""Result types of the memory leak detection (analysis/leaks.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .base import Record


@dataclass
class AllocationSite(Record):
    """Python allocations (tracemalloc) made at one line, through one line
    of a node's function, and still alive runs later."""

    site: str  # "file:line" where the memory was allocated
    via: str  # "file:line" in the node's function the allocation came through
    mb: float  # retained from the first traced run's end to the last's
    per_run_mb: float
    blocks: int


@dataclass
class NodeAllocations(Record):
    """What a node's Python allocations kept over the traced runs, and where."""

    node: str
    mb: float
    per_run_mb: float
    blocks: int
    runs: int  # runs between the two snapshots compared
    sites: list[AllocationSite] = field(default_factory=list)  # largest first


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
    # Where its Python allocations that stayed alive were made (with
    # trace_allocations; empty otherwise).
    allocation_sites: list[AllocationSite] = field(default_factory=list)


class MemoryLeaks(dict):  # type: ignore[type-arg]
    """detect_memory_leaks()'s value: {node: LeakInfo} of the nodes found
    leaking (empty, hence false, when none is), with what was examined:
    ``runs``, ``reason`` (why nothing could be tested, or ""), ``process``
    (the whole run's retained memory as a LeakInfo, leaking or not) and
    ``checked`` (the nodes examined).  With trace_allocations,
    ``allocations`` holds every node's retained Python allocations by line
    (NodeAllocations, largest first), leaking by RSS or not; otherwise it
    is None and ``allocations_reason`` says why."""

    def __init__(self, leaks: dict[str, LeakInfo] | None = None, *, runs: int = 0,
                 reason: str = "", process: LeakInfo | None = None,
                 checked: list[str] | None = None,
                 allocations: dict[str, NodeAllocations] | None = None,
                 allocations_reason: str = "") -> None:
        super().__init__(leaks or {})
        self.runs = runs
        self.reason = reason
        self.process = process
        self.checked = list(checked or [])
        self.allocations = allocations
        self.allocations_reason = allocations_reason

    def to_dict(self) -> dict[str, Any]:
        return {"leaks": {k: v.to_dict() for k, v in self.items()}, "runs": self.runs,
                "reason": self.reason,
                "process": self.process.to_dict() if self.process else None,
                "checked": self.checked,
                "allocations": None if self.allocations is None else {
                    k: v.to_dict() for k, v in self.allocations.items()},
                "allocations_reason": self.allocations_reason}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MemoryLeaks:
        p = data.get("process")
        al = data.get("allocations")
        return cls({k: LeakInfo.from_dict(v) for k, v in data.get("leaks", {}).items()},
                   runs=data.get("runs", 0), reason=data.get("reason", ""),
                   process=LeakInfo.from_dict(p) if p else None, checked=data.get("checked"),
                   allocations=None if al is None else {
                       k: NodeAllocations.from_dict(v) for k, v in al.items()},
                   allocations_reason=data.get("allocations_reason", ""))
