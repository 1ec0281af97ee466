"""Each profiled run sent to an OpenTelemetry collector over OTLP/HTTP.

Continuous profiling's log serves one machine; a fleet already runs a
collector (Jaeger, Tempo, Honeycomb, an OpenTelemetry Collector), so the
same runs can go there with the standard exporter:

* Traces: one span per run ("<graph> run", the run's wall time, its level,
  mode and error) and, under it, the run's timeline as analysis/trace.py
  builds it for export_trace: each node's task span, with its Computation
  and State update spans inside, nested as they ran on their thread.  A
  span's attributes are kfm's figures: the metric deltas the engine
  measured over it ("kfm.cpu_user_ms", "kfm.rss_mb", ...), the node, its
  call count and superstep.  At most max_spans spans a run are sent (the
  earliest); the run span says how many were left out.
* Metrics, for the trends: per run and node, histograms of execution time
  (ms) and, from STANDARD up, memory (MB), with the graph and node as
  attributes; the run's total time.  A collector turns them into series
  per node; the log's Theil-Sen trends stay the statistical verdict.

What this never does: change the program's own OpenTelemetry set-up (the
providers are kfm's, not the global ones), block a run on the network (the
SDK's batch processor and periodic reader export on their own threads), or
raise into a run (a failure is counted and logged once).  The SDK is
imported only when an exporter is made.  Spans are built after the run
from what it measured, with their real start and end times on the wall
clock (the run's perf_counter start mapped to time.time_ns when the run
is exported: the two clocks drift apart by microseconds per hour).
"""

from __future__ import annotations

import logging
import math
import os
import queue
import threading
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .._platform import package_version
from ..model.trace import (
    CAT_ASYNC_SLICE,
    CAT_COMPUTATION,
    CAT_GRAPH,
    CAT_STATE_UPDATE,
    CAT_TASK,
)

if TYPE_CHECKING:
    from ..collect.run import RunData
    from ..model.trace import TraceData

_logger = logging.getLogger("kfm_debugging")

MAX_SPANS = 10_000
MAX_QUEUED = 64  # runs waiting for the exporter's thread
SCOPE = "kfm_debugging"
# Span categories of the timeline that become OTLP spans (the supersteps
# lane is the run's structure, kept as each task's "kfm.superstep").
_SENT = (CAT_GRAPH, CAT_TASK, CAT_COMPUTATION, CAT_STATE_UPDATE, CAT_ASYNC_SLICE)


def _sdk_missing(e: ImportError) -> ImportError:
    return ImportError(
        f"OTLP export needs the OpenTelemetry SDK and its OTLP/HTTP exporter: pip install "
        f"'kfm-debugging[otlp]' (opentelemetry-sdk, opentelemetry-exporter-otlp-proto-http); "
        f"{e}")


class OtlpExporter:
    """Sends runs to an OTLP/HTTP endpoint.

    endpoint: the collector's base URL ("http://collector:4318"; traces go
    to <endpoint>/v1/traces and metrics to <endpoint>/v1/metrics), or True
    to take everything from the standard OTEL_EXPORTER_OTLP_* environment
    variables.  headers: extra HTTP headers (e.g. an API key).
    service_name: the resource's service.name (default: the
    OTEL_SERVICE_NAME variable, else "kfm_debugging")."""

    def __init__(self, endpoint: str | bool, headers: Mapping[str, str] | None = None,
                 service_name: str | None = None, max_spans: int = MAX_SPANS,
                 timeout_s: float = 10.0) -> None:
        if endpoint is True:
            base = None
        elif isinstance(endpoint, str) and endpoint.startswith(("http://", "https://")):
            base = endpoint.rstrip("/")
        else:
            raise ValueError(f"otlp endpoint must be an http(s) URL such as "
                             f"'http://localhost:4318', or True for the OTEL_EXPORTER_OTLP_* "
                             f"environment variables, not {endpoint!r}")
        if isinstance(max_spans, bool) or not isinstance(max_spans, int) or max_spans < 1:
            raise ValueError(f"max_spans must be an int >= 1, not {max_spans!r}")
        try:
            from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
                OTLPMetricExporter,
            )
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            from opentelemetry.sdk.metrics import MeterProvider
            from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import BatchSpanProcessor
        except ImportError as e:
            raise _sdk_missing(e) from None
        self.endpoint = base
        self.max_spans = max_spans
        self.failures = 0
        self.dropped = 0
        self.runs = 0  # runs whose spans and metrics went to the SDK
        self._warned = False
        self._start_thread()
        name = service_name or os.environ.get("OTEL_SERVICE_NAME") or "kfm_debugging"
        self.resource = Resource.create({
            "service.name": name, "telemetry.sdk.name": "opentelemetry",
            "kfm.version": package_version("kfm-debugging") or "unknown"})
        hdrs = dict(headers) if headers else None
        span_exp = OTLPSpanExporter(endpoint=base and f"{base}/v1/traces", headers=hdrs,
                                    timeout=timeout_s)
        metric_exp = OTLPMetricExporter(endpoint=base and f"{base}/v1/metrics", headers=hdrs,
                                        timeout=timeout_s)
        self._tracers = TracerProvider(resource=self.resource)
        self._tracers.add_span_processor(BatchSpanProcessor(span_exp))
        self._reader = PeriodicExportingMetricReader(metric_exp)
        self._meters = MeterProvider(resource=self.resource, metric_readers=[self._reader])
        version = package_version("kfm-debugging")
        self._tracer = self._tracers.get_tracer(SCOPE, version)
        meter = self._meters.get_meter(SCOPE, version)
        self._node_ms = meter.create_histogram(
            "kfm.node.duration", unit="ms",
            description="A node's execution time in one run (Setup + Computation + State "
                        "update, all its calls)")
        self._node_mb = meter.create_histogram(
            "kfm.node.memory", unit="MB", description="RSS change over a node's calls in one run")
        self._run_ms = meter.create_histogram(
            "kfm.run.duration", unit="ms", description="A profiled run's wall time")

    # -- sending ---------------------------------------------------------------
    def export_run(self, rd: RunData, figures: Mapping[str, Any]) -> bool:
        """Queue one run's spans and metrics (figures: the run's record in
        the continuous log, analysis.run_figures and its "graph"); never
        raises.  Only the run's timeline is built here (~1-3 ms for 50
        nodes: the run's data is gone once its session restarts); the SDK's
        spans (tens of µs each) are made on the exporter's own thread.  A run
        that finds MAX_QUEUED runs still waiting is dropped and counted.
        True when queued."""
        graph = figures.get("graph") or "LangGraph"
        try:
            from ..analysis.trace import trace_data

            td = trace_data(rd, max_events=self.max_spans, graph_name=graph)
            # Run start on the wall clock: perf_counter_ns at the run's
            # start, moved by the offset between the two clocks now.
            epoch0 = time.time_ns() - time.perf_counter_ns() + rd.t0_perf
            if self._pid != os.getpid():  # a forked child has no copy of the thread
                self._start_thread()
            self._queue.put_nowait((td, dict(figures), graph, epoch0))
        except queue.Full:
            self.dropped += 1
            self._failed(RuntimeError(f"{MAX_QUEUED} runs already wait to be exported: this "
                                      f"run is dropped"))
            return False
        except Exception as e:  # noqa: BLE001 - never the run's failure
            self._failed(e)
            return False
        return True

    def _start_thread(self) -> None:
        self._pid = os.getpid()
        self._queue: queue.Queue[Any] = queue.Queue(MAX_QUEUED)
        self._thread = threading.Thread(target=self._work, name="kfm-otlp", daemon=True)
        self._thread.start()

    def _failed(self, e: BaseException) -> None:
        self.failures += 1
        if not self._warned:
            self._warned = True
            _logger.warning("kfm_debugging: OTLP export of a run failed (%s: %s); later "
                            "failures are only counted", type(e).__name__, e)

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                td, figures, graph, epoch0 = item
                self._spans(td, figures, graph, epoch0)
                self._metrics(figures, graph)
                self.runs += 1
            except Exception as e:  # noqa: BLE001 - a bad run must not stop the thread
                self._failed(e)
            finally:
                self._queue.task_done()

    def _spans(self, td: TraceData, figures: Mapping[str, Any], graph: str, epoch0: int) -> None:
        from opentelemetry import trace
        from opentelemetry.trace import Status, StatusCode

        total_ms = float(figures.get("total_ms") or td.total_ms)
        attrs: dict[str, Any] = {"kfm.graph": graph, "kfm.level": td.level, "kfm.mode": td.mode,
                                 "kfm.total_ms": total_ms}
        if td.dropped or td.engine_events_dropped:
            attrs["kfm.spans_left_out"] = int(td.dropped)
            attrs["kfm.engine_events_dropped"] = int(td.engine_events_dropped)
        growth = figures.get("memory_growth")
        if isinstance(growth, (int, float)) and math.isfinite(growth):
            attrs["kfm.memory_growth_mb"] = float(growth)
        root = self._tracer.start_span(f"{graph} run", attributes=attrs, start_time=epoch0)
        if figures.get("error"):
            root.set_status(Status(StatusCode.ERROR, str(figures["error"])))
        lanes = {t.tid: t.name for t in td.threads}
        # td.spans: by start, parents before children; per lane, a stack of
        # open spans gives each its parent.  A span at the top of another
        # lane (a parallel branch on a pool thread) belongs to the graph
        # span (invoke, or a stream's resumption) that was open when it began.
        open_: dict[int, list[tuple[float, Any]]] = {}
        graphs: list[tuple[float, float, Any]] = []
        ends: list[tuple[Any, int]] = []
        for s in td.spans:
            if s.cat not in _SENT:
                continue
            stack = open_.setdefault(s.tid, [])
            end_us = s.start_us + s.dur_us
            while stack and stack[-1][0] < end_us - 1e-3:
                stack.pop()
            if stack:
                parent = stack[-1][1]
            else:
                parent = next((g for g0, g1, g in reversed(graphs) if g0 <= s.start_us <= g1),
                              root)
            a = {f"kfm.{k}": _attr(v) for k, v in s.args.items() if _attr(v) is not None}
            a["kfm.category"] = s.cat
            a["thread.name"] = lanes.get(s.tid, str(s.tid))
            t0 = epoch0 + int(round(s.start_us * 1e3))
            sp = self._tracer.start_span(s.name, context=trace.set_span_in_context(parent),
                                         attributes=a, start_time=t0)
            stack.append((end_us, sp))
            if s.cat == CAT_GRAPH:
                graphs.append((s.start_us, end_us, sp))
            ends.append((sp, t0 + int(round(s.dur_us * 1e3))))
        for sp, t1 in ends:
            sp.end(end_time=t1)
        root.end(end_time=epoch0 + max(int(round(total_ms * 1e6)), 0))

    def _metrics(self, figures: Mapping[str, Any], graph: str) -> None:
        total = figures.get("total_ms")
        if isinstance(total, (int, float)):
            self._run_ms.record(float(total), {"kfm.graph": graph})
        for node, row in (figures.get("nodes") or {}).items():
            at = {"kfm.graph": graph, "kfm.node": node}
            ms = row.get("execution_time")
            if isinstance(ms, (int, float)) and math.isfinite(ms):
                self._node_ms.record(float(ms), at)
            mb = row.get("memory_usage")
            if isinstance(mb, (int, float)) and math.isfinite(mb):
                self._node_mb.record(float(mb), at)

    # -- life --------------------------------------------------------------------
    def flush(self, timeout_s: float = 10.0) -> bool:
        """Build the spans of every queued run and send everything now;
        True when both exports succeeded."""
        self._queue.join()
        ms = int(timeout_s * 1000)
        ok_t = self._tracers.force_flush(ms)
        ok_m = self._meters.force_flush(ms)
        return bool(ok_t and ok_m)

    def shutdown(self) -> None:
        """Flush and stop the exporters' threads (disable_continuous_profiling)."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        try:
            self._tracers.shutdown()
            self._meters.shutdown()
        except Exception as e:  # noqa: BLE001 - shutting down never raises
            _logger.warning("kfm_debugging: OTLP exporter shutdown: %s: %s", type(e).__name__, e)


def _attr(v: Any) -> Any:
    """v as an OTLP attribute value (str, bool, int, float or a list of
    one of them), or None when it is none of these."""
    if isinstance(v, (str, bool, int)):
        return v
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, (list, tuple)) and v and all(isinstance(x, str) for x in v):
        return list(v)
    return None
