"""Analysis: pure functions from a run's data to result types (model/).

They read a run only through its RunData (collect/run.py): the engine's
report, trace and samples as data, and the Recorder's tables.  They neither
call the engine nor know LangGraph.  A new report is a function here and a
renderer in render/.
"""

from .common import user_nodes
from .findings import (
    Evidence,
    as_bottlenecks,
    bottleneck,
    bottlenecks,
    estimate_speedup,
    gather,
    node_analysis,
    node_suggestions,
    slow_nodes,
    slowest_node,
    suggestions_for,
)
from .history import history_figures, run_figures, run_nodes
from .leaks import detect as detect_leaks
from .metrics import evaluate as evaluate_metric
from .metrics import execution_stats, node_stats
from .report import performance_report
from .memory import memory_profile, memory_timeline
from .resources import cpu_usage, gpu_usage, network_usage, resource_utilization
from .state import node_state_impact, state_size_analysis, state_size_timeline
from .steps import critical_path, what_if
from .timing import node_timing, profile_report, run_summary

__all__ = ["Evidence", "as_bottlenecks", "bottleneck", "bottlenecks", "critical_path", "estimate_speedup", "evaluate_metric",
           "execution_stats", "gather", "node_analysis", "node_stats", "node_suggestions", "performance_report", "history_figures", "detect_leaks", "run_figures", "run_nodes",
           "slow_nodes", "slowest_node", "suggestions_for", "what_if", "cpu_usage", "gpu_usage", "memory_profile", "memory_timeline", "network_usage",
           "node_state_impact", "node_timing", "profile_report", "resource_utilization", "run_summary",
           "state_size_analysis", "state_size_timeline", "user_nodes"]
