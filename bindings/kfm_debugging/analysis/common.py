"""Helpers shared by the analysis functions: which nodes a run has, its
total time, a node's metric summed over its spans."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..model.level import ProfilingLevel
from ..model.names import PARALLEL

if TYPE_CHECKING:  # the run data comes from collect/ (duck-typed here)
    from ..collect.run import RunData

MB = 1024.0 * 1024.0
TASK_CLOCK = "papi.perf::TASK-CLOCK"
GPU_BACKENDS = ("cupti", "nvml", "rocm_smi", "gpu")


def user_nodes(rd: RunData) -> list[str]:
    """The graph's nodes that ran (or were prepared) in the run, in order.
    LangGraph's own tasks ("__start__", and a subgraph's "outer|__start__")
    are its bookkeeping, not nodes."""
    names = [n for n in rd.rec.node_names()
             if n != PARALLEL and not n.rsplit("|", 1)[-1].startswith("__")]
    present = []
    for n in names:
        c, _ = rd.span_ns(n)
        if c or rd.span_ns(n + "/setup")[0]:
            present.append(n)
    return present


def total_ns(rd: RunData) -> float:
    """The run's wall time less the state tracking's own time (ns, >= 1)."""
    return max(float(rd.wall_ns - rd.rec.state_ns), 1.0)


def compute_nested(rd: RunData, name: str) -> bool:
    comp = rd.enode(name + "/compute")
    if comp is None:
        return True
    nested = sum(c for a, b, c in rd.report["edges"]["nested"]
                 if a == name and b == name + "/compute")
    return nested >= comp["count"]


def node_metric_sum(rd: RunData, name: str, metric: str) -> float | None:
    if metric not in rd.metric_names:
        return None
    v = 0.0
    parts = ["", "/setup", "/state_update"]
    if name in rd.rec.async_wall or not compute_nested(rd, name):
        parts.append("/compute")
    for p in parts:
        v += rd.metric(name + p, metric) or 0.0
    return v


def detailed_unavailable(rd: RunData, what: str) -> str | None:
    if rd.level < ProfilingLevel.DETAILED:
        return f"{what} is measured from ProfilingLevel.DETAILED up (this run: {rd.level.name})"
    return None
