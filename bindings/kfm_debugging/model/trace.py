"""The timeline of one run, as a trace viewer draws it (export_trace).

The other results aggregate a run (per node totals, shares, peaks); this
one keeps every activation with its times, so that a viewer (Perfetto,
chrome://tracing) can show what ran where and when: lanes (threads and
virtual lanes), spans nested on them, counter tracks and instant markers.
Plain data like the rest of model/: r.x and r["x"], to_dict()/from_dict()
round trip (lists rather than tuples and int-keyed dicts, so that the data
read back from JSON is equal to what was written).

Times are microseconds from the run's start (the "__graph__" span's
start): floats, each a whole number of nanoseconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .base import Record

# Span categories (TraceSpan.cat).
CAT_RUN = "run"  # the whole run (the supersteps lane's parent span)
CAT_SUPERSTEP = "superstep"  # one LangGraph superstep
CAT_GRAPH = "graph"  # the engine's "__graph__" span: LangGraph's loop on the calling thread
CAT_TASK = "task"  # a node activation "N" (all its attempts)
CAT_COMPUTATION = "computation"  # "N/compute": the node's own function, one attempt
CAT_STATE_UPDATE = "state_update"  # "N/state_update": a superstep's writes applied
CAT_SETUP = "setup"  # "N/setup", were the engine to trace it (today: TraceData.setup says why not)
CAT_ASYNC_SLICE = "async_slice"  # an async node's coroutine running on its event loop's thread
CAT_GPU = "gpu"  # a kernel, copy, set or sync on a GPU (CUPTI), args.node: the launching node

# Lane kinds (TraceThread.kind).
LANE_THREAD = "thread"  # an engine thread: what ran on one OS thread
LANE_ASYNC = "async"  # a virtual lane of asyncio tasks of one event loop's thread
LANE_STEPS = "steps"  # the run and its supersteps
LANE_GPU = "gpu"  # a GPU's activity (CUPTI), one lane per CUDA device


@dataclass
class TraceThread(Record):
    """A lane of the trace.  tid is the lane's id in the trace, not an OS
    thread id; engine_thread is the engine's index of the thread a lane
    shows (an async lane: its event loop's thread), None for the
    supersteps lane; os_tid is the OS id of an engine thread's lane."""

    tid: int
    name: str
    kind: str = LANE_THREAD
    sort_index: int = 0
    engine_thread: int | None = None
    os_tid: int | None = None


# A trace keeps up to max_events spans: slots make each a third smaller.
@dataclass(slots=True)
class TraceSpan(Record):
    """One span on a lane: start_us and dur_us from the run's start; args
    are what a viewer shows when it is selected (node, calls, the metric
    deltas the engine measured over it)."""

    name: str
    cat: str
    tid: int
    start_us: float
    dur_us: float
    args: dict[str, Any] = field(default_factory=dict)


@dataclass
class CounterTrack(Record):
    """A sampled metric over the run: name carries the unit ("RSS (MB)");
    metric is the engine's ("proc.rss"); t_us[i] and readings[i] are one
    point (not "values": a Record's values() is its mapping's)."""

    name: str
    metric: str
    unit: str
    t_us: list[float] = field(default_factory=list)
    readings: list[float] = field(default_factory=list)


@dataclass
class TraceMarker(Record):
    """An instant: scope "g" (the whole trace), "p" (the process) or "t"
    (lane tid)."""

    name: str
    t_us: float
    cat: str = "marker"
    scope: str = "g"
    tid: int | None = None
    args: dict[str, Any] = field(default_factory=dict)


@dataclass
class TraceData(Record):
    """A run's trace: lanes, spans (sorted by start, parents before their
    children), counter tracks and markers, and what it does not hold.

    events counts the span and counter points the run had; at most
    max_events of them are kept (the earliest), dropped says how many were
    not, and a marker "<n> events dropped" stands where they start.
    engine_events_dropped: events the engine's own trace could not keep
    (its spans are missing from this one).  setup says why Setup has no
    spans ("" when it has); notes hold every other limit of the trace."""

    process_name: str
    level: str
    mode: str
    total_ms: float
    threads: list[TraceThread] = field(default_factory=list)
    spans: list[TraceSpan] = field(default_factory=list)
    counters: list[CounterTrack] = field(default_factory=list)
    markers: list[TraceMarker] = field(default_factory=list)
    max_events: int = 500_000
    events: int = 0
    dropped: int = 0
    engine_events_dropped: int = 0
    setup: str = ""
    notes: list[str] = field(default_factory=list)


TRACE_TYPES = (TraceThread, TraceSpan, CounterTrack, TraceMarker, TraceData)
