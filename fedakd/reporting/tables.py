"""The tables of a study (docs/method-card.md §5): summary, declared comparisons, ablation ladder, cost.

- summary: per dataset x setting x method, each run's final-window mean of every metric (the mean over the
  last ``final_window`` of the rounds, docs/method-card.md §4) as mean, std and 95 % bootstrap interval over
  seeds, the final round's mean beside it; the late-round mean of balanced accuracy and the rounds to reach a
  fraction of its final value; convergence judged per seed ("converged k of n"; a collapsed or diverged seed never is);
  failed seeds; best-round figures only as ``optimistic_best_round_*`` (chosen on the test set);
- comparison: every declared comparison on the primary metric (the family that decides the verdict)
  and on each secondary metric (its own family), with Holm-adjusted p-values (fedakd.reporting.comparisons);
- ladder: FedAKD's gain decomposed step by step;
- cost: local SGD steps, server steps, bytes down and up, wall time; communication, the rounds and bytes to
  reach the study's target balanced accuracy (McMahan et al.), with the seeds that never reach it counted;
- steps (a study with step settings): the focus method's verdict against each rival at each client step.

The CSV keeps every number at full precision; the Markdown and LaTeX versions are for reading (ASCII
plus ±, – and →, which pdflatex's utf8 input handles, except →, written as $\\rightarrow$ there).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from fedakd.io import atomic_write_text
from fedakd.metrics import METRIC_KEYS
from fedakd.reporting import curves
from fedakd.config.study import Study
from fedakd.reporting.comparisons import across_settings_table, comparison_table, ladder_table
from fedakd.reporting.stats import bootstrap_interval
from fedakd.reporting.steps import families, format_steps, is_base, step_table

GROUP_KEYS = ["dataset", "setting", "method"]
SUMMARY_STATS = ("mean", "std", "ci_low", "ci_high")
COST_COLUMNS = ("local_steps", "server_steps", "bytes_down", "bytes_up", "wall_seconds")
CAPTIONS = {
    "summary": "Test metrics, each run's mean over the final window of rounds: mean ± std [95 % bootstrap interval] "
               "over seeds (n seeds); final-round BA: the last round's balanced accuracy; late BA: mean "
               "balanced accuracy over the convergence window; converged: seeds whose balanced accuracy had stopped "
               "rising (a failed seed never has); failed seeds: runs whose deployed model collapsed to one class or "
               "diverged (kept in the statistics).",
    "comparison": "Declared comparisons (method − baseline, paired over seeds): mean difference [95 % paired "
                  "bootstrap interval], paired t-test (the declared test) and Wilcoxon p, Holm-adjusted within each "
                  "family (all comparisons on one metric of one setting); the primary family alone decides the "
                  "verdict, secondary ones are descriptive; P(>): probability of improvement; failed seeds of each side, and the mean difference "
                  "over the seeds where neither failed (a sensitivity figure, never the verdict).",
    "ladder": "Ablation ladder: each step's paired difference from the method below it [95 % bootstrap interval].",
    "cost": "Cost per run (mean over seeds): local SGD steps, server steps, megabytes (10^6 bytes) down and up, wall "
            "seconds; communication: seeds reaching the target balanced accuracy, the median rounds and the mean "
            "megabytes (down and up) until they reach it.",
    "steps": "The focus method against each rival at each effective client step lr / (1 − momentum): verdict, paired "
             "difference of the primary metric [95 % paired bootstrap interval]; failed runs of each side.",
    "across": "Across settings: each method's interquartile mean of the primary metric over its runs (settings x "
              "seeds) [95 % stratified bootstrap interval], and rliable's probability that the focus method improves "
              "on it, averaged over the settings.",
    "tuning": "Tuning: every candidate's validation score at the final round on each tuning seed, and the choice "
              "(highest mean; ties to the first listed).",
}


# -- summary --------------------------------------------------------------------------------------
def _stats(values: np.ndarray) -> tuple[float, float, float, float]:
    """Mean, sample std (ddof=1) and 95 % bootstrap interval (inside the values' range); std and interval are
    NaN with fewer than 2 values."""
    if len(values) == 0:
        return math.nan, math.nan, math.nan, math.nan
    std = float(values.std(ddof=1)) if len(values) > 1 else math.nan
    return (float(values.mean()), std, *bootstrap_interval(values))


def summary_table(frame, study: Study):
    """Per dataset x setting x method: <metric>_mean/_std/_ci_low/_ci_high for every metric, the curve
    summaries, the convergence flag (n_converged; n_rising, the seeds neither converged nor failed, and late_rise,
    the largest rise among them), the optimistic best round, n_seeds and whether it is a reference."""
    import pandas as pd

    rows = []
    for (dataset, setting, method), group in frame.groupby(GROUP_KEYS, sort=False):
        row = {"dataset": dataset, "setting": setting, "method": method, "n_seeds": len(group),
               "reference": method in study.references,
               "n_collapsed": int(group["collapsed"].astype(bool).sum()),
               "n_diverged": int(group["diverged"].astype(bool).sum())}
        for metric in METRIC_KEYS:
            stats = _stats(group[metric].dropna().to_numpy(dtype=float))
            row.update({f"{metric}_{name}": value for name, value in zip(SUMMARY_STATS, stats)})
        total_rounds = int(group["rounds"].iloc[0])
        late, reach, rising, converged = [], [], [], 0
        for history, seed_failed in zip(group["ba_history"], group["failed"].astype(bool)):
            rounds, values = curves.curve(history, "balanced_accuracy")
            late.append(curves.late_mean(rounds, values, total_rounds, study.window))
            reach.append(curves.rounds_to_reach(rounds, values, study.reach))
            rise = curves.rise(rounds, values, total_rounds, study.window)
            seed_converged = curves.seed_converged(rise, bool(seed_failed), study.threshold)
            converged += seed_converged
            if not seed_converged and not seed_failed:  # still rising: a failed seed's flat line says nothing
                rising.append(rise)
        row.update({"late_balanced_accuracy_mean": float(np.nanmean(late)),
                    "rounds_to_reach_mean": float(np.nanmean(reach)), "rounds": total_rounds,
                    "late_rise": float(np.nanmax(rising)) if rising and not np.all(np.isnan(rising)) else math.nan,
                    "n_converged": converged, "n_rising": len(rising), "converged": converged == len(group)})
        for metric in study.metrics:
            row[f"optimistic_best_round_{metric}_mean"] = float(group[f"best_{metric}"].mean())
            row[f"final_round_{metric}_mean"] = float(group[f"last_{metric}"].mean())
        rows.append(row)
    return pd.DataFrame(rows)


def cost_table(frame, target: float = math.nan):
    """Per dataset x setting x method: mean over seeds of each cost counter, and per round; communication: the
    seeds whose balanced accuracy reached ``target``, their median rounds and mean bytes (down and up) to it."""
    import pandas as pd

    rows = []
    for (dataset, setting, method), group in frame.groupby(GROUP_KEYS, sort=False):
        rounds = int(group["rounds"].iloc[0])
        row = {"dataset": dataset, "setting": setting, "method": method, "n_seeds": len(group), "rounds": rounds,
               "clients_per_round": int(group["clients_per_round"].iloc[0])}
        for key in COST_COLUMNS:
            row[key] = float(group[key].mean())
        row["megabytes_per_round"] = (row["bytes_down"] + row["bytes_up"]) / 1e6 / rounds
        reached = group["rounds_to_target"].dropna()
        row.update({"target": target, "n_reached": len(reached),
                    "rounds_to_target_median": float(reached.median()) if len(reached) else math.nan,
                    "megabytes_to_target_mean": (float(group["bytes_to_target"].dropna().mean()) / 1e6
                                                 if len(reached) else math.nan)})
        rows.append(row)
    return pd.DataFrame(rows)


# -- formatting -------------------------------------------------------------------------------------
def _number(value: float, digits: int = 3, signed: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def _p_value(p: float) -> str:
    if p is None or math.isnan(p):
        return "–"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def _interval(low: float, high: float, digits: int = 3, signed: bool = False) -> str:
    if math.isnan(low):
        return ""
    return f" [{_number(low, digits, signed)}, {_number(high, digits, signed)}]"


def _method_label(method: str, reference: bool, tuned: dict[str, Any]) -> str:
    label = f"{method} (reference)" if reference else method
    return label + (" (tuned)" if method in tuned else "")


def format_summary(summary, study: Study):
    """Headline metrics as 'mean ± std [ci]' strings, the curve summaries and the convergence flag."""
    import pandas as pd

    readable = summary[["dataset", "setting"]].copy()
    readable["method"] = [_method_label(m, r, study.tuned) for m, r in zip(summary["method"], summary["reference"])]
    readable["n"] = summary["n_seeds"]
    shown = (*study.metrics, *(["accuracy"] if "accuracy" not in study.metrics else []))  # accuracy: in the tables,
    for metric in shown:                                                                     # not in the headline
        readable[metric.replace("_", " ")] = [
            _number(mean) if math.isnan(std) else f"{_number(mean)} ± {_number(std)}{_interval(low, high)}"
            for mean, std, low, high in zip(summary[f"{metric}_mean"], summary[f"{metric}_std"],
                                            summary[f"{metric}_ci_low"], summary[f"{metric}_ci_high"])
        ]
    readable["final-round BA"] = [_number(v) for v in summary["final_round_balanced_accuracy_mean"]] \
        if "final_round_balanced_accuracy_mean" in summary else "–"
    readable["late BA"] = [_number(v) for v in summary["late_balanced_accuracy_mean"]]
    readable[f"rounds to {study.reach:.0%}"] = [_number(v, 1) for v in summary["rounds_to_reach_mean"]]
    readable["converged"] = [converged_text(k, n, rising, rise) for k, n, rising, rise in
                             zip(summary["n_converged"], summary["n_seeds"], summary["n_rising"], summary["late_rise"])]
    readable["failed seeds"] = [failed_text(c, d, n) for c, d, n in
                                zip(summary["n_collapsed"], summary["n_diverged"], summary["n_seeds"])]
    return pd.DataFrame(readable)


def converged_text(converged: int, n: int, rising: int, rise: float) -> str:
    """'4 of 8 (3 rising up to +5.1 pts, 1 failed)': the seeds that have not converged are either still rising
    or failed (collapsed or diverged), and the two say different things."""
    parts = []
    if rising:
        parts.append(f"{rising} rising" + ("" if math.isnan(rise) else f" up to +{100 * rise:.1f} pts"))
    if n - converged - rising:
        parts.append(f"{n - converged - rising} failed")
    return f"{converged} of {n}" + (f" ({', '.join(parts)})" if parts else "")


def failed_text(collapsed: int, diverged: int, n: int) -> str:
    """'collapsed 1 of 5', 'diverged 1 of 5; collapsed 2 of 5' or 'none'."""
    parts = [f"{kind} {k} of {n}" for kind, k in (("diverged", diverged), ("collapsed", collapsed)) if k]
    return "; ".join(parts) or "none"


def format_comparison(comparison):
    """Differences with their intervals, raw and Holm-adjusted p-values, the verdict."""
    import pandas as pd

    return pd.DataFrame({
        "dataset": comparison["dataset"], "setting": comparison["setting"],
        "comparison": [f"{m} − {b}" for m, b in zip(comparison["method"], comparison["baseline"])],
        "metric": comparison["metric"].str.replace("_", " "), "family": comparison["family"],
        "n": comparison["n_pairs"],
        "mean diff [95% bootstrap]": [f"{_number(d, 4, True)}{_interval(lo, hi, 4, True)}" for d, lo, hi in
                                      zip(comparison["mean_diff"], comparison["ci_low"], comparison["ci_high"])],
        "P(>)": [_number(p, 2) for p in comparison["prob_improvement"]],
        "t p": [_p_value(p) for p in comparison["ttest_p"]],
        "t p (Holm)": [_p_value(p) for p in comparison["ttest_p_holm"]],
        "Wilcoxon p": [_p_value(p) for p in comparison["wilcoxon_p"]],
        "Wilcoxon p (Holm)": [_p_value(p) for p in comparison["wilcoxon_p_holm"]],
        "verdict": [v if f == "primary" or v == "untested" else f"{v} (descriptive)"
                    for v, f in zip(comparison["verdict"], comparison["family"])],
        "failed seeds (method / baseline)": [f"{a} / {b}" for a, b in
                                             zip(comparison["method_failed"], comparison["baseline_failed"])],
        "mean diff without failed runs": [
            "same" if a == 0 and b == 0 else f"{_number(d, 4, True)} (n = {k})"
            for a, b, d, k in zip(comparison["method_failed"], comparison["baseline_failed"],
                                  comparison["mean_diff_without_failed"], comparison["n_pairs_without_failed"])],
        "note": comparison["note"],
    })


def format_ladder(ladder):
    import pandas as pd

    return pd.DataFrame({
        "dataset": ladder["dataset"], "setting": ladder["setting"], "step": ladder["step"],
        "from → to": [f"{a} → {b}" for a, b in zip(ladder["from_method"], ladder["to_method"])],
        "adds": ladder["adds"], "metric": ladder["metric"].str.replace("_", " "), "n": ladder["n_pairs"],
        "difference [95% bootstrap]": [f"{_number(d, 4, True)}{_interval(lo, hi, 4, True)}" for d, lo, hi in
                                zip(ladder["mean_diff"], ladder["ci_low"], ladder["ci_high"])],
        "note": ladder["note"],
    })


def format_cost(cost):
    import pandas as pd

    return pd.DataFrame({
        "dataset": cost["dataset"], "setting": cost["setting"], "method": cost["method"], "n": cost["n_seeds"],
        "local steps": [f"{v:,.0f}" for v in cost["local_steps"]],
        "server steps": [f"{v:,.0f}" for v in cost["server_steps"]],
        "MB down": [f"{v / 1e6:,.1f}" for v in cost["bytes_down"]],
        "MB up": [f"{v / 1e6:,.1f}" for v in cost["bytes_up"]],
        "MB per round": [f"{v:,.2f}" for v in cost["megabytes_per_round"]],
        "wall s": [_number(v, 1) for v in cost["wall_seconds"]],
        "reached target": [f"{k} of {n} (BA {t:g})" for k, n, t in zip(cost["n_reached"], cost["n_seeds"],
                                                                        cost["target"])],
        "rounds to target (median)": [_number(v, 1) for v in cost["rounds_to_target_median"]],
        "MB to target": [_number(v, 1) for v in cost["megabytes_to_target_mean"]],
    })


def tuning_table(records: Sequence[dict[str, Any]]):
    """One row per candidate of every tuned method: its options, validation scores per tuning seed, their
    mean, and whether it was chosen (from the results/tuning/*.json records)."""
    import pandas as pd

    rows = []
    for record in records:
        for candidate in record["candidates"]:
            rows.append({"dataset": record["dataset"], "setting": record["setting"], "method": record["method"],
                         "candidate": candidate["index"], "options": _options_text(candidate["options"]),
                         "metric": record["metric"], "scores": " ".join(f"{s:.4f}" for s in candidate["scores"]),
                         "mean": candidate["mean"], "chosen": candidate["index"] == record["chosen"]["index"],
                         "budget": record["budget"], "note": record["note"]})
    return pd.DataFrame(rows)


def _options_text(options: dict[str, Any]) -> str:
    return ", ".join(f"{key}={value}" for key, value in options.items()) or "(as configured)"


def tuned_options(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """method -> the options tuning chose (the same in every dataset and setting, or listed per setting)."""
    chosen: dict[str, Any] = {}
    for record in records:
        chosen.setdefault(record["method"], {})[f"{record['dataset']}/{record['setting']}"] = \
            record["chosen"]["options"]
    return chosen


def build_tables(frame, study: Study, tuning: Sequence[dict[str, Any]] = ()) -> dict:
    """Every table of the pipeline, from one frame of runs (fedakd.reporting.collect.runs_frame) and, in a
    tuned study, the tuning records."""
    comparison = comparison_table(frame, study.pairs, study.primary, study.secondary, study.alpha)
    pools = frame[[is_base(study, setting) for setting in frame["setting"]]]  # each pool once, at the headline step
    built = {"summary": summary_table(frame, study), "comparison": comparison,
             "ladder": ladder_table(frame, study.ladder, study.metrics, study.ladder_adds),
             "cost": cost_table(frame, study.target),
             "across": across_settings_table(pools, study.focus, study.primary, study.references)}
    if tuning:
        built["tuning"] = tuning_table(tuning)
    if families(study):
        built["steps"] = step_table(frame, comparison, study)
    return built


def study_tables(runs: list[dict[str, Any]], tuning: Sequence[dict[str, Any]], study: Study) -> tuple[Study, dict]:
    """The study with the options tuning chose (a method with one candidate chose nothing), and its tables: what
    the aggregate step writes and the report step reads, computed by both from the same runs."""
    import dataclasses

    from fedakd.reporting.collect import runs_frame

    study = dataclasses.replace(study, tuned=tuned_options([r for r in tuning if len(r["candidates"]) > 1]))
    return study, build_tables(runs_frame(runs, study.final_window, study.target), study, tuning)


def format_across(across):
    import pandas as pd

    return pd.DataFrame({
        "dataset": across["dataset"], "method": across["method"], "metric": across["metric"].str.replace("_", " "),
        "settings": across["settings"], "runs": across["runs"],
        "IQM [95% stratified bootstrap]": [f"{_number(v)}{_interval(lo, hi)}" for v, lo, hi in
                                           zip(across["iqm"], across["iqm_ci_low"], across["iqm_ci_high"])],
        "P(focus > method)": [_number(p, 2) for p in across["prob_focus_improves"]],
    })


def format_tuning(tuning):
    readable = tuning.drop(columns=["budget"]).copy()
    readable["mean"] = [_number(v, 4) for v in tuning["mean"]]
    readable["chosen"] = ["**chosen**" if c else "" for c in tuning["chosen"]]
    return readable


def readable_tables(tables: dict, study: Study) -> dict:
    formatters = {"summary": lambda t: format_summary(t, study), "comparison": format_comparison,
                  "ladder": format_ladder, "cost": format_cost, "tuning": format_tuning, "across": format_across,
                  "steps": format_steps}
    return {name: formatters.get(name, lambda t: t)(table) for name, table in tables.items()}


def write_tables(tables: dict, out_dir: str | Path, study: Study) -> list[Path]:
    """Write each table as <name>.csv (full precision), <name>.md and <name>.tex (readable); return the paths."""
    out_dir = Path(out_dir)
    written = []
    for name, readable in readable_tables(tables, study).items():
        written.append(atomic_write_text(out_dir / f"{name}.csv", tables[name].to_csv(index=False)))
        written.append(atomic_write_text(out_dir / f"{name}.md", readable.to_markdown(index=False) + "\n"))
        latex = readable.to_latex(index=False, escape=True, caption=CAPTIONS.get(name), label=f"tab:{name}")
        written.append(atomic_write_text(out_dir / f"{name}.tex", latex.replace("→", "$\\rightarrow$")))
    return written
