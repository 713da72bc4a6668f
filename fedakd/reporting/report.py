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
from fedakd.reporting.stats import MIN_HEALTHY_PAIRS, smallest_attainable_p

if TYPE_CHECKING:
    from fedakd.config.study import Study
FIGURE_SECTIONS = {
    "verdict_overview": "The verdict over every setting (the focus method against each rival)",
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
        "", "### Settings", "", "| setting | imbalance | split | client step |", "|---|---|---|---|",
    ]
    lines += [f"| {name} | {_imbalance_words(params.get('imbalance', {}))} | {_split_words(params.get('split', {}))} "
              f"| {_step_words(params)} |" for name, params in config.get("settings", {}).items()]
    lines += ["", "### Methods", "",
              "Each method's options that differ from its defaults; `fedakd options <method>` lists every option "
              "with its default and meaning, and each run folder's metrics.json and MLflow run hold the full "
              "resolved options.", "", "| name | method | options changed from the defaults |", "|---|---|---|"]
    from fedakd.config.methods import changed_options, method_options

    rows = [(name, spec) for name, spec in config.get("methods", {}).items()]
    # a setting's own options for a method (and so its step settings'): the method's row again, named by setting
    rows += [(f"{name} in {setting}", {**config["methods"][name], **options})
             for setting, params in config.get("settings", {}).items()
             for name, options in params.get("method_options", {}).items() if name in config.get("methods", {})]
    for name, spec in rows:
        changed = changed_options(spec.get("method", name), method_options(spec))
        lines.append(f"| {name} | {spec.get('method', name)} | "
                     f"{', '.join(f'{k} = {json.dumps(v)}' for k, v in changed.items()) or 'none'} |")
    return lines + [""]


def _imbalance_words(imbalance: dict[str, Any]) -> str:
    """'longtail, factor 100' (the options left at their defaults unsaid)."""
    kind = imbalance.get("kind", "?")
    words = kind if kind == "none" else f"{kind}, factor {imbalance.get('factor', '?'):g}"
    if kind == "step":
        words += f", minority fraction {imbalance.get('minority_fraction', 0.5)}"
    return words + (", classes shuffled" if imbalance.get("shuffle_classes") else "")


def _split_words(split: dict[str, Any]) -> str:
    kind = split.get("kind", "?")
    if kind in ("dirichlet", "quantity"):
        return f"{kind}, alpha {split.get('alpha')}"
    return f"{kind}, k {split.get('k')}" if kind == "classes" else kind


def _step_words(params: dict[str, Any]) -> str:
    """A step setting's client step, 'lr 0.01 on the pool of lt100-dir0.5'; the federation's for a base."""
    if not params.get("step_of"):
        return "the federation's"
    changed = ", ".join(f"{k} {v}" for k, v in params.get("federation", {}).items())
    return f"{changed} on the pool of {params['step_of']}"


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


def failed_run_table(runs: list[dict[str, Any]], dataset: str, setting: str) -> list[str]:
    """The failed runs of one dataset and setting as one Markdown table, a row per method, failure and step
    (the seeds and the rounds in the same order); empty when none failed."""
    from fedakd.diagnostics import failed

    rows: dict[tuple[str, str, str], list[tuple[int, int]]] = {}
    for run in runs:
        failure = run.get("failure")
        if run["job"]["dataset"] != dataset or run["job"]["setting"] != setting or not failed(failure):
            continue
        kind = "diverged" if failure.get("diverged") else "collapsed"
        entry = failure[kind]
        rows.setdefault((run["job"]["method"], kind, entry["step"]), []).append((int(run["job"]["seed"]),
                                                                                 int(entry["round"])))
    if not rows:
        return []
    lines = ["| failed | how | seeds | from round | step |", "|---|---|---|---|---|"]
    for (method, kind, step), found in sorted(rows.items()):
        found.sort()
        lines.append(f"| {method} | {kind} | {', '.join(str(seed) for seed, _ in found)} | "
                     f"{', '.join(str(r) for _, r in found)} | {step} |")
    return lines


def _sensitivity_note(comparison_rows) -> str:
    """The comparisons touched by a failed run that have too few healthy pairs (fewer than MIN_HEALTHY_PAIRS) for
    the forest plot's hollow mark; empty when there are none."""
    rows = comparison_rows[(comparison_rows["family"] == "primary")
                           & ((comparison_rows["method_failed"] > 0) | (comparison_rows["baseline_failed"] > 0))]
    few = rows[rows["n_pairs_without_failed"] < MIN_HEALTHY_PAIRS]["baseline"].tolist()
    return f"*No hollow mark against {', '.join(few)}: fewer than {MIN_HEALTHY_PAIRS} pairs without a failed run.*" \
        if few else ""


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
    """The report's opening: the overview figure over every setting with at most three sentences under it;
    then per dataset and setting, the forest plot, at most three sentences drawn from the primary family and
    the ladder, and one table of the failed runs."""
    summary, comparison, ladder = tables["summary"], tables["comparison"], tables["ladder"]
    focus = study.focus
    lines = ["## Verdict", ""]
    if focus is None:
        return lines + ["The config declares no focus method (comparisons.focus), so no verdict is drawn; the "
                        "declared comparisons are in the table below.", ""]
    pngs = {Path(f).stem: Path(f) for f in figures if Path(f).suffix == ".png"}

    def image(stem: str, text: str) -> list[str]:
        if stem not in pngs or report_dir is None:
            return []
        return [f"![{text}]({Path(os.path.relpath(pngs[stem], report_dir)).as_posix()})", ""]

    for dataset in dict.fromkeys(summary["dataset"]):
        lines += image(f"verdict_overview_{dataset}", f"{focus} against each rival in every setting, {dataset}")
    lines += [" ".join(overview_sentences(tables, study, runs)), ""]
    for (dataset, setting), block in summary.groupby(["dataset", "setting"], sort=False):
        n = int(block["n_seeds"].max())
        rows = comparison[(comparison["dataset"] == dataset) & (comparison["setting"] == setting)
                          & (comparison["method"] == focus)]
        steps = ladder[(ladder["dataset"] == dataset) & (ladder["setting"] == setting)]
        lines += [f"### {dataset} / {setting} ({n} seeds, {_window_words(study)})", ""]
        lines += image(f"forest_{dataset}_{setting}", f"{focus} against each rival, {dataset} / {setting}")
        lines += [" ".join(_setting_sentences(block, rows, steps, study)), ""]
        failed_table = failed_run_table(runs, dataset, setting)
        if failed_table:
            note = _sensitivity_note(rows)
            lines += failed_table + ([""] + [note] if note else []) + [""]
    return lines + _step_paragraphs(tables, study, figures, report_dir)


def overview_sentences(tables: dict, study, runs: list[dict[str, Any]] = ()) -> list[str]:
    """At most three sentences over every setting: the focus method's wins, ties and losses per setting, whether
    its verdict holds across the client steps, and how many runs failed."""
    from fedakd.diagnostics import failed

    comparison = tables["comparison"]
    primary = comparison[(comparison["method"] == study.focus) & (comparison["family"] == "primary")]
    counts = []
    for (dataset, setting), block in primary.groupby(["dataset", "setting"], sort=False):
        verdicts = block["verdict"].value_counts()
        counts.append(f"{setting} {int(verdicts.get('win', 0))}-{int(verdicts.get('tie', 0))}-"
                      f"{int(verdicts.get('loss', 0))}")
    rivals = primary["baseline"].nunique()
    sentences = [f"On {study.primary.replace('_', ' ')} ({_window_words(study)}), {study.focus} against its "
                 f"{rivals} declared rivals wins-ties-losses: " + "; ".join(counts) + "." if counts else
                 f"{study.focus} has no declared comparison on {study.primary.replace('_', ' ')}."]
    table = tables.get("steps")
    if table is not None and len(table):
        from fedakd.reporting.steps import changed_verdicts

        blocks = [block for _, block in table.groupby(["dataset", "family"], sort=False)]
        flips = sum(bool(changed_verdicts(block)) for block in blocks)
        sentences.append(f"Across the client steps its verdict holds in {len(blocks) - flips} of {len(blocks)} "
                         "step families" + (" and changes in the others (see below)." if flips else "."))
    failed_runs = [run for run in runs if failed(run.get("failure"))]
    sentences.append(f"{len(failed_runs)} of {len(runs)} runs collapsed or diverged" +
                     (" (each setting's table names them)." if failed_runs else "."))
    return sentences[:3]


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
        "## How the verdict is drawn", "",
        f"The comparisons and the metrics were declared by the config before any result existed: "
        f"{len(study.pairs)} comparisons (each method against {study.baseline}, and {study.focus} against every "
        f"other; references excluded). The **primary** metric, {study.primary.replace('_', ' ')}, makes each "
        f"setting's family of up to {family} tests, Holm-adjusted; a comparison is a win or a loss only when its "
        f"adjusted paired t-test p is below {study.alpha}, else a tie. The secondary metrics "
        f"({', '.join(study.secondary) or 'none'}) are each their own adjusted family, reported in the comparison "
        f"table and never deciding the verdict. Intervals are 95 % paired bootstrap intervals (percentile, seeds "
        f"resampled), inside the metric's range by construction; the t-test is the declared test. With {n} seed "
        f"pairs the exact Wilcoxon signed-rank test cannot give a two-sided p below {floor['wilcoxon']:.4g}. "
        f"Best-round figures are chosen on the test set and appear only in summary.csv, labelled optimistic. "
        f"A failed run (collapsed or diverged) stays in every statistic; the forest plots' hollow marks give the "
        f"difference without the failed seeds where at least {MIN_HEALTHY_PAIRS} pairs remain, and each setting's "
        f"table names its failed runs."]
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
             "### Declared comparisons (the primary family)", "",
             "The comparisons on the primary metric, whose Holm-adjusted tests decide the verdict; every secondary "
             "metric's family is in comparison.csv and comparison.md beside the other tables.", "",
             readable["comparison"][readable["comparison"]["family"] == "primary"].to_markdown(index=False), "",
             "### Ablation ladder", "", readable["ladder"].to_markdown(index=False) if len(readable["ladder"])
             else "The study lacks the ladder's methods.", "",
             "### Across settings", "", readable["across"].to_markdown(index=False), "",
             "### Cost", "", readable["cost"].to_markdown(index=False), "",
             *(["### Across client step sizes (table)", "", readable["steps"].to_markdown(index=False), ""]
               if "steps" in readable and len(readable["steps"]) else []),
             *_tuning(readable, study),
             *_figures(figures, out_path.parent)]
    return atomic_write_text(out_path, "\n".join(lines).rstrip() + "\n")
