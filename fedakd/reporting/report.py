"""reports/report.md: the verdict, setup, partitions, tables and figures of one benchmark config.

Every statement in the report is derived from the tables and runs it is given; the verdict is
computed from the declared comparisons' adjusted tests and the ablation ladder, never from which
method has the highest mean, and never written by hand, so it cannot drift from the numbers.
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
from fedakd.reporting.stats import smallest_attainable_p
FIGURE_SECTIONS = {
    "learning_curves": "Learning curves",
    "per_class_recall": "Per-class recall",
    "minority_vs_imbalance": "Minority recall against imbalance",
    "accuracy_vs_bytes": "Accuracy against communication",
    "partition": "Partitions (clients x classes)",
    "tuning_sensitivity": "Tuning sensitivity (validation split)",
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


#: Whom the opening paragraph compares the focus method with, when the study has them.
KEY_RIVALS = ("fedavg", "fedavg-smote", "fedavg-ft", "feddf")
#: The two metrics the opening paragraph speaks of: overall, and on the minority classes.
VERDICT_METRICS = ("balanced_accuracy", "minority_recall")
WORDS = {"win": "better", "loss": "worse", "tie": "not distinguishable", "untested": "not tested"}


def _difference(row) -> str:
    interval = "" if math.isnan(row["ci_low"]) else f" [{row['ci_low']:+.3f}, {row['ci_high']:+.3f}]"
    return f"{row['mean_diff']:+.3f}{interval}"


def _comparison_sentence(row) -> str:
    """'against fedavg: +0.137 [0.120, 0.154], better (Holm-adjusted t-test p = 0.002)'."""
    if row["verdict"] == "untested":
        shown = f"{_difference(row)}, " if row["n_pairs"] else ""
        return f"against {row['baseline']}: {shown}not tested ({row['note'] or 'no p-value'})"
    return (f"against {row['baseline']}: {_difference(row)}, {WORDS[row['verdict']]} "
            f"(Holm-adjusted t-test p = {row['ttest_p_holm']:.3g})")


def _ladder_sentence(ladder, metric: str) -> str:
    """Which rungs of the ladder move ``metric`` clearly (their interval excludes 0) and which do not."""
    parts, clear = [], []
    for _, step in ladder[ladder["metric"] == metric].iterrows():
        if math.isnan(step["ci_low"]):
            parts.append(f"{step['adds']} {step['mean_diff']:+.3f} (no interval)")
            continue
        excludes_zero = step["ci_low"] > 0 or step["ci_high"] < 0
        parts.append(f"{step['adds']} {_difference(step)}" + ("" if excludes_zero else " (interval includes 0)"))
        if excludes_zero:
            clear.append((abs(step["mean_diff"]), step["adds"], step["mean_diff"] > 0))
    if not parts:
        return ""
    sentence = f"The ladder ({metric.replace('_', ' ')}, 95 % t-intervals): " + "; ".join(parts) + ". "
    if clear:
        size, adds, helps = max(clear)
        sentence += (f"The largest clear step is {adds}, which {'adds' if helps else 'costs'} {size:.3f}; "
                     f"steps whose interval includes 0 are not shown to matter.")
    else:
        sentence += "No step's interval excludes 0: the ladder does not locate a gain."
    return sentence


def _failed_runs(runs: list[dict[str, Any]], dataset: str, setting: str) -> list[str]:
    """'fedakd seed 1: collapsed from round 3 (averaged)' for every failed run of one dataset and setting."""
    from fedakd.diagnostics import describe, failed

    found = [(run["job"]["method"], int(run["job"]["seed"]), describe(run.get("failure")))
             for run in runs if run["job"]["dataset"] == dataset and run["job"]["setting"] == setting
             and failed(run.get("failure"))]
    return [f"{method} seed {seed}: {what}" for method, seed, what in sorted(found)]


def _failure_sentences(runs, comparison_rows, focus: str, dataset: str, setting: str) -> list[str]:
    """Every failed run named (method, seed, round, step), and the focus method's balanced-accuracy
    differences without the failed seeds, as one sensitivity line."""
    failed_runs = _failed_runs(runs, dataset, setting)
    if not failed_runs:
        return ["No run collapsed or diverged."]
    sentences = [f"Failed runs ({len(failed_runs)}; kept in every statistic above): " + "; ".join(failed_runs) + "."]
    rows = comparison_rows[(comparison_rows["metric"] == VERDICT_METRICS[0])
                           & ((comparison_rows["method_failed"] > 0) | (comparison_rows["baseline_failed"] > 0))]
    if len(rows):
        sentences.append("Sensitivity, without the failed seeds: " + "; ".join(
            f"{focus} − {row['baseline']} {row['mean_diff_without_failed']:+.3f} (n = {row['n_pairs_without_failed']}"
            f", against {row['mean_diff']:+.3f} with them)" for _, row in rows.iterrows()) + ".")
    return sentences


def _verdict_paragraphs(tables: dict, study, runs: list[dict[str, Any]] = ()) -> list[str]:
    """The report's opening: per dataset and setting, the focus method against its key rivals on the
    verdict metrics (adjusted tests only), the ladder, every failed run, and whether the methods had converged."""
    summary, comparison, ladder = tables["summary"], tables["comparison"], tables["ladder"]
    focus = study.focus
    lines = ["## Verdict", ""]
    if focus is None:
        return lines + ["The config declares no focus method (comparisons.focus), so no verdict is drawn; the "
                        "declared comparisons are in the table below.", ""]
    for (dataset, setting), block in summary.groupby(["dataset", "setting"], sort=False):
        n = int(block["n_seeds"].max())
        sentences = [f"**{dataset} / {setting}** ({n} seeds, final round)."]
        rows = comparison[(comparison["dataset"] == dataset) & (comparison["setting"] == setting)
                          & (comparison["method"] == focus)]
        for metric in VERDICT_METRICS:
            chosen = rows[(rows["metric"] == metric) & rows["baseline"].isin(KEY_RIVALS)]
            chosen = chosen.set_index("baseline").reindex([r for r in KEY_RIVALS if r in set(chosen["baseline"])])
            if chosen.empty:
                continue
            own = block[block["method"] == focus][f"{metric}_mean"]
            if not len(own) or math.isnan(own.iloc[0]):
                sentences.append(f"{focus}'s {metric.replace('_', ' ')} is undefined here (no such classes).")
                continue
            sentences.append(f"{focus}'s {metric.replace('_', ' ')} is {float(own.iloc[0]):.3f}; "
                             + "; ".join(_comparison_sentence({**row, "baseline": baseline})
                                         for baseline, row in chosen.iterrows()) + ".")
        steps = ladder[(ladder["dataset"] == dataset) & (ladder["setting"] == setting)]
        if len(steps):
            sentences.append(_ladder_sentence(steps, VERDICT_METRICS[0]))
        sentences += _failure_sentences(runs, rows, focus, dataset, setting)
        unconverged = block[~block["converged"]]
        if len(unconverged):
            names = ", ".join(f"{m} (+{100 * r:.1f} points)" for m, r in zip(unconverged["method"],
                                                                          unconverged["late_rise"]))
            sentences.append(f"Not converged: {names} over the last {study.window:.0%} of the rounds, so on this "
                             f"setting the verdict compares how fast the methods learn, not where they end up.")
        lines += [" ".join(sentences), ""]
    return lines


def _statistics_note(tables: dict, study) -> list[str]:
    """What the tests can and cannot show with the seeds run: the family, the level, the attainable p."""
    comparison = tables["comparison"]
    n = int(comparison["n_pairs"].max()) if len(comparison) else 0
    floor = smallest_attainable_p(n)
    family = int(comparison["family_size"].max()) if len(comparison) else 0
    return [
        "### How the verdict is drawn", "",
        f"The comparisons were declared by the config before any result existed: {len(study.pairs)} comparisons "
        f"(each method against {study.baseline}, and {study.focus} against every other; references excluded) "
        f"x {len(study.metrics)} headline metrics ({', '.join(study.metrics)}) make each setting's family of up to "
        f"{family} tests. p-values are Holm-adjusted within that family; a comparison is a win or a loss only when "
        f"its adjusted paired t-test p is below {study.alpha}, else a tie. With {n} seed pairs the exact Wilcoxon "
        f"signed-rank test cannot give a two-sided p below {floor['wilcoxon']:.4g} (so, adjusted, it can rarely "
        f"reach {study.alpha}); the t-test has no such floor but assumes roughly normal differences. Best-round "
        f"figures are chosen on the test set and appear only in summary.csv, labelled optimistic.", ""]


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


def _tuning(readable: dict, study) -> list[str]:
    if "tuning" not in readable:
        return []
    chosen = "; ".join(f"{method}: " + ", ".join(f"{where} {options}" for where, options in by_setting.items())
                       for method, by_setting in study.tuned.items())
    return ["### Tuning", "",
            "Every method's options were chosen on the validation split (never the test set or the transfer set), "
            "with the same number of candidates per method and tuning seeds distinct from the evaluation seeds; "
            "methods marked (tuned) in the summary ran the chosen options: " + (chosen or "none") + ".", "",
            readable["tuning"].to_markdown(index=False), ""]


def write_report(runs: list[dict[str, Any]], tables: dict, figures: list[Path], out_path: str | Path,
                 config: dict[str, Any], manifests: list[dict[str, Any]], study=None) -> Path:
    """Write the Markdown report from the tables of fedakd.reporting.tables.build_tables."""
    from fedakd.reporting.tables import TABLE_NAMES, Study, readable_tables

    missing = [name for name in TABLE_NAMES if name not in tables]
    if missing:
        raise ResultsError(f"the report needs the tables {missing}; build them with build_tables before "
                           f"write_report")
    study = study or Study.from_config(config)
    readable = readable_tables(tables, study)
    out_path = Path(out_path)
    lines = [f"# fedakd-bench report: {config.get('experiment', 'unnamed experiment')}", "",
             *_verdict_paragraphs(tables, study, runs), *_statistics_note(tables, study),
             *_setup(config, runs), *_partitions(runs, manifests),
             "## Results", "",
             "Headline figures are **final-round** test metrics, mean ± std [95 % t-interval] over seeds.", "",
             "### Summary", "", readable["summary"].to_markdown(index=False), "",
             "### Declared comparisons", "", readable["comparison"].to_markdown(index=False), "",
             "### Ablation ladder", "", readable["ladder"].to_markdown(index=False) if len(readable["ladder"])
             else "The study lacks the ladder's methods.", "",
             "### Cost", "", readable["cost"].to_markdown(index=False), "",
             *_tuning(readable, study),
             *_figures(figures, out_path.parent)]
    return atomic_write_text(out_path, "\n".join(lines).rstrip() + "\n")
