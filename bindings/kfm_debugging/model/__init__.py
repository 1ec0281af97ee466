"""Plain result types of a profiled run (dataclasses, no engine, no LangGraph).

Every type reads as attributes and as a mapping (``r.calls``, ``r["calls"]``)
and goes to JSON and back (``to_dict()`` / ``from_dict()``).  A section that
was not measured says so in one way: ``available`` False and ``reason``
(``Section``); where a call has no section to carry it, it raises
``Unavailable`` (a RuntimeError) with that reason.
"""

from .analysis import (
    ANALYSIS_TYPES,
    Bottleneck,
    CriticalPath,
    Finding,
    MetricResult,
    NodeAnalysis,
    NodeSuggestions,
    StepTask,
    Suggestion,
    Superstep,
    WhatIf,
)
from .base import Record, Section, Unavailable
from .level import LEVEL_NAMES, LogLevel, ProfilingLevel
from .results import (
    CpuUsage,
    GpuUsage,
    MemoryProfile,
    MemoryTimeline,
    NetworkUsage,
    NodeMemory,
    NodeResources,
    NodeTiming,
    ProfileReport,
    ResourceUtilization,
    RunSummary,
    SamplerStats,
    StateImpact,
    StateSizeAnalysis,
    StateSizeTimeline,
)
from .results import RESULT_TYPES as _RUN_TYPES

RESULT_TYPES = _RUN_TYPES + ANALYSIS_TYPES

__all__ = [
    "Bottleneck", "CriticalPath", "Finding", "MetricResult", "NodeAnalysis", "NodeSuggestions",
    "LogLevel", "StepTask", "Suggestion", "Superstep", "WhatIf",
    "LEVEL_NAMES", "RESULT_TYPES", "CpuUsage", "GpuUsage", "MemoryProfile", "MemoryTimeline",
    "NetworkUsage", "NodeMemory", "NodeResources", "NodeTiming", "ProfileReport",
    "ProfilingLevel", "Record", "ResourceUtilization", "RunSummary", "SamplerStats", "Section",
    "StateImpact", "StateSizeAnalysis", "StateSizeTimeline", "Unavailable",
]
