"""CPU, network, GPU and the overall resource utilization."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..model import (
    CpuUsage,
    GpuUsage,
    MemoryProfile,
    NetworkUsage,
    NodeResources,
    NodeTiming,
    ResourceUtilization,
    SamplerStats,
)
from ..model.level import ProfilingLevel
from ..model.names import GRAPH, WARMUP
from .common import GPU_BACKENDS, TASK_CLOCK, detailed_unavailable, node_metric_sum, total_ns
from .common import user_nodes

if TYPE_CHECKING:
    from ..collect.run import RunData


def cpu_usage(rd: RunData, timing: dict[str, NodeTiming]) -> CpuUsage:
    """CPU time per node (timing: node_timing(rd)) and in all the run's spans."""
    why = detailed_unavailable(rd, "CPU time")
    if why:
        return CpuUsage(available=False, reason=why, nodes={})
    nodes: dict[str, NodeResources] = {}
    for name, t in timing.items():
        u = node_metric_sum(rd, name, "proc.cpu_user")
        s = node_metric_sum(rd, name, "proc.cpu_sys")
        r = NodeResources(name=name, wall_ms=t.total_ms)
        comp = rd.metric(name + "/compute", "proc.cpu_user")
        if u is not None and s is not None:
            r.cpu_user_ms, r.cpu_sys_ms = u / 1e6, s / 1e6
            r.cpu_ms, r.cpu_source = (u + s) / 1e6, "getrusage(RUSAGE_THREAD)"
            r.computation_cpu_ms = ((comp or 0.0)
                                    + (rd.metric(name + "/compute", "proc.cpu_sys") or 0.0)) / 1e6
        elif TASK_CLOCK in rd.metric_names:
            # COMPREHENSIVE with a counter backend: the thread's CPU
            # clock from perf software events (no user/sys split).
            c = node_metric_sum(rd, name, TASK_CLOCK) or 0.0
            r.cpu_ms, r.cpu_source = c / 1e6, TASK_CLOCK
            r.computation_cpu_ms = (rd.metric(name + "/compute", TASK_CLOCK) or 0.0) / 1e6
        if r.cpu_ms is not None:
            r.cpu_percent = 100.0 * r.cpu_ms / t.total_ms if t.total_ms > 0 else 0.0
        r.minor_faults = node_metric_sum(rd, name, "proc.minflt")
        if r.minor_faults is None:
            r.minor_faults = node_metric_sum(rd, name, "papi.perf::PAGE-FAULTS")
        r.major_faults = node_metric_sum(rd, name, "proc.majflt")
        r.voluntary_switches = node_metric_sum(rd, name, "proc.vcsw")
        r.involuntary_switches = node_metric_sum(rd, name, "proc.ivcsw")
        if r.voluntary_switches is None:
            r.voluntary_switches = node_metric_sum(rd, name, "papi.perf::CONTEXT-SWITCHES")
        nodes[name] = r
    attributed = 0.0
    for ename, en in rd.report["nodes"].items():
        if ename == WARMUP:
            continue  # the thread set-up before the run's wall time starts
        ex = en["exclusive"]
        attributed += (ex.get("proc.cpu_user", 0.0) + ex.get("proc.cpu_sys", 0.0)
                       if "proc.cpu_user" in ex else ex.get(TASK_CLOCK, 0.0))
    proc_cpu = None
    sm = rd.samples()
    if "proc.cpu" in sm["metrics"] and len(sm["t_ns"]) >= 2:
        ci = sm["metrics"].index("proc.cpu")
        v = sm["values"]
        proc_cpu = (v[len(v) - 1, ci] - v[0, ci]) / 1e6
    # The state tracking's own CPU is inside the graph's spans, but its
    # time is not in the run's total: take it out of both.
    attributed = max(attributed - rd.rec.state_cpu_ns, 0.0)
    total_ms = total_ns(rd) / 1e6
    return CpuUsage(
        available=True, reason="",
        total_ms=total_ms,
        attributed_cpu_ms=attributed / 1e6,
        attributed_cpu_percent=100.0 * attributed / 1e6 / total_ms,
        process_cpu_ms_sampled=proc_cpu,
        nodes=nodes,
    )


def network_usage(rd: RunData) -> NetworkUsage:
    why = detailed_unavailable(rd, "network traffic")
    if why is None and "proc.net_rx" not in rd.metric_names:
        why = "the proc backend reports no network counters in this session"
    if why:
        return NetworkUsage(available=False, reason=why, nodes={})
    nodes = {}
    for name in user_nodes(rd):
        nodes[name] = {
            "rx_bytes": node_metric_sum(rd, name, "proc.net_rx"),
            "tx_bytes": node_metric_sum(rd, name, "proc.net_tx"),
        }
    g = rd.enode(GRAPH)
    return NetworkUsage(
        available=True, reason="",
        scope="network namespace totals (/proc/net/dev, all interfaces incl. loopback)",
        total_rx_bytes=g["inclusive"].get("proc.net_rx") if g else None,
        total_tx_bytes=g["inclusive"].get("proc.net_tx") if g else None,
        nodes=nodes,
    )


def gpu_usage(rd: RunData) -> GpuUsage:
    gpu = [b for b in rd.report["backends"] if any(k in b["name"] for k in GPU_BACKENDS)]
    if rd.level < ProfilingLevel.COMPREHENSIVE:
        return GpuUsage(available=False, backends=gpu,
                        reason=f"GPU metrics are collected at ProfilingLevel.COMPREHENSIVE "
                               f"(this run: {rd.level.name})")
    enabled = [b for b in gpu if b["enabled"] and b["available"]]
    if not enabled:
        if gpu:
            reason = "; ".join(f"{b['name']}: {b['reason']}" for b in gpu)
        else:
            probe = [b for b in rd.probe_backends() if any(k in b["name"] for k in GPU_BACKENDS)]
            reason = ("; ".join(f"{b['name']}: {b['reason']}" for b in probe)
                      or "this kfm build has no GPU backend (CUPTI, NVML, ROCm SMI)")
        return GpuUsage(available=False, backends=gpu, reason=reason)
    metrics = [m["name"] for m in rd.report["metrics"]
               if any(m["backend"] == b["name"] for b in enabled)]
    nodes = {name: {m: node_metric_sum(rd, name, m) for m in metrics}
             for name in user_nodes(rd)}
    details = {b["name"]: rd.backend_details(b["name"]) for b in enabled}
    call_ms = {}
    for name in nodes:
        calls, ns = rd.span_ns(name)
        if calls:
            call_ms[name] = ns / calls / 1e6
    return GpuUsage(available=True, reason="", backends=gpu, metrics=metrics,
                    nodes=nodes, details=details, caveats=window_caveats(call_ms, details))


def window_caveats(call_ms: dict[str, float], details: dict[str, Any]) -> dict[str, str]:
    """{node: caveat} for the nodes whose mean call is shorter than a GPU
    driver's averaging window (NVML's utilisation: 1/6 to 1 s; its power
    where no instant reading exists: 1 s), from the backends' descriptions
    ("averaging_ms" per device): their sampled values are the window's."""
    windows: list[tuple[int, str]] = []

    def walk(d: Any) -> None:
        if isinstance(d, dict):
            avg = d.get("averaging_ms")
            if isinstance(avg, dict):
                for what, ms in avg.items():
                    if isinstance(ms, (int, float)) and ms > 0:
                        windows.append((int(ms), what))
            for v in d.values():
                walk(v)
        elif isinstance(d, list):
            for v in d:
                walk(v)

    walk(details)
    if not windows:
        return {}
    ms, _ = max(windows)
    what = ", ".join(sorted({w for m, w in windows if m == ms}))
    return {n: (f"calls of {c:.1f} ms are shorter than the driver's {ms} ms averaging window "
                f"({what}): its sampled values describe the window, much of it outside the node")
            for n, c in call_ms.items() if c < ms}


def resource_utilization(rd: RunData, memory: MemoryProfile, cpu: CpuUsage,
                         network: NetworkUsage, gpu: GpuUsage) -> ResourceUtilization:
    summ = rd.report["summary"]
    out = ResourceUtilization(
        level=rd.level.name,
        total_ms=total_ns(rd) / 1e6,
        threads=summ["threads"],
        sampler=SamplerStats(rate_hz=summ["rate_hz"], samples=summ["samples"],
                             cpu_ms=summ["sampler_cpu_ns"] / 1e6,
                             late_p99_us=summ["sampler_late_p99_ns"] / 1e3),
        memory=memory, cpu=cpu, network=network, gpu=gpu,
        backends=rd.report["backends"],
    )
    if rd.level >= ProfilingLevel.DETAILED and "proc.io_read" in rd.metric_names:
        g = rd.enode(GRAPH)
        out.io = {"read_bytes": g["inclusive"].get("proc.io_read") if g else None,
                  "write_bytes": g["inclusive"].get("proc.io_write") if g else None}
    return out
