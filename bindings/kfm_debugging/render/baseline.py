"""A comparison with a baseline, and its regressions, as text, Markdown (a
CI job summary or pull-request comment) or JSON, from the result types
only.  Every row shows both medians, the change with its interval and the
p-value, so that a reader can see how sure a verdict is, not only what it
says; what was left out is printed under the table, never dropped silently.
"""

from __future__ import annotations

import json
from typing import Any

from ..model.baseline import BaselineComparison, MetricChange, direction
from .markdown import _cell, _table

HEAD = ["metric", "baseline", "current", "change", "95% interval", "p", "runs", "verdict"]


def _value(v: float | None, unit: str) -> str:
    if v is None:
        return "n/a"
    return f"{v:g} {unit}" if unit == "calls" else f"{v:.2f} {unit}"


def _row(key: str, c: MetricChange) -> list[str]:
    # A memory median near 0 has no percentage: the change in MB instead.
    change = (f"{c.percent_change:+.1f}%" if c.percent_change is not None else
              "n/a" if c.delta is None else f"{c.delta:+.2f} {c.unit}")
    interval = ("n/a" if c.interval is None else
                f"{c.interval[0]:+.1f}% .. {c.interval[1]:+.1f}%")
    word = (direction(c.metric, c.delta) if c.significant else
            "too few runs" if c.p_value is None else "no significant change")
    return [key, _value(c.baseline, c.unit), _value(c.current, c.unit), change, interval,
            "n/a" if c.p_value is None else f"{c.p_value:.3g}",
            f"{c.n_baseline}/{c.n_current}", word]


def _title(cmp: BaselineComparison) -> str:
    return f"{cmp.current} against baseline {cmp.baseline!r}"


def _tests(cmp: BaselineComparison) -> str:
    names = sorted({c.test for c in cmp.values() if c.test})
    holm = any(c.node is not None for c in cmp.values())
    return ("tests: " + "; ".join(names) + ("; node p-values Holm-adjusted per metric"
                                             if holm else "")) if names else ""


def comparison_text(cmp: BaselineComparison) -> str:
    """The comparison as an aligned table, its notes beneath."""
    rows = [HEAD] + [_row(k, c) for k, c in cmp.items()]
    widths = [max(len(r[i]) for r in rows) for i in range(len(HEAD))]
    right = {1, 2, 3, 5, 6}
    lines = [f"Performance: {_title(cmp)}"]
    for r in rows:
        lines.append("  ".join(v.rjust(w) if i in right else v.ljust(w)
                               for i, (v, w) in enumerate(zip(r, widths))).rstrip())
    if len(rows) == 1:
        lines.append("(no metric could be compared)")
    if _tests(cmp):
        lines.append(_tests(cmp))
    lines += [f"note: {n}" for n in cmp.notes]
    return "\n".join(lines) + "\n"


def regressions_text(found: dict[str, MetricChange], threshold_percent: float) -> str:
    """One line per regression with its full verdict, or that there is none."""
    if not found:
        return (f"No regression: no significant change worse by more than "
                f"{threshold_percent:g}%.\n")
    lines = [f"{len(found)} regression(s): significant and worse by more than "
             f"{threshold_percent:g}%"]
    lines += [f"  {k}: {_value(c.baseline, c.unit)} -> {_value(c.current, c.unit)}, {c.verdict}"
              for k, c in found.items()]
    return "\n".join(lines) + "\n"


def markdown(cmp: BaselineComparison, found: dict[str, MetricChange],
             threshold_percent: float) -> str:
    """GitHub-flavoured Markdown: the regressions first, then the table."""
    lines = [f"## Performance: {_cell(_title(cmp))}", ""]
    if found:
        lines += [f"**{len(found)} regression(s)** (significant, worse by more than "
                  f"{threshold_percent:g}%):", ""]
        lines += [f"- `{_cell(k)}`: {_cell(c.verdict)}" for k, c in found.items()] + [""]
    else:
        lines += [f"No regression (no significant change worse by more than "
                  f"{threshold_percent:g}%).", ""]
    lines += _table(HEAD, [_row(k, c) for k, c in cmp.items()], right={1, 2, 3, 5, 6})
    if _tests(cmp):
        lines += ["", _cell(_tests(cmp))]
    if cmp.notes:
        lines += [""] + [f"- {_cell(n)}" for n in cmp.notes]
    return "\n".join(lines) + "\n"


def json_text(cmp: BaselineComparison, found: dict[str, MetricChange],
              threshold_percent: float) -> str:
    """The comparison's data (to_dict) with the regressions' keys."""
    data: dict[str, Any] = {"baseline": cmp.baseline, "current": cmp.current,
                            "threshold_percent": threshold_percent,
                            "regressions": list(found), "comparison": cmp.to_dict()}
    return json.dumps(data, indent=2, default=str) + "\n"
