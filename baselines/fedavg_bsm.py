"""FedAvg with the balanced softmax (Ren et al., NeurIPS 2020) on each client's own prior: the local
loss is cross-entropy over z_c + log n_c, which undoes the client's label skew in the likelihood, so
the model learns the balanced posterior.

A class the client lacks has log 0 = -infinity: it leaves the client's softmax (as in FedLC), and a
client holding a single class learns nothing locally (its loss is 0). Evaluation uses the plain
logits, as Ren et al. do at test time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from baselines.fedavg import FedAvg

if TYPE_CHECKING:
    import torch


def balanced_softmax_loss(logits: "torch.Tensor", labels: "torch.Tensor", counts: "torch.Tensor") -> "torch.Tensor":
    """CE over z_c + log n_c (n_c = 0 gives -inf: the class leaves the softmax)."""
    import torch
    import torch.nn.functional as F

    return F.cross_entropy(logits + torch.log(counts.to(logits.dtype)), labels)


class FedAvgBSM(FedAvg):
    def client_update(self, ctx, client):
        counts = client.class_counts.to(ctx.device)
        return ctx.local_sgd(client, loss_fn=lambda model, xb, yb, idx: balanced_softmax_loss(model(xb), yb, counts))
