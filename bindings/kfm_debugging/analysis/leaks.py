"""Memory growth and leaks across runs.

A leak is memory a node keeps run after run, not memory it allocates and
frees: each run's per-node figure (Debugger.history, from STANDARD up) is
the RSS change over the node's spans, what it left resident.  A node leaks
when that change is above zero run after run: a one-sided Wilcoxon signed-
rank test on the per-run values (scipy), and at least MIN_MB a run.  One
large first run (a cache filled once, the allocator's first growth) is not a
leak: the test looks at every run, and the median is what it keeps per run.
"""

from __future__ import annotations

import math
import statistics
from typing import Any

from ..model.leaks import LeakInfo, MemoryLeaks

MIN_RUNS = 5  # one-sided signed-rank p >= 1/2^n: five runs can reach 0.031
MIN_MB = 0.25  # below this a run's retained memory is page and allocator noise
ALPHA = 0.05
TEST = "one-sided Wilcoxon signed-rank test that the retained MB per run is above 0"


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


def detect(history: list[dict[str, Any]], alpha: float = ALPHA,
           min_runs: int = MIN_RUNS) -> MemoryLeaks:
    """Leaks over the runs of history that have per-node memory figures."""
    runs = [h for h in history if h.get("nodes") is not None and h.get("error") is None]
    with_mem = [h for h in runs if any("memory_usage" in v for v in h["nodes"].values())]
    if len(with_mem) < min_runs:
        why = (f"{len(with_mem)} run(s) with per-node memory figures; at least {min_runs} are "
               f"needed to tell a leak from noise")
        if history and not with_mem:
            why += " (memory is measured from ProfilingLevel.STANDARD up)"
        return MemoryLeaks(runs=len(with_mem), reason=why)
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
    leaks = dict(sorted(leaks.items(), key=lambda kv: -kv[1].accumulated))
    return MemoryLeaks(leaks, runs=len(with_mem), process=proc, checked=sorted(nodes))
