"""Performance baselines and regression checks across code changes.

A baseline is a named file of runs (``<folder>/<name>.json``): every run's
samples, not one run, because run times vary by 5-30% from run to run and
only two sets of runs can be compared honestly (analysis/stats.py: ratio of
medians with its 95% interval and a two-sided test).  A change is a
regression only when it is significant and worse by more than a threshold;
the per-node tests are Holm-adjusted, so that a graph of many nodes does not
turn noise into a finding.  The environment's fingerprint is saved with the
runs: when it differs, the comparison warns, since another CPU or another
LangGraph explains a change as well as the code does.

    path = save_baseline("v1", runs)                 # runs: Debugger.history entries
    comparison = compare(load_baseline("v1"), later_runs)
    for metric, change in comparison.items(): ...
    found = regressions(comparison, threshold_percent=10)
"""

from __future__ import annotations

import datetime
import errno
import math
import os
import statistics
import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from .._files import atomic_write
from ..analysis import stats
from .._platform import differences, fingerprint
from ..model.baseline import (
    METRICS,
    UNITS,
    Baseline,
    BaselineComparison,
    MetricChange,
    RunSample,
    direction,
)

__all__ = ["DEFAULT_FOLDER", "DEFAULT_METRICS", "BaselineEnvironmentWarning", "Baseline",
           "BaselineComparison", "MetricChange", "compare", "fingerprint", "list_baselines",
           "load_baseline", "regressions", "runs_since", "save_baseline"]

DEFAULT_FOLDER = ".kfm/baselines"
DEFAULT_METRICS = ("execution_time", "memory_usage")
# Metrics that have a whole-run figure as well as per-node ones, and where
# higher is worse.
RUN_METRICS = ("execution_time", "memory_usage")
# RSS moves by pages and allocator chunks: a median below this is too near 0
# for a ratio (0.01 -> 0.05 MB is not "+400%"), so such a memory change is
# judged by its size in MB instead, and must reach this size to count.
MEMORY_FLOOR_MB = 1.0
_SEPARATORS = tuple({"/", "\\", os.sep} | ({os.altsep} if os.altsep else set()))


class BaselineEnvironmentWarning(UserWarning):
    """The baseline was saved in another environment (fingerprint fields differ)."""


# -- saving and loading ---------------------------------------------------------------
def _check_name(name: Any) -> str:
    if not isinstance(name, str) or not name:
        raise ValueError(f"baseline name must be a non-empty string, not {name!r}")
    why = ("contains a path separator" if any(s in name for s in _SEPARATORS) else
           'contains ".."' if ".." in name else
           "has a character that is not printable" if not name.isprintable() else
           'ends with ".json" (give the name without it)' if name.endswith(".json") else
           "is too long for a file name" if len(name.encode("utf-8", "replace")) > 250 else "")
    if why:
        raise ValueError(f"bad baseline name {name!r}: it {why}; a name is one file name "
                         f"in the baselines folder")
    return name


def _check_metrics(metrics: Any) -> list[str]:
    ms = [metrics] if isinstance(metrics, str) else list(metrics)
    bad = [m for m in ms if m not in METRICS]
    if bad or not ms:
        raise ValueError(f"metrics must be some of {', '.join(METRICS)}; "
                         + (f"unknown: {', '.join(map(repr, bad))}" if bad else "none given"))
    return list(dict.fromkeys(ms))


def _number(v: Any) -> float | None:
    if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
        return float(v)
    return None


def _sample(run: Any, metrics: Sequence[str], i: int) -> RunSample | None:
    """A run (a Debugger.history entry, run_figures' dict or a RunSample) as
    the samples a baseline keeps; None for a run whose graph raised (its
    time is that of the failure, not of the graph)."""
    if isinstance(run, RunSample):
        return run
    if not isinstance(run, Mapping):
        raise ValueError(f"run {i}: expected a dict with total_ms (a Debugger.history entry "
                         f"or run_figures' result), not {type(run).__name__}")
    if run.get("error"):
        return None
    total = _number(run.get("total_ms"))
    if total is None:
        raise ValueError(f"run {i}: no numeric total_ms ({run.get('total_ms')!r})")
    nodes: dict[str, dict[str, float]] = {}
    for n, figs in (run.get("nodes") or {}).items():
        if isinstance(figs, Mapping):
            nodes[str(n)] = {m: v for m in metrics if (v := _number(figs.get(m))) is not None}
    level = run.get("level")
    return RunSample(total_ms=total, level=None if level is None else str(level),
                     memory_usage=_number(run.get("memory_usage")), nodes=nodes)


def _samples(runs: Iterable[Any], metrics: Sequence[str]) -> tuple[list[RunSample], int]:
    """(the runs' samples, how many runs raised and were left out)."""
    out: list[RunSample] = []
    failed = 0
    for i, r in enumerate(runs):
        s = _sample(r, metrics, i)
        if s is None:
            failed += 1
        else:
            out.append(s)
    return out, failed


def save_baseline(name: str, runs: Iterable[Mapping[str, Any]],
                  metrics: Sequence[str] = DEFAULT_METRICS,
                  folder: str | os.PathLike[str] = DEFAULT_FOLDER) -> str:
    """Save runs (Debugger.history entries or run_figures() dicts) as
    baseline name, in <folder>/<name>.json (the folder is created): each
    run's total_ms and its nodes' figures of metrics (execution_time,
    memory_usage, calls), with this environment's fingerprint.  Runs whose
    graph raised are left out, with a warning.  The file is replaced
    atomically: on failure OSError names it and an earlier file is intact.
    Returns the path."""
    name = _check_name(name)
    ms = _check_metrics(metrics)
    samples, failed = _samples(runs, ms)
    if not samples:
        raise ValueError(f"no runs to save as baseline {name!r}: run the graph first "
                         f"(8 runs or more a side give the rank test)"
                         + (f"; the {failed} run(s) given raised" if failed else ""))
    if failed:
        warnings.warn(f"baseline {name!r}: {failed} run(s) that raised left out", stacklevel=2)
    created = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    b = Baseline(name=name, created=created, fingerprint=fingerprint(), metrics=ms,
                 runs=samples)
    folder = os.fspath(folder)
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as e:
        raise OSError(e.errno, f"cannot create the baselines folder {folder!r}: {e.strerror}",
                      folder) from None
    return atomic_write(os.path.join(folder, name + ".json"), b.to_json())


def list_baselines(folder: str | os.PathLike[str] = DEFAULT_FOLDER) -> list[str]:
    """The names of the baselines in folder (sorted; none when it is missing)."""
    try:
        files = os.listdir(folder)
    except OSError:
        return []
    return sorted(f[:-5] for f in files if f.endswith(".json") and len(f) > 5)


def _resolve(name_or_path: str | os.PathLike[str], folder: str | os.PathLike[str]) -> str:
    """A path as given when it has a separator (or is an existing .json
    file), else the name's file in folder."""
    s = os.fspath(name_or_path)
    if not s:
        raise ValueError("baseline name or path is empty")
    if any(sep in s for sep in _SEPARATORS) or (s.endswith(".json") and os.path.isfile(s)):
        return s
    return os.path.join(os.fspath(folder), s if s.endswith(".json") else s + ".json")


def load_baseline(name_or_path: str | os.PathLike[str],
                  folder: str | os.PathLike[str] = DEFAULT_FOLDER) -> Baseline:
    """The baseline saved under a name in folder, or at a path.  A missing
    one raises FileNotFoundError naming the path and the baselines there;
    a damaged one ValueError naming the path and the fault."""
    path = _resolve(name_or_path, folder)
    try:
        with open(path, "rb") as f:
            text = f.read()
    except FileNotFoundError:
        where = os.path.dirname(path) or "."
        names = list_baselines(where)
        have = (f"baselines in {where!r}: {', '.join(names)}" if names else
                f"no baselines in {where!r}" if os.path.isdir(where) else
                f"the folder {where!r} does not exist")
        raise FileNotFoundError(errno.ENOENT, f"no baseline at {path!r}; {have}") from None
    except OSError as e:
        raise OSError(e.errno, f"cannot read baseline {path!r}: {e.strerror}", path) from None
    try:
        return Baseline.from_json(text, path)
    except ValueError as e:
        raise ValueError(f"baseline {path!r} is damaged: {e}") from None


# -- comparing --------------------------------------------------------------------------
def _run_value(r: RunSample, metric: str) -> float | None:
    """The whole run's figure: total_ms, or its memory (the run-level value
    when recorded, else the sum of its nodes' memory impacts)."""
    if metric == "execution_time":
        return r.total_ms
    if r.memory_usage is not None:
        return r.memory_usage
    vals = [f.get("memory_usage") for f in r.nodes.values()]
    if not vals or any(v is None for v in vals):
        return None
    return float(sum(vals))  # type: ignore[arg-type]


def _why_absent(runs: list[RunSample], metric: str, side: str) -> str | None:
    """Why runs have no per-node figure of metric (None when some have)."""
    if any(metric in f for r in runs for f in r.nodes.values()):
        return None
    levels = sorted({r.level for r in runs if r.level})
    at = f" (profiled at {', '.join(levels)})" if levels else ""
    if not any(r.nodes for r in runs):
        basic = "; BASIC keeps only totals, per-node figures need STANDARD or above" \
            if "BASIC" in levels else ""
        return f"{side} have no per-node figures{at}{basic}"
    return f"{side} have no {metric} figures{at}"


def _measure(metric: str, node: str | None, a: list[float], b: list[float]) -> tuple[
        MetricChange, bool]:
    """The change of metric from a to b before any adjustment, and whether
    its size rules out "no change" (the interval excludes 0, or for a
    memory median near 0, the change reaches MEMORY_FLOOR_MB)."""
    ma, mb = statistics.median(a), statistics.median(b)
    c = MetricChange(baseline=ma, current=mb, percent_change=None, interval=None,
                     significant=False, p_value=None, test="", n_baseline=len(a),
                     n_current=len(b), verdict="", metric=metric, node=node,
                     unit=UNITS[metric], delta=mb - ma)
    floor = MEMORY_FLOOR_MB if metric == "memory_usage" else 0.0
    if ma != 0 and abs(ma) >= floor:
        r = stats.compare(a, b)
        c.percent_change, c.p_value, c.test = r.percent_change, r.p_value, r.test
        if r.ratio_low is not None and r.ratio_high is not None:
            # percent = sign(median a) * (ratio - 1): a negative memory median
            # (a node that frees) turns the ratio's interval around.
            s = 100.0 if ma > 0 else -100.0
            lo, hi = sorted((s * (r.ratio_low - 1.0), s * (r.ratio_high - 1.0)))
            c.interval = [lo, hi]
        sized = c.interval is not None and not c.interval[0] <= 0.0 <= c.interval[1]
    else:
        # No percentage around a zero (or sub-floor) median, only the test;
        # equal medians are still no change.
        if mb == ma:
            c.percent_change = 0.0
        if min(len(a), len(b)) >= stats.MIN_RUNS:
            r = stats.compare(a, b)
            c.p_value, c.test = r.p_value, r.test
        sized = abs(mb - ma) >= max(floor, 1e-12)
    c.p_value_raw = c.p_value
    return c, sized


def _size_text(c: MetricChange) -> str:
    u = c.unit
    if c.interval is None and c.baseline is not None and c.baseline == c.current:
        return f"medians equal, {c.baseline:.2f} {u}"
    if c.percent_change is None:
        return (f"{c.delta:+.2f} {u}; baseline median {c.baseline:.2f} {u}, too near 0 for "
                f"a percentage")
    iv = "" if c.interval is None else \
        f", 95% interval {c.interval[0]:+.1f}% to {c.interval[1]:+.1f}%"
    return f"{c.percent_change:+.1f}%{iv}"


def _finish(c: MetricChange, sized: bool, p: float | None, adjusted: str = "") -> MetricChange:
    """Significance and verdict from the (adjusted) p-value."""
    c.p_value = p
    if p is None:
        c.verdict = (f"too few runs to tell ({c.n_baseline} and {c.n_current}; at least "
                     f"{stats.MIN_RUNS} a side)")
        return c
    c.significant = p < stats.ALPHA and sized
    ptxt = f"p={p:.3g}{adjusted}"
    if c.significant:
        c.verdict = f"{direction(c.metric, c.delta)}: {_size_text(c)} ({ptxt})"
    else:
        c.verdict = f"no significant difference ({_size_text(c)}, {ptxt})"
    return c


def _node_order(*sides: list[RunSample]) -> list[str]:
    seen: dict[str, None] = {}
    for runs in sides:
        for r in runs:
            seen.update(dict.fromkeys(r.nodes))
    return list(seen)


def compare(baseline: Baseline, current_runs: Baseline | Iterable[Mapping[str, Any]],
            metrics: Sequence[str] | None = None) -> BaselineComparison:
    """current_runs (Debugger.history entries, run_figures() dicts, or
    another Baseline, e.g. a CI job's runs) against baseline: per metric of
    the baseline (or of metrics), the whole run ("execution_time",
    "memory_usage") and every node ("execution_time (<node>)", ...).

    Each change holds both medians, the percent change with its 95%
    interval, the test, its p-value (Holm-adjusted over a metric's nodes),
    significance and a verdict.  What cannot be compared (memory at BASIC,
    a node on one side only, runs that raised) is left out and said in
    notes.  A fingerprint that differs from the baseline's is named in
    fingerprint_differs and warned about once (BaselineEnvironmentWarning).
    """
    notes: list[str] = []
    want = list(baseline.metrics) if metrics is None else _check_metrics(metrics)
    unsaved = [m for m in want if m not in baseline.metrics]
    if unsaved:
        notes.append(f"{', '.join(unsaved)}: left out: not saved in baseline {baseline.name!r} "
                     f"(it keeps {', '.join(baseline.metrics)})")
    want = [m for m in want if m in baseline.metrics]

    if isinstance(current_runs, Baseline):
        cur, failed = list(current_runs.runs), 0
        cur_fp, cur_name = current_runs.fingerprint, current_runs.name
    else:
        cur, failed = _samples(current_runs, want)
        cur_fp, cur_name = fingerprint(), "current runs"
    if failed:
        notes.append(f"{failed} current run(s) raised: left out (their time is the failure's)")
    if not cur:
        raise ValueError(f"no current runs to compare with baseline {baseline.name!r}: run the "
                         f"graph first")
    base = baseline.runs

    differ = differences(baseline.fingerprint, cur_fp)
    if differ:
        detail = ", ".join(f"{k} ({baseline.fingerprint.get(k)!r} -> {cur_fp.get(k)!r})"
                           for k in differ)
        notes.append(f"the environment differs from the baseline's: {detail}")
        warnings.warn(f"baseline {baseline.name!r} was saved in another environment: {detail}; "
                      f"that alone can change run times", BaselineEnvironmentWarning,
                      stacklevel=2)
    lb, lc = sorted({r.level for r in base if r.level}), sorted({r.level for r in cur if r.level})
    if lb and lc and lb != lc:
        notes.append(f"profiled at {', '.join(lb)} in the baseline and at {', '.join(lc)} now: "
                     f"the profiler's own cost differs by level")

    out = BaselineComparison(baseline=baseline.name, current=cur_name, notes=notes,
                             fingerprint_differs=differ,
                             baseline_fingerprint=dict(baseline.fingerprint),
                             current_fingerprint=dict(cur_fp))
    nodes = _node_order(base, cur)
    for m in want:
        why = [w for w in (_why_absent(base, m, "the baseline's runs"),
                           _why_absent(cur, m, "the current runs")) if w]
        if m in RUN_METRICS:
            a = [v for r in base if (v := _run_value(r, m)) is not None]
            b = [v for r in cur if (v := _run_value(r, m)) is not None]
            if a and b:
                c, sized = _measure(m, None, a, b)
                out.changes[m] = _finish(c, sized, c.p_value)
            else:
                notes.append(f"{m}: left out for the run" + (
                    f" and its nodes: {'; '.join(why)}" if why else
                    ": a run's memory is the sum of its nodes', and some lack theirs"))
                if why:
                    continue
        if why:
            notes.append(f"{m} (node): left out: {'; '.join(why)}")
            continue
        measured: dict[str, tuple[MetricChange, bool]] = {}
        for n in nodes:
            a = [f[m] for r in base if m in (f := r.nodes.get(n, {}))]
            b = [f[m] for r in cur if m in (f := r.nodes.get(n, {}))]
            if a and b:
                measured[n] = _measure(m, n, a, b)
        adj = stats.holm({n: c.p_value for n, (c, _) in measured.items()
                          if c.p_value is not None})
        tag = f", Holm-adjusted over {len(adj)} nodes" if len(adj) > 1 else ""
        for n, (c, sized) in measured.items():
            out.changes[f"{m} ({n})"] = _finish(c, sized, adj.get(n), tag)
    # A side with no per-node figures at all (BASIC) is said once above,
    # not once per node.
    both = any(r.nodes for r in base) and any(r.nodes for r in cur)
    for n in nodes if both else ():
        in_b, in_c = any(n in r.nodes for r in base), any(n in r.nodes for r in cur)
        if in_b != in_c:
            notes.append(f"node {n!r}: only in the {'baseline' if in_b else 'current'} runs, "
                         f"not compared")
    return out


def regressions(comparison: BaselineComparison | Mapping[str, MetricChange],
                threshold_percent: float = 10.0) -> dict[str, MetricChange]:
    """The changes of a comparison that are significant and worse (more time
    or memory) by more than threshold_percent (0 to 1000).  A memory change
    from a median near 0, which has no percentage, counts when significant
    (it is then at least MEMORY_FLOOR_MB)."""
    t = threshold_percent
    if not isinstance(t, (int, float)) or isinstance(t, bool) or not 0.0 <= t <= 1000.0:
        raise ValueError(f"threshold_percent must be a number from 0 to 1000, not {t!r}")
    out: dict[str, MetricChange] = {}
    for key, c in comparison.items():
        if (c.metric in RUN_METRICS and c.significant and c.delta is not None and c.delta > 0
                and (c.percent_change is None or c.percent_change > t)):
            out[key] = c
    return out


def runs_since(history: Iterable[dict[str, Any]], mark: object | None) -> list[dict[str, Any]]:
    """The runs of a Debugger's history after mark (its last entry when a
    baseline was saved); all of them when mark is None or has since left the
    history (history_size dropped it: every run kept is newer)."""
    runs = list(history)
    for i, r in enumerate(runs):
        if r is mark:
            return runs[i + 1:]
    return runs
