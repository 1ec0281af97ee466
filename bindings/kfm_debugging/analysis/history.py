"""Per-node figures of a run kept in Debugger.history, for comparisons
across runs (the heatmap of nodes x runs).

Taken when a run ends, so from the engine's aggregates only (no trace, no
samples): a node's execution time is the same sum node_timing makes (its
Setup, its task, its State update span and its share of parallel writes),
its memory the RSS change over its task span.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .common import MB, user_nodes

if TYPE_CHECKING:
    from ..collect.run import RunData


def run_nodes(rd: RunData) -> dict[str, dict[str, Any]]:
    rec = rd.rec
    rss = any(v[2] is not None for v in rd.totals().values())
    out: dict[str, dict[str, Any]] = {}
    for name in user_nodes(rd):
        calls, task = rd.span_ns(name)
        _, setup = rd.span_ns(name + "/setup")
        _, upd = rd.span_ns(name + "/state_update")
        ms = (task + setup + upd + rec.shared_update_ns.get(name, 0.0)) / 1e6
        row: dict[str, Any] = {"execution_time": ms, "calls": calls}
        if rss:
            row["memory_usage"] = (rd.rss_rise(name) or 0.0) / MB
        out[name] = row
    return out


def run_growth(rd: RunData) -> float | None:
    """MB the whole run left resident (RSS change over its "__graph__"
    span), None below STANDARD."""
    from ..model.names import GRAPH

    rise = rd.rss_rise(GRAPH)
    return None if rise is None else rise / MB


def history_figures(rd: RunData) -> dict[str, Any]:
    """What a Debugger.history entry adds from STANDARD up."""
    return {"nodes": run_nodes(rd), "memory_growth": run_growth(rd)}


def run_figures(rd: RunData) -> dict[str, Any]:
    """One run as the workflows across runs read it: its total time, level,
    mode, error and per-node figures (run_nodes)."""
    from .common import total_ns

    return {"total_ms": total_ns(rd) / 1e6, "level": rd.level.name, "mode": rd.mode,
            "error": None if rd.error is None else f"{type(rd.error).__name__}: {rd.error}",
            "nodes": run_nodes(rd), "memory_growth": run_growth(rd)}
