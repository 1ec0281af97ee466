"""Benchmarks and optimization experiments: many profiled runs, compared.

Run times vary by 5-30% from run to run, so a benchmark that runs config A
five times and then config B five times mostly measures what changed on the
machine in between.  Here every repetition runs each test case under every
config back to back, in an order rotated from one case and repetition to the
next (no config always runs first, right after a slow one, or last), after
one uncounted warm-up run of each config on each case (imports, lazily built
objects and caches are paid there, not in the first counted run).  The runs
are then summarised and compared with analysis/stats.py: medians with
intervals, a named test, Holm's adjustment wherever several questions are
asked at once, and "no significant difference" as a real answer.

Every function takes ``run(state, config, graph) -> figures``, the contract
of ``Debugger.measure``, never a Debugger: the workflows are testable with
any run function, and the Debugger wires each in one line.  A config's flags
reach the graph as ``config["configurable"]``; flags naming a LangGraph
feature are applied to the graph for real by ``features(flags) -> (graph or
None, notes)``, which the Debugger passes in (collect/features.py
apply_features on its graph): like every workflow, this module knows
neither LangGraph nor the engine.
"""

from __future__ import annotations

import copy
import logging
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..analysis.stats import ALPHA, compare, holm, summarize
from ..model.bench import (
    AdjustedComparison,
    BenchComparison,
    BenchmarkResults,
    CaseComparison,
    ExperimentResults,
    RunErrors,
    RunSet,
)
from ..model.stats import Comparison

log = logging.getLogger("kfm_debugging")

Run = Callable[[Any, Any, Any], dict[str, Any]]
# flags -> (the graph with the LangGraph features they name, or None for the
# run function's own graph; one note per feature flag: applied, or why not)
Features = Callable[[dict[str, Any]], tuple[Any, list[str]]]

_KEYS = ("runs", "configs", "test_cases", "warmup")
_WARMUP = "one uncounted run of each config on each case before the measured runs"
_NO_WARMUP = "none: the first measured run of each config pays for its warm-up"
_WARMUP_EXP = "one uncounted run of each strategy before the measured runs"
_NO_WARMUP_EXP = "none: the first measured run of each strategy pays for its warm-up"


# -- configs ---------------------------------------------------------------------
@dataclass
class _Variant:
    """A config ready to run: the invoke config and graph handed to run()
    (None: the run function's defaults), or why it cannot run at all."""

    name: str
    config: Any = None
    graph: Any = None
    notes: list[str] = field(default_factory=list)
    failed: str | None = None


def _callable_name(fn: Any) -> str | None:
    name = getattr(fn, "name", None)
    if not isinstance(name, str) or not name:
        name = getattr(fn, "__name__", None)
    return name if isinstance(name, str) and name else None


def _positive_int(v: Any, what: str) -> int:
    if not isinstance(v, int) or isinstance(v, bool) or v < 1:
        raise ValueError(f"{what} must be an int >= 1, not {v!r}")
    return v


def _spec_ok(spec: Any, what: str) -> None:
    if not isinstance(spec, Mapping) and not callable(spec):
        raise ValueError(f"{what} must be a dict of flags or a callable returning a graph or an "
                         f"invoke config, not {spec!r}")


def _check_benchmark(config: Any) -> tuple[int, list[tuple[str, Any]], list[tuple[str, Any]], bool]:
    """(runs, [(name, spec)], [(case id, state)], warmup), or ValueError
    naming the value that is wrong."""
    if not isinstance(config, Mapping):
        raise ValueError(f"benchmark config must be a dict with {', '.join(_KEYS[:3])}, "
                         f"not {config!r}")
    unknown = [k for k in config if k not in _KEYS]
    if unknown:
        raise ValueError(f"unknown benchmark config key(s) {', '.join(map(repr, unknown))}; "
                         f"known: {', '.join(_KEYS)}")
    for k in _KEYS[:3]:
        if k not in config:
            raise ValueError(f"benchmark config needs {k!r} (has {', '.join(map(repr, config))})")
    runs = _positive_int(config["runs"], "benchmark 'runs'")
    warmup = config.get("warmup", True)
    if not isinstance(warmup, bool):
        raise ValueError(f"benchmark 'warmup' must be True or False, not {warmup!r}")

    cfgs = config["configs"]
    if not isinstance(cfgs, Sequence) or isinstance(cfgs, (str, bytes)) or not cfgs:
        raise ValueError(f"benchmark 'configs' must be a non-empty list of configs, not {cfgs!r}")
    named: list[tuple[str, Any]] = []
    for i, c in enumerate(cfgs):
        if isinstance(c, Mapping):
            name = c.get("name")
            if not isinstance(name, str) or not name:
                raise ValueError(f"config {i} needs a 'name' (a non-empty str): {c!r}")
            named.append((name, {k: v for k, v in c.items() if k != "name"}))
        elif callable(c):
            name = _callable_name(c)
            if name is None:
                raise ValueError(f"config {i} ({c!r}) is a callable without a name: give it a "
                                 "'name' attribute or a __name__")
            named.append((name, c))
        else:
            _spec_ok(c, f"config {i}")
    _no_duplicates([n for n, _ in named], "config name")

    raw_cases = config["test_cases"]
    if (not isinstance(raw_cases, Sequence) or isinstance(raw_cases, (str, bytes))
            or not raw_cases):
        raise ValueError(f"benchmark 'test_cases' must be a non-empty list of input states "
                         f"(dicts), not {raw_cases!r}")
    cases: list[tuple[str, Any]] = []
    for i, c in enumerate(raw_cases):
        if not isinstance(c, Mapping):
            raise ValueError(f"test case {i} must be a dict (the input state, with an optional "
                             f"'id'), not {c!r}")
        cid = c.get("id", f"case{i}")
        if not isinstance(cid, str) or not cid:
            raise ValueError(f"test case {i}: 'id' must be a non-empty str, not {cid!r}")
        cases.append((cid, {k: v for k, v in c.items() if k != "id"}))
    _no_duplicates([c for c, _ in cases], "test case id")
    return runs, named, cases, warmup


def _no_duplicates(names: list[str], what: str) -> None:
    seen: set[str] = set()
    for n in names:
        if n in seen:
            raise ValueError(f"duplicate {what} {n!r}: each must be unique")
        seen.add(n)


def _variant(name: str, spec: Any, features: Features | None) -> _Variant:
    if isinstance(spec, Mapping):
        flags = dict(spec)
        if features is None:
            return _Variant(name, {"configurable": flags})
        try:
            g, notes = features(flags)
        except Exception as e:  # noqa: BLE001 - a config that cannot be built is a result
            return _Variant(name, failed=f"applying its flags failed: {type(e).__name__}: {e}")
        if notes and g is None:  # a feature flag the graph could not take
            log.warning("config %r: %s", name, "; ".join(notes))
        return _Variant(name, {"configurable": flags}, g, list(notes))
    try:
        out = spec()
    except Exception as e:  # noqa: BLE001 - a config that cannot be built is a result
        return _Variant(name, failed=f"building the config failed: {type(e).__name__}: {e}")
    if isinstance(out, Mapping):
        return _Variant(name, dict(out), None, ["invoke config from a callable"])
    if out is None:
        return _Variant(name, failed="the config callable returned None, neither a graph "
                                     "nor an invoke config dict")
    # Anything else is taken for a graph: run() says if it is none (each run's error).
    return _Variant(name, None, out, ["graph rebuilt by a callable"])


# -- running ---------------------------------------------------------------------
def _bar(progress: Any, total: int, desc: str) -> Any:
    """A tqdm bar on a terminal's stderr, else None (no output at all)."""
    if progress not in (None, True, False):
        raise ValueError(f"progress must be None, True or False, not {progress!r}")
    if progress is False or not getattr(sys.stderr, "isatty", lambda: False)():
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, desc=desc, unit="run", file=sys.stderr, leave=False)


def _fresh(state: Any) -> Any:
    """A copy of a case's state for one run: a node that changes its input
    in place must not change the next run's input."""
    try:
        return copy.deepcopy(state)
    except Exception:  # noqa: BLE001 - not copyable: the same object, as the user gave it
        return state


def _one(run: Run, v: _Variant, state: Any) -> dict[str, Any]:
    cfg = v.config
    if isinstance(cfg, dict):  # LangGraph may add to a config: each run gets its own
        cfg = {k: dict(x) if isinstance(x, dict) else x for k, x in cfg.items()}
    try:
        fig = run(_fresh(state), cfg, v.graph)
    except Exception as e:  # noqa: BLE001 - measure() reports errors; another run() may raise
        return {"total_ms": None, "error": f"{type(e).__name__}: {e}", "nodes": {}}
    return dict(fig)


def _execute(run: Run, variants: list[_Variant], cases: list[tuple[str, Any]], reps: int,
             warmup: bool, progress: Any, desc: str
             ) -> tuple[dict[str, dict[str, list[dict[str, Any]]]], list[dict[str, Any]]]:
    """Every run, interleaved: (figures[config][case] of the counted runs,
    the order of all runs)."""
    live = [v for v in variants if v.failed is None]
    figures: dict[str, dict[str, list[dict[str, Any]]]] = {
        v.name: {c: [] for c, _ in cases} for v in variants}
    order: list[dict[str, Any]] = []
    total = len(live) * len(cases) * (reps + (1 if warmup else 0))
    bar = _bar(progress, total, desc)
    try:
        if warmup:
            for cid, state in cases:
                for v in live:
                    _one(run, v, state)
                    order.append({"config": v.name, "case": cid, "repetition": None})
                    if bar is not None:
                        bar.update()
        k = len(live)
        for r in range(reps):
            for i, (cid, state) in enumerate(cases):
                # Rotated by repetition and case: each config takes each place
                # in the order equally often, so drift favours none.
                s = (r + i) % k if k else 0
                for v in live[s:] + live[:s]:
                    figures[v.name][cid].append(_one(run, v, state))
                    order.append({"config": v.name, "case": cid, "repetition": r})
                    if bar is not None:
                        bar.update()
    finally:
        if bar is not None:
            bar.close()
    return figures, order


def _runset(figs: list[dict[str, Any]]) -> RunSet:
    ok = [f for f in figs if not f.get("error")]
    names: list[str] = []
    for f in ok:
        names.extend(n for n in (f.get("nodes") or {}) if n not in names)

    def node(f: dict[str, Any], n: str, key: str) -> float:
        return float(((f.get("nodes") or {}).get(n) or {}).get(key) or 0.0)

    import numpy as np

    return RunSet(
        total=summarize([f["total_ms"] for f in ok]),
        nodes={n: summarize([node(f, n, "execution_time") for f in ok]) for n in names},
        calls={n: float(np.median([node(f, n, "calls") for f in ok])) for n in names},
    )


def _errors(figs: list[dict[str, Any]], v: _Variant, reps: int) -> RunErrors | None:
    if v.failed is not None:
        return RunErrors(count=reps, first=v.failed)
    bad = [f["error"] for f in figs if f.get("error")]
    return RunErrors(count=len(bad), first=str(bad[0])) if bad else None


def _level(figures: Mapping[str, Mapping[str, list[dict[str, Any]]]]) -> str:
    for per_case in figures.values():
        for figs in per_case.values():
            for f in figs:
                if f.get("level"):
                    return str(f["level"])
    return ""


# -- benchmark -------------------------------------------------------------------
def run_benchmark(run: Run, config: Mapping[str, Any], progress: bool | None = None, *,
                  features: Features | None = None) -> BenchmarkResults:
    """Run every test case under every config config["runs"] times,
    interleaved (see the module docstring), and summarise the runs.

    config: {"runs": int >= 1, "configs": [...], "test_cases": [...],
    "warmup": bool (default True)}.  A config is {"name": ..., **flags} (the
    flags reach the nodes as config["configurable"]) or a callable (named by
    its ``name`` or ``__name__``) returning a graph or an invoke config.  A
    test case is the input state, "id" naming it (default "case<i>").
    progress: a tqdm bar on stderr when it is a terminal (None/True), none
    with False.  features: applies the flags naming LangGraph features
    (see Features); without it flags only reach the nodes.  A config that
    fails is counted in errors with its first message; the others still
    run."""
    runs, named, cases, warmup = _check_benchmark(config)
    variants = [_variant(n, spec, features) for n, spec in named]
    figures, order = _execute(run, variants, cases, runs, warmup, progress, "benchmark")
    out = BenchmarkResults(runs=runs, configs=[v.name for v in variants],
                           cases=[c for c, _ in cases], warmup=warmup,
                           warmup_policy=_WARMUP if warmup else _NO_WARMUP, order=order,
                           figures=figures, level=_level(figures))
    for v in variants:
        out.features[v.name] = list(v.notes)
        out.stats[v.name] = {c: _runset(figures[v.name][c]) for c, _ in cases}
        errs = {c: e for c, _ in cases
                if (e := _errors(figures[v.name][c], v, runs)) is not None}
        if errs:
            out.errors[v.name] = errs
    return out


def _change(c: Comparison, p_adj: float | None, what: str) -> str:
    """'-42.0% (ratio 0.580, 95% interval 0.55-0.61, Holm-adjusted p=0.001)'."""
    p = "" if p_adj is None else f"{what + ' ' if what else ''}p={p_adj:.3g}"
    if c.ratio_low is None or c.ratio_high is None or c.ratio is None:
        return f"{c.percent_change:+.1f}% ({p})"
    return (f"{c.percent_change:+.1f}% (ratio {c.ratio:.3f}, 95% interval "
            f"{c.ratio_low:.3f}-{c.ratio_high:.3f}, {p})")


def _adjusted(c: Comparison, p_adj: float | None, what: str) -> AdjustedComparison:
    sig = bool(c.significant and p_adj is not None and p_adj < ALPHA)
    if c.p_value is None or c.percent_change is None:
        verdict = c.verdict
    elif sig:
        verdict = ("slower" if (c.delta or 0) > 0 else "faster") + ": " + _change(c, p_adj, what)
    else:
        verdict = "no significant difference: " + _change(c, p_adj, what)
    return AdjustedComparison(comparison=c, p_adjusted=p_adj, significant=sig, verdict=verdict)


def _family(comps: Mapping[str, Comparison], what: str) -> dict[str, AdjustedComparison]:
    """Each comparison with its p-value Holm-adjusted over the family."""
    adj = holm({k: c.p_value for k, c in comps.items() if c.p_value is not None})
    return {k: _adjusted(c, adj.get(k), what) for k, c in comps.items()}


def _known(results: BenchmarkResults, name: str) -> None:
    if name not in results.stats:
        raise KeyError(f"no config {name!r} in the benchmark; known: "
                       f"{', '.join(map(repr, results.configs))}")


def compare_benchmark_configs(results: BenchmarkResults | None, a: str, b: str
                              ) -> BenchComparison:
    """Config b against config a on every case: total time (Holm over the
    cases, since the verdict speaks for all of them) and each node (Holm
    over the case's nodes).  KeyError for a config name not benchmarked;
    RuntimeError when there are no results (None) yet."""
    if results is None:
        raise RuntimeError("no benchmark results yet: run debugger.run_benchmark(config) first")
    _known(results, a)
    _known(results, b)
    totals: dict[str, Comparison] = {}
    out = BenchComparison(a=a, b=b)
    node_sets: dict[str, dict[str, AdjustedComparison]] = {}
    for case in results.cases:
        ra, rb = results.stats[a][case], results.stats[b][case]
        totals[case] = compare(ra.total.samples, rb.total.samples)
        names = list(ra.nodes) + [n for n in rb.nodes if n not in ra.nodes]
        node_sets[case] = _family(
            {n: compare(ra.nodes[n].samples if n in ra.nodes else [],
                        rb.nodes[n].samples if n in rb.nodes else []) for n in names},
            "Holm-adjusted" if len(names) > 1 else "")
    adj_totals = _family(totals, "Holm-adjusted" if len(totals) > 1 else "")
    for case in results.cases:
        out.cases[case] = CaseComparison(total=adj_totals[case], nodes=node_sets[case])
    out.verdict = _bench_verdict(a, b, out)
    return out


def _pct(c: AdjustedComparison) -> str:
    pc, p = c.comparison.percent_change, c.p_adjusted
    return (f"{pc:+.1f}%" if pc is not None else "n/a") + (f" (p={p:.2g})" if p is not None else "")


def _bench_verdict(a: str, b: str, cmp: BenchComparison) -> str:
    n = len(cmp.cases)
    faster, slower, same, missing = [], [], [], []
    for case, cc in cmp.cases.items():
        t = cc.total
        if t.comparison.p_value is None:
            missing.append(f"{case} ({t.comparison.verdict})")
        elif t.significant:
            (slower if (t.comparison.delta or 0) > 0 else faster).append(f"{case} {_pct(t)}")
        else:
            same.append(f"{case} {_pct(t)}")
    parts = []
    if faster:
        parts.append(f"{b} is faster than {a} on {len(faster)} of {n} case(s): {', '.join(faster)}")
    if slower:
        parts.append(("" if faster else f"{b} is ") + f"slower than {a} on {len(slower)} of {n} "
                     f"case(s): {', '.join(slower)}")
    if parts:
        if same:
            parts.append(f"no significant difference on {', '.join(same)}")
    elif same:
        parts.append(f"no significant difference between {a} and {b} ({', '.join(same)})")
    if missing:
        parts.append(f"not compared: {', '.join(missing)}")
    return "; ".join(parts)


# -- optimization experiments ----------------------------------------------------
def _baseline(strategies: Mapping[str, Any]) -> tuple[str, str]:
    if "baseline" in strategies:
        return "baseline", "the strategy named 'baseline'"
    for name, spec in strategies.items():
        if isinstance(spec, Mapping) and not spec:
            return name, f"{name!r}, the first strategy with no flags (none is named 'baseline')"
    first = next(iter(strategies))
    return first, (f"{first!r}, the first strategy (none is named 'baseline' and every one "
                   "sets flags)")


def run_optimization_experiments(run: Run, initial_state: Any, strategies: Mapping[str, Any],
                                 runs_per_strategy: int = 3, *, features: Features | None = None,
                                 progress: bool | None = None, warmup: bool = True
                                 ) -> ExperimentResults:
    """Run initial_state under every strategy runs_per_strategy times,
    interleaved with a warm-up run each, and compare each with the baseline.

    strategies: {name: flags dict | callable}, as benchmark configs (flags
    reach the nodes in configurable; features applies the feature flags).
    The baseline is the strategy named "baseline", else the first with no
    flags, else the first (baseline_reason says which rule chose it)."""
    if not isinstance(strategies, Mapping) or not strategies:
        raise ValueError(f"strategies must be a non-empty dict {{name: flags dict or callable}}, "
                         f"not {strategies!r}")
    for name, spec in strategies.items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"strategy names must be non-empty str, not {name!r}")
        _spec_ok(spec, f"strategy {name!r}")
    reps = _positive_int(runs_per_strategy, "runs_per_strategy")
    if not isinstance(warmup, bool):
        raise ValueError(f"warmup must be True or False, not {warmup!r}")
    base, why = _baseline(strategies)
    variants = [_variant(n, spec, features) for n, spec in strategies.items()]
    case = "input"
    figs, order = _execute(run, variants, [(case, initial_state)], reps, warmup, progress,
                           "experiments")
    out = ExperimentResults(runs_per_strategy=reps, strategies=[v.name for v in variants],
                            baseline=base, baseline_reason=why, warmup=warmup,
                            warmup_policy=_WARMUP_EXP if warmup else _NO_WARMUP_EXP,
                            order=[{k: v for k, v in o.items() if k != "case"} for o in order],
                            figures={n: f[case] for n, f in figs.items()}, level=_level(figs))
    for v in variants:
        out.features[v.name] = list(v.notes)
        out.stats[v.name] = _runset(out.figures[v.name])
        e = _errors(out.figures[v.name], v, reps)
        if e is not None:
            out.errors[v.name] = e
    out.comparisons = _family(
        {n: compare(out.stats[base].total.samples, out.stats[n].total.samples)
         for n in out.strategies if n != base},
        "Holm-adjusted" if len(out.strategies) > 2 else "")
    out.recommendation, out.recommendation_reason = recommended_strategy(out)
    return out


def recommended_strategy(results: ExperimentResults) -> tuple[str, str]:
    """(strategy, reason): the fastest strategy that beats the baseline
    significantly (Holm over the strategies) with no failed run; otherwise
    the baseline, and the reason lists how each strategy did."""
    base = results.baseline
    if not results.comparisons:
        return base, f"{base} is the only strategy"
    wins = [n for n, c in results.comparisons.items()
            if c.significant and (c.comparison.delta or 0) < 0 and n not in results.errors]
    if wins:
        best = min(wins, key=lambda n: results.stats[n].total.median or 0.0)
        c = results.comparisons[best]
        others = [n for n in wins if n != best]
        what = "Holm-adjusted" if len(results.comparisons) > 1 else ""
        return best, (f"{best} is significantly faster than {base}: "
                      f"{_change(c.comparison, c.p_adjusted, what)}"
                      + (f"; also faster, less so: {', '.join(others)}" if others else ""))
    if base in results.errors:
        e = results.errors[base]
        return base, (f"the baseline {base} failed in {e.count} of {results.runs_per_strategy} "
                      f"run(s) ({e.first}): no strategy can be recommended over it")
    said = []
    for n, c in results.comparisons.items():
        if n in results.errors:
            e = results.errors[n]
            said.append(f"{n} failed in {e.count} of {results.runs_per_strategy} run(s) "
                        f"({e.first})")
        elif c.comparison.p_value is None:
            said.append(f"{n}: {c.comparison.verdict}")
        else:
            said.append(f"{n} {_pct(c)}" + (", significantly slower" if c.significant else ""))
    holm_note = " (p Holm-adjusted over the strategies)" if len(results.comparisons) > 1 else ""
    return base, (f"no strategy is significantly faster than {base}{holm_note}: "
                  + ", ".join(said))
