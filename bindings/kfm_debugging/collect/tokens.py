"""LLM token usage per graph node, from the callbacks LangChain already sends.

Every chat model and LLM call made through langchain_core reports its start
(``on_chat_model_start`` / ``on_llm_start``, with the run's metadata) and its
end (``on_llm_end``, with the usage the provider returned) to the callback
handlers of its config.  LangGraph puts ``langgraph_node`` and
``langgraph_checkpoint_ns`` into the metadata of every node's config, and the
config (with its inheritable handlers) follows the call into nested runnables,
tools, subgraphs, LangGraph's worker threads and asyncio tasks.  So one
handler added at the top of a run sees every model call of every node, and
the start's metadata says which node made it.

How the handler gets there without touching the user's program: langchain_core
lets a library register a *configure hook*, a ContextVar read each time a
callback manager is configured; when the variable holds a handler, that
handler is added to the manager (``inheritable=True``: children inherit it).
This is how langchain_core's own ``get_usage_metadata_callback`` works.  The
config objects the user passes are not changed (the manager is built from a
copy), the graph's result is the same, and outside an ``activate`` the hook
costs langchain_core one ContextVar lookup per configure.

``activate(usage)`` registers the hook once per process (on a module-level
ContextVar) and sets the variable to ``usage``'s handler in the calling
context until ``deactivate``.  Runs in other threads or contexts are not seen
(two concurrent runs with two ``TokenUsage`` do not mix).

Cost when the graph has no model: the handler declares every event family
but LLM and chat model as ignored (``ignore_chain`` and the others), so
langchain_core skips it for the chain events of every node and of
LangGraph's internal runnables after one attribute read; ``run_inline``
keeps the async callback manager from sending its events to a thread pool.
What remains is langchain_core copying one more handler into every child
callback manager (measured: about 3 us per node per invoke, ~2% of a chain
of no-op nodes).  A non-inheritable hook would cost a quarter of that but
would miss a call made in a thread that did not copy the context (a node's
own executor) even when the node passes its config along; the inheritable
handler travels with the config.

The handler never raises into the graph: each method swallows its own
failures (a response whose attributes raise, a hostile usage mapping),
except KeyboardInterrupt and SystemExit.

Attribution follows the rest of the package: a node of a subgraph (a
checkpoint_ns with "|") is ``ns_path(checkpoint_ns)`` ("outer|inner"), any
other node its ``langgraph_node``; a call without LangGraph metadata (made
outside any node while a run is active) counts under ``OUTSIDE``.

Limits (what LangChain does not deliver): calls that bypass langchain_core's
callback managers (a provider SDK called directly) are not seen; a model
that reports no usage (or a stream without the provider's usage chunk)
counts in ``calls_without_usage``; for n>1 completions in one call some
integrations copy the response's usage onto every generation, which the sum
over generations then counts n times; a stream abandoned before its end
reaches ``on_llm_error`` (GeneratorExit) and counts as an error, its partial
usage (if any) is not added.

langchain_core is imported on first use (``activate`` / ``available``), not
when kfm_debugging is imported.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from contextvars import ContextVar
from typing import Any

from ..model.names import ns_path

OUTSIDE = "(outside nodes)"  # a model call with no LangGraph metadata
UNKNOWN_MODEL = "unknown"  # a response that names no model
NODE_KEYS = ("input_tokens", "output_tokens", "total_tokens", "calls",
             "calls_without_usage", "errors", "model_ns")
MODEL_KEYS = ("input_tokens", "output_tokens", "total_tokens", "calls")
_IN, _OUT, _TOTAL, _CALLS, _NO_USAGE, _ERRORS, _MODEL_NS = range(7)
_PASS = (KeyboardInterrupt, SystemExit)

# The handler of the run active in this context (None: no run).  The configure
# hook registered on it adds the handler to every callback manager built in
# this context and, through inheritance, to everything those managers run.
_current: ContextVar[Any] = ContextVar("kfm_token_usage", default=None)

_setup_lock = threading.Lock()
_handler_cls: type | None = None  # built once langchain_core is imported
_hook_registered = False
_unavailable: str | None = None  # why langchain_core cannot be used (cached)


def _import() -> type | None:
    """The handler class, built on first use (langchain_core imported here,
    not at import of kfm_debugging); None when langchain_core is missing,
    with the reason in ``_unavailable``.  Callers hold ``_setup_lock``."""
    global _handler_cls, _unavailable
    if _handler_cls is not None or _unavailable is not None:
        return _handler_cls
    try:
        from langchain_core.callbacks import BaseCallbackHandler
        from langchain_core.tracers.context import register_configure_hook  # noqa: F401
    except ModuleNotFoundError as e:
        # Only langchain_core itself missing is "not installed"; a missing
        # submodule or dependency of it is a broken install.
        _unavailable = ("langchain_core is not installed" if e.name == "langchain_core"
                        else f"langchain_core cannot be imported: {e!r}")
        return None
    except BaseException as e:  # noqa: BLE001 - a broken install is a reason, not a crash
        if isinstance(e, _PASS):
            raise
        _unavailable = f"langchain_core cannot be imported: {e!r}"
        return None
    _handler_cls = _make_handler_class(BaseCallbackHandler)
    return _handler_cls


def available() -> str | None:
    """None when langchain_core can be used, else the reason it cannot."""
    if _handler_cls is not None:
        return None
    with _setup_lock:
        _import()
        return _unavailable


def _register() -> type | None:
    """Registers the configure hook once per process (thread-safe)."""
    global _hook_registered, _handler_cls, _unavailable
    if _hook_registered:
        return _handler_cls
    with _setup_lock:
        cls = _import()
        if cls is not None and not _hook_registered:
            try:
                from langchain_core.tracers.context import register_configure_hook

                register_configure_hook(_current, inheritable=True)
            except BaseException as e:  # noqa: BLE001 - an unusable langchain_core: a reason
                if isinstance(e, _PASS):
                    raise
                _handler_cls, _unavailable = None, f"cannot register a configure hook: {e!r}"
                return None
            _hook_registered = True
        return cls


def activate(usage: TokenUsage) -> object:
    """Counts the model calls made in the calling context into ``usage``
    until ``deactivate(token)``.  Without langchain_core nothing is counted
    (``available()`` says why) and the token is still valid."""
    cls = _register()
    handler = None
    if cls is not None:
        with usage._lock:
            handler = usage._handler
            if handler is None or not isinstance(handler, cls):
                # One handler per TokenUsage: activating it twice (nested, or
                # from two threads) must not put two handlers counting into it
                # on one manager (the hook dedups by identity).
                handler = usage._handler = cls(usage)
    return _current.set(handler)


def deactivate(token: object) -> None:
    """Ends the ``activate`` that returned ``token`` (in the same context).
    Calls already started keep reporting to the handler their managers hold,
    so a model call that ends after this is still counted; new runs are not.
    A second deactivate of the same token does nothing."""
    try:
        _current.reset(token)  # type: ignore[arg-type]
    except RuntimeError:  # token already used
        pass


def _count(value: Any) -> int | None:
    """A token count as providers report it: a non-negative int (a bool or
    anything else is no count)."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return int(value)
    return None


def _first(d: Mapping, keys: tuple[str, ...]) -> int | None:
    for k in keys:
        v = _count(d.get(k))
        if v is not None:
            return v
    return None


def _triple(d: Any) -> tuple[int, int, int] | None:
    """(input, output, total) of a usage mapping in LangChain's keys
    (input_tokens/output_tokens) or OpenAI's (prompt_tokens/
    completion_tokens); total is input+output when not given.  None when the
    mapping holds none of them."""
    if not isinstance(d, Mapping) or not d:
        return None
    i = _first(d, ("input_tokens", "prompt_tokens"))
    o = _first(d, ("output_tokens", "completion_tokens"))
    t = _count(d.get("total_tokens"))
    if i is None and o is None and t is None:
        return None
    i, o = i or 0, o or 0
    return i, o, i + o if t is None else t


def _model_of(meta: Any) -> str | None:
    if isinstance(meta, Mapping):
        for k in ("model_name", "model"):
            v = meta.get(k)
            if isinstance(v, str) and v:
                return v
    return None


def _read(response: Any) -> tuple[tuple[int, int, int] | None, str | None]:
    """Usage and model name of an LLMResult: the sum of the messages'
    usage_metadata over all generations, else llm_output's token_usage or
    usage; the model from the first message's response_metadata, else
    llm_output."""
    usage: list[int] | None = None
    model = None
    for group in getattr(response, "generations", None) or ():
        for gen in group or ():
            msg = getattr(gen, "message", None)
            if msg is None:
                continue
            u = _triple(getattr(msg, "usage_metadata", None))
            if u is not None:
                usage = list(u) if usage is None else [a + b for a, b in zip(usage, u)]
            if model is None:
                model = _model_of(getattr(msg, "response_metadata", None))
    out = getattr(response, "llm_output", None) if usage is None or model is None else None
    if isinstance(out, Mapping):
        if usage is None:
            for key in ("token_usage", "usage"):
                u = _triple(out.get(key))
                if u is not None:
                    usage = list(u)
                    break
        if model is None:
            model = _model_of(out)
    return (tuple(usage) if usage is not None else None), model  # type: ignore[return-value]


def _node_of(metadata: Any) -> str:
    """The package's name for the node a call's metadata comes from."""
    if not isinstance(metadata, Mapping):
        return OUTSIDE
    node = metadata.get("langgraph_node")
    if node is None:
        return OUTSIDE
    ns = metadata.get("langgraph_checkpoint_ns")
    if isinstance(ns, str) and "|" in ns:
        path = ns_path(ns)
        if path:
            return path
    return str(node)


class TokenUsage:
    """One run's token usage: per node, per model, totals.

    Filled by the handler from any thread (LangGraph's pool, the event loop),
    read after or during the run; one lock serialises both."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._nodes: dict[str, list[int]] = {}
        self._models: dict[str, list[int]] = {}
        # run_id -> (node, model name from the start's metadata, perf_counter_ns at
        # the start: model_ns is the calls' wall time) of the calls
        # started and not yet ended.
        self._pending: dict[Any, tuple[str, str | None, int]] = {}
        self._handler: Any = None

    def by_node(self) -> dict[str, dict[str, int]]:
        """Node -> NODE_KEYS counts, for the nodes with a model call that
        ended or failed.  ``calls`` are calls that ended (with or without
        usage); ``errors`` calls that failed (not in ``calls``)."""
        with self._lock:
            return {n: dict(zip(NODE_KEYS, v)) for n, v in self._nodes.items()}

    def totals(self) -> dict[str, int]:
        """NODE_KEYS summed over the nodes."""
        with self._lock:
            rows = list(self._nodes.values())
        return {k: sum(r[i] for r in rows) for i, k in enumerate(NODE_KEYS)}

    def by_model(self) -> dict[str, dict[str, int]]:
        """Model name -> MODEL_KEYS counts of the calls that ended.  The name
        is the response's ``model_name`` / ``model`` (response_metadata, else
        llm_output), else the ``ls_model_name`` LangChain put in the start's
        metadata, else ``UNKNOWN_MODEL``."""
        with self._lock:
            return {m: dict(zip(MODEL_KEYS, v)) for m, v in self._models.items()}

    def __repr__(self) -> str:
        return f"TokenUsage({self.totals()})"

    # Called by the handler, which swallows what they raise.  Reading the
    # response (user-reachable objects) happens outside the lock, and each
    # update under it only adds ints, so a failure leaves no half-done count.

    def _start(self, run_id: Any, metadata: Any) -> None:
        node = _node_of(metadata)
        hint = metadata.get("ls_model_name") if isinstance(metadata, Mapping) else None
        with self._lock:
            self._pending[run_id] = (node, hint if isinstance(hint, str) and hint else None,
                                     time.perf_counter_ns())

    def _end(self, run_id: Any, response: Any) -> None:
        t1 = time.perf_counter_ns()
        with self._lock:
            node, hint, t0 = self._pending.pop(run_id, (OUTSIDE, None, t1))
        try:
            usage, model = _read(response)
        except BaseException as e:  # noqa: BLE001 - an unreadable response: no usage
            if isinstance(e, _PASS):
                raise
            usage, model = None, None
        name = model or hint or UNKNOWN_MODEL
        with self._lock:
            row = self._nodes.get(node)
            if row is None:
                row = self._nodes[node] = [0] * len(NODE_KEYS)
            mrow = self._models.get(name)
            if mrow is None:
                mrow = self._models[name] = [0] * len(MODEL_KEYS)
            row[_CALLS] += 1
            row[_MODEL_NS] += t1 - t0
            mrow[_CALLS] += 1
            if usage is None:
                row[_NO_USAGE] += 1
            else:
                for i in (_IN, _OUT, _TOTAL):
                    row[i] += usage[i]
                    mrow[i] += usage[i]

    def _error(self, run_id: Any) -> None:
        with self._lock:
            node, _h, _t = self._pending.pop(run_id, (OUTSIDE, None, 0))
            row = self._nodes.get(node)
            if row is None:
                row = self._nodes[node] = [0] * len(NODE_KEYS)
            row[_ERRORS] += 1


def _quietly(fn: Any, *args: Any) -> None:
    """fn(*args) from a LangChain callback: its failure is never raised into
    the graph (nor into LangChain, which would log it), except
    KeyboardInterrupt and SystemExit."""
    try:
        fn(*args)
    except BaseException as e:  # noqa: BLE001 - never raised into the graph
        if isinstance(e, _PASS):
            raise


def _make_handler_class(base: type) -> type:
    """The callback handler, a subclass of langchain_core's
    BaseCallbackHandler (built once langchain_core is imported)."""

    class _TokenHandler(base):  # type: ignore[misc, valid-type]
        """Forwards LLM start/end/error to a TokenUsage; ignores the rest."""

        # Class attributes shadow BaseCallbackHandler's properties: the
        # callback managers read them with getattr before each event.
        raise_error = False
        run_inline = True
        ignore_llm = False
        ignore_chat_model = False
        ignore_chain = True
        ignore_agent = True  # also tool events
        ignore_retriever = True
        ignore_retry = True
        ignore_custom_event = True

        def __init__(self, usage: TokenUsage) -> None:
            self.usage = usage

        def __repr__(self) -> str:
            return "<kfm token usage handler>"

        def on_chat_model_start(self, serialized: Any, messages: Any, *, run_id: Any,
                                metadata: Any = None, **kwargs: Any) -> None:
            _quietly(self.usage._start, run_id, metadata)

        def on_llm_start(self, serialized: Any, prompts: Any, *, run_id: Any,
                         metadata: Any = None, **kwargs: Any) -> None:
            _quietly(self.usage._start, run_id, metadata)

        def on_llm_end(self, response: Any, *, run_id: Any, **kwargs: Any) -> None:
            _quietly(self.usage._end, run_id, response)

        def on_llm_error(self, error: BaseException, *, run_id: Any, **kwargs: Any) -> None:
            _quietly(self.usage._error, run_id)

    return _TokenHandler


__all__ = ["OUTSIDE", "UNKNOWN_MODEL", "TokenUsage", "activate", "available", "deactivate"]
