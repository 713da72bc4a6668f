"""reports/report.md: the setup, partitions, tables, figures and findings of one benchmark config.

Every statement in the report is derived from the tables and runs it is given;
the findings section is computed, never written by hand, so it cannot drift
from the numbers.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from fedakd.config import config_digest
from fedakd.io import atomic_write_text
from fedakd.reporting.collect import ResultsError
from fedakd.reporting.tables import format_comparison, format_summary

SIGNIFICANCE = 0.05
FIGURE_SECTIONS = {
    "learning_curves": "Learning curves",
    "per_class_recall": "Per-class recall",
    "minority_vs_imbalance": "Minority recall against imbalance",
    "accuracy_vs_bytes": "Accuracy against communication",
    "partition": "Partitions (clients x classes)",
}


def _inline(value: Any) -> str:
    return f"`{json.dumps(value, sort_keys=True)}`"


def _setup(config: dict[str, Any], runs: list[dict[str, Any]]) -> list[str]:
    federation = config.get("federation", {})
    lines = [
        "## Setup", "",
        f"- Config digest (SHA-256 of the canonical JSON of the config): `{config_digest(config)}`",
        f"- Datasets: {', '.join(config.get('datasets', [])) or '-'}",
        f"- Seeds: {', '.join(str(s) for s in config.get('seeds', [])) or '-'} "
        f"(a seed fixes the partition, initial weights and client sampling for every method)",
        f"- Federation: {', '.join(f'{k} = {v}' for k, v in federation.items()) or '-'}",
        f"- Model: {_inline(config.get('model', {}))}",
        f"- Runs collected: {len(runs)}",
        "", "### Settings", "", "| setting | imbalance | split |", "|---|---|---|",
    ]
    lines += [f"| {name} | {_inline(params.get('imbalance'))} | {_inline(params.get('split'))} |"
              for name, params in config.get("settings", {}).items()]
    lines += ["", "### Methods", "", "| name | method | options |", "|---|---|---|"]
    for name, spec in config.get("methods", {}).items():
        options = {k: v for k, v in spec.items() if k != "method"}
        lines.append(f"| {name} | {spec.get('method', name)} | {_inline(options) if options else 'defaults'} |")
    return lines + [""]


def _partitions(runs: list[dict[str, Any]], manifests: list[dict[str, Any]]) -> list[str]:
    """One row per dataset/setting/seed; flags a seed whose methods saw different partitions (pairing broken)."""
    manifest_of = {m["sha256"]: m for m in manifests}
    seen: dict[tuple, dict[str, Any]] = {}
    for run in runs:
        key = (run["job"]["dataset"], run["job"]["setting"], run["job"]["seed"])
        seen.setdefault(key, {"hashes": set(), "minority": run["groups"].get("minority", [])})
        seen[key]["hashes"].add(run["partition_sha256"])
    lines = ["## Partitions", "",
             "| dataset | setting | seed | partition SHA-256 | client sizes (min-max) | minority classes |",
             "|---|---|---|---|---|---|"]
    for (dataset, setting, seed), entry in sorted(seen.items(), key=lambda item: (str(item[0][0]), str(item[0][1]),
                                                                                   int(item[0][2]))):
        hashes = sorted(entry["hashes"])
        manifest = manifest_of.get(hashes[0])
        sizes = (f"{min(manifest['client_sizes'])}-{max(manifest['client_sizes'])}"
                 if manifest and manifest.get("client_sizes") else "manifest not given")
        hash_cell = (f"`{hashes[0]}`" if len(hashes) == 1 else
                     "**methods saw different partitions:** " + ", ".join(f"`{h}`" for h in hashes))
        minority = ", ".join(map(str, entry["minority"])) or "none (balanced)"
        lines.append(f"| {dataset} | {setting} | {seed} | {hash_cell} | {sizes} | {minority} |")
    return lines + [""]


def _verdict(comparison, dataset: str, setting: str, method: str) -> str:
    rows = comparison[(comparison["dataset"] == dataset) & (comparison["setting"] == setting)
                      & (comparison["method"] == method) & (comparison["metric"] == "minority_recall")]
    if rows.empty:
        return "no paired comparison is available"
    row = rows.iloc[0]
    if math.isnan(row["ttest_p"]):
        return f"the difference from {row['baseline']} was not tested ({row['note'] or 'no p-value'})"
    significant = row["ttest_p"] < SIGNIFICANCE
    return (f"{row['mean_diff']:+.4f} over {row['baseline']}, "
            f"{'significant' if significant else 'not significant'} at p<{SIGNIFICANCE} "
            f"(paired t-test p = {row['ttest_p']:.3g}, {row['n_pairs']} seed pairs)")


def _findings(summary, comparison) -> list[str]:
    """Per dataset/setting: the highest mean final minority recall, and whether it differs from the baseline."""
    baseline = comparison["baseline"].iloc[0] if len(comparison) else "fedavg"
    lines = ["## Which method is best on minority recall", "",
             f"Derived from the tables above: highest mean final-round minority recall per setting, and whether "
             f"its difference from {baseline} is significant (p<{SIGNIFICANCE}, paired t-test over seeds).", ""]
    for (dataset, setting), block in summary.groupby(["dataset", "setting"], sort=False):
        scored = block.dropna(subset=["minority_recall_mean"])
        if scored.empty:
            lines.append(f"- **{dataset} / {setting}**: no minority classes (balanced pool); not ranked.")
            continue
        top = scored["minority_recall_mean"].max()
        best = scored[scored["minority_recall_mean"].apply(lambda v: math.isclose(v, top, abs_tol=1e-12))]
        names = list(best["method"])
        tie = f" (tied with {', '.join(names[1:])})" if len(names) > 1 else ""
        if names[0] == baseline:
            lines.append(f"- **{dataset} / {setting}**: {baseline}{tie}, minority recall {top:.4f}; "
                         f"no method exceeds the baseline.")
        else:
            lines.append(f"- **{dataset} / {setting}**: {names[0]}{tie}, minority recall {top:.4f}; "
                         f"{_verdict(comparison, dataset, setting, names[0])}.")
    return lines + [""]


def _figures(figures: list[Path], report_dir: Path) -> list[str]:
    """PNG figures embedded with links relative to the report's folder, each with its PDF beside it."""
    pdfs = {Path(f).with_suffix("") for f in figures if Path(f).suffix == ".pdf"}
    sections: dict[str, list[str]] = {}
    for figure in (Path(f) for f in figures if Path(f).suffix == ".png"):
        kind = next((k for k in FIGURE_SECTIONS if figure.stem.startswith(k + "_")), None)
        caption = figure.stem[len(kind) + 1:] if kind else figure.stem
        link = Path(os.path.relpath(figure, report_dir)).as_posix()
        entry = f"![{caption}]({link})"
        if figure.with_suffix("") in pdfs:
            entry += f"  \n[PDF]({Path(os.path.relpath(figure.with_suffix('.pdf'), report_dir)).as_posix()})"
        sections.setdefault(FIGURE_SECTIONS.get(kind, "Other figures"), []).append(entry)
    lines = ["## Figures", ""]
    for title, entries in sections.items():
        lines += [f"### {title}", ""] + [line for entry in entries for line in (entry, "")]
    return lines


def write_report(runs: list[dict[str, Any]], tables: dict, figures: list[Path], out_path: str | Path,
                 config: dict[str, Any], manifests: list[dict[str, Any]]) -> Path:
    """Write the Markdown report; ``tables`` needs 'summary' and 'comparison' (from fedakd.reporting.tables)."""
    missing = [name for name in ("summary", "comparison") if name not in tables]
    if missing:
        raise ResultsError(f"the report needs the tables {missing}; build them with summary_table and "
                           f"comparison_table before write_report")
    out_path = Path(out_path)
    summary, comparison = tables["summary"], tables["comparison"]
    lines = [f"# fedakd-bench report: {config.get('experiment', 'unnamed experiment')}", "",
             *_setup(config, runs), *_partitions(runs, manifests),
             "## Results", "",
             "Headline figures are **final-round** test metrics. Best-round figures (the round with the highest "
             "test accuracy) are chosen on the test set and are therefore optimistic; they appear only in each "
             "run's metrics.json, labelled `best`.", "",
             "### Summary: mean ± std over seeds", "",
             format_summary(summary).to_markdown(index=False), "",
             "95 % t-intervals and all metrics are in `summary.csv`.", "",
             "### Paired difference from the baseline", "",
             format_comparison(comparison).to_markdown(index=False), "",
             *_findings(summary, comparison), *_figures(figures, out_path.parent)]
    return atomic_write_text(out_path, "\n".join(lines).rstrip() + "\n")
