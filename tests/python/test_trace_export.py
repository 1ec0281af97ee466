"""The trace of a run (analysis/trace.py, render/trace.py) on real LangGraph
graphs: the Chrome Trace Event Format JSON is parsed back and held against
what the run measured: a task span per call, spans summing to the engine's
per-node totals, proper nesting on every lane, named lanes, counter
tracks, supersteps, the event cap, strict JSON."""

from __future__ import annotations

import asyncio
import json
import math
import threading
import time
from collections import defaultdict
from typing import Any, TypedDict

import pytest
from conftest import SLACK, chain, compute_span, fake_cupti
from langgraph.graph import END, START, StateGraph

from kfm_debugging import Debugger, ProfilingLevel
from kfm_debugging._files import atomic_write
from kfm_debugging.analysis.trace import trace_data
from kfm_debugging.model.trace import TraceData, TraceSpan
from kfm_debugging.render.trace import chrome_trace


class S(TypedDict, total=False):
    x: int
    w1: int
    w2: int
    out: int


def _strict(text: str) -> dict[str, Any]:
    def bad(c: str) -> Any:
        raise ValueError(f"not strict JSON: {c}")

    return json.loads(text, parse_constant=bad)


def _ns(us: float) -> int:
    return round(us * 1000)


def _spans(doc: dict[str, Any], cat: str) -> list[dict[str, Any]]:
    return [e for e in doc["traceEvents"] if e["ph"] == "X" and e["cat"] == cat]


def _check(d: Debugger, doc: dict[str, Any]) -> dict[str, Any]:
    """What every trace must hold; returns doc."""
    rd = d._last
    assert rd is not None
    assert doc["displayTimeUnit"] == "ms" and isinstance(doc["otherData"], dict)
    ev = doc["traceEvents"]
    meta = [e for e in ev if e["ph"] == "M"]
    assert [e["args"]["name"] for e in meta if e["name"] == "process_name"] == [
        "kfm_debugging: LangGraph"]
    names = _lane_names(doc)
    sort = {e["tid"] for e in meta if e["name"] == "thread_sort_index"}
    assert set(names) == sort
    assert {e["tid"] for e in ev} <= set(names)
    assert all(e["ph"] in "MXCi" for e in ev)
    xs = [e for e in ev if e["ph"] == "X"]
    assert all(isinstance(e["ts"], float) and isinstance(e["dur"], float) and e["dur"] >= 0
               for e in xs)

    # Nesting: on one lane, a span starting inside another ends inside it.
    lanes: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for e in xs:
        lanes[e["tid"]].append((_ns(e["ts"]), _ns(e["ts"] + e["dur"])))
    for tid, iv in lanes.items():
        iv.sort(key=lambda x: (x[0], -x[1]))
        stack: list[int] = []
        for a, b in iv:
            while stack and stack[-1] <= a:
                stack.pop()
            assert not stack or b <= stack[-1], f"partial overlap on lane {names[tid]!r}"
            stack.append(b)

    # A task span per call, summing to the engine's (or, async, the recorder's) total.
    tasks = _spans(doc, "task")
    timing = d.get_node_timing()
    for n, t in timing.items():
        mine = [e for e in tasks if e["args"]["node"] == n]
        assert len(mine) == t.calls, n
        assert all(e["args"]["calls"] == t.calls for e in mine)
        total = (rd.rec.async_wall[n][1] if n in rd.rec.async_wall
                 else rd.report["nodes"][n]["total_ns"])
        assert abs(sum(e["dur"] for e in mine) * 1000 - total) <= 1000 * len(mine), n

    # Each Computation inside a task of its node (on its lane unless it ran
    # in an executor thread beside an async task).
    for c in _spans(doc, "computation"):
        a, b = _ns(c["ts"]), _ns(c["ts"] + c["dur"])
        holders = [t for t in tasks if t["args"]["node"] == c["args"]["node"]
                   and _ns(t["ts"]) <= a and b <= _ns(t["ts"] + t["dur"])]
        assert holders, c
        assert any(t["tid"] == c["tid"] for t in holders) or c["args"]["node"] in rd.rec.async_wall

    cp = d.get_critical_path()
    steps = _spans(doc, "superstep")
    assert [s["args"]["nodes"] for s in steps] == [s.nodes for s in cp.steps]
    for e in tasks:  # each user task names its superstep
        if e["args"]["node"] in timing and "|" not in e["args"]["node"]:
            assert e["args"]["node"] in cp.steps[e["args"]["superstep"]].nodes
    assert doc["otherData"]["setup"]  # why Setup has no spans
    return doc


def _trace(d: Debugger, **kw: Any) -> tuple[TraceData, dict[str, Any]]:
    td = trace_data(d._last, **kw)
    return td, _strict(chrome_trace(td))


def _nap(name: str, s: float) -> tuple[str, Any]:
    def fn(st: Any) -> dict[str, Any]:
        time.sleep(s)
        return {"items": [name]}

    return name, fn


@pytest.fixture(scope="module")
def chain_dbg() -> Debugger:
    d = Debugger(chain(_nap("a", 0.02), _nap("b", 0.03), _nap("c", 0.01)),
                 profiling_level=ProfilingLevel.STANDARD)
    d.run({"input": "x"})
    return d


def test_chain(chain_dbg: Debugger, tmp_path: Any) -> None:
    td = trace_data(chain_dbg._last)
    path = tmp_path / "trace.json"
    atomic_write(path, chrome_trace(td))
    doc = _check(chain_dbg, _strict(path.read_text()))
    # The result round-trips through JSON.
    assert TraceData.from_dict(json.loads(json.dumps(td.to_dict()))) == td
    assert isinstance(td.spans[0], TraceSpan)
    # Read both ways, like every result.
    assert td["spans"][0]["name"] == td.spans[0].name
    c = td.counters[0]
    assert dict(c) == {k: getattr(c, k) for k in c.keys()} and len(c.values()) == len(c)

    names = _lane_names(doc)
    comp = {e["args"]["node"]: e for e in _spans(doc, "computation")}
    for n, s in (("a", 20), ("b", 30), ("c", 10)):
        assert s <= comp[n]["dur"] / 1000 < s + 15 * SLACK, n
        assert names[comp[n]["tid"]] == "main"  # a chain runs on the calling thread
        assert "rss_delta_mb" in comp[n]["args"]
    assert len(_spans(doc, "superstep")) == 3
    ups = [e["name"] for e in _spans(doc, "state_update")]
    assert {"a: State update", "b: State update", "c: State update"} <= set(ups)

    rss = [e for e in doc["traceEvents"] if e["ph"] == "C" and e["name"] == "RSS (MB)"]
    assert len(rss) >= 2 and all(10 < e["args"]["value"] < 1e5 for e in rss)
    assert doc["otherData"]["dropped"] == 0 and doc["otherData"]["events"] == td.events


def test_cap(chain_dbg: Debugger) -> None:
    full, _ = _trace(chain_dbg)
    td, doc = _trace(chain_dbg, max_events=20)
    assert full.events > 20 and td.events == full.events
    kept = [e for e in doc["traceEvents"] if e["ph"] in "XC"]
    assert len(kept) == 20
    assert td.dropped == doc["otherData"]["dropped"] == full.events - 20
    marks = [e for e in doc["traceEvents"] if e["ph"] == "i"]
    assert [m["name"] for m in marks] == [f"{td.dropped} events dropped"]
    assert marks[0]["ts"] >= max(e["ts"] for e in kept)
    # The earliest events are kept, each span with its parent.
    alltimes = sorted([_ns(s.start_us) for s in full.spans]
                      + [_ns(t) for c in full.counters for t in c.t_us])
    assert sorted(_ns(e["ts"]) for e in kept) == alltimes[:20]
    assert doc["otherData"]["engine_events_dropped"] == 0
    with pytest.raises(ValueError, match="max_events"):
        trace_data(chain_dbg._last, max_events=-1)


def _branch(key: str, seconds: float, asynchronous: bool) -> Any:
    if asynchronous:
        async def anode(s: S) -> dict[str, Any]:
            await asyncio.sleep(seconds)
            return {key: 1}

        return anode

    def node(s: S) -> dict[str, Any]:
        time.sleep(seconds)
        return {key: 1}

    return node


def _fanout(asynchronous: bool) -> Any:
    """start -> (slow 30 ms, short 10 ms) -> END: one superstep of two branches."""
    g = StateGraph(S)
    g.add_node("start", lambda s: {"x": 1})
    g.add_node("slow", _branch("w1", 0.03, asynchronous))
    g.add_node("short", _branch("w2", 0.01, asynchronous))
    g.add_edge(START, "start")
    for n in ("slow", "short"):
        g.add_edge("start", n)
        g.add_edge(n, END)
    return g.compile()


def _lane_names(doc: dict[str, Any]) -> dict[int, str]:
    return {e["tid"]: e["args"]["name"] for e in doc["traceEvents"]
            if e["ph"] == "M" and e["name"] == "thread_name"}


def test_parallel_branches_on_pool_threads() -> None:
    d = Debugger(_fanout(False), profiling_level=ProfilingLevel.DETAILED)
    d.run({"x": 0})
    _td, doc = _trace(d)
    _check(d, doc)
    names = _lane_names(doc)
    task = {e["args"]["node"]: e for e in _spans(doc, "task")}
    assert names[task["slow"]["tid"]] != "main" and names[task["short"]["tid"]] != "main"
    assert task["slow"]["tid"] != task["short"]["tid"]
    assert task["slow"]["args"]["superstep"] == task["short"]["args"]["superstep"] == 1
    assert "cpu_user_ms" in task["slow"]["args"]  # DETAILED: CPU deltas per span
    assert any(e["name"] == "parallel superstep: State update"
               and names[e["tid"]] == "main" for e in _spans(doc, "state_update"))
    steps = _spans(doc, "superstep")
    assert sorted(steps[1]["args"]["nodes"]) == ["short", "slow"]
    assert steps[1]["args"]["critical"] == "slow"


def test_async_tasks_on_their_own_lanes() -> None:
    d = Debugger(_fanout(True), profiling_level=ProfilingLevel.BASIC)
    asyncio.run(d.arun({"x": 0}))
    _td, doc = _trace(d)
    _check(d, doc)
    names = _lane_names(doc)
    task = {e["args"]["node"]: e for e in _spans(doc, "task")}
    comp = {e["args"]["node"]: e for e in _spans(doc, "computation")}
    # Two coroutines overlapping on one loop: two lanes beside it.
    assert {names[task["slow"]["tid"]], names[task["short"]["tid"]]} == {
        "asyncio tasks (main)", "asyncio tasks (main) #2"}
    for n, s in (("slow", 30), ("short", 10)):
        assert comp[n]["tid"] == task[n]["tid"]
        assert s <= comp[n]["dur"] / 1000 < s + 15 * SLACK
    # Where their coroutines really ran: slices on the loop's thread.
    slices = [e for e in _spans(doc, "async_slice") if e["args"]["node"] == "slow"]
    assert slices and all(names[e["tid"]] == "main" for e in slices)
    assert sum(e["dur"] for e in slices) < task["slow"]["dur"] / 2


def test_subgraph_nodes_nest_in_their_parent() -> None:
    class F(TypedDict, total=False):
        x: int

    def inner(s: F) -> dict[str, Any]:
        time.sleep(0.01)
        return {"x": 2}

    sub = StateGraph(F)
    sub.add_node("inner", inner)
    sub.add_edge(START, "inner")
    sub.add_edge("inner", END)
    g = StateGraph(F)
    g.add_node("outer", sub.compile())
    g.add_node("after", lambda s: {"x": 3})
    g.add_edge(START, "outer")
    g.add_edge("outer", "after")
    g.add_edge("after", END)
    d = Debugger(g.compile(), profiling_level=ProfilingLevel.BASIC)
    d.run({"x": 0})
    _td, doc = _trace(d)
    _check(d, doc)
    task = {e["args"]["node"]: e for e in _spans(doc, "task")}
    comp = {e["args"]["node"]: e for e in _spans(doc, "computation")}
    inn, oc = task["outer|inner"], comp["outer"]
    assert inn["tid"] == oc["tid"]
    assert _ns(oc["ts"]) <= _ns(inn["ts"])
    assert _ns(inn["ts"] + inn["dur"]) <= _ns(oc["ts"] + oc["dur"])
    assert "superstep" not in inn["args"]  # a subgraph's step is not the run's


def test_strict_json_without_nan() -> None:
    td = TraceData(process_name="kfm_debugging: x", level="BASIC", mode="invoke", total_ms=1.0,
                   spans=[TraceSpan(name="n", cat="task", tid=1, start_us=0.0, dur_us=1.0,
                                    args={"v": math.nan, "w": [math.inf, 1.0]})])
    doc = _strict(chrome_trace(td))
    x = [e for e in doc["traceEvents"] if e["ph"] == "X"][0]
    assert x["args"] == {"v": None, "w": [None, 1.0]}


def test_lanes_are_named_after_the_python_threads() -> None:
    ran: dict[str, tuple[int, str]] = {}

    def branch(key: str) -> Any:
        def node(s: S) -> dict[str, Any]:
            ran[key] = (threading.get_native_id(), threading.current_thread().name)
            time.sleep(0.01)
            return {key: 1}
        return node

    g = StateGraph(S)
    g.add_node("start", lambda s: {"x": 1})
    g.add_node("a", branch("w1"))
    g.add_node("b", branch("w2"))
    g.add_edge(START, "start")
    for n in ("a", "b"):
        g.add_edge("start", n)
        g.add_edge(n, END)
    # reuse_threads: the pool's threads outlive the run, so their names are known at its end.
    d = Debugger(g.compile(), profiling_level=ProfilingLevel.DETAILED, reuse_threads=True)
    d.run({"x": 0})
    _td, doc = _trace(d)
    names = _lane_names(doc)
    task = {e["args"]["node"]: e for e in _spans(doc, "task")}
    for node, key in (("a", "w1"), ("b", "w2")):
        tid, pyname = ran[key]
        assert names[task[node]["tid"]] == f"{pyname} (tid {tid})"
    lanes = {t.name: t for t in _td.threads}
    assert lanes[f"{ran['w1'][1]} (tid {ran['w1'][0]})"].os_tid == ran["w1"][0]


def test_gpu_activity_on_device_lanes() -> None:
    """CUPTI's timeline (the backend's export: ns since the session's start)
    becomes a lane per CUDA device, overlapping kernels on a second lane,
    each span naming the node that launched it.  No GPU here: the timeline
    is written in the backend's export format (backends/cupti/cupti.c)."""
    d = Debugger(chain(_nap("prep", 0.005), _nap("train", 0.02)),
                 profiling_level=ProfilingLevel.COMPREHENSIVE)
    d.run({"items": []})
    rd = d._last
    assert rd is not None
    c0, c1, train_id = compute_span(rd, "train")
    q = (c1 - c0) / 8
    tl = [
        {"kind": "kernel", "node": train_id, "start_ns": c0 + q, "end_ns": c0 + 4 * q,
         "name": "gemm", "device": 0},
        # Another stream of the same device, overlapping the first.
        {"kind": "kernel", "node": train_id, "start_ns": c0 + 2 * q, "end_ns": c0 + 3 * q,
         "name": "relu", "device": 0},
        {"kind": "memcpy_d2h", "node": train_id, "start_ns": c0 + 5 * q, "end_ns": c0 + 6 * q,
         "bytes": 4096, "device": 1},
        {"kind": "kernel", "node": None, "start_ns": c1 + q, "end_ns": c1 + 2 * q,
         "name": "stray", "device": 0},
    ]
    fake_cupti(rd, tl, dropped={"timeline": 3})
    td, doc = _trace(d)
    _check(d, doc)
    names = _lane_names(doc)
    gpu = {e["name"]: e for e in _spans(doc, "gpu")}
    assert set(gpu) == {"gemm", "relu", "memcpy_d2h", "stray"}
    assert names[gpu["gemm"]["tid"]] == "GPU 0 (CUPTI)"
    assert names[gpu["relu"]["tid"]] == "GPU 0 (CUPTI) #2"
    assert names[gpu["memcpy_d2h"]["tid"]] == "GPU 1 (CUPTI)"
    assert names[gpu["stray"]["tid"]] == "GPU 0 (CUPTI)"
    assert gpu["gemm"]["args"]["node"] == "train" and gpu["memcpy_d2h"]["args"]["bytes"] == 4096
    assert gpu["stray"]["args"]["node"] == "unattributed"
    # On the run's clock: the kernel lies inside its node's Computation span.
    comp = next(e for e in _spans(doc, "computation") if e["args"]["node"] == "train")
    assert comp["ts"] <= gpu["gemm"]["ts"] and (gpu["gemm"]["ts"] + gpu["gemm"]["dur"]
                                                 <= comp["ts"] + comp["dur"])
    assert gpu["gemm"]["dur"] == pytest.approx(3 * q / 1000, abs=0.002)
    assert any("3 GPU records" in n for n in td.notes)
    # Below COMPREHENSIVE nothing is read from CUPTI.
    d2 = Debugger(chain(_nap("prep", 0.001)), profiling_level=ProfilingLevel.DETAILED)
    d2.run({"items": []})
    assert not [t for t in trace_data(d2._last).threads if t.kind == "gpu"]
