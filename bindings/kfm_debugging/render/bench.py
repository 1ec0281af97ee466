"""Text reports of the workflows across runs: a benchmark, the comparison of
two of its configs, optimization experiments.  From result types only
(model/bench.py), like text.py.

A median is never printed without its spread: each row gives the number of
counted runs, the median, the interquartile range and the 95% interval of
the median, so a reader sees at once whether two rows can be told apart.
"""

from __future__ import annotations

import io

from ..model.bench import (
    AdjustedComparison,
    BenchComparison,
    BenchmarkResults,
    ExperimentResults,
    RunErrors,
    RunSet,
)
from ..model.stats import SampleStats

SLOWEST = 3  # nodes listed per config and case


def _num(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.2f}"


def _interval(s: SampleStats) -> str:
    if s.ci_low is None or s.ci_high is None:
        return "n/a"
    return f"{s.ci_low:.2f}-{s.ci_high:.2f}"


def _errors(e: RunErrors | None) -> str:
    return "0" if e is None else f"{e.count} ({e.first})"


def _table(rows: list[list[str]], f: io.StringIO) -> None:
    """Columns padded to their widest cell; the last column is left free
    (error messages are long)."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for r in rows:
        cells = [c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))]
        print("  " + "  ".join(cells + [r[-1]]).rstrip(), file=f)


_HEAD = ["config", "n", "median ms", "IQR ms", "95% interval", "errors"]


def _row(name: str, s: SampleStats, e: RunErrors | None) -> list[str]:
    return [name, str(s.n), _num(s.median), _num(s.iqr), _interval(s), _errors(e)]


def _slowest(rs: RunSet) -> str:
    if rs.total.n == 0:
        return "no successful run"
    top = sorted(rs.nodes.items(), key=lambda kv: -(kv[1].median or 0.0))[:SLOWEST]
    # A node with no call in the median run was served from the cache (or skipped).
    return ", ".join(f"{n} {_num(s.median)}ms" + (" (0 calls)" if rs.calls.get(n) == 0 else "")
                     for n, s in top) or "no node ran"


def _notes(features: dict[str, list[str]], f: io.StringIO) -> None:
    notes = [(n, x) for n, xs in features.items() for x in xs]
    if notes:
        print("How the configs were applied:", file=f)
        for n, x in notes:
            print(f"- {n}: {x}", file=f)


def benchmark_results(r: BenchmarkResults) -> str:
    f = io.StringIO()
    print("Benchmark Results:", file=f)
    print(f"{r.runs} run(s) per config and case, interleaved (config order rotated per case "
          f"and repetition); warm-up: {r.warmup_policy}" + (f"; level {r.level}" if r.level else ""),
          file=f)
    _notes(r.features, f)
    for case in r.cases:
        print("", file=f)
        print(f"Case {case}: total time per run", file=f)
        _table([_HEAD] + [_row(c, r.stats[c][case].total, r.errors.get(c, {}).get(case))
                          for c in r.configs], f)
    print("", file=f)
    print(f"Slowest nodes (median ms per run, top {SLOWEST}):", file=f)
    for c in r.configs:
        for case in r.cases:
            print(f"- {c} / {case}: {_slowest(r.stats[c][case])}", file=f)
    return f.getvalue()


def _line(what: str, c: AdjustedComparison) -> str:
    return f"{what}: {c.verdict}" + (" *" if c.significant else "")


def bench_comparison(c: BenchComparison) -> str:
    f = io.StringIO()
    print(f"Benchmark Comparison: {c.b} against {c.a}", file=f)
    for case, cc in c.cases.items():
        print("", file=f)
        print(f"Case {case}", file=f)
        print("- " + _line("total", cc.total), file=f)
        test = cc.total.comparison.test
        for n, nc in cc.nodes.items():
            print("  - " + _line(n, nc), file=f)
        if test:
            print(f"  (test: {test}; * significant at 5%)", file=f)
    print("", file=f)
    print(f"Verdict: {c.verdict}", file=f)
    return f.getvalue()


def optimization_experiments(r: ExperimentResults) -> str:
    f = io.StringIO()
    print("Optimization Experiments:", file=f)
    print(f"{r.runs_per_strategy} run(s) per strategy, interleaved; warm-up: {r.warmup_policy}"
          + (f"; level {r.level}" if r.level else ""), file=f)
    print(f"Baseline: {r.baseline_reason}", file=f)
    _notes(r.features, f)
    print("", file=f)
    rows = [["strategy", "n", "median ms", "IQR ms", "95% interval", "vs baseline", "errors"]]
    for s in r.strategies:
        st = r.stats[s].total
        cmp = r.comparisons.get(s)
        if cmp is None:
            vs = "baseline"
        elif cmp.comparison.percent_change is None:
            vs = "n/a"
        else:
            vs = (f"{cmp.comparison.percent_change:+.1f}%"
                  + (f" p={cmp.p_adjusted:.2g}" if cmp.p_adjusted is not None else "")
                  + (" *" if cmp.significant else ""))
        rows.append(_row(s, st, r.errors.get(s))[:5] + [vs, _errors(r.errors.get(s))])
    _table(rows, f)
    print("", file=f)
    print(f"Slowest nodes (median ms per run, top {SLOWEST}):", file=f)
    for s in r.strategies:
        print(f"- {s}: {_slowest(r.stats[s])}", file=f)
    print("", file=f)
    print(f"Recommended strategy: {r.recommendation}", file=f)
    print(f"Reason: {r.recommendation_reason}", file=f)
    return f.getvalue()
