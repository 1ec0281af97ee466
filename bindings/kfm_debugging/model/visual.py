"""The data behind the visualize_* charts, as result types.

A chart is only a picture of one of these: programs and tests read the
figures here (and save them as JSON) rather than the pixels, and the
renderer (render/charts.py) draws exactly what they hold.  Times are ms
from the run's start (the opening of its "__graph__" span, the origin of
the critical path's supersteps too), memory is MB, CPU is % of one core.
A part of a chart that the run did not measure is a Section with its
reason; the chart then says "unavailable: <reason>" instead of drawing
zeros.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .base import Record, Section

# The three parts of a node's time (node_timing's split), as the timeline's
# segments and legend name them.
SETUP = "Setup"
COMPUTATION = "Computation"
STATE_UPDATE = "State update"
SEGMENT_KINDS = (SETUP, COMPUTATION, STATE_UPDATE)
GPU_ACTIVITY = "GPU kernel / copy"  # a GPU lane's spans (CUPTI), kind "gpu"


@dataclass
class Segment(Record):
    """A stretch of a span spent in one of SEGMENT_KINDS."""

    kind: str
    start_ms: float
    end_ms: float


@dataclass
class TimelineSpan(Record):
    """One bar of the timeline.

    kind "task": one activation of node (its engine span "N", or its async
    task), split into Setup (the task's run machinery before the node's
    function, and between retries), Computation (each attempt of the
    function, "N/compute") and State update (channel writes and edge routing
    after the function).  kind "state_update": a superstep's write
    application on the loop thread ("N/state_update"; node "(parallel)" when
    several nodes wrote in that superstep), one State update segment.
    row: the row inside its lane, so that overlapping spans (a subgraph's
    tasks inside their parent's, interleaved async tasks) never cover each
    other."""

    node: str
    start_ms: float
    end_ms: float
    kind: str = "task"
    row: int = 0
    segments: list[Segment] = field(default_factory=list)


@dataclass
class Lane(Record):
    """The spans of one thread (or of the asyncio tasks, thread None; or of
    a GPU, gpu its CUDA device, its spans of kind "gpu")."""

    name: str
    thread: int | None
    rows: int
    busy_ms: float  # the lane's task time (how the chart ranks lanes)
    spans: list[TimelineSpan] = field(default_factory=list)
    gpu: int | None = None  # a GPU lane's CUDA device


@dataclass
class Series(Section):
    """A measured quantity over the run: t_ms and values of equal length."""

    name: str = ""
    unit: str = ""
    t_ms: list[float] = field(default_factory=list)
    values: list[float] = field(default_factory=list)


@dataclass
class StepMark(Record):
    """A LangGraph superstep: from the previous one's writes to its own."""

    index: int
    start_ms: float
    end_ms: float
    nodes: list[str] = field(default_factory=list)


@dataclass
class StepMarks(Section):
    steps: list[StepMark] = field(default_factory=list)


@dataclass
class TimelineData(Section):
    """The run as lanes of spans, superstep boundaries and resource series
    beneath: RSS (MB, from STANDARD), process CPU (% of one core, from
    DETAILED; sampled, so averaged over windows of cpu_window_ms), GPU
    utilisation (%, per sampled GPU; an empty list when none was)."""

    level: str = ""
    total_ms: float = 0.0
    lanes: list[Lane] = field(default_factory=list)
    steps: StepMarks = field(default_factory=StepMarks)
    rss: Series = field(default_factory=Series)
    cpu: Series = field(default_factory=Series)
    cpu_window_ms: float | None = None
    gpu: list[Series] = field(default_factory=list)
    gpu_reason: str = ""  # why gpu is empty


@dataclass
class ComparisonBar(Record):
    """One bar: a node, or "others (k nodes)" summing the nodes past the top."""

    label: str
    value: float
    nodes: int = 1


@dataclass
class NodeComparison(Section):
    """One metric across the run's nodes: every node's value, and the bars
    the chart draws (the top nodes by magnitude, then one bar for the rest)."""

    metric: str = ""
    unit: str = ""
    values: dict[str, float] = field(default_factory=dict)
    bars: list[ComparisonBar] = field(default_factory=list)
    top: int = 30
    others: int = 0  # nodes folded into the last bar


@dataclass
class NodeBand(Record):
    """A node activation on the memory chart's time axis; row: its row in
    the strip when activations overlap (parallel branches, subgraphs)."""

    node: str
    start_ms: float
    end_ms: float
    row: int = 0


@dataclass
class MemoryUsage(Section):
    """RSS over the run with which node was active when, and its peak.

    peak_mb is the run's peak as the memory profile reports it (it may
    exceed the series' highest point when the engine's high-water mark
    caught more than any reading); peak_t_ms is where the series peaks."""

    t_ms: list[float] = field(default_factory=list)
    rss_mb: list[float] = field(default_factory=list)
    bands: list[NodeBand] = field(default_factory=list)
    band_rows: int = 1
    initial_mb: float | None = None
    final_mb: float | None = None
    peak_mb: float | None = None
    peak_t_ms: float | None = None
    peak_node: str | None = None
    total_ms: float = 0.0
    sample_rate_hz: float | None = None


@dataclass
class Heatmap(Section):
    """rows x columns of values: nodes by runs (kind "runs") or by equal
    time slices of one run (kind "slices", columns labelled by their ms).
    A cell is None when that node has no value there (it did not run).
    scale: "sequential" (vmin 0) or "diverging" (values of both signs,
    centred on 0)."""

    metric: str = ""
    unit: str = ""
    kind: str = "runs"
    rows: list[str] = field(default_factory=list)
    columns: list[str] = field(default_factory=list)
    values: list[list[float | None]] = field(default_factory=list)
    vmin: float = 0.0
    vmax: float = 0.0
    scale: str = "sequential"

    def shown(self, max_rows: int = 40) -> tuple[list[str], list[list[float | None]]]:
        """The rows a chart can show: the max_rows - 1 rows of largest
        total magnitude in their order, then "others (k nodes)" summing the
        rest per column (all of them when they fit)."""
        if len(self.rows) <= max_rows:
            return list(self.rows), [list(r) for r in self.values]
        keep = max(max_rows - 1, 1)
        mag = [sum(abs(v) for v in r if v is not None) for r in self.values]
        top = set(sorted(range(len(self.rows)), key=lambda i: (-mag[i], i))[:keep])
        rows = [n for i, n in enumerate(self.rows) if i in top]
        vals = [list(self.values[i]) for i in range(len(self.rows)) if i in top]
        rest = [i for i in range(len(self.rows)) if i not in top]
        other: list[float | None] = []
        for c in range(len(self.columns)):
            col = [self.values[i][c] for i in rest if self.values[i][c] is not None]
            other.append(sum(col) if col else None)  # type: ignore[arg-type]
        rows.append(f"others ({len(rest)} nodes)")
        vals.append(other)
        return rows, vals


VISUAL_TYPES: tuple[type[Record], ...] = (
    Segment, TimelineSpan, Lane, Series, StepMark, StepMarks, TimelineData, ComparisonBar,
    NodeComparison, NodeBand, MemoryUsage, Heatmap,
)
