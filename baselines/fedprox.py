"""FedProx (Li et al., MLSys 2020): FedAvg whose local loss adds a proximal term that keeps each
client near the round's global model, mu/2 * ||w - w_global||^2; mu = 0.01 (the paper's grid starts
at 0.001, 0.01, 0.1, 1; 0.01 is the value FL benchmarks such as NIID-Bench and CReFF use).
mu = 0 leaves FedAvg exactly (the term and its gradient are zeros)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from baselines.fedavg import FedAvg

if TYPE_CHECKING:
    import torch


def proximal_term(parameters: list["torch.Tensor"], global_parameters: list["torch.Tensor"]) -> "torch.Tensor":
    """sum_p ||p - p_global||^2 over the model's parameters (the global ones are constants)."""
    return sum(((p - g.detach()) ** 2).sum() for p, g in zip(parameters, global_parameters))


class FedProx(FedAvg):
    options_schema = {
        "mu": {"type": "number", "minimum": 0, "default": 0.01, "description": "weight of the proximal term"},
    }

    def client_update(self, ctx, client):
        import torch.nn.functional as F

        mu = self.options["mu"]
        global_views = ctx.views(ctx.global_weights)
        local = dict(ctx.model.named_parameters())  # views into the working model's weights: fixed objects
        parameters = [local[name] for name in global_views]
        global_parameters = list(global_views.values())

        def loss_fn(model, xb, yb, idx):
            return F.cross_entropy(model(xb), yb) + (mu / 2) * proximal_term(parameters, global_parameters)

        return ctx.local_sgd(client, loss_fn=loss_fn)
