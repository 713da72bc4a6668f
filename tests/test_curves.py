"""The final-window mean, the rounds and bytes to a target, and the verdict across step sizes, on hand-made
curves and comparisons (docs/method-card.md §4-5)."""

import copy
import math

import numpy as np
import pandas as pd
import pytest

from fedakd.config.study import Study, effective_step
from fedakd.reporting import collect, curves, steps, tables
from tests.test_reporting import CONFIG, make_run, with_comparisons


def test_final_window_mean_by_hand():
    rounds = np.arange(1, 21, dtype=float)
    values = np.linspace(0.05, 1.0, 20)  # 0.05 a round
    # 10 % of 20 rounds: rounds 19 and 20 (0.95 and 1.00)
    assert curves.final_window_mean(rounds, values, 20, 0.1) == pytest.approx(0.975)
    assert curves.final_window_mean(rounds, values, 20, 0.0) == 1.0  # 0: the final round alone
    # evaluated every 5 rounds (5, 10, 15, 20) and 10 % of 20: round 20 alone; 30 %: rounds 15 and 20
    every5 = rounds[4::5]
    assert curves.final_window_mean(every5, values[4::5], 20, 0.1) == 1.0
    assert curves.final_window_mean(every5, values[4::5], 20, 0.3) == pytest.approx((0.75 + 1.0) / 2)
    # a window no evaluated round falls in: the last evaluated value
    assert curves.final_window_mean(np.array([5.0, 10.0]), np.array([0.3, 0.4]), 20, 0.1) == 0.4
    assert math.isnan(curves.final_window_mean(np.array([]), np.array([]), 20, 0.1))


def test_a_last_round_dip_does_not_decide_the_final_window():
    # fedakd-res lt100 seed 4 of the old study: 0.794 for the window's rounds, then 0.158 in the last one
    rounds = np.arange(1, 61, dtype=float)
    values = np.full(60, 0.794)
    values[-1] = 0.158
    # 10 % of 60 rounds: rounds 55-60, five at 0.794 and one at 0.158
    assert curves.final_window_mean(rounds, values, 60, 0.1) == pytest.approx((5 * 0.794 + 0.158) / 6)


@pytest.mark.parametrize("values, target, first", [
    ([0.2, 0.5, 0.71, 0.69, 0.8], 0.7, 3.0),   # the first round at or above it, even if a later one dips
    ([0.2, 0.7, 0.9], 0.7, 2.0),               # at the target counts
    ([0.2, 0.5, 0.6], 0.7, math.nan),          # never reaches it
])
def test_first_reaching_by_hand(values, target, first):
    got = curves.first_reaching(np.arange(1, len(values) + 1, dtype=float), np.asarray(values), target)
    assert (math.isnan(got) and math.isnan(first)) or got == first


def _curve_run(seed: int, balanced: list[float], lr: float = 0.05, setting: str = "lt10-dir1",
               method: str = "fedavg") -> dict:
    """A synthetic run whose balanced accuracy follows ``balanced``, 1,000 bytes each way a round."""
    run = copy.deepcopy(make_run(setting, method, seed, 0.7))
    run["history"] = [{**run["history"][-1], "round": r, "balanced_accuracy": b,
                       "per_class_recall": [b, b, b, b], "bytes_down": 1000 * r, "bytes_up": 1000 * r}
                      for r, b in enumerate(balanced, start=1)]
    run["final"] = {**run["final"], "balanced_accuracy": balanced[-1]}
    run["cost"] = {**run["cost"], "rounds": len(balanced), "bytes_down": 1000 * len(balanced),
                   "bytes_up": 1000 * len(balanced)}
    run["federation"] = {**run["federation"], "lr": lr}
    return run


def test_runs_frame_holds_the_final_window_the_last_round_and_the_way_to_the_target():
    curves_ = {0: [0.1, 0.3, 0.5, 0.6, 0.72, 0.74, 0.75, 0.76, 0.78, 0.80],   # reaches 0.7 at round 5
               1: [0.1, 0.2, 0.3, 0.4, 0.5, 0.55, 0.6, 0.62, 0.64, 0.10]}    # never; a last-round dip
    frame = collect.runs_frame([_curve_run(seed, values) for seed, values in curves_.items()], 0.2, 0.7)
    # 20 % of 10 rounds: rounds 9 and 10
    assert frame["balanced_accuracy"].tolist() == pytest.approx([0.79, 0.37])
    assert frame["last_balanced_accuracy"].tolist() == pytest.approx([0.80, 0.10])
    assert frame["per_class_recall"][0] == pytest.approx([0.79] * 4)
    assert frame["rounds_to_target"][0] == 5 and math.isnan(frame["rounds_to_target"][1])
    assert frame["bytes_to_target"][0] == 2 * 5 * 1000 and math.isnan(frame["bytes_to_target"][1])
    assert frame["step"].tolist() == pytest.approx([0.5, 0.5])  # lr 0.05 at momentum 0.9
    cost = tables.cost_table(frame, 0.7).iloc[0]
    assert (cost["n_reached"], cost["rounds_to_target_median"], cost["megabytes_to_target_mean"]) == (1, 5.0, 0.01)
    assert tables.format_cost(tables.cost_table(frame, 0.7))["reached target"][0] == "1 of 2 (BA 0.7)"


def test_effective_step():
    assert effective_step({"lr": 0.01, "momentum": 0.9}) == pytest.approx(0.1)
    assert effective_step({"lr": 0.1, "momentum": 0.0}) == pytest.approx(0.1)


def _step_study() -> Study:
    config = copy.deepcopy(CONFIG)
    config["settings"] = {"lt10-dir1": CONFIG["settings"]["lt10-dir1"],
                          "lt10-dir1-lr0.01": {**CONFIG["settings"]["lt10-dir1"], "step_of": "lt10-dir1",
                                               "federation": {"lr": 0.01}},
                          "lt10-dir1-lr0.02": {**CONFIG["settings"]["lt10-dir1"], "step_of": "lt10-dir1",
                                               "federation": {"lr": 0.02}}}
    return Study.from_config(with_comparisons(config))


def _comparison(rows):
    return pd.DataFrame([{"dataset": "digits", "setting": s, "method": "fedakd", "baseline": b, "metric":
                          "balanced_accuracy", "family": "primary", "n_pairs": 3, "mean_diff": d,
                          "ci_low": d - 0.01, "ci_high": d + 0.01, "ttest_p_holm": 0.01, "verdict": v,
                          "method_failed": 0, "baseline_failed": 0} for s, b, d, v in rows])


def test_the_step_table_lines_up_the_verdicts_by_step_and_says_where_one_flips():
    study = _step_study()
    assert steps.families(study) == {"lt10-dir1": ["lt10-dir1", "lt10-dir1-lr0.01", "lt10-dir1-lr0.02"]}
    frame = pd.DataFrame({"setting": ["lt10-dir1", "lt10-dir1-lr0.01", "lt10-dir1-lr0.02"],
                          "lr": [0.05, 0.01, 0.02], "momentum": [0.9] * 3, "step": [0.5, 0.1, 0.2]})
    comparison = _comparison([("lt10-dir1", "fedavg", -0.30, "loss"), ("lt10-dir1-lr0.01", "fedavg", 0.04, "win"),
                              ("lt10-dir1-lr0.02", "fedavg", 0.03, "win"),
                              ("lt10-dir1", "fedakd-noattn", 0.0, "tie"),
                              ("lt10-dir1-lr0.01", "fedakd-noattn", 0.001, "tie"),
                              ("lt10-dir1-lr0.02", "fedakd-noattn", -0.002, "tie")])
    table = steps.step_table(frame, comparison, study)
    assert table[table.baseline == "fedavg"]["step"].tolist() == pytest.approx([0.1, 0.2, 0.5])  # by step
    readable = steps.format_steps(table)
    assert readable.columns.tolist() == ["dataset", "setting", "focus", "rival", "step 0.1 (lr 0.01)",
                                         "step 0.2 (lr 0.02)", "step 0.5 (lr 0.05)"]
    assert readable.set_index("rival").loc["fedavg", "step 0.5 (lr 0.05)"] == "loss -0.300 [-0.310, -0.290]"
    [sentence] = steps.step_sentences(table, study)
    assert sentence == ("*digits lt10-dir1, effective client steps 0.1, 0.2, 0.5:* fedakd's verdict depends on the "
                        "step: against fedavg it is win at 0.1, win at 0.2, loss at 0.5.")
    held = steps.step_table(frame, comparison[comparison.baseline == "fedakd-noattn"], study)
    assert steps.step_sentences(held, study) == [
        "*digits lt10-dir1, effective client steps 0.1, 0.2, 0.5:* fedakd's verdict holds across the range: at "
        "every step it ties with fedakd-noattn."]
    # a study without step settings has no such table
    assert steps.step_table(frame, comparison, Study.from_config(with_comparisons(CONFIG))).empty
