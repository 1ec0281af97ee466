"""Memory growth and leaks across runs.

A leak is memory a node keeps run after run, not memory it allocates and
frees: each run's per-node figure (Debugger.history, from STANDARD up) is
the RSS change over the node's spans, what it left resident.  A node leaks
when that change is above zero run after run: a one-sided Wilcoxon signed-
rank test on the per-run values (scipy), and at least MIN_MB a run.  One
large first run (a cache filled once, the allocator's first growth) is not a
leak: the test looks at every run, and the median is what it keeps per run.

Where Python allocations are traced (Debugger(trace_allocations=True),
collect/allocations.py), allocation_sites() credits each allocation still
alive from the first traced run's end to the last one's to the node whose
function its traceback passes through last (the innermost node frame), and
groups it by the line that allocated it and the node's line it came
through.  Leaking nodes get their top sites; every node's figure is kept,
since RSS can miss or misplace what tracemalloc sees (README).
"""

from __future__ import annotations

import math
import statistics
from typing import Any

from ..model.leaks import AllocationSite, LeakInfo, MemoryLeaks, NodeAllocations

MIN_RUNS = 5  # one-sided signed-rank p >= 1/2^n: five runs can reach 0.031
MIN_MB = 0.25  # below this a run's retained memory is page and allocator noise
ALPHA = 0.05
TEST = "one-sided Wilcoxon signed-rank test that the retained MB per run is above 0"
TOP_SITES = 5
MB = float(1 << 20)


def _leak(node: str, values: list[float], alpha: float) -> tuple[LeakInfo, bool]:
    from scipy import stats

    per_run = statistics.median(values)
    if all(v == 0 for v in values):
        p = 1.0
    else:
        p = float(stats.wilcoxon(values, alternative="greater", zero_method="zsplit").pvalue)
        p = p if math.isfinite(p) else 1.0
    info = LeakInfo(node=node, accumulated=sum(values), per_run=per_run, confidence=1.0 - p,
                    p_value=p, runs=len(values), test=TEST, retained=list(values))
    return info, p < alpha and per_run >= MIN_MB


def allocation_sites(retained: list[tuple[tuple[tuple[str, int], ...], int, int]], runs: int,
                     code: dict[str, tuple[str, int, int]],
                     top: int = TOP_SITES) -> dict[str, NodeAllocations]:
    """{node: NodeAllocations} from the allocations retained over `runs`
    runs (each: its traceback's frames oldest first as (file, line), bytes,
    blocks) and each node function's (file, first line, last line).  An
    allocation none of whose frames is in a node's function is left out; a
    function shared by several nodes credits the first of them."""
    by_file: dict[str, list[tuple[int, int, str]]] = {}
    for node, (f, a, b) in code.items():
        by_file.setdefault(f, []).append((a, b, node))
    sites: dict[str, dict[tuple[str, str], list[int]]] = {}
    for frames, size, count in retained:
        hit = None
        for f, line in reversed(frames):  # the innermost node frame
            for a, b, node in by_file.get(f, ()):
                if a <= line <= b:
                    hit = (node, f"{f}:{line}")
                    break
            if hit:
                break
        if hit is None or not frames:
            continue
        alloc = f"{frames[-1][0]}:{frames[-1][1]}"
        acc = sites.setdefault(hit[0], {}).setdefault((alloc, hit[1]), [0, 0])
        acc[0] += size
        acc[1] += count
    out: dict[str, NodeAllocations] = {}
    per = max(runs, 1)
    for node, by_site in sites.items():
        total = sum(v[0] for v in by_site.values())
        ranked = sorted(by_site.items(), key=lambda kv: -kv[1][0])
        out[node] = NodeAllocations(
            node=node, mb=total / MB, per_run_mb=total / MB / per,
            blocks=sum(v[1] for v in by_site.values()), runs=runs,
            sites=[AllocationSite(site=a, via=v, mb=sz / MB, per_run_mb=sz / MB / per, blocks=n)
                   for (a, v), (sz, n) in ranked[:top]])
    return dict(sorted(out.items(), key=lambda kv: -kv[1].mb))


def detect(history: list[dict[str, Any]], alpha: float = ALPHA,
           min_runs: int = MIN_RUNS, alloc: tuple[Any, int, Any, str] | None = None
           ) -> MemoryLeaks:
    """Leaks over the runs of history that have per-node memory figures.
    alloc: (retained, runs, node code, reason) from collect/allocations.py
    evidence(): the nodes' retained Python allocations, and each leaking
    node's top sites; reason says why there are none."""
    allocations, allocations_reason = None, ""
    if alloc is not None:
        retained, truns, code, allocations_reason = alloc
        if not allocations_reason:
            allocations = allocation_sites(retained, truns, code)
    runs = [h for h in history if h.get("nodes") is not None and h.get("error") is None]
    with_mem = [h for h in runs if any("memory_usage" in v for v in h["nodes"].values())]
    if len(with_mem) < min_runs:
        why = (f"{len(with_mem)} run(s) with per-node memory figures; at least {min_runs} are "
               f"needed to tell a leak from noise")
        if history and not with_mem:
            why += " (memory is measured from ProfilingLevel.STANDARD up)"
        return MemoryLeaks(runs=len(with_mem), reason=why, allocations=allocations,
                           allocations_reason=allocations_reason)
    nodes: dict[str, list[float]] = {}
    for h in with_mem:
        for n, v in h["nodes"].items():
            if "memory_usage" in v:
                nodes.setdefault(n, []).append(float(v["memory_usage"]))
    leaks: dict[str, LeakInfo] = {}
    for n, vals in nodes.items():
        if len(vals) < min_runs:
            continue  # a node that ran in a few runs only
        info, leaking = _leak(n, vals, alpha)
        if leaking:
            leaks[n] = info
    proc = None
    growth = [float(h["memory_growth"]) for h in with_mem if h.get("memory_growth") is not None]
    if len(growth) >= min_runs:
        proc, _ = _leak("(whole run)", growth, alpha)
    for n, info in leaks.items():
        if allocations and n in allocations:
            info.allocation_sites = list(allocations[n].sites)
    leaks = dict(sorted(leaks.items(), key=lambda kv: -kv[1].accumulated))
    return MemoryLeaks(leaks, runs=len(with_mem), process=proc, checked=sorted(nodes),
                       allocations=allocations, allocations_reason=allocations_reason)
