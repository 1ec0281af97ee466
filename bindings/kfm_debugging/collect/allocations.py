"""Python allocations retained across runs, by node and source line
(Debugger(trace_allocations=True)).

RSS says how much memory a node kept; it cannot say where, and glibc's
reuse of freed memory can credit growth to the wrong node (README).
tracemalloc records each live Python allocation with its traceback, so
the allocations that survive from one run's end to a later run's end, and
whose traceback passes through a node's function, are what that node kept,
line by line.

How: tracemalloc is started with FRAMES frames a traceback (enough to
reach the node's frame from an allocation a few calls down) when the first
run begins, unless the program already traces.  After each run a snapshot
is taken, reduced to the traces whose traceback passes through a file
holding a node's function (the rest of the process is not this graph's),
and summed per traceback.
The first run's snapshot is kept as the reference (a cache filled by the
first run is not a leak); each later run's replaces the latest.  Their
difference, per traceback, is handed to analysis/leaks.py with each node
function's (file, first line, last line).

Cost: tracemalloc slows every Python allocation of the process (often by
a factor of 1.5 to 3 in allocation-heavy code) and a snapshot takes time
in proportion to the live traced blocks, so it is never on unless asked
for.  tracemalloc is stopped again when tracing ends, if kfm started it.
"""

from __future__ import annotations

import tracemalloc
from typing import Any

FRAMES = 32

# (frames oldest first as (file, line), as tracemalloc.Traceback iterates
# them since Python 3.7; bytes retained; blocks retained)
Retained = list[tuple[tuple[tuple[str, int], ...], int, int]]


def node_code(graph: Any) -> dict[str, tuple[str, int, int]]:
    """{node: (file, first line, last line)} of each node's function, after
    taking off partials, methods and functools.wraps decorators; nodes
    without a Python function (subgraphs, chat models) are left out."""
    from .structure import _unwrap

    nodes = getattr(graph, "nodes", None) or {}
    out: dict[str, tuple[str, int, int]] = {}
    for name, pnode in nodes.items():
        runnable = getattr(pnode, "bound", pnode)
        fn = getattr(runnable, "func", None) or getattr(runnable, "afunc", None)
        if fn is None:
            continue
        found = _unwrap(fn)
        code = getattr(getattr(found, "fn", None), "__code__", None)
        if code is None:
            continue
        lines = [ln for _s, _e, ln in code.co_lines() if ln is not None]
        out[name] = (code.co_filename, code.co_firstlineno, max(lines, default=code.co_firstlineno))
    return out


class AllocationTracer:
    """The snapshots of one Debugger's runs (see the module's docstring)."""

    def __init__(self, graph: Any, frames: int = FRAMES) -> None:
        self.frames = frames
        self._graph = graph
        self._code: dict[str, tuple[str, int, int]] | None = None
        self.started = False  # kfm started tracemalloc (and stops it)
        # traceback (frames most recent first) -> [bytes, blocks] alive after
        # the first run, and after the latest
        self.first: dict[tuple[tuple[str, int], ...], list[int]] | None = None
        self.last: dict[tuple[tuple[str, int], ...], list[int]] | None = None
        self.runs = 0  # runs with a snapshot
        self.error = ""

    @property
    def code(self) -> dict[str, tuple[str, int, int]]:
        if self._code is None:
            try:
                self._code = node_code(self._graph)
            except Exception as e:  # noqa: BLE001 - a graph kfm cannot read
                self._code = {}
                self.error = f"the nodes' functions could not be found: {type(e).__name__}: {e}"
        return self._code

    def before_run(self) -> None:
        if not tracemalloc.is_tracing():
            tracemalloc.start(self.frames)
            self.started = True

    def after_run(self) -> None:
        if not tracemalloc.is_tracing():
            self.error = "tracemalloc was stopped by the program during the runs"
            return
        files = {f for f, _a, _b in self.code.values()}
        if not files:
            return
        # Reduced to the traces through a node's file, grouped by traceback.
        # tracemalloc.Filter matches every frame with fnmatch, and the public
        # Trace / Frame objects are made one by one: ~0.5-1 s for 10,000
        # traces.  The snapshot's raw tuples (what tracemalloc's own
        # statistics read) take milliseconds; the public path stays as the
        # fallback.
        held: dict[tuple[tuple[str, int], ...], list[int]] = {}
        snap = tracemalloc.take_snapshot()
        raw = getattr(snap.traces, "_traces", None)
        if raw is not None:  # (domain, size, frames most recent first, ...)
            items = ((t[1], t[2]) for t in raw)
        else:
            items = ((tr.size, tuple((f.filename, f.lineno) for f in reversed(tr.traceback)))
                     for tr in snap.traces)
        # Raw traces share their traceback tuples (tracemalloc interns them):
        # each is searched once, keyed by identity while the snapshot holds
        # it (not on the fallback path, whose tuples are new each time).
        through: dict[int, bool] = {}
        for size, recent_first in items:
            hit = through.get(id(recent_first)) if raw is not None else None
            if hit is None:
                hit = any(f in files for f, _ln in recent_first)
                if raw is not None:
                    through[id(recent_first)] = hit
            if hit:
                acc = held.setdefault(recent_first, [0, 0])
                acc[0] += size
                acc[1] += 1
        if self.first is None:
            self.first = held
        else:
            self.last = held
        self.runs += 1

    def retained(self) -> tuple[Retained, int]:
        """What the traced allocations gained from the first run's end to
        the latest run's end, per traceback, and over how many runs."""
        if self.first is None or self.last is None:
            return [], 0
        out: Retained = []
        for recent_first, (size, count) in self.last.items():
            size0, count0 = self.first.get(recent_first, (0, 0))
            if size > size0:
                out.append((recent_first[::-1], size - size0, count - count0))
        return out, self.runs - 1

    def stop(self) -> None:
        self.first = self.last = None
        if self.started and tracemalloc.is_tracing():
            tracemalloc.stop()
        self.started = False



def evidence(tracer: AllocationTracer | None
             ) -> tuple[Retained, int, dict[str, tuple[str, int, int]], str]:
    """(retained allocations, runs they span, node code ranges, "") for
    analysis/leaks.py, or ([], 0, {}, why there are none)."""
    if tracer is None:
        return [], 0, {}, ("Python allocations are not traced: Debugger(trace_allocations=True) "
                           "names the lines that keep memory")
    if tracer.error:
        return [], 0, {}, tracer.error
    if not tracer.code:
        return [], 0, {}, "no node is a Python function whose allocations can be followed"
    retained, runs = tracer.retained()
    if runs < 1:
        return [], 0, {}, (f"{tracer.runs} traced run(s): the allocations kept need at least "
                           f"2 (the first run's end is the reference)")
    return retained, runs, tracer.code, ""
