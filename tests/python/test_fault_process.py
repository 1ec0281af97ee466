"""Process-level faults: graphs far larger than before, the node registry
running full, fork() in a profiled process, and a process that ends without
stopping its profile.  In every case the program must run exactly as it
would without kfm."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import warnings
from typing import Any

import pytest

from conftest import SANITIZER, chain
from kfm_debugging import Debugger, ProfilingLevel


def _incr(state: dict[str, Any]) -> dict[str, Any]:
    return {"n": state.get("n", 0) + 1}


def _long_chain(n: int) -> Any:
    return chain(*[(f"n{i}", _incr) for i in range(n)]).compile()


@pytest.mark.parametrize(
    "n",
    [
        2000,
        pytest.param(
            10000,
            marks=pytest.mark.skipif(
                bool(SANITIZER), reason="10,000 supersteps take minutes under a sanitizer"
            ),
        ),
    ],
)
def test_large_chain_runs_and_counts_every_node(n: int) -> None:
    g = _long_chain(n)
    cfg = {"recursion_limit": n + 10}
    want = g.invoke({"n": 0}, cfg)
    d = Debugger(g, profiling_level=ProfilingLevel.BASIC)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no registry-full warning at this size
        got = d.run({"n": 0}, cfg)
    assert got == want and got["n"] == n
    timing = d.get_node_timing()
    assert len(timing) == n
    assert all(timing[f"n{i}"].calls == 1 for i in range(0, n, 97))
    assert timing[f"n{n - 1}"].calls == 1
    d.close()


def test_registry_full_warns_once_and_runs_on() -> None:
    """Past max_nodes the graph still runs, unchanged, with one warning."""
    g = _long_chain(30)
    d = Debugger(g, profiling_level=ProfilingLevel.STANDARD, engine_config="max_nodes=40")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert d.run({"n": 0})["n"] == 30
        assert d.run({"n": 5})["n"] == 35
    full = [w for w in caught if "registry full" in str(w.message)]
    assert len(full) == 1, [str(w.message) for w in caught]
    assert "(other)" in str(full[0].message)
    assert issubclass(full[0].category, RuntimeWarning)
    assert d.get_node_timing()["n0"].calls == 1
    d.close()


def _run_script(code: str, *args: str, env: dict[str, str] | None = None,
                timeout: float = 120) -> subprocess.CompletedProcess[str]:
    e = dict(os.environ)
    e.pop("KFM_CONFIG", None)
    e.update(env or {})
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args], env=e,
                          capture_output=True, text=True, timeout=timeout)


_GRAPH = """
    import os, sys, time
    sys.path[:0] = {path!r}
    from conftest import chain
    from kfm_debugging import Debugger, ProfilingLevel
    def incr(s):
        return {{"n": s.get("n", 0) + 1}}
    g = chain(("a", incr), ("b", incr), ("c", incr)).compile()
"""


@pytest.mark.skipif("address" in SANITIZER,
                    reason="GCC 12's ASan allocator is not fork-safe (a child can hang in free)")
@pytest.mark.parametrize("level", ["STANDARD", "DETAILED", "COMPREHENSIVE"])
def test_fork_child_exits_normally(level: str) -> None:
    """A child forked after profiled runs exits through the interpreter's
    normal shutdown (sessions deallocated) without hanging, and can run the
    graph itself; the parent's next run is unaffected."""
    # TSan kills a child of a multi-threaded process that starts threads
    # (the sampler, LangGraph's pool): there the child only exits.
    threads_in_child = "thread" not in SANITIZER
    code = _GRAPH.format(path=sys.path[:3] + [os.path.dirname(__file__)]) + f"""
    d = Debugger(g, profiling_level=ProfilingLevel.{level})
    assert d.run({{"n": 0}})["n"] == 3
    pid = os.fork()
    if pid == 0:
        if {threads_in_child}:
            assert g.invoke({{"n": 1}})["n"] == 4
            # The child's own runs are measured by a session of its own.
            assert d.run({{"n": 1}})["n"] == 4
            assert d.get_node_timing()["b"].calls == 1
            assert d.history[-1]["total_ms"] > 0
        sys.exit(0)
    _, st = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(st) == 0, st
    assert d.run({{"n": 2}})["n"] == 5
    assert d.get_node_timing()["b"].calls == 1
    print("parent ok")
    """
    r = _run_script(code, timeout=60)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "parent ok" in r.stdout


def test_exit_without_stop_leaves_a_truncated_profile(tmp_path: Any) -> None:
    """KFM_CONFIG output= and a process that exits mid-run: the profile is
    written as the interpreter shuts down (its sessions are destroyed while
    running), marked truncated, with the open node named."""
    out = tmp_path / "p.json"
    code = _GRAPH.format(path=sys.path[:3] + [os.path.dirname(__file__)]) + """
    from kfm_debugging import _kfm
    s = _kfm.Session("level=standard")
    i = s.register("phase")
    s.start()
    s.enter(i)
    os._exit(3) if len(sys.argv) > 1 else sys.exit(3)
    """
    r = _run_script(code, "x", env={"KFM_CONFIG": f"output={out}"})
    assert r.returncode == 3, r.stderr[-2000:]
    assert not out.exists()  # os._exit skips every exit handler: nothing to flush
    r = _run_script(code, env={"KFM_CONFIG": f"output={out}"})
    assert r.returncode == 3, r.stderr[-2000:]
    prof = json.loads(out.read_text())
    assert prof["truncated"]["reason"] == "kfm_session_destroy with nodes still open"
    assert prof["truncated"]["open"][0]["nodes"] == ["phase"]


def test_sigterm_flush_keeps_the_signal(tmp_path: Any) -> None:
    out = tmp_path / "p.json"
    code = """
    import os, signal
    from kfm_debugging import _kfm
    s = _kfm.Session("level=basic,flush_signals=on,output=" + os.environ["OUT"])
    i = s.register("work")
    s.start()
    s.enter(i)
    os.kill(os.getpid(), signal.SIGTERM)
    """
    r = _run_script(code, env={"OUT": str(out)})
    assert r.returncode == -15, (r.returncode, r.stderr[-2000:])
    prof = json.loads(out.read_text())
    assert prof["truncated"]["reason"] == "SIGTERM before kfm_session_stop"
    assert prof["truncated"]["open"][0]["nodes"] == ["work"]


def test_long_names_sharing_a_tail_stay_distinct() -> None:
    """Two nodes whose 300-byte names differ only in their first bytes are
    two nodes in every report, each with its own count."""
    tail = "x" * 290
    a, b = "a" + tail, "b" + tail
    g = chain((a, _incr), (b, _incr), ("c", _incr)).compile()
    d = Debugger(g, profiling_level=ProfilingLevel.BASIC)
    assert d.run({"n": 0})["n"] == 3
    t = d.get_node_timing()
    assert t[a].calls == 1 and t[b].calls == 1 and t["c"].calls == 1
    d.close()


_CTRL_C = """
    import json, operator, os, signal, sys, time
    from typing import Annotated, TypedDict
    from langgraph.graph import END, START, StateGraph
    from kfm_debugging import Debugger, ProfilingLevel

    def interrupting_add(a, b):
        if b == ["stop"]:
            raise KeyboardInterrupt("in reducer")
        return a + b

    class S(TypedDict, total=False):
        log: Annotated[list, interrupting_add]
        n: int

    def build(where):
        done = []  # side effects, in order
        def node(name):
            def f(s):
                done.append(name)
                if where == "compute" and name == "b":
                    raise KeyboardInterrupt("in node")
                if where == "signal" and name == "b":
                    os.kill(os.getpid(), signal.SIGINT)
                    time.sleep(1)  # the handler raises here
                    done.append("not reached")
                if where == "reducer" and name == "b":
                    return {"log": ["stop"]}
                return {"log": [name], "n": s.get("n", 0) + 1}
            return f
        def route(s):
            if where == "router":
                raise KeyboardInterrupt("in router")
            return "c"
        g = StateGraph(S)
        for n in ("a", "b", "c", "d"):
            g.add_node(n, node(n))
        g.add_edge(START, "a")
        g.add_edge("a", "b")
        g.add_conditional_edges("b", route, ["c"])
        g.add_edge("b", "d")  # d runs beside c
        g.add_edge("c", END)
        g.add_edge("d", END)
        return g.compile(), done

    def outcome(level, where):
        g, done = build(where)
        run = g.invoke if level == "none" else Debugger(
            g, profiling_level=getattr(ProfilingLevel, level)).run
        try:
            r = run({"n": 0})
            return ["ok", sorted(r["log"]), done]
        except BaseException as e:
            return [type(e).__name__, str(e), done]

    res = {}
    for where in ("compute", "reducer", "router", "signal"):
        for level in ("none", "BASIC", "STANDARD", "DETAILED", "COMPREHENSIVE"):
            res[where + "/" + level] = outcome(level, where)
    print(json.dumps(res))
"""


def test_ctrl_c_in_every_phase_as_unprofiled() -> None:
    """KeyboardInterrupt raised in a node, a reducer (State update), a
    routing function, and a real SIGINT during a node: at every level the run
    ends with the same exception and the same side effects as unprofiled."""
    r = _run_script(_CTRL_C, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads(r.stdout.strip().splitlines()[-1])
    for where in ("compute", "reducer", "router", "signal"):
        want = res[where + "/none"]
        assert want[0] == "KeyboardInterrupt", (where, want)
        for level in ("BASIC", "STANDARD", "DETAILED", "COMPREHENSIVE"):
            assert res[f"{where}/{level}"] == want, (where, level, res[f"{where}/{level}"], want)


def test_graph_past_the_default_registry_gets_its_own_size() -> None:
    """20,000 nodes (80,000 engine names, past the default 65,536): the
    registry is sized for the graph, so no node falls into "(other)"."""
    n = 20000
    b = chain(*[(f"n{i}", _incr) for i in range(n)])
    g = b.compile()
    d = Debugger(g, profiling_level=ProfilingLevel.BASIC)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a registry-full warning fails the test
        # One superstep is enough to register every node: the first node
        # runs, the graph is cut short by the recursion limit afterwards.
        try:
            d.run({"n": 0}, {"recursion_limit": 3})
        except Exception as e:  # LangGraph's GraphRecursionError
            assert "ecursion" in type(e).__name__ + str(e)
    t = d.get_node_timing()
    assert t["n0"].calls == 1
    assert "(other)" not in t
    d.close()
