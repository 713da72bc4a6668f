"""FedAvg with random undersampling (the FedAKD paper's "undersampling the majority class"): each client
drops randomly chosen examples of its larger classes with imbalanced-learn's RandomUnderSampler, once,
seeded, down to its smallest class.

Edge cases, counted: a client whose smallest class has one example keeps one example of every class
(``cut_to_one_clients``: undersampling's known weakness on skewed clients); a class the client lacks
stays absent and does not count as its smallest; a client holding one class keeps its data.
"""

from __future__ import annotations

import numpy as np

from baselines.resampling import ResampledFedAvg, base_counters, check_inputs, sampler_random_state


def random_undersample(x: np.ndarray, y: np.ndarray, *, sampling_strategy="not minority", seed: int,
                       num_classes: int | None = None) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """The kept examples in their original order; counters n_before, n_after, removed,
    cut_to_one_clients (1 when the smallest present class has a single example), absent_classes."""
    from imblearn.under_sampling import RandomUnderSampler

    x, y = np.asarray(x), np.asarray(y)
    classes, counts = check_inputs(x, y, num_classes)
    counters = {**base_counters(y, classes, num_classes), "removed": 0,
                "cut_to_one_clients": int(len(classes) > 1 and counts.min() == 1)}
    if len(classes) < 2:
        return x, y, counters
    sampler = RandomUnderSampler(sampling_strategy=sampling_strategy, random_state=sampler_random_state(seed))
    sampler.fit_resample(x.reshape(len(y), -1), y)
    kept = np.sort(sampler.sample_indices_)  # imbalanced-learn groups by class; keep the client's own order
    counters.update(n_after=len(kept), removed=len(y) - len(kept))
    return x[kept], y[kept], counters


class FedAvgRUS(ResampledFedAvg):
    counter_prefix = "rus"
    sampling_type = "under-sampling"
    options_schema = {
        "sampling_strategy": {"enum": ["not minority", "majority", "not majority", "all", "auto"],
                              "default": "not minority",
                              "description": "which classes imbalanced-learn undersamples (to the minority count)"},
    }

    def resample(self, x, y, *, seed, num_classes):
        return random_undersample(x, y, sampling_strategy=self.options["sampling_strategy"], seed=seed,
                                  num_classes=num_classes)
