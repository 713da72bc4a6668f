"""FedAvg with SMOTE (the paper's "FedAvg with data augmentation").

Each client oversamples its own data once, before training, with
imbalanced-learn's SMOTE on flattened inputs; raw data never leave the client.
Aggregation weights stay the clients' own example counts: the augmentation
changes what a client trains on, not how much say it has in the average.
"""

from __future__ import annotations

import dataclasses

from baselines.fedavg import FedAvg
from baselines.smote import smote_oversample


class FedAvgSMOTE(FedAvg):
    options_schema = {
        "k_neighbors": {"type": "integer", "minimum": 1, "default": 5,
                        "description": "SMOTE's neighbours; a class with <= k examples uses count - 1"},
        "sampling_strategy": {"enum": ["not majority", "minority", "not minority", "all", "auto"],
                              "default": "not majority",
                              "description": "which classes imbalanced-learn oversamples"},
    }

    def prepare_client_data(self, client, seed):
        import torch

        x, y = client.x.cpu().numpy(), client.y.cpu().numpy()
        x_res, y_res, stats = smote_oversample(
            x, y, k_neighbors=self.options["k_neighbors"], sampling_strategy=self.options["sampling_strategy"],
            seed=seed, num_classes=len(client.class_counts),
        )
        device = client.x.device
        resampled = dataclasses.replace(
            client, x=torch.from_numpy(x_res).to(device), y=torch.from_numpy(y_res).long().to(device)
        )
        counters = {f"smote_{key}" if not key.startswith("smote_") else key: float(value)
                    for key, value in stats.items()}
        return resampled, counters
