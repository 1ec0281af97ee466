"""kfm_debugging: per-node profiling of LangGraph graphs on the kfm C engine.

    from kfm_debugging import Debugger, ProfilingLevel
    debugger = Debugger(graph, profiling_level=ProfilingLevel.DETAILED)
    result = debugger.run({"input": "..."})
    debugger.show_profile_report()

Session is the engine binding itself (kfm_debugging._kfm), for code that
marks its own nodes: ``with Session("level=standard") as s: ...``.

The Debugger is a facade over collect/ (runs, the only code that knows
LangGraph), model/ (result types), analysis/ (run data to results) and
render/ (results to text and JSON).
"""

from ._kfm import Session, backends, level_name
from ._kfm import version as engine_version
from .debugger import (
    Debugger,
    LogLevel,
    MemoryProfile,
    NodeMemory,
    NodeResources,
    NodeTiming,
    ProfilingLevel,
    StateImpact,
    state_size,
)

__version__ = "0.1.0"

__all__ = [
    "Debugger",
    "LogLevel",
    "MemoryProfile",
    "NodeMemory",
    "NodeResources",
    "NodeTiming",
    "ProfilingLevel",
    "Session",
    "StateImpact",
    "backends",
    "engine_version",
    "level_name",
    "state_size",
]
