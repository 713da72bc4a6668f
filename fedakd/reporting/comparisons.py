"""The declared comparisons and the ablation ladder (docs/method-card.md §5).

Which comparisons a study makes is fixed by its config before any result exists
(``declared_comparisons``), and so are its metrics: one primary metric (balanced accuracy), whose
family -- every declared comparison on it, within one dataset and setting -- is Holm-adjusted and alone
decides win / tie / loss; and secondary metrics, each its own Holm family, reported and adjusted the
same way but never deciding the verdict. Nothing here picks a method by its mean and then tests it.
Each row also gives rliable's probability of improvement P(method > baseline) over the runs.

The ladder decomposes FedAKD's gain: fedavg -> fedavg-ft (the transfer set's labels) -> fedakd-noattn
(adding distillation) -> fedakd (adding attention), each step a paired difference with its 95 %
bootstrap interval (descriptive: the steps are not a tested family).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from fedakd.reporting.stats import holm, paired_test, verdict

COMPARISON_COLUMNS = ("dataset", "setting", "method", "baseline", "metric", "family", "n_pairs", "mean_diff",
                      "ci_low",
                      "ci_high", "ttest_p", "wilcoxon_p", "ttest_p_holm", "wilcoxon_p_holm", "verdict", "family_size",
                      "method_failed", "baseline_failed", "n_pairs_without_failed", "mean_diff_without_failed",
                      "prob_improvement", "paired_std", "paired_std_without_failed", "note")
LADDER_COLUMNS = ("dataset", "setting", "step", "from_method", "to_method", "adds", "metric", "n_pairs", "mean_diff",
                  "ci_low", "ci_high", "note")


def _differences(block, method: str, baseline: str, metric: str, without_failed: bool = False) -> np.ndarray:
    """Per-seed method - baseline over the seeds both have and where the metric is defined; with
    ``without_failed``, only the seeds where neither run collapsed or diverged (the sensitivity line)."""
    if without_failed:
        block = block[~block["failed"].astype(bool)]
    a = block[block["method"] == method].set_index("seed")[metric]
    b = block[block["method"] == baseline].set_index("seed")[metric]
    paired = (a - b).dropna()
    return paired.sort_index().to_numpy(dtype=float)


def _failed_count(block, method: str) -> int:
    return int(block.loc[block["method"] == method, "failed"].astype(bool).sum())


def probability_of_improvement(block, method: str, baseline: str, metric: str) -> float:
    """rliable's P(X > Y): the chance that a run of ``method`` scores above a run of ``baseline`` (ties half)."""
    from rliable import metrics as rly

    x = block.loc[block["method"] == method, metric].dropna().to_numpy(dtype=float)
    y = block.loc[block["method"] == baseline, metric].dropna().to_numpy(dtype=float)
    if not len(x) or not len(y):
        return math.nan
    return float(rly.probability_of_improvement(x[:, None], y[:, None]))


def comparison_table(frame, pairs: Sequence[tuple[str, str]], primary: str, secondary: Sequence[str], alpha: float):
    """Every declared comparison on the primary and each secondary metric, per dataset and setting; p-values
    Holm-adjusted within each (dataset, setting, metric) family. ``family`` says which decides the verdict."""
    import pandas as pd

    rows = []
    for (dataset, setting), block in frame.groupby(["dataset", "setting"], sort=False):
        present = set(block["method"])
        for metric in (primary, *[m for m in secondary if m != primary]):
            family = []
            columns = block[["method", "seed", "failed", metric]]  # not a run's hundred others, copied per pair
            for method, baseline in pairs:
                row = {"dataset": dataset, "setting": setting, "method": method, "baseline": baseline,
                       "metric": metric, "family": "primary" if metric == primary else "secondary"}
                missing = [m for m in (method, baseline) if m not in present]
                if missing:
                    family.append({**row, "n_pairs": 0, "mean_diff": math.nan, "ci_low": math.nan,
                                   "ci_high": math.nan, "ttest_p": math.nan, "wilcoxon_p": math.nan,
                                   "method_failed": 0, "baseline_failed": 0, "n_pairs_without_failed": 0,
                                   "mean_diff_without_failed": math.nan, "prob_improvement": math.nan,
                                   "paired_std": math.nan, "paired_std_without_failed": math.nan,
                                   "note": f"no runs of {', '.join(missing)} here"})
                    continue
                differences = _differences(columns, method, baseline, metric)
                result = paired_test(differences)
                note = result.note
                if len(differences) == 0:
                    note = f"{metric} undefined here (no such classes)"
                # Failed runs stay in the test; the difference without them is one sensitivity figure beside it.
                healthy = _differences(columns, method, baseline, metric, without_failed=True)
                family.append({**row, "n_pairs": result.n_pairs, "mean_diff": result.mean_diff,
                               "ci_low": result.ci_low, "ci_high": result.ci_high, "ttest_p": result.ttest_p,
                               "wilcoxon_p": result.wilcoxon_p, "method_failed": _failed_count(columns, method),
                               "baseline_failed": _failed_count(columns, baseline),
                               "n_pairs_without_failed": len(healthy),
                               "mean_diff_without_failed": float(healthy.mean()) if len(healthy) else math.nan,
                               "prob_improvement": probability_of_improvement(columns, method, baseline, metric),
                               "paired_std": float(differences.std(ddof=1)) if len(differences) > 1 else math.nan,
                               "paired_std_without_failed": (float(healthy.std(ddof=1)) if len(healthy) > 1
                                                             else math.nan),
                               "note": note})
            t_adjusted = holm([row["ttest_p"] for row in family])
            w_adjusted = holm([row["wilcoxon_p"] for row in family])
            size = int(np.sum(~np.isnan([row["ttest_p"] for row in family])))
            for row, t_p, w_p in zip(family, t_adjusted, w_adjusted):
                rows.append({**row, "ttest_p_holm": t_p, "wilcoxon_p_holm": w_p, "family_size": size,
                             "verdict": verdict(row["mean_diff"], t_p, alpha)})
    return pd.DataFrame(rows, columns=list(COMPARISON_COLUMNS))


def _seed_by_setting(block, method: str, metric: str):
    """The (seeds x settings) matrix of one method's ``metric``, seeds every setting has (rliable's layout)."""
    table = block[block["method"] == method].pivot_table(index="seed", columns="setting", values=metric)
    return table.dropna()


def stratified_iqm_interval(matrix, confidence: float = 0.95, resamples: int = 2000, seed: int = 20201):
    """Percentile interval of the interquartile mean, seeds resampled within each setting (rliable's stratified
    bootstrap, written here because rliable.library's bootstrap fails to import beside current arch/pandas).

    Every resample at once: rliable's ``aggregate_iqm`` of one resample is scipy's 25 % ``trim_mean`` of its
    values, so a row-wise ``trim_mean`` over all resamples gives the same draws, bit for bit (the same index
    stream, drawn in one call), 70 times faster than one call per resample (a test holds the two together)."""
    from scipy import stats

    values = np.asarray(matrix, dtype=float)
    if values.shape[0] < 2:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    n, k = values.shape
    resampled = values[rng.integers(0, n, size=(resamples, n, k)), np.arange(k)].reshape(resamples, n * k)
    draws = stats.trim_mean(resampled, proportiontocut=0.25, axis=1)
    low, high = np.quantile(draws, [(1 - confidence) / 2, (1 + confidence) / 2])
    return float(low), float(high)


def across_settings_table(frame, focus: str | None, metric: str, references: Sequence[str] = ()):
    """Per dataset and method, over all its settings: the interquartile mean of ``metric`` over the runs with a
    stratified bootstrap interval, and rliable's probability that the focus method improves on it,
    P(focus > method), averaged over the settings."""
    import pandas as pd
    from rliable import metrics as rly

    rows = []
    for dataset, block in frame.groupby("dataset", sort=False):
        block = block[~block["method"].isin(references)]
        focus_scores = _seed_by_setting(block, focus, metric) if focus in set(block["method"]) else None
        for method in dict.fromkeys(block["method"]):
            scores = _seed_by_setting(block, method, metric)
            if scores.empty:
                continue
            low, high = stratified_iqm_interval(scores.to_numpy())
            improvement = math.nan
            if focus_scores is not None and method != focus:
                shared = [s for s in focus_scores.columns if s in scores.columns]
                if shared:
                    improvement = float(rly.probability_of_improvement(focus_scores[shared].to_numpy(),
                                                                       scores[shared].to_numpy()))
            rows.append({"dataset": dataset, "method": method, "metric": metric, "settings": scores.shape[1],
                         "runs": int(scores.size), "iqm": float(rly.aggregate_iqm(scores.to_numpy())),
                         "iqm_ci_low": low, "iqm_ci_high": high, "focus": focus,
                         "prob_focus_improves": improvement})
    return pd.DataFrame(rows, columns=["dataset", "method", "metric", "settings", "runs", "iqm", "iqm_ci_low",
                                       "iqm_ci_high", "focus", "prob_focus_improves"])


def ladder_steps(ladder: Sequence[str], methods: Sequence[str]) -> list[tuple[str, str]]:
    """Consecutive (from, to) rungs of the ladder, leaving out the methods the study lacks."""
    rungs = [m for m in ladder if m in methods]
    return list(zip(rungs, rungs[1:]))


def ladder_table(frame, ladder: Sequence[str], metrics: Sequence[str], adds: dict[str, str]):
    """Per dataset and setting, each rung's paired difference from the one below, with its 95 % bootstrap interval;
    ``adds`` says what a rung adds to the one directly below it (the config's ``ladder_adds``)."""
    import pandas as pd

    rows = []
    for (dataset, setting), block in frame.groupby(["dataset", "setting"], sort=False):
        for step, (lower, upper) in enumerate(ladder_steps(ladder, list(dict.fromkeys(block["method"]))), start=1):
            adjacent = upper in ladder and ladder.index(upper) > 0 and ladder[ladder.index(upper) - 1] == lower
            added = adds[upper] if adjacent and upper in adds else f"{upper} over {lower}"
            for metric in metrics:
                result = paired_test(_differences(block, upper, lower, metric))
                rows.append({"dataset": dataset, "setting": setting, "step": step, "from_method": lower,
                             "to_method": upper, "adds": added,
                             "metric": metric, "n_pairs": result.n_pairs, "mean_diff": result.mean_diff,
                             "ci_low": result.ci_low, "ci_high": result.ci_high, "note": result.note})
    return pd.DataFrame(rows, columns=list(LADDER_COLUMNS))
