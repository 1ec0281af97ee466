"""The Debugger on real LangGraph graphs: sync, async, stream, parallel
branches, Send fan-out, conditional edges, subgraphs, retries, errors,
checkpointers and interrupts; results identical with and without it; bad
input; every show_* and its get_* counterpart."""

from __future__ import annotations

import asyncio
import io
import json
import operator
import os
import threading
import time
from typing import Annotated, Any, TypedDict

import pytest
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command, RetryPolicy, Send, interrupt

from conftest import ALL_LEVELS, SLACK, chain
from kfm_debugging import Debugger, NodeTiming, ProfilingLevel
from kfm_debugging.collect import hooks as _instrument


class PState(TypedDict, total=False):
    input: str
    results: Annotated[list, operator.add]
    threads: Annotated[list, operator.add]
    route: str
    out: str


def parallel_graph(sleep: float = 0.03) -> Any:
    def start(s: dict) -> dict:
        return {"route": "x"}

    def branch(name: str) -> Any:
        def fn(s: dict) -> dict:
            t0 = time.perf_counter_ns()
            time.sleep(sleep)
            # The node's own clock: the ground truth however late the sleep wakes.
            BRANCH_WALL[name] = (time.perf_counter_ns() - t0) / 1e6
            return {"results": [name], "threads": [threading.get_ident()]}
        return fn

    def join(s: dict) -> dict:
        return {"out": ",".join(sorted(s["results"]))}

    b = StateGraph(PState)
    b.add_node("start", start)
    b.add_node("left", branch("left"))
    b.add_node("right", branch("right"))
    b.add_node("join", join)
    b.add_edge(START, "start")
    b.add_edge("start", "left")
    b.add_edge("start", "right")
    b.add_edge(["left", "right"], "join")
    b.add_edge("join", END)
    return b.compile()


BRANCH_WALL: dict[str, float] = {}


def test_parallel_branches_each_attributed() -> None:
    g = parallel_graph()
    d = Debugger(g, profiling_level=ProfilingLevel.DETAILED)
    res = d.run({"input": "x"})
    assert res["out"] == "left,right"
    t = d.get_node_timing()
    for n in ("left", "right"):
        assert t[n].calls == 1
        assert t[n].computation_ms >= 30.0
        assert t[n].computation_ms == pytest.approx(BRANCH_WALL[n], rel=0.10 * SLACK)
    total = d.get_profile_report()["total_ms"]
    # The branches overlapped: well under the 60 ms they would take in turn.
    assert total < max(BRANCH_WALL.values()) + 25 * SLACK
    assert len(set(res["threads"])) == 2
    assert d.engine_report()["summary"]["threads"] >= 2


TRUTH: dict[str, float] = {}


async def _async_sleep_graph() -> Any:
    async def a(s: dict) -> dict:
        t0 = time.perf_counter_ns()
        await asyncio.sleep(0.03)
        TRUTH["a"] = (time.perf_counter_ns() - t0) / 1e6
        return {"results": ["a"]}

    async def b_(s: dict) -> dict:
        t0 = time.perf_counter_ns()
        await asyncio.sleep(0.03)
        TRUTH["b"] = (time.perf_counter_ns() - t0) / 1e6
        return {"results": ["b"]}

    def sync_node(s: dict) -> dict:  # a sync node in an async graph: executor thread
        time.sleep(0.02)
        return {"results": ["c"]}

    b = StateGraph(PState)
    b.add_node("a", a)
    b.add_node("b", b_)
    b.add_node("c", sync_node)
    b.add_edge(START, "a")
    b.add_edge(START, "b")
    b.add_edge(["a", "b"], "c")
    b.add_edge("c", END)
    return b.compile()


def test_async_ainvoke_parallel_coroutines() -> None:
    async def main() -> tuple[Any, Debugger]:
        g = await _async_sleep_graph()
        d = Debugger(g, profiling_level=ProfilingLevel.STANDARD)
        return await d.arun({"input": "x"}), d

    res, d = asyncio.run(main())
    assert sorted(res["results"]) == ["a", "b", "c"]
    t = d.get_node_timing()
    assert t["a"].asynchronous and t["b"].asynchronous
    for n in ("a", "b"):
        assert t[n].calls == 1
        # Against the node's own clock: loop scheduling under load can make
        # asyncio.sleep(0.03) last longer than 30 ms.
        assert t[n].computation_ms >= 30
        assert t[n].computation_ms == pytest.approx(TRUTH[n], rel=0.10 * SLACK)
    assert t["c"].computation_ms == pytest.approx(20, rel=0.10 * SLACK)
    assert d.engine_report()["summary"]["unbalanced"] == 0
    assert d.get_profile_report()["instrumentation_failures"] == 0
    assert d.get_profile_report()["total_ms"] < 80 * SLACK


def test_astream_and_stream() -> None:
    g = chain(("a", lambda s: {"n": 1}), ("b", lambda s: {"n": 2})).compile()
    d = Debugger(g, enable_profiling=True)
    chunks = list(d.stream({"input": "x"}, stream_mode="updates"))
    assert chunks == list(g.stream({"input": "x"}, stream_mode="updates"))
    assert d.get_node_timing()["b"].calls == 1
    assert d._last.mode == "stream"

    async def main() -> list[Any]:
        return [c async for c in d.astream({"input": "x"}, stream_mode="values")]

    assert asyncio.run(main()) == list(g.stream({"input": "x"}, stream_mode="values"))
    assert d.get_node_timing()["a"].calls == 1


def test_send_fan_out_and_conditional_edges() -> None:
    class S(TypedDict, total=False):
        items: list
        results: Annotated[list, operator.add]
        kind: str

    def fan(s: dict) -> list:
        return [Send("work", {"items": [i]}) for i in s["items"]]

    def work(s: dict) -> dict:
        return {"results": [s["items"][0] * 10]}

    def classify(s: dict) -> dict:
        return {"kind": "big" if sum(s["results"]) > 100 else "small"}

    b = StateGraph(S)
    b.add_node("work", work)
    b.add_node("classify", classify)
    b.add_node("big", lambda s: {"results": [1]})
    b.add_node("small", lambda s: {"results": [2]})
    b.add_conditional_edges(START, fan, ["work"])
    b.add_edge("work", "classify")
    b.add_conditional_edges("classify", lambda s: s["kind"], {"big": "big", "small": "small"})
    b.add_edge("big", END)
    b.add_edge("small", END)
    g = b.compile()
    d = Debugger(g, profiling_level="DETAILED")
    res = d.run({"items": [1, 2, 3, 4, 5]})
    assert res == g.invoke({"items": [1, 2, 3, 4, 5]})
    t = d.get_node_timing()
    assert t["work"].calls == 5
    assert t["classify"].calls == 1
    assert "big" in t and "small" not in t
    imp = d.get_node_state_impact()
    assert imp["work"].items_delta == 5


def test_subgraph_nodes_are_nested() -> None:
    inner = chain(("deep", lambda s: (time.sleep(0.02), {"n": 5})[1])).compile()
    from conftest import ChainState

    ob = StateGraph(ChainState)
    ob.add_node("pre", lambda s: {"n": 1})
    ob.add_node("sub", inner)
    ob.add_edge(START, "pre")
    ob.add_edge("pre", "sub")
    ob.add_edge("sub", END)
    g = ob.compile()
    d = Debugger(g, profiling_level=ProfilingLevel.STANDARD)
    assert d.run({"input": "x"}) == g.invoke({"input": "x"})
    t = d.get_node_timing()
    assert "sub|deep" in t and t["sub|deep"].parent == "sub"
    assert t["sub|deep"].computation_ms == pytest.approx(20, rel=0.10 * SLACK)
    assert t["sub"].computation_ms >= t["sub|deep"].total_ms


def test_retries_and_errors() -> None:
    attempts = {"n": 0}

    def flaky(s: dict) -> dict:
        attempts["n"] += 1
        if attempts["n"] < 3:
            raise ConnectionError("try again")
        return {"n": attempts["n"]}

    from conftest import ChainState

    b = StateGraph(ChainState)
    b.add_node("flaky", flaky, retry_policy=RetryPolicy(max_attempts=5, initial_interval=0.001,
                                                        jitter=False))
    b.add_edge(START, "flaky")
    b.add_edge("flaky", END)
    d = Debugger(b, profiling_level=ProfilingLevel.BASIC)
    assert d.run({"input": "x"})["n"] == 3
    t = d.get_node_timing()["flaky"]
    assert t.calls == 1 and t.attempts == 3


class Boom(Exception):
    pass


@pytest.mark.parametrize("level", ALL_LEVELS, ids=lambda lv: lv.name)
def test_node_that_raises_propagates_unchanged(level: ProfilingLevel) -> None:
    err = Boom("exploded")

    def bad(s: dict) -> dict:
        raise err

    d = Debugger(chain(("ok", lambda s: {"n": 1}), ("bad", bad)), profiling_level=level)
    with pytest.raises(Boom) as ei:
        d.run({"input": "x"})
    assert ei.value is err
    errs = d.get_errors()
    assert [(e["node"], e["type"], e["message"]) for e in errs] == [("bad", "Boom", "exploded")]
    assert d.get_node_timing()["bad"].errors == 1
    out = io.StringIO()
    d.show_profile_report(file=out)
    assert "Error in bad: Boom: exploded" in out.getvalue()
    assert d.engine_report()["summary"]["unbalanced"] == 0


def test_checkpointer_and_interrupt() -> None:
    def ask(s: dict) -> dict:
        answer = interrupt("value?")
        return {"out": f"got {answer}"}

    g = chain(("pre", lambda s: {"n": 1}), ("ask", ask)).compile(checkpointer=InMemorySaver())
    d = Debugger(g, profiling_level=ProfilingLevel.STANDARD)
    cfg = {"configurable": {"thread_id": "t1"}}
    first = d.run({"input": "x"}, cfg)
    assert "__interrupt__" in first
    assert [e["node"] for e in d.get_profile_report()["interrupts"]] == ["ask"]
    assert d.get_errors() == []
    final = d.run(Command(resume="42"), cfg)
    assert final["out"] == "got 42"
    g2 = chain(("pre", lambda s: {"n": 1}), ("ask", ask)).compile(checkpointer=InMemorySaver())
    cfg2 = {"configurable": {"thread_id": "t1"}}
    g2.invoke({"input": "x"}, cfg2)
    assert g2.invoke(Command(resume="42"), cfg2) == final


def _realistic() -> Any:
    def parse(s: dict) -> dict:
        return {"n": len(s["input"])}

    def calc(s: dict) -> dict:
        return {"items": [s["n"] ** i for i in range(50)]}

    def respond(s: dict) -> dict:
        return {"out": json.dumps(s["items"][:3])}

    return chain(("input_parser", parse), ("calculator", calc), ("responder", respond))


@pytest.mark.parametrize("level", ALL_LEVELS, ids=lambda lv: lv.name)
def test_results_identical_with_and_without(level: ProfilingLevel) -> None:
    g = _realistic().compile()
    plain = g.invoke({"input": "hello"})
    d = Debugger(g, profiling_level=level)
    assert d.run({"input": "hello"}) == plain
    assert g.invoke({"input": "hello"}) == plain  # the graph itself is untouched
    pg = parallel_graph(0.001)
    base = pg.invoke({"input": "y"})
    got = Debugger(pg, profiling_level=level).run({"input": "y"})
    assert got["out"] == base["out"] and sorted(got["results"]) == sorted(base["results"])
    _instrument.uninstall()
    assert g.invoke({"input": "hello"}) == plain


def test_level_switched_after_init() -> None:
    d = Debugger(_realistic(), enable_profiling=True)
    assert d.profiling_level == ProfilingLevel.BASIC
    d.run({"input": "a"})
    assert not d.get_memory_profile().available
    d.enable_profiling(level=ProfilingLevel.DETAILED)
    d.run({"input": "a"})
    assert d.engine_report()["summary"]["level_name"] == "detailed"
    assert d.get_memory_profile().available and d.get_cpu_usage()["available"]
    d.enable_profiling(level="comprehensive")
    d.run({"input": "a"})
    assert d.engine_report()["summary"]["level_name"] == "comprehensive"
    d.disable_profiling()
    assert d.run({"input": "a"})["out"]


def test_not_enabled_and_bad_input(tmp_path: Any) -> None:
    d = Debugger(_realistic())
    assert d.run({"input": "a"})["out"]
    with pytest.raises(RuntimeError, match="not enabled"):
        d.get_node_timing()
    out = io.StringIO()
    d.show_profile_report(file=out)
    assert "not enabled" in out.getvalue()
    with pytest.raises(ValueError) as ei:
        Debugger(_realistic(), profiling_level="ultra")
    msg = str(ei.value)
    for name in ("BASIC", "STANDARD", "DETAILED", "COMPREHENSIVE"):
        assert name in msg
    with pytest.raises(ValueError, match="COMPREHENSIVE"):
        d.enable_profiling(level=7)
    with pytest.raises(TypeError, match="compiled graph"):
        Debugger(lambda s: s)
    with pytest.raises(TypeError, match="StateGraph"):
        Debugger({"nodes": []})
    with pytest.raises(ValueError, match="log_level"):
        Debugger(_realistic(), log_level="LOUD")
    Debugger(_realistic(), log_level="DEBUG", state_tracking=True).run({"input": "a"})


def test_export_timing_data(tmp_path: Any) -> None:
    d = Debugger(_realistic(), profiling_level=ProfilingLevel.STANDARD)
    d.run({"input": "hello"})
    path = os.path.join(tmp_path, "timing_data.json")
    assert d.export_timing_data(output_file=path) == path
    doc = json.load(open(path))
    assert set(doc["nodes"]) == {"input_parser", "calculator", "responder"}
    assert doc["nodes"]["calculator"]["calls"] == 1
    before = open(path).read()
    ro = os.path.join(tmp_path, "ro")
    os.mkdir(ro)
    target = os.path.join(ro, "timing_data.json")
    open(target, "w").write(before)
    os.chmod(ro, 0o500)
    try:
        if os.access(ro, os.W_OK):
            pytest.skip("running as a user that ignores directory permissions")
        with pytest.raises(OSError, match="cannot write"):
            d.export_timing_data(output_file=target)
        assert open(target).read() == before
    finally:
        os.chmod(ro, 0o700)
    with pytest.raises(OSError, match="cannot write"):
        d.export_timing_data(output_file=os.path.join(tmp_path, "no", "such", "dir.json"))
    d.export_profile(os.path.join(tmp_path, "engine.json"))
    assert json.load(open(os.path.join(tmp_path, "engine.json")))


def test_export_unwritable_as_root_keeps_file(tmp_path: Any) -> None:
    # Root ignores permissions; a path whose parent is a file fails for all.
    d = Debugger(_realistic(), profiling_level=ProfilingLevel.BASIC)
    d.run({"input": "hello"})
    blocker = os.path.join(tmp_path, "file")
    open(blocker, "w").write("keep")
    with pytest.raises(OSError, match="cannot write"):
        d.export_timing_data(output_file=os.path.join(blocker, "t.json"))
    assert open(blocker).read() == "keep"


@pytest.mark.parametrize("level", ALL_LEVELS, ids=lambda lv: lv.name)
def test_every_show_has_data_and_prints(level: ProfilingLevel) -> None:
    d = Debugger(_realistic(), profiling_level=level, state_tracking=True)
    d.run({"input": "hello"})
    shows = ["show_profile_report", "show_memory_profile", "show_memory_timeline",
             "show_node_memory_usage", "show_resource_utilization", "show_cpu_usage",
             "show_gpu_usage", "show_network_usage", "show_state_size_analysis",
             "show_state_size_timeline", "show_node_state_impact"]
    for name in shows:
        out = io.StringIO()
        getattr(d, name)(file=out)
        assert out.getvalue().strip(), name
        get = "get_" + name[len("show_"):]
        assert hasattr(d, get), get
    out = io.StringIO()
    d.show_node_timing(detailed=True, nodes=["calculator", "responder"], file=out)
    text = out.getvalue()
    for line in ("Node: calculator", "- Total time:", "  - Setup:", "  - Computation:",
                 "  - State update:", "- Called: 1 time", "- Average time:",
                 "- Percentage of total:"):
        assert line in text
    assert "input_parser" not in text
    timing = d.get_node_timing(nodes=["calculator"])
    assert isinstance(timing["calculator"], NodeTiming)
    with pytest.raises(ValueError, match="unknown node"):
        d.get_node_timing(nodes=["nope"])
    out = io.StringIO()
    d.show_profile_report(file=out)
    text = out.getvalue()
    assert text.startswith("Performance Profile:\nTotal execution time: ")
    assert "Node Execution Times:\n- input_parser: " in text
    assert "Memory Usage:" in text
    g = d.get_gpu_usage()
    if not g["available"]:
        out = io.StringIO()
        d.show_gpu_usage(file=out)
        assert "unavailable: " in out.getvalue()
    if level >= ProfilingLevel.STANDARD:
        out = io.StringIO()
        d.show_memory_profile(file=out)
        for line in ("Initial memory:", "Peak memory:", "(at node:", "Final memory:",
                     "Memory growth:", "Node Memory Impact:", "- calculator:"):
            assert line in out.getvalue()


def test_each_run_reports_only_itself(level: ProfilingLevel) -> None:
    """The Debugger reuses one engine session from run to run (restarted,
    not recreated): every report still covers its own run alone."""
    calls = {"n": 0}

    def slow(s: dict) -> dict:
        calls["n"] += 1
        time.sleep(0.02 if calls["n"] == 1 else 0.002)
        return {}

    d = Debugger(chain(("a", lambda s: {}), ("slow", slow)).compile(), profiling_level=level)
    d.run({"n": 1})
    first = d.get_node_timing()
    s1 = d._last.session
    d.run({"n": 1})
    second = d.get_node_timing()
    assert d._last.session is s1  # restarted, not recreated
    for name in ("a", "slow"):
        assert first[name].calls == 1 and second[name].calls == 1
    assert first["slow"].computation_ms >= 19.5  # a sleep is never shorter
    assert 1.9 <= second["slow"].computation_ms < 15 * SLACK  # not 22: run 1 is gone
    assert d.engine_report()["summary"]["unbalanced"] == 0
    # A parallel graph on the same Debugger: pool threads are new each run.
    p = Debugger(parallel_graph(0.001), profiling_level=level)
    for _ in range(3):
        p.run({"input": "y"})
        t = p.get_node_timing()
        assert t["left"].calls == 1 and t["right"].calls == 1 and t["join"].calls == 1
        # The parallel superstep's reducers: one span, shared by the writes each made.
        assert dict(p._last.rec.shared_update_calls) == {"left": 1, "right": 1}
        shares = p._last.rec.shared_update_ns
        assert shares["left"] > 0 and shares["left"] == pytest.approx(shares["right"])
        assert p.engine_report()["nodes"]["(parallel)/state_update"]["count"] == 1
    # Another level: a session of that level, the old one is freed.
    d.enable_profiling(ProfilingLevel.BASIC if level != ProfilingLevel.BASIC
                       else ProfilingLevel.STANDARD)
    d.run({"n": 1})
    assert d._last.session is not s1 and s1.closed
    assert d.get_node_timing()["slow"].calls == 1
    d.close()
    assert d._last is None


def test_reuse_threads_same_results_same_workers() -> None:
    g = parallel_graph(0.001)
    base = g.invoke({"input": "y"})
    d = Debugger(g, profiling_level=ProfilingLevel.COMPREHENSIVE)  # lends pools by default
    seen = []
    for _ in range(3):
        out = d.run({"input": "y"})
        assert out["out"] == base["out"] and sorted(out["results"]) == sorted(base["results"])
        seen.append(frozenset(out["threads"]))
        t = d.get_node_timing()
        assert t["left"].calls == 1 and t["right"].calls == 1
    # The same workers from run to run: the lent pool grows to the graph's
    # width (2 branches) and no further, however the tasks fall on it (one
    # worker may take both branches in one run and share them in the next).
    workers = set().union(*seen)
    assert len(workers) <= 2, seen
    assert d.engine_report()["summary"]["unbalanced"] == 0
    d.close()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and workers & {t.ident for t in threading.enumerate()}:
        time.sleep(0.01)
    assert not workers & {t.ident for t in threading.enumerate()}  # they ended with close()
    # Off below COMPREHENSIVE and when asked; a bad value is refused.
    b = Debugger(g, profiling_level=ProfilingLevel.BASIC)
    b.run({"input": "y"})
    assert b._pools is None
    c = Debugger(g, profiling_level=ProfilingLevel.COMPREHENSIVE, reuse_threads=False)
    c.run({"input": "y"})
    assert c._pools is None
    with pytest.raises(TypeError, match="reuse_threads must be True, False or None"):
        Debugger(g, reuse_threads="yes")


def test_concurrent_runs_of_one_debugger() -> None:
    """Two threads running the same Debugger at once: the second run gets a
    session of its own (the reused one is busy), both results are right."""

    def slow(s: dict) -> dict:
        time.sleep(0.05)
        return {"n": s["n"] + 1}

    d = Debugger(chain(("slow", slow), ("b", lambda s: {"n": s["n"] * 10})).compile(),
                 profiling_level=ProfilingLevel.STANDARD)
    d.run({"n": 0})  # the reused session exists before the race
    out: dict[int, Any] = {}
    errs: list[BaseException] = []

    def worker(i: int) -> None:
        try:
            out[i] = d.run({"n": i})
        except BaseException as e:  # noqa: BLE001 - reported below
            errs.append(e)

    ts = [threading.Thread(target=worker, args=(i,)) for i in (1, 2)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errs
    assert out[1]["n"] == 20 and out[2]["n"] == 30
    t = d.get_node_timing()
    assert t["slow"].calls == 1 and t["b"].calls == 1  # the last run to finish, alone
    assert d.engine_report()["summary"]["unbalanced"] == 0
    d.run({"n": 5})
    assert d.get_node_timing()["slow"].calls == 1
