"""Supersteps, the critical path and what-if estimates.

LangGraph runs a graph as supersteps: the tasks of a step run in parallel,
the step waits for the slowest, then applies their writes.  A run's length is
therefore the sum of its supersteps, each as long as its slowest task plus
the loop's own work, not the sum of its nodes: a 30 ms branch beside a 120 ms
one costs the run nothing.  The steps are rebuilt from the engine's trace:
every top-level write application (a "/state_update" span directly inside
the run's "__graph__" span) ends one, and the tasks that started since the
previous one's end belong to it.
"""

from __future__ import annotations

import bisect
import math
from typing import TYPE_CHECKING, Any

from ..model import CriticalPath, StepTask, Superstep, WhatIf
from ..model.names import GRAPH
from .common import total_ns

if TYPE_CHECKING:
    from ..collect.run import RunData

_UPDATE = "/state_update"
_COMPUTE = "/compute"


def _is_task(name: str | None) -> bool:
    return bool(name) and "/" not in name and not name.startswith("(")  # type: ignore[operator]


def _overlap(spans: list[tuple[float, float]], a: float, b: float) -> float:
    """Time of the sorted, disjoint spans inside [a, b]."""
    tot = 0.0
    i = bisect.bisect_left(spans, (a, -math.inf))
    if i > 0:
        i -= 1
    for s0, s1 in spans[i:]:
        if s0 >= b:
            break
        lo, hi = max(s0, a), min(s1, b)
        if hi > lo:
            tot += hi - lo
    return tot


class _Run:
    """The trace of one run, in engine ns: tasks, compute spans, applies."""

    def __init__(self, rd: RunData) -> None:
        acts = rd.activations()
        off = rd.engine_offset_ns()
        rec = rd.rec
        graph = [a for a in acts if a[0] == GRAPH]
        self.t0 = min(a[2] for a in graph) if graph else off + rd.t0_perf
        asyncs = rec.async_spans
        # task: [node, start, end, thread, compute_ns]
        self.tasks: list[list[Any]] = []
        computes: dict[str, list[tuple[float, float, Any]]] = {}
        self.applies: list[tuple[float, float, str]] = []
        for name, th, t0, t1, _r0, _r1, parent in acts:
            if name is None:
                continue
            if name.endswith(_UPDATE):
                if parent == GRAPH:
                    self.applies.append((t0, t1, name[: -len(_UPDATE)]))
            elif name.endswith(_COMPUTE):
                if name not in asyncs:
                    computes.setdefault(name[: -len(_COMPUTE)], []).append((t0, t1, th))
            elif (_is_task(name) and name != GRAPH and name not in asyncs
                  and parent in (None, GRAPH)):
                self.tasks.append([name, t0, t1, th, 0.0])
        for key, flat in asyncs.items():
            spans = [(flat[i] + off, flat[i + 1] + off, None) for i in range(0, len(flat), 2)]
            if key.endswith(_COMPUTE):
                computes.setdefault(key[: -len(_COMPUTE)], []).extend(spans)
            elif _is_task(key):
                self.tasks.extend([key, a, b, None, 0.0] for a, b, _ in spans)
        self.applies.sort()
        self.tasks.sort(key=lambda t: t[1])
        # Each compute span to the innermost task of its node that holds it
        # (same thread when the trace says).
        by_node: dict[str, list[list[Any]]] = {}
        self.longest: dict[str, float] = {}
        for t in self.tasks:
            by_node.setdefault(t[0], []).append(t)
            if t[2] - t[1] > self.longest.get(t[0], 0.0):
                self.longest[t[0]] = t[2] - t[1]
        self.nested: dict[str, list[tuple[float, float]]] = {}
        for node, spans in computes.items():
            own = by_node.get(node) or []
            starts = [t[1] for t in own]  # sorted: tasks are
            for c0, c1, th in spans:
                # The latest-starting task that holds it: walk back from the
                # last task started by c0 (concurrent tasks of one node are
                # few, so this stays linear over a long loop's calls).
                best = None
                i = bisect.bisect_right(starts, c0) - 1
                while i >= 0:
                    t = own[i]
                    if c1 <= t[2] and (th is None or t[3] is None or t[3] == th):
                        best = t
                        break
                    if c0 - t[1] > self.longest.get(node, 0.0):
                        break  # no earlier task of it lasts long enough
                    i -= 1
                if best is not None:
                    best[4] += c1 - c0
                elif "|" in node:  # a subgraph's node: inside its ancestor's task
                    self.nested.setdefault(node, []).append((c0, c1))
        st = rec.state_spans
        self.state = sorted((st[i] + off, st[i + 1] + off) for i in range(0, len(st), 2))
        self.end = self.t0 + rd.wall_ns


def _run_of(rd: RunData) -> _Run:
    """The run's trace as _Run, built once per run (the critical path and
    every what-if read it)."""
    run = rd.memo.get("steps")
    if run is None:
        run = rd.memo["steps"] = _Run(rd)
    return run


def _steps(run: _Run) -> tuple[list[Superstep], list[list[list[Any]]]]:
    """The supersteps with user tasks, and each one's raw tasks."""
    out: list[Superstep] = []
    raw: list[list[list[Any]]] = []
    tasks = run.tasks
    ti = 0
    w0 = run.t0
    ms = 1e6
    windows = [(a0, a1) for a0, a1, _n in run.applies]
    if tasks and (not windows or tasks[-1][1] > windows[-1][0]):
        # Tasks after the last write application: the run ended in them (an
        # error, an interrupt): a last step without writes.
        last_end = max(t[2] for t in tasks)
        windows.append((last_end, last_end))
    for a0, a1 in windows:
        mine = []
        while ti < len(tasks) and tasks[ti][1] <= a0:
            mine.append(tasks[ti])
            ti += 1
        users = [t for t in mine if not t[0].startswith("__")]
        if users:
            first = min(t[1] for t in mine)
            last = max(t[2] for t in mine)
            crit = max(mine, key=lambda t: t[2])
            dur = (a1 - w0) - _overlap(run.state, w0, a1)
            prep = (first - w0) - _overlap(run.state, w0, first)
            step = Superstep(
                index=len(out), start_ms=(w0 - run.t0) / ms, end_ms=(a1 - run.t0) / ms,
                duration_ms=max(dur, 0.0) / ms,
                nodes=list(dict.fromkeys(t[0] for t in users)),
                tasks=[StepTask(node=t[0], start_ms=(t[1] - run.t0) / ms,
                                end_ms=(t[2] - run.t0) / ms, compute_ms=t[4] / ms,
                                critical=t is crit) for t in users],
                critical=crit[0],
                prepare_ms=max(prep, 0.0) / ms, tasks_ms=(last - first) / ms,
                wait_ms=max(a0 - last, 0.0) / ms, apply_ms=(a1 - a0) / ms,
            )
            out.append(step)
            raw.append(users)
        w0 = a1
    return out, raw


def critical_path(rd: RunData, node_totals: dict[str, float]) -> CriticalPath:
    """The run's supersteps and each node's time on its critical path.

    node_totals: each node's total ms (node_timing's total_ms), of which the
    task time in supersteps that did not wait for the node is taken off."""
    summ = rd.report["summary"]
    dropped = summ.get("events_dropped", 0)
    total = total_ns(rd) / 1e6
    if dropped:
        return CriticalPath(available=False, reason=(
            f"the engine's trace dropped {dropped} events, so supersteps cannot be rebuilt "
            f"(this run kept {summ.get('events', 0)}); give it more room with "
            f"Debugger(..., engine_config='trace_ring=N,trace_events=M'): trace_ring is each "
            f"thread's buffer (at BASIC, without a sampler to drain it, it holds the whole "
            f"run), trace_events the session's"), total_ms=total)
    run = _run_of(rd)
    if not run.applies:
        return CriticalPath(available=False, reason="the run applied no writes: no superstep "
                            "was measured", total_ms=total)
    steps, raw = _steps(run)
    off_path: dict[str, float] = {}
    slack: dict[str, float] = {}
    for st, users in zip(steps, raw):
        end = max(t[2] for t in users)
        for t in users:
            if t[0] != st.critical or t[2] < end:
                off_path[t[0]] = off_path.get(t[0], 0.0) + (t[2] - t[1]) / 1e6
                slack[t[0]] = slack.get(t[0], 0.0) + (end - t[2]) / 1e6
    crit: dict[str, float] = {}
    for name, tot in node_totals.items():
        if "|" in name:
            continue
        crit[name] = min(max(tot - off_path.get(name, 0.0), 0.0), total)
        slack.setdefault(name, 0.0)
    # A subgraph's node is on the path as far as its ancestor is: its time
    # scaled by the share of the ancestor's own that is.
    for name, tot in node_totals.items():
        if "|" in name:
            top = name.split("|", 1)[0]
            ttot = node_totals.get(top, 0.0)
            frac = crit.get(top, 0.0) / ttot if ttot > 0 else 0.0
            crit[name] = min(tot * min(frac, 1.0), total)
            slack.setdefault(name, slack.get(top, 0.0))
    steps_ms = sum(s.duration_ms for s in steps)
    return CriticalPath(
        available=True, reason="", total_ms=total, steps_ms=steps_ms,
        outside_ms=max(total - steps_ms, 0.0), steps=steps, critical_ms=crit, slack_ms=slack,
        parallel_steps=sum(1 for s in steps if len(s.tasks) > 1),
    )


def what_if(rd: RunData, node: str, factor: float) -> WhatIf:
    """The run's length had node's Computation (its own function) been factor
    times faster, every other span as measured: each superstep it ran in
    ends when its slowest task, replayed, ends.  factor=math.inf: a node that
    costs nothing.  A subgraph's node shortens its ancestor's task by what
    its Computation loses (assumed sequential inside the subgraph)."""
    if (isinstance(factor, bool) or not isinstance(factor, (int, float))
            or not factor > 0):
        raise ValueError(f"factor must be > 0 (how many times faster), not {factor!r}")
    total = total_ns(rd) / 1e6
    run = _run_of(rd)
    steps, raw = _steps(run)
    keep = 0.0 if math.isinf(factor) else 1.0 / factor
    saved = 0.0
    n_steps = 0
    top = node.split("|", 1)[0]
    nested = run.nested.get(node, []) if "|" in node else []
    note = ""
    if "|" in node:
        note = (f"'{node}' runs inside '{top}': its Computation is taken as sequential "
                f"within that task")
    for users in raw:
        mine = [t for t in users if t[0] == (top if nested else node)]
        if not mine:
            continue
        n_steps += 1
        end = max(t[2] for t in users)
        new_end = -math.inf
        for t in users:
            e = t[2]
            if t in mine:
                if nested:
                    cut = sum(c1 - c0 for c0, c1 in nested if t[1] <= c0 and c1 <= t[2])
                else:
                    cut = t[4]
                e = t[2] - cut * (1.0 - keep)
            new_end = max(new_end, e)
        saved += max(end - new_end, 0.0) / 1e6
    return WhatIf(node=node, factor=factor, measured_ms=total, estimated_ms=max(total - saved, 0.0),
                  saved_ms=saved, steps=n_steps, note=note)


def sequential_pairs(cp: CriticalPath) -> list[tuple[Superstep, Superstep]]:
    """Consecutive supersteps of one task each (candidates to run together)."""
    out = []
    for a, b in zip(cp.steps, cp.steps[1:]):
        if len(a.tasks) == 1 and len(b.tasks) == 1 and a.nodes[0] != b.nodes[0]:
            out.append((a, b))
    return out
