"""Summary and paired-comparison tables over seeds (METHOD.md section 5).

Seed s fixes the partition, initial weights and client sampling for every
method, so methods are compared per seed pair (paired t-test and Wilcoxon
signed-rank), which removes the between-seed variance an unpaired test would
carry. The CSV keeps every number at full precision; the Markdown and LaTeX
versions are for reading (ASCII plus ± and –, which pdflatex's utf8 input handles).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from fedakd.io import atomic_write_text
from fedakd.metrics import METRIC_KEYS

HEADLINE = ("accuracy", "balanced_accuracy", "macro_f1", "minority_recall", "worst_class_recall")
GROUP_KEYS = ["dataset", "setting", "method"]
SUMMARY_STATS = ("mean", "std", "ci_low", "ci_high")
COMPARISON_COLUMNS = ("dataset", "setting", "method", "baseline", "metric", "mean_diff", "ttest_p", "wilcoxon_p",
                      "n_pairs", "note")
CONFIDENCE = 0.95
CAPTIONS = {
    "summary": "Final-round test metrics: mean ± std over seeds (n = number of seeds).",
    "comparison": "Paired difference from the baseline over seeds (method - baseline): mean, paired t-test p, "
                  "Wilcoxon signed-rank p.",
}


def _mean_std_interval(values: np.ndarray) -> tuple[float, float, float, float]:
    """Mean, sample std (ddof=1) and 95 % t-interval; std and interval are NaN with fewer than 2 values."""
    from scipy import stats

    if len(values) == 0:
        return math.nan, math.nan, math.nan, math.nan
    mean = float(values.mean())
    if len(values) < 2:
        return mean, math.nan, math.nan, math.nan
    std = float(values.std(ddof=1))
    half_width = float(stats.t.ppf(0.5 + CONFIDENCE / 2, df=len(values) - 1)) * std / math.sqrt(len(values))
    return mean, std, mean - half_width, mean + half_width


def summary_table(frame):
    """Per dataset x setting x method: <metric>_mean/_std/_ci_low/_ci_high for every metric, and n_seeds."""
    import pandas as pd

    rows = []
    for (dataset, setting, method), group in frame.groupby(GROUP_KEYS, sort=False):
        row = {"dataset": dataset, "setting": setting, "method": method, "n_seeds": len(group)}
        for metric in METRIC_KEYS:
            stats = _mean_std_interval(group[metric].dropna().to_numpy(dtype=float))
            row.update({f"{metric}_{name}": value for name, value in zip(SUMMARY_STATS, stats)})
        rows.append(row)
    columns = [*GROUP_KEYS, "n_seeds", *(f"{m}_{s}" for m in METRIC_KEYS for s in SUMMARY_STATS)]
    return pd.DataFrame(rows, columns=columns)


def _paired_tests(differences: np.ndarray) -> tuple[float, float, str]:
    """Paired t-test and Wilcoxon p-values of method − baseline differences, NaN (with the reason) when undefined."""
    from scipy import stats

    if len(differences) < 2:
        return math.nan, math.nan, f"{len(differences)} seed pair(s): no test"
    if np.all(differences == 0):
        return math.nan, math.nan, "all differences zero: no test"
    if np.all(differences == differences[0]):
        # scipy would report p = 0 from a zero variance: no evidence of that strength with a handful of seeds.
        return math.nan, float(stats.wilcoxon(differences).pvalue), "identical differences: t-test undefined"
    return float(stats.ttest_rel(differences, np.zeros_like(differences)).pvalue), \
        float(stats.wilcoxon(differences).pvalue), ""


def comparison_table(frame, baseline: str = "fedavg"):
    """Per dataset x setting x method != baseline x headline metric: mean paired difference and p-values.

    Pairs are the seeds both methods have. A metric undefined in a setting (minority
    recall on a balanced pool) or a missing baseline gives NaN with a note saying why.
    """
    import pandas as pd

    rows = []
    for (dataset, setting), block in frame.groupby(["dataset", "setting"], sort=False):
        base = block[block["method"] == baseline]
        for method, group in block[block["method"] != baseline].groupby("method", sort=False):
            paired = group.merge(base, on="seed", suffixes=("", "_base"))
            for metric in HEADLINE:
                row = {"dataset": dataset, "setting": setting, "method": method, "baseline": baseline,
                       "metric": metric, "n_pairs": len(paired)}
                if base.empty:
                    rows.append({**row, "mean_diff": math.nan, "ttest_p": math.nan, "wilcoxon_p": math.nan,
                                 "note": f"no {baseline} runs for {dataset}/{setting}"})
                    continue
                differences = (paired[metric] - paired[f"{metric}_base"]).dropna().to_numpy(dtype=float)
                if len(paired) and len(differences) == 0:
                    rows.append({**row, "mean_diff": math.nan, "ttest_p": math.nan, "wilcoxon_p": math.nan,
                                 "note": f"{metric} undefined here (no such classes)"})
                    continue
                ttest_p, wilcoxon_p, note = _paired_tests(differences)
                rows.append({**row, "mean_diff": float(differences.mean()) if len(differences) else math.nan,
                             "ttest_p": ttest_p, "wilcoxon_p": wilcoxon_p, "note": note})
    return pd.DataFrame(rows, columns=list(COMPARISON_COLUMNS))


def _number(value: float, digits: int = 3, signed: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def _p_value(p: float) -> str:
    if math.isnan(p):
        return "–"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def format_summary(summary):
    """Headline metrics as 'mean ± std' strings (std omitted with one seed), for Markdown and LaTeX."""
    import pandas as pd

    readable = summary[GROUP_KEYS].copy()
    readable["n"] = summary["n_seeds"]
    for metric in HEADLINE:
        readable[metric.replace("_", " ")] = [
            _number(mean) if math.isnan(std) else f"{_number(mean)} ± {_number(std)}"
            for mean, std in zip(summary[f"{metric}_mean"], summary[f"{metric}_std"])
        ]
    return pd.DataFrame(readable)


def format_comparison(comparison):
    """Rounded differences and p-values, for Markdown and LaTeX."""
    import pandas as pd

    return pd.DataFrame({
        "dataset": comparison["dataset"], "setting": comparison["setting"], "method": comparison["method"],
        "metric": comparison["metric"].str.replace("_", " "),
        "mean diff": [_number(d, 4, signed=True) for d in comparison["mean_diff"]],
        "t-test p": [_p_value(p) for p in comparison["ttest_p"]],
        "Wilcoxon p": [_p_value(p) for p in comparison["wilcoxon_p"]],
        "pairs": comparison["n_pairs"], "note": comparison["note"],
    })


READABLE = {"summary": format_summary, "comparison": format_comparison}


def build_tables(frame, baseline: str = "fedavg") -> dict:
    """The two tables of the pipeline, from one frame of runs (runs_frame)."""
    return {"summary": summary_table(frame), "comparison": comparison_table(frame, baseline=baseline)}


def write_tables(tables: dict, out_dir: str | Path) -> list[Path]:
    """Write each table as <name>.csv (full precision), <name>.md and <name>.tex (readable); return the paths."""
    out_dir = Path(out_dir)
    written = []
    for name, table in tables.items():
        readable = READABLE.get(name, lambda t: t)(table)
        written.append(atomic_write_text(out_dir / f"{name}.csv", table.to_csv(index=False)))
        written.append(atomic_write_text(out_dir / f"{name}.md", readable.to_markdown(index=False) + "\n"))
        latex = readable.to_latex(index=False, escape=True, caption=CAPTIONS.get(name), label=f"tab:{name}")
        written.append(atomic_write_text(out_dir / f"{name}.tex", latex))
    return written
