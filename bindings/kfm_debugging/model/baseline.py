"""Result types of baselines and regression checks (workflows/baseline.py).

A baseline keeps the samples of every run, not one run: a later set of runs
is compared with it by the statistics of analysis/stats.py, which need the
spread of both sides.  The file is this module's JSON (``Baseline.to_json``
/ ``Baseline.from_json``), versioned by ``v`` so that a later format can
still say what an old file is; ``from_json`` checks the structure, so that a
damaged file is refused with the reason rather than compared.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from .base import Record

FORMAT_VERSION = 1
# The per-node figures of Debugger.history / run_figures a baseline may keep.
METRICS = ("execution_time", "memory_usage", "calls")
UNITS = {"execution_time": "ms", "memory_usage": "MB", "calls": "calls"}


@dataclass
class RunSample(Record):
    """One run of a baseline: its total time, the level it was profiled at,
    a run-level memory figure when one was recorded, and per node the
    chosen metrics (none at BASIC, which keeps only totals)."""

    total_ms: float
    level: str | None = None
    memory_usage: float | None = None
    nodes: dict[str, dict[str, float]] = field(default_factory=dict)


@dataclass
class Baseline(Record):
    """A saved set of runs: name, creation time (ISO 8601, UTC), the
    environment's fingerprint, the metrics kept, and the runs.  ``path`` is
    where it was read from or written to; it is not part of the file."""

    name: str
    created: str
    fingerprint: dict[str, Any]
    metrics: list[str]
    runs: list[RunSample]
    v: int = FORMAT_VERSION
    path: str | None = None

    def to_json(self) -> str:
        data: dict[str, Any] = {"v": self.v, "name": self.name, "created": self.created,
                                "fingerprint": self.fingerprint, "metrics": list(self.metrics),
                                "runs": []}
        for r in self.runs:
            run: dict[str, Any] = {"total_ms": r.total_ms, "level": r.level}
            if r.memory_usage is not None:
                run["memory_usage"] = r.memory_usage
            run["nodes"] = r.nodes
            data["runs"].append(run)
        # allow_nan=False: the file stays JSON that any reader accepts.
        return json.dumps(data, indent=1, allow_nan=False) + "\n"

    @classmethod
    def from_json(cls, text: str | bytes, path: str | None = None) -> Baseline:
        """The baseline in text; ValueError saying what is wrong with it."""
        try:
            data = json.loads(text)
        except (ValueError, UnicodeDecodeError) as e:
            raise ValueError(f"not JSON ({e})") from None
        _check(data)
        b = cls.from_dict(data)
        b.path = path
        return b


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _check(data: Any) -> None:
    """The structure from_json accepts, or ValueError naming the first fault."""
    if not isinstance(data, dict):
        raise ValueError(f"a baseline is a JSON object, not {type(data).__name__}")
    if data.get("v") != FORMAT_VERSION:
        raise ValueError(f"format version {data.get('v')!r}; this kfm_debugging reads "
                         f"version {FORMAT_VERSION}")
    for key, tp in (("name", str), ("created", str), ("fingerprint", dict), ("metrics", list),
                    ("runs", list)):
        if not isinstance(data.get(key), tp):
            raise ValueError(f'"{key}" missing or not a {tp.__name__}')
    bad = [m for m in data["metrics"] if m not in METRICS]
    if bad:
        raise ValueError(f"unknown metrics {bad} (known: {', '.join(METRICS)})")
    for i, r in enumerate(data["runs"]):
        if not isinstance(r, dict) or not _number(r.get("total_ms")):
            raise ValueError(f'run {i}: not an object with a numeric "total_ms"')
        if r.get("memory_usage") is not None and not _number(r["memory_usage"]):
            raise ValueError(f'run {i}: "memory_usage" is not a number')
        nodes = r.get("nodes", {})
        if not isinstance(nodes, dict):
            raise ValueError(f'run {i}: "nodes" is not an object')
        for n, figs in nodes.items():
            if not isinstance(figs, dict) or not all(_number(v) for v in figs.values()):
                raise ValueError(f"run {i}, node {n!r}: figures are not numbers")


@dataclass
class MetricChange(Record):
    """One metric, current runs against the baseline: the medians, the
    change in percent with its 95% interval (from the interval of the ratio
    of medians), the test and its p-value (Holm-adjusted among the nodes of
    a metric; p_value_raw before), whether the change is significant, and a
    verdict.  Where the baseline's median is too close to 0 for a ratio (a
    node that kept no memory) interval is None and so is percent_change,
    unless the medians are equal (0.0): delta, in the metric's unit, says
    how much."""

    baseline: float | None
    current: float | None
    percent_change: float | None
    interval: list[float] | None
    significant: bool
    p_value: float | None
    test: str
    n_baseline: int
    n_current: int
    verdict: str
    metric: str = ""
    node: str | None = None
    unit: str = ""
    delta: float | None = None
    p_value_raw: float | None = None


@dataclass
class BaselineComparison(Record):
    """The changes against a baseline, readable as a mapping of them
    (``for metric, change in comparison.items()``): "execution_time" and
    "memory_usage" for the whole run, "<metric> (<node>)" per node.  notes
    say what was left out and why; fingerprint_differs names the
    environment's fields that differ from the baseline's."""

    changes: dict[str, MetricChange] = field(default_factory=dict)
    baseline: str = ""
    current: str = ""
    notes: list[str] = field(default_factory=list)
    fingerprint_differs: list[str] = field(default_factory=list)
    baseline_fingerprint: dict[str, Any] = field(default_factory=dict)
    current_fingerprint: dict[str, Any] = field(default_factory=dict)

    # The mapping is the changes (the spec loops over comparison.items());
    # the other fields are attributes.
    def __getitem__(self, key: str) -> MetricChange:
        return self.changes[key]

    def __contains__(self, key: object) -> bool:
        return key in self.changes

    def keys(self) -> list[str]:
        return list(self.changes)

    def values(self) -> list[MetricChange]:  # type: ignore[override]
        return list(self.changes.values())

    def items(self) -> list[tuple[str, MetricChange]]:  # type: ignore[override]
        return list(self.changes.items())

    def __iter__(self) -> Iterator[str]:
        return iter(self.changes)

    def __len__(self) -> int:
        return len(self.changes)


def direction(metric: str, delta: float | None) -> str:
    """The word of a change: "slower", "less memory", "more calls", ..."""
    up = delta is not None and delta > 0
    if metric == "execution_time":
        return "slower" if up else "faster"
    if metric == "memory_usage":
        return "more memory" if up else "less memory"
    return f"more {metric}" if up else f"fewer {metric}"


BASELINE_TYPES = (RunSample, Baseline, MetricChange, BaselineComparison)
