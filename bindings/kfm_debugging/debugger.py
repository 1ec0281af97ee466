"""kfm_debugging.Debugger: per-node profiling of LangGraph graphs.

The Debugger runs a graph exactly as the graph would run on its own (same
result, same exceptions) while the kfm engine measures every node: a task
span per node activation, split into Setup (task and input preparation),
Computation (the node's own function) and State update (channel writes,
edge routing and the reducers).

It is a facade over four layers, and wires them:

  collect/   runs the graph in an engine session (the only code that knows
             LangGraph: hooks, recorder, lent thread pools, state size)
  model/     the result types (dataclasses, readable as mappings, JSON)
  analysis/  pure functions from a run's data to results
  render/    results to text (the show_* reports) and JSON

Each show_* prints the last run's results in the formats of the user guide
(performance-profiling.md) and has a get_* counterpart returning the data.

Levels (ProfilingLevel) map to the engine's levels:
  BASIC          time only
  STANDARD       + RSS at every transition, sampled peak (100 Hz)
  DETAILED       + CPU, faults, context switches, I/O, network; state sizes
  COMPREHENSIVE  + hardware counters and GPU where available, 1 kHz sampler

Figures that were not measured are never printed: a section whose level is
too low, or whose backend is unavailable, says "unavailable: <reason>".
"""

from __future__ import annotations

import logging
import os
import sys
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from functools import partial
from typing import IO, Any

from . import analysis
from ._files import atomic_write
from .collect import Collector, RunData, Settings
from .collect import allocations
from .collect import state_size as _state_size
from .model import (
    Bottleneck,
    CpuUsage,
    CriticalPath,
    GpuUsage,
    MemoryProfile,
    MemoryTimeline,
    MetricResult,
    NetworkUsage,
    NodeAnalysis,
    NodeMemory,
    NodeResources,
    NodeSuggestions,
    NodeTiming,
    ProfileReport,
    LogLevel,
    ProfilingLevel,
    ResourceUtilization,
    StateImpact,
    StateSizeAnalysis,
    StateSizeTimeline,
    Suggestion,
    Unavailable,
    WhatIf,
)
from .collect.env import environment
from .collect.features import apply_features
from .model.baseline import BaselineComparison, MetricChange
from .model.bench import BenchComparison, BenchmarkResults, ExperimentResults
from .model.leaks import MemoryLeaks
from .model.report import PerformanceReport
from .model.trends import Trends
from .analysis import visual
from .analysis.trace import trace_data
from .render import bench as render_bench
from .render import charts as render_charts
from .render import findings as render_findings
from .render import html as render_html
from .render import markdown as render_markdown
from .render import json as render_json
from .render import text as render_text
from .render import trace as render_trace
from .render import trends as render_trends
from .workflows import baseline as _baseline
from .workflows import benchmark as bench
from .workflows import continuous
from .workflows import otlp as _otlp

log = logging.getLogger("kfm_debugging")


class Debugger:
    """Profile a LangGraph graph node by node.

    Debugger(graph, enable_profiling=False, profiling_level=None, *,
             log_level=None, state_tracking=None, engine_config="")

    graph: a compiled graph (``StateGraph(...).compile()``, any Pregel) or an
        uncompiled StateGraph, which is compiled with default arguments.
    enable_profiling: True profiles at BASIC unless profiling_level says more.
    profiling_level: a ProfilingLevel (or its name); implies enable_profiling.
    log_level: level of the "kfm_debugging" logger ("DEBUG", "INFO", ... or a
        logging number); each run logs a one-line summary at INFO.
    state_tracking: measure the state's size after every superstep
        (deep sizeof of each state channel).  Default: on at DETAILED and
        COMPREHENSIVE, off below; True or False forces it.  The time it takes
        is excluded from the reported total execution time.
    engine_config: extra kfm engine configuration ("rate=500,backends=...").
    reuse_threads: lend LangGraph thread pools that live across this
        Debugger's runs instead of the new pool LangGraph makes for every
        invoke, so that a worker thread's profiler set-up is paid once, not
        on every run (at COMPREHENSIVE opening a thread's counters costs
        ~0.6 ms, more than starting the thread).  LangGraph still waits for
        all of its tasks in each run; worker threads and their thread-locals
        are the same from run to run, and the runs no longer include
        starting threads.  Default: on at COMPREHENSIVE, off below.
    history_size: how many runs ``history`` keeps (a summary dict per run,
        oldest dropped first); an int >= 0, default 100.

    KFM_CONFIG in the environment is layered by the engine on top of the
    Debugger's own configuration (it may change the level): the reports then
    say so (``level_override`` in get_profile_report).  A KFM_CONFIG the
    engine rejects is ignored with one warning; runs are profiled without it.
    """

    def __init__(
        self,
        graph: Any,
        enable_profiling: bool = False,
        profiling_level: ProfilingLevel | str | int | None = None,
        *,
        log_level: LogLevel | str | int | None = None,
        state_tracking: bool | None = None,
        engine_config: str = "",
        reuse_threads: bool | None = None,
        history_size: int = 100,
        trace_allocations: bool = False,
    ) -> None:
        self._collect = Collector(graph)
        self._collect.trace_allocations(trace_allocations)
        self.graph = self._collect.graph
        self._st: Settings | None = None  # the runs' Settings, made when first needed
        self._level: ProfilingLevel | None = None
        if profiling_level is not None:
            self._level = ProfilingLevel.parse(profiling_level)
        elif enable_profiling:
            self._level = ProfilingLevel.BASIC
        if state_tracking is not None and not isinstance(state_tracking, bool):
            raise TypeError(f"state_tracking must be True, False or None, not {state_tracking!r}")
        self.state_tracking = state_tracking
        if reuse_threads is not None and not isinstance(reuse_threads, bool):
            raise TypeError(f"reuse_threads must be True, False or None, not {reuse_threads!r}")
        self.reuse_threads = reuse_threads
        self.engine_config = engine_config
        if log_level is not None:
            self.set_log_level(log_level)
        if (not isinstance(history_size, int) or isinstance(history_size, bool)
                or history_size < 0):
            raise ValueError(f"history_size must be an int >= 0 (runs kept in "
                             f"Debugger.history), not {history_size!r}")
        self.history_size = history_size
        self._collect.history = deque(maxlen=history_size)
        self._collect.summarize = analysis.history_figures
        self._ev: analysis.Evidence | None = None
        self._benchmark: BenchmarkResults | None = None  # the last run_benchmark's
        self._continuous: continuous.ContinuousLog | None = None
        self._otlp: _otlp.OtlpExporter | None = None  # continuous profiling's OTLP sink
        self._baseline_marks: dict[str, dict[str, Any]] = {}  # baseline path -> last run
        # Debuggers of rebuilt variants of the graph (measure(graph=...)).
        self._siblings: dict[int, tuple[Any, Debugger]] = {}
        self._metrics: dict[str, Callable[[dict[str, Any], dict[str, Any]], Any]] = {}

    # -- configuration ---------------------------------------------------
    @staticmethod
    def set_log_level(level: LogLevel | str | int) -> None:
        """Level of the "kfm_debugging" logger: a LogLevel, a logging number
        or a name ("DEBUG", "info", "LogLevel.WARNING")."""
        log.setLevel(LogLevel.parse(level))
        if not log.handlers and not logging.getLogger().handlers:
            h = logging.StreamHandler()
            h.setFormatter(logging.Formatter("%(name)s: %(message)s"))
            log.addHandler(h)

    def enable_profiling(self, level: ProfilingLevel | str | int = ProfilingLevel.BASIC) -> None:
        """Profile the next runs at level (replaces any earlier level)."""
        self._level = ProfilingLevel.parse(level)
        self._st = None

    def disable_profiling(self) -> None:
        self._level = None
        self._st = None

    # Settings that a run reads: changing one remakes the runs' Settings.
    @property
    def state_tracking(self) -> bool | None:
        return self._state_tracking

    @state_tracking.setter
    def state_tracking(self, v: bool | None) -> None:
        self._state_tracking, self._st = v, None

    @property
    def reuse_threads(self) -> bool | None:
        return self._reuse_threads

    @reuse_threads.setter
    def reuse_threads(self, v: bool | None) -> None:
        self._reuse_threads, self._st = v, None

    @property
    def engine_config(self) -> str:
        return self._engine_config

    @engine_config.setter
    def engine_config(self, v: str) -> None:
        self._engine_config, self._st = v, None

    @property
    def profiling_enabled(self) -> bool:
        return self._level is not None

    @property
    def profiling_level(self) -> ProfilingLevel | None:
        return self._level

    def _settings(self) -> Settings:
        st = self._st
        if st is not None:
            return st
        level = self._level
        assert level is not None
        tracking = self._state_tracking
        if tracking is None:
            tracking = level >= ProfilingLevel.DETAILED
        reuse = self._reuse_threads
        if reuse is None:
            reuse = level >= ProfilingLevel.COMPREHENSIVE
        self._st = st = Settings(level, tracking, reuse, self._engine_config)
        return st

    # -- running ---------------------------------------------------------
    def run(self, initial_state: Any, config: Any = None, **kwargs: Any) -> Any:
        """graph.invoke(initial_state, config, **kwargs), profiled when enabled.

        Returns exactly what invoke returns and raises exactly what it raises.
        """
        if self._level is None:
            return self.graph.invoke(initial_state, config, **kwargs)
        return self._collect.invoke(self._settings(), initial_state, config, kwargs)

    invoke = run

    def measure(self, initial_state: Any, config: Any = None, graph: Any = None) -> dict[str, Any]:
        """One profiled run (at BASIC when profiling is off) reduced to the
        figures the workflows across runs compare: {total_ms, level, mode,
        error, nodes: {node: {execution_time, calls, memory_usage}}}.  graph:
        run another graph (a rebuilt variant) with this Debugger's settings.
        An exception of the graph is reported in "error", not raised."""
        d = self if graph is None and self._level is not None else \
            self._sibling(self.graph if graph is None else graph)
        try:
            d.run(initial_state, config)
        except Exception:  # noqa: BLE001 - the run's error is one of its figures
            pass
        return analysis.run_figures(d._data())

    def _sibling(self, graph: Any) -> Debugger:
        """A Debugger for another graph with this one's settings (kept, so
        that its engine session is reused from run to run)."""
        sib = self._siblings.get(id(graph))
        if sib is None or sib[0] is not graph:
            d = Debugger(graph, profiling_level=self._level or ProfilingLevel.BASIC,
                         state_tracking=self._state_tracking, engine_config=self._engine_config,
                         reuse_threads=self._reuse_threads, history_size=0)
            sib = self._siblings[id(graph)] = (graph, d)
        return sib[1]

    async def arun(self, initial_state: Any, config: Any = None, **kwargs: Any) -> Any:
        """await graph.ainvoke(...), profiled when enabled."""
        if self._level is None:
            return await self.graph.ainvoke(initial_state, config, **kwargs)
        return await self._collect.ainvoke(self._settings(), initial_state, config, kwargs)

    ainvoke = arun

    def stream(self, initial_state: Any, config: Any = None, **kwargs: Any) -> Iterator[Any]:
        """graph.stream(...), profiled when enabled; the run ends with the stream."""
        if self._level is None:
            return self.graph.stream(initial_state, config, **kwargs)
        return self._collect.stream(self._settings(), initial_state, config, kwargs)

    def astream(self, initial_state: Any, config: Any = None,
                **kwargs: Any) -> AsyncIterator[Any]:
        """graph.astream(...), profiled when enabled."""
        if self._level is None:
            return self.graph.astream(initial_state, config, **kwargs)
        return self._collect.astream(self._settings(), initial_state, config, kwargs)

    @property
    def history(self) -> deque[dict[str, Any]]:
        """A summary dict per run (total_ms, level, mode, error, and from
        STANDARD up "nodes": {node: {execution_time, calls, memory_usage}}),
        the last history_size runs."""
        return self._collect.history

    @property
    def _last(self) -> RunData | None:
        return self._collect.last

    @property
    def _pools(self) -> Any:
        return self._collect.pools

    # -- results: common ---------------------------------------------------
    def _data(self) -> RunData:
        rd = self._collect.last
        if rd is None:
            if self._level is None:
                raise RuntimeError(
                    "no profile: profiling is not enabled (Debugger(graph, enable_profiling=True) "
                    "or debugger.enable_profiling(level=...)), then run the graph"
                )
            raise RuntimeError("no profile yet: run the graph with debugger.run(initial_state)")
        return rd

    def _show(self, file: IO[str] | None, get: Callable[[], Any],
              render: Callable[[Any], str]) -> None:
        """What every show_* does: the no-run message, else render(get())."""
        f = file if file is not None else sys.stdout
        try:
            self._data()
        except RuntimeError as e:
            print(str(e), file=f)
            return
        f.write(render(get()))

    # -- timing --------------------------------------------------------------
    def get_node_timing(self, nodes: list[str] | None = None) -> dict[str, NodeTiming]:
        """Per node: Setup / Computation / State update split, calls, average, share."""
        return analysis.node_timing(self._data(), nodes)

    def get_profile_report(self) -> ProfileReport:
        """The data of show_profile_report: total, per-node time and share, memory."""
        rd = self._data()
        return analysis.profile_report(rd, analysis.node_timing(rd), analysis.memory_profile(rd))

    def show_profile_report(self, file: IO[str] | None = None) -> None:
        self._show(file, self.get_profile_report, render_text.profile_report)

    def show_node_timing(self, detailed: bool = False, nodes: list[str] | None = None,
                         file: IO[str] | None = None) -> None:
        self._show(file, lambda: self.get_node_timing(nodes),
                   lambda t: render_text.node_timing(t, detailed))

    def export_timing_data(self, output_file: str | os.PathLike[str] = "timing_data.json",
                           include_engine_profile: bool = False) -> str:
        """Write the timing data (and optionally the engine's full report) as JSON.

        The file is replaced atomically: on failure OSError names the path and
        an earlier file at that path is left intact.  Returns the path.
        """
        rd = self._data()
        text = render_json.timing_export(analysis.run_summary(rd), analysis.node_timing(rd),
                                         rd.report if include_engine_profile else None)
        return atomic_write(output_file, text)

    def export_profile(self, output_file: str | os.PathLike[str]) -> str:
        """Write the engine's own JSON export (schema kfm.profile) of the last run."""
        self._data().session.export(os.fspath(output_file))
        return os.fspath(output_file)

    # -- memory ----------------------------------------------------------------
    def get_memory_profile(self) -> MemoryProfile:
        return analysis.memory_profile(self._data())

    def show_memory_profile(self, file: IO[str] | None = None) -> None:
        self._show(file, self.get_memory_profile, render_text.memory_profile)

    def get_memory_timeline(self, max_points: int | None = None) -> MemoryTimeline:
        """RSS over the run: points {t_ms, rss_mb, node} from samples and transitions."""
        return analysis.memory_timeline(self._data(), max_points)

    def show_memory_timeline(self, width: int = 40, max_points: int = 30,
                             file: IO[str] | None = None) -> None:
        self._show(file, lambda: self.get_memory_timeline(max_points=max_points),
                   lambda tl: render_text.memory_timeline(tl, width))

    def get_node_memory_usage(self) -> dict[str, NodeMemory]:
        m = self.get_memory_profile()
        m.require("memory")
        return m.nodes

    def show_node_memory_usage(self, file: IO[str] | None = None) -> None:
        self._show(file, self.get_memory_profile, render_text.node_memory_usage)

    # -- resources ------------------------------------------------------------
    def get_cpu_usage(self) -> CpuUsage:
        rd = self._data()
        return analysis.cpu_usage(rd, analysis.node_timing(rd))

    def show_cpu_usage(self, file: IO[str] | None = None) -> None:
        self._show(file, self.get_cpu_usage, render_text.cpu_usage)

    def get_network_usage(self) -> NetworkUsage:
        return analysis.network_usage(self._data())

    def show_network_usage(self, file: IO[str] | None = None) -> None:
        self._show(file, self.get_network_usage, render_text.network_usage)

    def get_gpu_usage(self) -> GpuUsage:
        return analysis.gpu_usage(self._data())

    def show_gpu_usage(self, file: IO[str] | None = None) -> None:
        self._show(file, self.get_gpu_usage, render_text.gpu_usage)

    def get_resource_utilization(self) -> ResourceUtilization:
        rd = self._data()
        return analysis.resource_utilization(
            rd, analysis.memory_profile(rd), analysis.cpu_usage(rd, analysis.node_timing(rd)),
            analysis.network_usage(rd), analysis.gpu_usage(rd))

    def show_resource_utilization(self, file: IO[str] | None = None) -> None:
        self._show(file, self.get_resource_utilization, render_text.resource_utilization)

    # -- state size -------------------------------------------------------------
    def get_state_size_timeline(self) -> StateSizeTimeline:
        return analysis.state_size_timeline(self._data())

    def show_state_size_timeline(self, file: IO[str] | None = None) -> None:
        self._show(file, self.get_state_size_timeline, render_text.state_size_timeline)

    def get_node_state_impact(self) -> dict[str, StateImpact]:
        """Raises Unavailable (a RuntimeError) when state tracking was off."""
        return analysis.node_state_impact(self._data())

    def get_state_size_analysis(self) -> StateSizeAnalysis:
        return analysis.state_size_analysis(self._data())

    def show_state_size_analysis(self, file: IO[str] | None = None) -> None:
        self._show(file, self.get_state_size_analysis, render_text.state_size_analysis)

    def show_node_state_impact(self, file: IO[str] | None = None) -> None:
        def get() -> tuple[dict[str, StateImpact] | None, str]:
            try:
                return self.get_node_state_impact(), ""
            except Unavailable as e:
                return None, e.reason

        self._show(file, get, lambda r: render_text.node_state_impact(*r))

    # -- analysis ----------------------------------------------------------------
    def _evidence(self) -> analysis.Evidence:
        """The last run's analysis inputs, gathered once per run."""
        rd = self._data()
        ev = self._ev
        if ev is None or ev.rd is not rd:
            ev = self._ev = analysis.gather(rd)
        return ev

    def get_critical_path(self) -> CriticalPath:
        """The last run's supersteps, and each node's time on its critical path."""
        return self._evidence().cp

    def identify_bottlenecks(self, threshold_percent: float = 10.0) -> dict[str, Bottleneck]:
        """Nodes taking at least threshold_percent of the run on its critical
        path (a parallel branch the run did not wait for is not one), slowest
        first, each with the findings that classify it."""
        return analysis.bottlenecks(self._evidence(), threshold_percent)

    def analyze_bottlenecks(self, bottlenecks: Any = None, file: IO[str] | None = None) -> None:
        """Print the bottlenecks (identify_bottlenecks() when not given), with
        their evidence and suggestions."""
        def get() -> tuple[Any, ...]:
            ev = self._evidence()
            b = analysis.as_bottlenecks(ev, bottlenecks)
            return ev.cp, b, analysis.suggestions_for(ev, list(b))

        self._show(file, get, lambda r: render_findings.bottlenecks(*r))

    def get_optimization_suggestions(self, bottlenecks: Any = None) -> dict[str, NodeSuggestions]:
        """{node: {"issue", "suggestion", "expected_gain_ms", "suggestions": [...]}}
        for the bottlenecks given (identify_bottlenecks() when None)."""
        ev = self._evidence()
        return analysis.suggestions_for(ev, list(analysis.as_bottlenecks(ev, bottlenecks)))

    def identify_slow_nodes(self, threshold_percent: float = 10.0) -> list[str]:
        """Names of the nodes taking at least threshold_percent of the run on
        its critical path, slowest first."""
        return analysis.slow_nodes(self._evidence(), threshold_percent)

    def get_slowest_node(self) -> str | None:
        """The node with the most time on the run's critical path."""
        return analysis.slowest_node(self._evidence())

    def get_node_performance(self, node: str) -> NodeAnalysis:
        """Everything measured for node, its findings and what-if estimates."""
        return analysis.node_analysis(self._evidence(), node)

    def analyze_node_performance(self, node: str, file: IO[str] | None = None) -> None:
        """Print get_node_performance(node) and the node's suggestions."""
        self._show(file, lambda: (self.get_node_performance(node),
                                  analysis.node_suggestions(self._evidence(), node)),
                   lambda r: render_findings.node_analysis(*r))

    def get_node_optimization_suggestions(self, node: str) -> list[Suggestion]:
        """The node's suggestions, largest expected gain first (each with
        issue, suggestion, expected_gain_ms, gain_basis, evidence)."""
        return analysis.node_suggestions(self._evidence(), node)

    def estimate_speedup(self, node: str, factor: float) -> WhatIf:
        """How long the last run would have taken had node's Computation been
        factor times faster (math.inf: free), replayed over its supersteps."""
        return analysis.estimate_speedup(self._evidence(), node, factor)

    # -- reports -----------------------------------------------------------------
    def get_performance_report(self) -> PerformanceReport:
        """Every section of the last run at once: the data of the HTML report
        and of the Markdown summary."""
        ev = self._evidence()
        title = getattr(self.graph, "name", None) or type(self.graph).__name__
        return analysis.performance_report(ev, str(title), environment(ev.rd), self._metrics,
                                           runs=len(self.history))

    def generate_performance_summary(
            self, output_file: str | os.PathLike[str] = "performance_summary.md") -> str:
        """Write a GitHub-flavoured Markdown summary (tables) of the last run,
        atomically; returns the path."""
        return atomic_write(output_file, render_markdown.summary(self.get_performance_report()))

    def generate_performance_report(
            self, output_file: str | os.PathLike[str] = "performance_report.html",
            include_visualizations: bool = True) -> str:
        """Write one self-contained HTML file (inline CSS, charts as inline
        PNG, no request to any host) with every section, the charts, the
        bottlenecks and suggestions and the environment; returns the path."""
        charts = self._report_charts() if include_visualizations else None
        return atomic_write(output_file, render_html.report(self.get_performance_report(), charts))

    def _report_charts(self) -> dict[str, tuple[str, bytes | str]]:
        """The charts of the report as PNG; one that fails says why instead."""
        out: dict[str, tuple[str, bytes | str]] = {}
        for title, draw in (
                ("Timeline", self._timeline_png), ("Execution time by node",
                                                   lambda: self._comparison("execution_time")),
                ("Memory usage", self._memory_png),
                ("Execution time heatmap", lambda: self._heatmap("execution_time"))):
            try:
                out[title] = ("png", draw())
            except Exception as e:  # noqa: BLE001 - a chart's failure is its section's
                out[title] = ("unavailable", f"{type(e).__name__}: {e}")
        return out

    # -- charts and traces ---------------------------------------------------------
    @staticmethod
    def _fmt(output_file: str | os.PathLike[str]) -> str:
        return "svg" if os.fspath(output_file).lower().endswith(".svg") else "png"

    def _timeline_png(self, fmt: str = "png") -> bytes:
        return render_charts.timeline_chart(visual.timeline(self._data()), fmt)

    def _comparison(self, metric: str, fmt: str = "png") -> bytes:
        custom = {n: r.values for n, r in ((n, self.get_performance_metric(n))
                                           for n in self._metrics)}
        return render_charts.comparison_chart(
            visual.node_comparison(self._data(), metric, custom=custom), fmt)

    def _memory_png(self, fmt: str = "png") -> bytes:
        return render_charts.memory_chart(visual.memory_usage(self._data()), fmt)

    def _heatmap(self, metric: str, fmt: str = "png",
                 log_file: str | os.PathLike[str] | None = None) -> bytes:
        log = log_file if log_file is not None else getattr(self._continuous, "path", None)
        runs = (continuous.log_runs(continuous.read_log(log)) if log is not None else
                [(f"run {i + 1}", h["nodes"]) for i, h in enumerate(self.history) if "nodes" in h])
        data = (visual.heatmap_runs(runs, metric) if len(runs) >= 2
                else visual.heatmap_slices(self._data(), metric))
        return render_charts.heatmap_chart(data, fmt)

    def visualize_performance_timeline(
            self, output_file: str | os.PathLike[str] = "performance_timeline.png") -> str:
        """Lanes per thread, node spans split into Setup / Computation / State
        update, supersteps shaded, RSS and CPU beneath (PNG, or SVG by the
        file's extension).  Written atomically; returns the path."""
        return atomic_write(output_file, self._timeline_png(self._fmt(output_file)))

    def visualize_node_comparison(
            self, metric: str = "execution_time",
            output_file: str | os.PathLike[str] = "node_comparison.png") -> str:
        """One bar per node (top 30 and the others) of execution_time,
        memory_usage, cpu_time, state_size, calls, a registered metric or an
        engine metric by name; ValueError lists the accepted metrics."""
        return atomic_write(output_file, self._comparison(metric, self._fmt(output_file)))

    def visualize_memory_usage(
            self, output_file: str | os.PathLike[str] = "memory_usage.png") -> str:
        """RSS over the run with the node running at each moment, the peak
        marked at its node."""
        return atomic_write(output_file, self._memory_png(self._fmt(output_file)))

    def visualize_performance_heatmap(
            self, metric: str = "execution_time",
            output_file: str | os.PathLike[str] = "performance_heatmap.png",
            log_file: str | os.PathLike[str] | None = None) -> str:
        """Nodes x runs: the last 20 runs of the continuous-profiling log
        (log_file, or this Debugger's when enabled), else this Debugger's
        runs in history with per-node figures (from STANDARD up), else nodes
        x time slices of the last run; metric execution_time or memory_usage."""
        return atomic_write(output_file, self._heatmap(metric, self._fmt(output_file), log_file))

    def export_trace(self, output_file: str | os.PathLike[str] = "trace.json",
                     max_events: int = 500_000) -> str:
        """The last run as a Chrome / Perfetto trace (ui.perfetto.dev,
        chrome://tracing): spans per thread, supersteps, counter tracks; at
        most max_events events, the drop count written into the trace."""
        td = trace_data(self._data(), max_events=max_events,
                        graph_name=getattr(self.graph, "name", None))
        return atomic_write(output_file, render_trace.chrome_trace(td))

    # -- custom metrics ----------------------------------------------------------
    def register_performance_metric(
            self, name: str, fn: Callable[[dict[str, Any], dict[str, Any]], Any]) -> None:
        """Register fn(node_stats, execution_stats) under name (replacing an
        earlier one): evaluated per node of the last run by
        get_performance_metric / show_performance_metric."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"metric name must be a non-empty string, not {name!r}")
        if not callable(fn):
            raise TypeError(f"metric {name!r}: fn must be callable "
                            f"fn(node_stats, execution_stats), not {type(fn).__name__}")
        self._metrics[name] = fn

    def _metric(self, name: str) -> Callable[..., Any]:
        fn = self._metrics.get(name)
        if fn is None:
            known = ", ".join(repr(n) for n in self._metrics) or "none registered"
            raise KeyError(f"unknown performance metric {name!r}; registered: {known}")
        return fn

    def get_performance_metric(self, name: str) -> MetricResult:
        """The metric on every node of the last run (values, and errors for
        the nodes where it raised)."""
        return analysis.evaluate_metric(self._evidence(), name, self._metric(name))

    def show_performance_metric(self, name: str, file: IO[str] | None = None) -> None:
        self._metric(name)
        self._show(file, lambda: self.get_performance_metric(name), render_findings.metric)

    # -- across runs: benchmarks and optimization experiments -------------------
    def run_benchmark(self, config: dict[str, Any],
                      progress: bool | None = None) -> BenchmarkResults:
        """Every test case under every config, config["runs"] times,
        interleaved, a warm-up run each; kept for compare_benchmark_configs.
        A config's flags reach the nodes as config["configurable"];
        cache_enabled / enable_caching also compile in LangGraph's node cache."""
        self._benchmark = bench.run_benchmark(self.measure, config, progress,
                                              features=partial(apply_features, self.graph))
        return self._benchmark

    def show_benchmark_results(self, results: BenchmarkResults | None = None,
                               file: IO[str] | None = None) -> None:
        res = results if results is not None else self._benchmark
        if res is None:
            raise RuntimeError("no benchmark yet: run debugger.run_benchmark(config) first")
        print(render_bench.benchmark_results(res), end="", file=file or sys.stdout)

    def compare_benchmark_configs(self, a: str, b: str,
                                  file: IO[str] | None = None) -> BenchComparison:
        """Config b against config a in the last run_benchmark, per case and
        node, with intervals and a verdict; printed and returned."""
        c = bench.compare_benchmark_configs(self._benchmark, a, b)
        print(render_bench.bench_comparison(c), end="", file=file or sys.stdout)
        return c

    def run_optimization_experiments(self, initial_state: Any, strategies: dict[str, Any],
                                     runs_per_strategy: int = 3,
                                     progress: bool | None = None) -> ExperimentResults:
        """Each strategy (flags or a callable) runs_per_strategy times,
        interleaved, compared with the baseline."""
        return bench.run_optimization_experiments(
            self.measure, initial_state, strategies, runs_per_strategy,
            features=partial(apply_features, self.graph), progress=progress)

    def show_optimization_experiments(self, results: ExperimentResults,
                                      file: IO[str] | None = None) -> None:
        print(render_bench.optimization_experiments(results), end="", file=file or sys.stdout)

    def get_recommended_strategy(self, results: ExperimentResults) -> str:
        """The best strategy when it beats the baseline significantly, else
        the baseline (the reason: results.recommendation_reason)."""
        return bench.recommended_strategy(results)[0]

    # -- continuous profiling --------------------------------------------------------
    def enable_continuous_profiling(
            self, log_file: str | os.PathLike[str] = "continuous_profile.log",
            metrics: Any = continuous.DEFAULT_METRICS, max_bytes: int = continuous.MAX_BYTES,
            backups: int = continuous.BACKUPS, otlp: str | bool | None = None,
            otlp_headers: dict[str, str] | None = None) -> continuous.ContinuousLog:
        """After every profiled run append its figures to log_file as one
        JSON line, safely from any number of processes, rotated at max_bytes
        keeping `backups` older files.  OSError naming log_file now if it
        cannot be written; later failures are counted and logged once, never
        raised into a run.  Profiling off is turned on (STANDARD when
        memory_usage is logged, else BASIC).  otlp: also send each run to an
        OpenTelemetry collector over OTLP/HTTP (its base URL, or True for
        the OTEL_EXPORTER_OTLP_* variables): spans per node, metrics for
        trends (workflows/otlp.py)."""
        new = continuous.ContinuousLog(log_file, metrics, max_bytes, backups)
        try:
            sink = _otlp.OtlpExporter(otlp, otlp_headers) if otlp else None
        except BaseException:
            new.close()
            raise
        self.disable_continuous_profiling()
        self._continuous, self._otlp = new, sink
        self._collect.on_finish = self._log_run
        if self._level is None:
            self.enable_profiling(ProfilingLevel.STANDARD if "memory_usage" in new.metrics
                                  else ProfilingLevel.BASIC)
        return new

    def _log_run(self, rd: RunData) -> None:
        log = self._continuous
        if log is not None:
            sink = None if self._otlp is None else partial(self._otlp.export_run, rd)
            continuous.after_run(log, lambda: analysis.run_figures(rd),
                                 getattr(self.graph, "name", None), rd.level, sink)

    def disable_continuous_profiling(self) -> None:
        """Stop logging runs (the log stays); queued OTLP exports are sent."""
        if self._continuous is not None:
            self._continuous.close()
            self._continuous = None
        if self._otlp is not None:
            self._otlp.shutdown()
            self._otlp = None
        self._collect.on_finish = None

    def get_profiling_trends(self, log_file: str | os.PathLike[str] | None = None,
                             metrics: Any = None, nodes: Any = None,
                             last: int | None = None) -> Trends:
        """Trends per node and metric (and total_ms) over the runs in
        log_file (default: this Debugger's log), written by any process."""
        if log_file is None:
            if self._continuous is None:
                raise RuntimeError("no continuous profiling log: call debugger."
                                   "enable_continuous_profiling(log_file=...) or pass log_file")
            log_file = self._continuous.path
        return continuous.trends(continuous.read_log(log_file), metrics, nodes, last)

    def show_profiling_trends(self, log_file: str | os.PathLike[str] | None = None,
                              metrics: Any = None, nodes: Any = None,
                              file: IO[str] | None = None) -> None:
        f = file if file is not None else sys.stdout
        try:
            t = self.get_profiling_trends(log_file, metrics, nodes)
        except (RuntimeError, FileNotFoundError) as e:  # nothing logged yet: say so
            print(str(e), file=f)
            return
        f.write(render_trends.trends_text(t))

    # -- baselines and regressions ---------------------------------------------------
    def save_performance_baseline(
            self, name: str, metrics: Sequence[str] = ("execution_time", "memory_usage"),
            folder: str | os.PathLike[str] | None = None) -> str:
        """Save the runs in history as baseline name, <folder>/<name>.json
        (default .kfm/baselines, created): every run's samples, not one run,
        with this environment's fingerprint.  From STANDARD up the runs carry
        per-node figures; at BASIC only each run's total time.  Atomic;
        ValueError for a bad name or no runs; returns the path."""
        path = _baseline.save_baseline(name, self.history, metrics,
                                       _baseline.DEFAULT_FOLDER if folder is None else folder)
        # The runs after this one are the "current" runs of compare_with_baseline.
        self._baseline_marks[os.path.realpath(path)] = self.history[-1]
        return path

    def compare_with_baseline(self, name: str, folder: str | os.PathLike[str] | None = None
                              ) -> BaselineComparison:
        """This Debugger's runs against baseline name (or a path): the runs
        made since it saved that baseline, else its whole history.  A mapping
        {metric: change} ("execution_time", "memory_usage", and per node
        "execution_time (<node>)", ...), each with both medians,
        percent_change and its 95% interval, the test, p_value (Holm over
        nodes), significant and a verdict; a differing environment warns."""
        b = _baseline.load_baseline(name, _baseline.DEFAULT_FOLDER if folder is None else folder)
        mark = self._baseline_marks.get(os.path.realpath(b.path or ""))
        return _baseline.compare(b, _baseline.runs_since(self.history, mark))

    def check_performance_regressions(self, name: str, threshold_percent: float = 10.0,
                                      folder: str | os.PathLike[str] | None = None
                                      ) -> dict[str, MetricChange]:
        """The changes of compare_with_baseline(name) that are significant
        and worse (more time or memory) by more than threshold_percent."""
        return _baseline.regressions(self.compare_with_baseline(name, folder), threshold_percent)

    # -- memory across runs --------------------------------------------------------
    def analyze_memory_growth(self) -> float:
        """MB the last run left resident (RSS at its end less at its start);
        Unavailable (a RuntimeError) below STANDARD."""
        m = self.get_memory_profile()
        m.require("memory growth")
        return float(m.growth_mb or 0.0)

    def detect_memory_leaks(self) -> MemoryLeaks:
        """{node: {"accumulated", "per_run", "confidence", ...}} of the nodes
        whose retained memory grows run after run over this Debugger's
        history (from STANDARD up, at least 5 runs: ``.reason`` says why
        nothing was tested); a node that allocates and frees is not one.
        With trace_allocations, each leaking node's top allocation sites
        and every node's retained Python allocations (``.allocations``)."""
        return analysis.detect_leaks(list(self.history),
                                     alloc=allocations.evidence(self._collect.allocations))

    # -- misc --------------------------------------------------------------
    def get_errors(self) -> list[dict[str, Any]]:
        return list(self._data().rec.errors)

    def engine_report(self) -> dict[str, Any]:
        """The engine's raw report of the last run (every engine node and metric)."""
        return self._data().report

    def close(self) -> None:
        """Free the engine sessions now (the last run's data goes with them)
        and let the lent pools' threads end."""
        self._collect.close()


def state_size(state: Any) -> tuple[int, int]:
    """(bytes, items) of a state as state tracking measures it."""
    return _state_size(state)


__all__ = ["Debugger", "LogLevel", "ProfilingLevel", "NodeTiming", "NodeMemory", "MemoryProfile",
           "NodeResources", "StateImpact", "state_size"]
