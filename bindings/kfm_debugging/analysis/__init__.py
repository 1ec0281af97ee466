"""Analysis: pure functions from a run's data to result types (model/).

They read a run only through its RunData (collect/run.py): the engine's
report, trace and samples as data, and the Recorder's tables.  They neither
call the engine nor know LangGraph.  A new report is a function here and a
renderer in render/.
"""

from .common import user_nodes
from .memory import memory_profile, memory_timeline
from .resources import cpu_usage, gpu_usage, network_usage, resource_utilization
from .state import node_state_impact, state_size_analysis, state_size_timeline
from .timing import node_timing, profile_report, run_summary

__all__ = ["cpu_usage", "gpu_usage", "memory_profile", "memory_timeline", "network_usage",
           "node_state_impact", "node_timing", "profile_report", "resource_utilization", "run_summary",
           "state_size_analysis", "state_size_timeline", "user_nodes"]
