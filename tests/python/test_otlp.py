"""Continuous profiling's OTLP export, received by a local OTLP/HTTP
collector stand-in that decodes what arrives with the OTLP protobuf types."""

from __future__ import annotations

import gzip
import http.server
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypedDict

import pytest

pytest.importorskip("opentelemetry.sdk", reason="opentelemetry-sdk is not installed")
pytest.importorskip("opentelemetry.exporter.otlp.proto.http",
                    reason="opentelemetry-exporter-otlp-proto-http is not installed")

from langgraph.graph import END, START, StateGraph  # noqa: E402
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (  # noqa: E402
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (  # noqa: E402
    ExportTraceServiceRequest,
)

from conftest import SLACK  # noqa: E402
from kfm_debugging import Debugger, ProfilingLevel  # noqa: E402
from kfm_debugging.workflows.continuous import read_log  # noqa: E402

RUNS = 3


class S(TypedDict, total=False):
    x: int
    a: int
    b: int


class _Collector(http.server.ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.received: list[tuple[str, bytes]] = []
        self.headers_seen: list[dict[str, str]] = []


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Collector

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        self.server.received.append((self.path, body))
        self.server.headers_seen.append(dict(self.headers))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *a: Any) -> None:
        pass


@pytest.fixture
def collector() -> Iterator[_Collector]:
    srv = _Collector()
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def _graph() -> Any:
    def start(s: S) -> dict[str, Any]:
        return {"x": s.get("x", 0) + 1}

    def slow(s: S) -> dict[str, Any]:
        time.sleep(0.04)
        return {"a": 1}

    def short(s: S) -> dict[str, Any]:
        time.sleep(0.015)
        return {"b": 1}

    g = StateGraph(S)
    g.add_node("start", start)
    g.add_node("slow", slow)
    g.add_node("short", short)
    g.add_edge(START, "start")
    for n in ("slow", "short"):
        g.add_edge("start", n)
        g.add_edge(n, END)
    return g.compile(name="fanout")


def _attrs(kvs: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kv in kvs:
        v = kv.value
        out[kv.key] = getattr(v, v.WhichOneof("value"))
    return out


def test_runs_arrive_as_spans_and_metrics(collector: _Collector, tmp_path: Path) -> None:
    from opentelemetry import trace

    before = trace.get_tracer_provider()
    d = Debugger(_graph(), profiling_level=ProfilingLevel.STANDARD)
    log = tmp_path / "runs.log"
    d.enable_continuous_profiling(log_file=log, otlp=f"http://127.0.0.1:{collector.server_port}",
                                  otlp_headers={"x-api-key": "k1"})
    for i in range(RUNS):
        assert d.run({"x": i}) == {"x": i + 1, "a": 1, "b": 1}
    d.disable_continuous_profiling()  # flushes both exporters
    # The program's own OpenTelemetry set-up is left alone.
    assert trace.get_tracer_provider() is before
    paths = {p for p, _ in collector.received}
    assert paths == {"/v1/traces", "/v1/metrics"}
    assert all(h.get("x-api-key") == "k1" for h in collector.headers_seen)

    spans: list[tuple[Any, dict[str, Any]]] = []
    for path, body in collector.received:
        if path != "/v1/traces":
            continue
        req = ExportTraceServiceRequest.FromString(body)
        for rs in req.resource_spans:
            assert _attrs(rs.resource.attributes)["service.name"] == "kfm_debugging"
            for ss in rs.scope_spans:
                assert ss.scope.name == "kfm_debugging"
                spans += [(s, _attrs(s.attributes)) for s in ss.spans]
    by_id = {s.span_id: (s, a) for s, a in spans}
    roots = [(s, a) for s, a in spans if s.name == "fanout run"]
    assert len(roots) == RUNS
    records = read_log(log).records
    assert len(records) == RUNS
    for (root, ra), rec in zip(sorted(roots, key=lambda r: r[0].start_time_unix_nano), records):
        assert not root.parent_span_id
        assert ra["kfm.level"] == "STANDARD" and ra["kfm.mode"] == "invoke"
        # The log keeps ms to 4 decimals.
        assert ra["kfm.total_ms"] == pytest.approx(rec["total_ms"], abs=1e-4)
        dur_ms = (root.end_time_unix_nano - root.start_time_unix_nano) / 1e6
        assert dur_ms == pytest.approx(rec["total_ms"], abs=1e-4)
        # The run's real wall-clock place: it ended before the test read the log.
        assert abs(root.start_time_unix_nano / 1e9 - time.time()) < 60
        mine = [(s, a) for s, a in spans if s.trace_id == root.trace_id and s is not root]
        tasks = {a["kfm.node"]: (s, a) for s, a in mine if a.get("kfm.category") == "task"}
        assert set(tasks) == {"__start__", "start", "slow", "short"}  # LangGraph's input too
        for node, secs in (("slow", 0.04), ("short", 0.015)):
            s, a = tasks[node]
            ms = (s.end_time_unix_nano - s.start_time_unix_nano) / 1e6
            assert secs * 1e3 <= ms < secs * 1e3 + 15 * SLACK
            assert a["kfm.calls"] == 1 and a["kfm.superstep"] == 1
            assert a["thread.name"] != "main"  # a parallel branch runs on a pool thread
            # Nested: task inside the graph span inside the run span, in time too.
            parent, _ = by_id[s.parent_span_id]
            assert parent.name.startswith("graph.") and by_id[parent.parent_span_id][0] is root
            assert root.start_time_unix_nano <= s.start_time_unix_nano
            assert s.end_time_unix_nano <= root.end_time_unix_nano
            comp = [c for c, ca in mine if c.parent_span_id == s.span_id
                    and ca["kfm.category"] == "computation"]
            assert len(comp) == 1 and ca_ms(comp[0]) <= ms + 1e-6
        assert tasks["start"][1]["kfm.superstep"] == 0

    points: dict[tuple[str, str], list[Any]] = {}
    for path, body in collector.received:
        if path != "/v1/metrics":
            continue
        req = ExportMetricsServiceRequest.FromString(body)
        for rm in req.resource_metrics:
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    for dp in m.histogram.data_points:
                        at = _attrs(dp.attributes)
                        points.setdefault((m.name, at.get("kfm.node", "")), []).append(dp)
    # Cumulative histograms: the last point of a series covers every run.
    for node in ("start", "slow", "short"):
        dp = points[("kfm.node.duration", node)][-1]
        assert dp.count == RUNS
        want = sum(r["nodes"][node]["execution_time"] for r in records)
        assert dp.sum == pytest.approx(want, abs=1e-4 * RUNS)
        mem = points[("kfm.node.memory", node)][-1]
        assert mem.count == RUNS
    run = points[("kfm.run.duration", "")][-1]
    assert run.count == RUNS
    assert run.sum == pytest.approx(sum(r["total_ms"] for r in records), abs=1e-4 * RUNS)


def ca_ms(span: Any) -> float:
    return (span.end_time_unix_nano - span.start_time_unix_nano) / 1e6


def test_a_bad_endpoint_is_refused_and_the_log_kept(tmp_path: Path) -> None:
    d = Debugger(_graph(), profiling_level=ProfilingLevel.BASIC)
    log = tmp_path / "runs.log"
    first = d.enable_continuous_profiling(log_file=log)
    with pytest.raises(ValueError, match="'collector:4318'"):
        d.enable_continuous_profiling(log_file=tmp_path / "other.log", otlp="collector:4318")
    # The refused call changed nothing: runs still go to the first log.
    d.run({"x": 1})
    assert d._continuous is first and len(read_log(log).records) == 1
