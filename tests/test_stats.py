"""The statistics behind every verdict, against numbers worked out by hand."""

import math

import numpy as np
import pytest
from numpy.testing import assert_allclose

from fedakd.reporting import curves
from fedakd.reporting.stats import (bootstrap_interval, holm, minimum_detectable_difference, paired_power, paired_test,
                                    seeds_for_power, smallest_attainable_p, t_interval, verdict)


def test_t_interval_by_hand():
    # [1, 2, 3]: mean 2, s = 1; t_{0.975, 2} = 4.302653; half-width 4.302653 / sqrt(3) = 2.484138
    assert_allclose(t_interval([1.0, 2.0, 3.0]), [2 - 2.484138, 2 + 2.484138], atol=1e-6)
    assert all(math.isnan(v) for v in t_interval([1.0]))
    assert t_interval([0.5, 0.5]) == (0.5, 0.5)  # no spread: a zero-width interval


def test_paired_test_by_hand():
    # d = 0.01, 0.02, 0.03: mean 0.02, s = 0.01, t = 0.02 / (0.01 / sqrt 3) = 3.4641016 on 2 d.f.;
    # for 2 d.f. the two-sided p is 1 - t / sqrt(t^2 + 2) = 1 - 3.4641016 / 3.7416574 = 0.0741799.
    # Wilcoxon: all three of one sign, the exact two-sided p is 2 / 2^3 = 0.25.
    result = paired_test([0.01, 0.02, 0.03])
    assert result.n_pairs == 3 and result.mean_diff == pytest.approx(0.02)
    assert result.ttest_p == pytest.approx(0.0741799, abs=1e-6)
    assert result.wilcoxon_p == pytest.approx(0.25)
    # the percentile bootstrap: each extreme resample (all 0.01, all 0.03) has probability 1/27 > 0.025, so
    # the interval is [0.01, 0.03] (the t-interval, 0.02 -+ 0.0248, would reach below 0)
    assert (result.ci_low, result.ci_high) == pytest.approx((0.01, 0.03)) and result.note == ""


@pytest.mark.parametrize("differences, note", [
    ([0.1], "1 seed pair(s): no test"),
    ([0.0, 0.0, 0.0], "all differences zero: no test"),
    ([0.02, 0.02, 0.02], "identical differences: t-test undefined"),
])
def test_paired_test_says_why_it_cannot_test(differences, note):
    result = paired_test(differences)
    assert result.note == note and math.isnan(result.ttest_p)


def test_holm_by_hand():
    # sorted 0.005, 0.01, 0.03, 0.04 (m = 4): x4 = 0.02, x3 = 0.03, x2 = 0.06, x1 = 0.04 -> running max 0.06
    assert_allclose(holm([0.01, 0.04, 0.03, 0.005]), [0.03, 0.06, 0.06, 0.02])
    # a test not run does not count: m = 2
    adjusted = holm([0.01, math.nan, 0.04])
    assert_allclose(adjusted[[0, 2]], [0.02, 0.04]) and math.isnan(adjusted[1])
    assert_allclose(holm([0.5, 0.6]), [1.0, 1.0])  # capped at 1
    assert holm([]).size == 0


def test_verdicts():
    assert verdict(0.03, 0.01) == "win" and verdict(-0.03, 0.01) == "loss"
    assert verdict(0.03, 0.2) == "tie" and verdict(0.03, math.nan) == "untested"
    assert verdict(0.03, 0.04, alpha=0.01) == "tie"


@pytest.mark.parametrize("n, expected", [(3, 0.25), (5, 0.0625), (6, 0.03125)])
def test_smallest_attainable_wilcoxon_p(n, expected):
    assert smallest_attainable_p(n)["wilcoxon"] == pytest.approx(expected)


def test_curve_summaries_by_hand():
    rounds = np.arange(1, 11, dtype=float)
    values = np.array([0.1, 0.3, 0.5, 0.6, 0.7, 0.75, 0.78, 0.80, 0.81, 0.82])
    assert curves.window_start(10) == 8  # the last 20 %: rounds 9 and 10
    assert curves.late_mean(rounds, values, 10) == pytest.approx(0.815)
    # 95 % of 0.82 is 0.779: first reached at round 7 (0.78)
    assert curves.rounds_to_reach(rounds, values) == 7
    # line through (8, 0.80), (9, 0.81), (10, 0.82): slope 0.01 per round, over 2 rounds -> 0.02
    assert curves.rise(rounds, values, 10) == pytest.approx(0.02)
    flat = np.array([0.1, 0.3, 0.5, 0.6, 0.7, 0.75, 0.78, 0.80, 0.80, 0.80])
    assert curves.rise(rounds, flat, 10) == pytest.approx(0.0, abs=1e-12)


def test_mean_curve_uses_the_rounds_every_run_has():
    a = [{"round": 1, "balanced_accuracy": 0.2}, {"round": 2, "balanced_accuracy": 0.4}]
    b = [{"round": 2, "balanced_accuracy": 0.6}, {"round": 3, "balanced_accuracy": 0.7}]
    rounds, values = curves.mean_curve([a, b], "balanced_accuracy")
    assert rounds.tolist() == [2.0] and values.tolist() == [0.5]


def test_a_bootstrap_interval_at_the_metric_s_bound_stays_inside_it():
    # worst-class recall 0 on four seeds and 0.004 on one: a t-interval reaches below 0, the bootstrap cannot
    values = [0.0, 0.0, 0.0, 0.0, 0.004]
    assert t_interval(values)[0] < 0
    low, high = bootstrap_interval(values)
    assert 0.0 <= low <= high <= 0.004
    low, high = bootstrap_interval([1.0, 1.0, 0.98, 1.0])
    assert 0.98 <= low <= high <= 1.0
    assert bootstrap_interval([0.3, 0.3]) == (0.3, 0.3) and all(math.isnan(v) for v in bootstrap_interval([0.3]))
    assert bootstrap_interval([0.1, 0.5, 0.2]) == bootstrap_interval([0.1, 0.5, 0.2])  # seeded: reproducible


def test_power_and_seed_count_by_hand():
    # effect size delta / sd = 1 (a 2-point difference, paired std 2 points), two-sided 5 %: the textbook paired
    # t-test needs n = 10 for 80 % power (G*Power's actual power at n = 10: 0.8031; at n = 9 it falls below 0.8)
    assert paired_power(10, 0.02, 0.02, 0.05) == pytest.approx(0.8031, abs=1e-3)
    assert paired_power(9, 0.02, 0.02, 0.05) < 0.8
    assert seeds_for_power(0.02, 0.02, 0.05) == 10
    # Holm's strictest step over a family of 10 tests is level 0.005: more seeds
    assert seeds_for_power(0.02, 0.02, 0.05, family=10) == 18
    # the minimum detectable difference at n = 10 is the 2 points that needed 10 seeds, to the bisection's precision
    assert minimum_detectable_difference(10, 0.02, 0.05) == pytest.approx(0.0199, abs=2e-4)
    assert math.isnan(minimum_detectable_difference(1, 0.02, 0.05))


def test_convergence_per_seed_one_still_rising_one_collapsed():
    flat = [{"round": r, "balanced_accuracy": 0.70 + 0.001 * r} for r in range(1, 11)]
    rising = [{"round": r, "balanced_accuracy": 0.40 + 0.03 * r} for r in range(1, 11)]
    collapsed = [{"round": r, "balanced_accuracy": 0.10} for r in range(1, 11)]  # flat at chance
    converged = 0
    for history, failed in ((flat, False), (rising, False), (collapsed, True)):
        rounds, values = curves.curve(history, "balanced_accuracy")
        converged += curves.seed_converged(curves.rise(rounds, values, 10), failed)
    assert converged == 1  # "converged 1 of 3": the collapsed seed's flat line is a failure, not convergence


def test_the_stratified_iqm_interval_draws_what_rliable_draws_one_resample_at_a_time():
    from rliable import metrics as rly

    from fedakd.reporting.comparisons import stratified_iqm_interval

    rng = np.random.default_rng(3)
    for n, k in ((2, 1), (3, 2), (5, 3), (8, 2)):
        matrix = rng.random((n, k))
        # rliable's stratified bootstrap by its definition: each resample draws n seeds within each setting
        # (column), and its statistic is aggregate_iqm of the resampled matrix
        draw = np.random.default_rng(20201)
        draws = [rly.aggregate_iqm(matrix[draw.integers(0, n, size=(n, k)), np.arange(k)]) for _ in range(2000)]
        assert stratified_iqm_interval(matrix) == tuple(float(q) for q in np.quantile(draws, [0.025, 0.975]))
    # by hand: two seeds of one setting, 0 and 1; a resample is (0, 0), (0, 1), (1, 0) or (1, 1) with IQM 0,
    # 0.5, 0.5 and 1 (the 25 % trimmed mean of two values is their mean), so the 95 % interval is [0, 1]
    assert stratified_iqm_interval([[0.0], [1.0]]) == (0.0, 1.0)
    assert all(math.isnan(bound) for bound in stratified_iqm_interval([[0.3, 0.4]]))  # one seed: no interval
