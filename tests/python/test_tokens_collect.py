"""collect/tokens.py: LLM token usage per node from LangChain's callbacks.

Real LangGraph graphs whose nodes call langchain_core's fake chat models
returning AIMessages with known usage_metadata, so every count is exact:
per node (top level, thread-pool branches, async nodes, subgraph nodes
'outer|inner'), streamed calls, calls without usage, errors, isolation of
concurrent runs, and a handler that never raises into the graph.

The module is taken from the source tree (bindings/); the installed package
may be older and not have it, in which case the file is loaded by path as
``kfm_debugging.collect.tokens`` (its relative import then reaches the
installed ``kfm_debugging.model.names``).
"""

from __future__ import annotations

import asyncio
import copy
import importlib
import importlib.util
import logging
import operator
import pathlib
import statistics
import subprocess
import sys
import textwrap
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Annotated, Any, Iterator, TypedDict

import pytest
from langchain_core.callbacks import BaseCallbackHandler, CallbackManager
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.language_models.llms import BaseLLM
from langchain_core.messages import AIMessage, AIMessageChunk
from langchain_core.outputs import ChatGenerationChunk, Generation, LLMResult
from langchain_core.runnables import RunnableConfig
from langchain_core.runnables.config import get_callback_manager_for_config
from langgraph.graph import END, START, StateGraph

REPO = pathlib.Path(__file__).resolve().parents[2]
SRC = REPO / "bindings" / "kfm_debugging" / "collect" / "tokens.py"


def _load_tokens() -> Any:
    name = "kfm_debugging.collect.tokens"
    try:
        mod = importlib.import_module(name)
        if pathlib.Path(mod.__file__).resolve() == SRC:
            return mod
    except ImportError:
        pass
    spec = importlib.util.spec_from_file_location(name, SRC)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


T = _load_tokens()
assert pathlib.Path(T.__file__).resolve() == SRC


# --- models and graphs ----------------------------------------------------------
def usage(i: int, o: int, t: int | None = None) -> dict[str, int]:
    return {"input_tokens": i, "output_tokens": o, "total_tokens": i + o if t is None else t}


def fake(*messages: AIMessage | str) -> GenericFakeChatModel:
    return GenericFakeChatModel(messages=iter(messages))


class StreamingFake(GenericFakeChatModel):
    """GenericFakeChatModel streams word chunks but drops usage_metadata;
    real providers send it in a final chunk, as this one does."""

    final_usage: dict

    def _stream(self, messages: Any, stop: Any = None, run_manager: Any = None,
                **kwargs: Any) -> Iterator[ChatGenerationChunk]:
        yield from super()._stream(messages, stop=stop, run_manager=run_manager, **kwargs)
        last = AIMessageChunk(content="", usage_metadata=self.final_usage)
        yield ChatGenerationChunk(message=last)


class FailingModel(GenericFakeChatModel):
    def _generate(self, *a: Any, **k: Any) -> Any:
        raise ValueError("provider down")


class UsageLLM(BaseLLM):
    """A completion (non-chat) model reporting OpenAI-style llm_output."""

    @property
    def _llm_type(self) -> str:
        return "usage-llm"

    def _generate(self, prompts: list[str], stop: Any = None, run_manager: Any = None,
                  **kwargs: Any) -> LLMResult:
        return LLMResult(generations=[[Generation(text="done")] for _ in prompts],
                         llm_output={"token_usage": {"prompt_tokens": 5, "completion_tokens": 7},
                                     "model_name": "legacy-1"})


class S(TypedDict, total=False):
    out: Annotated[list, operator.add]


def build(nodes: dict[str, Any], edges: list[tuple[str, str]]) -> Any:
    b = StateGraph(S)
    for name, fn in nodes.items():
        b.add_node(name, fn)
    for a, z in edges:
        b.add_edge(a, z)
    return b.compile()


def linear(*names_fns: tuple[str, Any]) -> Any:
    names = [n for n, _ in names_fns]
    return build(dict(names_fns), list(zip([START, *names], [*names, END])))


def row(i: int = 0, o: int = 0, t: int | None = None, calls: int = 0, without: int = 0,
        errors: int = 0) -> dict[str, int]:
    return {"input_tokens": i, "output_tokens": o, "total_tokens": i + o if t is None else t,
            "calls": calls, "calls_without_usage": without, "errors": errors}


def _t(d: dict[str, int]) -> dict[str, int]:
    """Counts without model_ns (the model calls' wall time, checked apart)."""
    return {k: v for k, v in d.items() if k != "model_ns"}


def _c(d: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
    return {n: _t(v) for n, v in d.items()}


def run(graph: Any, inp: Any = None, config: Any = None) -> tuple[Any, Any]:
    u = T.TokenUsage()
    tok = T.activate(u)
    try:
        out = graph.invoke({"out": []} if inp is None else inp, config)
    finally:
        T.deactivate(tok)
    return out, u


def two_models_graph() -> Any:
    """plan (10+5), prep (no model), write (two calls: 100+40, 7+3)."""

    def plan(s: S) -> S:
        m = fake(AIMessage(content="a plan", usage_metadata=usage(10, 5),
                           response_metadata={"model_name": "m-small"}))
        return {"out": [m.invoke("plan it").content]}

    def prep(s: S) -> S:
        return {"out": ["prepped"]}

    def write(s: S, config: RunnableConfig) -> S:
        m = fake(AIMessage(content="draft", usage_metadata=usage(100, 40),
                           response_metadata={"model": "m-big"}),
                 AIMessage(content="final", usage_metadata=usage(7, 3)))
        return {"out": [m.invoke("w", config).content, m.invoke("w2").content]}

    return linear(("plan", plan), ("prep", prep), ("write", write))


# --- tests ---------------------------------------------------------------------
def test_available() -> None:
    assert T.available() is None


def test_two_model_nodes_and_one_without() -> None:
    cfg = {"configurable": {"thread_id": "x"}, "tags": ["user-tag"], "metadata": {"k": 1}}
    before = copy.deepcopy(cfg)
    plain = two_models_graph().invoke({"out": []}, copy.deepcopy(cfg))
    out, u = run(two_models_graph(), config=cfg)
    assert out == plain == {"out": ["a plan", "prepped", "draft", "final"]}
    assert cfg == before and "callbacks" not in cfg  # the user's config is untouched
    assert _c(u.by_node()) == {"plan": row(10, 5, calls=1), "write": row(107, 43, calls=2)}
    assert all(v["model_ns"] > 0 for v in u.by_node().values())
    assert _t(u.totals()) == row(117, 48, calls=3)
    assert u.by_model() == {
        "m-small": {"input_tokens": 10, "output_tokens": 5, "total_tokens": 15, "calls": 1},
        "m-big": {"input_tokens": 100, "output_tokens": 40, "total_tokens": 140, "calls": 1},
        "unknown": {"input_tokens": 7, "output_tokens": 3, "total_tokens": 10, "calls": 1},
    }


def test_user_callbacks_still_receive_events() -> None:
    class Mine(BaseCallbackHandler):
        def __init__(self) -> None:
            self.ends = 0
            self.chains = 0

        def on_llm_end(self, response: Any, **kw: Any) -> None:
            self.ends += 1

        def on_chain_start(self, *a: Any, **kw: Any) -> None:
            self.chains += 1

    plain, with_ = Mine(), Mine()
    two_models_graph().invoke({"out": []}, {"callbacks": [plain]})
    cbs = [with_]
    _, u = run(two_models_graph(), config={"callbacks": cbs})
    assert cbs == [with_]  # the user's list is not extended
    assert (with_.ends, with_.chains) == (plain.ends, plain.chains)
    assert with_.ends == 3 and with_.chains > 0
    assert u.totals()["calls"] == 3


def test_thread_pool_branches() -> None:
    threads: dict[str, int] = {}

    def branch(name: str, i: int, o: int) -> Any:
        def fn(s: S) -> S:
            threads[name] = threading.get_ident()
            time.sleep(0.02)  # both branches in flight together
            m = fake(AIMessage(content=name, usage_metadata=usage(i, o)))
            return {"out": [m.invoke("q").content]}
        return fn

    g = build({"left": branch("left", 3, 4), "right": branch("right", 30, 40)},
              [(START, "left"), (START, "right"), ("left", END), ("right", END)])
    out, u = run(g)
    assert sorted(out["out"]) == ["left", "right"]
    assert any(t != threading.get_ident() for t in threads.values())  # a pool thread ran one
    assert _c(u.by_node()) == {"left": row(3, 4, calls=1), "right": row(30, 40, calls=1)}


def test_async_nodes() -> None:
    async def a(s: S) -> S:
        m = fake(AIMessage(content="x", usage_metadata=usage(11, 22)))
        return {"out": [(await m.ainvoke("q")).content]}

    async def b(s: S) -> S:
        m = fake(AIMessage(content="y", usage_metadata=usage(1, 2)),
                 AIMessage(content="z", usage_metadata=usage(3, 4)))
        r = await asyncio.gather(m.ainvoke("1"), m.ainvoke("2"))
        return {"out": [x.content for x in r]}

    g = build({"a": a, "b": b, "c": a}, [(START, "a"), (START, "b"), ("a", "c"), ("b", "c"),
                                         ("c", END)])

    async def main() -> tuple[Any, Any]:
        u = T.TokenUsage()
        tok = T.activate(u)
        try:
            return await g.ainvoke({"out": []}), u
        finally:
            T.deactivate(tok)

    plain = asyncio.run(g.ainvoke({"out": []}))
    out, u = asyncio.run(main())
    assert sorted(out["out"]) == sorted(plain["out"])
    assert _c(u.by_node()) == {"a": row(11, 22, calls=1), "b": row(4, 6, calls=2),
                           "c": row(11, 22, calls=1)}


def test_users_own_thread_pool_with_config() -> None:
    """A node that hands the call to its own executor (no context copied)
    but passes its config: the handler travels with the config."""

    def node(s: S, config: RunnableConfig) -> S:
        m = fake(AIMessage(content="pooled", usage_metadata=usage(6, 6)))
        with ThreadPoolExecutor(1) as ex:
            return {"out": [ex.submit(m.invoke, "q", config).result().content]}

    out, u = run(linear(("pooled", node)))
    assert out == {"out": ["pooled"]}
    assert _c(u.by_node()) == {"pooled": row(6, 6, calls=1)}


def test_subgraph_node() -> None:
    def inner(s: S) -> S:
        m = fake(AIMessage(content="in", usage_metadata=usage(8, 9)))
        return {"out": [m.invoke("q").content]}

    def top(s: S) -> S:
        m = fake(AIMessage(content="top", usage_metadata=usage(1, 1)))
        return {"out": [m.invoke("q").content]}

    sub = linear(("inner", inner))
    g = build({"top": top, "outer": sub}, [(START, "top"), ("top", "outer"), ("outer", END)])
    out, u = run(g)
    assert out == {"out": ["top", "top", "in"]}
    assert _c(u.by_node()) == {"top": row(1, 1, calls=1), "outer|inner": row(8, 9, calls=1)}

    # A subgraph invoked from inside a node function: same naming.
    def caller(s: S) -> S:
        return sub.invoke({"out": []})

    _, u2 = run(linear(("caller", caller)))
    assert _c(u2.by_node()) == {"caller|inner": row(8, 9, calls=1)}


def test_streamed_call_counted_once() -> None:
    def node(s: S) -> S:
        m = StreamingFake(messages=iter([AIMessage(content="one two three")]),
                          final_usage=usage(12, 3))
        chunks = list(m.stream("q"))
        return {"out": ["".join(str(c.content) for c in chunks)]}

    out, u = run(linear(("streamer", node)))
    assert out == {"out": ["one two three"]}
    assert _c(u.by_node()) == {"streamer": row(12, 3, calls=1)}


def test_message_without_usage() -> None:
    def node(s: S) -> S:
        return {"out": [fake(AIMessage(content="no usage")).invoke("q").content]}

    _, u = run(linear(("bare", node)))
    assert _c(u.by_node()) == {"bare": row(calls=1, without=1)}
    assert u.by_model() == {"unknown": {"input_tokens": 0, "output_tokens": 0,
                                        "total_tokens": 0, "calls": 1}}


def test_llm_output_fallback_and_llm_start() -> None:
    def node(s: S) -> S:
        return {"out": [UsageLLM().invoke("q")]}

    _, u = run(linear(("legacy", node)))
    assert _c(u.by_node()) == {"legacy": row(5, 7, calls=1)}  # total = input + output
    assert u.by_model() == {"legacy-1": {"input_tokens": 5, "output_tokens": 7,
                                         "total_tokens": 12, "calls": 1}}


def test_model_error_counted_and_unchanged() -> None:
    def node(s: S) -> S:
        try:
            FailingModel(messages=iter([])).invoke("q")
        except ValueError as e:
            return {"out": [str(e)]}
        return {"out": ["no error"]}

    def raising(s: S) -> S:
        FailingModel(messages=iter([])).invoke("q")
        return {}

    out, u = run(linear(("caller", node)))
    assert out == {"out": ["provider down"]}
    assert _c(u.by_node()) == {"caller": row(errors=1)}
    with pytest.raises(ValueError, match="provider down"):
        run(linear(("boom", raising)))


def test_outside_nodes() -> None:
    u = T.TokenUsage()
    tok = T.activate(u)
    try:
        fake(AIMessage(content="x", usage_metadata=usage(2, 2))).invoke("q")
    finally:
        T.deactivate(tok)
    assert _c(u.by_node()) == {T.OUTSIDE: row(2, 2, calls=1)}
    assert T.OUTSIDE == "(outside nodes)"


def test_after_deactivate_nothing_is_added() -> None:
    g = two_models_graph()
    _, u = run(g)
    first = u.by_node()
    g.invoke({"out": []})
    fake(AIMessage(content="x", usage_metadata=usage(2, 2))).invoke("q")
    assert u.by_node() == first
    T.deactivate(T.activate(u))  # activate/deactivate again with no call
    assert u.by_node() == first


def test_nested_activation_of_one_usage_counts_once() -> None:
    u = T.TokenUsage()
    t1 = T.activate(u)
    t2 = T.activate(u)
    try:
        two_models_graph().invoke({"out": []})
    finally:
        T.deactivate(t2)
        T.deactivate(t1)
    T.deactivate(t1)  # a second deactivate of a token does nothing
    assert _t(u.totals()) == row(117, 48, calls=3)


def test_concurrent_runs_do_not_mix() -> None:
    barrier = threading.Barrier(2, timeout=10)

    def make(n: int) -> Any:
        def node(s: S) -> S:
            barrier.wait()  # two branches in flight together (of one run or of both)
            m = fake(*[AIMessage(content="x", usage_metadata=usage(n, n)) for _ in range(3)])
            return {"out": [m.invoke("a").content, m.invoke("b").content, m.invoke("c").content]}
        return node

    results: dict[int, Any] = {}
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            g = build({"m": make(n), "n": make(n)}, [(START, "m"), (START, "n"), ("m", END),
                                                     ("n", END)])
            u = T.TokenUsage()
            tok = T.activate(u)
            try:
                for _ in range(5):
                    g.invoke({"out": []})
            finally:
                T.deactivate(tok)
            results[n] = u
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    ts = [threading.Thread(target=worker, args=(n,)) for n in (1, 1000)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    assert not errors, errors
    for n in (1, 1000):
        assert _c(results[n].by_node()) == {"m": row(15 * n, 15 * n, calls=15),
                                        "n": row(15 * n, 15 * n, calls=15)}


class _Hostile:
    """A response whose attributes raise."""

    @property
    def generations(self) -> Any:
        raise RuntimeError("hostile generations")

    @property
    def llm_output(self) -> Any:
        raise RuntimeError("hostile llm_output")


class _HostileUsage(dict):
    def get(self, *a: Any) -> Any:
        raise RuntimeError("hostile usage")

    def __bool__(self) -> bool:
        return True


def test_handler_failure_never_reaches_the_graph(caplog: pytest.LogCaptureFixture) -> None:
    class Msg:
        usage_metadata = _HostileUsage(x=1)
        response_metadata = None

    class Gen:
        message = Msg()

    class Weird:
        generations = [[Gen()]]
        llm_output = None

    def node(s: S, config: RunnableConfig) -> S:
        cm = get_callback_manager_for_config(config)
        assert isinstance(cm, CallbackManager)
        for resp in (_Hostile(), Weird()):
            rm = cm.on_chat_model_start({}, [[AIMessage(content="q")]])[0]
            rm.on_llm_end(resp)
        rm = cm.on_llm_start({}, ["q"])[0]
        rm.on_llm_error(RuntimeError("x"))
        return {"out": ["survived"]}

    with caplog.at_level(logging.WARNING):
        out, u = run(linear(("hostile", node)))
    assert out == {"out": ["survived"]}
    assert _c(u.by_node()) == {"hostile": row(calls=2, without=2, errors=1)}
    # Swallowed by the handler itself, not by langchain_core's logging guard.
    assert not [r for r in caplog.records if "callback" in r.getMessage()]

    # Called directly: still nothing raised, except KeyboardInterrupt.
    u2 = T.TokenUsage()
    tok = T.activate(u2)
    T.deactivate(tok)
    h = u2._handler
    h.on_llm_end(_Hostile(), run_id="r1")
    h.on_chat_model_start(None, None, run_id=object(), metadata=_HostileUsage(a=1))
    h.on_llm_error(None, run_id=None)
    assert u2.totals()["calls"] == 1

    class Interrupt:
        @property
        def generations(self) -> Any:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        h.on_llm_end(Interrupt(), run_id="r2")


def test_handler_is_cheap_by_construction() -> None:
    u = T.TokenUsage()
    T.deactivate(T.activate(u))
    h = u._handler
    assert isinstance(h, BaseCallbackHandler) and h.run_inline and not h.raise_error
    for flag in ("ignore_chain", "ignore_agent", "ignore_retriever", "ignore_retry",
                 "ignore_custom_event"):
        assert getattr(h, flag) is True, flag
    assert h.ignore_llm is False and h.ignore_chat_model is False


_STUB = """
import sys, types
base = {base!r}
for name, path in (("kfm_debugging", base), ("kfm_debugging.collect", base + "/collect"),
                   ("kfm_debugging.model", base + "/model")):
    m = types.ModuleType(name); m.__path__ = [path]; sys.modules[name] = m
"""


def _fresh(code: str) -> list[str]:
    """Runs code in a fresh interpreter with the source tree's package
    importable without its __init__ (no extension, no LangGraph)."""
    prog = _STUB.format(base=str(REPO / "bindings" / "kfm_debugging")) + textwrap.dedent(code)
    r = subprocess.run([sys.executable, "-c", prog], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout.splitlines()


def test_langchain_core_imported_lazily() -> None:
    assert _fresh("""
        import kfm_debugging.collect.tokens as T
        print("langchain_core" in sys.modules)
        print(T.available())
        print("langchain_core" in sys.modules)
    """) == ["False", "None", "True"]


def test_without_langchain_core() -> None:
    """langchain_core not installed: available() says so, activate and
    deactivate still work and count nothing."""
    assert _fresh("""
        sys.path[:] = [p for p in sys.path if "site-packages" not in p]
        import kfm_debugging.collect.tokens as T
        print(T.available())
        u = T.TokenUsage(); T.deactivate(T.activate(u)); print(u.totals()["calls"])
    """) == ["langchain_core is not installed", "0"]


def test_overhead_without_models(capsys: pytest.CaptureFixture) -> None:
    """Measured, not asserted: a 20-node chain of no-op nodes, 300 invokes
    with and without activate() (interleaved), median µs per invoke."""
    g = linear(*[(f"n{i}", lambda s: {}) for i in range(20)])
    inp: dict = {"out": []}
    for _ in range(30):  # warm-up
        g.invoke(inp)
    plain, active = [], []
    u = T.TokenUsage()
    for _ in range(300):
        t0 = time.perf_counter_ns()
        g.invoke(inp)
        plain.append(time.perf_counter_ns() - t0)
        tok = T.activate(u)
        t0 = time.perf_counter_ns()
        g.invoke(inp)
        active.append(time.perf_counter_ns() - t0)
        T.deactivate(tok)
    assert _c(u.by_node()) == {}
    p, a = statistics.median(plain) / 1e3, statistics.median(active) / 1e3
    with capsys.disabled():
        print(f"\n[tokens overhead] 20 no-op nodes, 300 invokes: median {p:.0f} us plain, "
              f"{a:.0f} us with activate() (+{a - p:.0f} us, {100 * (a - p) / p:+.1f}%)")
