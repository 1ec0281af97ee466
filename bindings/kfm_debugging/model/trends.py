"""Result types of continuous profiling (workflows/continuous.py): a log of
runs read back, and the trends of its figures.

Plain data like the rest of model/, so that a trend computed in one process
can be saved and loaded in another (``to_dict()`` / ``from_dict()``).  Run
numbers meant for people (``Shift.run``) count from 1; indices into a series
(``Trend.change_points``, ``Shift.index``) count from 0, as in analysis/stats.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .base import Record
from .stats import Trend


@dataclass
class LogData(Record):
    """The records of a continuous-profiling log, oldest first, from the
    rotated files (path.N ... path.1) and then the current one.  A line that
    is not a record is skipped and counted, the first one located."""

    path: str
    files: list[str] = field(default_factory=list)  # read, oldest first
    records: list[dict[str, Any]] = field(default_factory=list)
    malformed: int = 0
    first_malformed_file: str | None = None
    first_malformed_line: int | None = None  # 1-based, in first_malformed_file

    @property
    def runs(self) -> int:
        return len(self.records)

    @property
    def processes(self) -> int:
        """Distinct writers (host, pid) among the records."""
        return len({(r.get("host"), r.get("pid")) for r in self.records})


@dataclass
class Shift(Record):
    """A change point: the series' level moved at this run.  before and
    after are the medians of the segments on either side."""

    index: int  # first value of the new level, 0-based in the series
    run: int  # the same run, counted from 1 among the runs the trend covers
    before: float
    after: float


@dataclass
class NodeTrend(Record):
    """One metric of one node (or of the whole run) over the runs: the series
    in log order, its Theil-Sen slope per run with a 95% interval, where its
    level shifted, and a verdict: "flat", "rising", "falling", "shifted up",
    "shifted down", "too few runs" or "no values ...".

    trend is analysis/stats.trend's result, with its change_points those of
    shifts (placed where the level changes, and only shifts of at least 5%
    of the level); its own verdict is the bare test of the slope, while
    verdict here also asks that a slope or shift be material (5% of the
    median over the runs covered) and names a step as a shift."""

    node: str
    metric: str
    unit: str
    n: int
    values: list[float] = field(default_factory=list)
    runs: list[int] = field(default_factory=list)  # 0-based run of each value
    last: float | None = None
    median: float | None = None
    sparkline: str = ""
    trend: Trend | None = None
    shifts: list[Shift] = field(default_factory=list)
    verdict: str = ""


@dataclass
class Trends(Record):
    """Trends of a log's runs: the whole run's total_ms, and per node and
    metric.  runs counts the runs covered (the last ones), total_runs those
    in the log."""

    path: str
    runs: int
    total_runs: int
    processes: int
    malformed: int
    first_malformed_file: str | None = None
    first_malformed_line: int | None = None
    files: list[str] = field(default_factory=list)
    graphs: list[str] = field(default_factory=list)
    metrics: list[str] = field(default_factory=list)
    total: NodeTrend | None = None
    nodes: dict[str, dict[str, NodeTrend]] = field(default_factory=dict)


TREND_TYPES: tuple[type[Record], ...] = (LogData, Shift, NodeTrend, Trends)
