"""Statistics for comparisons across runs.

Run times vary by 5-30% from run to run, so no comparison here rests on two
single runs: a set of runs is summarised by its median with the interquartile
range and a bootstrap 95% confidence interval, and two sets are compared by
the ratio of their medians with its bootstrap interval and a two-sided test
(Mann-Whitney U from 8 runs a side, Welch's t-test on log times below).  A difference is significant only when the test
rejects at alpha and the interval excludes 1; "no significant difference" is
an answer.  scipy does the work (its bootstrap is seeded, so a report is
reproducible); this module only decides and says why.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

from ..model.stats import Comparison, SampleStats, Trend

ALPHA = 0.05
RESAMPLES = 2000
SEED = 20261207  # fixed: the same samples give the same intervals
MIN_RUNS = 3  # fewer runs than this on a side: no interval, no test
RANK_MIN = 8  # from this many runs a side, the rank test


def _finite(xs: Sequence[float]) -> list[float]:
    return [float(x) for x in xs if x is not None and math.isfinite(float(x))]


def _bootstrap(data: tuple[list[float], ...], stat: Any) -> tuple[float | None, float | None]:
    from scipy import stats

    if any(len(d) < MIN_RUNS for d in data):
        return None, None
    if all(len(set(d)) == 1 for d in data):  # no spread: the interval is the point
        v = float(stat(*data, axis=-1))
        return v, v
    import numpy as np

    # Resamples of a ratio whose denominator can be 0 give inf, whose spread
    # numpy then warns about, and resamples that are all alike make scipy
    # warn of a degenerate distribution: a bound that is not finite is
    # reported as None, and a degenerate interval is a point.
    with np.errstate(divide="ignore", invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", getattr(stats, "DegenerateDataWarning", RuntimeWarning))
        r = stats.bootstrap(data, stat, n_resamples=RESAMPLES, confidence_level=0.95,
                            method="percentile", vectorized=True, axis=-1,
                            rng=np.random.default_rng(SEED))
    lo, hi = float(r.confidence_interval.low), float(r.confidence_interval.high)
    return (lo if math.isfinite(lo) else None), (hi if math.isfinite(hi) else None)


def summarize(samples: Sequence[float]) -> SampleStats:
    """Median, quartiles and a bootstrap 95% interval of the median."""
    import numpy as np

    xs = _finite(samples)
    if not xs:
        return SampleStats(n=0)
    q1, med, q3 = (float(v) for v in np.percentile(xs, [25, 50, 75]))
    lo, hi = _bootstrap((xs,), lambda a, axis: np.median(a, axis=axis))
    return SampleStats(n=len(xs), median=med, q1=q1, q3=q3, iqr=q3 - q1, ci_low=lo, ci_high=hi,
                       mean=float(np.mean(xs)), min=min(xs), max=max(xs), samples=xs)


def compare(a: Sequence[float], b: Sequence[float], alpha: float = ALPHA) -> Comparison:
    """b against a: the ratio of medians (b / a) with its bootstrap 95%
    interval, the Mann-Whitney U p-value, and whether b differs from a."""
    import numpy as np
    from scipy import stats

    xa, xb = _finite(a), _finite(b)
    sa, sb = summarize(xa), summarize(xb)
    out = Comparison(a=sa, b=sb)
    if sa.n == 0 or sb.n == 0:
        out.verdict = "no data"
        return out
    ma, mb = sa.median, sb.median
    out.delta = mb - ma
    if ma:
        out.ratio = mb / ma
        out.percent_change = 100.0 * (mb - ma) / abs(ma)
        def ratio(x: Any, y: Any, axis: int) -> Any:
            with np.errstate(divide="ignore", invalid="ignore"):
                return np.median(y, axis=axis) / np.median(x, axis=axis)

        lo, hi = _bootstrap((xa, xb), ratio)
        out.ratio_low, out.ratio_high = lo, hi
    if sa.n < MIN_RUNS or sb.n < MIN_RUNS:
        out.verdict = f"too few runs to tell ({sa.n} and {sb.n}; at least {MIN_RUNS} a side)"
        return out
    out.p_value, out.test = _test(xa, xb)
    excl = (out.ratio_low is not None and out.ratio_high is not None
            and not out.ratio_low <= 1.0 <= out.ratio_high)
    if out.ratio is None:  # a zero median: no ratio, the test alone decides
        out.significant = out.p_value < alpha
        out.verdict = (("higher" if mb > ma else "lower") + f" by {out.delta:+.4g} "
                       f"(p={out.p_value:.3g}; no ratio: the first median is 0)"
                       if out.significant else f"no significant difference ({out.delta:+.4g}, "
                       f"p={out.p_value:.3g}; the first median is 0)")
        return out
    out.significant = out.p_value < alpha and excl
    if out.significant:
        out.verdict = ("slower" if mb > ma else "faster") + (
            f": {out.percent_change:+.1f}% (ratio {out.ratio:.3f}, 95% interval "
            f"{out.ratio_low:.3f}-{out.ratio_high:.3f}, p={out.p_value:.3g})")
    else:
        out.verdict = (f"no significant difference ({out.percent_change:+.1f}%, p="
                       f"{out.p_value:.3g}" + (f", ratio interval {out.ratio_low:.3f}-"
                                               f"{out.ratio_high:.3f}"
                                               if excl or (out.ratio_low is not None and
                                                           out.ratio_high is not None)
                                               else "") + ")")
    return out


def _test(xa: list[float], xb: list[float]) -> tuple[float, str]:
    """(two-sided p-value, the test's name).  From RANK_MIN runs a side the
    Mann-Whitney U rank test (no assumption on the distribution); below, it
    cannot reject at 5% (3 against 3 gives p >= 0.1), so Welch's t-test on
    the logarithms (run times taken as log-normal) is used instead."""
    from scipy import stats

    if len(set(xa) | set(xb)) == 1:
        return 1.0, "identical values"
    if min(len(xa), len(xb)) >= RANK_MIN:
        return (float(stats.mannwhitneyu(xa, xb, alternative="two-sided").pvalue),
                "two-sided Mann-Whitney U")
    logs = all(v > 0 for v in xa + xb)
    ya = [math.log(v) for v in xa] if logs else xa
    yb = [math.log(v) for v in xb] if logs else xb
    with warnings.catch_warnings():  # a side without spread: NaN, handled below
        warnings.simplefilter("ignore", RuntimeWarning)
        p = float(stats.ttest_ind(ya, yb, equal_var=False).pvalue)
    return (p if math.isfinite(p) else 1.0,
            "Welch's t-test on " + ("log values" if logs else "values") + f" (fewer than "
            f"{RANK_MIN} runs a side)")


def holm(pvalues: dict[str, float]) -> dict[str, float]:
    """Holm-adjusted p-values: comparing many nodes at once must not turn
    noise into a finding."""
    order = sorted(pvalues, key=lambda k: pvalues[k])
    m = len(order)
    out: dict[str, float] = {}
    running = 0.0
    for i, k in enumerate(order):
        running = max(running, min(1.0, (m - i) * pvalues[k]))
        out[k] = running
    return out


def trend(values: Sequence[float], x: Sequence[float] | None = None) -> Trend:
    """Theil-Sen slope (per step of x, default per run) with its 95%
    interval, and the change points of the series."""
    from scipy import stats

    ys = [float(v) for v in values]
    xs = [float(v) for v in x] if x is not None else [float(i) for i in range(len(ys))]
    pts = [(a, b) for a, b in zip(xs, ys) if math.isfinite(b)]
    out = Trend(n=len(pts))
    if len(pts) < MIN_RUNS:
        out.verdict = f"too few points for a trend ({len(pts)}; at least {MIN_RUNS})"
        return out
    px, py = [p[0] for p in pts], [p[1] for p in pts]
    r = stats.theilslopes(py, px, alpha=0.95)
    out.slope, out.intercept = float(r.slope), float(r.intercept)
    out.slope_low, out.slope_high = float(r.low_slope), float(r.high_slope)
    out.change_points = change_points(py)
    rising = out.slope_low > 0
    falling = out.slope_high < 0
    out.verdict = ("rising" if rising else "falling" if falling else "flat") + (
        f" ({out.slope:+.4g} per run, 95% interval {out.slope_low:+.4g} to {out.slope_high:+.4g})")
    return out


def change_points(ys: Sequence[float], alpha: float = ALPHA, min_size: int = 3) -> list[int]:
    """Indices where the series' level shifts: binary segmentation, each
    split the one with the smallest Mann-Whitney p-value between its two
    sides, kept when that p-value, Bonferroni-corrected for the splits
    tried, is below alpha."""
    from scipy import stats

    out: list[int] = []

    def seg(lo: int, hi: int) -> None:
        n = hi - lo
        if n < 2 * min_size:
            return
        best, where = 1.0, -1
        tries = 0
        for k in range(lo + min_size, hi - min_size + 1):
            left, right = ys[lo:k], ys[k:hi]
            tries += 1
            if len(set(left) | set(right)) == 1:
                continue
            # One method for every split: scipy's exact p-values (small sides)
            # and its normal approximation are not comparable, and the
            # smallest would pick short sides over the real shift.
            p = float(stats.mannwhitneyu(left, right, alternative="two-sided",
                                         method="asymptotic").pvalue)
            if p < best:
                best, where = p, k
        if where >= 0 and best * max(tries, 1) < alpha:
            out.append(where)
            seg(lo, where)
            seg(where, hi)

    seg(0, len(ys))
    return sorted(out)
