"""Result types of the workflows across runs: benchmarks, their comparison,
optimization experiments (workflows/benchmark.py).

A benchmark is kept with its runs' figures, not only its summaries: a
comparison made later (``compare_benchmark_configs``), or made again on
results loaded back from JSON, works on the same values the summaries came
from.  Times are ms per run; a run that failed is counted in ``errors`` and
left out of every sample, since its time measures how far it got.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .base import Record
from .stats import Comparison, SampleStats


@dataclass
class RunErrors(Record):
    """The failed runs of one config on one case: how many, the first message."""

    count: int = 0
    first: str = ""


@dataclass
class RunSet(Record):
    """The counted, successful runs of one config on one case: total time
    and each node's execution time per run (0 in a run the node did not
    take part in), and the median number of calls of each node per run."""

    total: SampleStats
    nodes: dict[str, SampleStats] = field(default_factory=dict)
    calls: dict[str, float] = field(default_factory=dict)


@dataclass
class AdjustedComparison(Record):
    """A Comparison that is one of several asked at once: its p-value
    Holm-adjusted over the family, and significant only when the adjusted
    p-value is below alpha and the ratio's interval excludes 1."""

    comparison: Comparison
    p_adjusted: float | None = None
    significant: bool = False
    verdict: str = ""


@dataclass
class BenchmarkResults(Record):
    """run_benchmark's result.  stats[config][case] is a RunSet (total and
    per-node SampleStats); errors[config][case] only where runs failed;
    figures[config][case] each counted run's measure() figures, in order.
    order lists every run as executed, {"config", "case", "repetition"},
    repetition None for a warm-up run (never counted)."""

    runs: int
    configs: list[str] = field(default_factory=list)
    cases: list[str] = field(default_factory=list)
    warmup: bool = True
    warmup_policy: str = ""
    order: list[dict[str, Any]] = field(default_factory=list)
    stats: dict[str, dict[str, RunSet]] = field(default_factory=dict)
    errors: dict[str, dict[str, RunErrors]] = field(default_factory=dict)
    features: dict[str, list[str]] = field(default_factory=dict)  # per config: what its flags applied
    figures: dict[str, dict[str, list[dict[str, Any]]]] = field(default_factory=dict)
    level: str = ""


@dataclass
class CaseComparison(Record):
    """One case of a BenchComparison: the total (Holm over the cases) and
    each node (Holm over the case's nodes), b against a."""

    total: AdjustedComparison
    nodes: dict[str, AdjustedComparison] = field(default_factory=dict)


@dataclass
class BenchComparison(Record):
    """Config b against config a in a benchmark, per case and per node, and
    the verdict over all cases."""

    a: str
    b: str
    cases: dict[str, CaseComparison] = field(default_factory=dict)
    verdict: str = ""


@dataclass
class ExperimentResults(Record):
    """run_optimization_experiments' result: each strategy's runs (stats,
    figures, errors), each strategy against the baseline (Holm over the
    strategies), and the recommendation with its reason."""

    runs_per_strategy: int
    strategies: list[str] = field(default_factory=list)
    baseline: str = ""
    baseline_reason: str = ""
    warmup: bool = True
    warmup_policy: str = ""
    order: list[dict[str, Any]] = field(default_factory=list)
    stats: dict[str, RunSet] = field(default_factory=dict)
    comparisons: dict[str, AdjustedComparison] = field(default_factory=dict)
    errors: dict[str, RunErrors] = field(default_factory=dict)
    features: dict[str, list[str]] = field(default_factory=dict)
    figures: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    recommendation: str = ""
    recommendation_reason: str = ""
    level: str = ""
