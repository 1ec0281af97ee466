"""The visualize_* charts: their data against ground truth, their images.

Real LangGraph graphs with known costs (sleeps, a 64 MB allocation, fan-out
branches, a subgraph, async nodes, 500 no-op nodes) are profiled; the data
each chart draws (analysis/visual.py) is checked against what the graphs did
and against the other reports, and the images (render/charts.py) are
checked to decode, to be sized for reading, to say "unavailable: <reason>"
for what was not measured, and to be the same bytes for the same data.
"""

from __future__ import annotations

import asyncio
import json
import operator
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from typing import Annotated, Any, TypedDict

import pytest
from conftest import (ALL_LEVELS, RSS_EXACT, SLACK, chain, compute_span, fake_cupti,
                      give_memory_back)
from langgraph.graph import END, START, StateGraph

from kfm_debugging import Debugger, ProfilingLevel
from kfm_debugging.analysis import visual as av
from kfm_debugging.model import Record, Section
from kfm_debugging.model import visual as mv
from kfm_debugging.render import charts

SLEEP = {"fetch": 0.030, "grow": 0.020, "score": 0.040}
TOL_MS = 15 * SLACK


def fetch(s: dict) -> dict:
    time.sleep(SLEEP["fetch"])
    return {"n": 1}


def grow(s: dict) -> dict:
    buf = bytearray(64 << 20)
    buf[::4096] = b"x" * len(range(0, len(buf), 4096))  # touch every page: RSS grows
    time.sleep(SLEEP["grow"])
    return {"n": len(buf) >> 20}


def score(s: dict) -> dict:
    time.sleep(SLEEP["score"])
    return {"out": "done"}


def _run(level: ProfilingLevel, **kw: Any) -> Debugger:
    d = Debugger(chain(("fetch", fetch), ("grow", grow), ("score", score)),
                 profiling_level=level, **kw)
    give_memory_back()  # grow's 64 MB must be new pages, not the last run's freed ones
    assert d.run({"input": "x"})["out"] == "done"
    return d


@pytest.fixture(scope="module")
def runs() -> dict[ProfilingLevel, Debugger]:
    return {lv: _run(lv) for lv in ALL_LEVELS}


def _png_size(b: bytes) -> tuple[int, int]:
    assert b[:8] == b"\x89PNG\r\n\x1a\n" and b[12:16] == b"IHDR", b[:16]
    return int.from_bytes(b[16:20], "big"), int.from_bytes(b[20:24], "big")


def _readable(b: bytes) -> tuple[int, int]:
    w, h = _png_size(b)
    assert 400 <= w <= 4000 and 400 <= h <= 4000, (w, h)
    return w, h


def _svg_text(b: bytes) -> str:
    root = ET.fromstring(b)  # well-formed XML
    assert root.tag.endswith("svg")
    return " ".join(" ".join(root.itertext()).split())  # wrapped lines joined


def _round_trips(r: Record) -> None:
    back = type(r).from_dict(json.loads(json.dumps(r.to_dict())))
    assert back == r and type(back) is type(r)


def _tasks(tl: mv.TimelineData) -> list[mv.TimelineSpan]:
    return sorted((s for ln in tl.lanes for s in ln.spans if s.kind == "task"),
                  key=lambda s: s.start_ms)


# --- timeline -----------------------------------------------------------------------
@pytest.mark.parametrize("level", ALL_LEVELS, ids=lambda lv: lv.name)
def test_timeline_has_one_span_per_activation_split_in_three(
        runs: dict[ProfilingLevel, Debugger], level: ProfilingLevel) -> None:
    d = runs[level]
    tl = av.timeline(d._last)
    assert tl.available and tl.level == level.name
    tasks = _tasks(tl)
    assert [s.node for s in tasks] == ["fetch", "grow", "score"]
    for s in tasks:
        kinds = [g.kind for g in s.segments]
        assert kinds.count(mv.COMPUTATION) == 1 and set(kinds) <= set(mv.SEGMENT_KINDS)
        # The segments tile the span in order.
        assert s.segments[0].start_ms == pytest.approx(s.start_ms)
        assert s.segments[-1].end_ms == pytest.approx(s.end_ms)
        for g, h in zip(s.segments, s.segments[1:]):
            assert g.end_ms == pytest.approx(h.start_ms)
        comp = next(g for g in s.segments if g.kind == mv.COMPUTATION)
        known = SLEEP[s.node] * 1e3
        if s.node != "grow":  # grow also spends the time of touching 64 MB
            assert known - 1 <= comp.end_ms - comp.start_ms <= known + TOL_MS, s
        assert 0 <= s.start_ms < s.end_ms <= tl.total_ms
    assert tasks[0].end_ms <= tasks[1].start_ms and tasks[1].end_ms <= tasks[2].start_ms
    # Each node's write application follows its task, on the loop thread.
    loop = tl.lanes[0]
    assert loop.name == av.LOOP_LANE
    upd = [s.node for s in loop.spans if s.kind == "state_update"]
    assert upd == ["fetch", "grow", "score"]
    # A chain: three supersteps, one per node, in order, covering the tasks.
    assert tl.steps.available
    assert [st.nodes for st in tl.steps.steps] == [["fetch"], ["grow"], ["score"]]
    for st, s in zip(tl.steps.steps, tasks):
        assert st.start_ms <= s.start_ms and s.end_ms <= st.end_ms
    # Series as the level measures them.
    assert tl.rss.available == (level >= ProfilingLevel.STANDARD)
    assert tl.cpu.available == (level >= ProfilingLevel.DETAILED)
    for series in (tl.rss, tl.cpu):
        if series.available:
            assert len(series.t_ms) == len(series.values) > 0
        else:
            assert "ProfilingLevel" in series.reason
    if tl.rss.available:
        # grow's 64 MB are in the RSS series.
        assert max(tl.rss.values) - tl.rss.values[0] > 50
        assert tl.rss.unit == "MB"
    if tl.cpu.available:
        assert tl.cpu.unit == "% of one core" and tl.cpu_window_ms and tl.cpu_window_ms >= 20
        assert all(0 <= v <= 100 * 2 + 50 for v in tl.cpu.values)  # two cores, sampler jitter
    assert tl.gpu == [] and tl.gpu_reason  # no GPU here
    _round_trips(tl)
    png = charts.timeline_chart(tl)
    _readable(png)
    svg = _svg_text(charts.timeline_chart(tl, "svg"))
    assert "Performance timeline" in svg and "Computation" in svg
    if level == ProfilingLevel.BASIC:
        assert "RSS: unavailable: memory is measured from ProfilingLevel.STANDARD" in svg


class P(TypedDict, total=False):
    items: Annotated[list, operator.add]


def _sleeper(name: str, seconds: float) -> Any:
    def f(s: P) -> dict[str, Any]:
        time.sleep(seconds)
        return {"items": [name]}

    return f


def test_parallel_branches_run_in_their_own_lanes() -> None:
    g = StateGraph(P)
    g.add_node("prep", _sleeper("prep", 0.005))
    g.add_node("left", _sleeper("left", 0.030))
    g.add_node("right", _sleeper("right", 0.050))
    g.add_node("join", _sleeper("join", 0.005))
    g.add_edge(START, "prep")
    g.add_edge("prep", "left")
    g.add_edge("prep", "right")
    g.add_edge(["left", "right"], "join")
    g.add_edge("join", END)
    d = Debugger(g.compile(), profiling_level=ProfilingLevel.BASIC)
    d.run({"items": []})
    tl = av.timeline(d._last)
    tasks = {s.node: (ln, s) for ln in tl.lanes for s in ln.spans if s.kind == "task"}
    assert set(tasks) == {"prep", "left", "right", "join"}
    (l_lane, left), (r_lane, right) = tasks["left"], tasks["right"]
    # They overlapped in time, so they are in different lanes (threads) or rows.
    assert left.start_ms < right.end_ms and right.start_ms < left.end_ms
    assert (l_lane.name, left.row) != (r_lane.name, right.row)
    assert [st.nodes for st in tl.steps.steps][1] in (["left", "right"], ["right", "left"])
    # The superstep of both branches waits for the slower one.
    assert tl.steps.steps[1].end_ms >= right.end_ms
    # The shared write application of that superstep.
    assert any(s.kind == "state_update" and s.node == "(parallel)" for s in tl.lanes[0].spans)
    for s in (left, right):
        comp = next(g for g in s.segments if g.kind == mv.COMPUTATION)
        known = 30.0 if s.node == "left" else 50.0
        assert known - 1 <= comp.end_ms - comp.start_ms <= known + TOL_MS
    _readable(charts.timeline_chart(tl))


def test_subgraph_tasks_nest_below_their_parent() -> None:
    sub = StateGraph(P)
    sub.add_node("inner", _sleeper("inner", 0.020))
    sub.add_edge(START, "inner")
    sub.add_edge("inner", END)
    g = StateGraph(P)
    g.add_node("outer", sub.compile())
    g.add_node("after", _sleeper("after", 0.005))
    g.add_edge(START, "outer")
    g.add_edge("outer", "after")
    g.add_edge("after", END)
    d = Debugger(g.compile(), profiling_level=ProfilingLevel.BASIC)
    d.run({"items": []})
    tl = av.timeline(d._last)
    spans = {s.node: s for s in _tasks(tl)}
    assert set(spans) == {"outer", "outer|inner", "after"}
    outer, inner = spans["outer"], spans["outer|inner"]
    assert outer.start_ms <= inner.start_ms and inner.end_ms <= outer.end_ms
    assert inner.row > outer.row  # drawn beneath, not over it
    assert tl.lanes[0].rows >= 2


def test_async_nodes_are_one_span_per_task() -> None:
    async def a(s: P) -> dict[str, Any]:
        await asyncio.sleep(0.030)
        return {"items": ["a"]}

    async def b(s: P) -> dict[str, Any]:
        await asyncio.sleep(0.010)
        return {"items": ["b"]}

    g = StateGraph(P)
    g.add_node("a", a)
    g.add_node("b", b)
    g.add_edge(START, "a")
    g.add_edge(START, "b")
    g.add_edge("a", END)
    g.add_edge("b", END)
    d = Debugger(g.compile(), profiling_level=ProfilingLevel.BASIC)
    asyncio.run(d.arun({"items": []}))
    tl = av.timeline(d._last)
    tasks = _tasks(tl)
    # Not one span per resumption of the coroutine: one per task.
    assert sorted(s.node for s in tasks) == ["a", "b"]
    lane = next(ln for ln in tl.lanes if ln.name == av.ASYNC_LANE)
    assert {s.node for s in lane.spans} == {"a", "b"}
    by = {s.node: s for s in tasks}
    assert by["a"].row != by["b"].row  # concurrent on one loop: one above the other
    for n, known in (("a", 30.0), ("b", 10.0)):
        comp = next(g for g in by[n].segments if g.kind == mv.COMPUTATION)
        assert known - 1 <= comp.end_ms - comp.start_ms <= known + TOL_MS


# --- node comparison ------------------------------------------------------------------
def test_node_comparison_equals_the_node_timing(runs: dict[ProfilingLevel, Debugger]) -> None:
    d = runs[ProfilingLevel.DETAILED]
    c = av.node_comparison(d._last, "execution_time")
    t = d.get_node_timing()
    assert c.available and c.unit == "ms" and c.metric == "execution_time"
    assert c.values == {n: x.total_ms for n, x in t.items()}
    assert [b.label for b in c.bars] == sorted(t, key=lambda n: -t[n].total_ms)
    assert c.others == 0 and all(b.nodes == 1 for b in c.bars)
    calls = av.node_comparison(d._last, "calls")
    assert calls.values == {"fetch": 1.0, "grow": 1.0, "score": 1.0} and calls.unit == "calls"
    cpu = av.node_comparison(d._last, "cpu_time")
    assert cpu.available and cpu.unit == "ms"
    assert cpu.values == {n: r.cpu_ms for n, r in d.get_cpu_usage().nodes.items()}
    mem = av.node_comparison(d._last, "memory_usage")
    assert mem.values == {n: m.impact_mb for n, m in d.get_memory_profile().nodes.items()}
    st = av.node_comparison(d._last, "state_size")  # state tracking is on at DETAILED
    assert st.available and st.unit == "bytes"
    assert st.values == {n: float(s.bytes_delta) for n, s in d.get_node_state_impact().items()}
    # An engine counter: summed over the node's spans, as the CPU report does.
    flt = av.node_comparison(d._last, "proc.minflt")
    assert flt.available
    assert flt.values == {n: r.minor_faults for n, r in d.get_cpu_usage().nodes.items()}
    assert flt.values["grow"] > 10000  # 64 MB touched page by page: 16384 faults
    # A registered metric's values, given per node.
    custom = {"tokens": {"fetch": 10, "grow": 0, "score": 250, "broken": "n/a"}}
    tok = av.node_comparison(d._last, "tokens", custom=custom)
    assert tok.values == {"fetch": 10.0, "grow": 0.0, "score": 250.0}
    assert tok.bars[0].label == "score"
    for r in (c, calls, cpu, mem, st, flt, tok):
        _round_trips(r)
    png = charts.comparison_chart(c)
    _readable(png)
    assert "grow" in _svg_text(charts.comparison_chart(c, "svg"))


def test_unknown_metric_lists_the_accepted_ones(runs: dict[ProfilingLevel, Debugger]) -> None:
    rd = runs[ProfilingLevel.DETAILED]._last
    with pytest.raises(ValueError) as e:
        av.node_comparison(rd, "excution_time", custom={"tokens": {}})
    msg = str(e.value)
    assert "'excution_time'" in msg
    for m in ("execution_time", "memory_usage", "cpu_time", "state_size", "calls", "tokens",
              "proc.minflt"):
        assert m in msg, m
    with pytest.raises(ValueError, match="top"):
        av.node_comparison(rd, "execution_time", top=0)


@pytest.mark.parametrize("metric", ["memory_usage", "cpu_time", "state_size", "proc.minflt"])
def test_metric_not_measured_at_basic_is_unavailable(
        runs: dict[ProfilingLevel, Debugger], metric: str) -> None:
    c = av.node_comparison(runs[ProfilingLevel.BASIC]._last, metric)
    assert isinstance(c, Section) and not c.available and c.values == {} and c.bars == []
    assert "BASIC" in c.reason
    _round_trips(c)
    png = charts.comparison_chart(c)
    w, h = _png_size(png)
    assert w >= 400 and 50 <= h < 400  # a small image, not an empty chart
    text = _svg_text(charts.comparison_chart(c, "svg"))
    assert f"unavailable: {c.reason}" in text
    assert metric in text


# --- memory --------------------------------------------------------------------------
@RSS_EXACT
def test_memory_peak_is_the_node_that_allocated(runs: dict[ProfilingLevel, Debugger]) -> None:
    d = runs[ProfilingLevel.STANDARD]
    m = av.memory_usage(d._last)
    assert m.available and len(m.t_ms) == len(m.rss_mb) > 2
    assert m.peak_node == "grow" == d.get_memory_profile().peak_node
    assert m.peak_mb == d.get_memory_profile().peak_mb
    assert m.peak_mb - m.initial_mb > 50  # the 64 MB
    bands = {b.node: b for b in m.bands}
    assert set(bands) == {"fetch", "grow", "score"}
    assert bands["grow"].start_ms <= m.peak_t_ms <= bands["grow"].end_ms + 1
    assert max(m.rss_mb) == pytest.approx(m.rss_mb[m.t_ms.index(m.peak_t_ms)])
    _round_trips(m)
    _readable(charts.memory_chart(m))
    assert "peak" in _svg_text(charts.memory_chart(m, "svg"))
    basic = av.memory_usage(runs[ProfilingLevel.BASIC]._last)
    assert not basic.available and "STANDARD" in basic.reason
    assert "unavailable:" in _svg_text(charts.memory_chart(basic, "svg"))


# --- heat maps -------------------------------------------------------------------------
def test_heatmap_of_three_runs() -> None:
    runs = [
        ("baseline", {"a": {"execution_time": 10.0, "memory_usage": 1.5},
                      "b": {"execution_time": 20.0}}),
        ("cached", {"a": {"execution_time": 2.0, "memory_usage": -0.5},
                    "b": {"execution_time": 21.0}}),
        ("large", {"a": {"execution_time": 12.0}, "b": {"execution_time": 40.0},
                   "c": {"execution_time": 5.0}}),
    ]
    h = av.heatmap_runs(runs, "execution_time")
    assert h.kind == "runs" and h.unit == "ms"
    assert h.columns == ["baseline", "cached", "large"] and h.rows == ["a", "b", "c"]
    assert h.values == [[10.0, 2.0, 12.0], [20.0, 21.0, 40.0], [None, None, 5.0]]
    assert (h.scale, h.vmin, h.vmax) == ("sequential", 0.0, 40.0)
    m = av.heatmap_runs(runs, "memory_usage")
    assert m.unit == "MB" and m.rows == ["a"] and m.values == [[1.5, -0.5, None]]
    assert (m.scale, m.vmin, m.vmax) == ("diverging", -1.5, 1.5)
    for x in (h, m):
        _round_trips(x)
        _readable(charts.heatmap_chart(x))
    svg = _svg_text(charts.heatmap_chart(h, "svg"))
    assert "baseline" in svg and "40.0" in svg and "execution_time (ms)" in svg
    with pytest.raises(ValueError, match="'tokens'.*execution_time"):
        av.heatmap_runs(runs, "tokens")
    with pytest.raises(ValueError):
        av.heatmap_runs([], "execution_time")


@pytest.mark.parametrize("level", [ProfilingLevel.BASIC, ProfilingLevel.STANDARD],
                         ids=lambda lv: lv.name)
def test_heatmap_slices_add_up_to_the_node_totals(
        runs: dict[ProfilingLevel, Debugger], level: ProfilingLevel) -> None:
    d = runs[level]
    h = av.heatmap_slices(d._last, "execution_time")
    assert h.kind == "slices" and len(h.columns) == 10 and h.unit == "ms"
    assert h.rows == ["fetch", "grow", "score"]
    t = d.get_node_timing()
    for n, row in zip(h.rows, h.values):
        assert len(row) == 10 and all(v is not None and v >= 0 for v in row)
        # Only the task preparation (microseconds, untimed) is not in the slices.
        assert sum(row) == pytest.approx(t[n].total_ms, abs=1.0 * SLACK), n
    # A chain: fetch runs first, score last.
    assert h.values[0][0] > 0 and h.values[0][-1] == 0
    assert h.values[2][-1] > 0 and h.values[2][0] == 0
    _round_trips(h)
    _readable(charts.heatmap_chart(h))
    mem = av.heatmap_slices(d._last, "memory_usage", slices=4)
    if level == ProfilingLevel.BASIC:
        assert not mem.available and "STANDARD" in mem.reason
        assert "unavailable:" in _svg_text(charts.heatmap_chart(mem, "svg"))
    else:
        assert mem.available and len(mem.columns) == 4 and mem.unit == "MB"
        impact = {n: m.impact_mb for n, m in d.get_memory_profile().nodes.items()}
        for n, row in zip(mem.rows, mem.values):
            assert sum(v or 0.0 for v in row) == pytest.approx(impact[n], abs=0.01), n
    with pytest.raises(ValueError, match="slices"):
        av.heatmap_slices(d._last, "execution_time", slices=0)
    with pytest.raises(ValueError, match="'calls'"):
        av.heatmap_slices(d._last, "calls")


# --- images ------------------------------------------------------------------------------
def test_images_are_deterministic_and_leave_matplotlib_alone(
        runs: dict[ProfilingLevel, Debugger]) -> None:
    import matplotlib

    backend = matplotlib.get_backend()
    had_pyplot = "matplotlib.pyplot" in sys.modules
    rd = runs[ProfilingLevel.DETAILED]._last
    data = [(charts.timeline_chart, av.timeline(rd)),
            (charts.comparison_chart, av.node_comparison(rd, "execution_time")),
            (charts.memory_chart, av.memory_usage(rd)),
            (charts.heatmap_chart, av.heatmap_slices(rd, "execution_time"))]
    for fn, x in data:
        for fmt in ("png", "svg"):
            again = type(x).from_dict(json.loads(json.dumps(x.to_dict())))
            assert fn(x, fmt) == fn(again, fmt), (fn.__name__, fmt)
    assert matplotlib.get_backend() == backend
    assert ("matplotlib.pyplot" in sys.modules) == had_pyplot
    with pytest.raises(ValueError, match="png, svg"):
        charts.timeline_chart(data[0][1], "jpg")


def test_importing_the_package_does_not_import_matplotlib() -> None:
    code = ("import sys, kfm_debugging, kfm_debugging.render.charts, kfm_debugging.analysis.visual;"
            "assert 'matplotlib' not in sys.modules, 'matplotlib imported'")
    subprocess.run([sys.executable, "-c", code], check=True, env=None)


def test_500_nodes_stay_readable() -> None:
    def noop(s: dict) -> dict:
        return {"n": s.get("n", 0) + 1}

    names = [f"n{i:03d}_" + "long_name_" * (i % 9) for i in range(500)]
    d = Debugger(chain(*[(n, noop) for n in names]), profiling_level=ProfilingLevel.BASIC)
    d.run({"input": "x"}, {"recursion_limit": 1000})
    rd = d._last
    t = d.get_node_timing()
    c = av.node_comparison(rd, "execution_time")
    assert len(c.values) == 500 and len(c.bars) == 31 and c.others == 470
    top = sorted(t.values(), key=lambda x: -x.total_ms)
    assert [b.label for b in c.bars[:30]] == [x.name for x in top[:30]]
    assert c.bars[-1].label == "others (470 nodes)" and c.bars[-1].nodes == 470
    assert c.bars[-1].value == pytest.approx(sum(x.total_ms for x in top[30:]))
    w, h = _readable(charts.comparison_chart(c))
    assert h < 1500  # 31 bars, not 500
    svg = _svg_text(charts.comparison_chart(c, "svg"))
    assert "others (470 nodes)" in svg and "…" in svg  # long names shortened
    tl = av.timeline(rd)
    assert len(_tasks(tl)) == 500
    _readable(charts.timeline_chart(tl))
    hm = av.heatmap_slices(rd, "execution_time")
    rows, vals = hm.shown(charts.MAX_HEATMAP_ROWS)
    assert len(hm.rows) == 500 and len(rows) == 40 and rows[-1] == "others (461 nodes)"
    for j in range(10):
        col = sum(r[j] for r in hm.values)
        assert sum(r[j] or 0.0 for r in vals) == pytest.approx(col)
    _readable(charts.heatmap_chart(hm))


def test_many_lanes_fold_into_others() -> None:
    """Drawn from data alone: 60 threads with a long-named span each."""
    span = mv.Segment(mv.COMPUTATION, 1.0, 9.0)
    lanes = [mv.Lane(name=f"thread {i}", thread=i, rows=3, busy_ms=float(i), spans=[
        mv.TimelineSpan(node="x" * 300 + str(i), start_ms=1.0, end_ms=9.0, row=r,
                        segments=[span]) for r in range(3)]) for i in range(60)]
    tl = mv.TimelineData(level="BASIC", total_ms=10.0, lanes=lanes,
                         rss=mv.Series(available=False, reason="not measured"),
                         cpu=mv.Series(available=False, reason="not measured"))
    shown = charts._shown_lanes(tl)
    assert len(shown) == charts.MAX_LANES and shown[-1][0] == "others (21 threads)"
    assert sum(rows for _n, rows, _s, _l in shown) <= charts.MAX_ROWS
    assert [lab for *_x, lab in shown] == [True] * 39 + [False]  # overlapping: not labelled
    _readable(charts.timeline_chart(tl))
    assert charts.shorten("a" * 100, 40) == "a" * 13 + "…" + "a" * 26
    assert charts.shorten("outer|inner", 40) == "outer|inner"


def test_gpu_activity_gets_a_lane_per_device(tmp_path: Any) -> None:
    """CUPTI's timeline (the backend's export format; no GPU here) drawn as
    a lane per CUDA device under the threads, each span named after the
    node that launched it, a legend entry for it."""
    d = Debugger(chain(("prep", _sleeper("prep", 0.005)), ("train", _sleeper("train", 0.03))),
                 profiling_level=ProfilingLevel.COMPREHENSIVE)
    d.run({"items": []})
    rd = d._last
    assert rd is not None
    c0, c1, tid = compute_span(rd, "train")
    q = (c1 - c0) / 10
    fake_cupti(rd, [{"kind": "kernel", "node": tid, "start_ns": c0 + q * k,
                     "end_ns": c0 + q * (k + 0.8), "name": f"k{k}", "device": k % 2}
                    for k in range(1, 9)])
    tl = av.timeline(rd)
    gpu = [ln for ln in tl.lanes if ln.gpu is not None]
    assert [ln.name for ln in gpu] == ["GPU 0 (CUPTI)", "GPU 1 (CUPTI)"]
    assert [len(ln.spans) for ln in gpu] == [4, 4]
    comp = next(g for s in _tasks(tl) if s.node == "train" for g in s.segments
                if g.kind == mv.COMPUTATION)
    for ln in gpu:
        for s in ln.spans:
            assert s.node == "train" and s.kind == "gpu"
            assert [g.kind for g in s.segments] == [mv.GPU_ACTIVITY]
            assert comp.start_ms <= s.start_ms < s.end_ms <= comp.end_ms
            assert s.end_ms - s.start_ms == pytest.approx(0.8 * q / 1e6, rel=1e-6)
    png = charts.timeline_chart(tl)
    _readable(png)
    (tmp_path / "gpu_timeline.png").write_bytes(png)
    svg = _svg_text(charts.timeline_chart(tl, fmt="svg"))
    assert "GPU 0 (CUPTI)" in svg and mv.GPU_ACTIVITY in svg
