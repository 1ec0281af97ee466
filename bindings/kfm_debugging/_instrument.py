"""Where the Debugger hooks into LangGraph, and the per-run recorder.

LangGraph 1.x runs a node in three places (read from langgraph/pregel in the
installed release, see tests/python/test_hooks.py which checks the names):

* Setup: ``_algo.prepare_single_task`` builds each task of a superstep on the
  loop thread: task id, scratchpad, config and the node's input
  (``_proc_input`` reads the channels).  Patched as a module global of
  ``langgraph.pregel._algo``, which ``prepare_next_tasks`` calls by name.
* Computation and writes: ``_runner.run_with_retry`` / ``arun_with_retry``
  run ``task.proc`` = RunnableSeq(user function, ChannelWrite, branch writers)
  on a pool thread, inline, or as an asyncio task; retries loop inside them.
  The task span ("N") covers all attempts; the user function (the sequence's
  first step) is wrapped per attempt ("N/compute").  The rest of the task
  span is ChannelWrite, conditional-edge routing and retry back-off.
* State update: ``_loop.apply_writes`` runs the reducers once per superstep
  on the loop thread ("N/state_update"; a superstep with several distinct
  nodes is one "(parallel)/state_update" span whose time is split among them
  by the number of writes each made).

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

import contextvars
import logging
import threading
import time
from collections import defaultdict
from typing import Any

from . import _statesize

log = logging.getLogger("kfm_debugging")

_ACTIVE: contextvars.ContextVar[Recorder | None] = contextvars.ContextVar(
    "kfm_debugging_active", default=None
)
# Depth of node computations around the current code: 0 is the top graph's
# own loop, so its apply_writes is the one whose state is tracked.
_DEPTH: contextvars.ContextVar[int] = contextvars.ContextVar("kfm_debugging_depth", default=0)

_perf = time.perf_counter_ns

PARALLEL = "(parallel)"
GRAPH = "__graph__"
LOOP = "__loop__"
SUFFIXES = ("/setup", "/compute", "/state_update", "/write")


def ns_path(ns: str) -> str:
    """'outer:<id>|1|inner:<id>' -> 'outer|inner' (LangGraph's checkpoint_ns
    without task ids and numeric disambiguators)."""
    return "|".join(p.split(":", 1)[0] for p in ns.split("|") if p and not p.isdigit())


def _engine_name(name: str) -> str:
    # The engine accepts names up to 255 bytes; deep subgraph paths are cut
    # from the left so the node's own name survives.
    b = name.encode()
    if len(b) <= 230:
        return name
    return "..." + b[-220:].decode("utf-8", "ignore")


class Recorder:
    """Everything one profiled run records besides the engine's aggregates."""

    def __init__(self, session: Any, state_tracking: bool) -> None:
        self.s = session
        self.enter = session.enter
        self.exit = session.exit
        self.state_tracking = state_tracking
        self._ids: dict[str, tuple[int, int, int, int, int]] = {}
        self._lock = threading.Lock()
        # engine name -> [count, total_ns, min_ns, max_ns] for async spans
        self.async_wall: dict[str, list[int]] = {}
        self.errors: list[dict[str, Any]] = []
        self.interrupts: list[dict[str, Any]] = []
        self.shared_update_ns: dict[str, float] = defaultdict(float)
        self.shared_update_calls: dict[str, int] = defaultdict(int)
        self.state_timeline: list[dict[str, Any]] = []
        self.state_ns = 0  # time spent measuring state sizes (not the graph's)
        self.instrument_failures = 0
        self.step = 0
        self.t0 = _perf()

    # -- ids ---------------------------------------------------------------
    def ids(self, name: str) -> tuple[int, int, int, int, int]:
        """Engine ids of name's spans: task, setup, compute, state_update, write."""
        t = self._ids.get(name)
        if t is None:
            with self._lock:
                t = self._ids.get(name)
                if t is None:
                    reg = self.s.register
                    e = _engine_name(name)
                    t = (reg(e), reg(e + "/setup"), reg(e + "/compute"),
                         reg(e + "/state_update"), reg(e + "/write"))
                    self._ids[name] = t
        return t

    def node_names(self) -> list[str]:
        return list(self._ids)

    # -- safe transitions: an engine refusal never reaches the user's graph --
    def _enter(self, nid: int) -> bool:
        try:
            self.enter(nid)
            return True
        except Exception:  # noqa: BLE001 - e.g. stack too deep; counted, reported
            self.instrument_failures += 1
            return False

    def _exit(self, nid: int) -> None:
        try:
            self.exit(nid)
        except Exception:  # noqa: BLE001
            self.instrument_failures += 1

    def add_wall(self, key: str, dt: int) -> None:
        w = self.async_wall.get(key)
        if w is None:
            with self._lock:
                w = self.async_wall.setdefault(key, [0, 0, dt, dt])
        w[0] += 1
        w[1] += dt
        if dt < w[2]:
            w[2] = dt
        if dt > w[3]:
            w[3] = dt

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
    def snapshot_state(self, channels: Any, names: list[str], writes: dict[str, int],
                       weights: dict[str, tuple[int, int]]) -> None:
        t0 = _perf()
        size = items = 0
        for key, ch in channels.items():
            if key.startswith("__") or ":" in key:
                continue  # LangGraph's own channels (tasks, branches, start)
            try:
                if not ch.is_available():
                    continue
                v = ch.get()
            except Exception:  # noqa: BLE001 - an empty channel
                continue
            size += _statesize.deep_sizeof(v)
            items += _statesize.count_items(v)
        self.state_timeline.append(
            {
                "index": len(self.state_timeline),
                "t_ms": (t0 - self.t0) / 1e6,
                "nodes": names,
                "writes": writes,
                "written": weights,
                "size_bytes": size,
                "items": items,
            }
        )
        self.state_ns += _perf() - t0


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
        coro, rec, nid = self.coro, self.rec, self.nid
        send: Any = None
        throw: BaseException | None = None
        while True:
            ok = rec._enter(nid)
            try:
                y = coro.send(send) if throw is None else coro.throw(throw)
            except StopIteration as stop:
                if ok:
                    rec._exit(nid)
                return stop.value
            except BaseException:
                if ok:
                    rec._exit(nid)
                raise
            if ok:
                rec._exit(nid)
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
_TimedWriter: Any = None


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

        def _name(self, config: Any) -> str:
            # The same compiled subgraph may sit under several outer nodes:
            # the path comes from the task's namespace at call time.
            ns = (config or {}).get("configurable", {}).get("checkpoint_ns", "")
            return ns_path(ns) if "|" in ns else self.node

        def invoke(self, input: Any, config: Any = None, **kwargs: Any) -> Any:
            rec = _ACTIVE.get()
            if rec is None:
                return self.inner.invoke(input, config, **kwargs)
            nid = rec.ids(self._name(config))[2]
            tok = _DEPTH.set(_DEPTH.get() + 1)
            ok = rec._enter(nid)
            try:
                return self.inner.invoke(input, config, **kwargs)
            finally:
                if ok:
                    rec._exit(nid)
                _DEPTH.reset(tok)

        async def ainvoke(self, input: Any, config: Any = None, **kwargs: Any) -> Any:
            rec = _ACTIVE.get()
            if rec is None:
                return await self.inner.ainvoke(input, config, **kwargs)
            if self.sync_in_executor:
                return await run_in_executor(None, self.invoke, input, config, **kwargs)
            name = self._name(config)
            key = name + "/compute"
            nid = rec.ids(name)[2]
            tok = _DEPTH.set(_DEPTH.get() + 1)
            t0 = _perf()
            try:
                return await _Segmented(self.inner.ainvoke(input, config, **kwargs), rec, nid)
            finally:
                rec.add_wall(key, _perf() - t0)
                _DEPTH.reset(tok)

        def stream(self, input: Any, config: Any = None, **kwargs: Any) -> Any:
            rec = _ACTIVE.get()
            it = iter(self.inner.stream(input, config, **kwargs))
            if rec is None:
                yield from it
                return
            nid = rec.ids(self._name(config))[2]
            while True:
                ok = rec._enter(nid)
                try:
                    chunk = next(it)
                except StopIteration:
                    return
                finally:
                    if ok:
                        rec._exit(nid)
                yield chunk

        async def astream(self, input: Any, config: Any = None, **kwargs: Any) -> Any:
            rec = _ACTIVE.get()
            agen = self.inner.astream(input, config, **kwargs)
            if rec is None:
                async for chunk in agen:
                    yield chunk
                return
            nid = rec.ids(self._name(config))[2]
            while True:
                try:
                    chunk = await _Segmented(agen.__anext__(), rec, nid)
                except StopAsyncIteration:
                    return
                yield chunk

    class TimedWriter(Runnable):  # type: ignore[type-arg]
        """Runs a ChannelWrite or branch writer with "<node>/write" open."""

        def __init__(self, inner: Any, name: str) -> None:
            self.inner = inner
            self.name = getattr(inner, "name", None) or name
            self.node = name

        _name = TimedStep._name

        def get_name(self, suffix: str | None = None, *, name: str | None = None) -> str:
            return self.inner.get_name(suffix, name=name)

        def invoke(self, input: Any, config: Any = None, **kwargs: Any) -> Any:
            rec = _ACTIVE.get()
            if rec is None:
                return self.inner.invoke(input, config, **kwargs)
            nid = rec.ids(self._name(config))[4]
            ok = rec._enter(nid)
            try:
                return self.inner.invoke(input, config, **kwargs)
            finally:
                if ok:
                    rec._exit(nid)

        async def ainvoke(self, input: Any, config: Any = None, **kwargs: Any) -> Any:
            rec = _ACTIVE.get()
            if rec is None:
                return await self.inner.ainvoke(input, config, **kwargs)
            name = self._name(config)
            t0 = _perf()
            try:
                return await _Segmented(self.inner.ainvoke(input, config, **kwargs), rec,
                                        rec.ids(name)[4])
            finally:
                rec.add_wall(name + "/write", _perf() - t0)

        def transform(self, input: Any, config: Any = None, **kwargs: Any) -> Any:
            return self.inner.transform(input, config, **kwargs)

        def atransform(self, input: Any, config: Any = None, **kwargs: Any) -> Any:
            return self.inner.atransform(input, config, **kwargs)

    return TimedStep, TimedWriter


# id(original proc) -> (original proc, instrumented proc).  Holding the
# original keeps its id from being reused; procs are cached per PregelNode so
# this grows with the number of node definitions, not with runs.
_PROCS: dict[int, tuple[Any, Any]] = {}


def _instrumented_proc(proc: Any, name: str) -> Any:
    hit = _PROCS.get(id(proc))
    if hit is not None and hit[0] is proc:
        return hit[1]
    global _TimedStep, _TimedWriter
    if _TimedStep is None:
        _TimedStep, _TimedWriter = _make_timed_step_class()
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
            new.steps = [_TimedStep(first, base), *(_TimedWriter(w, base) for w in proc.steps[1:])]
    elif _is_writer(proc):
        new = proc
    else:
        new = _TimedStep(proc, base)
    _PROCS[id(proc)] = (proc, new)
    return new


def _is_writer(r: Any) -> bool:
    try:
        from langgraph.pregel._write import ChannelWrite
    except ImportError:  # pragma: no cover
        return False
    return isinstance(r, ChannelWrite)


def _task_name(task: Any) -> str:
    cfg = getattr(task, "config", None)
    if cfg:
        ns = cfg.get("configurable", {}).get("checkpoint_ns", "")
        if "|" in ns:
            return ns_path(ns)
    return task.name


# ---------------------------------------------------------------------------
# The patches.

_orig: dict[str, Any] = {}
_install_lock = threading.Lock()


def _proc_for(task: Any, name: str) -> None:
    proc = task.proc
    new = _instrumented_proc(proc, name)
    if new is not proc:
        # The task is LangGraph's per-step, frozen dataclass; swapping its
        # proc for an equivalent one is what the runner then executes.
        object.__setattr__(task, "proc", new)


def _run_with_retry(task: Any, *args: Any, **kwargs: Any) -> Any:
    rec = _ACTIVE.get()
    if rec is None:
        return _orig["run"](task, *args, **kwargs)
    name = _task_name(task)
    # Compute spans are keyed by the full path too.
    _proc_for(task, name)
    nid = rec.ids(name)[0]
    ok = rec._enter(nid)
    try:
        return _orig["run"](task, *args, **kwargs)
    except BaseException as e:
        rec.record_exception(name, e)
        raise
    finally:
        if ok:
            rec._exit(nid)


async def _arun_with_retry(task: Any, *args: Any, **kwargs: Any) -> Any:
    rec = _ACTIVE.get()
    if rec is None:
        return await _orig["arun"](task, *args, **kwargs)
    name = _task_name(task)
    _proc_for(task, name)
    nid = rec.ids(name)[0]
    t0 = _perf()
    try:
        return await _Segmented(_orig["arun"](task, *args, **kwargs), rec, nid)
    except BaseException as e:
        rec.record_exception(name, e)
        raise
    finally:
        rec.add_wall(name, _perf() - t0)


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
        return _orig["prep"](task_path, *args, **kwargs)
    name = _setup_name(task_path, kwargs)
    if name is None:
        return _orig["prep"](task_path, *args, **kwargs)
    nid = rec.ids(name)[1]
    ok = rec._enter(nid)
    try:
        return _orig["prep"](task_path, *args, **kwargs)
    finally:
        if ok:
            rec._exit(nid)


def _apply_writes(*args: Any, **kwargs: Any) -> Any:
    rec = _ACTIVE.get()
    if rec is None:
        return _orig["apply"](*args, **kwargs)
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
        nid = rec.ids(names[0])[3]
        t0 = 0
    elif not names:  # input or null writes: LangGraph's own bookkeeping
        nid = rec.ids(LOOP)[3]
        t0 = 0
    else:
        nid = rec.ids(PARALLEL)[3]
        t0 = _perf()
    ok = rec._enter(nid)
    try:
        return _orig["apply"](*args, **kwargs)
    finally:
        if ok:
            rec._exit(nid)
        if t0 and names:
            dt = _perf() - t0
            total = sum(max(writes[n], 1) for n in names)
            for n in names:
                rec.shared_update_ns[n] += dt * max(writes[n], 1) / total
                rec.shared_update_calls[n] += 1
        if rec.state_tracking and _DEPTH.get() == 0:
            channels = args[1] if len(args) > 1 else kwargs["channels"]
            weights: dict[str, tuple[int, int]] = {}
            if len(names) > 1:
                # What each node wrote, to share the superstep's growth.
                t1 = _perf()
                for t in tasks:
                    n = _task_name(t)
                    b, i = weights.get(n, (0, 0))
                    for ch, v in t.writes:
                        if not ch.startswith("__") and ":" not in ch:
                            b += _statesize.deep_sizeof(v)
                            i += _statesize.count_items(v)
                    weights[n] = (b, i)
                rec.state_ns += _perf() - t1
            rec.snapshot_state(channels, names or list(writes), writes, weights)


def install() -> None:
    """Patch LangGraph's runner, task preparation and write application once."""
    with _install_lock:
        if _orig:
            return
        from langgraph.pregel import _algo, _loop, _runner

        missing = [
            f"{m.__name__}.{a}"
            for m, a in (
                (_runner, "run_with_retry"),
                (_runner, "arun_with_retry"),
                (_algo, "prepare_single_task"),
                (_loop, "apply_writes"),
            )
            if not callable(getattr(m, a, None))
        ]
        if missing:
            raise ImportError(
                "kfm_debugging: this LangGraph release lacks " + ", ".join(missing)
                + " (supported: langgraph 1.0-1.2)"
            )
        _orig["run"] = _runner.run_with_retry
        _orig["arun"] = _runner.arun_with_retry
        _orig["prep"] = _algo.prepare_single_task
        _orig["apply"] = _loop.apply_writes
        _runner.run_with_retry = _run_with_retry
        _runner.arun_with_retry = _arun_with_retry
        _algo.prepare_single_task = _prepare_single_task
        _loop.apply_writes = _apply_writes
        log.debug("kfm_debugging: LangGraph hooks installed")


def uninstall() -> None:
    """Restore LangGraph's functions (tests use it to compare behaviour)."""
    with _install_lock:
        if not _orig:
            return
        from langgraph.pregel import _algo, _loop, _runner

        _runner.run_with_retry = _orig.pop("run")
        _runner.arun_with_retry = _orig.pop("arun")
        _algo.prepare_single_task = _orig.pop("prep")
        _loop.apply_writes = _orig.pop("apply")
