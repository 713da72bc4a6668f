"""fedakd.metrics: hand-computed numbers on a fixed confusion matrix, and agreement with scikit-learn."""

import math
import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose

from fedakd.metrics import METRIC_KEYS, MetricsError, evaluate_predictions

# Fixed case: 3 classes, 12 test examples; class 2 is never predicted.
#                 predicted 0  1  2
#   true 0 (5 examples)    [ 4, 1, 0 ]
#   true 1 (4 examples)    [ 2, 2, 0 ]
#   true 2 (3 examples)    [ 1, 2, 0 ]
Y_TRUE = np.array([0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2])
Y_PRED = np.array([0, 0, 0, 0, 1, 1, 1, 0, 0, 0, 1, 1])


def probs_for(y_pred: np.ndarray, num_classes: int = 3) -> np.ndarray:
    """0.5 on the predicted class, 0.25 on each other class: the true class gets 0.5 if right, 0.25 if wrong."""
    probs = np.full((len(y_pred), num_classes), 0.25)
    probs[np.arange(len(y_pred)), y_pred] = 0.5
    return probs


def test_hand_computed_metrics_with_groups():
    groups = {"head": [0], "medium": [1], "tail": [2], "minority": [2]}
    m = evaluate_predictions(Y_TRUE, probs_for(Y_PRED), 3, groups)
    # recall = diag / row sums = [4/5, 2/4, 0/3] = [0.8, 0.5, 0.0]
    assert_allclose(m["per_class_recall"], [0.8, 0.5, 0.0])
    # accuracy = (4 + 2 + 0) / 12
    assert_allclose(m["accuracy"], 0.5)
    # balanced accuracy = mean recall = (0.8 + 0.5 + 0) / 3 = 1.3 / 3
    assert_allclose(m["balanced_accuracy"], 1.3 / 3)
    # F1_c = 2 TP / (true_c + predicted_c); predicted counts = [7, 5, 0]
    # F1 = [8/12, 4/9, 0/3] -> macro = (2/3 + 4/9 + 0) / 3 = 10/27
    assert_allclose(m["macro_f1"], 10 / 27)
    # worst class recall = min(0.8, 0.5, 0) ; G-mean is 0 because class 2 has zero recall
    assert m["worst_class_recall"] == 0.0
    assert m["gmean"] == 0.0
    # NLL = -(6 ln 0.5 + 6 ln 0.25) / 12 = (6 ln 2 + 12 ln 2) / 12 = 1.5 ln 2 = 1.0397207708
    assert_allclose(m["nll"], 1.0397207708, rtol=1e-9)
    # head = class 0: 4/5; medium = class 1: 2/4; tail = class 2: 0/3; minority recall = recall of class 2
    assert_allclose([m["head_accuracy"], m["medium_accuracy"], m["tail_accuracy"]], [0.8, 0.5, 0.0])
    assert m["minority_recall"] == 0.0


def test_multi_class_groups_pool_examples_and_average_recalls():
    groups = {"head": [0, 1], "medium": [], "tail": [2], "minority": [1, 2]}
    m = evaluate_predictions(Y_TRUE, probs_for(Y_PRED), 3, groups)
    # head accuracy pools examples of classes 0 and 1: (4 + 2) / (5 + 4) = 2/3 (not the mean of recalls, 0.65)
    assert_allclose(m["head_accuracy"], 2 / 3)
    assert m["medium_accuracy"] is None
    # minority recall = mean recall of classes 1 and 2 = (0.5 + 0) / 2
    assert_allclose(m["minority_recall"], 0.25)


@pytest.mark.parametrize("groups", [None, {"head": [], "medium": [], "tail": [], "minority": []}])
def test_no_groups_gives_none(groups):
    m = evaluate_predictions(Y_TRUE, probs_for(Y_PRED), 3, groups)
    for key in ("minority_recall", "head_accuracy", "medium_accuracy", "tail_accuracy"):
        assert m[key] is None
    assert_allclose(m["accuracy"], 0.5)


def test_keys_and_plain_python_types():
    m = evaluate_predictions(Y_TRUE, probs_for(Y_PRED), 3, {"head": [0], "medium": [1], "tail": [2],
                                                            "minority": [2]})
    assert set(m) == {*METRIC_KEYS, "per_class_recall"}
    assert all(type(m[key]) is float for key in METRIC_KEYS)
    assert all(type(r) is float for r in m["per_class_recall"])


def test_gmean_of_positive_recalls():
    # Recalls [1, 0.5, 0.5] (one error each in classes 1 and 2): G-mean = (1 * 0.5 * 0.5) ** (1/3) = 0.25 ** (1/3)
    y_true = np.array([0, 0, 1, 1, 2, 2])
    y_pred = np.array([0, 0, 1, 0, 2, 0])
    m = evaluate_predictions(y_true, probs_for(y_pred), 3, None)
    assert_allclose(m["gmean"], 0.25 ** (1 / 3))
    assert math.isclose(m["worst_class_recall"], 0.5)


@pytest.mark.parametrize("seed", range(4))
def test_equals_scikit_learn_and_imbalanced_learn(seed):
    from imblearn.metrics import geometric_mean_score
    from sklearn.metrics import (accuracy_score, balanced_accuracy_score, f1_score, log_loss,
                                 recall_score)

    rng = np.random.default_rng(seed)
    num_classes = 7
    # Seed 0 and 1 leave class 6 out of y_true (and it may be predicted): the scikit-learn edge cases.
    present = num_classes - 1 if seed < 2 else num_classes
    y_true = rng.integers(0, present, 300)
    probs = rng.dirichlet(np.full(num_classes, 0.3), 300).astype(np.float32)
    y_pred = probs.argmax(axis=1)
    labels = list(range(num_classes))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # both libraries warn about the absent class
        m = evaluate_predictions(y_true, probs, num_classes, {"minority": [1, 5]})
        assert_allclose(m["accuracy"], accuracy_score(y_true, y_pred))
        assert_allclose(m["balanced_accuracy"], balanced_accuracy_score(y_true, y_pred))
        assert_allclose(m["macro_f1"], f1_score(y_true, y_pred, average="macro", labels=labels, zero_division=0))
        recall = recall_score(y_true, y_pred, average=None, labels=labels, zero_division=0)
        assert_allclose(m["per_class_recall"], recall)
        assert_allclose(m["worst_class_recall"], recall.min())
        assert_allclose(m["minority_recall"], recall[[1, 5]].mean())
        assert_allclose(m["gmean"], geometric_mean_score(y_true, y_pred, labels=labels, average="multiclass"))
        assert_allclose(m["nll"], log_loss(y_true, probs, labels=labels))


@pytest.mark.parametrize("y_true, probs, message", [
    (np.array([0, 1]), np.full((2, 4), 0.25), r"shape \(2, 4\), expected \(N, 3\)"),
    (np.array([0, 1, 2]), np.full((2, 3), 1 / 3), "labels have shape"),
    (np.array([0, 3]), np.full((2, 3), 1 / 3), "outside 0..2"),
])
def test_bad_input_raises_a_clear_error(y_true, probs, message):
    with pytest.raises(MetricsError, match=message):
        evaluate_predictions(y_true, probs, 3, None)
