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
from typing import TYPE_CHECKING, Any

from fedakd.config import config_digest
from fedakd.io import atomic_write_text
from fedakd.reporting.collect import ResultsError
from fedakd.reporting.stats import smallest_attainable_p

if TYPE_CHECKING:
    from fedakd.config.study import Study
FIGURE_SECTIONS = {
    "critical_difference": "Critical-difference diagrams (Friedman + Nemenyi across settings and seeds)",
    "forest": "Forest plots (the focus method against each rival)",
    "learning_curves": "Learning curves",
    "per_class_recall": "Per-class recall",
    "minority_vs_imbalance": "Minority recall against imbalance",
    "accuracy_vs_bytes": "Accuracy against communication",
    "partition": "Partitions (clients x classes)",
    "tuning_sensitivity": "Tuning sensitivity (validation split)",
    "steps": "The verdict across client step sizes",
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


WORDS = {"win": "better", "loss": "worse", "tie": "not distinguishable", "untested": "not tested"}


def _difference(row) -> str:
    interval = "" if math.isnan(row["ci_low"]) else f" [{row['ci_low']:+.3f}, {row['ci_high']:+.3f}]"
    return f"{row['mean_diff']:+.3f}{interval}"


def _listing(rows) -> str:
    """'fedavg (+0.137 [+0.120, +0.154]), feddf (+0.050 [...])'."""
    return ", ".join(f"{row['baseline']} ({_difference(row)})" for _, row in rows.iterrows())


def _ladder_sentence(ladder, metric: str) -> str:
    """Where the focus method's gain comes from: the ladder's largest step whose bootstrap interval excludes 0."""
    steps = ladder[ladder["metric"] == metric]
    clear = [(abs(step["mean_diff"]), step) for _, step in steps.iterrows()
             if not math.isnan(step["ci_low"]) and (step["ci_low"] > 0 or step["ci_high"] < 0)]
    if not len(steps):
        return ""
    if not clear:
        return "No step of the ablation ladder moves it clearly (every step's interval includes 0)."
    _, step = max(clear, key=lambda item: item[0])
    direction = "adds" if step["mean_diff"] > 0 else "costs"
    return (f"On the ablation ladder, the largest clear step is {step['adds']} ({step['from_method']} → "
            f"{step['to_method']}), which {direction} {_difference(step)}.")


def _failed_runs(runs: list[dict[str, Any]], dataset: str, setting: str) -> list[str]:
    """'fedakd seed 1: collapsed from round 3 (averaged)' for every failed run of one dataset and setting."""
    from fedakd.diagnostics import describe, failed

    found = [(run["job"]["method"], int(run["job"]["seed"]), describe(run.get("failure")))
             for run in runs if run["job"]["dataset"] == dataset and run["job"]["setting"] == setting
             and failed(run.get("failure"))]
    return [f"{method} seed {seed}: {what}" for method, seed, what in sorted(found)]


def _failure_sentences(runs, comparison_rows, focus: str, dataset: str, setting: str) -> list[str]:
    """Every failed run named (method, seed, round, step), and the focus method's primary-metric differences
    without the failed seeds, as one sensitivity line."""
    failed_runs = _failed_runs(runs, dataset, setting)
    if not failed_runs:
        return ["No run collapsed or diverged."]
    sentences = [f"Failed runs ({len(failed_runs)}; kept in every statistic above): " + "; ".join(failed_runs) + "."]
    rows = comparison_rows[(comparison_rows["family"] == "primary")
                           & ((comparison_rows["method_failed"] > 0) | (comparison_rows["baseline_failed"] > 0))]
    if len(rows):
        sentences.append("Sensitivity, without the failed seeds: " + "; ".join(
            f"{focus} − {row['baseline']} " + (
                f"{row['mean_diff_without_failed']:+.3f} (n = {row['n_pairs_without_failed']}, against "
                f"{row['mean_diff']:+.3f} with them)" if row["n_pairs_without_failed"] else
                f"no seed without a failed run (against {row['mean_diff']:+.3f} with them)")
            for _, row in rows.iterrows()) + ".")
    return sentences


def _convergence_clause(block, baseline: str | None) -> str:
    """The opening clause when the baseline has not converged on every seed (the verdict then compares speed)."""
    if baseline is None or baseline not in set(block["method"]):
        return ""
    row = block[block["method"] == baseline].iloc[0]
    if row["converged"]:
        return ""
    converged, n, rising = int(row["n_converged"]), int(row["n_seeds"]), int(row["n_rising"])
    if not rising:  # every seed that has not converged failed: the study ran long enough
        return (f"{baseline} has converged on every seed that did not fail ({converged} of {n}; {n - converged} "
                f"failed): ")
    return (f"{baseline} has converged on {converged} of {n} seeds here ({rising} still rising), so this "
            f"compares how fast the methods learn, not where they end up: ")


def _setting_sentences(block, rows, steps, study) -> list[str]:
    """At most three sentences: where the focus method wins, where it ties (and loses), and where its gain
    comes from, all on the primary metric's adjusted family."""
    focus, metric = study.focus, study.primary.replace("_", " ")
    tested = rows[rows["family"] == "primary"]
    wins, ties, losses = (tested[tested["verdict"] == word] for word in ("win", "tie", "loss"))
    opening = _convergence_clause(block, study.baseline)
    first = (f"{focus} beats {_listing(wins)} on {metric}" if len(wins)
             else f"{focus} beats none of its {len(tested)} declared rivals on {metric}")
    first = (opening + first[0].lower() + first[1:]) if opening else first
    second = []
    if len(ties):
        second.append(f"not distinguishable from {', '.join(ties['baseline'])}")
    if len(losses):
        second.append(f"worse than {_listing(losses)}")
    sentences = [first + " (Holm-adjusted paired t-test, 95 % paired bootstrap intervals)."]
    if second:
        sentences.append("It is " + "; and ".join(second) + ".")
    ladder = _ladder_sentence(steps, study.primary)
    if ladder:
        sentences.append(ladder)
    return sentences[:3]


def _verdict_paragraphs(tables: dict, study, runs: list[dict[str, Any]] = (), figures: list[Path] = (),
                        report_dir: Path | None = None) -> list[str]:
    """The report's opening: per dataset and setting, the forest plot, at most three sentences drawn from the
    primary family and the ladder, then every failed run named."""
    summary, comparison, ladder = tables["summary"], tables["comparison"], tables["ladder"]
    focus = study.focus
    lines = ["## Verdict", ""]
    if focus is None:
        return lines + ["The config declares no focus method (comparisons.focus), so no verdict is drawn; the "
                        "declared comparisons are in the table below.", ""]
    forests = {Path(f).stem: Path(f) for f in figures if Path(f).suffix == ".png" and Path(f).stem.startswith("forest_")}
    for (dataset, setting), block in summary.groupby(["dataset", "setting"], sort=False):
        n = int(block["n_seeds"].max())
        rows = comparison[(comparison["dataset"] == dataset) & (comparison["setting"] == setting)
                          & (comparison["method"] == focus)]
        steps = ladder[(ladder["dataset"] == dataset) & (ladder["setting"] == setting)]
        lines += [f"### {dataset} / {setting} ({n} seeds, {_window_words(study)})", ""]
        forest = forests.get(f"forest_{dataset}_{setting}")
        if forest is not None and report_dir is not None:
            lines += [f"![{focus} against each rival, {dataset} / {setting}]"
                      f"({Path(os.path.relpath(forest, report_dir)).as_posix()})", ""]
        lines += [" ".join(_setting_sentences(block, rows, steps, study)), ""]
        lines += [" ".join(_failure_sentences(runs, rows, focus, dataset, setting)), ""]
    return lines + _step_paragraphs(tables, study, figures, report_dir)


def _window_words(study) -> str:
    """What a run's headline figure is: 'mean of the last 10 % of rounds' or 'final round'."""
    return f"mean of the last {study.final_window:.0%} of rounds" if study.final_window > 0 else "final round"


def _step_paragraphs(tables: dict, study, figures: list[Path], report_dir: Path | None) -> list[str]:
    """Across step sizes: the step figure of each family and whether the focus method's verdict holds across
    the steps, or which step flips it (fedakd.reporting.steps)."""
    from fedakd.reporting.steps import step_sentences

    table = tables.get("steps")
    if table is None or not len(table):
        return []
    lines = ["### Across client step sizes", ""]
    for figure in figures:
        figure = Path(figure)
        if figure.suffix == ".png" and figure.stem.startswith("steps_") and report_dir is not None:
            lines += [f"![the verdict across step sizes]({Path(os.path.relpath(figure, report_dir)).as_posix()})", ""]
    return lines + [" ".join(step_sentences(table, study)), ""]


#: The fewest pairs without a failed run whose spread the power note uses (the std of two differences is noise).
MIN_HEALTHY_PAIRS = 3


def _statistics_note(tables: dict, study) -> list[str]:
    """What the tests can and cannot show with the seeds run: the families, the level, the attainable p, the
    minimum detectable difference and the seeds a 2-point difference would need."""
    import numpy as np

    comparison = tables["comparison"]
    primary = comparison[comparison["family"] == "primary"] if len(comparison) else comparison
    n = int(primary["n_pairs"].max()) if len(primary) else 0
    floor = smallest_attainable_p(n)
    family = int(primary["family_size"].max()) if len(primary) else 0
    spreads = primary["paired_std"].dropna().to_numpy(dtype=float) if len(primary) else np.array([])
    lines = [
        "### How the verdict is drawn", "",
        f"The comparisons and the metrics were declared by the config before any result existed: "
        f"{len(study.pairs)} comparisons (each method against {study.baseline}, and {study.focus} against every "
        f"other; references excluded). The **primary** metric, {study.primary.replace('_', ' ')}, makes each "
        f"setting's family of up to {family} tests, Holm-adjusted; a comparison is a win or a loss only when its "
        f"adjusted paired t-test p is below {study.alpha}, else a tie. The secondary metrics "
        f"({', '.join(study.secondary) or 'none'}) are each their own adjusted family, reported in the comparison "
        f"table and never deciding the verdict. Intervals are 95 % paired bootstrap intervals (percentile, seeds "
        f"resampled), inside the metric's range by construction; the t-test is the declared test. With {n} seed "
        f"pairs the exact Wilcoxon signed-rank test cannot give a two-sided p below {floor['wilcoxon']:.4g}. "
        f"Best-round figures are chosen on the test set and appear only in summary.csv, labelled optimistic."]
    if len(spreads) and family:
        sd = float(np.median(spreads))
        lines[-1] += (f" **Power:** with the median paired standard deviation of the primary comparisons, "
                      f"{_power_clause(sd, n, family, study.alpha)}.")
        healthy = primary[primary["n_pairs_without_failed"] >= MIN_HEALTHY_PAIRS]["paired_std_without_failed"].dropna()
        if len(healthy) and (primary["method_failed"] + primary["baseline_failed"]).any():
            lines[-1] += (f" Failed runs widen that spread; over the seeds where neither run failed it is "
                          f"{_power_clause(float(np.median(healthy)), n, family, study.alpha)}: what a study whose "
                          f"runs do not fail would resolve.")
    return lines + [""]


def _power_clause(sd: float, n: int, family: int, alpha: float) -> str:
    """'0.0123, and with 8 seeds the minimum difference ... is ...; a 2-point difference would need k seeds'."""
    from fedakd.reporting.stats import MOST_SEEDS, POWER, minimum_detectable_difference, seeds_for_power

    mdd = minimum_detectable_difference(n, sd, alpha, POWER, family)
    needed = seeds_for_power(sd, 0.02, alpha, POWER, family)
    needed_text = f"{needed} seeds" if needed < MOST_SEEDS else f"{MOST_SEEDS} or more seeds"
    return (f"{sd:.4f}, and with {n} seeds the minimum difference the strictest Holm step (level {alpha}/{family}) "
            f"detects with {POWER:.0%} power is {mdd:.3f} ({100 * mdd:.1f} points); a 2-point difference would "
            f"need {needed_text}")


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
                 config: dict[str, Any], manifests: list[dict[str, Any]], study: "Study") -> Path:
    """Write the Markdown report from the tables of fedakd.reporting.tables.build_tables."""
    from fedakd.layout import TABLE_NAMES
    from fedakd.reporting.tables import readable_tables

    missing = [name for name in TABLE_NAMES if name not in tables]
    if missing:
        raise ResultsError(f"the report needs the tables {missing}; build them with build_tables before "
                           f"write_report")
    readable = readable_tables(tables, study)
    out_path = Path(out_path)
    lines = [f"# fedakd-bench report: {config.get('experiment', 'unnamed experiment')}", "",
             *([config["description"].strip(), ""] if config.get("description") else []),
             *_verdict_paragraphs(tables, study, runs, figures, out_path.parent), *_statistics_note(tables, study),
             *_setup(config, runs), *_partitions(runs, manifests),
             "## Results", "",
             f"Headline figures are test metrics, each run's **{_window_words(study)}**, then mean ± std [95 % "
             "bootstrap interval] over seeds; the final round's balanced accuracy is beside them.", "",
             "### Summary", "", readable["summary"].to_markdown(index=False), "",
             "### Declared comparisons", "", readable["comparison"].to_markdown(index=False), "",
             "### Ablation ladder", "", readable["ladder"].to_markdown(index=False) if len(readable["ladder"])
             else "The study lacks the ladder's methods.", "",
             "### Across settings", "", readable["across"].to_markdown(index=False), "",
             "### Cost", "", readable["cost"].to_markdown(index=False), "",
             *(["### Across client step sizes (table)", "", readable["steps"].to_markdown(index=False), ""]
               if "steps" in readable and len(readable["steps"]) else []),
             *_tuning(readable, study),
             *_figures(figures, out_path.parent)]
    return atomic_write_text(out_path, "\n".join(lines).rstrip() + "\n")
