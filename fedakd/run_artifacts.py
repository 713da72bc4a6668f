"""Files attached to a job's MLflow run, so that a run in the UI explains itself: its resolved spec, the
partition manifest, a per-class report, and four figures (learning curve, per-class recall, confusion
matrix, training diagnostics).

The training job writes the cheap files (``write_job_files``: JSON and CSV, no plotting library); the
tracking step draws the figures (``draw_run_figures``) for many runs in one process, so matplotlib is
imported once per tracking step rather than once per job. The figures use matplotlib's Agg canvas
directly (no pyplot, no scikit-learn display classes) and fixed margins: a constrained layout would draw
each figure twice, and a study draws three per run."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np

from fedakd.io import atomic_path, atomic_write_json

DPI = 110


def _group_of(groups: dict[str, list[int]]) -> dict[int, str]:
    return {c: name for name in ("head", "medium", "tail") for c in groups.get(name, [])}


def write_per_class_report(path: Path, metrics: dict[str, Any], class_names: list[str]) -> Path:
    group = _group_of(metrics["groups"])
    minority = set(metrics["groups"].get("minority", []))
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["class", "name", "group", "minority", "pool_count", "final_recall", "best_round_recall"])
        for c, name in enumerate(class_names):
            writer.writerow([c, name, group.get(c, ""), c in minority, metrics["class_counts"][c],
                             metrics["final"]["per_class_recall"][c], metrics["best"]["per_class_recall"][c]])
    return path


def _save(fig, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI)
    return path


def confusion_counts(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> list[list[int]]:
    """counts[true][predicted] over the test set."""
    n = num_classes
    counts = np.bincount(np.asarray(y_true) * n + np.asarray(y_pred), minlength=n * n).reshape(n, n)
    return counts.tolist()


def write_confusion_matrix(path: Path, counts: list[list[int]], class_names: list[str], title: str) -> Path:
    """The final model's confusion matrix on the test set, each row normalised to the true class's count."""
    from matplotlib.figure import Figure

    n = len(class_names)
    counts = np.asarray(counts)
    rates = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    fig = Figure(figsize=(7, 6))
    fig.subplots_adjust(left=0.2, right=0.97, bottom=0.2, top=0.93)
    ax = fig.subplots()
    ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    if n <= 20:
        for (row, col), value in np.ndenumerate(rates):
            ax.text(col, row, f"{value:.2f}", ha="center", va="center", fontsize=7,
                    color="white" if value > 0.5 else "black")
    ax.set_xticks(range(n), class_names, rotation=45, ha="right")
    ax.set_yticks(range(n), class_names)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title, fontsize=9)
    return _save(fig, path)


def write_learning_curve(path: Path, history: list[dict[str, Any]], title: str) -> Path:
    """Balanced accuracy, accuracy and minority recall of the global model against the round."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.5, 4))
    fig.subplots_adjust(left=0.11, right=0.97, bottom=0.12, top=0.91)
    ax = fig.subplots()
    for key, label in (("balanced_accuracy", "balanced accuracy"), ("accuracy", "accuracy"),
                       ("minority_recall", "minority recall"), ("val_balanced_accuracy", "validation balanced accuracy")):
        points = [(r["round"], r[key]) for r in history if r.get(key) is not None]
        if points:
            ax.plot(*zip(*points), marker="o", markersize=3, label=label)
    ax.set_xlabel("communication round")
    ax.set_ylabel("test metric (fraction)")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    ax.set_title(title, fontsize=9)
    return _save(fig, path)


def write_per_class_recall(path: Path, metrics: dict[str, Any], class_names: list[str], title: str) -> Path:
    """Final recall per class, coloured by head / medium / tail group, with each class's pool count."""
    from matplotlib.figure import Figure

    group = _group_of(metrics["groups"])
    colours = {"head": "#0072B2", "medium": "#E69F00", "tail": "#D55E00", "": "#999999"}
    recall = metrics["final"]["per_class_recall"]
    fig = Figure(figsize=(7, 4))
    fig.subplots_adjust(left=0.1, right=0.97, bottom=0.24, top=0.91)
    ax = fig.subplots()
    ax.bar(range(len(recall)), recall, color=[colours[group.get(c, "")] for c in range(len(recall))])
    ax.set_xticks(range(len(recall)), [f"{name}\n(n={metrics['class_counts'][c]})"
                                       for c, name in enumerate(class_names)], fontsize=7, rotation=45, ha="right")
    from matplotlib.patches import Patch

    present = [name for name in ("head", "medium", "tail") if name in group.values()]
    if present:
        ax.legend(handles=[Patch(color=colours[name], label=f"{name} classes") for name in present],
                  fontsize="small", loc="upper right")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("final test recall")
    ax.set_title(title, fontsize=9)
    return _save(fig, path)


def write_diagnostics(path: Path, history: list[dict[str, Any]], title: str) -> Path:
    """Three panels against the round, one line per stage (the worst upload, the average, the deployed model):
    dead feature units, the largest input the head sees (log scale), and the top class's share of the
    predictions; the collapse threshold is drawn on the last (fedakd.diagnostics)."""
    from matplotlib.figure import Figure

    from fedakd.diagnostics import COLLAPSE_SHARE, diag_key

    stages = (("local_max", "worst upload", ":"), ("averaged", "average of the uploads", "--"),
              ("server", "deployed", "-"))
    panels = (("dead_units", "dead feature units", False), ("embed_max", "largest head input", True),
              ("top_class_share", "top class share", False))
    fig = Figure(figsize=(10, 3.4))
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.16, top=0.84, wspace=0.3)
    axes = fig.subplots(1, 3)
    for ax, (name, label, log) in zip(axes, panels):
        for stage, stage_label, style in stages:
            points = [(r["round"], r[diag_key(stage, name)]) for r in history if r.get(diag_key(stage, name)) is not None]
            if points:
                ax.plot(*zip(*points), linestyle=style, marker="o", markersize=3, label=stage_label)
        if log and ax.lines:
            ax.set_yscale("symlog", linthresh=1.0)
        if name == "top_class_share":
            ax.axhline(COLLAPSE_SHARE, color="#D55E00", linewidth=0.8)
            ax.set_ylim(0, 1.05)
        ax.set_xlabel("communication round")
        ax.set_title(label, fontsize=9)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize="x-small")
    fig.suptitle(title, fontsize=9)
    return _save(fig, path)


#: The figures a run's artifacts hold, in the artifact folder "figures".
FIGURE_FILES = ("learning_curve.png", "per_class_recall.png", "confusion_matrix.png", "diagnostics.png")


def write_job_files(folder: Path, *, job: dict[str, Any], metrics: dict[str, Any],
                    manifest: Path | None) -> None:
    """What a training job writes into its artifacts folder: its spec, the per-class report, its partition's
    manifest (copied, so that the folder explains itself wherever it is logged from)."""
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_json(folder / "job.json", job)
    write_per_class_report(folder / "per_class.csv", metrics, metrics["class_names"])
    if manifest is not None and manifest.exists():
        with atomic_path(folder / "manifest.json") as tmp:
            tmp.write_bytes(manifest.read_bytes())


def draw_run_figures(folder: Path, metrics: dict[str, Any]) -> None:
    """The four figures of a finished run, from its metrics.json, into its artifacts folder."""
    job = metrics["job"]
    name = f"{job['method']} on {job['dataset']}/{job['setting']}, seed {job['seed']}"
    class_names = metrics["class_names"]
    write_learning_curve(folder / FIGURE_FILES[0], metrics["history"], name)
    write_per_class_recall(folder / FIGURE_FILES[1], metrics, class_names, name)
    write_confusion_matrix(folder / FIGURE_FILES[2], metrics["confusion_matrix"], class_names,
                           f"{name}: final round, row-normalised")
    write_diagnostics(folder / FIGURE_FILES[3], metrics["history"], f"{name}: training diagnostics")


def artifact_files(folder: Path) -> list[tuple[Path, str | None]]:
    """(path, artifact folder) pairs of a run's artifacts, for MLflow."""
    files = [(folder / "job.json", None), (folder / "per_class.csv", None),
             *((folder / name, "figures") for name in FIGURE_FILES)]
    if (folder / "manifest.json").exists():
        files.append((folder / "manifest.json", "partition"))
    return files
