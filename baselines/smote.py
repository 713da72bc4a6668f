"""Client-side oversampling for fedavg-smote (docs/method-card.md §3), with imbalanced-learn.

SMOTE's ``k_neighbors`` is one number for all classes, and a class with no more
than k examples makes it fail. So classes are grouped by the k they can afford --
min(k_neighbors, count - 1) -- and each group is oversampled by its own SMOTE call
that names only that group's classes in a dict ``sampling_strategy``. This is
exact, not an approximation: SMOTE fits its neighbours within one class at a
time, so splitting classes across calls changes nothing but k. A class with one
example has no neighbour to interpolate towards and is duplicated with
RandomOverSampler instead. A class the client lacks cannot be created and stays
absent.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from baselines.resampling import ResamplingInputError, base_counters, check_inputs, sampler_random_state

SmoteInputError = ResamplingInputError  # the name the tests and callers know


def smote_oversample(x: np.ndarray, y: np.ndarray, *, k_neighbors: int = 5,
                     sampling_strategy: Any = "not majority", seed: int,
                     num_classes: int | None = None) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """Oversample one client's data; returns (x, y, counters).

    x (n, ...) is flattened for SMOTE and reshaped back; the output is float32 with
    the original examples first, unchanged, then the added ones. ``sampling_strategy``
    is imbalanced-learn's (default 'not majority': every present class is raised to
    the majority count). Counters: n_before, n_after; smote_added (examples made by
    interpolation); reduced_k_classes (oversampled with k = count - 1);
    duplicated_singleton_classes (one example, duplicated); absent_classes (of
    ``num_classes``; 0 when num_classes is not given, as the client cannot know).
    """
    from imblearn.over_sampling import SMOTE, RandomOverSampler
    from imblearn.utils import check_sampling_strategy

    x, y = np.asarray(x), np.asarray(y)
    if k_neighbors < 1:
        raise SmoteInputError(f"k_neighbors must be >= 1, got {k_neighbors}; SMOTE needs a neighbour to interpolate")
    classes, counts = check_inputs(x, y, num_classes)
    flat = x.reshape(len(y), -1).astype(np.float32)
    counters = {**base_counters(y, classes, num_classes), "smote_added": 0, "reduced_k_classes": 0,
                "duplicated_singleton_classes": 0}
    if len(classes) < 2:  # nothing to balance against
        return flat.reshape(x.shape), y.copy(), counters

    to_add = check_sampling_strategy(sampling_strategy, y, "over-sampling")
    count_of = dict(zip(classes.tolist(), counts.tolist()))
    targets_by_k: dict[int, dict] = {}  # affordable k -> {class: target count}
    for label, n_new in to_add.items():
        if n_new > 0:
            k = min(k_neighbors, count_of[label] - 1)
            targets_by_k.setdefault(k, {})[label] = count_of[label] + n_new

    random_state = sampler_random_state(seed)  # one seeded stream, consumed in a fixed order
    new_x, new_y = [flat], [y]
    for k in sorted(targets_by_k, reverse=True):
        targets = targets_by_k[k]
        if k == 0:
            sampler = RandomOverSampler(sampling_strategy=targets, random_state=random_state)
            counters["duplicated_singleton_classes"] += len(targets)
        else:
            sampler = SMOTE(sampling_strategy=targets, k_neighbors=k, random_state=random_state)
            counters["smote_added"] += sum(targets[c] - count_of[c] for c in targets)
            counters["reduced_k_classes"] += len(targets) if k < k_neighbors else 0
        x_res, y_res = sampler.fit_resample(flat, y)
        new_x.append(x_res[len(y):])  # both samplers return the originals first, then the new examples
        new_y.append(y_res[len(y):])

    x_out = np.concatenate(new_x).astype(np.float32, copy=False)
    y_out = np.concatenate(new_y)
    counters["n_after"] = len(y_out)
    return x_out.reshape(len(y_out), *x.shape[1:]), y_out, counters
