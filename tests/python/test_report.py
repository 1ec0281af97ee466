"""The HTML report and the Markdown summary: every node and section in
them, no reference to any other host, the HTML loaded in headless Chromium
with no console message (its Content-Security-Policy turns any request into
one), the Markdown's tables well formed, atomic writes."""

from __future__ import annotations

import html
import os
import pathlib
import re
import shutil
import subprocess
import time
from typing import Any

import pytest
from conftest import ChainState, chain
from langgraph.graph import END, START, StateGraph

from kfm_debugging import Debugger, ProfilingLevel

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _sleep(ms: float) -> Any:
    def node(s: dict) -> dict:
        time.sleep(ms / 1000)
        return {"n": 1}

    return node


def _graph() -> Any:
    """A chain with a subgraph (its nodes are named 'outer|inner': a pipe in
    a Markdown cell) and a node whose name needs escaping in HTML."""
    sub = StateGraph(ChainState)
    sub.add_node("inner", _sleep(5))
    sub.add_edge(START, "inner")
    sub.add_edge("inner", END)
    return chain(("parse", _sleep(2)), ("<script>x", _sleep(40)), ("outer", sub.compile()),
                 ("respond", _sleep(3)))


@pytest.fixture(scope="module")
def dbg() -> Debugger:
    d = Debugger(_graph(), profiling_level=ProfilingLevel.DETAILED)
    d.register_performance_metric("double", lambda ns, es: 2 * ns["execution_time"])
    d.run({"input": "x"})
    d.run({"input": "y"})
    return d


def _md_rows(line: str) -> list[str]:
    """Cells of a GFM table row, '\\|' being a pipe inside a cell."""
    assert line.startswith("|") and line.endswith("|"), line
    cells = re.split(r"(?<!\\)\|", line[1:-1])
    return [c.strip().replace("\\|", "|").replace("\\\\", "\\") for c in cells]


def _md_tables(text: str) -> dict[str, list[dict[str, str]]]:
    """Every table of the Markdown, keyed by the heading above it."""
    out: dict[str, list[dict[str, str]]] = {}
    lines = text.splitlines()
    heading = ""
    i = 0
    while i < len(lines):
        if lines[i].startswith("#"):
            heading = lines[i].lstrip("#").strip()
        if lines[i].startswith("|") and i + 1 < len(lines) and re.fullmatch(
                r"\|(\s*:?-{3,}:?\s*\|)+", lines[i + 1]):
            head = _md_rows(lines[i])
            rows = []
            i += 2
            while i < len(lines) and lines[i].startswith("|"):
                cells = _md_rows(lines[i])
                assert len(cells) == len(head), (heading, lines[i])
                rows.append(dict(zip(head, cells)))
                i += 1
            out[heading] = rows
            continue
        i += 1
    return out


def test_markdown_summary_tables(dbg: Debugger, tmp_path: pathlib.Path) -> None:
    path = dbg.generate_performance_summary(output_file=tmp_path / "summary.md")
    assert path == str(tmp_path / "summary.md")
    text = pathlib.Path(path).read_text()
    tables = _md_tables(text)
    nodes = tables["Nodes"]
    timing = dbg.get_node_timing()
    assert {r["node"] for r in nodes} == set(timing) == {"parse", "<script>x", "outer",
                                                         "outer|inner", "respond"}
    for r in nodes:
        assert float(r["total ms"]) == pytest.approx(timing[r["node"]].total_ms, abs=0.006)
        assert int(r["calls"]) == timing[r["node"]].calls
    assert "<script>x" in [r["node"] for r in tables["Bottlenecks"]]
    assert {r["node"] for r in tables["Metric: double"]} == set(timing)
    assert "Total execution time" in {r[""] for r in tables[next(iter(tables))]}


def test_html_report_is_complete_and_self_contained(dbg: Debugger,
                                                    tmp_path: pathlib.Path) -> None:
    path = dbg.generate_performance_report(output_file=tmp_path / "report.html",
                                           include_visualizations=True)
    page = pathlib.Path(path).read_text()
    for n in dbg.get_node_timing():
        assert f">{html.escape(n)}<" in page, n
    assert "<script>x" not in page  # escaped, never markup
    for title in ("Bottlenecks and suggestions", "Nodes", "Supersteps (critical path)",
                  "Memory profile", "CPU usage", "Network usage", "GPU usage",
                  "State size analysis", "Node state impact", "Environment", "Metric: double"):
        assert title in page, title
    # No reference to another host: no src/href/url() but data: URIs.
    refs = re.findall(r"""(?:src|href)\s*=\s*["']([^"']*)|url\(([^)]*)\)""", page)
    assert all(a.startswith("data:") or (not a and not b) for a, b in refs), refs
    assert not re.search(r"<(script|link|iframe|object)\b", page, re.I)
    assert "Content-Security-Policy" in page


def _chromium(page: pathlib.Path, shot: pathlib.Path | None = None) -> tuple[str, str]:
    args = [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
            "--enable-logging=stderr", "--v=0", "--no-first-run", "--disable-extensions",
            f"--user-data-dir={page.parent / 'chromium-profile'}", "--window-size=1300,2200"]
    args += [f"--screenshot={shot}"] if shot else ["--dump-dom"]
    # Not the test process's environment: under the sanitizer runs it
    # preloads ASan or TSan, which the browser must not inherit.
    env = {k: v for k, v in os.environ.items()
           if k not in ("LD_PRELOAD", "PYTHONMALLOC") and not k.endswith("SAN_OPTIONS")}
    r = subprocess.run([*args, page.as_uri()], capture_output=True, text=True, timeout=120,
                       env=env)
    return r.stdout, r.stderr


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (Debian: apt-get "
                                               "install chromium; .ci/test installs it)")
def test_html_report_renders_in_chromium(dbg: Debugger, tmp_path: pathlib.Path) -> None:
    # The check can fail: a page that asks for another host gets a console
    # message (the CSP blocks the request and says so).
    bad = tmp_path / "bad.html"
    page = pathlib.Path(dbg.generate_performance_report(output_file=tmp_path / "report.html"))
    bad.write_text(page.read_text().replace("</main>",
                                            '<img src="http://example.invalid/x.png"></main>'))
    _out, err = _chromium(bad)
    assert "CONSOLE" in err and "example.invalid" in err
    dom, err = _chromium(page)
    assert [ln for ln in err.splitlines() if "CONSOLE" in ln] == []
    assert "Performance report:" in dom and "&lt;script&gt;x" in dom
    shot = pathlib.Path(os.environ.get("KFM_REPORT_SHOT", tmp_path / "report.png"))
    _chromium(page, shot)
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    w, h = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert (w, h) == (1300, 2200)


def test_reports_write_atomically_and_name_bad_paths(dbg: Debugger,
                                                     tmp_path: pathlib.Path) -> None:
    target = tmp_path / "keep.html"
    target.write_text("earlier")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        if not os.access(ro, os.W_OK):  # root writes anywhere: nothing to test there
            with pytest.raises(OSError, match=re.escape(str(ro / "r.html"))):
                dbg.generate_performance_report(output_file=ro / "r.html")
    finally:
        ro.chmod(0o700)
    with pytest.raises(OSError, match="no_such_dir"):
        dbg.generate_performance_summary(output_file=tmp_path / "no_such_dir" / "s.md")
    assert target.read_text() == "earlier"
    dbg.generate_performance_report(output_file=target, include_visualizations=False)
    assert target.read_text().startswith("<!DOCTYPE html>")


def test_before_any_run() -> None:
    d = Debugger(chain(("a", _sleep(1))), profiling_level="BASIC")
    with pytest.raises(RuntimeError, match="run the graph"):
        d.generate_performance_report(output_file="/nonexistent/x.html")


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_charts_and_trace_through_the_debugger(dbg: Debugger, tmp_path: pathlib.Path) -> None:
    import json
    import xml.etree.ElementTree as ET

    out = {
        "timeline": dbg.visualize_performance_timeline(output_file=tmp_path / "t.png"),
        "time": dbg.visualize_node_comparison(metric="execution_time",
                                              output_file=tmp_path / "c.png"),
        "double": dbg.visualize_node_comparison(metric="double", output_file=tmp_path / "d.png"),
        "memory": dbg.visualize_memory_usage(output_file=tmp_path / "m.png"),
        "heat": dbg.visualize_performance_heatmap(metric="execution_time",
                                                  output_file=tmp_path / "h.png"),
        "heat_mem": dbg.visualize_performance_heatmap(metric="memory_usage",
                                                      output_file=tmp_path / "hm.png"),
    }
    for name, path in out.items():
        w, h = _png_size(pathlib.Path(path).read_bytes())
        assert 400 <= w <= 4000 and 300 <= h <= 4000, (name, w, h)
    ET.fromstring(pathlib.Path(dbg.visualize_performance_timeline(
        output_file=tmp_path / "t.svg")).read_bytes())
    with pytest.raises(ValueError, match="'nope'.*execution_time"):
        dbg.visualize_node_comparison(metric="nope", output_file=tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()
    # Two runs at DETAILED in history: the heatmap is nodes x runs.
    assert sum("nodes" in h for h in dbg.history) == 2
    page = pathlib.Path(dbg.generate_performance_report(output_file=tmp_path / "r.html")).read_text()
    assert page.count('src="data:image/png;base64,') == 4
    trace = json.loads(pathlib.Path(dbg.export_trace(output_file=tmp_path / "tr.json")).read_text())
    spans = [e for e in trace["traceEvents"] if e["ph"] == "X"]
    timing = dbg.get_node_timing()
    for n, t in timing.items():
        assert sum(1 for e in spans if e["name"] == n) == t.calls, n


def test_environment_names_backends_and_topology(tmp_path: pathlib.Path) -> None:
    d = Debugger(chain(("a", _sleep(1))), profiling_level="COMPREHENSIVE")
    d.run({"input": "x"})
    env = d.get_performance_report().environment
    backends = {b["name"]: b for b in env["backends"]}
    assert {"clock", "proc"} <= set(backends)
    for b in backends.values():
        assert b["reason"], b  # every backend says why it is (not) measuring
    hw = backends.get("hwloc")
    if hw is not None and hw["enabled"] and hw["available"]:
        assert re.search(r"\d+ package\(s\); \d+ core\(s\); \d+ PU\(s\)", env["topology_summary"])
    else:
        assert env["topology_summary"].startswith("unavailable: ")
    page = pathlib.Path(d.generate_performance_report(output_file=tmp_path / "r.html",
                                                      include_visualizations=False)).read_text()
    assert html.escape(env["topology_summary"].removeprefix("unavailable: ")) in page
    for b in backends.values():
        assert html.escape(b["reason"]) in page
    assert env["packages"]["langgraph"] and env["python"]


def test_sampled_gpu_values_of_short_nodes_are_marked() -> None:
    """NVML's utilisation (and averaged power) covers the driver's window:
    a node whose calls are shorter gets a caveat naming the window, in the
    text and HTML reports alike (the HTML embeds the text section)."""
    from kfm_debugging.analysis.resources import window_caveats
    from kfm_debugging.model.results import GpuUsage
    from kfm_debugging.render.text import gpu_usage

    # The shape the nvml backend exports per device (backends/nvml/nvml.c).
    details = {"nvml": {"devices": [
        {"index": 0, "uuid": "GPU-1", "cuda_index": 0, "whole_gpu": False,
         "power_reading": "instant", "averaging_ms": {"util": 1000, "mem_util": 1000, "power": 0}},
    ]}}
    cav = window_caveats({"short": 12.5, "long": 2500.0}, details)
    assert set(cav) == {"short"}
    assert "12.5 ms" in cav["short"] and "1000 ms" in cav["short"]
    assert "mem_util, util" in cav["short"]
    assert window_caveats({"short": 1.0}, {"cupti": {"kernels": []}}) == {}
    g = GpuUsage(available=True, metrics=["nvml.util"],
                 nodes={"short": {"nvml.util": 40.0}, "long": {"nvml.util": 90.0}}, caveats=cav)
    text = gpu_usage(g)
    lines = text.splitlines()
    i = next(k for k, ln in enumerate(lines) if ln.startswith("- short:"))
    assert "sampled GPU values" in lines[i + 1] and "1000 ms" in lines[i + 1]
    assert not any("sampled GPU values" in ln for ln in lines if "long" in ln)
