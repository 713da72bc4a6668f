"""FedNTD (Lee et al., NeurIPS 2022): local cross-entropy plus not-true distillation from the round's
frozen global model,

    L = CE(y, q_local) + beta * tau^2 * KL(q~_global^tau || q~_local^tau),

where q~^tau is the softmax at temperature tau over the classes other than the label (the true class's
logit is removed), and KL is averaged over the batch. It keeps the global model's knowledge of the
classes a client lacks without fighting the client on its own labels. Defaults beta = 1, tau = 3
(the reference implementation's). beta = 0 is FedAvg exactly.

The global model's logits on the client's data are computed once per round (the model is frozen), not
once per step.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from baselines.fedavg import FedAvg

if TYPE_CHECKING:
    import torch


def not_true_logits(logits: "torch.Tensor", labels: "torch.Tensor") -> "torch.Tensor":
    """(N, C) -> (N, C - 1): each row without its label's column."""
    import torch

    keep = torch.ones_like(logits, dtype=torch.bool).scatter_(1, labels.unsqueeze(1), False)
    return logits[keep].view(logits.shape[0], logits.shape[1] - 1)


def not_true_distillation(local_logits: "torch.Tensor", global_logits: "torch.Tensor", labels: "torch.Tensor",
                          tau: float) -> "torch.Tensor":
    """tau^2 * mean_i KL(softmax(g~_i / tau) || softmax(z~_i / tau)) over the not-true classes."""
    import torch.nn.functional as F

    log_local = F.log_softmax(not_true_logits(local_logits, labels) / tau, dim=1)
    log_global = F.log_softmax(not_true_logits(global_logits.detach(), labels) / tau, dim=1)
    return tau**2 * F.kl_div(log_local, log_global, reduction="batchmean", log_target=True)


def fedntd_loss(local_logits, global_logits, labels, *, beta: float, tau: float):
    import torch.nn.functional as F

    return F.cross_entropy(local_logits, labels) + beta * not_true_distillation(local_logits, global_logits, labels, tau)


class FedNTD(FedAvg):
    options_schema = {
        "beta": {"type": "number", "minimum": 0, "default": 1.0, "description": "weight of the not-true distillation"},
        "tau": {"type": "number", "exclusiveMinimum": 0, "default": 3.0, "description": "temperature"},
    }

    def client_update(self, ctx, client):
        from fedakd.engine import predict_logits

        ctx.spare_flat.copy_(ctx.global_weights)
        global_logits = predict_logits(ctx.spare, client.x)  # the frozen global model, once per round
        beta, tau = self.options["beta"], self.options["tau"]
        return ctx.local_sgd(client, loss_fn=lambda model, xb, yb, idx: fedntd_loss(
            model(xb), global_logits[idx], yb, beta=beta, tau=tau))
