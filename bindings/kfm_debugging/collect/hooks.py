"""Where the Debugger hooks into LangGraph, and the per-run recorder.

LangGraph 1.x runs a node in three places (read from langgraph/pregel in the
installed release; ``install`` checks the names):

* Setup: ``_algo.prepare_single_task`` builds each task of a superstep on the
  loop thread: task id, scratchpad, config and the node's input
  (``_proc_input`` reads the channels).  Patched as a module global of
  ``langgraph.pregel._algo``, which ``prepare_next_tasks`` calls by name.
  It is also called for candidate nodes that turn out not to be triggered
  (it returns None), so it is timed in the hook and counted only when it
  returns a task (``Recorder.setup_wall``), not an engine span: its few
  microseconds of CPU and memory stay in the enclosing span.
* Computation and writes: ``_runner.run_with_retry`` / ``arun_with_retry``
  run ``task.proc`` = RunnableSeq(user function, ChannelWrite, branch writers)
  on a pool thread, inline, or as an asyncio task; retries loop inside them.
  The task span ("N") covers all attempts; the user function (the sequence's
  first step) is wrapped per attempt ("N/compute").  The rest of the task
  span is LangGraph's run machinery (config, callbacks, retry back-off)
  before the function and ChannelWrite plus conditional-edge routing after
  it.  The writers have no span of their own (one engine span and a Python
  frame fewer per node): the time from the function's return to the task's
  end is taken with perf_counter_ns (``Recorder.post_ns``) and reported as
  part of State update; their CPU, memory and I/O stay in the task span.
* State update: ``_loop.apply_writes`` runs the reducers once per superstep
  on the loop thread ("N/state_update"; a superstep with several distinct
  nodes is one "(parallel)/state_update" span whose time is split among them
  by the number of writes each made).

* Worker threads: ``_executor.get_executor_for_config`` gives LangGraph a new
  thread pool per invoke.  When the Debugger lends pools (``reuse_threads``,
  default at COMPREHENSIVE) it returns one of ``ThreadPools`` instead.

Every span is one ``Session.call(id, fn, ...)`` (C: enter, call, exit even
when fn raises); a transition the engine refuses is counted in
``Session.failures``, never raised into the graph.

The patches are installed once per process and cost one ContextVar lookup
when no Debugger run is active in the calling context (other graphs run
unprofiled and unchanged).  A run's recorder is found through that
ContextVar, which LangGraph copies into its worker threads and asyncio tasks.

Async: asyncio interleaves node coroutines on one thread, while the engine
keeps one properly nested stack per thread.  So an async span is entered and
exited around every resumption of its coroutine (``_Segmented``): the engine
attributes CPU, memory and I/O exactly to the node that was running, and the
span's wall time (which includes its awaits) is measured here with
perf_counter_ns and reported instead of the engine's on-thread time.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import sys
import threading
import time
from collections import defaultdict
from typing import Any, Iterator

from .. import _kfm
from ..model.names import GRAPH, LOOP, PARALLEL, SUFFIXES, WARMUP, ns_path
from ..model.names import engine_name as _engine_name
from . import statesize as _statesize

Hook = _kfm.Hook

log = logging.getLogger("kfm_debugging")

_ACTIVE: contextvars.ContextVar[Recorder | None] = contextvars.ContextVar(
    "kfm_debugging_active", default=None
)
# Depth of node computations around the current code: 0 is the top graph's
# own loop, so its apply_writes is the one whose state is tracked.
_DEPTH: contextvars.ContextVar[int] = contextvars.ContextVar("kfm_debugging_depth", default=0)

_perf = time.perf_counter_ns
_thread_ns = time.thread_time_ns
# Never caught by the profiler: they end the run as they would without it.
_PASS = (KeyboardInterrupt, SystemExit)
_EMPTY = _statesize.Measure(0, 0, [], True)
# From this many bytes a channel's value not written since it was measured
# is measured again only when its top level's shape changed (_snapshot).
_LARGE_BYTES = 1 << 20


def _shape(v: Any) -> tuple[type, int, int]:
    """A value's top level as it stands: type, length (-1 unsized),
    allocated size.  An append, a pop, a new key change it; replacing an
    item in place does not."""
    try:
        n = len(v)
    except Exception:  # noqa: BLE001 - not sized
        n = -1
    return type(v), n, sys.getsizeof(v, -1)

__all__ = ["GRAPH", "LOOP", "PARALLEL", "SUFFIXES", "WARMUP", "Recorder", "ThreadPools",
           "install", "ns_path", "uninstall"]


class Recorder:
    """Everything one profiled run records besides the engine's aggregates."""

    # One is made per run, among the run's own cold caches: slots keep that
    # to attribute stores, without an instance dict.
    __slots__ = ("s", "call", "try_enter", "try_exit", "state_tracking", "_ids", "id_task",
                 "id_setup", "id_compute", "id_update", "_lock", "async_wall", "errors",
                 "interrupts", "shared_update_ns", "shared_update_calls", "post_ns", "cend",
                 "_st_points", "state_ns", "_st_channels", "_st", "_st_bytes", "_st_items",
                 "instrument_failures", "step", "pools", "setup_wall", "_fast", "warmup_id", "t0",
                 "state_cpu_ns", "unsizable", "async_spans", "procs", "state_spans", "wrote",
                 "st_versions", "tokens", "tokens_tok")

    def __init__(self, session: Any, state_tracking: bool, names: Any = (),
                 prev: Recorder | None = None) -> None:
        self.s = session
        self.call = session.call
        self.try_enter = session.try_enter
        self.try_exit = session.try_exit
        self.state_tracking = state_tracking
        if prev is not None and prev.s is session:
            # A restarted session keeps its registrations: so do the maps.
            self._ids = prev._ids
            self.id_task, self.id_setup = prev.id_task, prev.id_setup
            self.id_compute, self.id_update = prev.id_compute, prev.id_update
            self._lock = prev._lock
        else:
            self._ids: dict[str, tuple[int, int, int, int]] = {}
            # name -> engine id per span kind, for the C hooks (kfm_hooks.c).
            self.id_task: dict[str, int] = {}
            self.id_setup: dict[str, int] = {}
            self.id_compute: dict[str, int] = {}
            self.id_update: dict[str, int] = {}
            self._lock = threading.Lock()
        # engine name -> [count, total_ns, min_ns, max_ns] for async spans
        self.async_wall: dict[str, list[int]] = {}
        # engine name -> [t0, t1, t0, t1, ...] of its async spans (concurrent
        # activations overlap: a node's share of the run is their union)
        self.async_spans: dict[str, list[int]] = {}
        self.errors: list[dict[str, Any]] = []
        self.interrupts: list[dict[str, Any]] = []
        self.shared_update_ns: dict[str, float] = defaultdict(float)
        self.shared_update_calls: dict[str, int] = defaultdict(int)
        # Writes and routing: per node, ns from the function's return to the
        # task's end; cend holds the return time per task (its unique
        # checkpoint_ns) until the task ends.
        self.post_ns: dict[str, int] = {}
        self.cend: dict[str, int] = {}
        # (t_ns, nodes, writes, written, bytes, items) per superstep; the
        # dicts of state_timeline are built when read.
        self._st_points: list[tuple[Any, ...]] = []
        self.state_ns = 0  # time spent measuring state sizes (not the graph's)
        self.state_cpu_ns = 0  # the CPU time of those measures (thread CPU clock)
        # [t0, t1, t0, t1, ...] (perf_counter_ns) of those measures: a
        # superstep's length is taken without them (analysis/steps.py).
        self.state_spans: list[int] = []
        # With state tracking: per node, the state channels its writes named
        # (what it really wrote in this run), and per superstep the channel
        # versions after it (a node that runs twice on the same versions of
        # what it reads ran twice on the same input).
        self.wrote: dict[str, set[str]] = {}
        # The run's TokenUsage (collect/tokens.py) and its activation.
        self.tokens: Any = None
        self.tokens_tok: Any = None
        self.st_versions: list[dict[str, Any]] = []
        # (type name, reason) -> values that could not be sized (the most
        # seen in one measure of the state)
        self.unsizable: dict[tuple[str, str], int] = {}
        # Incremental state size: the channels mapping measured, and per
        # state channel (version, id of the value, immutable, bytes, items,
        # unsizable) as of the last superstep.
        self._st_channels: Any = None
        # channel -> (version, id of its value, immutable, bytes, items,
        # unsizable, shape of a large value or None): see _snapshot.
        self._st: dict[str, tuple[Any, int, bool, int, int, list[tuple[str, str]], Any]] = {}
        self._st_bytes = 0
        self._st_items = 0
        self.instrument_failures = 0
        self.step = 0
        # ThreadPools lent to LangGraph for this run, or None (its own).
        self.pools: ThreadPools | None = None
        # name -> [count, wall ns] of the node's task preparations (Setup):
        # timed in the hooks, not an engine span (see hook_prep).
        self.setup_wall: dict[str, list[int]] = {}
        # Instrumented procs of this run for procs that cannot hold their own
        # (see _instrumented_proc); usually empty.
        self.procs: dict[int, tuple[Any, Any]] = {}
        # What the C hooks read, in one attribute lookup (kfm_hooks.c): the
        # run's tables by name, read from a C struct.
        self._fast = _kfm.HookData(
            session=session, id_task=self.id_task, setup_wall=self.setup_wall,
            id_compute=self.id_compute, id_update=self.id_update, cend=self.cend,
            post_ns=self.post_ns, state_tracking=bool(state_tracking),
            shared_update_ns=self.shared_update_ns,
            shared_update_calls=self.shared_update_calls)
        # Names known before the run (the graph's nodes, the previous run's
        # names) are registered now, outside the graph's own time.
        for n in names:
            self.ids(n)
        self.warmup_id = prev.warmup_id if prev is not None and prev.s is session \
            else session.register(WARMUP)
        self.t0 = _perf()

    # -- ids ---------------------------------------------------------------
    def ids(self, name: str) -> tuple[int, int, int, int]:
        """Engine ids of name's spans: task, setup, compute, state_update."""
        t = self._ids.get(name)
        if t is None:
            with self._lock:
                t = self._ids.get(name)
                if t is None:
                    reg = self.s.register
                    e = _engine_name(name)
                    t = (reg(e), reg(e + "/setup"), reg(e + "/compute"), reg(e + "/state_update"))
                    self.id_task[name], self.id_setup[name] = t[0], t[1]
                    self.id_compute[name], self.id_update[name] = t[2], t[3]
                    self._ids[name] = t
        return t

    def node_names(self) -> list[str]:
        return list(self._ids)

    def add_wall(self, key: str, dt: int, t1: int = 0) -> None:
        w = self.async_wall.get(key)
        if w is None:
            with self._lock:
                self.async_spans.setdefault(key, [])
                w = self.async_wall.setdefault(key, [0, 0, dt, dt])
        if t1:
            sp = self.async_spans[key]
            sp.append(t1 - dt)
            sp.append(t1)
        w[0] += 1
        w[1] += dt
        if dt < w[2]:
            w[2] = dt
        if dt > w[3]:
            w[3] = dt

    def add_setup(self, name: str, dt: int) -> None:
        with self._lock:
            w = self.setup_wall.setdefault(name, [0, 0])
            w[0] += 1
            w[1] += dt

    def end_task(self, ns: str, name: str, now: int) -> None:
        """The task of checkpoint_ns ns ended at now: what followed its function."""
        t = self.cend.pop(ns, 0)
        if t:
            self.post_ns[name] = self.post_ns.get(name, 0) + now - t

    def record_exception(self, name: str, exc: BaseException) -> None:
        entry = {
            "node": name,
            "type": type(exc).__name__,
            "message": str(exc)[:500],
            "t_ms": (_perf() - self.t0) / 1e6,
        }
        if _is_bubble_up(exc):
            self.interrupts.append(entry)
        else:
            self.errors.append(entry)

    # -- state sizes -------------------------------------------------------
    def after_apply(self, checkpoint: Any, channels: Any, task: Any, name: str) -> None:
        """State size after a one-node superstep (the C apply hook's call).
        Raises only KeyboardInterrupt and SystemExit (see snapshot_state)."""
        try:
            writes = {name: len(task.writes)}
        except BaseException as e:  # noqa: BLE001 - never raised into the graph
            if isinstance(e, _PASS):
                raise
            writes = {name: 0}
        self.snapshot_state(checkpoint, channels, [name], writes, (task,))

    @staticmethod
    def _measure(ch: Any, cache: dict[int, Any] | None) -> tuple[int, Any]:
        """(id of the channel's value, its Measure); (0, empty) for an empty channel."""
        try:
            if not ch.is_available():
                return 0, _EMPTY
            v = ch.get()
        except BaseException as e:  # noqa: BLE001 - an empty channel
            if isinstance(e, _PASS):
                raise
            return 0, _EMPTY
        if cache is not None:
            hit = cache.get(id(v))
            if hit is not None and hit[0] is v:
                return id(v), hit[1]
        return id(v), _statesize.measure(v)

    def snapshot_state(self, checkpoint: Any, channels: Any, names: list[str],
                       writes: dict[str, int], tasks: Any) -> None:
        """Append the state's size after a superstep to the timeline.

        Never raises into the graph, except KeyboardInterrupt and SystemExit,
        which propagate from where they were raised (a Ctrl-C while sizing
        ends the run as it would have without profiling).  A value that cannot
        be sized is counted in ``unsizable`` (see _statesize.measure).  Its
        time and CPU time are kept apart (state_ns, state_cpu_ns)."""
        t0 = _perf()
        c0 = _thread_ns()
        try:
            self._snapshot(t0, checkpoint, channels, names, writes, tasks)
        except BaseException as e:  # noqa: BLE001 - a failure of the tracking itself
            if isinstance(e, _PASS):
                raise
            self.instrument_failures += 1
            key = ("state tracking", _statesize._reason(e))
            self.unsizable[key] = max(self.unsizable.get(key, 0), 1)
        finally:
            self.state_cpu_ns += _thread_ns() - c0
            t1 = _perf()
            self.state_ns += t1 - t0
            self.state_spans.append(t0)
            self.state_spans.append(t1)

    def _snapshot(self, t0: int, checkpoint: Any, channels: Any, names: list[str],
                  writes: dict[str, int], tasks: Any) -> None:
        """Which channels are measured again after a superstep:

        LangGraph bumps a channel's version at every update it applies
        (LastValue replaces the value; a reducer's result, even one that
        extends the old value in place, is a new version).  But a node gets
        the channels' own objects as its input, and may mutate them in place
        without writing: LangGraph sees no update, the memory changed all the
        same.  So a channel keeps its last measure only when nothing can have
        changed it: same version, same object, and that object deeply
        immutable (only tuples, frozensets, numbers, strings, bytes, ranges
        were reached).  Every other channel is measured again (a mutable value
        costs one walk per superstep; the walk sums containers of unshared
        atomic items at C speed, see _statesize), except a large one (from
        _LARGE_BYTES up: a 1,000,000-item list takes ~50-200 ms to walk, and
        state tracking must not cost in proportion to state no node
        touches): that is measured again only when its top level's shape
        (type, length, allocated size) changed.  So an in-place change that
        keeps a large value's top level as it was (an item replaced, a
        nested container grown) is seen at the channel's next write, not
        before.  Without channel versions
        every channel is measured.  A new channels mapping (the first
        superstep, or another loop) is measured in full.  In a superstep of
        several nodes each write is measured too (to share the growth among
        them); a channel whose value is a written object reuses that measure."""
        weights: dict[str, tuple[int, int]] = {}
        cache: dict[int, Any] | None = None
        wrote = self.wrote
        for t in tasks:
            n = _task_name(t)
            if not n.startswith("__"):
                chans = wrote.get(n)
                if chans is None:
                    chans = wrote[n] = set()
                for w in t.writes:
                    ch = w[0]
                    if not ch.startswith("__") and ":" not in ch:
                        chans.add(ch)
        if len(names) > 1:
            # What each node wrote, to share the superstep's growth.
            cache = {}
            for t in tasks:
                n = _task_name(t)
                b, i = weights.get(n, (0, 0))
                for ch, v in t.writes:
                    if not ch.startswith("__") and ":" not in ch:
                        hit = cache.get(id(v))
                        if hit is None or hit[0] is not v:
                            hit = cache[id(v)] = (v, _statesize.measure(v))
                        b += hit[1].bytes
                        i += hit[1].items
                weights[n] = (b, i)
        try:
            versions = checkpoint["channel_versions"]
        except Exception:  # noqa: BLE001 - no versions: measure every channel
            versions = None
        vcopy = dict(versions) if versions else {}
        st = self._st
        if channels is not self._st_channels:
            self._st_channels = channels
            st.clear()
            keys = [k for k in channels if not (k.startswith("__") or ":" in k)]
        else:
            keys = list(st)
        for key in keys:
            ver = versions.get(key) if versions else None
            ch = channels.get(key)
            old = st.get(key)
            if old is not None and ver is not None and old[0] == ver and (
                    old[2] or old[3] >= _LARGE_BYTES):
                try:
                    v = ch.get() if ch is not None and ch.is_available() else _EMPTY
                    same = id(v) == old[1] and (old[2] or _shape(v) == old[6])
                except BaseException as e:  # noqa: BLE001 - measured again below
                    if isinstance(e, _PASS):
                        raise
                    same = False
                if same:
                    continue
            ident, m = self._measure(ch, cache) if ch is not None else (0, _EMPTY)
            shape = _shape(ch.get()) if ident and m.bytes >= _LARGE_BYTES else None
            st[key] = (ver, ident, m.immutable, m.bytes, m.items, m.unsizable, shape)
        size = items = 0
        bad: dict[tuple[str, str], int] = {}
        for _v, _i, _imm, b, i, u, _shape_ in st.values():
            size += b
            items += i
            for k in u:
                bad[k] = bad.get(k, 0) + 1
        for k, c in bad.items():
            if c > self.unsizable.get(k, 0):
                self.unsizable[k] = c
        self._st_bytes, self._st_items = size, items
        self._st_points.append((t0, names, writes, weights, size, items))
        self.st_versions.append(vcopy)

    @property
    def state_timeline(self) -> list[dict[str, Any]]:
        """The state's size after each superstep, oldest first."""
        return [
            {"index": i, "t_ms": (t - self.t0) / 1e6, "nodes": names, "writes": writes,
             "written": weights, "size_bytes": size, "items": items}
            for i, (t, names, writes, weights, size, items) in enumerate(self._st_points)
        ]


class ThreadPools:
    """Thread pools that outlive a run, lent to LangGraph in its place.

    LangGraph makes a new thread pool for every invoke
    (``get_executor_for_config``), so every parallel superstep of every run
    starts new threads, and each new thread pays the engine's per-thread
    set-up again: at COMPREHENSIVE, opening its hardware/software counters
    (~0.6 ms here, more than the thread itself).  During a run the Debugger
    lends LangGraph a pool of the same size (``max_concurrency``) that lives
    across the Debugger's runs instead.  LangGraph still waits for each of
    its tasks before leaving the pool, exactly as before; what changes is
    that threads (and thread-locals) are the same from run to run.  A pool is
    lent to one BackgroundExecutor at a time, so a subgraph invoked from a
    worker gets a pool of its own, as with LangGraph's (no deadlock on a
    saturated pool).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._idle: dict[Any, list[Any]] = {}  # max_workers -> idle executors
        self._all: list[Any] = []
        self.closed = False

    @contextlib.contextmanager
    def lease(self, config: Any) -> Iterator[Any]:
        mw = config.get("max_concurrency") if isinstance(config, dict) else None
        with self._lock:
            idle = self._idle.get(mw)
            ex = idle.pop() if idle else None
        if ex is None:
            from langchain_core.runnables.config import ContextThreadPoolExecutor

            ex = ContextThreadPoolExecutor(max_workers=mw)
            with self._lock:
                self._all.append(ex)
        try:
            yield ex
        finally:
            with self._lock:
                back = not self.closed
                if back:
                    self._idle.setdefault(mw, []).append(ex)
            if not back:
                ex.shutdown(wait=False)

    @property
    def threads(self) -> int:
        """Worker threads the pools hold now."""
        with self._lock:
            return sum(len(getattr(ex, "_threads", ())) for ex in self._all)

    def close(self) -> None:
        """Let the idle threads end (a pool still lent ends when returned)."""
        with self._lock:
            self.closed = True
            idle = [ex for exs in self._idle.values() for ex in exs]
            self._idle.clear()
            self._all = []
        for ex in idle:
            ex.shutdown(wait=False)


def _get_executor_for_config(config: Any) -> Any:
    rec = _ACTIVE.get()
    pools = rec.pools if rec is not None else None
    if pools is None or pools.closed:
        return _orig["executor"](config)
    return pools.lease(config)


def _is_bubble_up(exc: BaseException) -> bool:
    try:
        from langgraph.errors import GraphBubbleUp
    except ImportError:  # pragma: no cover
        return False
    return isinstance(exc, GraphBubbleUp)


class _Segmented:
    """Await a coroutine with engine node nid open around each resumption."""

    __slots__ = ("coro", "rec", "nid")

    def __init__(self, coro: Any, rec: Recorder, nid: int) -> None:
        self.coro = coro
        self.rec = rec
        self.nid = nid

    def __await__(self):  # type: ignore[no-untyped-def]
        coro, call, nid = self.coro, self.rec.call, self.nid
        send: Any = None
        throw: BaseException | None = None
        while True:
            try:
                if throw is None:
                    y = call(nid, coro.send, send)
                else:
                    y = call(nid, coro.throw, throw)
            except StopIteration as stop:
                return stop.value
            try:
                send = yield y
                throw = None
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as e:  # delivered into the coroutine
                throw = e
                send = None


# ---------------------------------------------------------------------------
# The compute wrapper: a Runnable standing in for a node's first step.

_TimedStep: Any = None


def _ns(config: Any) -> str:
    """The checkpoint_ns of a task's config: 'node:<task id>', nested
    namespaces joined by '|'; unique per task."""
    try:
        return config["configurable"]["checkpoint_ns"]
    except (KeyError, TypeError):
        return ""


def _make_timed_step_class() -> Any:
    from langchain_core.runnables import Runnable
    from langchain_core.runnables.config import run_in_executor

    try:
        from langgraph.pregel._utils import _is_executor_backed_afunc
    except ImportError:  # pragma: no cover - older layouts
        def _is_executor_backed_afunc(afunc: Any) -> bool:  # type: ignore[misc]
            return False

    class TimedStep(Runnable):  # type: ignore[type-arg]
        """Runs the wrapped step with "<node>/compute" open around it."""

        def __init__(self, inner: Any, name: str) -> None:
            self.inner = inner
            self._invoke = inner.invoke
            # The common case of invoke runs in C (kfm_hooks.c, Hook): it
            # shadows the method below, which handles the other cases.
            self.invoke = Hook(_HOOK_STEP, inner.invoke, self._invoke_py, _ACTIVE, _DEPTH, name)
            self.name = getattr(inner, "name", None) or name
            self.node = name
            afunc = getattr(inner, "afunc", False)
            # A sync function in an async graph runs in an executor thread:
            # time it there, around the function itself.
            self.sync_in_executor = afunc is None or (
                afunc is not False and _is_executor_backed_afunc(afunc)
            )

        def get_name(self, suffix: str | None = None, *, name: str | None = None) -> str:
            return self.inner.get_name(suffix, name=name)

        def invoke(self, input: Any, config: Any = None, **kwargs: Any) -> Any:
            # Shadowed per instance by the C hook set in __init__.
            return self._invoke_py(input, config, **kwargs)

        def _invoke_py(self, input: Any, config: Any = None, **kwargs: Any) -> Any:
            rec = _ACTIVE.get()
            if rec is None:
                return self._invoke(input, config, **kwargs)
            ns = _ns(config)
            # The same compiled subgraph may sit under several outer nodes:
            # the path comes from the task's namespace at call time.
            nid = rec.ids(ns_path(ns) if "|" in ns else self.node)[2]
            if rec.state_tracking:
                tok = _DEPTH.set(_DEPTH.get() + 1)
                try:
                    out = rec.call(nid, self._invoke, input, config, **kwargs)
                finally:
                    _DEPTH.reset(tok)
            else:
                out = rec.call(nid, self._invoke, input, config, **kwargs)
            rec.cend[ns] = _perf()
            return out

        async def ainvoke(self, input: Any, config: Any = None, **kwargs: Any) -> Any:
            rec = _ACTIVE.get()
            if rec is None:
                return await self.inner.ainvoke(input, config, **kwargs)
            if self.sync_in_executor:
                return await run_in_executor(None, self.invoke, input, config, **kwargs)
            ns = _ns(config)
            name = ns_path(ns) if "|" in ns else self.node
            nid = rec.ids(name)[2]
            tok = _DEPTH.set(_DEPTH.get() + 1)
            t0 = _perf()
            try:
                out = await _Segmented(self.inner.ainvoke(input, config, **kwargs), rec, nid)
            finally:
                t1 = _perf()
                rec.add_wall(name + "/compute", t1 - t0, t1)
                _DEPTH.reset(tok)
            rec.cend[ns] = t1
            return out

        def stream(self, input: Any, config: Any = None, **kwargs: Any) -> Any:
            rec = _ACTIVE.get()
            it = iter(self.inner.stream(input, config, **kwargs))
            if rec is None:
                yield from it
                return
            ns = _ns(config)
            nid = rec.ids(ns_path(ns) if "|" in ns else self.node)[2]
            call = rec.call
            while True:
                try:
                    chunk = call(nid, next, it)
                except StopIteration:
                    rec.cend[ns] = _perf()
                    return
                yield chunk

        async def astream(self, input: Any, config: Any = None, **kwargs: Any) -> Any:
            rec = _ACTIVE.get()
            agen = self.inner.astream(input, config, **kwargs)
            if rec is None:
                async for chunk in agen:
                    yield chunk
                return
            ns = _ns(config)
            nid = rec.ids(ns_path(ns) if "|" in ns else self.node)[2]
            while True:
                try:
                    chunk = await _Segmented(agen.__anext__(), rec, nid)
                except StopAsyncIteration:
                    rec.cend[ns] = _perf()
                    return
                yield chunk

    return TimedStep


# The instrumented proc is kept in the proc's own instance dict under this
# key (the C hook reads it there too).  LangGraph caches a node's proc on its
# PregelNode, so the instrumented one lives exactly as long as the graph: no
# process-wide registry keeps graphs alive.  An instrumented proc maps to
# itself (a task run twice).
INSTRUMENTED = "_kfm_instrumented"


def _own_dict(obj: Any) -> dict[str, Any] | None:
    """obj's instance dict when it can hold the instrumented proc: a plain
    attribute dict (not a pydantic model's fields)."""
    d = getattr(obj, "__dict__", None)
    if type(d) is not dict or hasattr(type(obj), "__pydantic_fields__"):
        return None
    return d


def _instrumented_proc(proc: Any, name: str, rec: Recorder | None = None) -> Any:
    d = _own_dict(proc)
    if d is not None:
        hit = d.get(INSTRUMENTED)
        if hit is not None:
            return hit
    elif rec is not None:
        # A proc without a dict of its own: cached for this run only.
        h = rec.procs.get(id(proc))
        if h is not None and h[0] is proc:
            return h[1]
    global _TimedStep
    if _TimedStep is None:
        _TimedStep = _make_timed_step_class()
    from langgraph._internal._runnable import RunnableSeq

    base = name.rsplit("|", 1)[-1]
    new: Any
    if isinstance(proc, RunnableSeq):
        first = proc.steps[0]
        if _is_writer(first):
            new = proc  # no user function (a node of writers only)
        else:
            new = RunnableSeq.__new__(RunnableSeq)
            new.__dict__.update(proc.__dict__)
            new.steps = [_TimedStep(first, base), *proc.steps[1:]]
    elif _is_writer(proc):
        new = proc
    else:
        new = _TimedStep(proc, base)
    if d is not None:
        d[INSTRUMENTED] = new
    elif rec is not None:
        rec.procs[id(proc)] = (proc, new)
    # An instrumented proc handed back in (a task run twice) stays as it is.
    nd = _own_dict(new)
    if nd is not None:
        nd[INSTRUMENTED] = new
    return new


def _is_writer(r: Any) -> bool:
    try:
        from langgraph.pregel._write import ChannelWrite
    except ImportError:  # pragma: no cover
        return False
    return isinstance(r, ChannelWrite)


def _task_name(task: Any) -> str:
    ns = _ns(getattr(task, "config", None))
    return ns_path(ns) if "|" in ns else task.name


# ---------------------------------------------------------------------------
# The patches.

_orig: dict[str, Any] = {}
# The originals again as module globals: one global load on the hot path
# instead of a dict lookup.  Set with _orig by install().
_orig_run: Any = None
_orig_prep: Any = None
_orig_apply: Any = None
# kfm_debugging._kfm.Hook kinds.
_HOOK_PREP, _HOOK_RUN, _HOOK_STEP, _HOOK_APPLY = 0, 1, 2, 3
_install_lock = threading.Lock()


def _proc_for(task: Any, name: str, rec: Recorder) -> None:
    proc = task.proc
    new = _instrumented_proc(proc, name, rec)
    if new is not proc:
        # The task is LangGraph's per-step, frozen dataclass; swapping its
        # proc for an equivalent one is what the runner then executes.
        object.__setattr__(task, "proc", new)


def _run_with_retry(task: Any, *args: Any, **kwargs: Any) -> Any:
    rec = _ACTIVE.get()
    if rec is None:
        return _orig_run(task, *args, **kwargs)
    ns = _ns(task.config)
    # Compute spans are keyed by the full path too.
    name = ns_path(ns) if "|" in ns else task.name
    _proc_for(task, name, rec)
    try:
        return rec.call(rec.ids(name)[0], _orig_run, task, *args, **kwargs)
    except BaseException as e:
        rec.record_exception(name, e)
        raise
    finally:
        rec.end_task(ns, name, _perf())


async def _arun_with_retry(task: Any, *args: Any, **kwargs: Any) -> Any:
    rec = _ACTIVE.get()
    if rec is None:
        return await _orig["arun"](task, *args, **kwargs)
    ns = _ns(task.config)
    name = ns_path(ns) if "|" in ns else task.name
    _proc_for(task, name, rec)
    nid = rec.ids(name)[0]
    t0 = _perf()
    try:
        return await _Segmented(_orig["arun"](task, *args, **kwargs), rec, nid)
    except BaseException as e:
        rec.record_exception(name, e)
        raise
    finally:
        t1 = _perf()
        rec.add_wall(name, t1 - t0, t1)
        rec.end_task(ns, name, t1)


def _setup_name(task_path: Any, kwargs: dict[str, Any]) -> str | None:
    kind = task_path[0] if task_path else None
    name: str | None = None
    if kind == "__pregel_pull":
        name = task_path[1]
    elif kind == "__pregel_push" and len(task_path) == 2:
        try:
            ch = kwargs["channels"]["__pregel_tasks"]
            name = ch.get()[task_path[1]].node
        except Exception:  # noqa: BLE001 - LangGraph will ignore/raise itself
            return None
    if not isinstance(name, str):
        return None
    cfg = kwargs.get("config") or {}
    parent = cfg.get("configurable", {}).get("checkpoint_ns", "")
    return f"{ns_path(parent)}|{name}" if parent else name


def _prepare_single_task(task_path: Any, *args: Any, **kwargs: Any) -> Any:
    rec = _ACTIVE.get()
    if rec is None or not kwargs.get("for_execution", False):
        return _orig_prep(task_path, *args, **kwargs)
    name = _setup_name(task_path, kwargs)
    if name is None:
        return _orig_prep(task_path, *args, **kwargs)
    rec.ids(name)
    t0 = _perf()
    task = _orig_prep(task_path, *args, **kwargs)
    if task is not None:  # None: a candidate node that is not triggered
        rec.add_setup(name, _perf() - t0)
    return task


def _apply_writes(*args: Any, **kwargs: Any) -> Any:
    rec = _ACTIVE.get()
    if rec is None:
        return _orig_apply(*args, **kwargs)
    if len(args) > 2:
        tasks = args[2]
        if not isinstance(tasks, (list, tuple)):
            tasks = list(tasks)
            args = (*args[:2], tasks, *args[3:])
    else:
        tasks = kwargs.get("tasks", ())
        if not isinstance(tasks, (list, tuple)):
            tasks = kwargs["tasks"] = list(tasks)
    writes: dict[str, int] = {}
    for t in tasks:
        n = _task_name(t)
        writes[n] = writes.get(n, 0) + len(t.writes)
    names = [n for n in writes if not n.startswith("__")]
    if len(names) == 1:
        updated = rec.call(rec.ids(names[0])[3], _orig_apply, *args, **kwargs)
    elif not names:  # input or null writes: LangGraph's own bookkeeping
        updated = rec.call(rec.ids(LOOP)[3], _orig_apply, *args, **kwargs)
    else:
        t0 = _perf()
        updated = rec.call(rec.ids(PARALLEL)[3], _orig_apply, *args, **kwargs)
        dt = _perf() - t0
        total = sum(max(writes[n], 1) for n in names)
        for n in names:
            rec.shared_update_ns[n] += dt * max(writes[n], 1) / total
            rec.shared_update_calls[n] += 1
    if rec.state_tracking and _DEPTH.get() == 0:
        checkpoint = args[0] if args else kwargs.get("checkpoint")
        channels = args[1] if len(args) > 1 else kwargs["channels"]
        rec.snapshot_state(checkpoint, channels, names or list(writes), writes, tasks)
    return updated


def install() -> None:
    """Patch LangGraph's runner, task preparation and write application once."""
    if _orig:  # every run calls this: no lock once installed
        return
    with _install_lock:
        if _orig:
            return
        from langgraph.pregel import _algo, _executor, _loop, _runner

        missing = [
            f"{m.__name__}.{a}"
            for m, a in (
                (_runner, "run_with_retry"),
                (_runner, "arun_with_retry"),
                (_algo, "prepare_single_task"),
                (_loop, "apply_writes"),
                (_executor, "get_executor_for_config"),
            )
            if not callable(getattr(m, a, None))
        ]
        if missing:
            raise ImportError(
                "kfm_debugging: this LangGraph release lacks " + ", ".join(missing)
                + " (supported: langgraph 1.0-1.2)"
            )
        global _orig_run, _orig_prep, _orig_apply
        _orig["run"] = _orig_run = _runner.run_with_retry
        _orig["arun"] = _runner.arun_with_retry
        _orig["prep"] = _orig_prep = _algo.prepare_single_task
        _orig["apply"] = _orig_apply = _loop.apply_writes
        _orig["executor"] = _executor.get_executor_for_config
        _executor.get_executor_for_config = _get_executor_for_config
        # The common case of each runs in C (kfm_hooks.c, Hook); the Python
        # hooks above handle the rest.
        _runner.run_with_retry = Hook(_HOOK_RUN, _orig_run, _run_with_retry, _ACTIVE, _DEPTH,
                                      INSTRUMENTED)
        _runner.arun_with_retry = _arun_with_retry
        _algo.prepare_single_task = Hook(_HOOK_PREP, _orig_prep, _prepare_single_task, _ACTIVE,
                                         _DEPTH)
        _loop.apply_writes = Hook(_HOOK_APPLY, _orig_apply, _apply_writes, _ACTIVE, _DEPTH)
        log.debug("kfm_debugging: LangGraph hooks installed")


def uninstall() -> None:
    """Restore LangGraph's functions (tests use it to compare behaviour)."""
    with _install_lock:
        if not _orig:
            return
        from langgraph.pregel import _algo, _executor, _loop, _runner

        _executor.get_executor_for_config = _orig.pop("executor")
        _runner.run_with_retry = _orig.pop("run")
        _runner.arun_with_retry = _orig.pop("arun")
        _algo.prepare_single_task = _orig.pop("prep")
        _loop.apply_writes = _orig.pop("apply")
