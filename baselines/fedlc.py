"""FedLC (Zhang et al., ICML 2022): local cross-entropy on logits calibrated by the client's label
counts, z_c - tau * n_c^(-1/4), so that a client's frequent classes need a larger margin; tau = 1.0.

Two readings made explicit:
- the loss is ordinary cross-entropy over the calibrated logits of every class. The paper's equation
  leaves the true class out of the softmax's denominator, which makes the loss unbounded below (FL-bench
  reports that training collapses with it); reimplementations use the form here;
- a class the client lacks (n_c = 0) gets an offset of +infinity, the limit of n_c^(-1/4) as n_c -> 0:
  its calibrated logit is -infinity, so it leaves the client's softmax and local training never pushes
  it down. (FL-bench clamps n_c to 1e-8, an offset of 100 * tau: the same in practice.) With tau = 0
  no logit moves and FedLC is FedAvg exactly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from baselines.fedavg import FedAvg

if TYPE_CHECKING:
    import torch


def calibration_offsets(counts: "torch.Tensor", tau: float) -> "torch.Tensor":
    """(C,) tau * n_c^(-1/4); +inf for a class the client lacks (0 everywhere when tau = 0)."""
    import torch

    counts = counts.to(torch.float32)
    offsets = tau * counts.clamp_min(1) ** -0.25
    absent = torch.full_like(offsets, float("inf") if tau > 0 else 0.0)
    return torch.where(counts > 0, offsets, absent)


def calibrated_cross_entropy(logits: "torch.Tensor", labels: "torch.Tensor", offsets: "torch.Tensor") -> "torch.Tensor":
    import torch.nn.functional as F

    return F.cross_entropy(logits - offsets, labels)


class FedLC(FedAvg):
    options_schema = {
        "tau": {"type": "number", "minimum": 0, "default": 1.0, "description": "calibration strength tau"},
    }

    def client_update(self, ctx, client):
        offsets = calibration_offsets(client.class_counts, self.options["tau"]).to(ctx.device)
        return ctx.local_sgd(client, loss_fn=lambda model, xb, yb, idx: calibrated_cross_entropy(model(xb), yb, offsets))
