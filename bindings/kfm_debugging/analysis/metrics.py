"""Custom metrics: what a registered ``fn(node_stats, execution_stats)``
is given, and its evaluation over the nodes of a run.

node_stats holds every figure measured for the node (times in ms, as the
spec's example reads ``node_stats["execution_time"]``); a figure that was not
measured at the run's level is absent, not zero.  execution_stats holds the
run's figures, LLM token usage included (``total_tokens``, ``input_tokens``,
``output_tokens`` for the run, ``tokens_by_node`` per node).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..model import MetricResult
from .findings import Evidence, counters, counters_unavailable, gpu_figures

_TOKEN_KEYS = ("input_tokens", "output_tokens", "total_tokens")


def node_stats(ev: Evidence, name: str) -> dict[str, Any]:
    t = ev.timing[name]
    d: dict[str, Any] = {
        "name": name, "execution_time": t.total_ms, "calls": t.calls,
        "average_time": t.average_ms, "setup_time": t.setup_ms,
        "computation_time": t.computation_ms, "state_update_time": t.state_update_ms,
        "percent": t.percent, "critical_path_time": ev.critical(name),
        "critical_path_percent": ev.percent(name), "attempts": t.attempts, "errors": t.errors,
    }
    for k in ("min_ms", "max_ms", "p50_ms", "p90_ms", "p99_ms"):
        v = getattr(t, k)
        if v is not None:
            d[k[:-3] + "_time"] = v
    r = ev.cpu.nodes.get(name) if ev.cpu.available else None
    if r is not None:
        for k in ("cpu_ms", "cpu_user_ms", "cpu_sys_ms", "computation_cpu_ms"):
            v = getattr(r, k)
            if v is not None:
                d[k[:-3] + "_time"] = v
        for k in ("cpu_percent", "minor_faults", "major_faults", "voluntary_switches",
                  "involuntary_switches", "io_read_bytes", "io_write_bytes", "net_rx_bytes",
                  "net_tx_bytes"):
            v = getattr(r, k)
            if v is not None:
                d[k] = v
    if ev.mem.available and name in ev.mem.nodes:
        m = ev.mem.nodes[name]
        d["memory_usage"] = m.impact_mb
        if m.peak_mb is not None:
            d["peak_memory"] = m.peak_mb
        if m.peak_rss_mb is not None:
            d["peak_rss"] = m.peak_rss_mb
    if ev.state is not None and name in ev.state:
        s = ev.state[name]
        d["state_size_delta"] = s.bytes_delta
        d["state_items_delta"] = s.items_delta
        d["max_state_size"] = s.max_state_bytes
    tok = (ev.tokens or {}).get(name)
    if ev.tokens is not None:
        for k in _TOKEN_KEYS:
            d[k] = tok.get(k, 0) if tok else 0
        d["model_calls"] = tok.get("calls", 0) if tok else 0
        if tok and tok.get("model_ms") is not None:
            d["model_time"] = tok["model_ms"]
    if not counters_unavailable(ev.rd):
        d.update(counters(ev.rd, name))
    for k, v in gpu_figures(ev.rd, name).items():
        d["gpu_" + k.replace("_ms", "_time")] = v
    return d


def execution_stats(ev: Evidence) -> dict[str, Any]:
    rd = ev.rd
    d: dict[str, Any] = {
        "total_time": ev.total_ms, "level": rd.level.name, "mode": rd.mode,
        "nodes": len(ev.timing), "errors": len(rd.rec.errors),
    }
    if ev.cp.available:
        d["supersteps"] = len(ev.cp.steps)
        d["parallel_supersteps"] = ev.cp.parallel_steps
    if ev.mem.available:
        d.update(initial_memory=ev.mem.initial_mb, peak_memory=ev.mem.peak_mb,
                 final_memory=ev.mem.final_mb, memory_growth=ev.mem.growth_mb)
    if ev.cpu.available and ev.cpu.attributed_cpu_ms is not None:
        d["cpu_time"] = ev.cpu.attributed_cpu_ms
    if ev.tokens is not None:
        tot = {k: 0 for k in _TOKEN_KEYS}
        calls = 0
        for v in ev.tokens.values():
            for k in _TOKEN_KEYS:
                tot[k] += v.get(k, 0)
            calls += v.get("calls", 0)
        d.update(tot)
        d["model_calls"] = calls
        d["tokens_by_node"] = {n: dict(v) for n, v in ev.tokens.items()}
        if rd.tokens is not None:
            d["tokens_by_model"] = rd.tokens.by_model()
    return d


def evaluate(ev: Evidence, name: str, fn: Callable[[dict[str, Any], dict[str, Any]], Any],
             nodes: list[str] | None = None) -> MetricResult:
    """fn on every node of the run; a node where fn raises is reported with
    the exception and the others still get their value."""
    run = execution_stats(ev)
    out = MetricResult(name=name)
    for n in nodes if nodes is not None else ev.timing:
        try:
            v = fn(node_stats(ev, n), dict(run))
        except Exception as e:  # noqa: BLE001 - a user metric's failure is its result
            out.errors[n] = f"{type(e).__name__}: {e}"
            continue
        out.values[n] = v
    return out
