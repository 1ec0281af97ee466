"""JSON documents from result types (model/): the timing export, and any
result as JSON text (``to_dict()``; ``from_dict()`` reads it back)."""

from __future__ import annotations

import json
from typing import Any

from ..model import NodeTiming, Record, RunSummary

TIMING_SCHEMA = "kfm_debugging.timing/1"


def dumps(result: Record | dict[str, Any], indent: int | None = 2) -> str:
    """A result (or a mapping of results) as JSON text."""
    data = result.to_dict() if isinstance(result, Record) else {
        k: v.to_dict() if isinstance(v, Record) else v for k, v in result.items()}
    return json.dumps(data, indent=indent, default=str) + "\n"


def timing_export(report: RunSummary, timing: dict[str, NodeTiming],
                  engine_report: dict[str, Any] | None = None) -> str:
    """The document export_timing_data writes (schema kfm_debugging.timing/1):
    the run's level, mode and total, every node's timing, errors,
    interrupts, the engine's summary and, when given, its full report."""
    data: dict[str, Any] = {
        "schema": TIMING_SCHEMA,
        "level": report.level,
        "mode": report.mode,
        "total_ms": report.total_ms,
        "nodes": {n: t.to_dict() for n, t in timing.items()},
        "errors": report.errors,
        "interrupts": report.interrupts,
        "engine_summary": report.engine,
    }
    if engine_report is not None:
        data["engine_report"] = engine_report
    return json.dumps(data, indent=2, default=str) + "\n"
