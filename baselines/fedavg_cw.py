"""Cost-sensitive local losses from the client's own class counts: class-weighted cross-entropy
(``fedavg-cw``) and the focal loss (``fedavg-focal``), the remedies the FedAKD paper names.

fedavg-cw -- weights from the client's counts n_c (its present classes):
- ``inverse``: w_c proportional to 1 / n_c;
- ``effective``: Cui et al. 2019's class-balanced weights, w_c proportional to (1 - beta) / (1 - beta^n_c),
  the inverse of the "effective number" of examples, beta = 0.999 by default.
Weights are normalised to sum to the number of present classes (Cui et al.), and the loss is the
batch mean of w_y * CE (Cui et al.'s reduction; not PyTorch's weighted mean, which would divide by
the batch's weights). A class the client lacks never appears as a label and gets weight 0. A client
whose present classes have equal counts gets weights of exactly 1, i.e. plain cross-entropy.

fedavg-focal -- Lin et al. 2017: FL = -(1 - p_y)^gamma log p_y, batch mean, gamma = 2; it down-weights
examples the model already gets right, whatever their class. ``weighting`` adds the class weights
above (the alpha-balanced variant).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from baselines.fedavg import FedAvg

if TYPE_CHECKING:
    import torch

WEIGHTING_OPTIONS = {
    "weighting": {"enum": ["inverse", "effective"], "default": "inverse",
                  "description": "inverse: 1/n_c; effective: (1 - beta) / (1 - beta^n_c) (Cui et al. 2019)"},
    "beta": {"type": "number", "minimum": 0, "exclusiveMaximum": 1, "default": 0.999,
             "description": "beta of the effective number of examples (weighting: effective)"},
}


def class_weights(counts: "torch.Tensor", weighting: str, beta: float = 0.999) -> "torch.Tensor":
    """(C,) weights from a client's class counts; 0 for absent classes, summing to the number present."""
    import torch

    counts = counts.to(torch.float64)
    present = counts > 0
    if weighting == "none":
        raw = torch.ones_like(counts)
    elif weighting == "inverse":
        raw = 1.0 / counts.clamp_min(1)
    elif weighting == "effective":
        raw = (1.0 - beta) / (1.0 - beta ** counts.clamp_min(1))
    else:
        raise ValueError(f"unknown weighting {weighting!r}; use inverse or effective")
    raw = torch.where(present, raw, torch.zeros_like(raw))
    if torch.unique(counts[present]).numel() <= 1:  # equal counts: equal weights, exactly 1
        return present.to(torch.float32)
    return (raw * present.sum() / raw.sum()).to(torch.float32)


def weighted_cross_entropy(logits: "torch.Tensor", labels: "torch.Tensor", weights: "torch.Tensor") -> "torch.Tensor":
    """mean_i w_{y_i} CE_i (Cui et al.'s reduction)."""
    import torch.nn.functional as F

    return (weights[labels] * F.cross_entropy(logits, labels, reduction="none")).mean()


def focal_loss(logits: "torch.Tensor", labels: "torch.Tensor", gamma: float,
               weights: "torch.Tensor | None" = None) -> "torch.Tensor":
    """mean_i w_{y_i} (1 - p_{y_i})^gamma (-log p_{y_i}); w = 1 without weights (Lin et al. 2017)."""
    import torch.nn.functional as F

    log_p = F.log_softmax(logits, dim=-1).gather(1, labels.unsqueeze(1)).squeeze(1)
    loss = -((1.0 - log_p.exp()) ** gamma) * log_p
    if weights is not None:
        loss = weights[labels] * loss
    return loss.mean()


class FedAvgCW(FedAvg):
    options_schema = dict(WEIGHTING_OPTIONS)

    def client_update(self, ctx, client):
        weights = class_weights(client.class_counts, self.options["weighting"], self.options["beta"])
        if bool((weights[client.class_counts > 0] == 1).all()):
            return ctx.local_sgd(client)  # equal counts: weights of one are plain cross-entropy
        weights = weights.to(ctx.device)
        return ctx.local_sgd(client, loss_fn=lambda model, xb, yb, idx: weighted_cross_entropy(model(xb), yb, weights))


class FedAvgFocal(FedAvg):
    options_schema = {
        "gamma": {"type": "number", "minimum": 0, "default": 2.0, "description": "focusing parameter gamma"},
        **WEIGHTING_OPTIONS,
        "weighting": {"enum": ["none", "inverse", "effective"], "default": "none",
                      "description": "class weights alpha_c from the client's counts (none: the plain focal loss)"},
    }

    def client_update(self, ctx, client):
        gamma = self.options["gamma"]
        weights = None
        if self.options["weighting"] != "none":
            weights = class_weights(client.class_counts, self.options["weighting"], self.options["beta"]).to(ctx.device)
        return ctx.local_sgd(client, loss_fn=lambda model, xb, yb, idx: focal_loss(model(xb), yb, gamma, weights))
