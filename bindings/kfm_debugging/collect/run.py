"""RunData: one finished run as the analysis layer reads it.

It holds the engine session of the run and the Recorder's tables, and reads
the engine lazily: the report, trace events and samples are fetched on first
use (a show_*/get_* call), not at the end of every run, so a run that nobody
reads costs no report.  analysis/ reads a run only through this object's
attributes and methods, never through the engine itself.
"""

from __future__ import annotations

import json
from typing import Any

from ..model.level import ProfilingLevel
from ..model.names import GRAPH, SUFFIXES, engine_name


class RunData:
    """A finished run: the engine report and what the recorder kept."""

    __slots__ = ("level", "session", "rec", "wall_ns", "error", "mode", "_report",
                 "_metric_names", "_events", "_samples", "_acts", "requested", "_busy",
                 "env_note", "t0_perf", "_structure", "tokens", "memo", "thread_names",
                 "_totals")

    def __init__(self, level: ProfilingLevel, session: Any, rec: Any, wall_ns: int,
                 error: BaseException | None, mode: str) -> None:
        self.level = level
        self.session = session
        self.rec = rec
        self.wall_ns = wall_ns
        self.error = error
        self.mode = mode
        self._report: dict[str, Any] | None = None
        # {engine name: (count, total_ns, RSS inclusive or None)}: the part of
        # the report every run's summary needs (Session.totals, a fifth of
        # the full report's cost), or read from the report once it exists.
        self._totals: dict[str, tuple[int, float, float | None]] | None = None
        self._metric_names: list[str] | None = None
        self._events: dict[str, Any] | None = None
        self._samples: dict[str, Any] | None = None
        self._acts: list[tuple[Any, ...]] | None = None
        # The level the Debugger asked for; level is the session's own
        # (KFM_CONFIG may override it).
        self.requested = level
        self._busy: dict[str, tuple[float, float]] | None = None
        # KFM_CONFIG as the engine saw it when the session was created:
        # (session, KFM_CONFIG value, engine error if it was ignored) or None.
        self.env_note: tuple[Any, str, str | None] | None = None
        # perf_counter_ns when the graph's run began (the recorder's clock;
        # the engine's trace has its own, see engine_offset_ns).
        self.t0_perf = 0
        # () -> the graph's GraphStructure (collect/structure.py), computed
        # once per graph on first use.
        self._structure: Any = None
        # LLM token usage of the run (collect/tokens.py TokenUsage) or None.
        self.tokens: Any = None
        # What analysis/ derives from this run, computed once: a finished
        # run's data no longer changes (its session restarts only for the
        # next run, which gets a RunData of its own).
        self.memo: dict[Any, Any] = {}
        # OS thread id -> Python name of the threads still alive when the
        # run ended (a trace names its lanes with them; LangGraph's own
        # pool threads have ended by then and keep the engine's number).
        self.thread_names: dict[int, str] = {}

    # -- what the engine measured (read on first use) ----------------------
    @property
    def report(self) -> dict[str, Any]:
        if self._report is None:
            self._report = self.session.report()
        return self._report

    @property
    def metric_names(self) -> list[str]:
        if self._metric_names is None:
            self._metric_names = [m["name"] for m in self.report["metrics"]]
        return self._metric_names

    def events(self) -> dict[str, Any]:
        if self._events is None:
            self._events = self.session.events()
        return self._events

    def samples(self) -> dict[str, Any]:
        if self._samples is None:
            self._samples = self.session.samples()
        return self._samples

    def backend_details(self, name: str) -> dict[str, Any]:
        """A backend's own description (topology, GPU tables), or {"unavailable": why}."""
        key = ("backend", name)
        d = self.memo.get(key)
        if d is None:
            try:
                d = json.loads(self.session.backend_json(name))
            except (RuntimeError, ValueError) as e:
                d = {"unavailable": str(e)}
            self.memo[key] = d
        return d

    @staticmethod
    def probe_backends() -> list[dict[str, Any]]:
        """The engine's builtin backends and why each is (un)available."""
        from .._kfm import backends

        return backends()

    def env_override(self) -> dict[str, Any] | None:
        """What KFM_CONFIG did to the run's session: None when unset."""
        note = self.env_note
        if note is None or note[0] is not self.session:
            return None
        _s, env, ignored = note
        return {"KFM_CONFIG": env, "requested_level": self.requested.name,
                "level": self.level.name, "ignored": ignored,
                "level_overridden": ignored is None and self.level != self.requested}

    def structure(self) -> Any:
        """What each node reads and writes, from the graph (or None)."""
        f = self._structure
        return f() if f is not None else None

    def engine_offset_ns(self) -> float:
        """Engine trace time minus perf_counter_ns: the GRAPH span opens
        within a few microseconds of t0_perf (the recorder's tables, async
        spans and state tracking spans use perf_counter_ns)."""
        starts = [a[2] for a in self.activations() if a[0] == GRAPH]
        return min(starts) - self.t0_perf if starts else 0.0

    # -- engine node helpers -------------------------------------------------
    def enode(self, name: str) -> dict[str, Any] | None:
        return _lookup(self.report["nodes"], name)

    def totals(self) -> dict[str, tuple[int, float, float | None]]:
        if self._totals is None:
            if self._report is not None:
                self._totals = {k: (v["count"], v["total_ns"], v["inclusive"].get("proc.rss"))
                                for k, v in self._report["nodes"].items()}
            else:
                self._totals = self.session.totals("proc.rss")
        return self._totals

    def rss_rise(self, name: str) -> float | None:
        """The RSS change over an engine span's calls (bytes): 0.0 for a span
        that did not run, None when RSS was not measured."""
        t = _lookup(self.totals(), name)
        if t is None:
            return 0.0 if any(v[2] is not None for v in self.totals().values()) else None
        return t[2]

    def span_ns(self, name: str) -> tuple[int, float]:
        """(count, wall ns) of an engine span, async spans and setups from the recorder."""
        if name.endswith("/setup"):
            s = self.rec.setup_wall.get(name[:-6])
            return (s[0], float(s[1])) if s else (0, 0.0)
        w = self.rec.async_wall.get(name)
        if w is not None:
            return w[0], float(w[1])
        n = _lookup(self.totals(), name)
        if n is None:
            return 0, 0.0
        return int(n[0]), float(n[1])

    def metric(self, name: str, metric: str, kind: str = "inclusive") -> float | None:
        n = self.enode(name)
        if n is None:
            return 0.0 if metric in self.metric_names else None
        return n[kind].get(metric)

    def activations(self) -> list[tuple[Any, ...]]:
        """(engine name, thread, t0_ns, t1_ns, rss0, rss1, parent) from the
        trace, in the order they ended; parent is the engine name of the span
        that enclosed it on its thread (None at the thread's top)."""
        if self._acts is not None:
            return self._acts
        ev = self.events()
        names = ev["names"]
        t = ev["t_ns"].tolist()
        th = ev["thread"].tolist()
        nd = ev["node"].tolist()
        kd = ev["kind"].tolist()
        rss_i = ev["metrics"].index("proc.rss") if "proc.rss" in ev["metrics"] else -1
        vals = ev["values"].tolist() if rss_i >= 0 else None
        stacks: dict[int, list[tuple[int, float, float | None]]] = {}
        acts: list[tuple[Any, ...]] = []
        for i in range(len(t)):
            st = stacks.setdefault(th[i], [])
            rss = vals[i][rss_i] if vals is not None else None
            if kd[i] == 0:
                st.append((nd[i], t[i], rss))
            else:
                while st:
                    node, t0, r0 = st.pop()
                    if node == nd[i]:
                        acts.append((names.get(node), th[i], t0, t[i], r0, rss,
                                     names.get(st[-1][0]) if st else None))
                        break
        self._acts = acts
        return acts

    def busy(self) -> dict[str, tuple[float, float]]:
        """Per engine task span name: (sum, union) of its activations' wall
        ns.  Concurrent activations (parallel branches, Send fan-outs, async
        tasks interleaved on one loop) overlap, so their sum can exceed the
        run's wall time; their union cannot."""
        if self._busy is not None:
            return self._busy
        spans: dict[str, list[tuple[float, float]]] = {}
        for key, flat in self.rec.async_spans.items():
            spans[key] = [(flat[i], flat[i + 1]) for i in range(0, len(flat), 2)]
        try:
            acts = self.activations()
        except (RuntimeError, ValueError, KeyError):  # no trace in this session
            acts = []
        for name, _th, t0, t1, _r0, _r1, _p in acts:
            if name is not None and name not in self.rec.async_wall:
                spans.setdefault(name, []).append((t0, t1))
        out: dict[str, tuple[float, float]] = {}
        for key, iv in spans.items():
            iv.sort()
            tot = uni = 0.0
            end = -1.0
            for a, b in iv:
                tot += b - a
                if a >= end:
                    uni += b - a
                    end = b
                elif b > end:
                    uni += b - end
                    end = b
            out[key] = (tot, uni)
        self._busy = out
        return out


def _lookup(table: dict[str, Any], name: str) -> Any:
    """table[name], where a long name is kept under its shortened engine name."""
    n = table.get(name)
    if n is None and len(name.encode()) > 230:
        for suf in SUFFIXES:
            if name.endswith(suf):
                return table.get(engine_name(name[: -len(suf)]) + suf)
        return table.get(engine_name(name))
    return n
