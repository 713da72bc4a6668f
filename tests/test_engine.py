"""Engine arithmetic with hand-computed numbers: averaging, flat parameters, sampling."""

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose

from fedakd.engine import clients_per_round, flatten_parameters, sample_clients, weighted_average
from fedakd.seeding import derive_seed


def test_weighted_average_by_example_counts():
    # (1*[1, 2] + 3*[3, 6]) / 4 = [10/4, 20/4]
    out = weighted_average([torch.tensor([1.0, 2.0]), torch.tensor([3.0, 6.0])], [1, 3])
    assert_allclose(out.numpy(), [2.5, 5.0])
    assert out.dtype == torch.float32


def test_weighted_average_three_clients():
    # counts 2, 1, 1 -> weights 0.5, 0.25, 0.25: 0.5*0 + 0.25*4 + 0.25*8 = 3; 0.5*2 + 0.25*2 + 0.25*(-2) = 1
    out = weighted_average([torch.tensor([0.0, 2.0]), torch.tensor([4.0, 2.0]), torch.tensor([8.0, -2.0])], [2, 1, 1])
    assert_allclose(out.numpy(), [3.0, 1.0])


def test_weighted_average_rejects_empty_and_zero_counts():
    with pytest.raises(ValueError):
        weighted_average([], [])
    with pytest.raises(ValueError):
        weighted_average([torch.zeros(2)], [0])


def test_flat_parameters_are_the_model():
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.ReLU(), torch.nn.Linear(2, 1))
    x = torch.randn(4, 3)
    before = model(x).detach()
    flat = flatten_parameters(model)
    assert flat.numel() == sum(p.numel() for p in model.parameters()) == 3 * 2 + 2 + 2 + 1
    assert torch.equal(model(x).detach(), before)  # re-homing keeps the values
    snapshot = flat.clone()
    flat.zero_()
    assert torch.equal(model(x).detach(), torch.zeros(4, 1))  # the module reads the flat buffer
    flat.copy_(snapshot)
    assert torch.equal(model(x).detach(), before)
    # the optimiser updates the flat buffer through the views
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    model(x).sum().backward()
    optimizer.step()
    assert not torch.equal(flat, snapshot)


def test_client_sampling_is_seeded_and_per_round():
    assert sample_clients(5, 1.0, seed=0, round_idx=1) == [0, 1, 2, 3, 4]
    a = sample_clients(10, 0.5, seed=3, round_idx=1)
    assert a == sample_clients(10, 0.5, seed=3, round_idx=1)
    assert len(a) == 5 == len(set(a)) and a == sorted(a)
    rounds = {tuple(sample_clients(10, 0.5, seed=3, round_idx=r)) for r in range(1, 9)}
    assert len(rounds) > 1
    assert sample_clients(10, 0.01, seed=0, round_idx=1).__len__() == 1  # at least one client


def test_derived_seeds_are_stable_and_distinct():
    assert derive_seed(1, 2, 3) == derive_seed(1, 2, 3)
    assert len({derive_seed(1, 2), derive_seed(2, 1), derive_seed(1, 2, 0)}) == 3
    assert 0 <= derive_seed(7) < 2**63
    assert isinstance(derive_seed(np.int64(4)), int)


@pytest.mark.parametrize("clients, fraction, expected", [
    (10, 1.0, 10), (10, 0.5, 5),
    (10, 0.35, 3),    # int(3.5) = 3; Python's round() would give 4 (round half to even)
    (10, 0.25, 2),    # int(2.5) = 2
    (100, 0.29, 29),  # 0.29 * 100 = 28.999999999999996 in floating point: still 29
    (10, 0.01, 1),    # at least one client
    (3, 0.99, 2),
])
def test_clients_per_round_is_niid_benchs_int_of_fraction_times_clients(clients, fraction, expected):
    assert clients_per_round(clients, fraction) == expected
    assert len(sample_clients(clients, fraction, seed=0, round_idx=1)) == expected


# -- one step of the engine, by hand on a two-parameter model ---------------------------------
class TwoParameterModel(torch.nn.Module):
    """logits = [w * x + b, 0]: two classes, two parameters, gradients easy to work out by hand."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(()))
        self.b = torch.nn.Parameter(torch.zeros(()))

    def logits_and_attention(self, x):
        first = self.w * x[:, 0] + self.b
        return torch.stack([first, torch.zeros_like(first)], dim=1), None

    def forward(self, x):
        return self.logits_and_attention(x)[0]


def context(**federation):
    from fedakd.engine import Federation, RoundContext

    model, spare = TwoParameterModel(), TwoParameterModel()
    flat, spare_flat = flatten_parameters(model), flatten_parameters(spare)
    settings = Federation(**{"rounds": 1, "fraction": 1.0, "eval_every": 1, "lr": 0.1, "momentum": 0.9,
                             "weight_decay": 0.0, "batch_size": 2, "local_epochs": 1, **federation})
    return RoundContext(round=1, seed=0, federation=settings, device=torch.device("cpu"), model=model, flat=flat,
                        spare=spare, spare_flat=spare_flat, global_weights=flat.clone(), num_classes=2)


def test_one_local_sgd_step_by_hand():
    from fedakd.engine import ClientData

    ctx = context()
    client = ClientData(0, torch.tensor([[1.0], [2.0]]), torch.tensor([0, 1]), 2, torch.tensor([1, 1]))
    upload = ctx.local_sgd(client)
    # w = b = 0: both examples have p = (1/2, 1/2). dL/dz_0 is (p_0 - 1)/2 = -1/4 for (x=1, y=0) and
    # (p_0 - 0)/2 = +1/4 for (x=2, y=1). dL/dw = -1/4 * 1 + 1/4 * 2 = 1/4; dL/db = -1/4 + 1/4 = 0.
    # One SGD step (the momentum buffer starts as the gradient): w = 0 - 0.1 * 1/4 = -0.025, b = 0.
    assert_allclose(upload.weights.numpy(), [-0.025, 0.0], atol=1e-8)
    assert ctx.tally.local_steps == 1 and upload.num_examples == 2
    assert torch.equal(ctx.global_weights, torch.zeros(2))  # the global weights are not touched


@pytest.mark.parametrize("lam, sign", [(1.0, -1.0), (2.0, 1.0)])
def test_one_server_distillation_step_by_hand(lam, sign):
    from fedakd.distill import distill_on_transfer_set
    from fedakd.engine import Upload

    ctx = context()
    ctx.transfer_x, ctx.transfer_y = torch.tensor([[1.0]]), torch.tensor([1])
    teacher = Upload(0, torch.tensor([3.0, 0.0]), 1, torch.tensor([1, 1]))  # a teacher with logits [3, 0] at x = 1
    # Student w = b = 0: q = (1/2, 1/2). The teacher's p = (s, 1 - s) with s = logistic(3) = 0.9525741.
    # dL/dz_0 = CE: q_0 - 0 = 0.5, plus KD (T = 1): lam * (q_0 - p_0) = lam * (0.5 - 0.9525741).
    # lam = 1: 0.5 - 0.4525741 > 0; lam = 2: 0.5 - 0.9051483 < 0. dL/dw = dL/db = dL/dz_0 (x = 1).
    # Adam's first step moves each weight by -lr * g / (|g| + eps) = -lr * sign(g): w = b = -0.001 * sign.
    update = distill_on_transfer_set(ctx, [teacher], ctx.global_weights, lam=lam, temperature=1.0, steps=1, lr=0.001,
                                     batch_size=1)
    assert_allclose(update.weights.numpy(), [0.001 * sign, 0.001 * sign], rtol=1e-6)
    assert update.deployed is None and ctx.tally.server_steps == 1
    assert torch.equal(ctx.global_weights, torch.zeros(2))  # what it started from is not touched
