"""FedDF (Lin et al., NeurIPS 2020): after averaging, the server distils the ensemble of the uploaded
client models into the averaged one on unlabelled data -- FedAKD's closest relative.

The student learns the mean of the clients' logits (Lin et al.'s AVGLOGITS):

    L = T^2 * KL(softmax(mean_k z_k / T) || softmax(z / T)), averaged over the batch,

on the transfer set's inputs only (its labels are never read), with FedAKD's steps, optimiser (Adam),
learning rate and batch (fedakd.distill.train_on_transfer_set): the comparison isolates what FedAKD's
labelled loss and attention add. T = 1 (the plain softmax, as Lin et al.); 0 steps is FedAvg exactly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from baselines.fedavg import FedAvg
from fedakd.distill import DISTILL_OPTIONS, require_transfer_set, teacher_outputs, train_on_transfer_set

if TYPE_CHECKING:
    import torch


def ensemble_distillation_loss(student_logits: "torch.Tensor", ensemble_logits: "torch.Tensor",
                               temperature: float) -> "torch.Tensor":
    """T^2 * mean_i KL(softmax(e_i / T) || softmax(z_i / T)); ``ensemble_logits`` are constants."""
    import torch.nn.functional as F

    log_student = F.log_softmax(student_logits / temperature, dim=-1)
    log_teacher = F.log_softmax(ensemble_logits.detach() / temperature, dim=-1)
    return temperature**2 * F.kl_div(log_student, log_teacher, reduction="batchmean", log_target=True)


class FedDF(FedAvg):
    needs_proxy = True  # the transfer set's inputs
    options_schema = {
        "temperature": {"type": "number", "exclusiveMinimum": 0, "default": 1.0, "description": "softmax temperature T"},
        **DISTILL_OPTIONS,
    }

    def server_update(self, ctx, uploads):
        require_transfer_set(ctx)
        steps = self.options["distill_steps"]
        if steps == 0:
            return
        teachers, _ = teacher_outputs(ctx, uploads, with_attention=False)
        ensemble = teachers.mean(dim=0)  # (P, C): the average of the clients' logits
        temperature = self.options["temperature"]
        train_on_transfer_set(
            ctx, steps=steps, lr=self.options["distill_lr"], batch_size=self.options["distill_batch_size"],
            loss_fn=lambda logits, attention, idx: ensemble_distillation_loss(logits, ensemble[idx], temperature))
