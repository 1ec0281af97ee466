"""Text reports: the show_* output, from result types (model/) only.

Each function returns the text of one report, title included, ending in a
newline; the Debugger writes it where show_* was asked to.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

from ..model import (
    CpuUsage,
    GpuUsage,
    MemoryProfile,
    MemoryTimeline,
    NetworkUsage,
    NodeTiming,
    ProfileReport,
    ResourceUtilization,
    StateImpact,
    StateSizeAnalysis,
    StateSizeTimeline,
)


def fmt_ms(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.2f}ms"


def fmt_mb(v: float | None, sign: bool = False) -> str:
    if v is None:
        return "n/a"
    return f"{v:+.1f}MB" if sign else f"{v:.1f}MB"


def unavailable(reason: str) -> str:
    """The one way a text report says a result was not measured."""
    return f"unavailable: {reason}"


def section(title: str, data: Any, body: Callable[[Any, io.StringIO], None]) -> str:
    """title, then body(data) or "unavailable: <reason>" when data (a
    Section) was not measured."""
    f = io.StringIO()
    print(title, file=f)
    if not getattr(data, "available", True):
        print(unavailable(data.reason), file=f)
    else:
        body(data, f)
    return f.getvalue()


# -- profile and timing ---------------------------------------------------------
def _profile_body(r: ProfileReport, f: io.StringIO) -> None:
    ov = r.level_override
    if ov is not None and ov["level_overridden"]:
        print(f"level overridden by KFM_CONFIG: {ov['KFM_CONFIG']} (level {ov['level']}, "
              f"the Debugger asked for {ov['requested_level']})", file=f)
    elif ov is not None and ov["ignored"]:
        print(f"KFM_CONFIG ignored: {ov['ignored']}", file=f)
    print(f"Total execution time: {r.total_ms:.2f}ms", file=f)
    print("", file=f)
    print("Node Execution Times:", file=f)
    for n, d in r.nodes.items():
        print(f"- {n}: {d['time_ms']:.2f}ms ({d['percent']:.1f}%)", file=f)
    print("", file=f)
    print("Memory Usage:", file=f)
    if r.memory is None:
        print(unavailable(str(r.memory_unavailable)), file=f)
    else:
        print(f"Initial: {fmt_mb(r.memory['initial_mb'])}", file=f)
        print(f"Peak: {fmt_mb(r.memory['peak_mb'])}", file=f)
        print(f"Final: {fmt_mb(r.memory['final_mb'])}", file=f)
    for e in r.errors:
        print(f"Error in {e['node']}: {e['type']}: {e['message']}", file=f)
    for e in r.interrupts:
        print(f"Interrupted in {e['node']}: {e['type']}", file=f)


def profile_report(r: ProfileReport) -> str:
    return section("Performance Profile:", r, _profile_body)


def node_timing(timing: dict[str, NodeTiming], detailed: bool = False) -> str:
    f = io.StringIO()
    if not detailed:
        print("Node Timing:", file=f)
        for t in timing.values():
            print(f"- {t.name}: {t.total_ms:.2f}ms ({t.percent:.1f}%), called {t.calls} "
                  f"time{'s' if t.calls != 1 else ''}, average {t.average_ms:.2f}ms", file=f)
        return f.getvalue()
    first = True
    for t in timing.values():
        if not first:
            print("", file=f)
        first = False
        print(f"Node: {t.name}", file=f)
        print(f"- Total time: {t.total_ms:.2f}ms", file=f)
        print(f"  - Setup: {t.setup_ms:.2f}ms", file=f)
        print(f"  - Computation: {t.computation_ms:.2f}ms", file=f)
        print(f"  - State update: {t.state_update_ms:.2f}ms", file=f)
        print(f"- Called: {t.calls} time{'s' if t.calls != 1 else ''}", file=f)
        print(f"- Average time: {t.average_ms:.2f}ms", file=f)
        print(f"- Percentage of total: {t.percent:.1f}%", file=f)
        if t.attempts > t.calls:
            print(f"- Attempts (with retries): {t.attempts}", file=f)
        if t.errors:
            print(f"- Errors: {t.errors}", file=f)
    return f.getvalue()


# -- memory ---------------------------------------------------------------------
def _memory_body(m: MemoryProfile, f: io.StringIO) -> None:
    print(f"Initial memory: {fmt_mb(m.initial_mb)}", file=f)
    print(f"Peak memory: {fmt_mb(m.peak_mb)} (at node: {m.peak_node})", file=f)
    print(f"Final memory: {fmt_mb(m.final_mb)}", file=f)
    print(f"Memory growth: {fmt_mb(m.growth_mb, sign=True)}", file=f)
    print("", file=f)
    print("Node Memory Impact:", file=f)
    for n in m.nodes.values():
        extra = ""
        if n.peak_mb is not None and n.peak_mb > max(n.impact_mb, 0.0) + 0.05:
            extra = f" (peak: {fmt_mb(n.peak_mb, sign=True)})"
        print(f"- {n.name}: {fmt_mb(n.impact_mb, sign=True)}{extra}", file=f)


def memory_profile(m: MemoryProfile) -> str:
    return section("Memory Profile:", m, _memory_body)


def memory_timeline(tl: MemoryTimeline, width: int = 40) -> str:
    def body(tl: MemoryTimeline, f: io.StringIO) -> None:
        pts = tl.points
        if not pts:
            print("(no readings)", file=f)
            return
        lo = min(p["rss_mb"] for p in pts)
        hi = max(p["rss_mb"] for p in pts)
        span = max(hi - lo, 1e-9)
        for p in pts:
            bar = "#" * (1 + int((p["rss_mb"] - lo) / span * (width - 1)))
            print(f"{p['t_ms']:9.2f}ms {p['rss_mb']:8.1f}MB {bar:<{width}} {p['node'] or ''}",
                  file=f)

    return section("Memory Timeline:", tl, body)


def _node_memory_body(m: MemoryProfile, f: io.StringIO) -> None:
    for n in m.nodes.values():
        print(f"- {n.name}: impact {fmt_mb(n.impact_mb, sign=True)}, "
              f"peak rise {fmt_mb(n.peak_mb, sign=True)}, "
              f"peak RSS {fmt_mb(n.peak_rss_mb)}, calls {n.calls}", file=f)


def node_memory_usage(m: MemoryProfile) -> str:
    return section("Node Memory Usage:", m, _node_memory_body)


# -- resources ------------------------------------------------------------------
def _cpu_body(c: CpuUsage, f: io.StringIO) -> None:
    print(f"CPU time in nodes: {c.attributed_cpu_ms:.2f}ms "
          f"({c.attributed_cpu_percent:.1f}% of {c.total_ms:.2f}ms wall)", file=f)
    for r in c.nodes.values():
        split = (f"user {fmt_ms(r.cpu_user_ms)}, sys {fmt_ms(r.cpu_sys_ms)}"
                 if r.cpu_user_ms is not None else f"CPU {fmt_ms(r.cpu_ms)}")
        print(f"- {r.name}: {split} "
              f"({(r.cpu_percent or 0):.1f}% of its {r.wall_ms:.2f}ms), "
              f"faults {r.minor_faults or 0:.0f}/{r.major_faults or 0:.0f}, "
              f"switches {r.voluntary_switches or 0:.0f}/{r.involuntary_switches or 0:.0f}",
              file=f)


def cpu_usage(c: CpuUsage) -> str:
    return section("CPU Usage:", c, _cpu_body)


def _network_body(n: NetworkUsage, f: io.StringIO) -> None:
    print(f"Total: received {n.total_rx_bytes or 0:.0f} B, sent {n.total_tx_bytes or 0:.0f} B "
          f"({n.scope})", file=f)
    for name, d in n.nodes.items():
        print(f"- {name}: received {d['rx_bytes'] or 0:.0f} B, sent {d['tx_bytes'] or 0:.0f} B",
              file=f)


def network_usage(n: NetworkUsage) -> str:
    return section("Network Usage:", n, _network_body)


def _gpu_body(g: GpuUsage, f: io.StringIO) -> None:
    for name, vals in g.nodes.items():
        txt = ", ".join(f"{k}={v:.0f}" for k, v in vals.items() if v is not None)
        print(f"- {name}: {txt or 'no GPU activity recorded'}", file=f)
        if name in g.caveats:
            print(f"  (sampled GPU values: {g.caveats[name]})", file=f)


def gpu_usage(g: GpuUsage) -> str:
    return section("GPU Usage:", g, _gpu_body)


def _resources_body(r: ResourceUtilization, f: io.StringIO) -> None:
    print(f"Level: {r.level}, wall time {r.total_ms:.2f}ms, threads {r.threads}", file=f)

    def part(label: str, d: Any, text: Callable[[Any], str]) -> None:
        # text(d) only when measured: an unavailable part has just its reason.
        print(f"{label}: " + (text(d) if d.available else unavailable(d.reason)), file=f)

    part("Memory", r.memory,
         lambda m: f"peak {fmt_mb(m.peak_mb)}, growth {fmt_mb(m.growth_mb, True)}")
    part("CPU", r.cpu, lambda c: f"{c.attributed_cpu_ms:.2f}ms in nodes "
                                 f"({c.attributed_cpu_percent:.1f}% of wall)")
    part("Network", r.network, lambda n: f"received {n.total_rx_bytes or 0:.0f} B, "
                                         f"sent {n.total_tx_bytes or 0:.0f} B")
    if r.io is not None:
        print(f"Disk I/O: read {r.io['read_bytes'] or 0:.0f} B, "
              f"written {r.io['write_bytes'] or 0:.0f} B", file=f)
    part("GPU", r.gpu, lambda g: "measured (see show_gpu_usage)")
    s = r.sampler
    print(f"Sampler: {s.rate_hz:.0f} Hz, {s.samples} samples, "
          f"{s.cpu_ms:.2f}ms CPU", file=f)


def resource_utilization(r: ResourceUtilization) -> str:
    return section("Resource Utilization:", r, _resources_body)


# -- state size -----------------------------------------------------------------
def _state_timeline_body(tl: StateSizeTimeline, f: io.StringIO) -> None:
    for p in tl.points:
        nodes = ", ".join(p["nodes"]) or "-"
        print(f"- step {p['index']} ({p['t_ms']:.2f}ms) after {nodes}: "
              f"{p['size_bytes']} bytes, {p['items']} items", file=f)


def state_size_timeline(tl: StateSizeTimeline) -> str:
    return section("State Size Timeline:", tl, _state_timeline_body)


def _state_analysis_body(a: StateSizeAnalysis, f: io.StringIO) -> None:
    print(f"Initial state: {a.initial_bytes} bytes ({a.initial_items} items)", file=f)
    print(f"Final state: {a.final_bytes} bytes ({a.final_items} items)", file=f)
    print(f"Largest: {a.max_bytes} bytes (after {', '.join(a.max_after)})", file=f)
    print(f"Growth: {a.growth_bytes:+d} bytes over {a.steps} steps", file=f)
    if a.unsizable_count:
        kinds = "; ".join(f"{u['type']}: {u['reason']}" + (f" (x{u['count']})"
                                                            if u["count"] > 1 else "")
                          for u in a.unsizable[:5])
        more = "; ..." if len(a.unsizable) > 5 else ""
        print(f"{a.unsizable_count} values could not be sized: {kinds}{more}", file=f)


def state_size_analysis(a: StateSizeAnalysis) -> str:
    return section("State Size Analysis:", a, _state_analysis_body)


def node_state_impact(imp: dict[str, StateImpact] | None, reason: str = "") -> str:
    """imp None: unavailable for reason."""
    f = io.StringIO()
    print("Node State Impact:", file=f)
    if imp is None:
        print(unavailable(reason), file=f)
        return f.getvalue()
    for s in imp.values():
        print(f"- {s.name}: {s.bytes_delta:+d} bytes, {s.items_delta:+d} items "
              f"over {s.steps} step{'s' if s.steps != 1 else ''}", file=f)
    return f.getvalue()
