"""Collector: runs a LangGraph graph inside an engine session.

It owns everything about a run that knows the engine or LangGraph: checking
and compiling the graph, the engine session reused from run to run
(``Session.restart``), KFM_CONFIG handling, the thread pools lent to
LangGraph, the Recorder made for each run and the ContextVar that the hooks
(hooks.py) find it through.  Each finished run becomes a RunData, kept as
``last``, and a summary in ``history``.
"""

from __future__ import annotations

import contextvars
import logging
import os
import threading
import time
import warnings
import weakref
from collections import deque
from collections.abc import AsyncIterator, Iterator
from typing import Any, NamedTuple

from .._kfm import Session
from ..model.level import LEVEL_NAMES, ProfilingLevel
from . import hooks, tokens
from .hooks import GRAPH, LOOP, PARALLEL, Recorder, ThreadPools
from .run import RunData

log = logging.getLogger("kfm_debugging")

_ENV_LOCK = threading.Lock()


class Settings(NamedTuple):
    """How a run is profiled (the Debugger's configuration at its start)."""

    level: ProfilingLevel
    state_tracking: bool
    reuse_threads: bool
    engine_config: str


def graph_kind(obj: Any) -> str | None:
    """'compiled', 'builder' or None."""
    try:
        from langgraph.graph.state import StateGraph
        from langgraph.pregel import Pregel
    except ImportError:  # pragma: no cover
        return None
    if isinstance(obj, Pregel):
        return "compiled"
    if isinstance(obj, StateGraph):
        return "builder"
    try:
        from langgraph.graph import Graph

        if isinstance(obj, Graph):
            return "builder"
    except ImportError:  # pragma: no cover
        pass
    return None


def compiled_graph(graph: Any) -> Any:
    """graph compiled when it is a builder; TypeError when it is no graph."""
    kind = graph_kind(graph)
    if kind is None:
        raise TypeError(
            "Debugger expects a LangGraph graph: a compiled graph "
            "(StateGraph(...).compile() or another Pregel) or an uncompiled StateGraph; "
            f"got {type(graph).__module__}.{type(graph).__qualname__}"
        )
    return graph.compile() if kind == "builder" else graph


def _session_without_env(cfg: str) -> Session:
    """Session(cfg) with KFM_CONFIG out of the environment while the engine
    creates it (the engine reads it only then)."""
    with _ENV_LOCK:
        saved = os.environ.pop("KFM_CONFIG", None)
        try:
            return Session(cfg)
        finally:
            if saved is not None:
                os.environ["KFM_CONFIG"] = saved


class Collector:
    """Profiled runs of one graph (see the module's docstring)."""

    def __init__(self, graph: Any, history_size: int = 100) -> None:
        self.graph = compiled_graph(graph)
        # One summary dict per run, the last history_size runs.
        self.history: deque[dict[str, Any]] = deque(maxlen=history_size)
        self.last: RunData | None = None
        self.pools: ThreadPools | None = None
        # The engine session of the last run, kept for the next run at the
        # same level: (level, engine_config, pid), session, recorder.
        # Restarting it (Session.restart) keeps registrations and the slots
        # and counters of threads that live on; creating one costs 0.1 ms at
        # BASIC and 3 ms at COMPREHENSIVE, more than a small graph's whole run.
        self._eng: tuple[tuple[Any, ...], Session, Recorder] | None = None
        # KFM_CONFIG as the engine saw it at the last session creation:
        # (session, KFM_CONFIG value, engine error if it was ignored).
        self._env_note: tuple[Any, str, str | None] | None = None
        self._env_warned: str | None = None
        self._structure: Any = None
        # RunData -> what each history entry adds from STANDARD up
        # ({"nodes": {node: {metric: value}}, "memory_growth": MB}; set by the
        # Debugger: analysis.history_figures).
        self.summarize: Any = None
        # Called with each finished run's RunData (the Debugger's continuous
        # profiling log); it never raises.
        self.on_finish: Any = None
        # Python allocations traced across runs (collect/allocations.py), set
        # by Debugger(trace_allocations=True).
        self.allocations: Any = None

    def trace_allocations(self, on: bool) -> None:
        """Follow Python allocations across runs (collect/allocations.py):
        detect_memory_leaks then names the lines that keep memory."""
        if not isinstance(on, bool):
            raise TypeError(f"trace_allocations must be True or False, not {on!r}")
        if on and self.allocations is None:
            from .allocations import AllocationTracer

            self.allocations = AllocationTracer(self.graph)
            # tracemalloc, if this started it, stops with the Debugger.
            weakref.finalize(self, self.allocations.stop)

    def structure(self) -> Any:
        """The graph's GraphStructure (collect/structure.py): read once, on
        the first analysis that needs it, never during a run."""
        if self._structure is None:
            from .structure import graph_structure

            self._structure = graph_structure(self.graph)
        return self._structure

    # -- sessions ------------------------------------------------------------
    def _lend_pools(self, reuse: bool) -> ThreadPools | None:
        if not reuse:
            return None
        if self.pools is None or self.pools.closed:
            self.pools = ThreadPools()
            # Idle workers end when the Collector (its Debugger) goes away.
            weakref.finalize(self, self.pools.close)
        return self.pools

    def _session(self, st: Settings) -> Session:
        cfg = f"level={st.level.name.lower()},trace=on"
        # Each node takes four engine names (its span, Setup, Computation,
        # State update).  A graph too large for the engine's default gets a
        # registry sized for it, with room for subgraph and Send names, so
        # no node of the graph falls into "(other)"; an engine_config
        # max_nodes still wins (it comes later).
        try:
            n = len(self.graph.nodes)
        except Exception:  # noqa: BLE001 - a Pregel without a nodes mapping
            n = 0
        if 8 * n + 1024 > 65536:
            cfg += f",max_nodes={min(8 * n + 1024, 1 << 20)}"
        if st.engine_config:
            cfg += "," + st.engine_config
        env = os.environ.get("KFM_CONFIG", "")
        try:
            s = Session(cfg)
        except ValueError as e:
            if not env or "KFM_CONFIG" not in str(e):
                raise
            # A KFM_CONFIG the engine rejects must not fail the user's graph:
            # warn once, and profile without it.
            msg = str(e)
            if self._env_warned != env:
                self._env_warned = env
                warnings.warn(f"kfm_debugging: {msg}; KFM_CONFIG={env!r} is ignored, the "
                              f"graph is profiled without it", RuntimeWarning, stacklevel=5)
            s = _session_without_env(cfg)
            self._env_note = (s, env, msg)
            return s
        self._env_note = (s, env, None) if env else None
        return s

    def _known_names(self) -> list[str]:
        """Node names to register before a run: the graph's own nodes and
        every name the previous run met (subgraph paths, Send targets)."""
        names = [GRAPH, LOOP, PARALLEL]
        try:
            names.extend(n for n in self.graph.nodes if isinstance(n, str))
        except Exception:  # noqa: BLE001 - a Pregel without a nodes mapping
            pass
        if self.last is not None:
            names.extend(self.last.rec.node_names())
        return list(dict.fromkeys(names))

    def _begin(self, st: Settings) -> tuple[Session, Recorder, Any, int]:
        hooks.install()
        if self.allocations is not None:
            self.allocations.before_run()
        # The pid: in a forked child the engine's copy of the session is
        # inert (it measures nothing), so the child makes its own.
        key = (st.level, st.engine_config, os.getpid())
        eng = self._eng
        if eng is not None and eng[0] == key and not eng[1].closed and not eng[1].running:
            s = eng[1]
            if self.last is not None and self.last.session is s:
                self.last = None  # the restart clears the results it reads
            s.restart()
            rec = Recorder(s, st.state_tracking, prev=eng[2])
            self._eng = (key, s, rec)
        else:
            s = self._session(st)
            rec = Recorder(s, st.state_tracking, self._known_names())
            s.start()
            # A run of this Debugger still going on another thread keeps the
            # cached session; this run's is used once.
            if eng is None or not eng[1].running:
                self.drop_engine()
                self._eng = (key, s, rec)
        # The engine sets up a thread on its first transition in a session
        # (counters, buffers: 2 us at BASIC to 0.5 ms at COMPREHENSIVE).
        # Doing it here for the calling thread keeps that out of the graph's
        # measured time and out of its first node; LangGraph's pool threads,
        # unless pools are lent (reuse_threads), are new each run and still
        # pay it inside the run.
        if s.try_enter(rec.warmup_id):
            s.try_exit(rec.warmup_id)
        rec.pools = self._lend_pools(st.reuse_threads)
        # LLM token usage per node, from the LangChain callbacks the graph's
        # model calls already make (collect/tokens.py).  From DETAILED up
        # (resource use): LangChain copies the handler into every callback
        # manager it makes, ~3 us per node even without a model.
        if st.level >= ProfilingLevel.DETAILED and tokens.available() is None:
            rec.tokens = tokens.TokenUsage()
            rec.tokens_tok = tokens.activate(rec.tokens)
        tok = hooks._ACTIVE.set(rec)
        return s, rec, tok, time.perf_counter_ns()

    def _finish(self, st: Settings, s: Session, rec: Recorder, tok: Any, t0: int,
                error: BaseException | None, mode: str) -> None:
        wall = time.perf_counter_ns() - t0
        hooks._ACTIVE.reset(tok)
        if rec.tokens_tok is not None:
            try:
                tokens.deactivate(rec.tokens_tok)
            except ValueError:  # a generator resumed in another context
                pass
        rec._st_channels = None  # the run's channels (and state) are not kept alive
        s.stop()
        rec.instrument_failures += s.failures
        old = self.last
        level_eff = st.level
        try:  # KFM_CONFIG may have set another level than the Debugger's
            level_eff = ProfilingLevel(s.level)
        except (ValueError, RuntimeError):
            pass
        rd = self.last = RunData(level_eff, s, rec, wall, error, mode)
        rd.requested = st.level
        rd.env_note = self._env_note
        rd.t0_perf = t0
        rd.tokens = rec.tokens
        rd._structure = self.structure
        rd.thread_names = {t.native_id: t.name for t in threading.enumerate()
                           if t.native_id is not None}
        if old is not None and old.session is not s and not self._is_cached(old.session):
            old.session.close()
        total_ms = (wall - rec.state_ns) / 1e6
        entry = {"total_ms": total_ms, "level": LEVEL_NAMES[level_eff], "mode": mode,
                 "error": None if error is None else type(error).__name__}
        # Per-node figures for comparisons across runs: the engine's report
        # costs ~1 ms, so not at BASIC (the level for always-on profiling).
        if (self.summarize is not None and self.history.maxlen
                and level_eff >= ProfilingLevel.STANDARD):
            try:
                entry.update(self.summarize(rd))
            except Exception as e:  # noqa: BLE001 - a summary never fails the run
                entry["nodes_error"] = f"{type(e).__name__}: {e}"
        self.history.append(entry)
        if self.allocations is not None:
            try:
                self.allocations.after_run()
            except Exception as e:  # noqa: BLE001 - never the run's failure
                self.allocations.error = f"snapshot failed: {type(e).__name__}: {e}"
        if self.on_finish is not None:
            self.on_finish(rd)
        if log.isEnabledFor(logging.INFO):
            from ..analysis import user_nodes  # only for the log line

            log.info("run (%s, %s): %.2f ms, %d nodes%s", mode, LEVEL_NAMES[st.level], total_ms,
                     len(user_nodes(rd)),
                     "" if error is None else f", raised {type(error).__name__}")

    # -- runs ------------------------------------------------------------------
    def invoke(self, st: Settings, initial_state: Any, config: Any, kwargs: dict[str, Any]) -> Any:
        s, rec, tok, t0 = self._begin(st)
        gid = rec.ids(GRAPH)[0]
        err: BaseException | None = None
        try:
            return rec.call(gid, self.graph.invoke, initial_state, config, **kwargs)
        except BaseException as e:
            err = e
            raise
        finally:
            self._finish(st, s, rec, tok, t0, err, "invoke")

    async def ainvoke(self, st: Settings, initial_state: Any, config: Any,
                      kwargs: dict[str, Any]) -> Any:
        s, rec, tok, t0 = self._begin(st)
        gid = rec.ids(GRAPH)[0]
        err: BaseException | None = None
        try:
            return await hooks._Segmented(
                self.graph.ainvoke(initial_state, config, **kwargs), rec, gid
            )
        except BaseException as e:
            err = e
            raise
        finally:
            self._finish(st, s, rec, tok, t0, err, "ainvoke")

    def stream(self, st: Settings, initial_state: Any, config: Any,
               kwargs: dict[str, Any]) -> Iterator[Any]:
        s, rec, tok, t0 = self._begin(st)
        hooks._ACTIVE.reset(tok)
        gid = rec.ids(GRAPH)[0]
        err: BaseException | None = None
        ctx = contextvars.copy_context()
        ctx.run(hooks._ACTIVE.set, rec)
        it = ctx.run(iter, self.graph.stream(initial_state, config, **kwargs))
        try:
            while True:
                try:
                    chunk = rec.call(gid, ctx.run, next, it)
                except StopIteration:
                    return
                yield chunk
        except BaseException as e:
            if not isinstance(e, GeneratorExit):
                err = e
            raise
        finally:
            close = getattr(it, "close", None)
            if close is not None:
                ctx.run(close)
            tok2 = hooks._ACTIVE.set(rec)
            self._finish(st, s, rec, tok2, t0, err, "stream")

    async def astream(self, st: Settings, initial_state: Any, config: Any,
                      kwargs: dict[str, Any]) -> AsyncIterator[Any]:
        s, rec, tok, t0 = self._begin(st)
        gid = rec.ids(GRAPH)[0]
        err: BaseException | None = None
        agen = self.graph.astream(initial_state, config, **kwargs)
        try:
            while True:
                try:
                    chunk = await hooks._Segmented(agen.__anext__(), rec, gid)
                except StopAsyncIteration:
                    return
                yield chunk
        except BaseException as e:
            if not isinstance(e, GeneratorExit):
                err = e
            raise
        finally:
            self._finish(st, s, rec, tok, t0, err, "astream")

    # -- end -------------------------------------------------------------------
    def _is_cached(self, session: Session) -> bool:
        return self._eng is not None and self._eng[1] is session

    def drop_engine(self) -> None:
        """Forget the cached session (closed unless the last run's data uses it)."""
        eng, self._eng = self._eng, None
        if eng is not None and (self.last is None or self.last.session is not eng[1]):
            eng[1].close()

    def close(self) -> None:
        """Free the engine sessions now (the last run's data goes with them)
        and let the lent pools' threads end."""
        if self.pools is not None:
            self.pools.close()
        self.drop_engine()
        if self.last is not None:
            self.last.session.close()
            self.last = None
