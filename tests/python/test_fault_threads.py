"""Debuggers on threads other than the first (issue "Reliability", item 1).

A Debugger at COMPREHENSIVE on any thread after the one that first used
PAPI killed the interpreter (a segfault in PAPI's event-name lookup, the
thread being unknown to PAPI), and so did two Debuggers on two threads at
once.  Every level is checked here: on the main thread first, then on
fresh threads one after the other (a new thread often gets an ended one's
pthread id and stack), two at once, and a Debugger run on a worker and
closed on the main thread.  Each run's result must equal the graph's own
and every node must count exactly its calls.  The last test replays the
sequences in a fresh interpreter, where the first PAPI call of the process
is made on a worker thread that then ends: a crash there is a failed exit
status, not a dead test run.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from typing import Any, Callable

import pytest

from conftest import ALL_LEVELS, chain
from kfm_debugging import Debugger, ProfilingLevel

NODES = ("parse", "calc", "respond")


def _graph() -> Any:
    def parse(s: dict) -> dict:
        return {"n": len(s["input"])}

    def calc(s: dict) -> dict:
        # A little CPU, so that counters have something to count.
        return {"items": [sum(i * i for i in range(20000)) + s["n"]]}

    def respond(s: dict) -> dict:
        return {"out": f"{s['n']}:{s['items'][0]}"}

    return chain(("parse", parse), ("calc", calc), ("respond", respond)).compile()


GRAPH = _graph()
PLAIN = GRAPH.invoke({"input": "hello"})


def _check(d: Debugger, level: ProfilingLevel, result: Any) -> None:
    """The run's result is the graph's own; every node ran once, exactly."""
    assert result == PLAIN
    t = d.get_node_timing()
    rep = d.engine_report()
    for n in NODES:
        assert t[n].calls == 1
        assert rep["nodes"][n]["count"] == 1
    assert rep["summary"]["unbalanced"] == 0
    papi = [b for b in rep["backends"] if b["name"] == "papi"]
    if level == ProfilingLevel.COMPREHENSIVE and papi and papi[0]["available"]:
        assert papi[0]["enabled"], papi[0]


def _on_thread(fn: Callable[[], Any]) -> Any:
    """fn() on a new thread, which has ended when this returns; its exception re-raised."""
    box: dict[str, Any] = {}

    def body() -> None:
        try:
            box["value"] = fn()
        except BaseException as e:  # noqa: BLE001 - re-raised on the caller's thread
            box["error"] = e

    t = threading.Thread(target=body)
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]
    return box.get("value")


def _whole_life(level: ProfilingLevel, runs: int = 2) -> None:
    d = Debugger(GRAPH, profiling_level=level)
    try:
        for _ in range(runs):
            _check(d, level, d.run({"input": "hello"}))
    finally:
        d.close()


@pytest.mark.parametrize("level", ALL_LEVELS, ids=lambda lv: lv.name)
def test_debugger_on_threads_after_the_first(level: ProfilingLevel) -> None:
    _whole_life(level)  # the main thread first
    for _ in range(3):  # then fresh threads in turn, each after the last ended
        _on_thread(lambda: _whole_life(level))
    _whole_life(level)  # and the main thread again


@pytest.mark.parametrize("level", ALL_LEVELS, ids=lambda lv: lv.name)
def test_run_on_a_worker_closed_on_main(level: ProfilingLevel) -> None:
    d = Debugger(GRAPH, profiling_level=level)
    _check(d, level, _on_thread(lambda: d.run({"input": "hello"})))  # session made there
    _check(d, level, d.run({"input": "hello"}))  # the same Debugger, on main
    _check(d, level, _on_thread(lambda: d.run({"input": "hello"})))
    d.close()  # on main: sessions created and run on threads that have ended


@pytest.mark.parametrize("level", ALL_LEVELS, ids=lambda lv: lv.name)
def test_two_debuggers_on_two_threads_at_once(level: ProfilingLevel) -> None:
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            start.wait()
            _whole_life(level, runs=3)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    ts = [threading.Thread(target=worker) for _ in range(2)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors, errors


def test_mixed_levels_on_four_threads_at_once() -> None:
    start = threading.Barrier(len(ALL_LEVELS))
    errors: list[BaseException] = []

    def worker(level: ProfilingLevel) -> None:
        try:
            start.wait()
            _whole_life(level, runs=2)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    ts = [threading.Thread(target=worker, args=(lv,)) for lv in ALL_LEVELS]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors, errors


_FRESH = r"""
import sys, threading
sys.path[:0] = [{tests!r}]
import test_fault_threads as T
from kfm_debugging import ProfilingLevel as L

C = L.COMPREHENSIVE
T._on_thread(lambda: T._whole_life(C))       # the process's first PAPI use, on a worker
T._on_thread(lambda: T._whole_life(C))       # another thread, after that one ended
T._whole_life(C)                             # the main thread
for lv in L:                                  # every level on fresh threads
    T._on_thread(lambda: T._whole_life(lv))
errors = []
def both():
    try:
        T._whole_life(C)
    except BaseException as e:
        errors.append(e)
ts = [threading.Thread(target=both) for _ in range(2)]  # two at once
for t in ts:
    t.start()
for t in ts:
    t.join()
if errors:
    raise errors[0]
print("fresh-ok")
"""


def test_fresh_interpreter_first_use_on_a_worker() -> None:
    tests = os.path.dirname(os.path.abspath(__file__))
    proc = subprocess.run([sys.executable, "-c", _FRESH.format(tests=tests)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-3000:])
    assert "fresh-ok" in proc.stdout
