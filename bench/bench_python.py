#!/usr/bin/env python3
"""bench_python.py - what kfm_debugging.Debugger adds per LangGraph node, at
each profiling level, next to cProfile and pyinstrument on the same graphs in
the same run.

Output: one JSON object per line on stdout, like bench/run's C benchmarks:
{"name", "value", "unit"} plus "peer"/"ratio" where they apply, "value":null
with "unavailable" when a peer is not installed; progress goes to stderr.

Graphs: "chain20", 20 no-op nodes in a line (pure per-node overhead), and
"realistic", the shape of the user guide's example (input_parser ->
calculator || retriever -> ranker -> responder, 5 nodes, one parallel
superstep) with a little real work in each node (parsing, arithmetic, JSON).

What is timed is what a user waits for: the whole profiled call
(Debugger.run: session restart, the graph, stop; cProfile enable, invoke,
disable; pyinstrument start, invoke, stop) against graph.invoke alone.
Reports are built lazily, when read, and are not part of a run.

Method: this VM's speed drifts by 10-30% over seconds, more than the
quantity measured, so cases are paired: each repetition runs every case once
(single runs, rotating order) and a case's cost is the median over
repetitions of (its wall - the unprofiled wall of the same repetition) /
nodes.  "q25"/"q75" give the spread of those paired differences.  The
garbage collector is left as users have it (enabled).  "peer" on a Debugger
line is pyinstrument's per-node cost and "ratio" the Debugger's divided by
it (< 1: cheaper).

Also reported: "python.debugger_run_fixed.<graph>.<level>" (us per run: the
profiled call minus the graph's own time inside it: session restart, stop
and bookkeeping), "python.debugger_per_node_in_run.<graph>.<level>" (the
per-node cost without that fixed part: the graph's time inside the profiled
run against the unprofiled run, paired the same way) and
"python.debugger_per_node.<graph>.comprehensive_no_state" (COMPREHENSIVE
with state_tracking=False, same Debugger).  Every level runs with
LangGraph's own thread pools, as the unprofiled graph does;
"...comprehensive_pools" is COMPREHENSIVE's default (reuse_threads: pools
that outlive a run) and "python.pool_saving_per_node.<graph>" what those
save, apart from kfm's cost.  Also "python.state_tracking_*"
(state tracking per superstep with a 1,000,000-item list no node changes
against a small state: state_size_case).

Environment: BENCH_PY_REPS (default 400).
"""

from __future__ import annotations

import cProfile
import json
import math
import operator
import os
import statistics
import sys
import time
from typing import Annotated, Any, Callable, TypedDict

try:
    from langgraph.graph import END, START, StateGraph
    from kfm_debugging import Debugger, ProfilingLevel
except ImportError as e:  # pragma: no cover
    print(json.dumps({"name": "python.bench", "value": None, "unit": "",
                      "error": f"cannot import: {e}"}))
    sys.exit(1)

REPS = int(os.environ.get("BENCH_PY_REPS", "400"))


def progress(msg: str) -> None:
    print(f"bench_python: {msg}", file=sys.stderr, flush=True)


def emit(name: str, value: float | None, unit: str, **extra: Any) -> None:
    d: dict[str, Any] = {"name": name,
                         "value": None if value is None or not math.isfinite(value) else round(value, 4),
                         "unit": unit}
    for k, v in extra.items():
        d[k] = round(v, 4) if isinstance(v, float) and math.isfinite(v) else v
    print(json.dumps(d), flush=True)


def chain20() -> tuple[Any, dict, int]:
    class S(TypedDict, total=False):
        x: int

    b = StateGraph(S)
    prev = START
    for i in range(20):
        b.add_node(f"n{i}", lambda s: {})
        b.add_edge(prev, f"n{i}")
        prev = f"n{i}"
    b.add_edge(prev, END)
    return b.compile(), {"x": 1}, 20


def realistic() -> tuple[Any, dict, int]:
    class S(TypedDict, total=False):  # noqa: F811 - one schema per graph
        input: str
        numbers: list
        result: float
        context: Annotated[list, operator.add]
        response: str

    def input_parser(s: dict) -> dict:
        return {"numbers": [float(len(w)) for w in s["input"].split()]}

    def calculator(s: dict) -> dict:
        return {"result": sum(math.sin(x * k) / k for x in s["numbers"] for k in range(1, 40))}

    def retriever(s: dict) -> dict:
        docs = [{"id": i, "text": f"document {i} about {s['input'][:10]}"} for i in range(20)]
        return {"context": [json.dumps(d) for d in docs]}

    def ranker(s: dict) -> dict:
        return {"context": sorted(s["context"], key=len)[:3]}

    def responder(s: dict) -> dict:
        return {"response": json.dumps({"r": s["result"], "n": len(s["context"])})}

    b = StateGraph(S)
    for n, f in [("input_parser", input_parser), ("calculator", calculator),
                 ("retriever", retriever), ("ranker", ranker), ("responder", responder)]:
        b.add_node(n, f)
    b.add_edge(START, "input_parser")
    b.add_edge("input_parser", "calculator")
    b.add_edge("input_parser", "retriever")
    b.add_edge("retriever", "ranker")
    b.add_edge(["calculator", "ranker"], "responder")
    b.add_edge("responder", END)
    return b.compile(), {"input": "what is the sum of the lengths of these words"}, 5


def make_cases(graph: Any, inp: dict) -> tuple[dict[str, Callable[[], int]], dict[str, Any]]:
    """Each case runs the graph once and returns its wall ns; plus the
    Debuggers by case name (their last run's inner graph time)."""
    P = time.perf_counter_ns
    cases: dict[str, Callable[[], int]] = {}
    dbgs: dict[str, Any] = {}

    def none() -> int:
        t0 = P()
        graph.invoke(inp)
        return P() - t0

    cases["none"] = none

    def profiled(d: Any, state_tracking: bool | None) -> Callable[[], int]:
        def case() -> int:
            d.state_tracking = state_tracking  # None: the level's default
            t0 = P()
            d.run(inp)
            return P() - t0

        return case

    # Like for like: the unprofiled graph makes LangGraph's pool per invoke,
    # so every level runs with LangGraph's own pools (reuse_threads=False).
    # COMPREHENSIVE's default lends long-lived pools instead, which saves
    # LangGraph's thread starts: that is "comprehensive_pools", and the
    # saving is reported on its own line, never netted into kfm's cost.
    for lv in ProfilingLevel:
        d = dbgs[lv.name.lower()] = Debugger(graph, profiling_level=lv, reuse_threads=False)
        cases[lv.name.lower()] = profiled(d, None)
    d = dbgs["comprehensive_pools"] = Debugger(graph, profiling_level=ProfilingLevel.COMPREHENSIVE)
    cases["comprehensive_pools"] = profiled(d, None)
    # The same Debugger (one session: a second session on a thread would be
    # a different case) with state tracking off.
    d = dbgs["comprehensive_no_state"] = dbgs["comprehensive"]
    cases["comprehensive_no_state"] = profiled(d, False)

    def cprof() -> int:
        t0 = P()
        p = cProfile.Profile()
        p.enable()
        graph.invoke(inp)
        p.disable()
        return P() - t0

    cases["cprofile"] = cprof
    try:
        import pyinstrument

        def pyinst() -> int:
            t0 = P()
            p = pyinstrument.Profiler()
            p.start()
            graph.invoke(inp)
            p.stop()
            return P() - t0

        cases["pyinstrument"] = pyinst
    except ImportError:
        pass
    return cases, dbgs


def measure(label: str, build: Callable[[], tuple[Any, dict, int]]) -> None:
    graph, inp, nodes = build()
    cases, dbgs = make_cases(graph, inp)
    names = list(cases)
    for n in names:  # warm up: imports, hook installation, first-use costs
        for _ in range(5):
            cases[n]()
    walls: dict[str, list[int]] = {n: [] for n in names}
    fixed: dict[str, list[int]] = {n: [] for n in dbgs}
    progress(f"{label}: {REPS} repetitions of {', '.join(names)}")
    for r in range(REPS):
        order = names[r % len(names):] + names[: r % len(names)]
        for n in order:
            w = cases[n]()
            walls[n].append(w)
            if n in dbgs:
                fixed[n].append(w - dbgs[n]._last.wall_ns)
    base = walls["none"]
    per_node: dict[str, tuple[float, float, float]] = {}
    for n in names[1:]:
        diffs = sorted((w - b0) / nodes / 1e3 for w, b0 in zip(walls[n], base))
        q = statistics.quantiles(diffs, n=4)
        per_node[n] = (statistics.median(diffs), q[0], q[2])
    # The same without the run's fixed part (restart, stop, bookkeeping):
    # the graph's time inside the profiled run against the unprofiled run.
    in_run: dict[str, float] = {}
    for n in dbgs:
        inner = [w - f for w, f in zip(walls[n], fixed[n])]
        in_run[n] = statistics.median((i - b0) / nodes / 1e3 for i, b0 in zip(inner, base))
    emit(f"python.graph_per_node.{label}", statistics.median(base) / nodes / 1e3, "us")
    pi = per_node.get("pyinstrument")
    peer = pi[0] if pi else None
    if pi:
        emit(f"python.pyinstrument_per_node.{label}", pi[0], "us", q25=pi[1], q75=pi[2])
    else:
        emit(f"python.pyinstrument_per_node.{label}", None, "us",
             unavailable="pyinstrument is not installed (pip install pyinstrument)")
    c = per_node["cprofile"]
    emit(f"python.cprofile_per_node.{label}", c[0], "us", q25=c[1], q75=c[2])
    for n in dbgs:
        v, q25, q75 = per_node[n]
        extra: dict[str, Any] = {"q25": q25, "q75": q75}
        if peer is not None and n not in ("comprehensive_no_state", "comprehensive_pools"):
            extra.update(peer=peer, ratio=v / peer if peer > 0 else None)
        emit(f"python.debugger_per_node.{label}.{n}", v, "us", **extra)
    # What the lent pools save, paired like the rest (COMPREHENSIVE with
    # LangGraph's pools minus COMPREHENSIVE with the Debugger's).
    saving = sorted((a - b) / nodes / 1e3
                    for a, b in zip(walls["comprehensive"], walls["comprehensive_pools"]))
    emit(f"python.pool_saving_per_node.{label}", statistics.median(saving), "us",
         note="reuse_threads: LangGraph's thread starts saved, not part of kfm's cost")
    for n in dbgs:
        emit(f"python.debugger_per_node_in_run.{label}.{n}", in_run[n], "us")
        emit(f"python.debugger_run_fixed.{label}.{n}", statistics.median(fixed[n]) / 1e3, "us")


def state_size_case() -> None:
    """State tracking's cost per superstep with a 1,000,000-item list in the
    state that no node changes, against a 3-item one: the same chain of 20
    no-op nodes at STANDARD.  Each superstep's sizing is timed by the
    recorder (Recorder.state_spans); the list's one walk when it arrives
    (the input's superstep) is reported on its own line."""
    class S(TypedDict, total=False):
        x: int
        big: list

    b = StateGraph(S)
    prev = START
    for i in range(20):
        b.add_node(f"n{i}", lambda s: {"x": s.get("x", 0) + 1})
        b.add_edge(prev, f"n{i}")
        prev = f"n{i}"
    b.add_edge(prev, END)
    graph = b.compile()
    per_step: dict[str, float] = {}
    for label, big in (("small", [1, 2, 3]), ("list_1m", list(range(1_000_000)))):
        d = Debugger(graph, profiling_level=ProfilingLevel.STANDARD, state_tracking=True)
        first: list[float] = []
        later: list[float] = []
        for _ in range(max(REPS // 40, 5)):
            d.run({"x": 0, "big": big})
            sp = d._last.rec.state_spans
            durs = [(sp[i + 1] - sp[i]) / 1e3 for i in range(0, len(sp), 2)]
            first.append(max(durs[:2]))  # the input's arrival
            later.extend(durs[2:])
        per_step[label] = statistics.median(later)
        emit(f"python.state_tracking_per_step.{label}", per_step[label], "us")
        emit(f"python.state_tracking_input.{label}", statistics.median(first), "us")
    emit("python.state_tracking_per_step.list_1m_vs_small",
         per_step["list_1m"] / per_step["small"], "ratio")


def chain(n: int) -> Any:
    class S(TypedDict, total=False):
        x: int

    b = StateGraph(S)
    prev = START
    for i in range(n):
        b.add_node(f"n{i}", lambda s: {})
        b.add_edge(prev, f"n{i}")
        prev = f"n{i}"
    b.add_edge(prev, END)
    return b.compile()


def size_series() -> None:
    """BASIC and COMPREHENSIVE per node on chains of 20, 100, 300 and 1,000
    no-op nodes, paired against the unprofiled chain as in measure(): the
    cost per node must not grow with the graph."""
    P = time.perf_counter_ns
    for n in (20, 100, 300, 1000):
        graph = chain(n)
        inp = {"x": 1}
        dbgs = {lv: Debugger(graph, profiling_level=lv, reuse_threads=False)
                for lv in (ProfilingLevel.BASIC, ProfilingLevel.COMPREHENSIVE)}

        def none() -> int:
            t0 = P()
            graph.invoke(inp)
            return P() - t0

        def prof(d: Any) -> Callable[[], int]:
            def case() -> int:
                t0 = P()
                d.run(inp)
                return P() - t0
            return case

        cases = {"none": none, **{lv.name.lower(): prof(d) for lv, d in dbgs.items()}}
        for c in cases.values():
            for _ in range(3):
                c()
        reps = max(REPS * 20 // n, 15)
        progress(f"chain{n}: {reps} repetitions")
        walls: dict[str, list[int]] = {k: [] for k in cases}
        names = list(cases)
        for r in range(reps):
            for k in names[r % len(names):] + names[: r % len(names)]:
                walls[k].append(cases[k]())
        for k in names[1:]:
            diffs = sorted((w - b0) / n / 1e3 for w, b0 in zip(walls[k], walls["none"]))
            q = statistics.quantiles(diffs, n=4)
            emit(f"python.debugger_per_node.chain{n}.{k}", statistics.median(diffs), "us",
                 q25=q[0], q75=q[2])


def main() -> int:
    measure("chain20", chain20)
    measure("realistic", realistic)
    state_size_case()
    size_series()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
