"""Node timing and the profile report."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..model import MemoryProfile, NodeTiming, ProfileReport, RunSummary
from ..model.names import engine_name
from .common import total_ns, user_nodes

if TYPE_CHECKING:
    from ..collect.run import RunData


def node_timing(rd: RunData, nodes: list[str] | None = None) -> dict[str, NodeTiming]:
    """Per node: Setup / Computation / State update split, calls, average, share."""
    total = total_ns(rd)
    busy = rd.busy()
    out: dict[str, NodeTiming] = {}
    present = user_nodes(rd)
    wanted = set(nodes) if nodes is not None else None
    if wanted is not None:
        unknown = wanted - set(present)
        if unknown:
            raise ValueError(
                f"unknown node(s) {sorted(unknown)}; nodes in the last run: {present}"
            )
    rec = rd.rec
    for name in present:
        if wanted is not None and name not in wanted:
            continue
        calls, task_ns = rd.span_ns(name)
        attempts, comp_ns = rd.span_ns(name + "/compute")
        _, setup_ns = rd.span_ns(name + "/setup")
        _, upd_ns = rd.span_ns(name + "/state_update")
        # Writes and routing: the task's time after its function
        # returned (ChannelWrite, conditional edges, LangGraph's end of
        # run), timed without a span of its own; never more than the
        # task spent outside its function.
        write_ns = min(float(rec.post_ns.get(name, 0)), max(task_ns - comp_ns, 0.0))
        # State update: the node's channel writes and edge routing, then
        # the reducers (its share of the superstep's apply_writes).
        upd_ns += write_ns + rec.shared_update_ns.get(name, 0.0)
        # Setup: task preparation and input reading, plus what the task
        # span spends before the function (LangGraph's run machinery:
        # config, callbacks, retry back-off).
        if calls:
            setup_ns += max(task_ns - comp_ns - write_ns, 0.0)
        tot = setup_ns + comp_ns + upd_ns
        en = rd.enode(name)
        is_async = name in rec.async_wall
        if is_async:
            w = rec.async_wall[name]
            mn, mx = w[2] / 1e6, w[3] / 1e6
            p50 = p90 = p99 = None
        elif en is not None:
            mn, mx = en["min_ns"] / 1e6, en["max_ns"] / 1e6
            p50, p90, p99 = en["p50_ns"] / 1e6, en["p90_ns"] / 1e6, en["p99_ns"] / 1e6
        else:
            mn = mx = p50 = p90 = p99 = None
        n_err = sum(1 for e in rec.errors if e["node"] == name)
        # Share of the run's wall time: the node's time less what its
        # activations overlapped each other (concurrent branches, Send
        # fan-outs, async tasks), never more than the run.
        b = busy.get(name) or busy.get(engine_name(name))
        overlap = max(b[0] - b[1], 0.0) if b else 0.0
        share = min(max(tot - overlap, 0.0), total)
        out[name] = NodeTiming(
            name=name,
            calls=calls,
            total_ms=tot / 1e6,
            setup_ms=setup_ns / 1e6,
            computation_ms=comp_ns / 1e6,
            state_update_ms=upd_ns / 1e6,
            average_ms=(tot / calls / 1e6) if calls else 0.0,
            percent=100.0 * share / total,
            min_ms=mn, max_ms=mx, p50_ms=p50, p90_ms=p90, p99_ms=p99,
            attempts=attempts,
            errors=n_err,
            parent=name.rsplit("|", 1)[0] if "|" in name else None,
            asynchronous=is_async,
        )
    return out


def profile_report(rd: RunData, timing: dict[str, NodeTiming],
                   mem: MemoryProfile) -> ProfileReport:
    """Total, per-node time and share, memory."""
    return ProfileReport(
        level=rd.level.name,
        requested_level=rd.requested.name,
        level_override=rd.env_override(),
        mode=rd.mode,
        total_ms=total_ns(rd) / 1e6,
        profiler_state_tracking_ms=rd.rec.state_ns / 1e6,
        nodes={n: {"time_ms": t.total_ms, "percent": t.percent, "calls": t.calls}
               for n, t in timing.items()},
        memory=None if not mem.available else {
            "initial_mb": mem.initial_mb, "peak_mb": mem.peak_mb, "final_mb": mem.final_mb},
        memory_unavailable=None if mem.available else mem.reason,
        errors=list(rd.rec.errors),
        interrupts=list(rd.rec.interrupts),
        engine=rd.report["summary"],
        instrumentation_failures=rd.rec.instrument_failures,
    )


def run_summary(rd: RunData) -> RunSummary:
    return RunSummary(level=rd.level.name, mode=rd.mode, total_ms=total_ns(rd) / 1e6,
                      errors=list(rd.rec.errors), interrupts=list(rd.rec.interrupts),
                      engine=rd.report["summary"])
