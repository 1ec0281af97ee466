"""A run's trace (model/trace.py TraceData) as Chrome Trace Event Format
JSON, the format Perfetto (ui.perfetto.dev) and chrome://tracing open.

The JSON object form: {"traceEvents": [...], "displayTimeUnit": "ms",
"otherData": {...}}.  One process (the run); every lane is a thread of it,
named and ordered by "M" metadata events (process_name, thread_name,
thread_sort_index); spans are "X" complete events, counter tracks "C"
events (process-wide, one series "value"), markers "i" instants.  ts and
dur are microseconds (floats of whole nanoseconds) from the run's start.

The text is strict JSON (no NaN or Infinity, which the viewers' parsers
reject), one event per line so that it greps and diffs.
"""

from __future__ import annotations

import json
import math
from typing import Any

from ..model.trace import LANE_THREAD, TraceData

PID = 1  # the trace holds one process; its real pid says nothing to a viewer


def chrome_trace(td: TraceData) -> str:
    """td as the text of a .json trace file."""
    lanes = [t for t in td.threads if t.kind == LANE_THREAD] or td.threads
    # Process-wide events still carry a tid: the run's own thread, so that
    # no viewer makes an empty thread for them.
    main = lanes[0].tid if lanes else 0
    ev: list[dict[str, Any]] = [
        {"name": "process_name", "ph": "M", "pid": PID, "tid": main,
         "args": {"name": td.process_name}},
    ]
    for t in td.threads:
        ev.append({"name": "thread_name", "ph": "M", "pid": PID, "tid": t.tid,
                   "args": {"name": t.name}})
        ev.append({"name": "thread_sort_index", "ph": "M", "pid": PID, "tid": t.tid,
                   "args": {"sort_index": t.sort_index}})
    for s in td.spans:
        ev.append({"name": s.name, "cat": s.cat, "ph": "X", "ts": float(s.start_us),
                   "dur": float(s.dur_us), "pid": PID, "tid": s.tid, "args": s.args})
    for c in td.counters:
        for t_us, v in zip(c.t_us, c.readings, strict=True):
            ev.append({"name": c.name, "ph": "C", "ts": float(t_us), "pid": PID, "tid": main,
                       "args": {"value": v}})
    for m in td.markers:
        ev.append({"name": m.name, "cat": m.cat, "ph": "i", "s": m.scope, "ts": float(m.t_us),
                   "pid": PID, "tid": m.tid if m.tid is not None else main, "args": m.args})
    other = {
        "generator": "kfm_debugging export_trace", "process_name": td.process_name,
        "level": td.level, "mode": td.mode, "total_ms": td.total_ms,
        "time": "ts and dur in microseconds from the run's start",
        "events": td.events, "max_events": td.max_events, "dropped": td.dropped,
        "engine_events_dropped": td.engine_events_dropped, "setup": td.setup,
        "notes": list(td.notes),
    }
    lines = [_dumps(e) for e in ev]
    return ('{"traceEvents":[\n' + ",\n".join(lines) + '\n],\n"displayTimeUnit":"ms",\n'
            '"otherData":' + _dumps(other) + "}\n")


def _dumps(obj: Any) -> str:
    try:
        return json.dumps(obj, separators=(",", ":"), allow_nan=False)
    except ValueError:  # a NaN or infinity among the args: null, as JSON has no such number
        return json.dumps(_finite(obj), separators=(",", ":"), allow_nan=False)


def _finite(v: Any) -> Any:
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, dict):
        return {k: _finite(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_finite(x) for x in v]
    return v
