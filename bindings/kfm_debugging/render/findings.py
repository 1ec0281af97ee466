"""Text reports of the analysis calls: bottlenecks, one node's analysis,
custom metrics.  From result types only, like text.py (whose helpers they
share)."""

from __future__ import annotations

import io
import math
from typing import Any

from ..model import (
    Bottleneck,
    CriticalPath,
    MetricResult,
    NodeAnalysis,
    NodeSuggestions,
    Suggestion,
    WhatIf,
)
from .text import fmt_mb, fmt_ms, unavailable


def gain_text(s: Suggestion) -> str:
    """'expected gain 40.00ms' or 'gain up to 40.00ms' (an upper bound)."""
    if s.expected_gain_ms is None:
        return "no time gain measured"
    return (f"gain up to {s.expected_gain_ms:.2f}ms" if s.upper_bound
            else f"expected gain {s.expected_gain_ms:.2f}ms")


def common_unavailable(b: dict[str, Bottleneck]) -> dict[str, str]:
    """Figures unavailable for every bottleneck alike (the run's level, a
    missing backend): said once, not per node."""
    items = list(b.values())
    if len(items) < 2:
        return {}
    return {k: v for k, v in items[0].unavailable.items()
            if all(x.unavailable.get(k) == v for x in items[1:])}


def _gain(s: Suggestion) -> str:
    return gain_text(s) + (f" ({s.gain_basis})" if s.gain_basis else "")


def _suggestion(s: Suggestion, f: io.StringIO, indent: str) -> None:
    print(f"{indent}Suggestion [{s.kind}]: {s.suggestion}", file=f)
    print(f"{indent}  {_gain(s)}", file=f)
    figs = ", ".join(f"{k}={_fig(v)}" for k, v in s.evidence.items())
    if figs:
        print(f"{indent}  from: {figs}", file=f)


def _fig(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"
    if isinstance(v, (list, tuple, set, frozenset)):
        return "{" + ", ".join(str(x) for x in v) + "}"
    return str(v)


def _path_line(cp: CriticalPath) -> str:
    if not cp.available:
        return "critical path " + unavailable(cp.reason) + " (shares are of the run's wall time)"
    return (f"Critical path: {len(cp.steps)} supersteps ({cp.parallel_steps} parallel), "
            f"{fmt_ms(cp.steps_ms)} of {fmt_ms(cp.total_ms)}; the rest is LangGraph's input, "
            f"output and bookkeeping")


def bottlenecks(cp: CriticalPath, b: dict[str, Bottleneck],
                sug: dict[str, NodeSuggestions]) -> str:
    f = io.StringIO()
    print("Bottleneck Analysis:", file=f)
    print(_path_line(cp), file=f)
    if not b:
        print("No bottleneck: no node reaches the threshold on the critical path.", file=f)
        return f.getvalue()
    common = common_unavailable(b)
    for what, why in common.items():
        print(f"{what} {unavailable(why)}", file=f)
    for i, (name, x) in enumerate(b.items(), 1):
        print(f"{i}. {name}: {fmt_ms(x.execution_time)}, {x.percent:.1f}% of the run on its "
              f"critical path ({fmt_ms(x.critical_ms)}), {x.calls} call(s)", file=f)
        for fd in x.findings:
            print(f"   - {fd.kind}: {fd.summary}", file=f)
        if x.slow_by_nature:
            print(f"   - slow by nature: {x.slow_by_nature}", file=f)
        if not x.findings and not x.slow_by_nature:
            print("   - no class: none of the measured figures stands out", file=f)
        for what, why in x.unavailable.items():
            if what not in common:
                print(f"   - {what} {unavailable(why)}", file=f)
        s = sug.get(name)
        if s is not None:
            if s.suggestions:
                for one in s.suggestions:
                    _suggestion(one, f, "   ")
            else:
                print(f"   Suggestion: {s.suggestion}", file=f)
    return f.getvalue()


def _whatif(w: WhatIf) -> str:
    k = "took no time" if math.isinf(w.factor) else f"were {w.factor:g}x faster"
    return (f"if its Computation {k}: run {fmt_ms(w.estimated_ms)} instead of "
            f"{fmt_ms(w.measured_ms)} (-{fmt_ms(w.saved_ms)}, {w.steps} superstep(s))"
            + (f"; {w.note}" if w.note else ""))


def node_analysis(a: NodeAnalysis, sug: list[Suggestion]) -> str:
    f = io.StringIO()
    t = a.timing
    print(f"Node Performance: {a.name} (ProfilingLevel.{a.level})", file=f)
    print(f"- Called: {t.calls} time(s)" + (f", {t.attempts} attempt(s)"
                                           if t.attempts > t.calls else "")
          + (f", {t.errors} error(s)" if t.errors else ""), file=f)
    print(f"- Total time: {fmt_ms(t.total_ms)} (average {fmt_ms(t.average_ms)})", file=f)
    if t.p50_ms is not None:
        print(f"  - min {fmt_ms(t.min_ms)}, p50 {fmt_ms(t.p50_ms)}, p90 {fmt_ms(t.p90_ms)}, "
              f"p99 {fmt_ms(t.p99_ms)}, max {fmt_ms(t.max_ms)}", file=f)
    print(f"  - Setup: {fmt_ms(t.setup_ms)}", file=f)
    print(f"  - Computation: {fmt_ms(t.computation_ms)}", file=f)
    print(f"  - State update: {fmt_ms(t.state_update_ms)}", file=f)
    print(f"- On the critical path: {fmt_ms(a.critical_ms)} ({a.percent:.1f}% of the run); "
          f"slack {fmt_ms(a.slack_ms)}", file=f)
    r = a.resources
    if r is not None and r.cpu_ms is not None:
        print(f"- CPU: {fmt_ms(r.cpu_ms)} ({r.cpu_percent:.0f}% of its wall time; in its "
              f"function {fmt_ms(r.computation_cpu_ms)}; {r.cpu_source})", file=f)
        waits = [f"{getattr(r, k):.0f} {lbl}" for k, lbl in (
            ("voluntary_switches", "voluntary switches"),
            ("involuntary_switches", "involuntary switches"),
            ("major_faults", "major faults"), ("minor_faults", "minor faults"))
            if getattr(r, k) is not None]
        if waits:
            print(f"- Waits: {', '.join(waits)}", file=f)
        io_ = [f"{lbl} {getattr(r, k):.0f} B" for k, lbl in (
            ("io_read_bytes", "read"), ("io_write_bytes", "written"),
            ("net_rx_bytes", "received"), ("net_tx_bytes", "sent")) if getattr(r, k)]
        if io_:
            print(f"- I/O: {', '.join(io_)}", file=f)
    if a.memory is not None:
        print(f"- Memory: {fmt_mb(a.memory.impact_mb, sign=True)} kept, peak rise "
              f"{fmt_mb(a.memory.peak_mb)}, peak RSS {fmt_mb(a.memory.peak_rss_mb)}", file=f)
    if a.state is not None:
        print(f"- State: {a.state.bytes_delta:+d} bytes, {a.state.items_delta:+d} items over "
              f"{a.state.steps} step(s); largest state {a.state.max_state_bytes} bytes", file=f)
    if a.tokens:
        tk = a.tokens
        print(f"- LLM tokens: {tk.get('total_tokens', 0)} (input {tk.get('input_tokens', 0)}, "
              f"output {tk.get('output_tokens', 0)}) in {tk.get('calls', 0)} model call(s)"
              + (f", {fmt_ms(tk['model_ms'])} in the model" if tk.get("model_ms") is not None
                 else ""), file=f)
    if a.counters:
        print("- Counters: " + ", ".join(f"{k} {_fig(v)}" for k, v in a.counters.items()), file=f)
    if a.gpu:
        print("- GPU: " + ", ".join(f"{k} {_fig(v)}" for k, v in a.gpu.items()), file=f)
    for what, why in a.unavailable.items():
        print(f"- {what}: {unavailable(why)}", file=f)
    if a.findings:
        print("Findings:", file=f)
        for fd in a.findings:
            print(f"- {fd.kind}: {fd.summary}", file=f)
    if a.slow_by_nature:
        print(f"Slow by nature: {a.slow_by_nature}", file=f)
    if a.what_if:
        print("What-if:", file=f)
        for w in a.what_if:
            print(f"- {_whatif(w)}", file=f)
    if sug:
        print("Suggestions:", file=f)
        for s in sug:
            _suggestion(s, f, "")
    return f.getvalue()


def metric(m: MetricResult) -> str:
    f = io.StringIO()
    print(f"Performance Metric: {m.name}", file=f)
    for node, v in m.values.items():
        print(f"- {node}: {_value(v)}", file=f)
    for node, e in m.errors.items():
        print(f"- {node}: error: {e}", file=f)
    if not m.values and not m.errors:
        print("no node ran in the last run", file=f)
    return f.getvalue()


def _value(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) < 1e6 else f"{v:.6g}"
    return str(v)
