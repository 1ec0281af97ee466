#!/usr/bin/env python3
"""bench_python.py - what kfm_debugging.Debugger adds per LangGraph node, at
each profiling level, next to cProfile and pyinstrument on the same graphs in
the same run.

Output: one JSON object per line on stdout, like bench/run's C benchmarks:
{"name", "value", "unit"} plus "peer"/"ratio" where they apply, "value":null
with "unavailable" when a peer is not installed; progress goes to stderr.

Graphs: "chain20", 20 no-op nodes in a line (pure per-node overhead), and
"realistic", the shape of the user guide's example (input_parser ->
calculator || retriever -> responder, 5 nodes) with a little real work in
each node (parsing, arithmetic, JSON).  Cases: no profiling, the Debugger at
BASIC, STANDARD, DETAILED, COMPREHENSIVE, cProfile, pyinstrument (default
1 ms interval).  Each repetition runs every case once, in rotating order, and
the median over repetitions is reported.

Per-node cost = (median wall of one graph run under the case - median wall
without profiling) / nodes run.  The wall is the graph's execution alone,
for every case: the profilers are started before and stopped after the
timed region (for the Debugger, its session start/stop and report building
are reported separately as "python.debugger_run_fixed.<level>", the fixed
cost of one profiled run).  "peer" on a Debugger line is pyinstrument's
per-node cost and "ratio" the Debugger's divided by it (< 1: cheaper).

State tracking (on by default at DETAILED and COMPREHENSIVE) is measured
separately: "python.debugger_per_node.<graph>.comprehensive_no_state" runs
COMPREHENSIVE with state_tracking=False, and
"python.debugger_state_tracking_per_node.<graph>" is the time the
COMPREHENSIVE runs spent measuring state sizes (Recorder.state_ns), per node.

Environment: BENCH_PY_REPS (default 41).
"""

from __future__ import annotations

import cProfile
import gc
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

REPS = int(os.environ.get("BENCH_PY_REPS", "41"))


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


STATE_NS: list[int] = []  # state-size measuring time of each COMPREHENSIVE run
_LAST_COMPREHENSIVE: list[Any] = []


def make_cases(graph: Any, inp: dict) -> dict[str, Callable[[], tuple[int, int]]]:
    """Each case runs the graph once: (graph wall ns, whole-run wall ns)."""
    cases: dict[str, Callable[[], tuple[int, int]]] = {}

    def none() -> tuple[int, int]:
        t0 = time.perf_counter_ns()
        graph.invoke(inp)
        t = time.perf_counter_ns() - t0
        return t, t

    cases["none"] = none
    for lv in ProfilingLevel:
        d = Debugger(graph, profiling_level=lv)
        if lv == ProfilingLevel.COMPREHENSIVE:
            _LAST_COMPREHENSIVE[:] = [d]

        def dbg(d: Debugger = d) -> tuple[int, int]:
            t0 = time.perf_counter_ns()
            d.run(inp)
            whole = time.perf_counter_ns() - t0
            return d._last.wall_ns, whole  # graph execution inside the session

        cases[lv.name.lower()] = dbg

    d_ns = Debugger(graph, profiling_level=ProfilingLevel.COMPREHENSIVE, state_tracking=False)

    def dbg_ns(d: Debugger = d_ns) -> tuple[int, int]:
        t0 = time.perf_counter_ns()
        d.run(inp)
        return d._last.wall_ns, time.perf_counter_ns() - t0

    cases["comprehensive_no_state"] = dbg_ns
    STATE_NS.clear()
    d_c = next(v for k, v in cases.items() if k == "comprehensive")

    def dbg_c(f: Callable[[], tuple[int, int]] = d_c) -> tuple[int, int]:
        r = f()
        STATE_NS.append(_LAST_COMPREHENSIVE[0]._last.rec.state_ns)
        return r

    cases["comprehensive"] = dbg_c

    def cprof() -> tuple[int, int]:
        p = cProfile.Profile()
        t0 = time.perf_counter_ns()
        p.enable()
        t1 = time.perf_counter_ns()
        graph.invoke(inp)
        t2 = time.perf_counter_ns()
        p.disable()
        return t2 - t1, time.perf_counter_ns() - t0

    cases["cprofile"] = cprof
    try:
        import pyinstrument

        def pyinst() -> tuple[int, int]:
            p = pyinstrument.Profiler()
            t0 = time.perf_counter_ns()
            p.start()
            t1 = time.perf_counter_ns()
            graph.invoke(inp)
            t2 = time.perf_counter_ns()
            p.stop()
            return t2 - t1, time.perf_counter_ns() - t0

        cases["pyinstrument"] = pyinst
    except ImportError:
        pass
    return cases


def measure(label: str, build: Callable[[], tuple[Any, dict, int]]) -> None:
    graph, inp, nodes = build()
    cases = make_cases(graph, inp)
    names = list(cases)
    for n in names:  # warm up: imports, hook installation, first-use costs
        for _ in range(3):
            cases[n]()
    walls: dict[str, list[int]] = {n: [] for n in names}
    wholes: dict[str, list[int]] = {n: [] for n in names}
    progress(f"{label}: {REPS} repetitions of {', '.join(names)}")
    gc_was = gc.isenabled()
    for r in range(REPS):
        order = names[r % len(names):] + names[: r % len(names)]
        for n in order:
            gc.collect()
            gc.disable()
            w, whole = cases[n]()
            if gc_was:
                gc.enable()
            walls[n].append(w)
            wholes[n].append(whole)
    med = {n: statistics.median(v) for n, v in walls.items()}
    base = med["none"]
    per_node = {n: (med[n] - base) / nodes / 1e3 for n in names}
    emit(f"python.graph_per_node.{label}", base / nodes / 1e3, "us")
    peer = per_node.get("pyinstrument")
    if "pyinstrument" in per_node:
        emit(f"python.pyinstrument_per_node.{label}", peer, "us")
    else:
        emit(f"python.pyinstrument_per_node.{label}", None, "us",
             unavailable="pyinstrument is not installed (pip install pyinstrument)")
    emit(f"python.cprofile_per_node.{label}", per_node["cprofile"], "us")
    for lv in ProfilingLevel:
        n = lv.name.lower()
        extra: dict[str, Any] = {}
        if peer is not None:
            extra = {"peer": peer, "ratio": per_node[n] / peer if peer > 0 else None}
        emit(f"python.debugger_per_node.{label}.{n}", per_node[n], "us", **extra)
        if label == "chain20":
            fixed = statistics.median(wholes[n]) - med[n]
            emit(f"python.debugger_run_fixed.{n}", fixed / 1e3, "us")
    emit(f"python.debugger_per_node.{label}.comprehensive_no_state",
         per_node["comprehensive_no_state"], "us")
    emit(f"python.debugger_state_tracking_per_node.{label}",
         statistics.median(STATE_NS) / nodes / 1e3 if STATE_NS else None, "us")


def main() -> int:
    measure("chain20", chain20)
    measure("realistic", realistic)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
