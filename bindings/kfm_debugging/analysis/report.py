"""The report of a run: every section at once (model/report.py)."""

from __future__ import annotations

import datetime
from collections.abc import Callable
from typing import Any

from ..model import Unavailable
from ..model.report import PerformanceReport
from .findings import Evidence, bottlenecks, suggestions_for
from .memory import memory_timeline
from .metrics import evaluate
from .resources import gpu_usage, network_usage, resource_utilization
from .state import node_state_impact, state_size_analysis, state_size_timeline
from .timing import profile_report


def performance_report(ev: Evidence, title: str, environment: dict[str, Any],
                       metrics: dict[str, Callable[..., Any]], runs: int = 1,
                       threshold_percent: float = 10.0) -> PerformanceReport:
    rd = ev.rd
    net = network_usage(rd)
    gpu = gpu_usage(rd)
    b = bottlenecks(ev, threshold_percent)
    try:
        impact, why = node_state_impact(rd), ""
    except Unavailable as e:
        impact, why = None, e.reason
    return PerformanceReport(
        title=title,
        generated=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        profile=profile_report(rd, ev.timing, ev.mem), timing=ev.timing, memory=ev.mem,
        memory_timeline=memory_timeline(rd, 60), cpu=ev.cpu, network=net, gpu=gpu,
        resources=resource_utilization(rd, ev.mem, ev.cpu, net, gpu),
        state=state_size_analysis(rd), state_timeline=state_size_timeline(rd),
        critical=ev.cp, bottlenecks=b, suggestions=suggestions_for(ev, list(b)),
        state_impact=impact, state_impact_reason=why,
        metrics={n: evaluate(ev, n, fn) for n, fn in metrics.items()},
        environment=environment, runs=runs)
