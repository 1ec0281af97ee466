"""The C extension kfm_debugging._kfm on its own: sessions, transitions,
reports, series views and the exceptions that carry the engine's messages."""

from __future__ import annotations

import errno
import json
import os
import threading
import time

import pytest

from kfm_debugging import _kfm
from kfm_debugging._kfm import Session


def test_backends_probe_names_clock_and_proc() -> None:
    names = {b["name"]: b for b in _kfm.backends()}
    assert names["clock"]["available"] and names["proc"]["available"]
    assert all(isinstance(b["reason"], str) for b in names.values())


def test_session_times_a_sleep() -> None:
    s = Session("level=basic")
    with s:
        a = s.register("a")
        assert s.register("a") == a
        s.enter(a)
        assert s.current() == "a" and s.depth() == 1
        t0 = time.perf_counter_ns()
        time.sleep(0.02)
        t1 = time.perf_counter_ns()
        s.exit(a)
    assert not s.running
    r = s.report()
    n = r["nodes"]["a"]
    assert n["count"] == 1
    assert n["total_ns"] == pytest.approx(t1 - t0, rel=0.05)
    assert r["summary"]["level_name"] == "basic"
    assert r["metrics"] == []
    s.close()
    assert s.closed
    s.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        s.report()


def test_report_metrics_edges_and_backends_at_detailed() -> None:
    with Session("level=detailed,trace=on") as s:
        p, c = s.register("p"), s.register("c")
        s.enter(p)
        s.enter(c)
        s.exit(c)
        s.exit(p)
    r = s.report()
    names = [m["name"] for m in r["metrics"]]
    assert "proc.rss" in names and "proc.cpu_user" in names
    assert set(r["nodes"]["p"]["inclusive"]) == set(names)
    assert ("p", "c", 1) in r["edges"]["nested"]
    assert (None, "p", 1) in r["edges"]["nested"]
    assert {b["name"] for b in r["backends"]} >= {"clock", "proc"}
    ev = s.events()
    assert ev["t_ns"].format == "d" and ev["node"].format == "I" and ev["kind"].format == "B"
    assert ev["kind"].tolist() == [0, 0, 1, 1]
    assert [ev["names"][i] for i in ev["node"].tolist()] == ["p", "c", "c", "p"]
    assert ev["values"].shape == (4, len(ev["metrics"]))
    sm = s.samples()
    n = len(sm["t_ns"])
    assert sm["offsets"].tolist()[-1] == len(sm["nodes"])
    assert len(sm["offsets"]) == n + 1
    s.close()


def test_empty_series_are_empty_views() -> None:
    with Session("level=basic,rate=off,trace=on") as s:
        pass
    ev = s.events()
    assert len(ev["t_ns"]) == 0 and len(ev["values"]) == 0
    sm = s.samples()
    assert len(sm["t_ns"]) == 0 and sm["offsets"].tolist() == [0]


def test_config_errors_are_value_errors_with_engine_text() -> None:
    with pytest.raises(ValueError, match="level: bad value 'nope'"):
        Session("level=nope")
    with pytest.raises(ValueError, match="unknown"):
        Session("colour=blue")


def test_state_and_order_errors_are_runtime_errors() -> None:
    s = Session("level=basic")
    a = s.register("a")
    with pytest.raises(RuntimeError, match="KFM_ESTATE"):
        s.enter(a)
    s.start()
    with pytest.raises(RuntimeError):
        s.start()
    b = s.register("b")
    s.enter(a)
    s.enter(b)
    with pytest.raises(RuntimeError, match="EORDER"):
        s.exit(a)
    s.exit(b)
    s.exit(a)
    with pytest.raises(RuntimeError, match="ENOTENTERED"):
        s.exit(a)
    with pytest.raises(ValueError):
        s.enter(10**6)
    with pytest.raises(ValueError):
        s.enter(-1)
    with pytest.raises(TypeError):
        s.enter("a")
    with pytest.raises(ValueError):
        s.register("")
    s.stop()
    s.close()


def test_export_writes_json_and_reports_unwritable_paths(tmp_path: os.PathLike) -> None:
    with Session("level=standard") as s:
        s.enter_name("x")
        s.exit_name("x")
    path = os.path.join(tmp_path, "p.json")
    s.export(path)
    doc = json.load(open(path))
    assert "x" in json.dumps(doc)
    with pytest.raises(OSError) as ei:
        s.export(os.path.join(tmp_path, "missing-dir", "p.json"))
    assert ei.value.errno == errno.ENOENT
    assert "missing-dir" in str(ei.value)
    with pytest.raises(RuntimeError, match="backend"):
        s.backend_json("nosuchbackend")


def test_threads_have_their_own_stacks() -> None:
    with Session("level=basic") as s:
        ids = [s.register(f"t{i}") for i in range(4)]

        def work(i: int) -> None:
            s.enter(ids[i])
            time.sleep(0.01)
            s.exit(ids[i])

        th = [threading.Thread(target=work, args=(i,)) for i in range(4)]
        for t in th:
            t.start()
        for t in th:
            t.join()
    r = s.report()
    assert r["summary"]["threads"] == 4
    assert r["summary"]["unbalanced"] == 0
    for i in range(4):
        assert r["nodes"][f"t{i}"]["count"] == 1


def test_level_name() -> None:
    assert [_kfm.level_name(i) for i in range(4)] == ["basic", "standard", "detailed", "comprehensive"]
    with pytest.raises(ValueError):
        _kfm.level_name(7)


def test_call_enters_calls_exits_and_never_raises_for_refusals() -> None:
    s = Session("level=basic")
    with s:
        a = s.register("a")

        def f(x: int, y: int = 2) -> int:
            assert s.current() == "a"
            return x + y

        assert s.call(a, f, 1) == 3 and s.call(a, f, 1, y=5) == 6
        with pytest.raises(ZeroDivisionError):  # fn's exception, unchanged
            s.call(a, lambda: 1 / 0)
        assert s.depth() == 0 and s.failures == 0
        # Refused transitions are counted; fn still runs, unprofiled.
        assert s.call(10**9, max, 1, 3) == 3 and s.call("x", max, 1, 3) == 3
        assert s.failures == 2
        assert s.try_enter(a) and s.try_exit(a)
        assert not s.try_exit(a) and s.failures == 3
        with pytest.raises(TypeError):
            s.call(a)
    assert s.report()["nodes"]["a"]["count"] == 4


def test_hook_passes_through_without_a_recorder() -> None:
    import contextvars

    active: contextvars.ContextVar[object] = contextvars.ContextVar("a", default=None)
    depth: contextvars.ContextVar[int] = contextvars.ContextVar("d", default=0)
    slow_calls: list[tuple] = []

    def orig(*args: object, **kwargs: object) -> tuple:
        return args, kwargs

    def slow(*args: object, **kwargs: object) -> tuple:
        slow_calls.append(args)
        return orig(*args, **kwargs)

    for kind in range(4):
        h = _kfm.Hook(kind, orig, slow, active, depth, "n")
        assert h(1, 2, k=3) == ((1, 2), {"k": 3}) and h.orig is orig and h.slow is slow
    assert not slow_calls
    # A recorder without the C fast-path data: every call goes to slow.
    tok = active.set(object())
    try:
        assert _kfm.Hook(1, orig, slow, active, depth)(7) == ((7,), {})
    finally:
        active.reset(tok)
    assert slow_calls == [(7,)]
    with pytest.raises(ValueError, match="kind 9"):
        _kfm.Hook(9, orig, slow, active, depth)
