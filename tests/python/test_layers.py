"""The package's layers: collect / model / analysis / render behind the
Debugger facade.

- Graphs are freed: nothing process-wide keeps a profiled graph alive.
- Every result type reads as attributes and as a mapping, and goes through
  to_dict / JSON / from_dict unchanged.
- "Unavailable: reason" has one representation (model.Section, raised as
  model.Unavailable where no section can carry it).
- Only collect/ imports LangGraph; model/, analysis/ and render/ reach
  neither the engine nor collect/ at run time.
"""

from __future__ import annotations

import ast
import dataclasses
import gc
import json
import operator
import pathlib
import weakref
from typing import Annotated, Any, TypedDict

import pytest
from langgraph.graph import END, START, StateGraph

import kfm_debugging
from conftest import chain
from kfm_debugging import Debugger, ProfilingLevel, _kfm, analysis, model

PKG = pathlib.Path(kfm_debugging.__file__).parent


def noop(s: dict) -> dict:
    return {"n": s.get("n", 0) + 1}


# --- graphs built per request are freed ---------------------------------------
class _S(TypedDict, total=False):
    n: int
    log: Annotated[list, operator.add]


def _per_request_graph(i: int) -> Any:
    # A closure per graph, as a server building graphs per request would
    # have: it is reachable only through the graph's nodes.
    payload = [i] * 100

    def work(s: dict) -> dict:
        return {"n": s.get("n", 0) + len(payload), "log": [i]}

    def left(s: dict) -> dict:
        return {"log": ["l"]}

    def right(s: dict) -> dict:
        return {"log": ["r"]}

    b = StateGraph(_S)
    b.add_node("work", work)
    b.add_node("left", left)
    b.add_node("right", right)
    b.add_edge(START, "work")
    b.add_edge("work", "left")
    b.add_edge("work", "right")
    b.add_edge("left", END)
    b.add_edge("right", END)
    return b.compile(), work


@pytest.mark.parametrize("level", [ProfilingLevel.BASIC, ProfilingLevel.COMPREHENSIVE],
                         ids=lambda lv: lv.name)
def test_graphs_profiled_in_a_loop_are_freed(level: ProfilingLevel) -> None:
    refs: list[weakref.ref[Any]] = []
    for i in range(50):
        g, fn = _per_request_graph(i)
        d = Debugger(g, profiling_level=level)
        assert d.run({"n": 0})["n"] == 100
        assert d.get_node_timing()["work"].calls == 1
        refs += [weakref.ref(g), weakref.ref(fn), weakref.ref(d)]
        del g, fn, d
    gc.collect()
    alive = [r() for r in refs if r() is not None]
    assert not alive, f"{len(alive)} of {len(refs)} graphs, node functions or Debuggers alive"


def test_a_graph_profiled_twice_reuses_its_instrumented_nodes() -> None:
    g, _fn = _per_request_graph(0)
    d = Debugger(g, profiling_level=ProfilingLevel.BASIC)
    d.run({"n": 0})
    d.run({"n": 0})
    assert d.get_node_timing()["work"].calls == 1
    assert d.engine_report()["summary"]["unbalanced"] == 0
    assert d.get_profile_report()["instrumentation_failures"] == 0


# --- result types ---------------------------------------------------------------
def _results() -> list[Any]:
    """Every result the Debugger gives, measured and unavailable."""
    out: list[Any] = []
    for lv, st in ((ProfilingLevel.COMPREHENSIVE, True), (ProfilingLevel.DETAILED, True),
                   (ProfilingLevel.BASIC, False)):
        d = Debugger(chain(("a", noop), ("b", noop)), profiling_level=lv, state_tracking=st)
        d.run({"input": "x"})
        out += [d.get_profile_report(), d.get_memory_profile(), d.get_memory_timeline(),
                d.get_cpu_usage(), d.get_network_usage(), d.get_gpu_usage(),
                d.get_resource_utilization(), d.get_state_size_timeline(),
                d.get_state_size_analysis(), analysis.run_summary(d._last)]
        out += list(d.get_node_timing().values())
        out += list(d.get_memory_profile().nodes.values())
        out += list(d.get_cpu_usage().nodes.values())
        if st:
            out += list(d.get_node_state_impact().values())
        out.append(d.get_resource_utilization().sampler)
    # The analysis calls, on a graph with a waiting node (findings and
    # suggestions are not empty).
    d = Debugger(chain(("a", noop), ("b", _sleepy)), profiling_level=ProfilingLevel.DETAILED)
    d.register_performance_metric("twice", lambda ns, es: 2 * ns["execution_time"])
    d.run({"input": "x"})
    cp = d.get_critical_path()
    b = d.identify_bottlenecks(0)
    sug = d.get_optimization_suggestions(b)
    out += [cp, *cp.steps, *cp.steps[0].tasks, d.estimate_speedup("b", 2), *b.values(),
            *b["b"].findings, *sug.values(), *sug["b"].suggestions, d.get_node_performance("b"),
            d.get_performance_metric("twice")]
    return out


def _sleepy(s: dict) -> dict:
    import time

    time.sleep(0.01)
    return {"n": 1}


def _json(x: Any) -> Any:
    return json.loads(json.dumps(x, default=str))


def test_every_result_type_round_trips_and_reads_both_ways() -> None:
    results = _results()
    assert {type(r) for r in results} == set(model.RESULT_TYPES)
    for r in results:
        assert dataclasses.is_dataclass(r) and isinstance(r, model.Record)
        data = r.to_dict()
        assert data == dataclasses.asdict(r)
        wire = _json(data)
        back = type(r).from_dict(wire)
        assert type(back) is type(r)
        assert _json(back.to_dict()) == wire
        if type(r) in (model.NodeTiming, model.StateImpact, model.SamplerStats):
            assert repr(back) == repr(r)  # no tuples inside: exact (repr: NaN == NaN)
        # nested results come back as their types
        for f in dataclasses.fields(r):
            v, bv = getattr(r, f.name), getattr(back, f.name)
            if isinstance(v, model.Record):
                assert type(bv) is type(v)
            if isinstance(v, dict) and v and all(isinstance(x, model.Record) for x in v.values()):
                assert all(type(bv[k]) is type(x) for k, x in v.items())
        # attributes and mapping access agree
        assert list(r.keys()) == [f.name for f in dataclasses.fields(r)]
        assert list(r) == list(r.keys()) and len(r) == len(r.keys())
        for k, v in r.items():
            assert r[k] is getattr(r, k) is v and k in r and r.get(k) is v
        assert "no such field" not in r and r.get("no such field", 7) == 7
        with pytest.raises(KeyError):
            r["no such field"]
        assert dict(r) == {k: getattr(r, k) for k in r.keys()}


def test_spec_mapping_access() -> None:
    d = Debugger(chain(("n0", noop), ("n1", noop)), profiling_level=ProfilingLevel.STANDARD)
    d.run({"input": "x"})
    t = d.get_node_timing()
    assert t["n0"]["calls"] == t["n0"].calls == 1
    m = d.get_memory_profile()
    assert m["peak_mb"] == m.peak_mb and m["nodes"]["n1"]["calls"] == 1
    r = d.get_profile_report()
    assert r["total_ms"] == r.total_ms and dict(r.items())["mode"] == "invoke"


def test_unavailable_has_one_representation() -> None:
    d = Debugger(chain(("a", noop)), profiling_level=ProfilingLevel.BASIC)
    d.run({"input": "x"})
    sections = [d.get_memory_profile(), d.get_memory_timeline(), d.get_cpu_usage(),
                d.get_network_usage(), d.get_gpu_usage(), d.get_state_size_timeline(),
                d.get_state_size_analysis()]
    for s in sections:
        assert isinstance(s, model.Section) and s.available is False and s["available"] is False
        assert s.reason and s["reason"] == s.reason
        with pytest.raises(model.Unavailable, match="unavailable: "):
            s.require("x")
    with pytest.raises(model.Unavailable) as e:
        d.get_node_state_impact()
    assert isinstance(e.value, RuntimeError)
    assert e.value.reason == d.get_state_size_analysis().reason
    with pytest.raises(model.Unavailable) as e2:
        d.get_node_memory_usage()
    assert e2.value.reason == d.get_memory_profile().reason
    r = d.get_resource_utilization()
    assert not r.memory.available and not r["cpu"]["available"]


# --- the C hooks' run tables: a type with named fields ----------------------------
def test_hook_data_named_fields() -> None:
    s = _kfm.Session("level=basic")
    try:
        tables = {k: {} for k in ("id_task", "setup_wall", "id_compute", "id_update", "cend",
                                  "post_ns", "shared_update_ns", "shared_update_calls")}
        h = _kfm.HookData(session=s, state_tracking=True, **tables)
        assert h.session is s and h.state_tracking is True
        for k, v in tables.items():
            assert getattr(h, k) is v
        with pytest.raises(TypeError):
            _kfm.HookData(s, True, *tables.values())  # keywords only
        with pytest.raises(TypeError):
            _kfm.HookData(session=object(), state_tracking=False, **tables)
        with pytest.raises(AttributeError):
            h.cend = {}  # read-only
    finally:
        s.close()


def test_c_hooks_take_a_plain_chain() -> None:
    """The C hooks read the run's HookData and find each node's instrumented
    proc in the proc's own dict: no Python hook runs for a plain chain."""
    import sys

    g = chain(*[(f"n{i}", noop) for i in range(5)])
    for lv in (ProfilingLevel.BASIC, ProfilingLevel.DETAILED):
        d = Debugger(g, profiling_level=lv)
        d.run({"input": "x"})  # the first run instruments the procs
        seen: set[str] = set()

        def prof(frame: Any, event: str, arg: Any) -> None:
            if event == "call" and "collect" in frame.f_code.co_filename:
                seen.add(frame.f_code.co_name)

        sys.setprofile(prof)
        try:
            d.run({"input": "x"})
        finally:
            sys.setprofile(None)
        slow = {"_run_with_retry", "_prepare_single_task", "_apply_writes", "_invoke_py",
                "_instrumented_proc"}
        assert not seen & slow, (lv, seen & slow)
        assert type(d._last.rec._fast) is _kfm.HookData
        assert d.get_node_timing()["n4"].calls == 1


# --- who imports what ------------------------------------------------------------
def _runtime_imports(path: pathlib.Path) -> set[str]:
    """Modules a source file imports, outside ``if TYPE_CHECKING:`` blocks
    (relative imports resolved against the package)."""
    tree = ast.parse(path.read_text())
    rel = path.relative_to(PKG.parent).with_suffix("").parts
    pkg = list(rel[:-1])  # the package a relative import starts from
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for sub in ast.walk(node):
                skip.add(id(sub))
    out: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg[: len(pkg) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
                if node.module is None:
                    out.update(f"{mod}.{a.name}" for a in node.names)
                else:
                    out.add(mod)
                    out.update(f"{mod}.{a.name}" for a in node.names)
            else:
                out.add(node.module or "")
    return out


def _layer(path: pathlib.Path) -> str:
    parts = path.relative_to(PKG).parts
    return parts[0] if len(parts) > 1 else path.name


def test_only_collect_imports_langgraph() -> None:
    files = sorted(PKG.rglob("*.py"))
    assert {_layer(p) for p in files} >= {"collect", "model", "analysis", "render", "workflows"}
    for p in files:
        mods = _runtime_imports(p)
        lg = {m for m in mods if m.split(".")[0] in ("langgraph", "langchain_core")}
        if _layer(p) in ("collect", "demo.py"):  # demo.py is the example application
            continue
        assert not lg, f"{p.relative_to(PKG)} imports {sorted(lg)}: only collect/ knows LangGraph"


def test_model_analysis_render_reach_no_engine() -> None:
    for layer in ("model", "analysis", "render", "workflows"):
        for p in sorted((PKG / layer).rglob("*.py")):
            mods = _runtime_imports(p)
            bad = {m for m in mods if m.startswith(("kfm_debugging._kfm", "kfm_debugging.collect",
                                                    "kfm_debugging.debugger"))}
            assert not bad, f"{p.relative_to(PKG)} imports {sorted(bad)}"


def test_debugger_is_a_facade() -> None:
    """Each Debugger method wires layers: a few statements, no analysis of
    its own (a new call is an analysis function plus a renderer)."""
    tree = ast.parse((PKG / "debugger.py").read_text())
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Debugger")
    for f in cls.body:
        if not isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        n = sum(isinstance(x, ast.stmt) for x in ast.walk(f)) - 1
        if ast.get_docstring(f) is not None:
            n -= 1
        limit = 30 if f.name == "__init__" else 15
        assert n <= limit, f"Debugger.{f.name} has {n} statements (a facade method has <= {limit})"
