"""Memory: the run's RSS profile, timeline and per-node impact."""

from __future__ import annotations

import bisect
from typing import TYPE_CHECKING, Any

from ..model import MemoryProfile, MemoryTimeline, NodeMemory
from ..model.level import ProfilingLevel
from ..model.names import GRAPH, PARALLEL, SUFFIXES, base_name
from .common import MB, compute_nested, user_nodes

if TYPE_CHECKING:
    from ..collect.run import RunData


def memory_unavailable(rd: RunData) -> str | None:
    if rd.level < ProfilingLevel.STANDARD:
        return (f"memory is measured from ProfilingLevel.STANDARD up "
                f"(this run: {rd.level.name})")
    if "proc.rss" not in rd.metric_names:
        reasons = [b["reason"] for b in rd.report["backends"] if b["name"] == "proc"]
        return "the proc backend is not enabled" + (f": {reasons[0]}" if reasons else "")
    return None


def rss_series(rd: RunData) -> tuple[list[float], list[float], list[str | None]]:
    """Merged (t_ns, rss, node) from samples and transition events."""
    pts: list[tuple[float, float, str | None]] = []
    sm = rd.samples()
    if "proc.rss" in sm["metrics"]:
        ri = sm["metrics"].index("proc.rss")
        vals = sm["values"].tolist()
        offs = sm["offsets"].tolist()
        nodes = sm["nodes"].tolist()
        names = sm["names"]
        for i, t in enumerate(sm["t_ns"].tolist()):
            active = [base_name(names.get(nodes[k])) for k in range(offs[i], offs[i + 1])]
            active = [a for a in active if a and not a.startswith("__")]
            pts.append((t, vals[i][ri], active[-1] if active else None))
    for name, _th, t0, t1, r0, r1, _p in rd.activations():
        b = base_name(name)
        label = None if b is None or b.startswith("__") else b
        if r0 is not None:
            pts.append((t0, r0, label))
            pts.append((t1, r1, label))
    pts.sort(key=lambda p: p[0])
    return [p[0] for p in pts], [p[1] for p in pts], [p[2] for p in pts]


def memory_profile(rd: RunData) -> MemoryProfile:
    why = memory_unavailable(rd)
    if why:
        return MemoryProfile(available=False, reason=why)
    ts, rss, who = rss_series(rd)
    acts = rd.activations()
    graph_acts = [a for a in acts if a[0] == GRAPH and a[4] is not None]
    if graph_acts:
        initial = graph_acts[0][4]
        final = graph_acts[-1][5]
    elif rss:
        initial, final = rss[0], rss[-1]
    else:
        return MemoryProfile(available=False, reason="no memory reading was recorded")
    peak_i = max(range(len(rss)), key=rss.__getitem__) if rss else None
    peak = rss[peak_i] if peak_i is not None else initial
    peak_node = who[peak_i] if peak_i is not None else None
    if peak_i is not None and peak_node is None:
        # The highest reading fell between nodes: name the node that ran
        # when RSS first came within 0.5% of it.
        for r, w in zip(rss, who):
            if w is not None and r >= peak - 0.005 * peak:
                peak_node = w
                break
    en = rd.enode(GRAPH)
    if en and en.get("peak_rss") is not None and en["peak_rss"] > peak:
        peak = en["peak_rss"]
    prof = MemoryProfile(
        available=True, initial_mb=initial / MB, peak_mb=peak / MB,
        peak_node=peak_node or "(between nodes)", final_mb=final / MB,
        growth_mb=(final - initial) / MB,
    )
    prof.nodes = node_memory(rd, ts, rss)
    return prof


def node_memory(rd: RunData, ts: list[float], rss: list[float]) -> dict[str, NodeMemory]:
    out: dict[str, NodeMemory] = {}
    by_node: dict[str, list[tuple[Any, ...]]] = {}
    for a in rd.activations():
        b = base_name(a[0])
        if b is not None and b != GRAPH:
            by_node.setdefault(b, []).append(a)
    names = user_nodes(rd)
    if any(rd.enode(PARALLEL + s) for s in SUFFIXES):
        names.append(PARALLEL)
    for name in names:
        impact = 0.0
        for part in ("", "/setup", "/state_update"):
            v = rd.metric(name + part, "proc.rss")
            impact += v or 0.0
        if name in rd.rec.async_wall or not compute_nested(rd, name):
            impact += rd.metric(name + "/compute", "proc.rss") or 0.0
        peak_rise: float | None = None
        peak_abs: float | None = None
        acts = by_node.get(name, [])
        # A call's writes are applied in its state_update span after the task
        # span ends: the rise is measured over both, from the task's start
        # (where RSS values are the sampler's, growth seen late would
        # otherwise fall between the two and be lost to both).
        updates = sorted((a[2], a[3], a[5]) for a in acts if a[0].endswith("/state_update"))
        starts = [u[0] for u in updates]
        for n_, _th, t0, t1, r0, r1, _p in acts:
            if r0 is None:
                continue
            end, r_end = t1, r1
            if n_ == name:
                k = bisect.bisect_left(starts, t1)
                if k < len(updates) and updates[k][2] is not None:
                    end, r_end = updates[k][1], updates[k][2]
            lo = bisect.bisect_left(ts, t0)
            hi = bisect.bisect_right(ts, end)
            top = max([r0, r1, r_end, *rss[lo:hi]])
            rise = top - r0
            peak_rise = rise if peak_rise is None else max(peak_rise, rise)
            peak_abs = top if peak_abs is None else max(peak_abs, top)
        for part in ("", "/setup", "/compute", "/state_update"):
            en = rd.enode(name + part)
            if en and en.get("peak_rss") is not None:
                peak_abs = en["peak_rss"] if peak_abs is None else max(peak_abs, en["peak_rss"])
        calls, _ = rd.span_ns(name)
        out[name] = NodeMemory(
            name=name, calls=calls, impact_mb=impact / MB,
            peak_mb=None if peak_rise is None else peak_rise / MB,
            peak_rss_mb=None if peak_abs is None else peak_abs / MB,
        )
    return out


def memory_timeline(rd: RunData, max_points: int | None = None) -> MemoryTimeline:
    """RSS over the run: points {t_ms, rss_mb, node} from samples and transitions."""
    why = memory_unavailable(rd)
    if why:
        return MemoryTimeline(available=False, reason=why, points=[])
    ts, rss, who = rss_series(rd)
    pts = [{"t_ms": t / 1e6, "rss_mb": r / MB, "node": w} for t, r, w in zip(ts, rss, who)]
    if max_points and len(pts) > max_points:
        step = len(pts) / max_points
        pts = [pts[int(i * step)] for i in range(max_points)]
    return MemoryTimeline(available=True, reason="", points=pts,
                          sample_rate_hz=rd.report["summary"]["rate_hz"])
