"""Test-set metrics of one evaluated round (docs/method-card.md §4).

Runs every evaluated round on the whole test set, so every metric is derived from
one confusion matrix and the probabilities with NumPy alone, instead of letting each
scikit-learn scorer build its own: importing scikit-learn, imbalanced-learn and
scipy.stats would add about two seconds to every training job.
tests/test_metrics.py checks each number equals scikit-learn's or imbalanced-learn's.
"""

from __future__ import annotations

import numpy as np

#: The final-round metrics a study can declare as primary or secondary (higher is better; the schema's
#: ``comparisons`` enums list the same, tests/test_config.py checks it), in the order the tables give them.
HEADLINE_METRICS = ("accuracy", "balanced_accuracy", "macro_f1", "minority_recall", "worst_class_recall", "gmean")
#: Every metric of an evaluated round.
METRIC_KEYS = (*HEADLINE_METRICS, "nll", "head_accuracy", "medium_accuracy", "tail_accuracy")

#: Class groups whose accuracy is reported (from the partition manifest's ``groups``).
ACCURACY_GROUPS = ("head", "medium", "tail")


class MetricsError(ValueError):
    """Labels and probabilities that cannot be scored (wrong shapes or labels out of range)."""


def _check_inputs(y_true: np.ndarray, probs: np.ndarray, num_classes: int) -> None:
    if probs.ndim != 2 or probs.shape[1] != num_classes:
        raise MetricsError(f"probabilities have shape {probs.shape}, expected (N, {num_classes}); "
                           f"pass the softmax of the model's logits, one column per class")
    if y_true.ndim != 1 or len(y_true) != len(probs) or len(y_true) == 0:
        raise MetricsError(f"labels have shape {y_true.shape} for {len(probs)} rows of probabilities; "
                           f"pass one integer label per test example (and at least one example)")
    if y_true.min() < 0 or y_true.max() >= num_classes:
        raise MetricsError(f"labels range over [{y_true.min()}, {y_true.max()}], outside 0..{num_classes - 1}; "
                           f"check num_classes ({num_classes}) against the dataset")


def _group_accuracy(confusion: np.ndarray, classes: list[int]) -> float | None:
    """Accuracy on the test examples whose true class is in ``classes``; None for an empty group."""
    examples = confusion[classes].sum() if classes else 0
    if examples == 0:
        return None
    return float(np.diag(confusion)[classes].sum() / examples)


def _geometric_mean(recall: np.ndarray) -> float:
    """imbalanced-learn's multi-class G-mean with its default correction 0: 0 if any class has recall 0."""
    if np.any(recall == 0):
        return 0.0
    return float(np.exp(np.mean(np.log(recall))))


def _log_loss(y_true: np.ndarray, probs: np.ndarray) -> float:
    """scikit-learn's log_loss: mean -ln p(true class), probabilities clipped to [eps, 1 - eps] (eps of their dtype)."""
    eps = np.finfo(probs.dtype).eps
    return float(np.mean(-np.log(np.clip(probs, eps, 1 - eps)[np.arange(len(y_true)), y_true])))


def evaluate_predictions(y_true: np.ndarray, probs: np.ndarray, num_classes: int,
                         groups: dict[str, list[int]] | None) -> dict:
    """All METRICS of the metrics.json contract, as plain Python floats.

    Predictions are the argmax of ``probs``. Conventions (those of scikit-learn):
    a class absent from ``y_true`` has recall 0 (``zero_division=0``) but is left
    out of balanced accuracy; a class never predicted and never true has F1 0.
    ``gmean`` is imbalanced-learn's multi-class ``geometric_mean_score``: the
    geometric mean of per-class recalls where a zero recall is replaced by its
    ``correction`` (default 0.0), so **one class with zero recall makes G-mean 0**;
    we keep that default on purpose: G-mean exists to punish a forgotten class.
    ``nll`` is scikit-learn's ``log_loss`` (natural log, probabilities clipped to
    the dtype's machine epsilon). Group metrics are None when ``groups`` is None
    or the group is empty (a balanced pool has no groups).
    """
    y_true, probs = np.asarray(y_true), np.asarray(probs)
    _check_inputs(y_true, probs, num_classes)
    y_pred = probs.argmax(axis=1)
    # rows: true class, columns: predicted (scikit-learn's confusion_matrix)
    confusion = np.bincount(y_true * num_classes + y_pred, minlength=num_classes**2).reshape(num_classes, num_classes)
    hits = np.diag(confusion).astype(float)
    true_counts = confusion.sum(axis=1)
    predicted_counts = confusion.sum(axis=0)

    recall = np.divide(hits, true_counts, out=np.zeros(num_classes), where=true_counts > 0)
    f1_denominator = true_counts + predicted_counts  # 2TP + FP + FN
    f1 = np.divide(2 * hits, f1_denominator, out=np.zeros(num_classes), where=f1_denominator > 0)

    groups = groups or {}
    minority = list(groups.get("minority") or [])
    return {
        "accuracy": float(hits.sum() / len(y_true)),
        "balanced_accuracy": float(recall[true_counts > 0].mean()),
        "macro_f1": float(f1.mean()),
        "minority_recall": float(recall[minority].mean()) if minority else None,
        "worst_class_recall": float(recall.min()),
        "gmean": _geometric_mean(recall),
        "nll": _log_loss(y_true, probs),
        **{f"{group}_accuracy": _group_accuracy(confusion, list(groups.get(group) or []))
           for group in ACCURACY_GROUPS},
        "per_class_recall": [float(r) for r in recall],
    }
