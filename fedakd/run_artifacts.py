"""Files attached to a job's MLflow run: its resolved config, partition manifest,
per-class report and confusion matrix, so a run in the UI explains itself."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np

from fedakd.io import atomic_path, atomic_write_json


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


def write_confusion_matrix(path: Path, y_true: np.ndarray, y_pred: np.ndarray, class_names: list[str],
                           title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import ConfusionMatrixDisplay

    fig, ax = plt.subplots(figsize=(7, 6))
    ConfusionMatrixDisplay.from_predictions(y_true, y_pred, labels=list(range(len(class_names))),
                                            display_labels=class_names, normalize="true", values_format=".2f",
                                            ax=ax, colorbar=False, xticks_rotation=45)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=150)
    plt.close(fig)
    return path


def write_run_artifacts(folder: Path, *, job: dict[str, Any], metrics: dict[str, Any], y_true: np.ndarray,
                        y_pred: np.ndarray, class_names: list[str], manifest: Path | None) -> list[tuple[Path, str | None]]:
    """Write the artifacts into ``folder``; return (path, artifact folder) pairs for MLflow."""
    folder.mkdir(parents=True, exist_ok=True)
    title = f"{job['dataset']}/{job['setting']}/{job['method']}/seed{job['seed']} (final round, row-normalised)"
    files = [
        (atomic_write_json(folder / "job.json", job), None),
        (write_per_class_report(folder / "per_class.csv", metrics, class_names), None),
        (write_confusion_matrix(folder / "confusion_matrix.png", y_true, y_pred, class_names, title), None),
    ]
    if manifest is not None and manifest.exists():
        files.append((manifest, "partition"))
    return files
