"""FedAvg with random oversampling (the FedAKD paper's "Random Oversampling"): each client duplicates
randomly chosen examples of its smaller classes with imbalanced-learn's RandomOverSampler, once, seeded.

Edge cases, counted: a class of one example is duplicated like any other; a class the client lacks
stays absent; a client holding one class has nothing to balance and trains on its data as it is.
"""

from __future__ import annotations

import numpy as np

from baselines.resampling import ResampledFedAvg, base_counters, check_inputs, sampler_random_state


def random_oversample(x: np.ndarray, y: np.ndarray, *, sampling_strategy="not majority", seed: int,
                      num_classes: int | None = None) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """The client's examples first, unchanged, then the duplicates; counters n_before, n_after, added,
    singleton_classes (classes of one example, duplicated), absent_classes."""
    from imblearn.over_sampling import RandomOverSampler

    x, y = np.asarray(x), np.asarray(y)
    classes, counts = check_inputs(x, y, num_classes)
    counters = {**base_counters(y, classes, num_classes), "added": 0, "singleton_classes": int((counts == 1).sum())}
    if len(classes) < 2:  # nothing to balance against
        return x, y, counters
    sampler = RandomOverSampler(sampling_strategy=sampling_strategy, random_state=sampler_random_state(seed))
    flat, y_res = sampler.fit_resample(x.reshape(len(y), -1), y)  # originals first, then the duplicates
    counters.update(n_after=len(y_res), added=len(y_res) - len(y))
    return flat.reshape(len(y_res), *x.shape[1:]), y_res, counters


class FedAvgROS(ResampledFedAvg):
    counter_prefix = "ros"
    sampling_type = "over-sampling"
    options_schema = {
        "sampling_strategy": {"enum": ["not majority", "minority", "not minority", "all", "auto"],
                              "default": "not majority",
                              "description": "which classes imbalanced-learn oversamples (to the majority count)"},
    }

    def resample(self, x, y, *, seed, num_classes):
        return random_oversample(x, y, sampling_strategy=self.options["sampling_strategy"], seed=seed,
                                 num_classes=num_classes)
