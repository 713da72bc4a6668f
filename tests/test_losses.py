"""Distillation losses against numbers worked out by hand, and the KD gradient against its closed form."""

import math

import pytest
import torch
import torch.nn.functional as F
from numpy.testing import assert_allclose

from fedakd.losses import LossInputError, attention_transfer_loss, class_count_teacher_weights, kd_loss

# One example, 2 classes, label 0, K = 2 teachers, T = 2.
# Student logits [2 ln 2, 0]: q = [4/5, 1/5], CE = -ln(4/5) = 0.2231436;
#   q^T = softmax([ln 2, 0]) = [2/3, 1/3].
# Teacher 1 logits [2 ln 3, 0]: p_1^T = softmax([ln 3, 0]) = [3/4, 1/4];
#   KL(p_1^T || q^T) = 3/4 ln(9/8) + 1/4 ln(3/4) = 0.0883372 - 0.0719205 = 0.0164168.
# Teacher 2 logits [0, 0]: p_2^T = [1/2, 1/2];
#   KL(p_2^T || q^T) = 1/2 ln(3/4) + 1/2 ln(3/2) = 0.0588915.
# mean_k KL = 0.0376541; T^2 * mean = 4 * 0.0376541 = 0.1506166; lam = 1: L = 0.2231436 + 0.1506166 = 0.3737601.
STUDENT = torch.tensor([[2 * math.log(2), 0.0]])
TEACHERS = torch.tensor([[[2 * math.log(3), 0.0]], [[0.0, 0.0]]])
LABELS = torch.tensor([0])


def test_kd_loss_hand_computed():
    loss = kd_loss(STUDENT, TEACHERS, LABELS, lam=1.0, temperature=2.0)
    assert_allclose(loss.item(), 0.3737601, rtol=1e-6)
    # lam scales only the KD term: 0.2231436 + 0.5 * 0.1506166 = 0.2984519
    assert_allclose(kd_loss(STUDENT, TEACHERS, LABELS, lam=0.5, temperature=2.0).item(), 0.2984519, rtol=1e-6)


def test_teacher_weights_replace_the_uniform_mean():
    # all weight on teacher 1: 0.2231436 + 4 * 0.0164168 = 0.2888106
    weights = torch.tensor([[1.0], [0.0]])
    loss = kd_loss(STUDENT, TEACHERS, LABELS, lam=1.0, temperature=2.0, teacher_weights=weights)
    assert_allclose(loss.item(), 0.2888106, rtol=1e-6)
    # uniform weights reproduce the mean
    uniform = kd_loss(STUDENT, TEACHERS, LABELS, lam=1.0, temperature=2.0, teacher_weights=torch.full((2, 1), 0.5))
    assert_allclose(uniform.item(), 0.3737601, rtol=1e-6)


def test_lam_zero_is_plain_cross_entropy_and_needs_no_teachers():
    torch.manual_seed(0)
    logits, labels = torch.randn(6, 4), torch.tensor([0, 1, 2, 3, 0, 1])
    loss = kd_loss(logits, None, labels, lam=0.0, temperature=2.0)
    assert torch.equal(loss, F.cross_entropy(logits, labels))


@pytest.mark.parametrize("weighted", [False, True])
def test_kd_gradient_matches_closed_form(weighted):
    # d/dz [lam T^2 mean_n mean_k KL(p_k^T || q^T)] = lam * T * (q^T - mean_k p_k^T) / N;
    # the CE part adds (softmax(z) - onehot(y)) / N.
    torch.manual_seed(1)
    n, c, k, lam, t = 4, 5, 3, 0.7, 3.0
    student = torch.randn(n, c, requires_grad=True)
    teachers, labels = torch.randn(k, n, c), torch.tensor([0, 4, 2, 2])
    weights = torch.softmax(torch.randn(k, n), dim=0) if weighted else torch.full((k, n), 1.0 / k)
    kd_loss(student, teachers, labels, lam=lam, temperature=t, teacher_weights=weights if weighted else None).backward()

    z = student.detach()
    teacher_mix = (weights.unsqueeze(-1) * torch.softmax(teachers / t, dim=-1)).sum(dim=0)
    cross_entropy_grad = (torch.softmax(z, dim=-1) - F.one_hot(labels, c)) / n
    expected = cross_entropy_grad + lam * t * (torch.softmax(z / t, dim=-1) - teacher_mix) / n
    assert_allclose(student.grad.numpy(), expected.numpy(), rtol=1e-5, atol=1e-7)


def test_teachers_get_no_gradient():
    teachers = TEACHERS.clone().requires_grad_(True)
    kd_loss(STUDENT.clone().requires_grad_(True), teachers, LABELS, lam=1.0, temperature=2.0).backward()
    assert teachers.grad is None


def test_class_count_teacher_weights_hand_example():
    # client 0 holds [3, 0, 0], client 1 holds [1, 2, 0] (K = 2, C = 3); labels [0, 1, 2, 0]:
    # class 0: shares 3/4, 1/4; class 1: 0, 1; class 2: nobody holds it -> uniform 1/2, 1/2.
    counts = torch.tensor([[3, 0, 0], [1, 2, 0]])
    weights = class_count_teacher_weights(counts, torch.tensor([0, 1, 2, 0]))
    assert_allclose(weights.numpy(), [[0.75, 0.0, 0.5, 0.75], [0.25, 1.0, 0.5, 0.25]])
    assert weights.dtype == torch.float32


def test_attention_transfer_hand_computed():
    # a_q = [1/2, 1/2]; a_1 = [3/4, 1/4]: KL = 3/4 ln(3/2) + 1/4 ln(1/2) = 0.1308120; a_2 = a_q: KL = 0.
    # mean_k = 0.0654060
    student = torch.tensor([[0.5, 0.5]])
    teachers = torch.tensor([[[0.75, 0.25]], [[0.5, 0.5]]])
    assert_allclose(attention_transfer_loss(student, teachers).item(), 0.0654060, rtol=1e-6)
    # an attention weight that underflowed to 0 gives a finite loss, not inf/nan
    assert torch.isfinite(attention_transfer_loss(torch.tensor([[1.0, 0.0]]), teachers))


def test_mismatched_shapes_are_named():
    with pytest.raises(LossInputError, match=r"teacher_logits must have shape \(K, 1, 2\)"):
        kd_loss(STUDENT, TEACHERS[:, :, :1], LABELS, lam=1.0, temperature=2.0)
    with pytest.raises(LossInputError, match="teacher_logits is None"):
        kd_loss(STUDENT, None, LABELS, lam=1.0, temperature=2.0)
    with pytest.raises(LossInputError, match="teacher_weights must have shape"):
        kd_loss(STUDENT, TEACHERS, LABELS, lam=1.0, temperature=2.0, teacher_weights=torch.ones(3, 1))
    with pytest.raises(LossInputError, match="temperature > 0"):
        kd_loss(STUDENT, TEACHERS, LABELS, lam=1.0, temperature=0.0)
