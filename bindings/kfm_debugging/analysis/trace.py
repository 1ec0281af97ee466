"""The timeline of a run for a trace viewer (Debugger.export_trace).

Every other analysis sums a run up; a timeline is where a reader sees what
the sums hide: which branch a superstep waited for, a pool thread idle
behind the loop, a node that ran while RSS climbed.  So nothing here is
aggregated: each activation the engine traced is one span, on the lane of
the thread it ran on, nested as the engine's per-thread stack had it.

Where each part comes from:

* Thread lanes: the engine's trace (RunData.events()).  The run's
  "__graph__" span is "graph.<mode>" on the calling thread ("main"; one
  span per resumption in stream and async runs).  A node's task span "N"
  holds its Computation "N/compute" (one per attempt; a subgraph's spans
  sit inside it); State update spans "N/state_update" are on the thread
  that ran LangGraph's loop.  A span's args carry the deltas of the
  metrics the trace records at every transition (RSS from STANDARD up;
  CPU, faults, switches, I/O from DETAILED up).  The engine numbers its
  threads; a lane is named after the Python thread with that OS thread id
  if it was alive when the run ended ("thread N" otherwise), with the id.
* Async lanes: an async node's task and Computation are timed by the
  recorder (Recorder.async_spans, perf_counter_ns, moved to engine time by
  _async_offset); the engine only sees the slices in which its coroutine
  ran, which stay on the loop thread as "running" slices.  Tasks of one
  event loop overlap without nesting, so they are packed on virtual lanes
  beside the loop's thread, a span nesting only in its own task (or its
  subgraph's ancestor).
* The supersteps lane: analysis.steps.critical_path, under a span of the
  whole run.
* Counter tracks: the sampler (RunData.samples()): gauges as values,
  cumulative counters as rates; units in the track's name.
* GPU lanes (COMPREHENSIVE with CUPTI): the backend's timeline of kernels,
  copies, sets and syncs, one lane per CUDA device (more where streams
  overlap), each span naming the node that launched it.

Setup (task preparation) is timed per node in aggregate only
(Recorder.setup_wall: count and total), so it has no spans; TraceData.setup
says so.  A cap keeps the earliest max_events spans and counter points.
"""

from __future__ import annotations

import bisect
import math
from collections import Counter
from typing import TYPE_CHECKING, Any

from ..model.level import ProfilingLevel
from ..model.names import GRAPH, LOOP, PARALLEL, WARMUP, base_name
from ..model.trace import (
    CAT_ASYNC_SLICE,
    CAT_COMPUTATION,
    CAT_GPU,
    CAT_GRAPH,
    CAT_RUN,
    CAT_SETUP,
    CAT_STATE_UPDATE,
    CAT_SUPERSTEP,
    CAT_TASK,
    LANE_ASYNC,
    LANE_GPU,
    LANE_STEPS,
    LANE_THREAD,
    CounterTrack,
    TraceData,
    TraceMarker,
    TraceSpan,
    TraceThread,
)
from .common import MB, total_ns
from .steps import critical_path

if TYPE_CHECKING:
    from ..collect.run import RunData

MAX_EVENTS = 500_000

# Engine span suffix -> (category, what the span is called after the node's name).
_PARTS = {
    "/compute": (CAT_COMPUTATION, "Computation"),
    "/state_update": (CAT_STATE_UPDATE, "State update"),
    "/setup": (CAT_SETUP, "Setup"),
}
# Who a State update belongs to when it is no single node's.
_UPDATE_OWNER = {LOOP: "LangGraph", PARALLEL: "parallel superstep"}
_SETUP_NOT_TRACED = ("Setup (task preparation on the loop thread) has no spans: the recorder "
                    "times it per node in aggregate only (count and total), not per activation; "
                    "get_node_timing() has it")

# A span before the cap: (start ns, end ns, depth, tid, name, cat, args, event
# indices of its enter and exit for the metric deltas or None).  Times are
# whole ns from the run's start, so that a child rounded to the trace's
# resolution never leaves its parent.
_Span = tuple[int, int, int, int, str, str, dict[str, Any], Any]


def trace_data(rd: RunData, max_events: int = MAX_EVENTS,
               graph_name: str | None = None) -> TraceData:
    """The run's timeline: lanes, nested spans, counter tracks, supersteps.

    max_events: at most this many spans and counter points are kept (the
    earliest); the rest are counted in ``dropped`` and a marker says where
    they start.  graph_name: the process's name in the viewer
    ("kfm_debugging: <graph_name>")."""
    if isinstance(max_events, bool) or not isinstance(max_events, int) or max_events < 0:
        raise ValueError(f"max_events must be an int >= 0 (spans and counter points kept), "
                         f"not {max_events!r}")
    summ = rd.report["summary"]
    td = TraceData(process_name=f"kfm_debugging: {graph_name or 'LangGraph'}",
                   level=rd.level.name, mode=rd.mode, total_ms=total_ns(rd) / 1e6,
                   max_events=max_events,
                   engine_events_dropped=int(summ.get("events_dropped", 0)),
                   setup=_SETUP_NOT_TRACED)
    try:
        acts, metrics, rows, start = _engine_spans(rd)
    except (RuntimeError, ValueError, KeyError) as e:  # no trace in this session
        acts, metrics, rows, start = [], [], None, None
        td.notes.append(f"no engine trace: {e}")
    origin = start
    if origin is None:
        origin = min((a[2] for a in acts if a[0] != WARMUP), default=0.0)
        td.notes.append("the trace has no start of the run: times are from its first span")

    lanes = _Lanes()
    try:
        lanes.os_tids = list(rd.events().get("tids", ()))
    except (RuntimeError, ValueError):
        pass
    lanes.py_names = rd.thread_names
    spans = _thread_spans(rd, acts, origin, lanes, td.notes)
    spans += _async_spans(rd, acts, origin, start, lanes)
    spans += _gpu_spans(rd, origin, lanes, td.notes)
    step_of = _steps(rd, origin, spans, lanes, td.notes)
    counters = _counters(rd, origin, td.notes)
    if rd.rec.state_ns:
        td.notes.append(f"state tracking (the profiler's own {rd.rec.state_ns / 1e6:.2f} ms of "
                        f"sizing the state after supersteps) has no spans: it is the gaps "
                        f"after State update spans, left out of the run's total")
    if td.engine_events_dropped:
        td.notes.append(f"the engine's trace dropped {td.engine_events_dropped} events: their "
                        f"spans are missing (raise engine_config='trace_events=N')")
        td.markers.append(TraceMarker(
            name=f"engine trace dropped {td.engine_events_dropped} events", t_us=0.0,
            args={"events_dropped": td.engine_events_dropped}))

    keep = _cap(td, spans, counters, max_events)
    _fill(td, keep, spans, counters, step_of, _delta_keys(rd, metrics), rows)
    # Lanes whose spans were all dropped are left out; the run's own
    # thread stays (counters and markers are drawn on it).
    used = {s.tid for s in td.spans}
    td.threads = [t for t in lanes.threads() if t.tid in used
                  or (t.kind == LANE_THREAD and t.engine_thread == lanes.main)]
    return td


def _cap(td: TraceData, spans: list[_Span], counters: list[Any],
         max_events: int) -> list[tuple[int, int, int, int, int]]:
    """The events kept: the earliest max_events spans and counter points,
    parents (longer, shallower) before their children at one start, so
    that a kept span's parent is kept.  Each is (start, -dur, depth, 0 or
    1 + counter track, index)."""
    order: list[tuple[int, int, int, int, int]] = []
    for i, s in enumerate(spans):
        order.append((s[0], s[0] - s[1], s[2], 0, i))
    for k, c in enumerate(counters):
        order.extend((t, 0, 0, 1 + k, j) for j, t in enumerate(c[3]))
    order.sort()
    td.events = len(order)
    td.dropped = max(len(order) - max_events, 0)
    if td.dropped:
        first = order[max_events][0]
        td.markers.append(TraceMarker(
            name=f"{td.dropped} events dropped", t_us=_us(first),
            args={"dropped": td.dropped, "max_events": max_events, "events": td.events,
                  "from_us": _us(first)}))
        td.notes.append(f"{td.dropped} of {td.events} events (spans and counter points) from "
                        f"{_us(first) / 1e3:.3f} ms on are not in the trace: max_events="
                        f"{max_events}")
    return order[:max_events]


def _fill(td: TraceData, keep: list[tuple[int, int, int, int, int]], spans: list[_Span],
          counters: list[Any], step_of: Any, deltas: list[tuple[str, float]], rows: Any) -> None:
    """td's spans and counter tracks from the kept events; a span's args
    completed only now (calls, superstep, metric deltas), as most of a
    large run's spans are not kept."""
    calls: dict[str, int] = {}
    for s in spans:
        if s[5] == CAT_TASK:
            calls[s[6]["node"]] = calls.get(s[6]["node"], 0) + 1
    points: dict[int, list[int]] = {}
    for _t, _d, _depth, which, i in keep:
        if which:
            points.setdefault(which - 1, []).append(i)
            continue
        a, b, _dp, tid, name, cat, args, ev = spans[i]
        if cat == CAT_TASK:
            node = args["node"]
            args["calls"] = calls[node]
            st = step_of(node, a)
            if st is not None:
                args["superstep"] = st
        if ev is not None and rows is not None:
            r0, r1 = rows[ev[0]], rows[ev[1]]
            for m, (key, scale) in enumerate(deltas):
                v = (r1[m] - r0[m]) * scale
                if math.isfinite(v):
                    args[key] = v
        td.spans.append(TraceSpan(name=name, cat=cat, tid=tid, start_us=_us(a),
                                  dur_us=_us(b - a), args=args))
    for k, idx in points.items():
        label, metric, unit, ts, vs = counters[k]
        td.counters.append(CounterTrack(name=label, metric=metric, unit=unit,
                                        t_us=[_us(ts[j]) for j in idx],
                                        readings=[vs[j] for j in idx]))


def _us(ns: int) -> float:
    return ns / 1000.0


def _engine_spans(rd: RunData) -> tuple[list[tuple[Any, ...]], list[str], Any, float | None]:
    """(engine name, thread, t0, t1, enter index, exit index, depth) of every
    span of the engine's trace, the trace's metrics, its rows of values and
    the run's start: the first "__graph__" enter (a full trace buffer drops
    the events after it, its exit among them).

    RunData.activations() keeps RSS only; the trace's rows have every
    metric of the level, whose deltas a span's args show."""
    ev = rd.events()
    names = ev["names"]
    t = ev["t_ns"].tolist()
    th = ev["thread"].tolist()
    nd = ev["node"].tolist()
    kd = ev["kind"].tolist()
    metrics = list(ev["metrics"])
    rows = ev["values"].tolist() if metrics and t else None
    graph = {k for k, v in names.items() if v == GRAPH}
    start: float | None = None
    stacks: dict[int, list[tuple[int, int]]] = {}
    out: list[tuple[Any, ...]] = []
    for i in range(len(t)):
        st = stacks.setdefault(th[i], [])
        if kd[i] == 0:
            st.append((nd[i], i))
            if start is None and nd[i] in graph:
                start = t[i]
            continue
        # An exit closes its own enter; enters it passes over were never
        # exited (the engine refused the exit): they are no spans.
        while st:
            node, j = st.pop()
            if node == nd[i]:
                out.append((names.get(node), th[i], t[j], t[i], j, i, len(st)))
                break
    return out, metrics, rows, start


class _Lanes:
    """The trace's lanes: engine threads (tid = index + 1, the run's own
    thread "main"), the supersteps lane, and async lanes after their
    event loop's thread."""

    def __init__(self) -> None:
        self.main: int | None = None  # engine index of the thread that ran the graph
        self._threads: set[int] = set()
        self._async: dict[int, list[int]] = {}  # loop thread -> its lanes' tids
        self._virtual = 0
        self.steps_tid: int | None = None
        self.os_tids: list[int] = []  # engine index -> OS thread id
        self._gpus: dict[tuple[Any, int], int] = {}  # (CUDA device or None, sub-lane) -> tid
        self.py_names: dict[int, str] = {}  # OS thread id -> Python thread name

    def thread(self, th: int) -> int:
        self._threads.add(th)
        return th + 1

    def _fresh(self) -> int:
        # A virtual lane's tid: far above any engine thread's.
        self._virtual += 1
        return 1_000_000 + self._virtual

    def steps(self) -> int:
        if self.steps_tid is None:
            self.steps_tid = self._fresh()
        return self.steps_tid

    def gpu(self, key: tuple[Any, int]) -> int:
        tid = self._gpus.get(key)
        if tid is None:
            tid = self._gpus[key] = self._fresh()
        return tid

    def async_lane(self, loop_th: int, k: int) -> int:
        lanes = self._async.setdefault(loop_th, [])
        while len(lanes) <= k:
            lanes.append(self._fresh())
        return lanes[k]

    def name(self, th: int) -> str:
        if th == self.main:
            return "main"
        tid = self.os_tids[th] if th < len(self.os_tids) else None
        if tid is None:
            return f"thread {th}"
        # The OS id lets a reader match the lane with py-spy, perf or top.
        return f"{self.py_names.get(tid, f'thread {th}')} (tid {tid})"

    def threads(self) -> list[TraceThread]:
        out: list[TraceThread] = []
        if self.steps_tid is not None:
            out.append(TraceThread(tid=self.steps_tid, name="supersteps", kind=LANE_STEPS))
        order = sorted(self._threads | set(self._async), key=lambda th: (th != self.main, th))
        for th in order:
            out.append(TraceThread(tid=th + 1, name=self.name(th), kind=LANE_THREAD,
                                   engine_thread=th,
                                   os_tid=self.os_tids[th] if th < len(self.os_tids) else None))
            for k, tid in enumerate(self._async.get(th, [])):
                suffix = f" #{k + 1}" if k else ""
                out.append(TraceThread(tid=tid, name=f"asyncio tasks ({self.name(th)}){suffix}",
                                       kind=LANE_ASYNC, engine_thread=th))
        for (dev, k), tid in sorted(self._gpus.items(),
                                    key=lambda kv: (kv[0][0] is None, kv[0][0] or 0, kv[0][1])):
            label = f"GPU {dev if dev is not None else '?'} (CUPTI)" + (f" #{k + 1}" if k else "")
            out.append(TraceThread(tid=tid, name=label, kind=LANE_GPU))
        # Real tids are small, virtual ones large: the viewer's order is set
        # by sort_index, not by tid.
        for i, lane in enumerate(out):
            lane.sort_index = i
        return out


def _label(ename: str) -> tuple[str, str, str]:
    """(category, span name, node) of an engine span."""
    if ename == GRAPH:
        return CAT_GRAPH, "", GRAPH
    for suf, (cat, part) in _PARTS.items():
        if ename.endswith(suf):
            node = ename[: -len(suf)]
            return cat, f"{_UPDATE_OWNER.get(node, node)}: {part}", node
    return CAT_TASK, ename, ename


def _thread_spans(rd: RunData, acts: list[tuple[Any, ...]], origin: float, lanes: _Lanes,
                  notes: list[str]) -> list[_Span]:
    asyncs = rd.rec.async_wall
    out: list[_Span] = []
    before = 0
    for ename, th, t0, t1, i0, i1, depth in acts:
        if ename is None or ename == WARMUP:
            continue  # the calling thread's set-up, before the run
        if ename == GRAPH and lanes.main is None:
            lanes.main = th
        a, b = round(t0 - origin), round(t1 - origin)
        if a < 0:
            before += 1
            continue
        cat, name, node = _label(ename)
        if ename == GRAPH:
            name = f"graph.{rd.mode}"
        elif ename in asyncs:
            # One slice of an async span: its real span is on an async lane.
            cat, name = CAT_ASYNC_SLICE, f"{name} (running)"
        out.append((a, b, depth, lanes.thread(th), name, cat, {"node": node}, (i0, i1)))
    if before:
        notes.append(f"{before} engine spans began before the run (left out)")
    return out


def _async_spans(rd: RunData, acts: list[tuple[Any, ...]], origin: float, start: float | None,
                 lanes: _Lanes) -> list[_Span]:
    spans = rd.rec.async_spans
    if not spans:
        return []
    off = _async_offset(rd, acts, start) - origin
    # A key's event loop: the thread its engine slices ran on.
    seen: dict[str, Counter[int]] = {}
    for ename, th, *_ in acts:
        if ename in spans:
            seen.setdefault(ename, Counter())[th] += 1
    main = lanes.main if lanes.main is not None else 0
    by_loop: dict[int, list[tuple[int, int, str]]] = {}
    for key, flat in spans.items():
        c = seen.get(key) or seen.get(base_name(key) or key)
        loop = c.most_common(1)[0][0] if c else main
        for i in range(0, len(flat) - 1, 2):
            by_loop.setdefault(loop, []).append((round(flat[i] + off), round(flat[i + 1] + off),
                                                 key))
    out: list[_Span] = []
    for loop, items in by_loop.items():
        lanes.thread(loop)
        # A task and its own Computation starting and ending together: the task first.
        items.sort(key=lambda x: (x[0], -x[1], x[2].endswith("/compute")))
        for (a, b, key), (k, depth) in zip(items, _pack(items), strict=True):
            cat, name, node = _label(key)
            out.append((a, b, depth, lanes.async_lane(loop, k), name, cat, {"node": node}, None))
    return out


def _async_offset(rd: RunData, acts: list[tuple[Any, ...]], start: float | None) -> float:
    """Engine time minus perf_counter_ns for the recorder's async spans.

    The run's t0_perf is read some microseconds (tens in ainvoke) before
    the first "__graph__" enter (start), so start - t0_perf (what
    RunData.engine_offset_ns() gives) is a bound from above: spans moved
    with it land that much late, after the first slice of their own
    coroutine.  Every async span reads perf_counter_ns just before its
    first slice enters, so each key's first slice less its first start is
    a closer bound."""
    off = start - rd.t0_perf if start is not None else math.inf
    spans = rd.rec.async_spans
    first: dict[str, float] = {}
    for ename, _th, t0, *_ in acts:
        if ename in spans and t0 < first.get(ename, math.inf):
            first[ename] = t0
    for key, t0 in first.items():
        flat = spans[key]
        if flat:
            off = min(off, t0 - min(flat[0::2]))
    return off if math.isfinite(off) else rd.engine_offset_ns()


def _pack(items: list[tuple[int, int, str]]) -> list[tuple[int, int]]:
    """(lane, depth) per span (sorted by start, longest first): a span goes
    inside the innermost open span that is its own task or its subgraph's
    ancestor and holds it, else on the first lane with nothing open, else a
    new lane; so no lane has two spans that overlap without nesting."""
    stacks: list[list[tuple[int, int, str]]] = []
    out: list[tuple[int, int]] = []
    for a, b, key in items:
        best = free = None
        for k, st in enumerate(stacks):
            while st and st[-1][1] <= a:
                st.pop()
            if not st:
                if free is None:
                    free = k
            elif (b <= st[-1][1] and _nests_in(key, st[-1][2])
                  and (best is None or st[-1][0] > stacks[best][-1][0])):
                best = k
        lane = best if best is not None else free
        if lane is None:
            lane = len(stacks)
            stacks.append([])
        out.append((lane, len(stacks[lane])))
        stacks[lane].append((a, b, key))
    return out


def _nests_in(key: str, outer: str) -> bool:
    """An async span key inside outer: a Computation in its own task, a
    subgraph's task in its ancestor's task or Computation."""
    node = base_name(key) or key
    if key != node:
        return outer == node
    top = base_name(outer) or outer
    return node.startswith(top + "|")


def gpu_activity(rd: RunData, notes: list[str]) -> list[dict[str, Any]]:
    """The run's kernels, copies, sets and syncs from CUPTI's timeline, by
    start: {"start_ns", "end_ns" (engine time: ns since the session's
    start), "name", "kind", "node" (the launching node's name, or
    "unattributed"), "device" (or None), "bytes" (or absent)}.  Empty below
    COMPREHENSIVE or without CUPTI; a limit of the data goes to notes."""
    if rd.level < ProfilingLevel.COMPREHENSIVE:
        return []
    d = rd.backend_details("cupti")
    tl = d.get("timeline") if isinstance(d, dict) else None
    if not tl:
        return []
    if (d.get("time_base") or {}).get("origin") != "session_start":
        notes.append("GPU activity is not shown: CUPTI's times are not on the session's clock")
        return []
    lost = (d.get("dropped") or {}).get("timeline") or 0
    if lost:
        notes.append(f"{lost} GPU records are not on the GPU lanes: CUPTI's timeline keeps "
                     f"{len(tl)} (their time is still in each node's GPU figures)")
    ids = {v["id"]: base_name(k) for k, v in rd.report["nodes"].items()}
    out = []
    for e in sorted(tl, key=lambda e: (e["start_ns"], -e["end_ns"])):
        if e["end_ns"] < e["start_ns"]:
            continue
        node = e.get("node")
        g = {"start_ns": float(e["start_ns"]), "end_ns": float(e["end_ns"]),
             "name": e.get("name") or e["kind"], "kind": e["kind"], "device": e.get("device"),
             "node": ids.get(node, f"node {node}") if node is not None else "unattributed"}
        if "bytes" in e:
            g["bytes"] = e["bytes"]
        out.append(g)
    return out


def _gpu_spans(rd: RunData, origin: float, lanes: _Lanes, notes: list[str]) -> list[_Span]:
    """A lane per CUDA device with the run's GPU activity (gpu_activity),
    each span naming the node that launched it (args.node)."""
    out: list[_Span] = []
    # Kernels of several streams overlap on one device: a viewer draws a
    # lane's spans nested or apart, so overlapping ones go to the device's
    # next lane (GPU 0, GPU 0 #2, ...), as asyncio tasks do.
    ends: dict[Any, list[int]] = {}
    for e in gpu_activity(rd, notes):
        a = int(round(e["start_ns"] - origin))
        b = int(round(e["end_ns"] - origin))
        args: dict[str, Any] = {"node": e["node"], "kind": e["kind"]}
        for k in ("device", "bytes"):
            if e.get(k) is not None:
                args[k] = e[k]
        dev = e["device"]
        sub = ends.setdefault(dev, [])
        k = next((i for i, end in enumerate(sub) if end <= a), len(sub))
        if k == len(sub):
            sub.append(b)
        else:
            sub[k] = b
        out.append((a, b, 0, lanes.gpu((dev, k)), e["name"], CAT_GPU, args, None))
    return out


def _steps(rd: RunData, origin: float, spans: list[_Span], lanes: _Lanes,
           notes: list[str]) -> Any:
    """The supersteps lane (appended to spans) and step_of(node, start ns):
    the index of the superstep a top-level task span is in, or None."""
    cp = critical_path(rd, {})
    if not cp.available:
        notes.append(f"no supersteps lane: {cp.reason}")
        return lambda node, a: None
    # critical_path's times are ms from the same start (the first "__graph__" span).
    tid = lanes.steps()
    end = round(rd.wall_ns)
    bounds: list[int] = []
    for s in cp.steps:
        a, b = round(s.start_ms * 1e6), round(s.end_ms * 1e6)
        end = max(end, b)
        bounds.append(a)
        spans.append((a, b, 1, tid, f"superstep {s.index}", CAT_SUPERSTEP, {
            "index": s.index, "nodes": list(s.nodes), "tasks": len(s.tasks),
            "critical": s.critical, "duration_ms": s.duration_ms, "prepare_ms": s.prepare_ms,
            "tasks_ms": s.tasks_ms, "wait_ms": s.wait_ms, "apply_ms": s.apply_ms}, None))
    spans.append((0, end, 0, tid, "run", CAT_RUN, {
        "total_ms": cp.total_ms, "steps_ms": cp.steps_ms, "outside_ms": cp.outside_ms,
        "supersteps": len(cp.steps), "parallel_steps": cp.parallel_steps}, None))
    steps = cp.steps

    def step_of(node: str, a: int) -> int | None:
        # A superstep's tasks start between the previous one's writes and
        # its own: the step whose window holds the start, if it ran node.
        i = bisect.bisect_right(bounds, a) - 1
        return steps[i].index if i >= 0 and node in steps[i].nodes else None

    return step_of


def _delta_keys(rd: RunData, metrics: list[str]) -> list[tuple[str, float]]:
    """Per trace metric: (args key with its unit, scale) of its delta over a span."""
    info = {m["name"]: m for m in rd.report.get("metrics", [])}
    out = []
    for name in metrics:
        m = info.get(name, {})
        unit, kind = m.get("unit", ""), m.get("kind", "counter")
        short = name[5:] if name.startswith("proc.") else name
        if unit == "bytes" and kind == "gauge":
            out.append((f"{short}_delta_mb", 1.0 / MB))
        elif unit == "bytes":
            out.append((f"{short}_bytes", 1.0))
        elif unit == "ns":
            out.append((f"{short}_ms", 1e-6))
        elif unit in ("", "count"):
            out.append((short, 1.0))
        else:
            out.append((f"{short} ({unit})", 1.0))
    return out


def _track(name: str, unit: str, kind: str) -> tuple[str, str, float, bool]:
    """(track name with its unit, unit, scale, is a rate) of a sampled metric.
    A cumulative counter is drawn as its rate between samples."""
    if name == "proc.rss":
        return "RSS (MB)", "MB", 1.0 / MB, False
    if name == "proc.cpu":
        return "process CPU (% of one core)", "%", 100.0, True
    if kind == "gauge":
        if unit == "bytes":
            return f"{name} (MB)", "MB", 1.0 / MB, False
        return (f"{name} ({unit})" if unit else name), unit, 1.0, False
    if unit == "bytes":
        return f"{name} (MB/s)", "MB/s", 1e9 / MB, True
    if unit == "ns":
        return f"{name} (% busy)", "%", 100.0, True
    u = "/s" if unit in ("", "count") else f"{unit}/s"
    return f"{name} ({u})", u, 1e9, True


def _counters(rd: RunData, origin: float,
              notes: list[str]) -> list[tuple[str, str, str, list[int], list[float]]]:
    """(track name, metric, unit, t ns from the run's start, values) per
    sampled metric that is not zero throughout."""
    try:
        sm = rd.samples()
    except (RuntimeError, ValueError, KeyError):
        return []
    names = list(sm["metrics"])
    t = sm["t_ns"].tolist()
    if not names:
        notes.append(f"no counter tracks: the sampler records no metric at {rd.level.name}")
        return []
    if not t:
        notes.append("no counter tracks: the run was shorter than the sampler's period")
        return []
    rows = sm["values"].tolist()
    info = {m["name"]: m for m in rd.report.get("sample_metrics", [])}
    out = []
    flat = []
    for j, metric in enumerate(names):
        m = info.get(metric, {})
        label, unit, scale, rate = _track(metric, m.get("unit", ""), m.get("kind", "gauge"))
        ts: list[int] = []
        vs: list[float] = []
        for i in range(len(t)):
            if rate:
                # The rate since the sample before (taken before the run too).
                if i == 0 or t[i] <= t[i - 1]:
                    continue
                v = (rows[i][j] - rows[i - 1][j]) / (t[i] - t[i - 1]) * scale
            else:
                v = rows[i][j] * scale
            a = round(t[i] - origin)
            if a >= 0 and math.isfinite(v):
                ts.append(a)
                vs.append(v)
        if ts and any(vs):
            out.append((label, metric, unit, ts, vs))
        elif ts:
            flat.append(metric)
    if flat:
        notes.append(f"no counter track for {', '.join(flat)}: zero throughout the run")
    return out
