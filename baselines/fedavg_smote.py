"""FedAvg with SMOTE (the paper's "FedAvg with data augmentation").

Each client oversamples its own data once, before training, with imbalanced-learn's SMOTE on
flattened inputs (baselines/smote.py has the per-class k and the edge cases); raw data never
leave the client. Aggregation weights stay the clients' own example counts.
"""

from __future__ import annotations

from baselines.resampling import ResampledFedAvg
from baselines.smote import smote_oversample


class FedAvgSMOTE(ResampledFedAvg):
    counter_prefix = "smote"
    sampling_type = "over-sampling"
    options_schema = {
        "k_neighbors": {"type": "integer", "minimum": 1, "default": 5,
                        "description": "SMOTE's neighbours; a class with <= k examples uses count - 1"},
        "sampling_strategy": {"enum": ["not majority", "minority", "not minority", "all", "auto"],
                              "default": "not majority",
                              "description": "which classes imbalanced-learn oversamples"},
    }

    def resample(self, x, y, *, seed, num_classes):
        x_res, y_res, stats = smote_oversample(x, y, k_neighbors=self.options["k_neighbors"],
                                               sampling_strategy=self.options["sampling_strategy"], seed=seed,
                                               num_classes=num_classes)
        return x_res, y_res, {key.removeprefix("smote_"): value for key, value in stats.items()}
