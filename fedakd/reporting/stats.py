"""Paired statistics over seeds (docs/method-card.md §5): the numbers behind every comparison the report draws.

Seed s fixes the partition, the initial weights and the client sampling for every method, so two
methods are compared through their per-seed differences. For one comparison and metric this module
gives the mean difference with its 95 % paired bootstrap interval (percentile, seeds resampled: a mean
of a metric in [0, 1] stays in [0, 1], a difference in [-1, 1], by construction), the paired t-test
(the declared test, whose Holm-adjusted p decides win / tie / loss) and the Wilcoxon signed-rank p
(scipy.stats), and, over a family of comparisons, Holm's step-down adjustment. With n seeds Wilcoxon's
exact two-sided p cannot go below 2 / 2^n (0.25 at n = 3, 0.0625 at n = 5): ``smallest_attainable_p``.
``seeds_for_power`` and ``minimum_detectable_difference`` size a study from the paired spread it shows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

CONFIDENCE = 0.95
ALPHA = 0.05
POWER = 0.8
#: The most seeds seeds_for_power tries; it returns this when even that many fall short.
MOST_SEEDS = 1000
#: Bootstrap resamples and their seed: the same runs always give the same interval.
RESAMPLES, BOOTSTRAP_SEED = 10_000, 20201
#: The fewest pairs without a failed run whose difference or spread the report shows (two say nothing).
MIN_HEALTHY_PAIRS = 3


@dataclass(frozen=True)
class PairedResult:
    """One comparison on one metric: method - baseline over the seeds both have."""

    n_pairs: int
    mean_diff: float
    ci_low: float
    ci_high: float
    ttest_p: float
    wilcoxon_p: float
    note: str


def t_interval(values, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The two-sided t-interval of the mean: mean -+ t_{(1+c)/2, n-1} * s / sqrt(n); NaN below 2 values."""
    from scipy import stats

    values = np.asarray(values, dtype=float)
    if len(values) < 2:
        return math.nan, math.nan
    mean, half = values.mean(), 0.0
    std = values.std(ddof=1)
    if std > 0:
        half = float(stats.t.ppf(0.5 + confidence / 2, df=len(values) - 1)) * std / math.sqrt(len(values))
    return float(mean - half), float(mean + half)


def bootstrap_interval(values, confidence: float = CONFIDENCE):
    """The percentile bootstrap interval of the mean (scipy.stats.bootstrap, values resampled with
    replacement): inside [min, max] of the values, so inside the metric's range; NaN below 2 values. For a
    (seeds x points) matrix, one interval per column (a learning curve's band), as two arrays."""
    from scipy import stats

    values = np.asarray(values, dtype=float)
    if len(values) < 2:
        nan = np.full(values.shape[1:], math.nan)
        return (math.nan, math.nan) if values.ndim == 1 else (nan, nan.copy())
    if values.ndim == 1 and np.all(values == values[0]):
        return float(values[0]), float(values[0])
    result = stats.bootstrap((values,), np.mean, confidence_level=confidence, n_resamples=RESAMPLES,
                             method="percentile", rng=np.random.default_rng(BOOTSTRAP_SEED))
    low, high = result.confidence_interval
    return (float(low), float(high)) if values.ndim == 1 else (np.asarray(low), np.asarray(high))


def paired_power(n: int, sd: float, delta: float, alpha: float) -> float:
    """Power of the two-sided paired t-test at level ``alpha`` with n pairs, paired std ``sd``, true mean
    difference ``delta``: P(|T| > t_{1-alpha/2, n-1}) for T ~ noncentral t(n - 1, delta sqrt(n) / sd)."""
    from scipy import stats

    if n < 2 or sd <= 0:
        return math.nan
    critical = stats.t.ppf(1 - alpha / 2, n - 1)
    shift = delta * math.sqrt(n) / sd
    return float(stats.nct.sf(critical, n - 1, shift) + stats.nct.cdf(-critical, n - 1, shift))


def seeds_for_power(sd: float, delta: float, alpha: float, power: float = POWER, family: int = 1,
                    most: int = MOST_SEEDS) -> int:
    """The fewest seeds whose paired t-test detects ``delta`` with ``power`` at level alpha / family (Holm's
    first, strictest step: a bound that holds whatever the other tests show)."""
    for n in range(2, most + 1):
        if paired_power(n, sd, delta, alpha / family) >= power:
            return n
    return most


def minimum_detectable_difference(n: int, sd: float, alpha: float, power: float = POWER, family: int = 1) -> float:
    """The smallest true difference the paired t-test detects with ``power`` at level alpha / family with n seeds
    (bisection on ``paired_power``)."""
    if n < 2 or not sd > 0:
        return math.nan
    low, high = 0.0, 10 * sd
    for _ in range(60):
        middle = (low + high) / 2
        low, high = (middle, high) if paired_power(n, sd, middle, alpha / family) < power else (low, middle)
    return high


def paired_test(differences) -> PairedResult:
    """Paired t-test and Wilcoxon signed-rank test of per-seed differences against 0.

    Undefined cases give NaN with the reason in ``note``: fewer than 2 pairs; all differences zero
    (no evidence either way); identical non-zero differences (the t statistic would be infinite:
    scipy reports p = 0, which a handful of seeds cannot support, so the t-test is left out and
    Wilcoxon, which is defined, is kept).
    """
    from scipy import stats

    d = np.asarray(differences, dtype=float)
    n = len(d)
    mean = float(d.mean()) if n else math.nan
    low, high = bootstrap_interval(d)
    if n < 2:
        return PairedResult(n, mean, low, high, math.nan, math.nan, f"{n} seed pair(s): no test")
    if np.all(d == 0):
        return PairedResult(n, mean, low, high, math.nan, math.nan, "all differences zero: no test")
    wilcoxon_p = float(stats.wilcoxon(d).pvalue)
    if np.all(d == d[0]):
        return PairedResult(n, mean, low, high, math.nan, wilcoxon_p, "identical differences: t-test undefined")
    return PairedResult(n, mean, low, high, float(stats.ttest_1samp(d, 0.0).pvalue), wilcoxon_p, "")


def holm(p_values) -> np.ndarray:
    """Holm's step-down adjusted p-values; NaN entries (tests not run) stay NaN and do not count in m.

    Sorted ascending, p_(i) becomes max_{j <= i} min(1, (m - j + 1) p_(j)): the family-wise error
    rate stays at the level used, whatever the dependence between the tests.
    """
    p = np.asarray(p_values, dtype=float)
    adjusted = np.full_like(p, math.nan)
    tested = np.flatnonzero(~np.isnan(p))
    m = len(tested)
    running = 0.0
    for rank, index in enumerate(tested[np.argsort(p[tested], kind="stable")]):
        running = max(running, min(1.0, (m - rank) * p[index]))
        adjusted[index] = running
    return adjusted


def verdict(mean_diff: float, adjusted_p: float, alpha: float = ALPHA) -> str:
    """'win' / 'loss' when the adjusted p is below ``alpha`` (by the sign of the difference), else 'tie';
    'untested' when there is no p-value."""
    if math.isnan(adjusted_p):
        return "untested"
    if adjusted_p < alpha:
        return "win" if mean_diff > 0 else "loss"
    return "tie"


def smallest_attainable_p(n: int) -> dict[str, float]:
    """The smallest two-sided p each test can give with n seed pairs.

    Wilcoxon (exact, no ties or zeros): every difference of one sign, i.e. 2 / 2^n, as scipy computes
    it. The t-test has no floor (its statistic is unbounded), so it is reported as 0.
    """
    from scipy import stats

    if n < 1:
        return {"wilcoxon": math.nan, "ttest": math.nan}
    return {"wilcoxon": float(stats.wilcoxon(np.arange(1, n + 1)).pvalue), "ttest": 0.0}
