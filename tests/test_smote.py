"""Client-side SMOTE: final counts, edge-case counters, originals kept, synthetic points on same-class segments."""

import numpy as np
import pytest
from numpy.testing import assert_array_equal

from baselines.smote import SmoteInputError, smote_oversample


def _client(sizes, shape=(1, 2, 2), seed=0):
    """Random points in general position, class c repeated sizes[c] times (class ids in order)."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(len(sizes)), sizes)
    x = rng.normal(size=(len(y), *shape)) + 10 * y.reshape(-1, *[1] * len(shape))
    return x.astype(np.float32), y


def _on_a_same_class_segment(point, candidates, tol=1e-4):
    """Is ``point`` = a + t (b - a) with t in [0, 1] for some a, b among ``candidates``?"""
    for a in candidates:
        for b in candidates:
            direction = b - a
            length2 = float(direction @ direction)
            if length2 == 0:
                if np.allclose(point, a, atol=tol):
                    return True
                continue
            t = float((point - a) @ direction) / length2
            if -tol <= t <= 1 + tol and np.allclose(a + t * direction, point, atol=tol):
                return True
    return False


def test_sizes_10_3_1_with_an_absent_class():
    # Class sizes 10, 3, 1 and class 3 absent (num_classes = 4), k = 5, 'not majority' -> target 10 each:
    # class 1 (3 <= 5 examples) gets 7 SMOTE points with k = 2 -> smote_added 7, reduced_k_classes 1;
    # class 2 (1 example) gets 9 duplicates -> duplicated_singleton_classes 1; class 3 stays absent -> 1.
    # n_before = 14, n_after = 3 * 10 = 30.
    x, y = _client([10, 3, 1])
    x_out, y_out, stats = smote_oversample(x, y, k_neighbors=5, seed=0, num_classes=4)
    assert stats == {"n_before": 14, "n_after": 30, "smote_added": 7, "reduced_k_classes": 1,
                     "duplicated_singleton_classes": 1, "absent_classes": 1}
    assert_array_equal(np.bincount(y_out, minlength=4), [10, 10, 10, 0])
    assert x_out.shape == (30, 1, 2, 2) and x_out.dtype == np.float32
    assert_array_equal(x_out[:14], x)  # originals first, unchanged
    assert_array_equal(y_out[:14], y)

    flat_in, flat_out = x.reshape(14, -1), x_out.reshape(30, -1)
    added = np.arange(14, 30)
    for i in added[y_out[added] == 1]:
        assert _on_a_same_class_segment(flat_out[i], flat_in[y == 1])
    assert_array_equal(flat_out[added[y_out[added] == 2]], np.repeat(flat_in[y == 2], 9, axis=0))


def test_class_above_k_uses_full_k_and_is_not_counted():
    # sizes 10, 6, 2 with k = 5: class 1 (6 > 5) uses k = 5 and adds 4; class 2 uses k = 1 and adds 8.
    x, y = _client([10, 6, 2])
    _, y_out, stats = smote_oversample(x, y, k_neighbors=5, seed=1, num_classes=3)
    assert stats["smote_added"] == 12 and stats["reduced_k_classes"] == 1
    assert stats["duplicated_singleton_classes"] == 0 and stats["absent_classes"] == 0
    assert_array_equal(np.bincount(y_out), [10, 10, 10])


def test_one_dimensional_synthetic_points_are_convex_combinations():
    # 1-D: class 1 at 100, 101, 105 (k = 2), class 0 at 0..9; every new class-1 point lies in [100, 105]
    x = np.concatenate([np.arange(10.0), [100.0, 101.0, 105.0]]).reshape(-1, 1)
    y = np.array([0] * 10 + [1] * 3)
    x_out, y_out, _ = smote_oversample(x, y, seed=3)
    new = x_out[13:, 0]
    assert (y_out[13:] == 1).all() and len(new) == 7
    assert ((new >= 100.0) & (new <= 105.0)).all()


def test_same_seed_same_output_other_seed_differs():
    x, y = _client([10, 3, 1, 4])
    first = smote_oversample(x, y, seed=7)
    again = smote_oversample(x, y, seed=7)
    other = smote_oversample(x, y, seed=8)
    assert_array_equal(first[0], again[0]) and first[2] == again[2]
    assert_array_equal(first[1], again[1])
    assert not np.array_equal(first[0], other[0])


def test_accepts_the_engines_63_bit_seeds():
    x, y = _client([10, 3, 1])
    assert smote_oversample(x, y, seed=2**62 + 12345)[2]["n_after"] == 30


def test_single_class_client_is_returned_unchanged():
    x, y = _client([5])
    x_out, y_out, stats = smote_oversample(x.astype(np.float64), y, seed=0, num_classes=10)
    assert_array_equal(x_out, x) and x_out.dtype == np.float32
    assert_array_equal(y_out, y)
    assert stats == {"n_before": 5, "n_after": 5, "smote_added": 0, "reduced_k_classes": 0,
                     "duplicated_singleton_classes": 0, "absent_classes": 9}


def test_bad_input_is_named():
    x, y = _client([3, 3])
    with pytest.raises(SmoteInputError, match="same number of examples"):
        smote_oversample(x, y[:-1], seed=0)
    with pytest.raises(SmoteInputError, match="k_neighbors must be >= 1"):
        smote_oversample(x, y, k_neighbors=0, seed=0)
    with pytest.raises(SmoteInputError, match="labels must lie in 0..0"):
        smote_oversample(x, y, seed=0, num_classes=1)
