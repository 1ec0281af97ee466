"""The self-contained HTML report (generate_performance_report).

One file, readable offline on a cluster login node: inline CSS, charts as
PNG data URIs, no script, and a Content-Security-Policy that forbids every
request, so that a browser opening it fetches nothing (a test loads it in
headless Chromium and checks that).  Every text comes from the report's
data and is escaped.
"""

from __future__ import annotations

import base64
import html
from typing import Any

from ..model.report import PerformanceReport
from . import findings as render_findings
from . import text as render_text

_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"

_CSS = """
:root { --fg:#1d2330; --mute:#5b6475; --line:#d9dee7; --bg:#f6f8fb; --acc:#2457c5;
        --bad:#b3261e; --ok:#1e7a3c; }
* { box-sizing: border-box; }
body { margin:0; font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;
       color:var(--fg); background:#fff; }
header { padding:20px 32px; background:var(--bg); border-bottom:1px solid var(--line); }
header h1 { margin:0 0 4px; font-size:22px; }
header .sub { color:var(--mute); }
main { padding:8px 32px 40px; max-width:1400px; }
h2 { margin:28px 0 10px; font-size:18px; border-bottom:1px solid var(--line);
     padding-bottom:4px; }
h3 { margin:18px 0 8px; font-size:15px; }
.cards { display:flex; flex-wrap:wrap; gap:12px; margin-top:14px; }
.card { background:#fff; border:1px solid var(--line); border-radius:6px; padding:10px 14px;
        min-width:150px; }
.card .v { font-size:20px; font-weight:600; }
.card .k { color:var(--mute); font-size:12px; }
table { border-collapse:collapse; margin:6px 0 12px; }
th, td { border:1px solid var(--line); padding:4px 8px; vertical-align:top; }
th { background:var(--bg); text-align:left; font-weight:600; }
td.n { text-align:right; font-variant-numeric:tabular-nums; white-space:nowrap; }
td.name { font-family:ui-monospace,Menlo,Consolas,monospace; word-break:break-all;
          max-width:360px; }
.bar { height:8px; background:var(--acc); border-radius:2px; }
.unavail { color:var(--bad); }
.kind { display:inline-block; padding:0 6px; margin:0 4px 2px 0; border-radius:9px;
        background:#e8eefc; color:var(--acc); font-size:12px; }
.gain { color:var(--ok); font-weight:600; }
.ev { color:var(--mute); font-size:12px; }
figure { margin:10px 0 18px; }
figure img { max-width:100%; height:auto; border:1px solid var(--line); }
figcaption { color:var(--mute); font-size:12px; }
pre { background:var(--bg); border:1px solid var(--line); padding:10px; overflow-x:auto;
      font-size:12px; line-height:1.35; }
details > summary { cursor:pointer; font-weight:600; margin:8px 0; }
footer { color:var(--mute); font-size:12px; padding:16px 32px;
         border-top:1px solid var(--line); }
"""


def _e(v: Any) -> str:
    return html.escape(str(v), quote=True)


def _ms(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.2f}"


def _unavail(reason: str) -> str:
    return f'<p class="unavail">unavailable: {_e(reason)}</p>'


def _table(head: list[str], rows: list[list[str]], num: set[int] | None = None) -> str:
    """rows hold HTML already escaped by the caller."""
    num = num or set()
    out = ["<table><thead><tr>", *(f"<th>{_e(h)}</th>" for h in head), "</tr></thead><tbody>"]
    for r in rows:
        out.append("<tr>" + "".join(
            f'<td class="{"n" if i in num else ("name" if i == 0 else "")}">{c}</td>'
            for i, c in enumerate(r)) + "</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _cards(r: PerformanceReport) -> str:
    p, cp, m = r.profile, r.critical, r.memory
    cards = [("Total execution time", f"{p.total_ms:.2f} ms"),
             ("Profiling level", p.level), ("Nodes", str(len(r.timing)))]
    if cp.available:
        cards.append(("Supersteps", f"{len(cp.steps)} ({cp.parallel_steps} parallel)"))
    if m.available and m.peak_mb is not None:
        cards.append(("Peak memory", f"{m.peak_mb:.1f} MB"))
    if r.cpu.available and r.cpu.attributed_cpu_ms is not None:
        cards.append(("CPU time in nodes", f"{r.cpu.attributed_cpu_ms:.1f} ms"))
    if r.bottlenecks:
        cards.append(("Bottlenecks", str(len(r.bottlenecks))))
    if p.errors:
        cards.append(("Errors", str(len(p.errors))))
    return '<div class="cards">' + "".join(
        f'<div class="card"><div class="v">{_e(v)}</div><div class="k">{_e(k)}</div></div>'
        for k, v in cards) + "</div>"


def _bottlenecks(r: PerformanceReport) -> str:
    if not r.bottlenecks:
        return "<p>No node takes 10% or more of the run on its critical path.</p>"
    common = render_findings.common_unavailable(r.bottlenecks)
    out = [f'<p class="unavail">{_e(what)} unavailable: {_e(why)}</p>'
           for what, why in common.items()]
    for name, b in r.bottlenecks.items():
        out.append(f"<h3>{_e(name)}: {b.percent:.1f}% of the run on its critical path "
                   f"({_ms(b.critical_ms)} ms of {_ms(b.execution_time)} ms, "
                   f"{b.calls} call(s))</h3>")
        if b.findings:
            out.append("<ul>" + "".join(
                f'<li><span class="kind">{_e(f.kind)}</span>{_e(f.summary)}</li>'
                for f in b.findings) + "</ul>")
        if b.slow_by_nature:
            out.append(f"<p><b>Slow by nature:</b> {_e(b.slow_by_nature)}</p>")
        for what, why in b.unavailable.items():
            if what not in common:
                out.append(f'<p class="unavail">{_e(what)} unavailable: {_e(why)}</p>')
        s = r.suggestions.get(name)
        if s is None:
            continue
        if not s.suggestions:
            out.append(f"<p><b>Suggestion:</b> {_e(s.suggestion)}</p>")
        for one in s.suggestions:
            gain = f'<span class="gain">{_e(render_findings.gain_text(one))}</span>'
            ev = ", ".join(f"{k}={v}" for k, v in one.evidence.items())
            out.append(f'<p><span class="kind">{_e(one.kind)}</span>{_e(one.suggestion)}<br>'
                       f'{gain} <span class="ev">({_e(one.gain_basis)})</span><br>'
                       f'<span class="ev">from: {_e(ev)}</span></p>')
    return "".join(out)


def _nodes(r: PerformanceReport) -> str:
    cp = r.critical
    total = max(r.profile.total_ms, 1e-9)
    rows = []
    for n, t in sorted(r.timing.items(), key=lambda kv: -kv[1].total_ms):
        crit = cp.critical_ms.get(n) if cp.available else None
        share = 100.0 * crit / total if crit is not None else None
        bar = (f'<div class="bar" style="width:{max(min(share or 0.0, 100.0), 0.5):.1f}px">'
               f"</div>" if share is not None else "")
        rows.append([_e(n), str(t.calls), _ms(t.total_ms), f"{t.percent:.1f}",
                     ("n/a" if share is None else f"{share:.1f}") + bar, _ms(t.setup_ms),
                     _ms(t.computation_ms), _ms(t.state_update_ms), _ms(t.p50_ms),
                     _ms(t.p90_ms), _ms(t.p99_ms)])
    return _table(["node", "calls", "total ms", "% of run", "% on critical path", "setup ms",
                   "computation ms", "state update ms", "p50 ms", "p90 ms", "p99 ms"], rows,
                  num=set(range(1, 11)))


def _steps(r: PerformanceReport) -> str:
    cp = r.critical
    if not cp.available:
        return _unavail(cp.reason)
    rows = [[_e(", ".join(s.nodes)), str(s.index), _ms(s.start_ms), _ms(s.duration_ms),
             _e(s.critical or ""), _ms(s.prepare_ms), _ms(s.tasks_ms), _ms(s.wait_ms),
             _ms(s.apply_ms)] for s in cp.steps]
    return (f"<p>{len(cp.steps)} supersteps take {_ms(cp.steps_ms)} ms of {_ms(cp.total_ms)} ms; "
            f"the rest ({_ms(cp.outside_ms)} ms) is LangGraph's input, output and "
            f"bookkeeping.</p>"
            + _table(["nodes", "step", "start ms", "duration ms", "waited for", "prepare ms",
                      "tasks ms", "wait ms", "writes ms"], rows, num={1, 2, 3, 5, 6, 7, 8}))


def _pre(title: str, text: str, open_: bool = False) -> str:
    return (f"<details{' open' if open_ else ''}><summary>{_e(title)}</summary>"
            f"<pre>{_e(text)}</pre></details>")


def _environment(r: PerformanceReport) -> str:
    env = r.environment
    facts = [["kfm_debugging", env.get("kfm_debugging")], ["engine", env.get("engine")],
             ["Python", env.get("python")],
             *[[k, v or "not installed"] for k, v in (env.get("packages") or {}).items()],
             ["platform", env.get("platform")], ["CPU", f"{env.get('cpu')} ({env.get('cpus')} "
                                                       f"logical)"],
             ["clock", env.get("clock")], ["sampler", f"{env.get('sampler_hz')} Hz"],
             ["level", f"{env.get('level')} (asked: {env.get('requested_level')})"]]
    out = _table(["", "value"], [[_e(k), _e(v)] for k, v in facts])
    rows = [[_e(b["name"]), "yes" if b["enabled"] and b["available"] else "no",
             _e(b["reason"])] for b in env.get("backends", [])]
    out += "<h3>Backends</h3>" + _table(["backend", "measuring", "status"], rows)
    topo = env.get("topology")
    summ = str(env.get("topology_summary", ""))
    out += "<h3>Topology</h3>"
    if summ.startswith("unavailable: "):
        out += _unavail(summ[len("unavailable: "):])
    else:
        import json

        out += f"<p>{_e(summ)}</p>" + _pre("hwloc's description", json.dumps(topo, indent=1))
    return out


def _charts(charts: dict[str, tuple[str, bytes | str]]) -> str:
    """charts: title -> ("png", bytes) or ("unavailable", reason)."""
    out = []
    for title, (kind, data) in charts.items():
        if kind == "png":
            b64 = base64.b64encode(data).decode("ascii")  # type: ignore[arg-type]
            out.append(f'<figure><img alt="{_e(title)}" src="data:image/png;base64,{b64}">'
                       f"<figcaption>{_e(title)}</figcaption></figure>")
        else:
            out.append(f"<h3>{_e(title)}</h3>" + _unavail(str(data)))
    return "".join(out)


def report(r: PerformanceReport, charts: dict[str, tuple[str, bytes | str]] | None) -> str:
    """The report's HTML; charts None: include_visualizations=False."""
    p = r.profile
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>Performance report: {_e(r.title)}</title><style>{_CSS}</style></head><body>",
        f"<header><h1>Performance report: {_e(r.title)}</h1>",
        f'<div class="sub">{_e(p.mode)} run at ProfilingLevel.{_e(p.level)}, generated '
        f"{_e(r.generated)}; {r.runs} run(s) in this Debugger's history</div>",
        _cards(r), "</header><main>",
        "<h2>Bottlenecks and suggestions</h2>", _bottlenecks(r),
    ]
    if charts is not None:
        parts += ["<h2>Charts</h2>", _charts(charts)]
    parts += ["<h2>Nodes</h2>", _nodes(r), "<h2>Supersteps (critical path)</h2>", _steps(r)]
    for name, mr in r.metrics.items():
        parts += [f"<h2>Metric: {_e(name)}</h2>", f"<pre>{_e(render_findings.metric(mr))}</pre>"]
    parts += [
        "<h2>Reports</h2>",
        _pre("Profile report", render_text.profile_report(p), True),
        _pre("Node timing (detailed)", render_text.node_timing(r.timing, True)),
        _pre("Memory profile", render_text.memory_profile(r.memory)),
        _pre("Memory by node", render_text.node_memory_usage(r.memory)),
        _pre("Memory timeline", render_text.memory_timeline(r.memory_timeline)),
        _pre("CPU usage", render_text.cpu_usage(r.cpu)),
        _pre("Network usage", render_text.network_usage(r.network)),
        _pre("GPU usage", render_text.gpu_usage(r.gpu)),
        _pre("Resource utilization", render_text.resource_utilization(r.resources)),
        _pre("State size analysis", render_text.state_size_analysis(r.state)),
        _pre("State size timeline", render_text.state_size_timeline(r.state_timeline)),
        _pre("Node state impact", render_text.node_state_impact(r.state_impact,
                                                                r.state_impact_reason)),
        _pre("Bottleneck analysis", render_findings.bottlenecks(r.critical, r.bottlenecks,
                                                                r.suggestions)),
        "<h2>Environment</h2>", _environment(r),
        "</main><footer>kfm_debugging: a LangGraph profiler on the kfm engine. Figures that were "
        "not measured say so; none is estimated.</footer></body></html>",
    ]
    return "\n".join(parts)
