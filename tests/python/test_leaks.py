"""Memory growth and leaks across runs: a node that keeps 2 MB per run is a
leak of about 2 MB a run; a node that allocates and frees 20 MB per run is
not; too few runs, or runs below STANDARD, say why nothing was tested."""

from __future__ import annotations

import json
import mmap
import time
from typing import Any

import pytest
from conftest import RSS_EXACT, SANITIZER, chain, give_memory_back

from kfm_debugging import Debugger, ProfilingLevel
from kfm_debugging.model import Unavailable
from kfm_debugging.model.leaks import MemoryLeaks

MiB = 1 << 20
_KEPT: list[mmap.mmap] = []


def keeper(s: dict) -> dict:
    # Its own mapping: new pages every run, whatever the allocator's free
    # lists hold (glibc would serve a 2 MB bytearray from memory that earlier
    # tests freed and left resident, and RSS would not grow; see README).
    buf = mmap.mmap(-1, 2 * MiB)
    for off in range(0, 2 * MiB, 4096):
        buf[off] = 1  # touch every page
    _KEPT.append(buf)
    return {"n": 1}


def churn(s: dict) -> dict:
    buf = bytearray(20 * MiB)
    buf[::4096] = b"y" * len(range(0, len(buf), 4096))
    del buf
    return {"n": 2}


def idle(s: dict) -> dict:
    time.sleep(0.001)
    return {"n": 3}


def _runs(*nodes: tuple[str, Any], n: int = 8) -> Debugger:
    give_memory_back()
    d = Debugger(chain(*nodes), profiling_level=ProfilingLevel.STANDARD)
    for _ in range(n):
        d.run({"input": "x"})
        assert isinstance(d.analyze_memory_growth(), float)
    return d


@RSS_EXACT
def test_a_node_keeping_2mb_a_run_leaks() -> None:
    try:
        leaks = _runs(("keeper", keeper), ("idle", idle)).detect_memory_leaks()
    finally:
        _KEPT.clear()
    assert isinstance(leaks, MemoryLeaks) and leaks.runs == 8 and not leaks.reason
    assert set(leaks) == {"keeper"}, {n: v.retained for n, v in leaks.items()}
    k = leaks["keeper"]
    assert k["per_run"] == pytest.approx(2.0, abs=0.3)
    assert k["accumulated"] == pytest.approx(16.0, abs=2.0)
    assert k["confidence"] >= 0.95 and k.runs == 8
    assert set(leaks.checked) == {"keeper", "idle"}
    # The whole run keeps what keeper keeps.
    assert leaks.process is not None and leaks.process.per_run == pytest.approx(2.0, abs=0.5)
    # The spec's loop reads it as a mapping.
    for node, info in leaks.items():
        assert f"Node: {node}, Accumulated: {info['accumulated']}MB"
    back = MemoryLeaks.from_dict(json.loads(json.dumps(leaks.to_dict())))
    assert set(back) == {"keeper"} and back["keeper"].retained == k.retained


@RSS_EXACT
@pytest.mark.skipif("address" in SANITIZER, reason="ASan's quarantine keeps freed memory "
                                                   "resident: freeing does not lower RSS")
def test_a_node_allocating_and_freeing_20mb_does_not_leak() -> None:
    leaks = _runs(("churn", churn), ("idle", idle)).detect_memory_leaks()
    assert not leaks and leaks.runs == 8, {n: v.retained for n, v in leaks.items()}
    assert set(leaks.checked) == {"churn", "idle"}
    assert leaks.process is not None and leaks.process.per_run < 0.25


def test_too_few_runs_and_basic_say_why() -> None:
    d = Debugger(chain(("idle", idle)), profiling_level="STANDARD")
    for _ in range(3):
        d.run({"input": "x"})
    leaks = d.detect_memory_leaks()
    assert not leaks and leaks.runs == 3 and "at least 5" in leaks.reason
    b = Debugger(chain(("idle", idle)), profiling_level="BASIC")
    for _ in range(6):
        b.run({"input": "x"})
    leaks = b.detect_memory_leaks()
    assert not leaks and "from ProfilingLevel.STANDARD up" in leaks.reason
    with pytest.raises(Unavailable, match="memory growth unavailable: memory is measured from "
                                          "ProfilingLevel.STANDARD"):
        b.analyze_memory_growth()


@RSS_EXACT
def test_memory_growth_is_the_runs_retained_memory() -> None:
    give_memory_back()
    d = Debugger(chain(("keeper", keeper)), profiling_level="STANDARD")
    try:
        d.run({"input": "x"})
        assert d.analyze_memory_growth() == pytest.approx(2.0, abs=0.5)
        assert d.history[-1]["memory_growth"] == pytest.approx(2.0, abs=0.5)
    finally:
        _KEPT.clear()




_KEPT_PY: list[bytearray] = []


def py_keeper(s: dict) -> dict:
    _KEPT_PY.append(bytearray(512 * 1024))  # the line the leak report must name
    return {"n": 4}


def _line_of(fn: Any, text: str) -> str:
    import inspect

    lines, first = inspect.getsourcelines(fn)
    k = next(i for i, ln in enumerate(lines) if text in ln)
    return f"{inspect.getsourcefile(fn)}:{first + k}"


def test_allocation_sites_name_the_line_that_keeps_memory() -> None:
    import tracemalloc

    assert not tracemalloc.is_tracing()
    _KEPT_PY.clear()
    give_memory_back()
    d = Debugger(chain(("py_keeper", py_keeper), ("churn", churn), ("idle", idle)),
                 profiling_level=ProfilingLevel.STANDARD, trace_allocations=True)
    try:
        for _ in range(6):
            d.run({"input": "x"})
        assert tracemalloc.is_tracing()
        leaks = d.detect_memory_leaks()
    finally:
        _KEPT_PY.clear()
    assert not leaks.allocations_reason
    al = leaks.allocations
    assert al is not None and set(al) == {"py_keeper"}, al
    k = al["py_keeper"]
    # Five runs after the first: 5 bytearrays of 512 KiB (plus the list's growth).
    assert k.runs == 5
    assert k.per_run_mb == pytest.approx(0.5, abs=0.01)
    site = k.sites[0]
    want = _line_of(py_keeper, "_KEPT_PY.append")
    assert site.site == want and site.via == want
    # Each bytearray is two blocks (object, buffer); the list may have grown once.
    assert site.mb == pytest.approx(2.5, abs=0.05) and 10 <= site.blocks <= 11
    back = MemoryLeaks.from_dict(json.loads(json.dumps(leaks.to_dict())))
    assert back.allocations is not None and back.allocations["py_keeper"].sites[0].site == want
    del d, leaks
    import gc

    gc.collect()
    assert not tracemalloc.is_tracing()  # stopped with the Debugger that started it


def test_allocation_sites_say_why_they_are_missing() -> None:
    d = _runs(("idle", idle), n=2)
    leaks = d.detect_memory_leaks()
    assert leaks.allocations is None
    assert "trace_allocations=True" in leaks.allocations_reason
    with pytest.raises(TypeError, match="'yes'"):
        Debugger(chain(("idle", idle)), trace_allocations="yes")  # type: ignore[arg-type]
    t = Debugger(chain(("idle", idle)), profiling_level=ProfilingLevel.STANDARD,
                 trace_allocations=True)
    t.run({"input": "x"})
    why = t.detect_memory_leaks().allocations_reason
    assert "1 traced run(s)" in why and "at least 2" in why
    del t
    import gc
    import tracemalloc

    gc.collect()
    assert not tracemalloc.is_tracing()
