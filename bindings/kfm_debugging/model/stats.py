"""Result types of the statistics across runs (analysis/stats.py)."""

from __future__ import annotations

from dataclasses import dataclass, field

from .base import Record


@dataclass
class SampleStats(Record):
    """A set of runs' values: median, quartiles, a bootstrap 95% interval of
    the median (None with fewer than 3 values), and the values themselves."""

    n: int
    median: float | None = None
    q1: float | None = None
    q3: float | None = None
    iqr: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    mean: float | None = None
    min: float | None = None
    max: float | None = None
    samples: list[float] = field(default_factory=list)


@dataclass
class Comparison(Record):
    """b against a: ratio of medians b / a with its 95% interval, the rank
    test's p-value, whether the difference is significant, and a verdict."""

    a: SampleStats
    b: SampleStats
    test: str = ""
    delta: float | None = None  # median(b) - median(a)
    ratio: float | None = None
    ratio_low: float | None = None
    ratio_high: float | None = None
    percent_change: float | None = None
    p_value: float | None = None
    significant: bool = False
    verdict: str = ""


@dataclass
class Trend(Record):
    """A series over runs: Theil-Sen slope per run with its 95% interval,
    the change points (indices where the level shifts), a verdict."""

    n: int
    slope: float | None = None
    intercept: float | None = None
    slope_low: float | None = None
    slope_high: float | None = None
    change_points: list[int] = field(default_factory=list)
    verdict: str = ""
