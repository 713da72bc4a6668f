"""FedAKD's distillation losses (docs/method-card.md §3).

L = CE(y, q) + lam * T^2 * mean_k KL(p_k^T || q^T): the student q learns the labels
and the teachers' softened predictions; T^2 keeps the KD gradient's scale
independent of T (Hinton et al. 2015). torch is imported inside the functions so
that importing this module costs nothing at job start-up.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


class LossInputError(ValueError):
    """Inputs to a loss whose shapes or settings do not fit together."""


def _check_teachers(student: "torch.Tensor", teachers: "torch.Tensor | None", what: str) -> None:
    if teachers is None:
        raise LossInputError(f"{what} is None but the teacher term is on; pass it, or set its weight to 0")
    if teachers.dim() != 3 or teachers.shape[1:] != student.shape:
        raise LossInputError(
            f"{what} must have shape (K, {', '.join(map(str, student.shape))}) to match the student, "
            f"got {tuple(teachers.shape)}"
        )


def _mean_over_teachers(per_teacher: "torch.Tensor", teacher_weights: "torch.Tensor | None") -> "torch.Tensor":
    """(K, N) -> (N,): the uniform mean over teachers, or the weighted sum with per-example weights."""
    if teacher_weights is None:
        return per_teacher.mean(dim=0)
    if teacher_weights.shape != per_teacher.shape:
        raise LossInputError(
            f"teacher_weights must have shape (K, N) = {tuple(per_teacher.shape)}, got {tuple(teacher_weights.shape)}"
        )
    return (teacher_weights.to(per_teacher.dtype) * per_teacher).sum(dim=0)


def kd_loss(student_logits: "torch.Tensor", teacher_logits: "torch.Tensor | None", labels: "torch.Tensor", *,
            lam: float, temperature: float, teacher_weights: "torch.Tensor | None" = None) -> "torch.Tensor":
    """CE(y, q) + lam * T^2 * mean_k KL(p_k^T || q^T), KL summed over classes and averaged over the batch.

    student_logits (N, C); teacher_logits (K, N, C), treated as constants; labels (N,);
    teacher_weights (K, N), each column summing to 1, replaces the uniform mean over
    teachers. lam == 0 skips the teachers entirely (teacher_logits may then be None).
    """
    import torch.nn.functional as F

    if lam < 0 or temperature <= 0:
        raise LossInputError(f"need lam >= 0 and temperature > 0, got lam={lam}, temperature={temperature}")
    cross_entropy = F.cross_entropy(student_logits, labels)
    if lam == 0:
        return cross_entropy
    _check_teachers(student_logits, teacher_logits, "teacher_logits")
    log_q = F.log_softmax(student_logits / temperature, dim=-1)
    log_p = F.log_softmax(teacher_logits.detach() / temperature, dim=-1)
    kl = F.kl_div(log_q.expand_as(log_p), log_p, reduction="none", log_target=True).sum(dim=-1)  # (K, N)
    return cross_entropy + lam * temperature**2 * _mean_over_teachers(kl, teacher_weights).mean()


def class_count_teacher_weights(client_class_counts: "torch.Tensor", labels: "torch.Tensor") -> "torch.Tensor":
    """(K, N) weights: teacher k's say on an example of class y is its share of class y in the
    federation (count_k,y / sum_j count_j,y), since a client that never saw y knows little of it.
    A class no teacher holds gets uniform weights."""
    import torch

    counts = client_class_counts.to(torch.float64)
    if counts.dim() != 2 or (counts < 0).any():
        raise LossInputError(
            f"client_class_counts must be a (K, C) tensor of non-negative counts, got shape {tuple(counts.shape)}"
        )
    num_teachers = counts.shape[0]
    totals = counts.sum(dim=0, keepdim=True)
    shares = torch.where(totals > 0, counts / totals.clamp_min(1), torch.full_like(counts, 1.0 / num_teachers))
    return shares[:, labels.long()].to(torch.float32)


def attention_transfer_loss(student_attention: "torch.Tensor", teacher_attention: "torch.Tensor") -> "torch.Tensor":
    """mean_k KL(a_k || a_q) over the feature attention (N, d) vs (K, N, d), summed over features
    and averaged over the batch; pulls the student's attention toward the teachers'."""
    import torch
    import torch.nn.functional as F

    _check_teachers(student_attention, teacher_attention, "teacher_attention")
    tiny = torch.finfo(student_attention.dtype).tiny  # softmax can underflow to 0; log(0) would be -inf
    log_student = student_attention.clamp_min(tiny).log()
    kl = F.kl_div(log_student.expand_as(teacher_attention), teacher_attention.detach(), reduction="none").sum(dim=-1)
    return kl.mean()
