"""GitHub-flavoured Markdown summary of a run (generate_performance_summary):
tables fit for a pull-request comment or a CI job summary, from the report's
data only.  Figures that were not measured say "unavailable: <reason>"."""

from __future__ import annotations

from ..model.report import PerformanceReport
from .findings import gain_text


def _cell(v: object) -> str:
    """A table cell: pipes and newlines would break the row."""
    return str(v).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _ms(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.2f}"


def _table(head: list[str], rows: list[list[object]], right: set[int] | None = None) -> list[str]:
    right = right or set()
    out = ["| " + " | ".join(_cell(h) for h in head) + " |",
           "|" + "|".join("---:" if i in right else "---" for i in range(len(head))) + "|"]
    out += ["| " + " | ".join(_cell(c) for c in r) + " |" for r in rows]
    return out


def summary(r: PerformanceReport) -> str:
    p = r.profile
    cp = r.critical
    lines = [f"## Performance summary: {_cell(r.title)}", ""]
    facts: list[list[object]] = [
        ["Total execution time", f"{p.total_ms:.2f} ms"],
        ["Profiling level", p.level + (f" (asked: {p.requested_level})"
                                       if p.level != p.requested_level else "")],
        ["Nodes", len(r.timing)],
        ["Supersteps", f"{len(cp.steps)} ({cp.parallel_steps} parallel)" if cp.available
         else f"unavailable: {cp.reason}"],
    ]
    m = r.memory
    facts.append(["Memory (initial / peak / final)",
                  f"{m.initial_mb:.1f} / {m.peak_mb:.1f} / {m.final_mb:.1f} MB"
                  + (f" (peak at {m.peak_node})" if m.peak_node else "")
                  if m.available else f"unavailable: {m.reason}"])
    if r.cpu.available and r.cpu.attributed_cpu_ms is not None:
        facts.append(["CPU time in nodes", f"{r.cpu.attributed_cpu_ms:.2f} ms"])
    if p.errors:
        facts.append(["Errors", "; ".join(f"{e['node']}: {e['type']}" for e in p.errors)])
    lines += _table(["", "value"], facts) + [""]

    lines += ["### Nodes", ""]
    rows = []
    for n, t in sorted(r.timing.items(), key=lambda kv: -kv[1].total_ms):
        crit = cp.critical_ms.get(n) if cp.available else None
        rows.append([n, t.calls, _ms(t.total_ms), f"{t.percent:.1f}",
                     "n/a" if crit is None else f"{100 * crit / max(cp.total_ms or 1, 1e-9):.1f}",
                     _ms(t.setup_ms), _ms(t.computation_ms), _ms(t.state_update_ms),
                     _ms(t.p50_ms), _ms(t.p99_ms)])
    lines += _table(["node", "calls", "total ms", "% of run", "% on critical path", "setup ms",
                     "computation ms", "state update ms", "p50 ms", "p99 ms"], rows,
                    right=set(range(1, 10))) + [""]

    lines += ["### Bottlenecks", ""]
    if not r.bottlenecks:
        lines += ["No node takes 10% or more of the run on its critical path.", ""]
    else:
        rows = []
        for n, b in r.bottlenecks.items():
            s = r.suggestions.get(n)
            top = s.suggestions[0] if s is not None and s.suggestions else None
            gain = "" if top is None else gain_text(top).replace("ms", " ms")
            rows.append([n, f"{b.percent:.1f}", ", ".join(b.kinds) or "-",
                         (b.slow_by_nature and "slow by nature") or (s.suggestion if s else "-"),
                         gain])
        lines += _table(["node", "% on critical path", "classes", "suggestion",
                         "gain"], rows, right={1}) + [""]

    if r.memory.available and r.memory.nodes:
        lines += ["### Memory by node", ""]
        rows = [[n, f"{x.impact_mb:+.1f}", "n/a" if x.peak_mb is None else f"{x.peak_mb:.1f}"]
                for n, x in r.memory.nodes.items()]
        lines += _table(["node", "RSS change MB", "peak rise MB"], rows, right={1, 2}) + [""]

    for name, mr in r.metrics.items():
        lines += [f"### Metric: {_cell(name)}", ""]
        rows = [[n, f"{v:.4g}" if isinstance(v, float) else v] for n, v in mr.values.items()]
        rows += [[n, f"error: {e}"] for n, e in mr.errors.items()]
        lines += _table(["node", name], rows) + [""]

    missing = [(what, sec.reason) for what, sec in (
        ("memory", r.memory), ("CPU", r.cpu), ("network", r.network), ("GPU", r.gpu),
        ("state size", r.state), ("critical path", r.critical)) if not sec.available]
    if missing:
        lines += ["### Not measured", ""]
        lines += _table(["what", "why"], [[w, f"unavailable: {why}"] for w, why in missing]) + [""]
    env = r.environment
    lines.append(f"<sub>kfm_debugging {env.get('kfm_debugging')}, engine {env.get('engine')}, "
                 f"Python {env.get('python')}, generated {r.generated}</sub>")
    return "\n".join(lines) + "\n"
