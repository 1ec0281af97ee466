"""The data of the visualize_* charts (model/visual.py) from a run.

Charts need the run as it happened in time, which the per-node totals of the
other analyses fold away: each activation's start and end on its thread, the
sampler's series, the supersteps.  Everything here is read from the engine's
trace (spans with their thread, start, end and RSS), the sampler's samples
and the recorder's async spans, on one clock: ms from the opening of the
run's "__graph__" span (the critical path's origin).
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ..model.base import Unavailable
from ..model.names import GRAPH, PARALLEL, WARMUP, base_name
from ..model.visual import (
    COMPUTATION,
    GPU_ACTIVITY,
    SETUP,
    STATE_UPDATE,
    ComparisonBar,
    Heatmap,
    Lane,
    MemoryUsage,
    NodeBand,
    NodeComparison,
    Segment,
    Series,
    StepMark,
    StepMarks,
    TimelineData,
    TimelineSpan,
)
from .common import GPU_BACKENDS, MB, compute_nested, detailed_unavailable, node_metric_sum
from .common import user_nodes
from .memory import memory_profile, memory_unavailable, rss_series
from .resources import cpu_usage, gpu_usage
from .state import node_state_impact
from .steps import critical_path
from .timing import node_timing
from .trace import gpu_activity

if TYPE_CHECKING:
    from ..collect.run import RunData

_COMPUTE = "/compute"
_UPDATE = "/state_update"
ASYNC_LANE = "asyncio tasks"
LOOP_LANE = "main (graph loop)"

# Metrics every run can be compared on, with their units.
BUILTIN_METRICS = {"execution_time": "ms", "memory_usage": "MB", "cpu_time": "ms",
                   "state_size": "bytes", "calls": "calls"}
SLICE_METRICS = ("execution_time", "memory_usage")
# Engine metrics are named "<backend>.<what>": a name with one of these
# prefixes is an engine metric even when this run's level did not collect it.
_ENGINE_PREFIXES = ("proc", "papi", "clock", *GPU_BACKENDS)
_GPU_UTIL = re.compile(r"^[a-z_]+\.gpu\d+\.util$")  # the GPU backends' "nvml.gpu0.util"


def _user(name: str) -> bool:
    """A graph node of the user's (LangGraph's own tasks are "__x__")."""
    return name not in (GRAPH, WARMUP, PARALLEL) and not name.rsplit("|", 1)[-1].startswith("__")


def origin_ns(rd: RunData) -> float:
    """Engine time of the run's start: its first "__graph__" span's opening
    (the recorder's start when the trace has none)."""
    return rd.engine_offset_ns() + rd.t0_perf


class _Span:
    """A task or write application while the lanes are built (engine ns)."""

    __slots__ = ("node", "kind", "t0", "t1", "thread", "computes")

    def __init__(self, node: str, kind: str, t0: float, t1: float, thread: int | None) -> None:
        self.node, self.kind, self.t0, self.t1, self.thread = node, kind, t0, t1, thread
        self.computes: list[tuple[float, float]] = []


def _spans(rd: RunData) -> list[_Span]:
    """Every user node's task and write application of the run.

    An async node's engine spans are fragments (one per resumption of its
    coroutine); its task is the recorder's wall span instead (thread None)."""
    asyncs = rd.rec.async_spans
    off = rd.engine_offset_ns()
    out: list[_Span] = []
    computes: dict[tuple[str, int | None], list[tuple[float, float]]] = {}
    for name, th, t0, t1, _r0, _r1, _parent in rd.activations():
        if name is None or name in asyncs:
            continue
        base = base_name(name)
        if base is None or (not _user(base) and base != PARALLEL):
            continue
        if name.endswith(_COMPUTE):
            computes.setdefault((base, th), []).append((t0, t1))
        elif name.endswith(_UPDATE):
            out.append(_Span(base, "state_update", t0, t1, th))
        elif base == name and base != PARALLEL:
            out.append(_Span(name, "task", t0, t1, th))
    for key, flat in asyncs.items():
        base = base_name(key)
        if base is None or not _user(base):
            continue
        pairs = [(flat[i] + off, flat[i + 1] + off) for i in range(0, len(flat), 2)]
        if key.endswith(_COMPUTE):
            computes.setdefault((base, None), []).extend(pairs)
        elif base == key:
            out.extend(_Span(key, "task", a, b, None) for a, b in pairs)
    # Each attempt of a node's function to the latest-starting task of that
    # node on its thread that holds it (a retried task holds several).
    tasks: dict[tuple[str, int | None], list[_Span]] = {}
    for s in out:
        if s.kind == "task":
            tasks.setdefault((s.node, s.thread), []).append(s)
    for key, cs in computes.items():
        own = sorted(tasks.get(key, ()), key=lambda s: s.t0)
        for c0, c1 in cs:
            best = None
            for s in own:
                if s.t0 > c0:
                    break
                if c1 <= s.t1:
                    best = s
            if best is not None:
                best.computes.append((c0, c1))
    out.sort(key=lambda s: (s.t0, -s.t1))
    return out


def _segments(s: _Span, t0: float) -> list[Segment]:
    """A task's Setup / Computation / State update stretches (ms from t0):
    before and between the function's attempts is Setup (LangGraph's run
    machinery, retry back-off), after the last one the writes and routing."""
    ms = 1e6
    if s.kind != "task":
        return [Segment(STATE_UPDATE, (s.t0 - t0) / ms, (s.t1 - t0) / ms)]
    segs = []
    cur = s.t0
    for c0, c1 in sorted(s.computes):
        if c0 > cur:
            segs.append(Segment(SETUP, (cur - t0) / ms, (c0 - t0) / ms))
        segs.append(Segment(COMPUTATION, (max(c0, cur) - t0) / ms, (c1 - t0) / ms))
        cur = max(cur, c1)
    if s.t1 > cur:
        # After the function: its writes and routing.  A task that never
        # reached its function (it failed before) is Setup throughout.
        segs.append(Segment(STATE_UPDATE if s.computes else SETUP,
                            (cur - t0) / ms, (s.t1 - t0) / ms))
    return segs


def _rows(spans: list[TimelineSpan] | list[NodeBand]) -> int:
    """Give each span (sorted by start) the first row free at its start, so
    nested and overlapping spans are drawn one above the other; the rows used."""
    ends: list[float] = []
    for s in spans:
        for r, e in enumerate(ends):
            if e <= s.start_ms:
                s.row, ends[r] = r, s.end_ms
                break
        else:
            s.row = len(ends)
            ends.append(s.end_ms)
    return max(len(ends), 1)


def _lanes(rd: RunData, t0: float) -> list[Lane]:
    graph_th = [a[1] for a in rd.activations() if a[0] == GRAPH]
    loop = graph_th[0] if graph_th else None
    by: dict[int | None, list[TimelineSpan]] = {}
    busy: dict[int | None, float] = {}
    for s in _spans(rd):
        span = TimelineSpan(node=s.node, start_ms=(s.t0 - t0) / 1e6, end_ms=(s.t1 - t0) / 1e6,
                            kind=s.kind, segments=_segments(s, t0))
        by.setdefault(s.thread, []).append(span)
        if s.kind == "task":
            busy[s.thread] = busy.get(s.thread, 0.0) + span.end_ms - span.start_ms
    # The loop thread first, the asyncio tasks next, then the workers.
    order = sorted(by, key=lambda th: (th != loop, th is not None, th if th is not None else 0))
    lanes = []
    for th in order:
        spans = by[th]
        name = LOOP_LANE if th == loop else ASYNC_LANE if th is None else f"thread {th}"
        lanes.append(Lane(name=name, thread=th, rows=_rows(spans), busy_ms=busy.get(th, 0.0),
                          spans=spans))
    return lanes + _gpu_lanes(rd, t0)


def _gpu_lanes(rd: RunData, t0: float) -> list[Lane]:
    """A lane per CUDA device with its kernels, copies, sets and syncs
    (CUPTI's timeline), each span named after the node that launched it."""
    by: dict[Any, list[TimelineSpan]] = {}
    for e in gpu_activity(rd, []):
        a, b = (e["start_ns"] - t0) / 1e6, (e["end_ns"] - t0) / 1e6
        by.setdefault(e["device"], []).append(TimelineSpan(
            node=e["node"], start_ms=a, end_ms=b, kind="gpu",
            segments=[Segment(GPU_ACTIVITY, a, b)]))
    return [Lane(name=f"GPU {dev if dev is not None else '?'} (CUPTI)", thread=None,
                 rows=_rows(spans), busy_ms=sum(s.end_ms - s.start_ms for s in spans),
                 spans=spans, gpu=dev)
            for dev, spans in sorted(by.items(), key=lambda kv: (kv[0] is None, kv[0] or 0))]


def _step_marks(rd: RunData, timing: dict[str, Any]) -> StepMarks:
    cp = critical_path(rd, {n: t.total_ms for n, t in timing.items()})
    if not cp.available:
        return StepMarks(available=False, reason=cp.reason)
    return StepMarks(steps=[StepMark(s.index, s.start_ms, s.end_ms, list(s.nodes))
                            for s in cp.steps])


def _rss(rd: RunData, t0: float) -> Series:
    why = memory_unavailable(rd)
    if why:
        return Series(available=False, reason=why, name="RSS", unit="MB")
    ts, rss, _who = rss_series(rd)
    return Series(name="RSS", unit="MB", t_ms=[(t - t0) / 1e6 for t in ts],
                  values=[r / MB for r in rss])


def _sampled(rd: RunData, metric: str) -> tuple[list[float], list[float]]:
    """(t_ns, value) of one of the sampler's metrics ([] when not sampled)."""
    sm = rd.samples()
    if metric not in sm["metrics"]:
        return [], []
    i = sm["metrics"].index(metric)
    return sm["t_ns"].tolist(), [row[i] for row in sm["values"].tolist()]


def _cpu(rd: RunData, t0: float, wall_ms: float) -> tuple[Series, float | None]:
    """Process CPU in % of one core, averaged over windows.

    The sampler reads the process's CPU clock (/proc: 10 ms ticks), so a
    sample-to-sample difference is 0 or 100%: each point is the average
    over a window of several ticks (>= 20 ms, 50 ms on longer runs)."""
    why = detailed_unavailable(rd, "process CPU")
    ts, cpu = _sampled(rd, "proc.cpu")
    if why is None and len(ts) < 2:
        why = "the sampler took fewer than two readings of the process CPU in this run"
    if why:
        return Series(available=False, reason=why, name="CPU", unit="% of one core"), None
    rate = rd.report["summary"]["rate_hz"] or 100.0
    lo, hi = max(ts[0], t0), min(ts[-1], t0 + wall_ms * 1e6)
    span_ms = max((hi - lo) / 1e6, 0.0)
    w = max(min(50.0, span_ms / 5), 20.0, 2000.0 / rate, span_ms / 200)
    n = max(int(span_ms // w), 1) if span_ms > 0 else 0

    def at(t: float) -> float:
        j = min(max(bisect.bisect_right(ts, t), 1), len(ts) - 1)
        a, b = ts[j - 1], ts[j]
        f = (t - a) / (b - a) if b > a else 0.0
        return cpu[j - 1] + (cpu[j] - cpu[j - 1]) * min(max(f, 0.0), 1.0)

    t_ms: list[float] = []
    vals: list[float] = []
    step = (hi - lo) / n if n else 0.0
    for k in range(n):
        a, b = lo + k * step, lo + (k + 1) * step
        t_ms.append(((a + b) / 2 - t0) / 1e6)
        vals.append(max(100.0 * (at(b) - at(a)) / (b - a), 0.0))
    return Series(name="CPU", unit="% of one core", t_ms=t_ms, values=vals), step / 1e6


def _gpu(rd: RunData, t0: float) -> tuple[list[Series], str]:
    sm = rd.samples()
    names = [m for m in sm["metrics"] if _GPU_UTIL.match(m)]
    out = []
    for m in names:
        ts, v = _sampled(rd, m)
        out.append(Series(name=m, unit="%", t_ms=[(t - t0) / 1e6 for t in ts], values=v))
    if out:
        return out, ""
    g = gpu_usage(rd)
    return [], g.reason if not g.available else "no GPU utilisation was sampled in this run"


def timeline(rd: RunData) -> TimelineData:
    """The run's spans per thread, split into Setup / Computation / State
    update, its supersteps, and its RSS, CPU and GPU series."""
    t0 = origin_ns(rd)
    wall_ms = rd.wall_ns / 1e6
    cpu, window = _cpu(rd, t0, wall_ms)
    gpu, gpu_reason = _gpu(rd, t0)
    return TimelineData(
        level=rd.level.name, total_ms=wall_ms, lanes=_lanes(rd, t0),
        steps=_step_marks(rd, node_timing(rd)), rss=_rss(rd, t0), cpu=cpu,
        cpu_window_ms=window, gpu=gpu, gpu_reason=gpu_reason,
    )


# -- node comparison ------------------------------------------------------------
def _numbers(values: dict[str, Any]) -> dict[str, float]:
    """The numeric values of a custom metric (a node where it gave None, a
    string or raised has no bar)."""
    return {n: float(v) for n, v in values.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)}


def accepted_metrics(rd: RunData, custom: dict[str, dict[str, float]] | None) -> list[str]:
    return [*BUILTIN_METRICS, *(custom or {}), *rd.metric_names]


def _unknown(metric: str, accepted: Iterable[str]) -> ValueError:
    return ValueError(f"unknown metric {metric!r}; accepted: {', '.join(accepted)} "
                      f"(or any engine metric collected at the run's level, "
                      f"\"<backend>.<name>\" such as \"proc.minflt\")")


def _metric_values(rd: RunData, metric: str, custom: dict[str, dict[str, float]] | None
                   ) -> tuple[dict[str, float] | None, str, str]:
    """(per node value or None, unit, reason it is unavailable)."""
    timing = node_timing(rd)
    if metric == "execution_time":
        return {n: t.total_ms for n, t in timing.items()}, "ms", ""
    if metric == "calls":
        return {n: float(t.calls) for n, t in timing.items()}, "calls", ""
    if metric == "memory_usage":
        mp = memory_profile(rd)
        if not mp.available:
            return None, "MB", mp.reason
        return {n: m.impact_mb for n, m in mp.nodes.items()}, "MB", ""
    if metric == "cpu_time":
        cu = cpu_usage(rd, timing)
        vals = {n: r.cpu_ms for n, r in cu.nodes.items() if r.cpu_ms is not None}
        if not cu.available or not vals:
            return None, "ms", cu.reason or "no CPU clock was read for the nodes of this run"
        return vals, "ms", ""
    if metric == "state_size":
        try:
            return {n: float(s.bytes_delta) for n, s in node_state_impact(rd).items()}, "bytes", ""
        except Unavailable as e:
            return None, "bytes", e.reason
    if custom and metric in custom:
        return _numbers(custom[metric]), "", ""
    if metric in rd.metric_names:
        unit = next((m.get("unit", "") for m in rd.report["metrics"] if m["name"] == metric), "")
        scale = 1.0
        if unit == "ns":  # engine clocks in ns; the charts speak ms
            unit, scale = "ms", 1e-6
        vals = {}
        for n in user_nodes(rd):
            v = node_metric_sum(rd, n, metric)
            if v is not None:
                vals[n] = v * scale
        return vals, unit, ""
    backends = {b["name"] for b in rd.report["backends"]} | set(_ENGINE_PREFIXES)
    if metric.split(".", 1)[0] in backends and "." in metric:
        have = ", ".join(rd.metric_names) or "none"
        return None, "", (f"engine metric {metric!r} was not collected in this run "
                          f"(ProfilingLevel.{rd.level.name}; its engine metrics: {have})")
    raise _unknown(metric, accepted_metrics(rd, custom))


def node_comparison(rd: RunData, metric: str, custom: dict[str, dict[str, float]] | None = None,
                    top: int = 30) -> NodeComparison:
    """One metric across the run's nodes: every node's value, and bars for
    the top nodes by magnitude plus one "others (k nodes)" bar summing the
    rest.  custom: registered metrics' values, {metric: {node: value}}.
    Raises ValueError for a metric that is neither built in, custom nor an
    engine metric; a metric the run's level did not measure is unavailable."""
    if isinstance(top, bool) or not isinstance(top, int) or top < 1:
        raise ValueError(f"top must be an int >= 1 (bars before 'others'), not {top!r}")
    if not isinstance(metric, str):
        raise _unknown(repr(metric), accepted_metrics(rd, custom))
    vals, unit, why = _metric_values(rd, metric, custom)
    if vals is None:
        return NodeComparison(available=False, reason=why, metric=metric, unit=unit, top=top)
    pos = {n: i for i, n in enumerate(vals)}
    ranked = sorted(vals, key=lambda n: (-abs(vals[n]), pos[n]))
    bars = [ComparisonBar(n, vals[n]) for n in ranked[:top]]
    rest = ranked[top:]
    if rest:
        bars.append(ComparisonBar(f"others ({len(rest)} nodes)", sum(vals[n] for n in rest),
                                  len(rest)))
    return NodeComparison(metric=metric, unit=unit, values=vals, bars=bars, top=top,
                          others=len(rest))


# -- memory -----------------------------------------------------------------------
def memory_usage(rd: RunData) -> MemoryUsage:
    """RSS over the run, which node ran when, and the peak with its node."""
    mp = memory_profile(rd)
    if not mp.available:
        return MemoryUsage(available=False, reason=mp.reason)
    t0 = origin_ns(rd)
    ts, rss, _who = rss_series(rd)
    t_ms = [(t - t0) / 1e6 for t in ts]
    mb = [r / MB for r in rss]
    bands = [NodeBand(s.node, (s.t0 - t0) / 1e6, (s.t1 - t0) / 1e6)
             for s in _spans(rd) if s.kind == "task"]
    i = max(range(len(mb)), key=mb.__getitem__) if mb else None
    return MemoryUsage(
        t_ms=t_ms, rss_mb=mb, bands=bands, band_rows=_rows(bands), initial_mb=mp.initial_mb,
        final_mb=mp.final_mb, peak_mb=mp.peak_mb, peak_t_ms=t_ms[i] if i is not None else None,
        peak_node=mp.peak_node, total_ms=rd.wall_ns / 1e6,
        sample_rate_hz=rd.report["summary"]["rate_hz"],
    )


# -- heat maps --------------------------------------------------------------------
def _scaled(hm: Heatmap) -> Heatmap:
    """The colour scale: from 0 for values of one sign, centred on 0 for both."""
    flat = [v for r in hm.values for v in r if v is not None]
    lo, hi = (min(flat), max(flat)) if flat else (0.0, 0.0)
    if lo < 0 < hi:
        m = max(-lo, hi)
        hm.scale, hm.vmin, hm.vmax = "diverging", -m, m
    elif lo < 0:
        hm.scale, hm.vmin, hm.vmax = "sequential", lo, 0.0
    else:
        hm.scale, hm.vmin, hm.vmax = "sequential", 0.0, hi
    return hm


def heatmap_runs(runs: list[tuple[str, dict[str, dict[str, float]]]], metric: str) -> Heatmap:
    """Nodes by runs: runs is [(label, {node: {metric: value}})]; a node
    missing from a run (or without the metric there) is a None cell."""
    if not runs:
        raise ValueError("heatmap_runs needs at least one run: [(label, {node: {metric: value}})]")
    seen: dict[str, None] = {}
    for label, nodes in runs:
        if not isinstance(nodes, dict):
            raise ValueError(f"run {label!r}: expected {{node: {{metric: value}}}}, "
                             f"not {type(nodes).__name__}")
        for d in nodes.values():
            seen.update(dict.fromkeys(d))
    if metric not in seen:
        raise _unknown(metric, list(seen) or ["(the runs hold no metrics)"])
    rows = list(dict.fromkeys(n for _l, nodes in runs for n, d in nodes.items() if metric in d))
    values: list[list[float | None]] = []
    for n in rows:
        row: list[float | None] = []
        for _l, nodes in runs:
            v = nodes.get(n, {}).get(metric)
            row.append(float(v) if isinstance(v, (int, float)) and not isinstance(v, bool)
                       else None)
        values.append(row)
    return _scaled(Heatmap(metric=metric, unit=BUILTIN_METRICS.get(metric, ""), kind="runs",
                           rows=rows, columns=[str(lb) for lb, _n in runs], values=values))


def _slice_labels(total_ms: float, n: int) -> list[str]:
    w = total_ms / n
    p = 0 if w >= 10 else 1 if w >= 1 else 2 if w >= 0.1 else 3
    return [f"{k * w:.{p}f}-{(k + 1) * w:.{p}f} ms" for k in range(n)]


def heatmap_slices(rd: RunData, metric: str, slices: int = 10) -> Heatmap:
    """Nodes by equal time slices of one run.  execution_time: the ms of
    each node's tasks and own write applications inside the slice (a
    superstep's shared "(parallel)" application and the untimed task
    preparation are left out); memory_usage: the RSS change (MB) of the
    node's spans that ended in the slice."""
    if isinstance(slices, bool) or not isinstance(slices, int) or slices < 1:
        raise ValueError(f"slices must be an int >= 1, not {slices!r}")
    if metric not in SLICE_METRICS:
        raise _unknown(metric, SLICE_METRICS)
    unit = BUILTIN_METRICS[metric]
    total = rd.wall_ns / 1e6
    cols = _slice_labels(total, slices)
    if metric == "memory_usage":
        why = memory_unavailable(rd)
        if why:
            return Heatmap(available=False, reason=why, metric=metric, unit=unit,
                           kind="slices", columns=cols)
    t0 = origin_ns(rd)
    w = total / slices
    grid: dict[str, list[float]] = {}
    if metric == "execution_time":
        for s in _spans(rd):
            if s.node == PARALLEL:
                continue
            row = grid.setdefault(s.node, [0.0] * slices)
            a, b = (s.t0 - t0) / 1e6, (s.t1 - t0) / 1e6
            for k in range(max(int(a // w), 0), min(int(b // w), slices - 1) + 1):
                row[k] += max(min(b, (k + 1) * w) - max(a, k * w), 0.0)
    else:
        for name, _th, _a, b, r0, r1, _p in rd.activations():
            base = base_name(name)
            if base is None or r0 is None or r1 is None or not _user(base):
                continue
            if name.endswith(_COMPUTE) and base not in rd.rec.async_wall \
                    and compute_nested(rd, base):
                continue  # inside its task span, already counted there
            k = min(max(int((b - t0) / 1e6 // w), 0), slices - 1)
            grid.setdefault(base, [0.0] * slices)[k] += (r1 - r0) / MB
    rows = [n for n in user_nodes(rd) if n in grid]
    rows += [n for n in grid if n not in rows]
    return _scaled(Heatmap(metric=metric, unit=unit, kind="slices", rows=rows, columns=cols,
                           values=[list(grid[n]) for n in rows]))

