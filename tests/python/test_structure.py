"""collect/structure.py: what each node of a graph reads and writes.

The expected reads and writes are those of the node functions below, read by
eye; where a graph is also run, the updates LangGraph actually applied are
checked against the writes claimed (a ground truth independent of the parse).
The node functions are module-level on purpose: their source is what is
analysed, and reasons name their lines.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import operator
from typing import Annotated, Any, Literal, TypedDict

import pytest
from langgraph.cache.memory import InMemoryCache
from langgraph.graph import END, START, StateGraph
from langgraph.types import CachePolicy, Command, RetryPolicy
from pydantic import BaseModel

from kfm_debugging.collect.structure import GraphStructure, NodeIO, graph_structure


def line_of(fn: Any, text: str) -> int:
    """The file line of fn's source that contains text (first one)."""
    lines, first = inspect.getsourcelines(fn)
    for i, line in enumerate(lines):
        if text in line:
            return first + i
    raise AssertionError(f"{text!r} not in {fn.__name__}")


# --- a TypedDict graph --------------------------------------------------------
class State(TypedDict, total=False):
    a: int
    b: int
    c: int
    d: int
    out: str
    log: Annotated[list, operator.add]


class NarrowIn(TypedDict):
    a: int


def helper(x: Any) -> int:
    return 1


def reads_sub(state: State) -> dict[str, Any]:
    return {"b": state["a"] + 1}


def reads_get_in(state: State) -> dict[str, Any]:
    if "c" in state:
        return {"d": state.get("b", 0), "log": ["g"]}
    return {"log": ["g"]}


def narrow(state: dict) -> dict[str, Any]:
    return {"c": 3}


def narrow_by_hint(state: NarrowIn) -> dict[str, Any]:
    return {"log": ["h"]}


def to_helper(state: State) -> dict[str, Any]:
    n = helper(state)
    return {"out": str(n)}


def scaled(factor: int, state: State) -> dict[str, Any]:
    return {"d": state["a"] * factor}


async def async_node(state: State) -> dict[str, Any]:
    await asyncio.sleep(0)
    return {"out": str(state["b"])}


def returns_variable(state: State) -> dict[str, Any]:
    update = {"c": state["a"]}
    return update


def cached(state: State) -> dict[str, Any]:
    return {"log": [state.get("a")]}


def router(state: State) -> str:
    return "left" if state.get("a", 0) > 0 else "right"


def left(state: State) -> None:
    return None


def right(state: State) -> dict[str, Any]:
    return {}


def commander(state: State) -> Command[Literal["__end__"]]:
    return Command(goto=END, update={"out": "cmd", "b": state["d"]})


def sub_node(state: State) -> dict[str, Any]:
    return {"log": ["sub"]}


def subgraph() -> Any:
    s = StateGraph(State)
    s.add_node("inner", sub_node)
    s.add_edge(START, "inner")
    return s.compile()


def typed_graph(cache: bool = True) -> Any:
    b = StateGraph(State)
    b.add_node("reads_sub", reads_sub)
    b.add_node("reads_get_in", reads_get_in)
    b.add_node("narrow", narrow, input_schema=NarrowIn)
    b.add_node("narrow_by_hint", narrow_by_hint)
    b.add_node("to_helper", to_helper)
    b.add_node("lam", lambda s: {"d": s["b"] + 1})
    b.add_node("part", functools.partial(scaled, 2))
    b.add_node("async_node", async_node)
    b.add_node("returns_variable", returns_variable)
    b.add_node("sub", subgraph())
    b.add_node("cached", cached, cache_policy=CachePolicy(), retry_policy=RetryPolicy())
    b.add_node("left", left)
    b.add_node("right", right)
    b.add_node("commander", commander)
    b.add_edge(START, "reads_sub")
    b.add_edge("reads_sub", "reads_get_in")
    b.add_edge("reads_get_in", "narrow")
    b.add_edge("reads_get_in", "narrow_by_hint")
    b.add_edge(["narrow", "narrow_by_hint"], "to_helper")
    b.add_edge("to_helper", "lam")
    b.add_edge("lam", "part")
    b.add_edge("part", "async_node")
    b.add_edge("async_node", "returns_variable")
    b.add_edge("returns_variable", "sub")
    b.add_edge("sub", "cached")
    b.add_conditional_edges("cached", router, ["left", "right"])
    b.add_edge("left", "commander")
    b.add_edge("right", "commander")
    return b.compile(cache=InMemoryCache() if cache else None)


@pytest.fixture(scope="module")
def typed() -> GraphStructure:
    return graph_structure(typed_graph())


EXPECTED = {
    # name: (reads, writes)
    "reads_sub": ({"a"}, {"b"}),
    "reads_get_in": ({"b", "c"}, {"d", "log"}),
    "narrow": ({"a"}, {"c"}),
    "narrow_by_hint": ({"a"}, {"log"}),
    "lam": ({"b"}, {"d"}),
    "part": ({"a"}, {"d"}),
    "async_node": ({"b"}, {"out"}),
    "cached": ({"a"}, {"log"}),
    "left": (set(), set()),
    "right": (set(), set()),
    "commander": ({"d"}, {"out", "b"}),
}


def test_graph_level(typed: GraphStructure) -> None:
    assert typed.reason == ""
    assert typed.cache is True
    assert set(typed.state_keys) == {"a", "b", "c", "d", "out", "log"}
    assert set(typed.nodes) == {*EXPECTED, "to_helper", "returns_variable", "sub"}
    for name, io in typed.nodes.items():
        assert isinstance(io, NodeIO) and io.name == name


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_exact_reads_and_writes(typed: GraphStructure, name: str) -> None:
    io = typed.nodes[name]
    reads, writes = EXPECTED[name]
    assert io.reads == frozenset(reads), io.reads_how
    assert io.writes == frozenset(writes), io.writes_how


def test_provenance(typed: GraphStructure) -> None:
    n = typed.nodes
    assert n["reads_sub"].reads_how == "source: state['a']"
    assert n["reads_get_in"].reads_how == "source: 'c' in state, state.get('b')"
    # Given explicitly or inferred from the parameter's annotation.
    assert n["narrow"].reads_how == "input schema NarrowIn"
    assert n["narrow_by_hint"].reads_how == "input schema NarrowIn"
    assert n["lam"].reads_how == "source: s['b']"
    assert "functools.partial" in n["part"].reads_how
    line = line_of(reads_sub, "return")
    assert n["reads_sub"].writes_how == f"source: dict literal on line {line}"
    assert "Command(update={...})" in n["commander"].writes_how


def test_state_passed_to_a_helper(typed: GraphStructure) -> None:
    io = typed.nodes["to_helper"]
    assert io.reads is None
    line = line_of(to_helper, "helper(state)")
    assert f"state passed to helper() on line {line}" in io.reads_how
    assert io.writes == frozenset({"out"})


def test_returning_a_variable(typed: GraphStructure) -> None:
    io = typed.nodes["returns_variable"]
    assert io.reads == frozenset({"a"})
    assert io.writes is None
    line = line_of(returns_variable, "return update")
    assert f"returns the variable update on line {line}" in io.writes_how


def test_subgraph_node(typed: GraphStructure) -> None:
    io = typed.nodes["sub"]
    assert io.reads is None and io.writes is None
    assert "subgraph" in io.reads_how and "subgraph" in io.writes_how


def test_policies_and_cache(typed: GraphStructure) -> None:
    assert typed.nodes["cached"].cache_policy is True
    assert typed.nodes["cached"].retry_policy is True
    others = [io for name, io in typed.nodes.items() if name != "cached"]
    assert not any(io.cache_policy or io.retry_policy for io in others)
    assert graph_structure(typed_graph(cache=False)).cache is False


def test_node_defaults_reach_every_node() -> None:
    b = StateGraph(State).set_node_defaults(cache_policy=CachePolicy())
    b.add_node("reads_sub", reads_sub)
    b.add_edge(START, "reads_sub")
    assert graph_structure(b.compile()).nodes["reads_sub"].cache_policy is True


def test_edges(typed: GraphStructure) -> None:
    n = typed.nodes
    assert n["reads_sub"].successors == ("reads_get_in",)
    assert n["reads_get_in"].successors == ("narrow", "narrow_by_hint")
    # A join: to_helper runs after each of its sources.
    assert n["narrow"].successors == ("to_helper",)
    assert n["narrow_by_hint"].successors == ("to_helper",)
    assert n["cached"].successors == ()
    assert n["cached"].conditional is True
    assert n["commander"].conditional is True  # Command[Literal[...]] and goto=
    assert n["commander"].successors == ()
    plain = [name for name in n if name not in ("cached", "commander")]
    assert not any(n[name].conditional for name in plain)


def test_end_successor() -> None:
    b = StateGraph(State)
    b.add_node("reads_sub", reads_sub)
    b.add_edge(START, "reads_sub")
    b.add_edge("reads_sub", END)
    assert graph_structure(b.compile()).nodes["reads_sub"].successors == (END,)


def test_claimed_writes_hold_in_a_run() -> None:
    # Every update LangGraph applied for a node is among the keys claimed.
    g = typed_graph(cache=False)
    s = graph_structure(g)
    seen: dict[str, set[str]] = {}

    async def run() -> None:  # async: one node is async
        async for chunk in g.astream({"a": 1, "b": 2, "c": 3, "d": 4}, stream_mode="updates"):
            for name, update in chunk.items():
                seen.setdefault(name, set()).update(update or {})

    asyncio.run(run())
    assert {"reads_sub", "commander", "lam", "part", "left"} <= set(seen)
    for name, keys in seen.items():
        writes = s.nodes[name].writes
        if writes is not None:
            assert keys <= writes, (name, keys, writes)


def test_uncompiled_builder_reads_the_same() -> None:
    b = StateGraph(State)
    b.add_node("narrow", narrow, input_schema=NarrowIn)
    b.add_node("reads_sub", reads_sub)
    b.add_edge(START, "narrow")
    b.add_edge("narrow", "reads_sub")
    s = graph_structure(b)
    assert s.reason == "" and s.cache is False
    assert s.nodes["narrow"].reads == frozenset({"a"})
    assert s.nodes["reads_sub"].reads == frozenset({"a"})


# --- Command without an annotation --------------------------------------------
def goto_only(state: State):  # type: ignore[no-untyped-def]
    if state.get("a"):
        return Command(goto=END, update=[("c", 1)])
    return Command(update={"d": 2})


def to_parent(state: State):  # type: ignore[no-untyped-def]
    return Command(graph=Command.PARENT, goto="x", update={"a": 1})


def annotated_command(state: State) -> Command:
    return Command(update={"a": 1})


def test_command_returns() -> None:
    b = StateGraph(State)
    for fn in (goto_only, to_parent, annotated_command):
        b.add_node(fn.__name__, fn)
    b.add_edge(START, "goto_only")
    s = graph_structure(b.compile())
    io = s.nodes["goto_only"]
    assert io.conditional is True
    assert io.writes == frozenset({"c", "d"})
    assert io.reads == frozenset({"a"})
    # Updates sent to the parent graph are not this graph's writes.
    assert s.nodes["to_parent"].writes == frozenset()
    assert s.nodes["annotated_command"].conditional is True
    assert s.nodes["annotated_command"].writes == frozenset({"a"})


# --- uses of the state that the parse cannot follow ---------------------------
def use_star(state: State) -> dict[str, Any]:
    return {"out": str({**state})}


def use_var_key(state: State) -> dict[str, Any]:
    k = "a"
    return {"b": state[k]}


def use_iter(state: State) -> dict[str, Any]:
    for k in state:
        pass
    return {}


def use_returned(state: State) -> State:
    return state


def use_alias(state: State) -> dict[str, Any]:
    s = state
    return {"b": s["a"]}


def use_comprehension(state: State) -> dict[str, Any]:
    return {"log": [k for k in state]}


def use_dict(state: State) -> dict[str, Any]:
    return {"log": [dict(state)]}


def use_closure(state: State) -> dict[str, Any]:
    def inner() -> int:
        return state["a"]

    return {"b": inner()}


def use_items(state: State) -> dict[str, Any]:
    return {"log": list(state.items())}


def use_kwargs(state: State) -> dict[str, Any]:
    return {"log": [helper(**state)]}


def use_store(state: State) -> dict[str, Any]:
    state["a"] = 1
    return {}


UNFOLLOWED = [
    (use_star, "{**state} unpacked", "{**state}"),
    (use_var_key, "state[k]", "state[k]"),
    (use_iter, "state iterated", "for k in state"),
    (use_returned, "state returned", "return state"),
    (use_alias, "state assigned to s", "s = state"),
    (use_comprehension, "state iterated", "for k in state"),
    (use_dict, "state passed to dict()", "dict(state)"),
    (use_closure, "state captured by inner function inner", "def inner"),
    (use_items, "state.items() called", "state.items()"),
    (use_kwargs, "**state passed to helper()", "helper(**state)"),
    (use_store, "state['a'] assigned", "state[\"a\"] = 1"),
]


@pytest.mark.parametrize("fn,use,text", UNFOLLOWED, ids=[u[0].__name__ for u in UNFOLLOWED])
def test_unfollowed_uses_make_reads_unknown(fn: Any, use: str, text: str) -> None:
    b = StateGraph(State)
    b.add_node("n", fn)
    b.add_edge(START, "n")
    io = graph_structure(b.compile()).nodes["n"]
    assert io.reads is None
    assert io.reads_how.startswith(f"{use} on line {line_of(fn, text)}"), io.reads_how


def test_returns_state_makes_writes_unknown() -> None:
    b = StateGraph(State)
    b.add_node("n", use_returned)
    b.add_edge(START, "n")
    io = graph_structure(b.compile()).nodes["n"]
    assert io.writes is None and "returns the variable state" in io.writes_how


# --- other callables ----------------------------------------------------------
class Worker:
    def __init__(self, key: str) -> None:
        self.key = key

    def method(self, state: State) -> dict[str, Any]:
        return {"out": str(state["c"])}

    def __call__(self, state: State) -> dict[str, Any]:
        return {"log": [state.get("d")]}


def gen_node(state: State) -> Any:
    yield {"a": state["b"]}


def test_methods_instances_lambdas_on_one_line_builtins() -> None:
    w = Worker("k")
    # Two lambdas on one line with the same parameter: told apart by where
    # their code is.
    first, second = (lambda s: {"a": s["b"]}), (lambda s: {"c": s["d"]})
    b = StateGraph(State)
    b.add_node("method", w.method)
    b.add_node("instance", w)
    b.add_node("first", first)
    b.add_node("second", second)
    b.add_node("builtin", len)
    b.add_node("gen", gen_node)
    b.add_edge(START, "method")
    n = graph_structure(b.compile()).nodes
    assert (n["method"].reads, n["method"].writes) == ({"c"}, {"out"})
    assert (n["instance"].reads, n["instance"].writes) == ({"d"}, {"log"})
    assert (n["first"].reads, n["first"].writes) == ({"b"}, {"a"})
    assert (n["second"].reads, n["second"].writes) == ({"d"}, {"c"})
    assert n["builtin"].reads is None and n["builtin"].writes is None
    assert "source unavailable" in n["builtin"].reads_how and "len" in n["builtin"].reads_how
    assert n["gen"].reads == frozenset({"b"})
    assert n["gen"].writes is None and "generator" in n["gen"].writes_how


def test_source_not_on_disk() -> None:
    ns: dict[str, Any] = {}
    exec("def made(state):\n    return {'a': state['b']}\n", ns)
    b = StateGraph(State)
    b.add_node("made", ns["made"])
    b.add_edge(START, "made")
    io = graph_structure(b.compile()).nodes["made"]
    assert io.reads is None and io.writes is None
    assert "source unavailable" in io.reads_how


def test_a_runnable_that_is_no_function() -> None:
    from langchain_core.runnables import RunnablePassthrough

    b = StateGraph(State)
    b.add_node("passthrough", RunnablePassthrough())
    b.add_edge(START, "passthrough")
    io = graph_structure(b.compile()).nodes["passthrough"]
    assert io.reads is None and "RunnablePassthrough" in io.reads_how


# --- a pydantic state ---------------------------------------------------------
class PState(BaseModel):
    a: int = 0
    b: str = ""
    items: list[int] = []


def p_attr(state: PState) -> dict[str, Any]:
    return {"b": str(state.a) + str(len(state.items))}


def p_dump(state: PState) -> dict[str, Any]:
    return {"b": str(state.model_dump())}


def p_not_a_key(state: PState) -> dict[str, Any]:
    return {"b": str(state.model_fields_set)}


def test_pydantic_state() -> None:
    b = StateGraph(PState)
    b.add_node("p_attr", p_attr)
    b.add_node("p_dump", p_dump)
    b.add_node("p_not_a_key", p_not_a_key)
    b.add_edge(START, "p_attr")
    b.add_edge("p_attr", "p_dump")
    b.add_edge("p_dump", "p_not_a_key")
    g = b.compile()
    s = graph_structure(g)
    assert s.reason == "" and set(s.state_keys) == {"a", "b", "items"}
    io = s.nodes["p_attr"]
    assert io.reads == frozenset({"a", "items"}) and io.reads_how == "source: state.a, state.items"
    assert io.writes == frozenset({"b"})
    assert s.nodes["p_dump"].reads is None
    assert "state.model_dump() called" in s.nodes["p_dump"].reads_how
    assert s.nodes["p_not_a_key"].reads is None
    assert "not a state key" in s.nodes["p_not_a_key"].reads_how
    first = next(iter(g.stream({"a": 2, "items": [5]}, stream_mode="updates")))
    assert first == {"p_attr": {"b": "21"}}


# --- graphs that are not StateGraphs ------------------------------------------
def test_plain_pregel() -> None:
    from langgraph.channels import LastValue
    from langgraph.pregel import NodeBuilder, Pregel

    node = NodeBuilder().subscribe_only("a").do(lambda x: x + 1).write_to("b")
    app = Pregel(nodes={"n": node}, channels={"a": LastValue(int), "b": LastValue(int)},
                 input_channels=["a"], output_channels=["b"])
    s = graph_structure(app)
    assert s.nodes == {} and s.state_keys == () and s.cache is False
    assert "not a compiled StateGraph" in s.reason


def test_functional_api() -> None:
    from langgraph.func import entrypoint

    @entrypoint(cache=InMemoryCache())
    def workflow(x: int) -> int:
        return x + 1

    s = graph_structure(workflow)
    assert s.nodes == {} and s.cache is True
    assert "@entrypoint" in s.reason and "no state schema" in s.reason


class Hostile:
    """An object whose every attribute read raises."""

    def __getattribute__(self, name: str) -> Any:
        raise RuntimeError(f"no {name}")


@pytest.mark.parametrize("make", [lambda: None, lambda: 42, object, Hostile, lambda: StateGraph],
                         ids=["None", "int", "object", "hostile", "class"])
def test_never_raises(make: Any) -> None:
    s = graph_structure(make())
    assert s.nodes == {} and s.reason


def test_a_broken_node_is_unknown_not_an_error() -> None:
    g = typed_graph(cache=False)
    g.builder.nodes["reads_sub"].runnable = Hostile()
    io = graph_structure(g).nodes["reads_sub"]
    assert io.reads is None and io.writes is None
    assert io.successors == ("reads_get_in",)
