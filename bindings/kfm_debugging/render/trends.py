"""Text of show_profiling_trends: the trends of a continuous-profiling log,
from result types only (model/trends.py), like text.py.

A block per node, a line per metric with its sparkline, then what a reader
acts on: the slope per run with its interval, where the level shifted (with
the medians on either side), and the verdict.  The log's own state (files,
writers, skipped lines) comes first: a trend is only as good as its runs.
"""

from __future__ import annotations

import io
import os

from ..model.trends import NodeTrend, Trends


def fmt_value(v: float | None, unit: str = "") -> str:
    """41.2, 63.0, 5.10, 0.0512: about three significant digits."""
    if v is None:
        return "n/a"
    a = abs(v)
    s = (f"{v:.0f}" if a >= 100 else f"{v:.1f}" if a >= 10 else f"{v:.2f}" if a >= 1
         else f"{v:.3g}")
    return f"{s} {unit}" if unit else s


def _signed(v: float | None) -> str:
    return "n/a" if v is None else f"{v:+.3g}"


def _metric(t: NodeTrend, f: io.StringIO, indent: str) -> None:
    head = f"{t.n} run{'s' if t.n != 1 else ''}"
    if not t.n:
        print(f"{head}: {t.verdict}", file=f)
        return
    print(f"{head}  {t.sparkline}", file=f)
    print(f"{indent}last {fmt_value(t.last, t.unit)}, median {fmt_value(t.median, t.unit)}",
          file=f)
    tr = t.trend
    if tr is not None and tr.slope is not None:
        print(f"{indent}slope {_signed(tr.slope)} {t.unit} per run (95% interval "
              f"{_signed(tr.slope_low)} to {_signed(tr.slope_high)})", file=f)
    for s in t.shifts:
        print(f"{indent}shift at run {s.run}: {fmt_value(s.before)} \u2192 "
              f"{fmt_value(s.after, t.unit)}", file=f)
    print(f"{indent}verdict: {t.verdict}", file=f)


def _header(t: Trends, f: io.StringIO) -> None:
    print(f"Profiling trends: {t.path}", file=f)
    cover = (f"the last {t.runs} of {t.total_runs} runs" if t.runs < t.total_runs
             else f"{t.runs} run{'s' if t.runs != 1 else ''}")
    procs = f"{t.processes} process{'es' if t.processes != 1 else ''}"
    print(f"Runs: {cover}, from {procs}; graph{'s' if len(t.graphs) != 1 else ''}: "
          f"{', '.join(t.graphs) or 'none'}", file=f)
    print(f"Files: {', '.join(os.path.basename(p) for p in t.files)}", file=f)
    if t.malformed:
        where = (f" (first: line {t.first_malformed_line} of "
                 f"{os.path.basename(t.first_malformed_file or '')})")
        print(f"Malformed lines skipped: {t.malformed}{where}", file=f)


def trends_text(t: Trends) -> str:
    f = io.StringIO()
    _header(t, f)
    if not t.runs:
        print("No runs in the log.", file=f)
        return f.getvalue()
    if t.total is not None:
        print("", file=f)
        print("Whole run (total_ms): ", end="", file=f)
        _metric(t.total, f, "  ")
    for node, ms in t.nodes.items():
        print("", file=f)
        print(f"Node: {node}", file=f)
        for m, nt in ms.items():
            print(f"- {m}: ", end="", file=f)
            _metric(nt, f, "  ")
    return f.getvalue()
