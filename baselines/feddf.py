"""FedDF (Lin et al., NeurIPS 2020): after averaging, the server distils the ensemble of the uploaded
client models into the averaged one on unlabelled data -- FedAKD's closest relative.

The student learns the mean of the clients' logits (Lin et al.'s AVGLOGITS):

    L = T^2 * KL(softmax(mean_k z_k / T) || softmax(z / T)), averaged over the batch,

on the transfer set's inputs only (the labels of the part it distils on are never read), T = 1.

The defaults follow Lin et al.'s reference code (pcode/aggregation/noise_knowledge_transfer.py): Adam at
lr 1e-3, cosine-annealed over at most 10,000 steps, gradients clipped to norm 5, the student validated
every 100 steps on labelled server data, stopped after 2,000 steps without a better score, the best
validated student kept, and the averaged model deployed when no validated student beats it
(return_best_model_on_val). Their server's validation data is a labelled held-out split; here it is a
labelled fifth of the transfer set (``validation: transfer``, held out from distillation), or the
validation split (``validation: validation``). ``drop_below_chance`` drops the teachers that score below
chance on that data (their ``server_teaching_scheme: drop_worst``, off in their default too).

``feddf-parity`` (config/stability.yaml) takes FedAKD's server step instead: a fixed 100 steps, constant
lr, no clipping, no validation -- the comparison that isolates what FedAKD's labelled loss and attention
add at equal server compute. 0 steps is FedAvg exactly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from baselines.fedavg import FedAvg
from fedakd.distill import (DISTILL_OPTIONS, GUARD_OPTIONS, accuracy, guard_problems, needs_validation_split,
                            require_transfer_set, teacher_outputs, train_on_transfer_set, validation_data)

if TYPE_CHECKING:
    import torch


def ensemble_distillation_loss(student_logits: "torch.Tensor", ensemble_logits: "torch.Tensor",
                               temperature: float) -> "torch.Tensor":
    """T^2 * mean_i KL(softmax(e_i / T) || softmax(z_i / T)); ``ensemble_logits`` are constants."""
    import torch.nn.functional as F

    log_student = F.log_softmax(student_logits / temperature, dim=-1)
    log_teacher = F.log_softmax(ensemble_logits.detach() / temperature, dim=-1)
    return temperature**2 * F.kl_div(log_student, log_teacher, reduction="batchmean", log_target=True)


def _with_default(schema: dict, value) -> dict:
    return {**schema, "default": value}


class FedDF(FedAvg):
    options_schema = {
        "temperature": {"type": "number", "exclusiveMinimum": 0, "default": 1.0, "description": "softmax temperature T"},
        **DISTILL_OPTIONS,
        "distill_steps": _with_default(DISTILL_OPTIONS["distill_steps"], 10_000),
        **GUARD_OPTIONS,
        "validation": _with_default(GUARD_OPTIONS["validation"], "transfer"),
        "patience": _with_default(GUARD_OPTIONS["patience"], 2_000),
        "keep_average": _with_default(GUARD_OPTIONS["keep_average"], True),
        "schedule": _with_default(GUARD_OPTIONS["schedule"], "cosine"),
        "grad_clip": _with_default(GUARD_OPTIONS["grad_clip"], 5.0),
        "drop_below_chance": {"type": "boolean", "default": False,
                              "description": "drop the teachers whose validation accuracy is below 1/C"},
    }

    @classmethod
    def check_options(cls, options: dict) -> list[str]:
        problems = guard_problems(options)
        if options.get("drop_below_chance") and options.get("validation", "transfer") == "none":
            problems.append("drop_below_chance needs validation: transfer or validation")
        return problems

    @classmethod
    def needs_transfer_set(cls, options: dict) -> bool:
        return True  # its inputs

    @classmethod
    def needs_validation_split(cls, options: dict) -> bool:
        return needs_validation_split(options)

    def _teachers(self, ctx, uploads) -> tuple[list, dict[str, float]]:
        """The uploads that teach: all, or with drop_below_chance those at or above chance on the validation data
        (all of them if none is); and how many were kept, as a note for the round's record."""
        if not self.options["drop_below_chance"]:
            return uploads, {}
        _, val_x, val_y = validation_data(ctx, self.options)
        kept = []
        for upload in uploads:
            ctx.spare_flat.copy_(upload.weights)
            if accuracy(ctx.spare, val_x, val_y) >= 1.0 / ctx.num_classes:
                kept.append(upload)
        return kept or uploads, {"server/teachers_kept": len(kept) if kept else len(uploads)}

    def server_update(self, ctx, uploads, averaged):
        require_transfer_set(ctx)
        steps = self.options["distill_steps"]
        if steps == 0:
            return super().server_update(ctx, uploads, averaged)
        teaching, notes = self._teachers(ctx, uploads)
        teachers, _ = teacher_outputs(ctx, teaching, with_attention=False)
        ensemble = teachers.mean(dim=0)  # (P, C): the average of the clients' logits
        temperature = self.options["temperature"]
        update = train_on_transfer_set(
            ctx, averaged, steps=steps, lr=self.options["distill_lr"], batch_size=self.options["distill_batch_size"],
            loss_fn=lambda logits, attention, idx: ensemble_distillation_loss(logits, ensemble[idx], temperature),
            guard=self.options)
        update.notes.update(notes)
        return update
