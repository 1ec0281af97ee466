"""The README's example: a LangGraph graph like the user guide's
(input_parser -> calculator -> responder, plus a parallel branch and a
memory-heavy node) profiled at COMPREHENSIVE, printing every report.

    python -m kfm_debugging.demo [--level LEVEL] [--export timing_data.json]
"""

from __future__ import annotations

import argparse
import math
import operator
import os
import time
from typing import Annotated, Any, TypedDict

from langgraph.graph import END, START, StateGraph

from kfm_debugging import Debugger, ProfilingLevel


class State(TypedDict, total=False):
    input: str
    numbers: list
    result: float
    context: Annotated[list, operator.add]
    summary: str
    response: str


_CACHE: list[Any] = []  # what the memory-heavy node keeps, as a cache would


def input_parser(state: State) -> dict:
    words = state["input"].split()
    return {"numbers": [float(len(w)) for w in words]}


def calculator(state: State) -> dict:
    # CPU-bound: a numeric series per input number.
    total = 0.0
    for x in state["numbers"]:
        for k in range(1, 60_000):
            total += math.sin(x * k) / k
    return {"result": total}


def retriever(state: State) -> dict:
    # The parallel branch: waits on a (simulated) remote store.
    time.sleep(0.04)
    return {"context": [f"doc-{i}" for i in range(20)]}


def embedder(state: State) -> dict:
    # Memory-heavy: builds and keeps a 40 MiB table.
    _CACHE.append(bytearray(b"\1") * (40 * 1024 * 1024))
    return {"context": ["embedding-table"]}


def responder(state: State) -> dict:
    return {"response": f"result={state['result']:.4f} with {len(state['context'])} context items"}


def build() -> StateGraph:
    g = StateGraph(State)
    for name, fn in [("input_parser", input_parser), ("calculator", calculator),
                     ("retriever", retriever), ("embedder", embedder), ("responder", responder)]:
        g.add_node(name, fn)
    g.add_edge(START, "input_parser")
    g.add_edge("input_parser", "calculator")
    g.add_edge("input_parser", "retriever")  # runs in parallel with calculator
    g.add_edge("retriever", "embedder")
    g.add_edge(["calculator", "embedder"], "responder")
    g.add_edge("responder", END)
    return g


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m kfm_debugging.demo", description=__doc__.split("\n\n")[0])
    ap.add_argument("--level", default="COMPREHENSIVE",
                    help="BASIC, STANDARD, DETAILED or COMPREHENSIVE (default)")
    ap.add_argument("--export", metavar="PATH", help="also write the timing data as JSON")
    ap.add_argument("--report", metavar="PATH", default="kfm_report.html",
                    help="the HTML report (default kfm_report.html; '' for none)")
    ap.add_argument("--summary", metavar="PATH", default="kfm_summary.md",
                    help="the Markdown summary (default kfm_summary.md; '' for none)")
    ap.add_argument("--trace", metavar="PATH", default="kfm_trace.json",
                    help="the Perfetto / chrome://tracing trace (default kfm_trace.json; '' "
                         "for none)")
    args = ap.parse_args(argv)

    graph = build().compile()
    debugger = Debugger(graph, profiling_level=ProfilingLevel.parse(args.level))
    result = debugger.run({"input": "How much is the sum of these lengths today"})
    print(f"Result: {result['response']}\n")
    debugger.show_profile_report()
    print()
    debugger.show_node_timing(detailed=True)
    print()
    for show in (debugger.show_memory_profile, debugger.show_node_memory_usage,
                 debugger.show_memory_timeline, debugger.show_resource_utilization,
                 debugger.show_cpu_usage, debugger.show_gpu_usage, debugger.show_network_usage,
                 debugger.show_state_size_analysis, debugger.show_state_size_timeline,
                 debugger.show_node_state_impact, debugger.analyze_bottlenecks):
        show()
        print()
    if args.export:
        print(f"Timing data written to {debugger.export_timing_data(output_file=args.export)}")
    if args.report:
        path = os.path.abspath(debugger.generate_performance_report(output_file=args.report))
        print(f"HTML report written to {path}")
    if args.summary:
        path = os.path.abspath(debugger.generate_performance_summary(output_file=args.summary))
        print(f"Markdown summary written to {path}")
    if args.trace:
        path = os.path.abspath(debugger.export_trace(output_file=args.trace))
        print(f"Trace written to {path} (open it in https://ui.perfetto.dev or chrome://tracing)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
