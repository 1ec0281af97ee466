"""kfm_debugging.Debugger: per-node profiling of LangGraph graphs.

The Debugger runs a graph exactly as the graph would run on its own (same
result, same exceptions) while the kfm engine measures every node: a task
span per node activation, split into Setup (task and input preparation),
Computation (the node's own function) and State update (channel writes,
edge routing and the reducers).  See _instrument.py for where those hooks
sit in LangGraph.

Each run() creates one engine session at the chosen level; the show_*
methods print the last run's results in the formats of the user guide
(performance-profiling.md), and each has a get_* counterpart that returns
the same data as dicts and dataclasses.

Levels (ProfilingLevel) map to the engine's levels:
  BASIC          time only
  STANDARD       + RSS at every transition, sampled peak (100 Hz)
  DETAILED       + CPU, faults, context switches, I/O, network; state sizes
  COMPREHENSIVE  + hardware counters and GPU where available, 1 kHz sampler

Figures that were not measured are never printed: a section whose level is
too low, or whose backend is unavailable, says "unavailable: <reason>".
"""

from __future__ import annotations

import asyncio
import bisect
import dataclasses
import enum
import json
import logging
import os
import sys
import threading
import time
import warnings
import weakref
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any

from . import _instrument, _statesize
from ._instrument import GRAPH, PARALLEL, Recorder
from ._kfm import Session

log = logging.getLogger("kfm_debugging")

MB = 1024.0 * 1024.0
_TASK_CLOCK = "papi.perf::TASK-CLOCK"
_GPU_BACKENDS = ("cupti", "nvml", "rocm_smi", "gpu")


class ProfilingLevel(enum.IntEnum):
    """How much the Debugger measures; each level includes the ones below."""

    BASIC = 0
    STANDARD = 1
    DETAILED = 2
    COMPREHENSIVE = 3

    @classmethod
    def parse(cls, level: Any) -> ProfilingLevel:
        """A ProfilingLevel from itself, its name (any case) or its number."""
        if isinstance(level, ProfilingLevel):
            return level
        if isinstance(level, str):
            key = level.strip().upper()
            if key.startswith("PROFILINGLEVEL."):
                key = key[len("PROFILINGLEVEL.") :]
            if key in cls.__members__:
                return cls[key]
        elif isinstance(level, int) and not isinstance(level, bool):
            try:
                return cls(level)
            except ValueError:
                pass
        valid = ", ".join(f"ProfilingLevel.{m}" for m in cls.__members__)
        raise ValueError(f"unknown profiling level {level!r}; valid levels: {valid}")


# ---------------------------------------------------------------------------
# Result types


_LEVEL_NAMES = {lv: lv.name for lv in ProfilingLevel}  # enum .name is a descriptor call


@dataclass
class NodeTiming:
    """Time of one node over the run, in milliseconds."""

    name: str
    calls: int
    total_ms: float
    setup_ms: float
    computation_ms: float
    state_update_ms: float
    average_ms: float
    percent: float
    min_ms: float | None = None
    max_ms: float | None = None
    p50_ms: float | None = None
    p90_ms: float | None = None
    p99_ms: float | None = None
    attempts: int = 0
    errors: int = 0
    parent: str | None = None
    asynchronous: bool = False


@dataclass
class NodeMemory:
    name: str
    calls: int
    impact_mb: float  # RSS change over the node's spans (setup + task + state update)
    peak_mb: float | None  # highest RSS rise above the RSS at an activation's start
    peak_rss_mb: float | None  # highest RSS seen while it ran


@dataclass
class MemoryProfile:
    available: bool
    reason: str = ""
    initial_mb: float | None = None
    peak_mb: float | None = None
    peak_node: str | None = None
    final_mb: float | None = None
    growth_mb: float | None = None
    nodes: dict[str, NodeMemory] = field(default_factory=dict)


@dataclass
class NodeResources:
    name: str
    wall_ms: float
    cpu_user_ms: float | None = None
    cpu_sys_ms: float | None = None
    cpu_percent: float | None = None
    cpu_ms: float | None = None  # user + sys (or the counter backend's task clock)
    cpu_source: str | None = None
    computation_cpu_ms: float | None = None  # user + sys inside the node's function
    minor_faults: float | None = None
    major_faults: float | None = None
    voluntary_switches: float | None = None
    involuntary_switches: float | None = None
    io_read_bytes: float | None = None
    io_write_bytes: float | None = None
    net_rx_bytes: float | None = None
    net_tx_bytes: float | None = None


@dataclass
class StateImpact:
    name: str
    steps: int
    bytes_delta: int
    items_delta: int
    max_state_bytes: int


class _RunData:
    """A finished run: the engine report and what the recorder kept."""

    __slots__ = ("level", "session", "rec", "wall_ns", "error", "mode", "_report",
                 "_metric_names", "_events", "_samples", "_acts", "requested", "_busy")

    def __init__(self, level: ProfilingLevel, session: Session, rec: Recorder, wall_ns: int,
                 error: BaseException | None, mode: str) -> None:
        self.level = level
        self.session = session
        self.rec = rec
        self.wall_ns = wall_ns
        self.error = error
        self.mode = mode
        # The engine report is built on first use (a show_*/get_* call), not
        # at the end of every run: a run that nobody reads costs no report.
        self._report: dict[str, Any] | None = None
        self._metric_names: list[str] | None = None
        self._events: dict[str, Any] | None = None
        self._samples: dict[str, Any] | None = None
        self._acts: list[tuple[Any, ...]] | None = None
        # The level the Debugger asked for; level is the session's own
        # (KFM_CONFIG may override it).
        self.requested = level
        self._busy: dict[str, tuple[float, float]] | None = None

    def busy(self) -> dict[str, tuple[float, float]]:
        """Per engine task span name: (sum, union) of its activations' wall
        ns.  Concurrent activations (parallel branches, Send fan-outs, async
        tasks interleaved on one loop) overlap, so their sum can exceed the
        run's wall time; their union cannot."""
        if self._busy is not None:
            return self._busy
        spans: dict[str, list[tuple[float, float]]] = {}
        for key, flat in self.rec.async_spans.items():
            spans[key] = [(flat[i], flat[i + 1]) for i in range(0, len(flat), 2)]
        try:
            acts = self.activations()
        except (RuntimeError, ValueError, KeyError):  # no trace in this session
            acts = []
        for name, _th, t0, t1, _r0, _r1 in acts:
            if name is not None and name not in self.rec.async_wall:
                spans.setdefault(name, []).append((t0, t1))
        out: dict[str, tuple[float, float]] = {}
        for key, iv in spans.items():
            iv.sort()
            tot = uni = 0.0
            end = -1.0
            for a, b in iv:
                tot += b - a
                if a >= end:
                    uni += b - a
                    end = b
                elif b > end:
                    uni += b - end
                    end = b
            out[key] = (tot, uni)
        self._busy = out
        return out

    @property
    def report(self) -> dict[str, Any]:
        if self._report is None:
            self._report = self.session.report()
        return self._report

    @property
    def metric_names(self) -> list[str]:
        if self._metric_names is None:
            self._metric_names = [m["name"] for m in self.report["metrics"]]
        return self._metric_names

    # engine node helpers -----------------------------------------------
    def enode(self, name: str) -> dict[str, Any] | None:
        nodes = self.report["nodes"]
        n = nodes.get(name)
        if n is None and len(name.encode()) > 230:
            # A long name is registered under its shortened engine name.
            for suf in _instrument.SUFFIXES:
                if name.endswith(suf):
                    return nodes.get(_instrument._engine_name(name[: -len(suf)]) + suf)
            return nodes.get(_instrument._engine_name(name))
        return n

    def span_ns(self, name: str) -> tuple[int, float]:
        """(count, wall ns) of an engine span, async spans and setups from the recorder."""
        if name.endswith("/setup"):
            s = self.rec.setup_wall.get(name[:-6])
            return (s[0], float(s[1])) if s else (0, 0.0)
        w = self.rec.async_wall.get(name)
        if w is not None:
            return w[0], float(w[1])
        n = self.enode(name)
        if n is None:
            return 0, 0.0
        return int(n["count"]), float(n["total_ns"])

    def metric(self, name: str, metric: str, kind: str = "inclusive") -> float | None:
        n = self.enode(name)
        if n is None:
            return 0.0 if metric in self.metric_names else None
        return n[kind].get(metric)

    def events(self) -> dict[str, Any]:
        if self._events is None:
            self._events = self.session.events()
        return self._events

    def samples(self) -> dict[str, Any]:
        if self._samples is None:
            self._samples = self.session.samples()
        return self._samples

    def activations(self) -> list[tuple[Any, ...]]:
        """(engine name, thread, t0_ns, t1_ns, rss0, rss1) from the trace."""
        if self._acts is not None:
            return self._acts
        ev = self.events()
        names = ev["names"]
        t = ev["t_ns"].tolist()
        th = ev["thread"].tolist()
        nd = ev["node"].tolist()
        kd = ev["kind"].tolist()
        rss_i = ev["metrics"].index("proc.rss") if "proc.rss" in ev["metrics"] else -1
        vals = ev["values"].tolist() if rss_i >= 0 else None
        stacks: dict[int, list[tuple[int, float, float | None]]] = {}
        acts: list[tuple[Any, ...]] = []
        for i in range(len(t)):
            st = stacks.setdefault(th[i], [])
            rss = vals[i][rss_i] if vals is not None else None
            if kd[i] == 0:
                st.append((nd[i], t[i], rss))
            else:
                while st:
                    node, t0, r0 = st.pop()
                    if node == nd[i]:
                        acts.append((names.get(node), th[i], t0, t[i], r0, rss))
                        break
        self._acts = acts
        return acts


def _user_nodes(rd: _RunData) -> list[str]:
    names = [n for n in rd.rec.node_names() if n != PARALLEL and not n.startswith("__")]
    present = []
    for n in names:
        c, _ = rd.span_ns(n)
        if c or rd.span_ns(n + "/setup")[0]:
            present.append(n)
    return present


def _base(engine_name: str | None) -> str | None:
    if engine_name is None:
        return None
    for suf in _instrument.SUFFIXES:
        if engine_name.endswith(suf):
            return engine_name[: -len(suf)]
    return engine_name


def _fmt_ms(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.2f}ms"


def _fmt_mb(v: float | None, sign: bool = False) -> str:
    if v is None:
        return "n/a"
    return f"{v:+.1f}MB" if sign else f"{v:.1f}MB"


def _atomic_write(path: str | os.PathLike[str], text: str) -> str:
    """Write text to path as the engine's output= does (_files.atomic_write):
    symlinks followed, FIFOs and devices written in place, a regular file
    replaced whole or not at all.  Raises OSError naming the path."""
    from ._files import atomic_write

    return atomic_write(path, text)


def _is_graph(obj: Any) -> str | None:
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


_LOG_LEVELS = ("CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG", "NOTSET")


class Debugger:
    """Profile a LangGraph graph node by node.

    Debugger(graph, enable_profiling=False, profiling_level=None, *,
             log_level=None, state_tracking=None, engine_config="")

    graph: a compiled graph (``StateGraph(...).compile()``, any Pregel) or an
        uncompiled StateGraph, which is compiled with default arguments.
    enable_profiling: True profiles at BASIC unless profiling_level says more.
    profiling_level: a ProfilingLevel (or its name); implies enable_profiling.
    log_level: level of the "kfm_debugging" logger ("DEBUG", "INFO", ... or a
        logging number); each run logs a one-line summary at INFO.
    state_tracking: measure the state's size after every superstep
        (deep sizeof of each state channel).  Default: on at DETAILED and
        COMPREHENSIVE, off below; True or False forces it.  The time it takes
        is excluded from the reported total execution time.
    engine_config: extra kfm engine configuration ("rate=500,backends=...").
    reuse_threads: lend LangGraph thread pools that live across this
        Debugger's runs instead of the new pool LangGraph makes for every
        invoke, so that a worker thread's profiler set-up is paid once, not
        on every run (at COMPREHENSIVE opening a thread's counters costs
        ~0.6 ms, more than starting the thread).  LangGraph still waits for
        all of its tasks in each run; worker threads and their thread-locals
        are the same from run to run, and the runs no longer include
        starting threads.  Default: on at COMPREHENSIVE, off below.
    history_size: how many runs ``history`` keeps (a summary dict per run,
        oldest dropped first); an int >= 0, default 100.

    KFM_CONFIG in the environment is layered by the engine on top of the
    Debugger's own configuration (it may change the level): the reports then
    say so (``level_override`` in get_profile_report).  A KFM_CONFIG the
    engine rejects is ignored with one warning; runs are profiled without it.
    """

    def __init__(
        self,
        graph: Any,
        enable_profiling: bool = False,
        profiling_level: ProfilingLevel | str | int | None = None,
        *,
        log_level: str | int | None = None,
        state_tracking: bool | None = None,
        engine_config: str = "",
        reuse_threads: bool | None = None,
        history_size: int = 100,
    ) -> None:
        kind = _is_graph(graph)
        if kind is None:
            raise TypeError(
                "Debugger expects a LangGraph graph: a compiled graph "
                "(StateGraph(...).compile() or another Pregel) or an uncompiled StateGraph; "
                f"got {type(graph).__module__}.{type(graph).__qualname__}"
            )
        self.graph = graph.compile() if kind == "builder" else graph
        self._level: ProfilingLevel | None = None
        if profiling_level is not None:
            self._level = ProfilingLevel.parse(profiling_level)
        elif enable_profiling:
            self._level = ProfilingLevel.BASIC
        if state_tracking is not None and not isinstance(state_tracking, bool):
            raise TypeError(f"state_tracking must be True, False or None, not {state_tracking!r}")
        self.state_tracking = state_tracking
        if reuse_threads is not None and not isinstance(reuse_threads, bool):
            raise TypeError(f"reuse_threads must be True, False or None, not {reuse_threads!r}")
        self.reuse_threads = reuse_threads
        self._pools: _instrument.ThreadPools | None = None
        self.engine_config = engine_config
        if log_level is not None:
            self.set_log_level(log_level)
        self._last: _RunData | None = None
        # The engine session of the last run, kept for the next run at the
        # same level: (level, engine_config), session, recorder.  Restarting
        # it (Session.restart) keeps registrations and the slots and counters
        # of threads that live on; creating one costs 0.1 ms at BASIC and
        # 3 ms at COMPREHENSIVE, more than a small graph's whole run.
        self._eng: tuple[tuple[Any, str], Session, Recorder] | None = None
        if (not isinstance(history_size, int) or isinstance(history_size, bool)
                or history_size < 0):
            raise ValueError(f"history_size must be an int >= 0 (runs kept in "
                             f"Debugger.history), not {history_size!r}")
        self.history_size = history_size
        # One summary per run, the last history_size runs.
        self.history: deque[dict[str, Any]] = deque(maxlen=history_size)
        # KFM_CONFIG as the engine saw it at the last session creation:
        # (session, KFM_CONFIG value, engine error if it was ignored).
        self._env_note: tuple[Any, str, str | None] | None = None
        self._env_warned: str | None = None

    # -- configuration ---------------------------------------------------
    @staticmethod
    def set_log_level(level: str | int) -> None:
        if isinstance(level, str):
            if level.upper() not in _LOG_LEVELS:
                raise ValueError(
                    f"unknown log_level {level!r}; valid: {', '.join(_LOG_LEVELS)} or a number"
                )
            level = level.upper()
        log.setLevel(level)
        if not log.handlers and not logging.getLogger().handlers:
            h = logging.StreamHandler()
            h.setFormatter(logging.Formatter("%(name)s: %(message)s"))
            log.addHandler(h)

    def enable_profiling(self, level: ProfilingLevel | str | int = ProfilingLevel.BASIC) -> None:
        """Profile the next runs at level (replaces any earlier level)."""
        self._level = ProfilingLevel.parse(level)

    def disable_profiling(self) -> None:
        self._level = None

    @property
    def profiling_enabled(self) -> bool:
        return self._level is not None

    @property
    def profiling_level(self) -> ProfilingLevel | None:
        return self._level

    def _tracking(self) -> bool:
        if self.state_tracking is not None:
            return self.state_tracking
        return self._level is not None and self._level >= ProfilingLevel.DETAILED

    def _lend_pools(self) -> _instrument.ThreadPools | None:
        reuse = self.reuse_threads
        if reuse is None:
            reuse = self._level is not None and self._level >= ProfilingLevel.COMPREHENSIVE
        if not reuse:
            return None
        if self._pools is None or self._pools.closed:
            self._pools = _instrument.ThreadPools()
            # Idle workers end when the Debugger goes away.
            weakref.finalize(self, self._pools.close)
        return self._pools

    def _session(self) -> Session:
        assert self._level is not None
        cfg = f"level={self._level.name.lower()},trace=on"
        if self.engine_config:
            cfg += "," + self.engine_config
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
                              f"graph is profiled without it", RuntimeWarning, stacklevel=4)
            s = _session_without_env(cfg)
            self._env_note = (s, env, msg)
            return s
        self._env_note = (s, env, None) if env else None
        return s

    def _env_override(self, rd: _RunData) -> dict[str, Any] | None:
        """What KFM_CONFIG did to the run's session: None when unset."""
        note = self._env_note
        if note is None or note[0] is not rd.session:
            return None
        _s, env, ignored = note
        return {"KFM_CONFIG": env, "requested_level": rd.requested.name,
                "level": rd.level.name, "ignored": ignored,
                "level_overridden": ignored is None and rd.level != rd.requested}

    # -- running ---------------------------------------------------------
    def _known_names(self) -> list[str]:
        """Node names to register before a run: the graph's own nodes and
        every name the previous run met (subgraph paths, Send targets)."""
        names = [GRAPH, _instrument.LOOP, PARALLEL]
        try:
            names.extend(n for n in self.graph.nodes if isinstance(n, str))
        except Exception:  # noqa: BLE001 - a Pregel without a nodes mapping
            pass
        if self._last is not None:
            names.extend(self._last.rec.node_names())
        return list(dict.fromkeys(names))

    def _begin(self) -> tuple[Session, Recorder, Any, int]:
        _instrument.install()
        assert self._level is not None
        # The pid: in a forked child the engine's copy of the session is
        # inert (it measures nothing), so the child makes its own.
        key = (self._level, self.engine_config, os.getpid())
        eng = self._eng
        if eng is not None and eng[0] == key and not eng[1].closed and not eng[1].running:
            s = eng[1]
            if self._last is not None and self._last.session is s:
                self._last = None  # the restart clears the results it reads
            s.restart()
            rec = Recorder(s, self._tracking(), prev=eng[2])
            self._eng = (key, s, rec)
        else:
            s = self._session()
            rec = Recorder(s, self._tracking(), self._known_names())
            s.start()
            # A run of this Debugger still going on another thread keeps the
            # cached session; this run's is used once.
            if eng is None or not eng[1].running:
                self._drop_engine()
                self._eng = (key, s, rec)
        # The engine sets up a thread on its first transition in a session
        # (counters, buffers: 2 us at BASIC to 0.5 ms at COMPREHENSIVE).
        # Doing it here for the calling thread keeps that out of the graph's
        # measured time and out of its first node; LangGraph's pool threads,
        # unless pools are lent (reuse_threads), are new each run and still
        # pay it inside the run.
        if s.try_enter(rec.warmup_id):
            s.try_exit(rec.warmup_id)
        rec.pools = self._lend_pools()
        tok = _instrument._ACTIVE.set(rec)
        return s, rec, tok, time.perf_counter_ns()

    def _finish(self, s: Session, rec: Recorder, tok: Any, t0: int,
                error: BaseException | None, mode: str) -> None:
        wall = time.perf_counter_ns() - t0
        _instrument._ACTIVE.reset(tok)
        rec._st_channels = None  # the run's channels (and state) are not kept alive
        s.stop()
        rec.instrument_failures += s.failures
        assert self._level is not None
        old = self._last
        level_eff = self._level
        try:  # KFM_CONFIG may have set another level than the Debugger's
            level_eff = ProfilingLevel(s.level)
        except (ValueError, RuntimeError):
            pass
        self._last = _RunData(level_eff, s, rec, wall, error, mode)
        self._last.requested = self._level
        if old is not None and old.session is not s and not self._is_cached(old.session):
            old.session.close()
        total_ms = (wall - rec.state_ns) / 1e6
        level = _LEVEL_NAMES[self._level]
        self.history.append({"total_ms": total_ms, "level": _LEVEL_NAMES[level_eff], "mode": mode,
                             "error": None if error is None else type(error).__name__})
        if log.isEnabledFor(logging.INFO):
            log.info("run (%s, %s): %.2f ms, %d nodes%s", mode, level, total_ms,
                     len(_user_nodes(self._last)),
                     "" if error is None else f", raised {type(error).__name__}")

    def run(self, initial_state: Any, config: Any = None, **kwargs: Any) -> Any:
        """graph.invoke(initial_state, config, **kwargs), profiled when enabled.

        Returns exactly what invoke returns and raises exactly what it raises.
        """
        if self._level is None:
            return self.graph.invoke(initial_state, config, **kwargs)
        s, rec, tok, t0 = self._begin()
        gid = rec.ids(GRAPH)[0]
        err: BaseException | None = None
        try:
            return rec.call(gid, self.graph.invoke, initial_state, config, **kwargs)
        except BaseException as e:
            err = e
            raise
        finally:
            self._finish(s, rec, tok, t0, err, "invoke")

    invoke = run

    async def arun(self, initial_state: Any, config: Any = None, **kwargs: Any) -> Any:
        """await graph.ainvoke(...), profiled when enabled."""
        if self._level is None:
            return await self.graph.ainvoke(initial_state, config, **kwargs)
        s, rec, tok, t0 = self._begin()
        gid = rec.ids(GRAPH)[0]
        err: BaseException | None = None
        try:
            return await _instrument._Segmented(
                self.graph.ainvoke(initial_state, config, **kwargs), rec, gid
            )
        except BaseException as e:
            err = e
            raise
        finally:
            self._finish(s, rec, tok, t0, err, "ainvoke")

    ainvoke = arun

    def stream(self, initial_state: Any, config: Any = None, **kwargs: Any) -> Iterator[Any]:
        """graph.stream(...), profiled when enabled; the run ends with the stream."""
        if self._level is None:
            yield from self.graph.stream(initial_state, config, **kwargs)
            return
        s, rec, tok, t0 = self._begin()
        _instrument._ACTIVE.reset(tok)
        gid = rec.ids(GRAPH)[0]
        err: BaseException | None = None
        ctx = _contextvars_copy()
        ctx.run(_instrument._ACTIVE.set, rec)
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
            tok2 = _instrument._ACTIVE.set(rec)
            self._finish(s, rec, tok2, t0, err, "stream")

    async def astream(self, initial_state: Any, config: Any = None,
                      **kwargs: Any) -> AsyncIterator[Any]:
        """graph.astream(...), profiled when enabled."""
        if self._level is None:
            async for chunk in self.graph.astream(initial_state, config, **kwargs):
                yield chunk
            return
        s, rec, tok, t0 = self._begin()
        gid = rec.ids(GRAPH)[0]
        err: BaseException | None = None
        agen = self.graph.astream(initial_state, config, **kwargs)
        try:
            while True:
                try:
                    chunk = await _instrument._Segmented(agen.__anext__(), rec, gid)
                except StopAsyncIteration:
                    return
                yield chunk
        except BaseException as e:
            if not isinstance(e, GeneratorExit):
                err = e
            raise
        finally:
            self._finish(s, rec, tok, t0, err, "astream")

    # -- results: common ---------------------------------------------------
    def _data(self) -> _RunData:
        if self._last is None:
            if self._level is None:
                raise RuntimeError(
                    "no profile: profiling is not enabled (Debugger(graph, enable_profiling=True) "
                    "or debugger.enable_profiling(level=...)), then run the graph"
                )
            raise RuntimeError("no profile yet: run the graph with debugger.run(initial_state)")
        return self._last

    @staticmethod
    def _out(file: IO[str] | None) -> IO[str]:
        return file if file is not None else sys.stdout

    def _total_ns(self, rd: _RunData) -> float:
        return max(float(rd.wall_ns - rd.rec.state_ns), 1.0)

    # -- timing --------------------------------------------------------------
    def get_node_timing(self, nodes: list[str] | None = None) -> dict[str, NodeTiming]:
        """Per node: Setup / Computation / State update split, calls, average, share."""
        rd = self._data()
        total = self._total_ns(rd)
        busy = rd.busy()
        out: dict[str, NodeTiming] = {}
        wanted = set(nodes) if nodes is not None else None
        if wanted is not None:
            unknown = wanted - set(_user_nodes(rd))
            if unknown:
                raise ValueError(
                    f"unknown node(s) {sorted(unknown)}; nodes in the last run: {_user_nodes(rd)}"
                )
        for name in _user_nodes(rd):
            if wanted is not None and name not in wanted:
                continue
            calls, task_ns = rd.span_ns(name)
            attempts, comp_ns = rd.span_ns(name + "/compute")
            _, setup_ns = rd.span_ns(name + "/setup")
            _, upd_ns = rd.span_ns(name + "/state_update")
            # Writes and routing: the task's time after its function
            # returned (ChannelWrite, conditional edges, LangGraph's end of
            # run), timed without a span of its own; never more than the
            # task spent outside its function.
            write_ns = min(float(rd.rec.post_ns.get(name, 0)), max(task_ns - comp_ns, 0.0))
            # State update: the node's channel writes and edge routing, then
            # the reducers (its share of the superstep's apply_writes).
            upd_ns += write_ns + rd.rec.shared_update_ns.get(name, 0.0)
            # Setup: task preparation and input reading, plus what the task
            # span spends before the function (LangGraph's run machinery:
            # config, callbacks, retry back-off).
            if calls:
                setup_ns += max(task_ns - comp_ns - write_ns, 0.0)
            tot = setup_ns + comp_ns + upd_ns
            en = rd.enode(name)
            is_async = name in rd.rec.async_wall
            if is_async:
                w = rd.rec.async_wall[name]
                mn, mx = w[2] / 1e6, w[3] / 1e6
                p50 = p90 = p99 = None
            elif en is not None:
                mn, mx = en["min_ns"] / 1e6, en["max_ns"] / 1e6
                p50, p90, p99 = en["p50_ns"] / 1e6, en["p90_ns"] / 1e6, en["p99_ns"] / 1e6
            else:
                mn = mx = p50 = p90 = p99 = None
            n_err = sum(1 for e in rd.rec.errors if e["node"] == name)
            # Share of the run's wall time: the node's time less what its
            # activations overlapped each other (concurrent branches, Send
            # fan-outs, async tasks), never more than the run.
            b = busy.get(name) or busy.get(_instrument._engine_name(name))
            overlap = max(b[0] - b[1], 0.0) if b else 0.0
            share = min(max(tot - overlap, 0.0), total)
            out[name] = NodeTiming(
                name=name,
                calls=calls,
                total_ms=tot / 1e6,
                setup_ms=setup_ns / 1e6,
                computation_ms=comp_ns / 1e6,
                state_update_ms=upd_ns / 1e6,
                average_ms=(tot / calls / 1e6) if calls else 0.0,
                percent=100.0 * share / total,
                min_ms=mn, max_ms=mx, p50_ms=p50, p90_ms=p90, p99_ms=p99,
                attempts=attempts,
                errors=n_err,
                parent=name.rsplit("|", 1)[0] if "|" in name else None,
                asynchronous=is_async,
            )
        return out

    def get_profile_report(self) -> dict[str, Any]:
        """The data of show_profile_report: total, per-node time and share, memory."""
        rd = self._data()
        timing = self.get_node_timing()
        mem = self.get_memory_profile()
        return {
            "level": rd.level.name,
            "requested_level": rd.requested.name,
            # KFM_CONFIG's effect: None when unset, else {KFM_CONFIG,
            # requested_level, level, level_overridden, ignored (the engine's
            # error when it rejected KFM_CONFIG)}
            "level_override": self._env_override(rd),
            "mode": rd.mode,
            "total_ms": self._total_ns(rd) / 1e6,
            "profiler_state_tracking_ms": rd.rec.state_ns / 1e6,
            "nodes": {n: {"time_ms": t.total_ms, "percent": t.percent, "calls": t.calls}
                      for n, t in timing.items()},
            "memory": None if not mem.available else {
                "initial_mb": mem.initial_mb, "peak_mb": mem.peak_mb, "final_mb": mem.final_mb},
            "memory_unavailable": None if mem.available else mem.reason,
            "errors": list(rd.rec.errors),
            "interrupts": list(rd.rec.interrupts),
            "engine": rd.report["summary"],
            "instrumentation_failures": rd.rec.instrument_failures,
        }

    def show_profile_report(self, file: IO[str] | None = None) -> None:
        f, r = self._show(file, "Performance Profile:", self.get_profile_report)
        if r is None:
            return
        ov = r["level_override"]
        if ov is not None and ov["level_overridden"]:
            print(f"level overridden by KFM_CONFIG: {ov['KFM_CONFIG']} (level {ov['level']}, "
                  f"the Debugger asked for {ov['requested_level']})", file=f)
        elif ov is not None and ov["ignored"]:
            print(f"KFM_CONFIG ignored: {ov['ignored']}", file=f)
        print(f"Total execution time: {r['total_ms']:.2f}ms", file=f)
        print("", file=f)
        print("Node Execution Times:", file=f)
        for n, d in r["nodes"].items():
            print(f"- {n}: {d['time_ms']:.2f}ms ({d['percent']:.1f}%)", file=f)
        print("", file=f)
        print("Memory Usage:", file=f)
        if r["memory"] is None:
            print(f"unavailable: {r['memory_unavailable']}", file=f)
        else:
            print(f"Initial: {_fmt_mb(r['memory']['initial_mb'])}", file=f)
            print(f"Peak: {_fmt_mb(r['memory']['peak_mb'])}", file=f)
            print(f"Final: {_fmt_mb(r['memory']['final_mb'])}", file=f)
        for e in r["errors"]:
            print(f"Error in {e['node']}: {e['type']}: {e['message']}", file=f)
        for e in r["interrupts"]:
            print(f"Interrupted in {e['node']}: {e['type']}", file=f)

    def _show(self, file: IO[str] | None, title: str,
              get: Callable[[], Any]) -> tuple[IO[str], Any]:
        """The head every show_* report shares: the no-run message, the title,
        and "unavailable: <reason>" when get()'s result says so (a dict with
        "available"/"reason" keys or a MemoryProfile).  Returns (f, data);
        data is None when the report has nothing more to print."""
        f = self._out(file)
        if not self._ready(f):
            return f, None
        data = get()
        print(title, file=f)
        ok, why = ((data.get("available", True), data.get("reason")) if isinstance(data, dict)
                   else (data.available, data.reason))
        if not ok:
            print(f"unavailable: {why}", file=f)
            return f, None
        return f, data

    def _ready(self, f: IO[str]) -> bool:
        try:
            self._data()
        except RuntimeError as e:
            print(str(e), file=f)
            return False
        return True

    def show_node_timing(self, detailed: bool = False, nodes: list[str] | None = None,
                         file: IO[str] | None = None) -> None:
        f = self._out(file)
        if not self._ready(f):
            return
        timing = self.get_node_timing(nodes)
        if not detailed:
            print("Node Timing:", file=f)
            for t in timing.values():
                print(f"- {t.name}: {t.total_ms:.2f}ms ({t.percent:.1f}%), called {t.calls} "
                      f"time{'s' if t.calls != 1 else ''}, average {t.average_ms:.2f}ms", file=f)
            return
        first = True
        for t in timing.values():
            if not first:
                print("", file=f)
            first = False
            print(f"Node: {t.name}", file=f)
            print(f"- Total time: {t.total_ms:.2f}ms", file=f)
            print(f"  - Setup: {t.setup_ms:.2f}ms", file=f)
            print(f"  - Computation: {t.computation_ms:.2f}ms", file=f)
            print(f"  - State update: {t.state_update_ms:.2f}ms", file=f)
            print(f"- Called: {t.calls} time{'s' if t.calls != 1 else ''}", file=f)
            print(f"- Average time: {t.average_ms:.2f}ms", file=f)
            print(f"- Percentage of total: {t.percent:.1f}%", file=f)
            if t.attempts > t.calls:
                print(f"- Attempts (with retries): {t.attempts}", file=f)
            if t.errors:
                print(f"- Errors: {t.errors}", file=f)

    def export_timing_data(self, output_file: str | os.PathLike[str] = "timing_data.json",
                           include_engine_profile: bool = False) -> str:
        """Write the timing data (and optionally the engine's full report) as JSON.

        The file is replaced atomically: on failure OSError names the path and
        an earlier file at that path is left intact.  Returns the path.
        """
        rd = self._data()
        data: dict[str, Any] = {
            "schema": "kfm_debugging.timing/1",
            "level": rd.level.name,
            "mode": rd.mode,
            "total_ms": self._total_ns(rd) / 1e6,
            "nodes": {n: dataclasses.asdict(t) for n, t in self.get_node_timing().items()},
            "errors": rd.rec.errors,
            "interrupts": rd.rec.interrupts,
            "engine_summary": rd.report["summary"],
        }
        if include_engine_profile:
            data["engine_report"] = rd.report
        return _atomic_write(output_file, json.dumps(data, indent=2, default=str) + "\n")

    def export_profile(self, output_file: str | os.PathLike[str]) -> str:
        """Write the engine's own JSON export (schema kfm.profile) of the last run."""
        rd = self._data()
        rd.session.export(os.fspath(output_file))
        return os.fspath(output_file)

    # -- memory ----------------------------------------------------------------
    def _memory_unavailable(self, rd: _RunData) -> str | None:
        if rd.level < ProfilingLevel.STANDARD:
            return (f"memory is measured from ProfilingLevel.STANDARD up "
                    f"(this run: {rd.level.name})")
        if "proc.rss" not in rd.metric_names:
            reasons = [b["reason"] for b in rd.report["backends"] if b["name"] == "proc"]
            return "the proc backend is not enabled" + (f": {reasons[0]}" if reasons else "")
        return None

    def _rss_series(self, rd: _RunData) -> tuple[list[float], list[float], list[str | None]]:
        """Merged (t_ns, rss, node) from samples and transition events."""
        pts: list[tuple[float, float, str | None]] = []
        sm = rd.samples()
        if "proc.rss" in sm["metrics"]:
            ri = sm["metrics"].index("proc.rss")
            vals = sm["values"].tolist()
            offs = sm["offsets"].tolist()
            nodes = sm["nodes"].tolist()
            names = sm["names"]
            for i, t in enumerate(sm["t_ns"].tolist()):
                active = [_base(names.get(nodes[k])) for k in range(offs[i], offs[i + 1])]
                active = [a for a in active if a and not a.startswith("__")]
                pts.append((t, vals[i][ri], active[-1] if active else None))
        for name, _th, t0, t1, r0, r1 in rd.activations():
            b = _base(name)
            label = None if b is None or b.startswith("__") else b
            if r0 is not None:
                pts.append((t0, r0, label))
                pts.append((t1, r1, label))
        pts.sort(key=lambda p: p[0])
        return [p[0] for p in pts], [p[1] for p in pts], [p[2] for p in pts]

    def get_memory_profile(self) -> MemoryProfile:
        rd = self._data()
        why = self._memory_unavailable(rd)
        if why:
            return MemoryProfile(available=False, reason=why)
        ts, rss, who = self._rss_series(rd)
        acts = rd.activations()
        graph_acts = [a for a in acts if a[0] == GRAPH and a[4] is not None]
        if graph_acts:
            initial = graph_acts[0][4]
            final = graph_acts[-1][5]
        elif rss:
            initial, final = rss[0], rss[-1]
        else:
            return MemoryProfile(available=False, reason="no memory reading was recorded")
        peak_i = max(range(len(rss)), key=rss.__getitem__) if rss else None
        peak = rss[peak_i] if peak_i is not None else initial
        peak_node = who[peak_i] if peak_i is not None else None
        if peak_i is not None and peak_node is None:
            # The highest reading fell between nodes: name the node that ran
            # when RSS first came within 0.5% of it.
            for r, w in zip(rss, who):
                if w is not None and r >= peak - 0.005 * peak:
                    peak_node = w
                    break
        en = rd.enode(GRAPH)
        if en and en.get("peak_rss") is not None and en["peak_rss"] > peak:
            peak = en["peak_rss"]
        prof = MemoryProfile(
            available=True, initial_mb=initial / MB, peak_mb=peak / MB,
            peak_node=peak_node or "(between nodes)", final_mb=final / MB,
            growth_mb=(final - initial) / MB,
        )
        prof.nodes = self._node_memory(rd, ts, rss)
        return prof

    def _node_memory(self, rd: _RunData, ts: list[float], rss: list[float]) -> dict[str, NodeMemory]:
        out: dict[str, NodeMemory] = {}
        by_node: dict[str, list[tuple[Any, ...]]] = {}
        for a in rd.activations():
            b = _base(a[0])
            if b is not None and b != GRAPH:
                by_node.setdefault(b, []).append(a)
        names = _user_nodes(rd)
        if any(rd.enode(PARALLEL + s) for s in _instrument.SUFFIXES):
            names.append(PARALLEL)
        for name in names:
            impact = 0.0
            for part in ("", "/setup", "/state_update"):
                v = rd.metric(name + part, "proc.rss")
                impact += v or 0.0
            if name in rd.rec.async_wall or not self._compute_nested(rd, name):
                impact += rd.metric(name + "/compute", "proc.rss") or 0.0
            peak_rise: float | None = None
            peak_abs: float | None = None
            for _n, _th, t0, t1, r0, r1 in by_node.get(name, []):
                if r0 is None:
                    continue
                lo = bisect.bisect_left(ts, t0)
                hi = bisect.bisect_right(ts, t1)
                top = max([r0, r1, *rss[lo:hi]])
                rise = top - r0
                peak_rise = rise if peak_rise is None else max(peak_rise, rise)
                peak_abs = top if peak_abs is None else max(peak_abs, top)
            for part in ("", "/setup", "/compute", "/state_update"):
                en = rd.enode(name + part)
                if en and en.get("peak_rss") is not None:
                    peak_abs = en["peak_rss"] if peak_abs is None else max(peak_abs, en["peak_rss"])
            calls, _ = rd.span_ns(name)
            out[name] = NodeMemory(
                name=name, calls=calls, impact_mb=impact / MB,
                peak_mb=None if peak_rise is None else peak_rise / MB,
                peak_rss_mb=None if peak_abs is None else peak_abs / MB,
            )
        return out

    def show_memory_profile(self, file: IO[str] | None = None) -> None:
        f, m = self._show(file, "Memory Profile:", self.get_memory_profile)
        if m is None:
            return
        print(f"Initial memory: {_fmt_mb(m.initial_mb)}", file=f)
        print(f"Peak memory: {_fmt_mb(m.peak_mb)} (at node: {m.peak_node})", file=f)
        print(f"Final memory: {_fmt_mb(m.final_mb)}", file=f)
        print(f"Memory growth: {_fmt_mb(m.growth_mb, sign=True)}", file=f)
        print("", file=f)
        print("Node Memory Impact:", file=f)
        for n in m.nodes.values():
            extra = ""
            if n.peak_mb is not None and n.peak_mb > max(n.impact_mb, 0.0) + 0.05:
                extra = f" (peak: {_fmt_mb(n.peak_mb, sign=True)})"
            print(f"- {n.name}: {_fmt_mb(n.impact_mb, sign=True)}{extra}", file=f)

    def get_memory_timeline(self, max_points: int | None = None) -> dict[str, Any]:
        """RSS over the run: points {t_ms, rss_mb, node} from samples and transitions."""
        rd = self._data()
        why = self._memory_unavailable(rd)
        if why:
            return {"available": False, "reason": why, "points": []}
        ts, rss, who = self._rss_series(rd)
        pts = [{"t_ms": t / 1e6, "rss_mb": r / MB, "node": w} for t, r, w in zip(ts, rss, who)]
        if max_points and len(pts) > max_points:
            step = len(pts) / max_points
            pts = [pts[int(i * step)] for i in range(max_points)]
        return {"available": True, "reason": "", "points": pts,
                "sample_rate_hz": rd.report["summary"]["rate_hz"]}

    def show_memory_timeline(self, width: int = 40, max_points: int = 30,
                             file: IO[str] | None = None) -> None:
        f, tl = self._show(file, "Memory Timeline:",
                           lambda: self.get_memory_timeline(max_points=max_points))
        if tl is None:
            return
        pts = tl["points"]
        if not pts:
            print("(no readings)", file=f)
            return
        lo = min(p["rss_mb"] for p in pts)
        hi = max(p["rss_mb"] for p in pts)
        span = max(hi - lo, 1e-9)
        for p in pts:
            bar = "#" * (1 + int((p["rss_mb"] - lo) / span * (width - 1)))
            print(f"{p['t_ms']:9.2f}ms {p['rss_mb']:8.1f}MB {bar:<{width}} {p['node'] or ''}",
                  file=f)

    def get_node_memory_usage(self) -> dict[str, NodeMemory]:
        m = self.get_memory_profile()
        if not m.available:
            raise RuntimeError(f"memory unavailable: {m.reason}")
        return m.nodes

    def show_node_memory_usage(self, file: IO[str] | None = None) -> None:
        f, m = self._show(file, "Node Memory Usage:", self.get_memory_profile)
        if m is None:
            return
        for n in m.nodes.values():
            print(f"- {n.name}: impact {_fmt_mb(n.impact_mb, sign=True)}, "
                  f"peak rise {_fmt_mb(n.peak_mb, sign=True)}, "
                  f"peak RSS {_fmt_mb(n.peak_rss_mb)}, calls {n.calls}", file=f)

    # -- resources ------------------------------------------------------------
    def _detailed_unavailable(self, rd: _RunData, what: str) -> str | None:
        if rd.level < ProfilingLevel.DETAILED:
            return f"{what} is measured from ProfilingLevel.DETAILED up (this run: {rd.level.name})"
        return None

    def _node_metric_sum(self, rd: _RunData, name: str, metric: str) -> float | None:
        if metric not in rd.metric_names:
            return None
        v = 0.0
        parts = ["", "/setup", "/state_update"]
        if name in rd.rec.async_wall or not self._compute_nested(rd, name):
            parts.append("/compute")
        for p in parts:
            v += rd.metric(name + p, metric) or 0.0
        return v

    @staticmethod
    def _compute_nested(rd: _RunData, name: str) -> bool:
        comp = rd.enode(name + "/compute")
        if comp is None:
            return True
        nested = sum(c for a, b, c in rd.report["edges"]["nested"] if a == name and b == name + "/compute")
        return nested >= comp["count"]

    def get_cpu_usage(self) -> dict[str, Any]:
        rd = self._data()
        why = self._detailed_unavailable(rd, "CPU time")
        if why:
            return {"available": False, "reason": why, "nodes": {}}
        timing = self.get_node_timing()
        nodes: dict[str, NodeResources] = {}
        for name, t in timing.items():
            u = self._node_metric_sum(rd, name, "proc.cpu_user")
            s = self._node_metric_sum(rd, name, "proc.cpu_sys")
            r = NodeResources(name=name, wall_ms=t.total_ms)
            comp = rd.metric(name + "/compute", "proc.cpu_user")
            if u is not None and s is not None:
                r.cpu_user_ms, r.cpu_sys_ms = u / 1e6, s / 1e6
                r.cpu_ms, r.cpu_source = (u + s) / 1e6, "getrusage(RUSAGE_THREAD)"
                r.computation_cpu_ms = ((comp or 0.0)
                                        + (rd.metric(name + "/compute", "proc.cpu_sys") or 0.0)) / 1e6
            elif _TASK_CLOCK in rd.metric_names:
                # COMPREHENSIVE with a counter backend: the thread's CPU
                # clock from perf software events (no user/sys split).
                c = self._node_metric_sum(rd, name, _TASK_CLOCK) or 0.0
                r.cpu_ms, r.cpu_source = c / 1e6, _TASK_CLOCK
                r.computation_cpu_ms = (rd.metric(name + "/compute", _TASK_CLOCK) or 0.0) / 1e6
            if r.cpu_ms is not None:
                r.cpu_percent = 100.0 * r.cpu_ms / t.total_ms if t.total_ms > 0 else 0.0
            r.minor_faults = self._node_metric_sum(rd, name, "proc.minflt")
            if r.minor_faults is None:
                r.minor_faults = self._node_metric_sum(rd, name, "papi.perf::PAGE-FAULTS")
            r.major_faults = self._node_metric_sum(rd, name, "proc.majflt")
            r.voluntary_switches = self._node_metric_sum(rd, name, "proc.vcsw")
            r.involuntary_switches = self._node_metric_sum(rd, name, "proc.ivcsw")
            if r.voluntary_switches is None:
                r.voluntary_switches = self._node_metric_sum(rd, name, "papi.perf::CONTEXT-SWITCHES")
            nodes[name] = r
        attributed = 0.0
        for ename, en in rd.report["nodes"].items():
            if ename == _instrument.WARMUP:
                continue  # the thread set-up before the run's wall time starts
            ex = en["exclusive"]
            attributed += (ex.get("proc.cpu_user", 0.0) + ex.get("proc.cpu_sys", 0.0)
                           if "proc.cpu_user" in ex else ex.get(_TASK_CLOCK, 0.0))
        proc_cpu = None
        sm = rd.samples()
        if "proc.cpu" in sm["metrics"] and len(sm["t_ns"]) >= 2:
            ci = sm["metrics"].index("proc.cpu")
            v = sm["values"]
            proc_cpu = (v[len(v) - 1, ci] - v[0, ci]) / 1e6
        # The state tracking's own CPU is inside the graph's spans, but its
        # time is not in the run's total: take it out of both.
        attributed = max(attributed - rd.rec.state_cpu_ns, 0.0)
        total_ms = self._total_ns(rd) / 1e6
        return {
            "available": True, "reason": "",
            "total_ms": total_ms,
            "attributed_cpu_ms": attributed / 1e6,
            "attributed_cpu_percent": 100.0 * attributed / 1e6 / total_ms,
            "process_cpu_ms_sampled": proc_cpu,
            "nodes": nodes,
        }

    def show_cpu_usage(self, file: IO[str] | None = None) -> None:
        f, c = self._show(file, "CPU Usage:", self.get_cpu_usage)
        if c is None:
            return
        print(f"CPU time in nodes: {c['attributed_cpu_ms']:.2f}ms "
              f"({c['attributed_cpu_percent']:.1f}% of {c['total_ms']:.2f}ms wall)", file=f)
        for r in c["nodes"].values():
            split = (f"user {_fmt_ms(r.cpu_user_ms)}, sys {_fmt_ms(r.cpu_sys_ms)}"
                     if r.cpu_user_ms is not None else f"CPU {_fmt_ms(r.cpu_ms)}")
            print(f"- {r.name}: {split} "
                  f"({(r.cpu_percent or 0):.1f}% of its {r.wall_ms:.2f}ms), "
                  f"faults {r.minor_faults or 0:.0f}/{r.major_faults or 0:.0f}, "
                  f"switches {r.voluntary_switches or 0:.0f}/{r.involuntary_switches or 0:.0f}",
                  file=f)

    def get_network_usage(self) -> dict[str, Any]:
        rd = self._data()
        why = self._detailed_unavailable(rd, "network traffic")
        if why is None and "proc.net_rx" not in rd.metric_names:
            why = "the proc backend reports no network counters in this session"
        if why:
            return {"available": False, "reason": why, "nodes": {}}
        nodes = {}
        for name in _user_nodes(rd):
            nodes[name] = {
                "rx_bytes": self._node_metric_sum(rd, name, "proc.net_rx"),
                "tx_bytes": self._node_metric_sum(rd, name, "proc.net_tx"),
            }
        g = rd.enode(GRAPH)
        return {
            "available": True, "reason": "",
            "scope": "network namespace totals (/proc/net/dev, all interfaces incl. loopback)",
            "total_rx_bytes": g["inclusive"].get("proc.net_rx") if g else None,
            "total_tx_bytes": g["inclusive"].get("proc.net_tx") if g else None,
            "nodes": nodes,
        }

    def show_network_usage(self, file: IO[str] | None = None) -> None:
        f, n = self._show(file, "Network Usage:", self.get_network_usage)
        if n is None:
            return
        print(f"Total: received {n['total_rx_bytes'] or 0:.0f} B, sent {n['total_tx_bytes'] or 0:.0f} B "
              f"({n['scope']})", file=f)
        for name, d in n["nodes"].items():
            print(f"- {name}: received {d['rx_bytes'] or 0:.0f} B, sent {d['tx_bytes'] or 0:.0f} B",
                  file=f)

    def get_gpu_usage(self) -> dict[str, Any]:
        rd = self._data()
        gpu = [b for b in rd.report["backends"] if any(k in b["name"] for k in _GPU_BACKENDS)]
        if rd.level < ProfilingLevel.COMPREHENSIVE:
            return {"available": False, "backends": gpu,
                    "reason": f"GPU metrics are collected at ProfilingLevel.COMPREHENSIVE "
                              f"(this run: {rd.level.name})"}
        enabled = [b for b in gpu if b["enabled"] and b["available"]]
        if not enabled:
            if gpu:
                reason = "; ".join(f"{b['name']}: {b['reason']}" for b in gpu)
            else:
                probe = [b for b in _kfm_backends() if any(k in b["name"] for k in _GPU_BACKENDS)]
                reason = ("; ".join(f"{b['name']}: {b['reason']}" for b in probe)
                          or "this kfm build has no GPU backend (CUPTI, NVML, ROCm SMI)")
            return {"available": False, "backends": gpu, "reason": reason}
        metrics = [m["name"] for m in rd.report["metrics"]
                   if any(m["backend"] == b["name"] for b in enabled)]
        nodes = {name: {m: self._node_metric_sum(rd, name, m) for m in metrics}
                 for name in _user_nodes(rd)}
        details = {}
        for b in enabled:
            try:
                details[b["name"]] = json.loads(rd.session.backend_json(b["name"]))
            except (RuntimeError, ValueError) as e:
                details[b["name"]] = {"unavailable": str(e)}
        return {"available": True, "reason": "", "backends": gpu, "metrics": metrics,
                "nodes": nodes, "details": details}

    def show_gpu_usage(self, file: IO[str] | None = None) -> None:
        f, g = self._show(file, "GPU Usage:", self.get_gpu_usage)
        if g is None:
            return
        for name, vals in g["nodes"].items():
            txt = ", ".join(f"{k}={v:.0f}" for k, v in vals.items() if v is not None)
            print(f"- {name}: {txt or 'no GPU activity recorded'}", file=f)

    def get_resource_utilization(self) -> dict[str, Any]:
        rd = self._data()
        summ = rd.report["summary"]
        out: dict[str, Any] = {
            "level": rd.level.name,
            "total_ms": self._total_ns(rd) / 1e6,
            "threads": summ["threads"],
            "sampler": {"rate_hz": summ["rate_hz"], "samples": summ["samples"],
                        "cpu_ms": summ["sampler_cpu_ns"] / 1e6,
                        "late_p99_us": summ["sampler_late_p99_ns"] / 1e3},
            "memory": dataclasses.asdict(self.get_memory_profile()),
            "cpu": self.get_cpu_usage(),
            "network": self.get_network_usage(),
            "gpu": self.get_gpu_usage(),
            "backends": rd.report["backends"],
        }
        if rd.level >= ProfilingLevel.DETAILED and "proc.io_read" in rd.metric_names:
            g = rd.enode(GRAPH)
            out["io"] = {"read_bytes": g["inclusive"].get("proc.io_read") if g else None,
                         "write_bytes": g["inclusive"].get("proc.io_write") if g else None}
        return out

    def show_resource_utilization(self, file: IO[str] | None = None) -> None:
        f, r = self._show(file, "Resource Utilization:", self.get_resource_utilization)
        if r is None:
            return
        print(f"Level: {r['level']}, wall time {r['total_ms']:.2f}ms, threads {r['threads']}", file=f)

        def part(label: str, d: dict[str, Any], text: Callable[[dict[str, Any]], str]) -> None:
            # text(d) only when measured: an unavailable part has just its reason.
            print(f"{label}: " + (text(d) if d["available"] else f"unavailable: {d['reason']}"),
                  file=f)

        part("Memory", r["memory"],
             lambda m: f"peak {_fmt_mb(m['peak_mb'])}, growth {_fmt_mb(m['growth_mb'], True)}")
        part("CPU", r["cpu"], lambda c: f"{c['attributed_cpu_ms']:.2f}ms in nodes "
                                        f"({c['attributed_cpu_percent']:.1f}% of wall)")
        part("Network", r["network"], lambda n: f"received {n['total_rx_bytes'] or 0:.0f} B, "
                                                f"sent {n['total_tx_bytes'] or 0:.0f} B")
        if "io" in r:
            print(f"Disk I/O: read {r['io']['read_bytes'] or 0:.0f} B, "
                  f"written {r['io']['write_bytes'] or 0:.0f} B", file=f)
        part("GPU", r["gpu"], lambda g: "measured (see show_gpu_usage)")
        s = r["sampler"]
        print(f"Sampler: {s['rate_hz']:.0f} Hz, {s['samples']} samples, "
              f"{s['cpu_ms']:.2f}ms CPU", file=f)

    # -- state size -------------------------------------------------------------
    def _state_unavailable(self, rd: _RunData) -> str | None:
        if not rd.rec.state_tracking:
            return (f"state tracking was off for this run (default from "
                    f"ProfilingLevel.DETAILED; this run: {rd.level.name}; "
                    f"pass Debugger(..., state_tracking=True) to force it)")
        if not rd.rec.state_timeline:
            return "no superstep applied writes"
        return None

    def get_state_size_timeline(self) -> dict[str, Any]:
        rd = self._data()
        why = self._state_unavailable(rd)
        if why:
            return {"available": False, "reason": why, "points": []}
        return {"available": True, "reason": "", "measure": "deep sizeof of state channels",
                "points": [dict(p) for p in rd.rec.state_timeline]}

    def show_state_size_timeline(self, file: IO[str] | None = None) -> None:
        f, tl = self._show(file, "State Size Timeline:", self.get_state_size_timeline)
        if tl is None:
            return
        for p in tl["points"]:
            nodes = ", ".join(p["nodes"]) or "-"
            print(f"- step {p['index']} ({p['t_ms']:.2f}ms) after {nodes}: "
                  f"{p['size_bytes']} bytes, {p['items']} items", file=f)

    def get_node_state_impact(self) -> dict[str, StateImpact]:
        rd = self._data()
        why = self._state_unavailable(rd)
        if why:
            raise RuntimeError(f"state size unavailable: {why}")
        out: dict[str, StateImpact] = {}
        tl = rd.rec.state_timeline
        for prev, cur in zip(tl, tl[1:]):
            names = [n for n in cur["nodes"] if not n.startswith("__")]
            if not names:
                continue
            db = cur["size_bytes"] - prev["size_bytes"]
            di = cur["items"] - prev["items"]
            written = cur.get("written") or {}
            wb = {n: written.get(n, (0, 0))[0] for n in names}
            wi = {n: written.get(n, (0, 0))[1] for n in names}
            sb, si = sum(wb.values()), sum(wi.values())
            for n in names:
                # One node: the step's change.  Several (parallel branches):
                # the change shared in proportion to what each wrote.
                fb = wb[n] / sb if sb else 1.0 / len(names)
                fi = wi[n] / si if si else 1.0 / len(names)
                s = out.setdefault(n, StateImpact(n, 0, 0, 0, 0))
                s.steps += 1
                s.bytes_delta += round(db * fb)
                s.items_delta += round(di * fi)
                s.max_state_bytes = max(s.max_state_bytes, cur["size_bytes"])
        return out

    def get_state_size_analysis(self) -> dict[str, Any]:
        rd = self._data()
        why = self._state_unavailable(rd)
        if why:
            return {"available": False, "reason": why}
        tl = rd.rec.state_timeline
        # The state starts once LangGraph's own steps (input, __start__) wrote it.
        first = 0
        while first + 1 < len(tl) and all(n.startswith("__") for n in tl[first + 1]["nodes"] or ["__"]):
            first += 1
        tl = tl[first:]
        sizes = [p["size_bytes"] for p in tl]
        i_max = max(range(len(sizes)), key=sizes.__getitem__)
        return {
            "available": True, "reason": "",
            "measure": "deep sizeof of state channels (sys.getsizeof over reachable objects)",
            "initial_bytes": sizes[0], "final_bytes": sizes[-1], "max_bytes": sizes[i_max],
            "max_after": tl[i_max]["nodes"],
            "growth_bytes": sizes[-1] - sizes[0],
            "initial_items": tl[0]["items"], "final_items": tl[-1]["items"],
            "steps": len(tl),
            "measure_ms": rd.rec.state_ns / 1e6,
            "nodes": {n: dataclasses.asdict(s) for n, s in self.get_node_state_impact().items()},
            # Values whose size could not be taken (they count 0 bytes):
            # {"type": ..., "reason": ..., "count": ...}, most seen in one measure
            "unsizable_count": sum(rd.rec.unsizable.values()),
            "unsizable": [{"type": t, "reason": r, "count": c}
                          for (t, r), c in rd.rec.unsizable.items()],
        }

    def show_state_size_analysis(self, file: IO[str] | None = None) -> None:
        f, a = self._show(file, "State Size Analysis:", self.get_state_size_analysis)
        if a is None:
            return
        print(f"Initial state: {a['initial_bytes']} bytes ({a['initial_items']} items)", file=f)
        print(f"Final state: {a['final_bytes']} bytes ({a['final_items']} items)", file=f)
        print(f"Largest: {a['max_bytes']} bytes (after {', '.join(a['max_after'])})", file=f)
        print(f"Growth: {a['growth_bytes']:+d} bytes over {a['steps']} steps", file=f)
        if a["unsizable_count"]:
            kinds = "; ".join(f"{u['type']}: {u['reason']}" + (f" (x{u['count']})"
                                                                if u["count"] > 1 else "")
                              for u in a["unsizable"][:5])
            more = "; ..." if len(a["unsizable"]) > 5 else ""
            print(f"{a['unsizable_count']} values could not be sized: {kinds}{more}", file=f)

    def show_node_state_impact(self, file: IO[str] | None = None) -> None:
        f = self._out(file)
        if not self._ready(f):
            return
        print("Node State Impact:", file=f)
        try:
            imp = self.get_node_state_impact()
        except RuntimeError as e:
            print(f"unavailable: {str(e).split(': ', 1)[-1]}", file=f)
            return
        for s in imp.values():
            print(f"- {s.name}: {s.bytes_delta:+d} bytes, {s.items_delta:+d} items "
                  f"over {s.steps} step{'s' if s.steps != 1 else ''}", file=f)

    # -- misc --------------------------------------------------------------
    def get_errors(self) -> list[dict[str, Any]]:
        return list(self._data().rec.errors)

    def engine_report(self) -> dict[str, Any]:
        """The engine's raw report of the last run (every engine node and metric)."""
        return self._data().report

    def _is_cached(self, session: Session) -> bool:
        return self._eng is not None and self._eng[1] is session

    def _drop_engine(self) -> None:
        """Forget the cached session (closed unless the last run's data uses it)."""
        eng, self._eng = self._eng, None
        if eng is not None and (self._last is None or self._last.session is not eng[1]):
            eng[1].close()

    def close(self) -> None:
        """Free the engine sessions now (the last run's data goes with them)
        and let the lent pools' threads end."""
        if self._pools is not None:
            self._pools.close()
        self._drop_engine()
        if self._last is not None:
            self._last.session.close()
            self._last = None


_ENV_LOCK = threading.Lock()


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


def _contextvars_copy() -> Any:
    import contextvars

    return contextvars.copy_context()


def _kfm_backends() -> list[dict[str, Any]]:
    from ._kfm import backends

    return backends()


def state_size(state: Any) -> tuple[int, int]:
    """(bytes, items) of a state as state tracking measures it."""
    return _statesize.state_size(state)


__all__ = ["Debugger", "ProfilingLevel", "NodeTiming", "NodeMemory", "MemoryProfile",
           "NodeResources", "StateImpact", "state_size"]

_ = asyncio  # the async entry points are coroutines; asyncio is their runtime
