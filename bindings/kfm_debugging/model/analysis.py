"""Result types of the analysis calls: supersteps and the critical path,
bottlenecks, suggestions, a node's analysis, what-if estimates and custom
metrics.  Plain data like the rest of model/: readable as r.x and r["x"],
to_dict()/from_dict() round trip."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .base import Record, Section
from .results import NodeMemory, NodeResources, NodeTiming, StateImpact


@dataclass
class StepTask(Record):
    """One task of a superstep, times in ms from the run's start."""

    node: str
    start_ms: float
    end_ms: float
    compute_ms: float  # the node's own function inside the task
    critical: bool = False  # it ended last: the superstep waited for it


@dataclass
class Superstep(Record):
    """One LangGraph superstep: its tasks ran in parallel and it ended with
    its slowest task, then applied their writes.  Times in ms from the run's
    start; duration_ms leaves out the profiler's state tracking."""

    index: int
    start_ms: float
    end_ms: float
    duration_ms: float
    nodes: list[str]
    tasks: list[StepTask] = field(default_factory=list)
    critical: str | None = None  # the task it waited for
    prepare_ms: float = 0.0  # from the previous step's writes to the first task (Setup)
    tasks_ms: float = 0.0  # first task's start to the last task's end
    wait_ms: float = 0.0  # last task's end to the writes (LangGraph's runner)
    apply_ms: float = 0.0  # writes, routing and reducers


@dataclass
class CriticalPath(Section):
    """The run as a sequence of supersteps.  A node's critical_ms is the time
    the run spent on it: its Setup and State update (sequential) and its task
    where the superstep waited for it; slack_ms is how much longer its tasks
    could have run without making their supersteps longer."""

    total_ms: float | None = None
    steps_ms: float | None = None  # the supersteps' durations summed
    outside_ms: float | None = None  # before the first / after the last superstep
    steps: list[Superstep] = field(default_factory=list)
    critical_ms: dict[str, float] = field(default_factory=dict)
    slack_ms: dict[str, float] = field(default_factory=dict)
    parallel_steps: int = 0


@dataclass
class WhatIf(Record):
    """The run's length had node's Computation been factor times faster,
    replayed over the measured supersteps."""

    node: str
    factor: float
    measured_ms: float
    estimated_ms: float
    saved_ms: float
    steps: int  # supersteps the node ran in
    note: str = ""


@dataclass
class Finding(Record):
    """One class a node falls into, with the figures that put it there."""

    kind: str  # cpu-bound, waiting, setup-heavy, state-update-heavy, memory-heavy,
    #            many-calls, retries, model-call, gpu-bound, gpu-idle, low-ipc, cache-misses
    summary: str
    evidence: dict[str, Any] = field(default_factory=dict)


@dataclass
class Bottleneck(Record):
    """A node that takes at least the threshold's share of the critical path."""

    name: str
    execution_time: float  # ms, the node's total (Setup + Computation + State update)
    critical_ms: float  # of it, on the run's critical path
    percent: float  # critical_ms as a share of the run
    calls: int
    findings: list[Finding] = field(default_factory=list)
    slow_by_nature: str | None = None  # why no change in the graph makes it faster
    unavailable: dict[str, str] = field(default_factory=dict)  # figure -> why not measured

    @property
    def kinds(self) -> list[str]:
        return [f.kind for f in self.findings]


@dataclass
class Suggestion(Record):
    """A change the measurements point to, with the expected gain."""

    node: str
    kind: str  # parallelize, concurrency, batch, cache, state-update, setup, computation,
    #            retries, memory
    issue: str
    suggestion: str
    expected_gain_ms: float | None  # the run's time saved; None: not a time gain
    gain_basis: str  # how the gain was computed
    evidence: dict[str, Any] = field(default_factory=dict)
    also: list[str] = field(default_factory=list)  # other nodes the change involves
    upper_bound: bool = False  # expected_gain_ms is the most the change can give


@dataclass
class NodeSuggestions(Record):
    """get_optimization_suggestions' value per node: the suggestion with the
    largest expected gain as issue/suggestion, every one in ``suggestions``."""

    node: str
    issue: str
    suggestion: str
    expected_gain_ms: float | None
    suggestions: list[Suggestion] = field(default_factory=list)
    slow_by_nature: str | None = None


@dataclass
class NodeAnalysis(Record):
    """Everything measured for one node, with its findings and what-ifs."""

    name: str
    level: str
    timing: NodeTiming
    critical_ms: float
    percent: float  # of the run, on the critical path
    slack_ms: float
    resources: NodeResources | None = None
    memory: NodeMemory | None = None
    state: StateImpact | None = None
    counters: dict[str, float] = field(default_factory=dict)
    gpu: dict[str, Any] = field(default_factory=dict)
    tokens: dict[str, Any] | None = None
    findings: list[Finding] = field(default_factory=list)
    slow_by_nature: str | None = None
    what_if: list[WhatIf] = field(default_factory=list)
    unavailable: dict[str, str] = field(default_factory=dict)


@dataclass
class MetricResult(Record):
    """A registered metric evaluated on the last run: per node its value, or
    the exception the metric raised there."""

    name: str
    values: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)


ANALYSIS_TYPES: tuple[type[Record], ...] = (
    StepTask, Superstep, CriticalPath, WhatIf, Finding, Bottleneck, Suggestion, NodeSuggestions,
    NodeAnalysis, MetricResult,
)
