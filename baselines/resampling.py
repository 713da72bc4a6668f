"""Client-side resampling with imbalanced-learn, shared by fedavg-smote, fedavg-ros and fedavg-rus.

Each client resamples its own data once, before training, on flattened inputs; raw data never
leave the client. Aggregation weights stay the clients' own example counts: resampling changes
what a client trains on, not how much say it has in the average. A class the client lacks cannot
be created and stays absent (counted as ``absent_classes``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from baselines.fedavg import FedAvg


class ResamplingInputError(ValueError):
    """Inputs a resampler cannot use."""


def check_inputs(x: np.ndarray, y: np.ndarray, num_classes: int | None) -> tuple[np.ndarray, np.ndarray]:
    """The client's classes present and their counts, after checking shapes and label range."""
    if x.shape[0] != y.shape[0] or y.ndim != 1:
        raise ResamplingInputError(
            f"x and y must hold the same number of examples and y must be 1-D, got x {x.shape} and y {y.shape}"
        )
    classes, counts = np.unique(y, return_counts=True)
    if num_classes is not None and len(classes) and (classes.min() < 0 or classes.max() >= num_classes):
        raise ResamplingInputError(f"labels must lie in 0..{num_classes - 1} (num_classes={num_classes}), "
                                   f"got {classes}")
    return classes, counts


def base_counters(y: np.ndarray, classes: np.ndarray, num_classes: int | None) -> dict[str, int]:
    return {"n_before": len(y), "n_after": len(y),
            "absent_classes": num_classes - len(classes) if num_classes is not None else 0}


def sampler_random_state(seed: int) -> np.random.RandomState:
    """One seeded stream for imbalanced-learn. MT19937 takes any non-negative int (the engine derives
    63-bit seeds); a plain RandomState(seed) would reject seeds >= 2**32."""
    return np.random.RandomState(np.random.MT19937(seed))


class ResampledFedAvg(FedAvg):
    """FedAvg on data each client resampled once; subclasses say how (``resample``)."""

    #: Prefix of this method's counters in metrics.json and MLflow.
    counter_prefix = "resample"
    #: imbalanced-learn's kind of sampler ("over-sampling" or "under-sampling"); fedakd.config.cost.RESAMPLERS says
    #: the same for the cost estimate, which imports no method.
    sampling_type: str

    def resample(self, x: np.ndarray, y: np.ndarray, *, seed: int,
                 num_classes: int) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
        raise NotImplementedError

    def prepare_client_data(self, client, seed):
        import torch

        x, y = client.x.cpu().numpy(), client.y.cpu().numpy()
        x_res, y_res, stats = self.resample(x, y, seed=seed, num_classes=len(client.class_counts))
        counters = {f"{self.counter_prefix}_{key}": float(value) for key, value in stats.items()}
        if len(y_res) == len(y) and np.array_equal(y_res, y) and np.array_equal(x_res, x):
            return client, counters  # nothing to resample: the client trains on its own tensors
        device = client.x.device
        resampled = dataclasses.replace(
            client, x=torch.from_numpy(np.ascontiguousarray(x_res)).to(device),
            y=torch.from_numpy(y_res).long().to(device),
        )
        return resampled, counters
