"""The data of the HTML report and the Markdown summary: every section of
the show_* calls and of the analysis, with the environment, in one record."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .analysis import Bottleneck, CriticalPath, MetricResult, NodeSuggestions
from .base import Record
from .results import (
    CpuUsage,
    GpuUsage,
    MemoryProfile,
    MemoryTimeline,
    NetworkUsage,
    NodeTiming,
    ProfileReport,
    ResourceUtilization,
    StateImpact,
    StateSizeAnalysis,
    StateSizeTimeline,
)


@dataclass
class PerformanceReport(Record):
    title: str
    generated: str  # ISO 8601, UTC
    profile: ProfileReport
    timing: dict[str, NodeTiming]
    memory: MemoryProfile
    memory_timeline: MemoryTimeline
    cpu: CpuUsage
    network: NetworkUsage
    gpu: GpuUsage
    resources: ResourceUtilization
    state: StateSizeAnalysis
    state_timeline: StateSizeTimeline
    critical: CriticalPath
    bottlenecks: dict[str, Bottleneck] = field(default_factory=dict)
    suggestions: dict[str, NodeSuggestions] = field(default_factory=dict)
    state_impact: dict[str, StateImpact] | None = None
    state_impact_reason: str = ""
    metrics: dict[str, MetricResult] = field(default_factory=dict)
    environment: dict[str, Any] = field(default_factory=dict)
    runs: int = 1  # runs of this Debugger the report's history covers
