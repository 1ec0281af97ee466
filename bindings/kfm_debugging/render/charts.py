"""Charts of the visualize_* calls: model/visual.py data to PNG or SVG bytes.

Each function draws exactly what its data holds (the analysis decided what
to show: the top nodes, the "others" bar), so a test can check the data and
a reader can trust the picture.  matplotlib is imported inside the
functions: ``import kfm_debugging`` and BASIC profiling never pay for it.
Figures are ``matplotlib.figure.Figure`` objects on their own Agg canvas,
never pyplot's: the user's backend, open figures and interactive state are
untouched.  The style (font, DPI, SVG ids, no dates in the files) is fixed
while a chart is drawn, so that the same data gives the same bytes.

Charts stay readable at hundreds of nodes: a figure is sized from its data
(lanes, bars, rows) and laid out in inches, text is measured before it is
placed, long names are shortened with an ellipsis, labels are written only
where they fit, and past a limit (40 lanes, 40 heat map rows) the rest is
folded into one "others" row.  A Section that was not measured is drawn as
a small image saying "unavailable: <reason>".
"""

from __future__ import annotations

import functools
import io
import math
import textwrap
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from ..model.visual import (
    COMPUTATION,
    GPU_ACTIVITY,
    SEGMENT_KINDS,
    SETUP,
    STATE_UPDATE,
    Heatmap,
    MemoryUsage,
    NodeComparison,
    Series,
    TimelineData,
    TimelineSpan,
)

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

DPI = 100
FORMATS = ("png", "svg")
MAX_LANES = 40
MAX_ROWS = 100  # timeline rows of all lanes together (deep nesting is flattened)
MAX_HEATMAP_ROWS = 40
NAME_CHARS = 40  # node names longer than this are shortened
MIN_HEIGHT_IN = 4.0  # a chart of little data is still a chart, not a strip

# Fixed style: a font that ships with matplotlib (every machine lays the
# text out alike), a fixed salt for SVG element ids, SVG text kept as text
# (smaller, and searchable in the HTML report).
_RC = {
    "font.family": "DejaVu Sans", "font.size": 9.0, "axes.titlesize": 9.0,
    "axes.labelsize": 9.0, "xtick.labelsize": 8.0, "ytick.labelsize": 8.0,
    "legend.fontsize": 8.0, "figure.dpi": DPI, "savefig.dpi": DPI,
    "svg.hashsalt": "kfm_debugging", "svg.fonttype": "none", "axes.unicode_minus": False,
}
SEGMENT_COLORS = {SETUP: "#9ecae1", COMPUTATION: "#2171b5", STATE_UPDATE: "#fd8d3c",
                  GPU_ACTIVITY: "#41ab5d"}
_RED = "#cb181d"
_GREY_TEXT = "#555555"
_NOTE_BG = "#f4f4f4"
_TITLE_IN = 0.42  # the band at the top of a chart holding its title


# -- text ---------------------------------------------------------------------------
def shorten(name: str, chars: int = NAME_CHARS) -> str:
    """name cut to chars with an ellipsis: its start and its end (a subgraph
    node's own name) both stay readable."""
    if len(name) <= chars:
        return name
    if chars < 2:
        return "…"[:chars]
    head = (chars - 1) // 3
    return name[:head] + "…" + name[len(name) - (chars - 1 - head):]


def fmt_value(v: float | None, unit: str = "") -> str:
    """A value to about 3 significant digits (counts exact), and its unit."""
    if v is None:
        return "n/a"
    a = abs(v)
    if (unit in ("calls", "bytes", "count") and float(v).is_integer()) or a >= 1000:
        s = f"{v:,.0f}"
    elif v == 0:
        s = "0"
    elif a < 0.001:
        s = f"{v:.1e}"
    else:
        s = f"{v:.{max(2 - math.floor(math.log10(a)), 0)}f}"
    # A count's unit is the axis's ("proc.minflt (count)"), not each value's.
    return f"{s} {unit}" if unit and unit != "count" else s


def _label(what: str, unit: str) -> str:
    return f"{what} ({unit})" if unit else what


@functools.lru_cache(maxsize=1)
def _renderer() -> Any:
    from matplotlib.backends.backend_agg import RendererAgg

    return RendererAgg(10, 10, DPI)


@functools.lru_cache(maxsize=8192)
def text_in(text: str, fontsize: float = 8.0) -> float:
    """Width of text in inches as Agg draws it in the charts' font."""
    from matplotlib.font_manager import FontProperties

    w, _h, _d = _renderer().get_text_width_height_descent(
        text, FontProperties(family=_RC["font.family"], size=fontsize), ismath=False)
    return float(w) / DPI


def _widest(texts: Iterable[str], fontsize: float = 8.0) -> float:
    return max((text_in(t, fontsize) for t in texts), default=0.0)


def _fits(text: str, width_in: float, fontsize: float = 7.5) -> bool:
    return text_in(text, fontsize) + 0.08 <= width_in


def _fit_label(name: str, width_in: float, fontsize: float = 7.5) -> str | None:
    """name, shortened if need be, to fit in width_in; None when fewer than
    4 characters would."""
    if _fits(name, width_in, fontsize):
        return name
    if width_in < 0.3:
        return None
    chars = min(len(name) - 1, NAME_CHARS)
    while chars >= 4:
        cut = shorten(name, chars)
        over = text_in(cut, fontsize) + 0.08 - width_in
        if over <= 0:
            return cut
        chars -= max(1, int(over / 0.07))  # a character is ~0.05 in: overshoot in one go
    return None


def _wrap(text: str, width_in: float, lines: int, fontsize: float = 8.0) -> str:
    """text wrapped to width_in, at most lines lines (the last one cut)."""
    per_line = max(int(width_in / (0.075 * fontsize / 8.0)), 20)
    return "\n".join(textwrap.wrap(text, per_line, max_lines=lines, placeholder=" …"))


# -- figures ------------------------------------------------------------------------
@contextmanager
def _style() -> Iterator[None]:
    import matplotlib

    with matplotlib.rc_context(_RC):
        yield


class _Sheet:
    """A Figure on its own Agg canvas (not pyplot's, not the user's backend),
    with axes placed in inches from its top-left corner: the charts are
    sized from their data, so they are laid out by hand rather than by
    tight_layout's guesses."""

    def __init__(self, width_in: float, height_in: float) -> None:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        self.w, self.h = width_in, height_in
        self.fig = Figure(figsize=(width_in, height_in), dpi=DPI)
        FigureCanvasAgg(self.fig)

    def axes(self, left: float, top: float, width: float, height: float, **kw: Any) -> Axes:
        return self.fig.add_axes((left / self.w, 1 - (top + height) / self.h,
                                  width / self.w, height / self.h), **kw)

    def title(self, text: str, sub: str = "") -> None:
        self.fig.text(0.5, 1 - 0.1 / self.h, text, ha="center", va="top", fontsize=11,
                      weight="bold")
        if sub:
            self.fig.text(0.5, 1 - 0.3 / self.h, sub, ha="center", va="top", fontsize=8,
                          color=_GREY_TEXT)

    def at(self, x_in: float, y_from_top_in: float) -> tuple[float, float]:
        """Figure coordinates of a point given in inches from the top-left."""
        return x_in / self.w, 1 - y_from_top_in / self.h


def _save(fig: Figure, fmt: str) -> bytes:
    buf = io.BytesIO()
    # No software version nor date in the file: same data, same bytes.
    meta = {"Software": None} if fmt == "png" else {"Date": None, "Creator": None}
    fig.savefig(buf, format=fmt, dpi=DPI, metadata=meta, facecolor="white")
    return buf.getvalue()


def _check_fmt(fmt: str) -> None:
    if fmt not in FORMATS:
        raise ValueError(f"fmt must be one of {', '.join(FORMATS)}, not {fmt!r}")


def _render(fmt: str, draw: Callable[[], _Sheet]) -> bytes:
    _check_fmt(fmt)
    with _style():
        return _save(draw().fig, fmt)


def unavailable_chart(title: str, reason: str, fmt: str = "png") -> bytes:
    """A small image: the chart's title and "unavailable: <reason>"."""
    lines = textwrap.wrap(f"unavailable: {reason}", 95, max_lines=6, placeholder=" …")

    def draw() -> _Sheet:
        sh = _Sheet(8.0, 1.0 + 0.2 * len(lines))
        sh.title(title)
        ax = sh.axes(0.3, 0.5, 7.4, 0.25 + 0.2 * len(lines))
        _note(ax, "\n".join(lines))
        ax.set_xticks([])
        return sh

    return _render(fmt, draw)


def _note(ax: Axes, text: str) -> None:
    """A panel that was not measured: its reason instead of a plot."""
    ax.set_facecolor(_NOTE_BG)
    ax.set_yticks([])
    for side in ax.spines.values():
        side.set_color("#cccccc")
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", fontsize=8,
            color="#7a1f1f", linespacing=1.4)


def _row_major(handles: list[Any], ncol: int) -> list[Any]:
    """Legend entries reordered so that they read across the rows
    (matplotlib fills a legend's columns first)."""
    nrow = -(-len(handles) // ncol)
    grid = [handles[r * ncol:(r + 1) * ncol] for r in range(nrow)]
    return [grid[r][c] for c in range(ncol) for r in range(nrow) if c < len(grid[r])]


# -- timeline -------------------------------------------------------------------------
def _shown_lanes(data: TimelineData) -> list[tuple[str, int, list[TimelineSpan], bool]]:
    """(label, rows, spans, labelled) of the lanes drawn: the first
    MAX_LANES - 1 (the loop thread and the asyncio tasks, then the busiest
    threads), the rest as one "others" lane whose spans overlap (so they are
    not labelled); rows capped so that the chart stays < ~4000 px."""
    lanes = list(data.lanes)
    if len(lanes) > MAX_LANES:
        pos = {id(ln): i for i, ln in enumerate(lanes)}  # lanes compare by value: slow
        fixed = [ln for ln in lanes[:2] if ln.thread is None or ln is lanes[0]]
        ranked = fixed + sorted(lanes[len(fixed):], key=lambda ln: -ln.busy_ms)
        keep, rest = ranked[:MAX_LANES - 1], ranked[MAX_LANES - 1:]
        keep.sort(key=lambda ln: pos[id(ln)])
        shown = [(ln.name, ln.rows, ln.spans, True) for ln in keep]
        shown.append((f"others ({len(rest)} threads)", 1, [s for ln in rest for s in ln.spans],
                      False))
    else:
        shown = [(ln.name, ln.rows, ln.spans, True) for ln in lanes]
    cap = max(1, min(6, MAX_ROWS // max(len(shown), 1)))
    return [(name, min(rows, cap), spans, lab) for name, rows, spans, lab in shown]


def _draw_lanes(ax: Axes, data: TimelineData,
                shown: list[tuple[str, int, list[TimelineSpan], bool]], width_in: float,
                row_in: float) -> None:
    if not shown:
        _note(ax, "no node ran in this run")
        return
    bar = min(0.76, 0.45 / row_in)  # of a row
    total = max(data.total_ms, 1e-3)
    in_per_ms = width_in / total
    bars: dict[tuple[str, int], list[tuple[float, float]]] = {}
    ticks, labels = [], []
    y = 0
    for name, rows, spans, labelled in shown:
        ticks.append(y + rows / 2)
        labels.append(shorten(name, 28))
        for s in spans:
            row = min(s.row, rows - 1)
            for g in s.segments:
                bars.setdefault((g.kind, y + row), []).append(
                    (g.start_ms, max(g.end_ms - g.start_ms, 0.0)))
            # A flattened row overlaps others: its spans are not labelled.
            text = (_fit_label(s.node, (s.end_ms - s.start_ms) * in_per_ms)
                    if labelled and s.kind == "task" and s.row < rows else None)
            if text:
                ax.text((s.start_ms + s.end_ms) / 2, y + row + 0.5, text, ha="center",
                        va="center", fontsize=7.5, color="white", clip_on=True)
        y += rows
        if y < sum(r for _n, r, _s, _l in shown):
            ax.axhline(y, color="#bbbbbb", lw=0.6)
    # Spans narrower than a pixel: the later parts of a node are drawn over
    # the earlier ones, as they happened.
    for kind in (*SEGMENT_KINDS, GPU_ACTIVITY):
        for (k, row_y), xs in sorted(bars.items()):
            if k == kind:
                ax.broken_barh(xs, (row_y + (1 - bar) / 2, bar), facecolors=SEGMENT_COLORS[kind],
                               linewidth=0)
    ax.set_ylim(y, 0)
    ax.set_yticks(ticks, labels)
    ax.tick_params(axis="y", length=0)
    steps = data.steps.steps if data.steps.available else []
    if len(steps) <= 80:
        # Alternate shading marks the supersteps; numbered where they fit.
        for s in steps:
            if s.index % 2:
                ax.axvspan(s.start_ms, s.end_ms, color="#000000", alpha=0.06, lw=0)
            if len(steps) <= 40 and _fits(f"s{s.index}", (s.end_ms - s.start_ms) * in_per_ms, 7):
                ax.text((s.start_ms + s.end_ms) / 2, 1.0, f"s{s.index}", ha="center",
                        va="bottom", fontsize=7, color=_GREY_TEXT,
                        transform=ax.get_xaxis_transform())
    ax.set_xlim(0, total)
    ax.grid(axis="x", color="#dddddd", lw=0.5)
    ax.set_axisbelow(True)


def _draw_series(ax: Axes, series: Sequence[Series], what: str, unit: str, width_in: float,
                 percent: bool = False, window_ms: float | None = None) -> None:
    """Series on one panel; values that are averages over equal windows
    centred on t_ms (window_ms) are drawn as the windows they cover."""
    live = [s for s in series if s.available and s.t_ms]
    if not live:
        reasons = [s.reason for s in series if not s.available and s.reason]
        _note(ax, _wrap(f"{what}: unavailable: {reasons[0]}" if reasons
                        else f"{what}: no readings in this run", width_in, 2))
        return
    for s, c in zip(live, _palette(len(live))):
        if window_ms:
            edges = [t - window_ms / 2 for t in s.t_ms] + [s.t_ms[-1] + window_ms / 2]
            ax.stairs(s.values, edges, lw=1.2, label=s.name, baseline=None, color=c)
            if len(live) == 1:
                ax.stairs(s.values, edges, fill=True, alpha=0.12, lw=0, color=c)
            continue
        ax.plot(s.t_ms, s.values, lw=1.2, label=s.name, color=c)
        if len(live) == 1:
            ax.fill_between(s.t_ms, s.values, 0 if percent else min(s.values), alpha=0.12, lw=0,
                            color=c)
    if len(live) > 1:
        ax.legend(loc="upper right", fontsize=7, frameon=False, ncol=min(len(live), 4))
    lo = min(min(s.values) for s in live)
    hi = max(max(s.values) for s in live)
    if percent:
        ax.set_ylim(0, max(100.0, hi * 1.1))
    else:
        pad = max((hi - lo) * 0.15, 0.5)
        ax.set_ylim(lo - pad, hi + pad)
    ax.set_ylabel(_label(what, unit))
    ax.grid(color="#dddddd", lw=0.5)


def timeline_chart(data: TimelineData, fmt: str = "png") -> bytes:
    """The run's spans per thread (Setup / Computation / State update),
    supersteps shaded, with RSS, process CPU and GPU panels beneath."""
    _check_fmt(fmt)
    title = "Performance timeline"
    if not data.available:
        return unavailable_chart(title, data.reason, fmt)

    def draw() -> _Sheet:
        from matplotlib.patches import Patch

        shown = _shown_lanes(data)
        rows = max(sum(r for _n, r, _s, _l in shown), 1)
        panels: list[tuple[str, list[Series], str, bool]] = [
            ("RSS", [data.rss], "MB", False), ("CPU", [data.cpu], "% of one core", True)]
        if data.gpu:
            panels.append(("GPU utilisation", list(data.gpu), "%", True))
        elif data.level == "COMPREHENSIVE":  # the level that would have sampled it
            panels.append(("GPU utilisation", [Series(available=False, reason=data.gpu_reason)],
                           "%", True))
        heights = [1.3 if any(s.available for s in p[1]) else 0.45 for p in panels]
        gap = 0.22
        left = min(max(_widest(n for n, _r, _s, _l in shown) + 0.3, 1.05), 2.6)
        width, right = 12.0, 0.3
        plot_w = width - left - right
        n_steps = len(data.steps.steps) if data.steps.available else 0
        top = _TITLE_IN + 0.32 + (0.18 if 0 < n_steps <= 40 else 0.0)  # legend, step numbers
        bottom = 0.55
        rest = top + sum(h + gap for h in heights) + bottom
        # 0.25 in a row; a chart of few rows gets taller ones (bars of at
        # most 0.45 in, centred) up to MIN_HEIGHT_IN.
        lanes_in = max(0.25 * rows, MIN_HEIGHT_IN - rest)
        sh = _Sheet(width, rest + lanes_in)
        ax = sh.axes(left, top, plot_w, lanes_in)
        _draw_lanes(ax, data, shown, plot_w, lanes_in / rows)
        kinds = [*SEGMENT_KINDS] + ([GPU_ACTIVITY] if any(ln.gpu is not None or any(
            s.kind == "gpu" for s in ln.spans) for ln in data.lanes) else [])
        handles = [Patch(color=SEGMENT_COLORS[k], label=k) for k in kinds]
        if 0 < n_steps <= 80:
            handles.append(Patch(color="#000000", alpha=0.15, label="supersteps s1, s3, ... (shaded)"))
        sh.fig.legend(handles=handles, loc="upper left", bbox_to_anchor=sh.at(left, _TITLE_IN),
                      ncol=len(handles), frameon=False, borderaxespad=0.0)
        n_tasks = sum(1 for ln in data.lanes for s in ln.spans if s.kind == "task")
        sub = f"{data.level}, {data.total_ms:.1f} ms, {n_tasks} node activations"
        if n_steps:
            sub += f", {n_steps} supersteps"
        elif not data.steps.available:
            sub += f"; supersteps unavailable: {data.steps.reason}"
        if len(data.lanes) > MAX_LANES:
            sub += f", {len(data.lanes)} threads"
        sh.title(f"{title} ({shorten(sub, 110)})")
        last, y = ax, top + lanes_in
        for (what, series, unit, percent), h in zip(panels, heights):
            y += gap
            pa = sh.axes(left, y, plot_w, h, sharex=ax)
            _draw_series(pa, series, what, unit, plot_w, percent=percent,
                         window_ms=data.cpu_window_ms if what == "CPU" else None)
            if what == "CPU" and data.cpu.available and data.cpu_window_ms:
                pa.set_title(f"process CPU, averaged over {data.cpu_window_ms:.0f} ms windows",
                             fontsize=7.5, loc="right", pad=2, color=_GREY_TEXT)
            last, y = pa, y + h
        for a in sh.fig.axes:
            if a is not last:
                a.tick_params(axis="x", labelbottom=False)
        last.set_xlabel("time since the run started (ms)")
        return sh

    return _render(fmt, draw)


# -- node comparison ----------------------------------------------------------------------
def comparison_chart(data: NodeComparison, fmt: str = "png") -> bytes:
    """One horizontal bar per node (largest first) with its value, the rest
    as one "others" bar (cut at the axis when it dwarfs the nodes' bars)."""
    _check_fmt(fmt)
    title = f"Node comparison: {_label(data.metric, data.unit)}"
    if not data.available:
        return unavailable_chart(title, data.reason, fmt)
    if not data.bars:
        return unavailable_chart(title, "no node has a value for this metric", fmt)

    def draw() -> _Sheet:
        bars = data.bars
        n = len(bars)
        labels = [shorten(b.label) for b in bars]
        texts = [fmt_value(b.value, data.unit) for b in bars]
        left = min(max(_widest(labels) + 0.25, 0.8), 3.4)
        width, right = 10.0, 0.3
        plot_w = width - left - right
        top, bottom = _TITLE_IN + 0.35, 0.6
        # A few bars get a chart of the usual size, not a strip.
        plot_h = max(0.27 * n + 0.1, MIN_HEIGHT_IN - top - bottom)
        sh = _Sheet(width, top + plot_h + bottom)
        ax = sh.axes(left, top, plot_w, plot_h)
        vals = [b.value for b in bars]
        nodes = [v for v, b in zip(vals, bars) if b.nodes == 1] or vals
        lo, hi = min(0.0, *nodes), max(0.0, *nodes)
        others = bars[-1] if bars[-1].nodes > 1 else None
        # "others" sums hundreds of nodes: drawn to scale it would flatten
        # every node's bar, so past twice the largest it is cut at the axis.
        cut = others is not None and len(nodes) < len(vals) and \
            abs(others.value) > 2 * max(abs(lo), abs(hi), 1e-12)
        if not cut:
            lo, hi = min(0.0, *vals), max(0.0, *vals)
        span = (hi - lo) or 1.0
        # Room beside the bars for their values: the widest value text.
        room = (_widest(texts, 7.5) + 0.12) / plot_w * span
        xmin = lo - (room * 1.2 if lo < 0 else 0.0)
        xmax = hi + (room * 1.2 if hi > 0 or lo == 0 else 0.0)
        shown = list(vals)
        if cut and others is not None:
            shown[-1] = xmax if others.value > 0 else xmin
        colors = ["#9e9e9e" if b.nodes > 1 else "#2171b5" for b in bars]
        # Bars of at most 0.3 in when a few bars fill a chart of the minimum height.
        ax.barh(range(n), shown, color=colors, height=min(0.7, 0.3 * n / plot_h))
        ax.set_yticks(range(n), labels)
        ax.set_ylim(n - 0.5, -0.5)
        ax.set_xlim(xmin, xmax)
        pad = 0.06 / plot_w * span
        for y, (v, s, t) in enumerate(zip(vals, shown, texts)):
            if cut and y == n - 1:
                ax.text(s - pad if v > 0 else s + pad, y, f"{t} (bar cut)", va="center",
                        ha="right" if v > 0 else "left", fontsize=7.5, color="white",
                        weight="bold")
            else:
                ax.text(v + (pad if v >= 0 else -pad), y, t, va="center",
                        ha="left" if v >= 0 else "right", fontsize=7.5)
        if xmin < 0:
            ax.axvline(0, color="#444444", lw=0.8)
        ax.set_xlabel(_label(data.metric, data.unit))
        ax.grid(axis="x", color="#dddddd", lw=0.5)
        ax.set_axisbelow(True)
        sub = f"{len(data.values)} nodes"
        if data.others:
            sub += f"; the top {data.top} shown, {data.others} summed in 'others'"
        sh.title(title, sub)
        return sh

    return _render(fmt, draw)


# -- memory -------------------------------------------------------------------------------
def _mb(v: float | None) -> str:
    """RSS to a tenth of a MB (a whole run's RSS often moves by less than 1 MB)."""
    return "n/a" if v is None else f"{v:,.1f} MB"


def _palette(n: int) -> list[Any]:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def memory_chart(data: MemoryUsage, fmt: str = "png") -> bytes:
    """RSS over the run, the peak marked with its node, and a strip of which
    node ran when beneath."""
    _check_fmt(fmt)
    title = "Memory usage (RSS)"
    if not data.available:
        return unavailable_chart(title, data.reason, fmt)
    if not data.t_ms:
        return unavailable_chart(title, "no memory reading was recorded in this run", fmt)

    def draw() -> _Sheet:
        from matplotlib.patches import Patch

        rows = min(max(data.band_rows, 1), 8)
        nodes = list(dict.fromkeys(b.node for b in data.bands))
        legend = 0 < len(nodes) <= 12
        ncol = min(len(nodes), 6)
        legend_in = 0.22 * -(-len(nodes) // ncol) + 0.1 if legend else 0.0
        width, left, right = 12.0, 0.95, 0.3
        plot_w = width - left - right
        main_h, strip_h = 3.4, 0.28 * rows + 0.1
        top, bottom = _TITLE_IN + 0.3, 0.55 + legend_in
        sh = _Sheet(width, top + main_h + strip_h + bottom)
        ax = sh.axes(left, top, plot_w, main_h)
        lo, hi = min(data.rss_mb), max(data.rss_mb)
        base = lo - max((hi - lo) * 0.1, 0.1)
        ax.plot(data.t_ms, data.rss_mb, color="#2171b5", lw=1.3)
        ax.fill_between(data.t_ms, data.rss_mb, base, color="#2171b5", alpha=0.12, lw=0)
        total = max(data.total_ms, data.t_ms[-1], 1e-3)
        ax.set_xlim(0, total)
        ax.set_ylim(base, hi + max((hi - lo) * 0.2, 1.0))
        if data.peak_t_ms is not None:
            ax.plot([data.peak_t_ms], [hi], "o", color=_RED, ms=6)
            # The label goes on the side of the peak with room for it.
            text = f"peak {_mb(data.peak_mb)} in {shorten(str(data.peak_node))}"
            right_side = data.peak_t_ms / total * plot_w + text_in(text, 8.5) + 0.2 < plot_w
            ax.annotate(text, (data.peak_t_ms, hi), xytext=(8 if right_side else -8, 6),
                        textcoords="offset points", ha="left" if right_side else "right",
                        va="bottom", fontsize=8.5, color=_RED, weight="bold")
        ax.set_ylabel("RSS (MB)")
        ax.grid(color="#dddddd", lw=0.5)
        ax.tick_params(axis="x", labelbottom=False)
        if data.sample_rate_hz:
            ax.set_title(f"sampled at {data.sample_rate_hz:.0f} Hz and at every node "
                         f"transition", fontsize=7.5, loc="right", color=_GREY_TEXT, pad=3)
        sh.title(f"{title}: initial {_mb(data.initial_mb)}, peak {_mb(data.peak_mb)}, "
                 f"final {_mb(data.final_mb)}")
        sa = sh.axes(left, top + main_h, plot_w, strip_h, sharex=ax)
        in_per_ms = plot_w / total
        color = dict(zip(nodes, _palette(len(nodes)))) if legend else {}
        xs: dict[tuple[int, Any], list[tuple[float, float]]] = {}
        for i, b in enumerate(data.bands):
            r = min(b.row, rows - 1)
            if legend:
                c = color[b.node]
            else:
                # Too many nodes to tell apart by colour: alternate greys,
                # the peak's node in red.
                c = _RED if b.node == data.peak_node else ("#8c8c8c", "#bdbdbd")[i % 2]
            xs.setdefault((r, c), []).append((b.start_ms, max(b.end_ms - b.start_ms, 0.0)))
            text = (_fit_label(b.node, (b.end_ms - b.start_ms) * in_per_ms)
                    if b.row < rows else None)
            if text:
                sa.text((b.start_ms + b.end_ms) / 2, r + 0.5, text, ha="center", va="center",
                        fontsize=7.5, color="white" if legend or c == _RED else "black",
                        clip_on=True)
        for (r, c), spans in sorted(xs.items(), key=lambda kv: (kv[0][0], str(kv[0][1]))):
            sa.broken_barh(spans, (r + 0.08, 0.84), facecolors=c, linewidth=0)
        sa.set_ylim(rows, 0)
        sa.set_yticks([rows / 2], ["node"])
        sa.tick_params(axis="y", length=0)
        sa.set_xlabel("time since the run started (ms)")
        if legend:
            handles = [Patch(color=color[n], label=shorten(n, 28)) for n in nodes]
            sh.fig.legend(handles=_row_major(handles, ncol), loc="lower center", ncol=ncol,
                          frameon=False, bbox_to_anchor=(0.5, 0.04 / sh.h), borderaxespad=0.0)
        return sh

    return _render(fmt, draw)


# -- heat map -------------------------------------------------------------------------------
def heatmap_chart(data: Heatmap, fmt: str = "png") -> bytes:
    """Nodes by runs (or time slices), coloured by value on one scale, the
    values written where they fit, a colour bar with the unit."""
    _check_fmt(fmt)
    by = "run" if data.kind == "runs" else "time slice of the run"
    title = f"Heat map: {_label(data.metric, data.unit)} per node and {by}"
    if not data.available:
        return unavailable_chart(title, data.reason, fmt)
    rows, vals = data.shown(MAX_HEATMAP_ROWS)
    if not rows or not data.columns:
        return unavailable_chart(title, "no node has a value for this metric", fmt)

    def draw() -> _Sheet:
        import numpy as np
        from matplotlib import colormaps
        from matplotlib.colors import Normalize

        folded = len(rows) < len(data.rows)  # the last row is "others"
        labels = [shorten(r) for r in rows]
        cols = [shorten(c, 32) for c in data.columns]
        ncol = len(cols)
        left = min(max(_widest(labels) + 0.25, 0.6), 3.4)
        cell_w = min(max(11.0 / ncol, 0.12), 1.0)
        col_w = _widest(cols)
        rotate = col_w > cell_w - 0.08
        col_in = (col_w * 0.65 + 0.45) if rotate else 0.45
        if rotate:
            # A label at 40 degrees reaches left of its column: the first one
            # must not leave the figure.
            left = max(left, col_w * 0.77 - cell_w / 2 + 0.15)
        top = _TITLE_IN + 0.35
        grid_w, grid_h = cell_w * ncol, max(0.3 * len(rows), MIN_HEIGHT_IN - top - col_in)
        need = left + grid_w + 1.3
        width = max(need, 6.0)
        left += (width - need) / 2
        sh = _Sheet(width, top + grid_h + col_in)
        ax = sh.axes(left, top, grid_w, grid_h)
        arr = np.array([[np.nan if v is None else v for v in r] for r in vals], dtype=float)
        if folded:
            # "others" sums many nodes: on the nodes' scale it would only
            # saturate, so it is grey with its values written.
            arr[-1, :] = np.nan
            ax.axhspan(len(rows) - 1.5, len(rows) - 0.5, color="#d0d0d0", zorder=0.5)
        if data.scale == "diverging":
            cmap_name = "RdBu_r"
        else:
            cmap_name = "Blues_r" if data.vmax <= 0 < -data.vmin else "YlOrRd"
        cmap = colormaps[cmap_name].with_extremes(bad=(0, 0, 0, 0))
        vmin, vmax = data.vmin, data.vmax if data.vmax > data.vmin else data.vmin + 1.0
        norm = Normalize(vmin=vmin, vmax=vmax, clip=True)
        ax.set_facecolor("#eeeeee")  # a node that did not run there: no colour
        im = ax.imshow(np.ma.masked_invalid(arr), cmap=cmap, norm=norm, aspect="auto",
                       interpolation="nearest", zorder=1)
        ax.set_yticks(range(len(rows)), labels)
        ax.set_xticks(range(ncol), cols, rotation=40 if rotate else 0,
                      ha="right" if rotate else "center", rotation_mode="anchor")
        ax.tick_params(length=0)
        ax.set_xticks([x - 0.5 for x in range(1, ncol)], minor=True)
        ax.set_yticks([y - 0.5 for y in range(1, len(rows))], minor=True)
        ax.tick_params(which="minor", length=0)
        ax.grid(which="minor", color="white", lw=1.0)
        for i, r in enumerate(vals):
            for j, v in enumerate(r):
                if v == 0 and data.kind == "slices":
                    continue  # the node did not run in that slice: left blank
                text = fmt_value(v)
                if not _fits(text, cell_w, 7):
                    continue
                shade = norm(v) if v is not None and not (folded and i == len(vals) - 1) else None
                dark = shade is not None and (abs(shade - 0.5) > 0.32 if cmap_name == "RdBu_r"
                                              else shade > 0.6)
                ax.text(j, i, text, ha="center", va="center", fontsize=7, zorder=2,
                        color="white" if dark else "black")
        cax = sh.axes(left + grid_w + 0.2, top, 0.18, grid_h)
        cb = sh.fig.colorbar(im, cax=cax)
        cb.set_label(_label(data.metric, data.unit))
        sub = f"{len(data.rows)} nodes x {ncol} {'runs' if data.kind == 'runs' else 'slices'}"
        if folded:
            rest = len(data.rows) - len(rows) + 1
            sub += (f"; top {len(rows) - 1} nodes by total, the other {rest} summed in "
                    f"'others' (grey, off the colour scale)")
        sh.title(title, sub)
        return sh

    return _render(fmt, draw)
