"""The result types of the Debugger's get_* calls (plain data, no engine)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .base import Record, Section


@dataclass
class NodeTiming(Record):
    """Time of one node over the run, in milliseconds."""

    name: str
    calls: int
    total_ms: float
    setup_ms: float
    computation_ms: float
    state_update_ms: float
    average_ms: float
    percent: float
    min_ms: float | None = None
    max_ms: float | None = None
    p50_ms: float | None = None
    p90_ms: float | None = None
    p99_ms: float | None = None
    attempts: int = 0
    errors: int = 0
    parent: str | None = None
    asynchronous: bool = False


@dataclass
class NodeMemory(Record):
    name: str
    calls: int
    impact_mb: float  # RSS change over the node's spans (setup + task + state update)
    peak_mb: float | None  # highest RSS rise above the RSS at an activation's start
    peak_rss_mb: float | None  # highest RSS seen while it ran


@dataclass
class MemoryProfile(Section):
    initial_mb: float | None = None
    peak_mb: float | None = None
    peak_node: str | None = None
    final_mb: float | None = None
    growth_mb: float | None = None
    nodes: dict[str, NodeMemory] = field(default_factory=dict)


@dataclass
class MemoryTimeline(Section):
    """RSS over the run: points {t_ms, rss_mb, node} from samples and transitions."""

    points: list[dict[str, Any]] = field(default_factory=list)
    sample_rate_hz: float | None = None


@dataclass
class NodeResources(Record):
    name: str
    wall_ms: float
    cpu_user_ms: float | None = None
    cpu_sys_ms: float | None = None
    cpu_percent: float | None = None
    cpu_ms: float | None = None  # user + sys (or the counter backend's task clock)
    cpu_source: str | None = None
    computation_cpu_ms: float | None = None  # user + sys inside the node's function
    minor_faults: float | None = None
    major_faults: float | None = None
    voluntary_switches: float | None = None
    involuntary_switches: float | None = None
    io_read_bytes: float | None = None
    io_write_bytes: float | None = None
    net_rx_bytes: float | None = None
    net_tx_bytes: float | None = None


@dataclass
class CpuUsage(Section):
    total_ms: float | None = None
    attributed_cpu_ms: float | None = None  # CPU time in the run's engine spans
    attributed_cpu_percent: float | None = None  # of the run's wall time
    process_cpu_ms_sampled: float | None = None
    nodes: dict[str, NodeResources] = field(default_factory=dict)


@dataclass
class NetworkUsage(Section):
    scope: str | None = None
    total_rx_bytes: float | None = None
    total_tx_bytes: float | None = None
    nodes: dict[str, dict[str, Any]] = field(default_factory=dict)  # {rx_bytes, tx_bytes}


@dataclass
class GpuUsage(Section):
    backends: list[dict[str, Any]] = field(default_factory=list)
    metrics: list[str] = field(default_factory=list)
    nodes: dict[str, dict[str, Any]] = field(default_factory=dict)  # metric -> value
    details: dict[str, Any] = field(default_factory=dict)  # backend -> its description
    # node -> why its sampled GPU values (utilisation, averaged power) are
    # the driver's window's rather than the node's: calls shorter than it.
    caveats: dict[str, str] = field(default_factory=dict)


@dataclass
class SamplerStats(Record):
    rate_hz: float
    samples: int
    cpu_ms: float
    late_p99_us: float


@dataclass
class ResourceUtilization(Record):
    level: str
    total_ms: float
    threads: int
    sampler: SamplerStats
    memory: MemoryProfile
    cpu: CpuUsage
    network: NetworkUsage
    gpu: GpuUsage
    backends: list[dict[str, Any]] = field(default_factory=list)
    io: dict[str, Any] | None = None  # {read_bytes, write_bytes} from DETAILED up


@dataclass
class StateImpact(Record):
    name: str
    steps: int
    bytes_delta: int
    items_delta: int
    max_state_bytes: int


@dataclass
class StateSizeTimeline(Section):
    measure: str | None = None
    # {index, t_ms, nodes, writes, written, size_bytes, items} per superstep
    points: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class StateSizeAnalysis(Section):
    measure: str | None = None
    initial_bytes: int | None = None
    final_bytes: int | None = None
    max_bytes: int | None = None
    max_after: list[str] = field(default_factory=list)
    growth_bytes: int | None = None
    initial_items: int | None = None
    final_items: int | None = None
    steps: int | None = None
    measure_ms: float | None = None
    nodes: dict[str, StateImpact] = field(default_factory=dict)
    # Values whose size could not be taken (they count 0 bytes):
    # {"type", "reason", "count"}, most seen in one measure
    unsizable_count: int = 0
    unsizable: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class RunSummary(Record):
    """A run in brief: what the timing export carries besides the nodes."""

    level: str
    mode: str
    total_ms: float
    errors: list[dict[str, Any]] = field(default_factory=list)
    interrupts: list[dict[str, Any]] = field(default_factory=list)
    engine: dict[str, Any] = field(default_factory=dict)  # the engine's summary


@dataclass
class ProfileReport(Record):
    """The data of show_profile_report."""

    level: str
    requested_level: str
    # KFM_CONFIG's effect: None when unset, else {KFM_CONFIG, requested_level,
    # level, level_overridden, ignored (the engine's error when it rejected
    # KFM_CONFIG)}
    level_override: dict[str, Any] | None
    mode: str
    total_ms: float
    profiler_state_tracking_ms: float
    nodes: dict[str, dict[str, Any]]  # {time_ms, percent, calls}
    memory: dict[str, Any] | None  # {initial_mb, peak_mb, final_mb}
    memory_unavailable: str | None
    errors: list[dict[str, Any]] = field(default_factory=list)
    interrupts: list[dict[str, Any]] = field(default_factory=list)
    engine: dict[str, Any] = field(default_factory=dict)  # the engine's summary
    instrumentation_failures: int = 0


RESULT_TYPES: tuple[type[Record], ...] = (
    NodeTiming, NodeMemory, MemoryProfile, MemoryTimeline, NodeResources, CpuUsage,
    NetworkUsage, GpuUsage, SamplerStats, ResourceUtilization, StateImpact, StateSizeTimeline,
    StateSizeAnalysis, RunSummary, ProfileReport,
)
