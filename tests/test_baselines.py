"""The comparison methods of baselines/: each loss or server step against hand-computed numbers on tiny
inputs (edge cases included), the reductions to FedAvg bit for bit, and the cost they add."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose, assert_array_equal

from baselines.classifier import train_linear
from baselines.creff import classifier_gradients, matching_distance
from baselines.fedavg_bsm import balanced_softmax_loss
from baselines.fedavg_ccvr import class_feature_statistics, pool_statistics, sample_virtual_features
from baselines.fedavg_cw import class_weights, focal_loss, weighted_cross_entropy
from baselines.fedavg_ros import random_oversample
from baselines.fedavg_rus import random_undersample
from baselines.feddf import ensemble_distillation_loss
from baselines.fedlc import calibrated_cross_entropy, calibration_offsets
from baselines.fedntd import not_true_distillation, not_true_logits
from baselines.fedprox import proximal_term
from fedakd.config import ConfigError, apply_overrides, validate_config, validate_method_options
from fedakd.data import load_dataset
from fedakd.engine import ClientData, FederatedData, RunSetup, run_federation
from fedakd.registry import get_method

# -- resampling ---------------------------------------------------------------------------------
X = np.arange(7, dtype=np.float32).reshape(7, 1)
Y = np.array([0, 0, 0, 0, 1, 1, 2])  # class 0: 4, class 1: 2, class 2: 1 (a singleton), class 3 absent


def test_random_oversampling_raises_every_class_to_the_majority():
    x, y, counters = random_oversample(X, Y, seed=0, num_classes=4)
    assert np.bincount(y, minlength=4).tolist() == [4, 4, 4, 0]
    assert_array_equal(x[:7], X)  # the originals come first, unchanged
    assert set(x[7:, 0][y[7:] == 2]) == {6.0} and set(x[7:, 0][y[7:] == 1]) <= {4.0, 5.0}  # copies of own class
    assert counters == {"n_before": 7, "n_after": 12, "added": 5, "singleton_classes": 1, "absent_classes": 1}


def test_random_undersampling_cuts_every_class_to_the_minority():
    x, y, counters = random_undersample(X, Y, seed=0, num_classes=4)
    assert np.bincount(y, minlength=4).tolist() == [1, 1, 1, 0]
    assert (np.diff(x[:, 0]) > 0).all() and set(zip(x[:, 0], y)) <= set(zip(X[:, 0], Y))  # own order, real rows
    assert counters == {"n_before": 7, "n_after": 3, "removed": 4, "cut_to_one_clients": 1, "absent_classes": 1}


@pytest.mark.parametrize("resample", [random_oversample, random_undersample])
def test_resampling_a_balanced_or_single_class_client_changes_nothing(resample):
    balanced_y = np.array([0, 1, 2, 0, 1, 2])
    x, y, _ = resample(X[:6], balanced_y, seed=0, num_classes=3)
    assert_array_equal(x, X[:6])
    assert_array_equal(y, balanced_y)
    x, y, counters = resample(X[:3], np.array([1, 1, 1]), seed=0, num_classes=3)
    assert_array_equal(y, [1, 1, 1]) and counters["absent_classes"] == 2


# -- cost-sensitive losses -------------------------------------------------------------------------
def test_class_weights_by_hand():
    # inverse: 1/3, 1 -> normalised to sum 2 (two classes present): 0.5, 1.5; absent class 0.
    assert_allclose(class_weights(torch.tensor([3, 1, 0]), "inverse"), [0.5, 1.5, 0.0])
    # effective, beta 0.999: E_n = (1 - 0.999^n) / 0.001; E_3 = 2.997001, E_1 = 1; w ~ 1/E, sum 2.
    e3 = (1 - 0.999**3) / 0.001
    assert_allclose(class_weights(torch.tensor([3, 1, 0]), "effective"),
                    [2 * (1 / e3) / (1 / e3 + 1), 2 * 1 / (1 / e3 + 1), 0.0], rtol=1e-6)
    assert_allclose(class_weights(torch.tensor([3, 1, 0]), "effective"), [0.500375, 1.499625, 0.0], atol=1e-6)
    # equal counts: exactly one
    assert torch.equal(class_weights(torch.tensor([5, 5, 0]), "effective"), torch.tensor([1.0, 1.0, 0.0]))


def test_weighted_cross_entropy_by_hand():
    # logits [0, 0] for both examples: CE = ln 2 each; labels 0 and 1 with weights 0.5 and 1.5:
    # mean(0.5 ln 2, 1.5 ln 2) = ln 2 (Cui et al.'s batch mean, not PyTorch's weighted mean).
    logits, labels = torch.zeros(2, 2), torch.tensor([0, 1])
    assert_allclose(weighted_cross_entropy(logits, labels, torch.tensor([0.5, 1.5])), math.log(2), rtol=1e-6)
    assert_allclose(weighted_cross_entropy(logits, torch.tensor([1, 1]), torch.tensor([0.5, 1.5])),
                    1.5 * math.log(2), rtol=1e-6)


def test_focal_loss_by_hand():
    # logits [0, ln 3], label 1: p = 3/4; FL = (1 - 3/4)^2 * -ln(3/4) = 0.0625 * 0.2876821
    logits = torch.tensor([[0.0, math.log(3)]])
    assert_allclose(focal_loss(logits, torch.tensor([1]), gamma=2.0), 0.0625 * math.log(4 / 3), rtol=1e-6)
    assert_allclose(focal_loss(logits, torch.tensor([1]), gamma=0.0), math.log(4 / 3), rtol=1e-6)  # = CE
    assert_allclose(focal_loss(logits, torch.tensor([1]), gamma=2.0, weights=torch.tensor([1.0, 4.0])),
                    0.25 * math.log(4 / 3), rtol=1e-6)


# -- label-skew losses ---------------------------------------------------------------------------------
def test_fedlc_calibration_by_hand():
    counts = torch.tensor([4, 1, 0])
    offsets = calibration_offsets(counts, tau=1.0)
    assert_allclose(offsets[:2], [4**-0.25, 1.0], rtol=1e-6)
    assert math.isinf(offsets[2])
    # logits [1, 2, 0], label 0: calibrated [1 - 0.7071068, 1, -inf]; the absent class leaves the softmax:
    # CE = log(1 + e^(1 - 0.2928932)) = log(1 + e^0.7071068) = log(3.0281150)
    logits = torch.tensor([[1.0, 2.0, 0.0]], requires_grad=True)
    loss = calibrated_cross_entropy(logits, torch.tensor([0]), offsets)
    assert_allclose(loss.item(), math.log(1 + math.exp(4**-0.25)), rtol=1e-6)
    loss.backward()
    assert logits.grad[0, 2] == 0  # training never pushes an absent class's logit
    assert torch.equal(calibration_offsets(counts, tau=0.0), torch.zeros(3))


def test_balanced_softmax_by_hand():
    # logits [1, 2, 0] + log [4, 1, 0] = [1 + ln 4, 2, -inf]; label 1: CE = log(1 + e^(1 + ln 4 - 2))
    logits = torch.tensor([[1.0, 2.0, 0.0]])
    loss = balanced_softmax_loss(logits, torch.tensor([1]), torch.tensor([4, 1, 0]))
    assert_allclose(loss.item(), math.log(1 + 4 * math.exp(-1)), rtol=1e-6)
    # a client holding one class learns nothing: its loss is 0
    assert balanced_softmax_loss(logits, torch.tensor([1]), torch.tensor([0, 7, 0])).item() == 0


def test_not_true_distillation_by_hand():
    local, global_, labels = torch.tensor([[1.0, 0.0, 2.0]]), torch.tensor([[0.0, 1.0, 1.0]]), torch.tensor([2])
    assert_array_equal(not_true_logits(local, labels), [[1.0, 0.0]])
    # not-true: local [1, 0], global [0, 1]; p_g = [s(-1), s(1)], p_l = [s(1), s(-1)] (s the logistic function);
    # KL(p_g || p_l) = s(-1) * (-1 - 1)/1 ... = (s(1) - s(-1)) * 1 * ... : each log ratio is +-1, so KL = s(1) - s(-1).
    sigmoid = lambda v: 1 / (1 + math.exp(-v))  # noqa: E731
    assert_allclose(not_true_distillation(local, global_, labels, tau=1.0).item(), sigmoid(1) - sigmoid(-1), rtol=1e-6)
    # tau scales the logits and the result by tau^2: tau = 2 -> log ratios +-1/2, KL = (s(.5) - s(-.5)) / 2, x4.
    assert_allclose(not_true_distillation(local, global_, labels, tau=2.0).item(),
                    4 * (sigmoid(0.5) - sigmoid(-0.5)) / 2, rtol=1e-6)


def test_proximal_term_by_hand():
    w = torch.tensor([1.0, 2.0], requires_grad=True)
    term = proximal_term([w], [torch.tensor([0.0, 1.0])])
    assert term.item() == 1.0 + 1.0
    term.backward()
    assert_array_equal(w.grad, [2.0, 2.0])  # d/dw ||w - g||^2 = 2 (w - g)


def test_ensemble_distillation_by_hand():
    # teachers' logits [0, 0] and [2, 0]: mean [1, 0]; student [0, 0]: KL(softmax([1, 0]) || [1/2, 1/2])
    ensemble = torch.tensor([[0.0, 0.0], [2.0, 0.0]]).mean(dim=0, keepdim=True)
    p = torch.softmax(torch.tensor([1.0, 0.0]), 0).tolist()
    expected = sum(pi * math.log(pi / 0.5) for pi in p)
    assert_allclose(ensemble_distillation_loss(torch.zeros(1, 2), ensemble, 1.0).item(), expected, rtol=1e-6)
    assert ensemble_distillation_loss(ensemble, ensemble, 3.0).item() == pytest.approx(0, abs=1e-7)


# -- classifier re-training (CCVR, CReFF) ---------------------------------------------------------------
def test_pooled_statistics_are_those_of_the_union():
    # class 0: client A [0, 0], [2, 0]; client B [4, 2] (a single example: no covariance of its own).
    a = class_feature_statistics(torch.tensor([[0.0, 0.0], [2.0, 0.0]]), torch.tensor([0, 0]))
    b = class_feature_statistics(torch.tensor([[4.0, 2.0]]), torch.tensor([0]))
    assert_allclose(a["covariances"][0], [[2.0, 0.0], [0.0, 0.0]])
    assert b["covariances"].abs().sum() == 0
    count, mean, covariance = pool_statistics([a, b], num_classes=2, dim=2)
    # union [0, 0], [2, 0], [4, 2]: mean [2, 2/3]; deviations [-2, -2/3], [0, -2/3], [2, 4/3];
    # covariance = sum of outer products / 2 = [[4, 2], [2, 4/3]]
    assert count.tolist() == [3, 0]
    assert_allclose(mean[0], [2.0, 2 / 3], rtol=1e-6)
    assert_allclose(covariance[0], [[4.0, 2.0], [2.0, 4 / 3]], rtol=1e-6)
    features, labels = sample_virtual_features(count, mean, covariance, 5000, torch.Generator().manual_seed(0))
    assert labels.tolist() == [0] * 5000  # no features for a class nobody holds
    assert_allclose(features.mean(0), [2.0, 2 / 3], atol=0.1)
    assert_allclose(np.cov(features.numpy().T), [[4.0, 2.0], [2.0, 4 / 3]], atol=0.25)


def test_classifier_gradients_by_hand_and_against_autograd():
    # W = 0, b = 0, two classes, f = [1, 2] of class 0: p = [1/2, 1/2], p - onehot = [-1/2, 1/2]
    grad_w, grad_b = classifier_gradients(torch.tensor([[[1.0, 2.0]]]), torch.tensor([0]), torch.zeros(2, 2),
                                          torch.zeros(2))
    assert_allclose(grad_w[0], [[-0.5, -1.0], [0.5, 1.0]])
    assert_allclose(grad_b[0], [-0.5, 0.5])
    generator = torch.Generator().manual_seed(1)
    features, weight, bias = (torch.randn(3, 4, 5, generator=generator), torch.randn(6, 5, generator=generator),
                              torch.randn(6, generator=generator))
    classes = torch.tensor([4, 0, 2])
    grad_w, grad_b = classifier_gradients(features, classes, weight, bias)
    for k in range(3):
        w, b = weight.clone().requires_grad_(True), bias.clone().requires_grad_(True)
        loss = torch.nn.functional.cross_entropy(features[k] @ w.T + b, classes[k].repeat(4))
        expected = torch.autograd.grad(loss, (w, b))
        assert_allclose(grad_w[k], expected[0], atol=1e-6)
        assert_allclose(grad_b[k], expected[1], atol=1e-6)


def test_matching_distance_by_hand():
    real = (torch.tensor([[[1.0, 0.0], [0.0, 2.0]]]), torch.tensor([[1.0, 1.0]]))
    # 0 up to the 1e-6 the distance adds to each norm product: 1e-6/1 + 1e-6/4 + 1e-6/2
    assert matching_distance(real, real).item() == pytest.approx(1.75e-6, abs=1e-7)
    opposite = (-real[0], -real[1])
    assert matching_distance(opposite, real).item() == pytest.approx(2 * 2 + 2, abs=1e-5)  # two rows + the bias
    orthogonal = (torch.tensor([[[0.0, 1.0], [2.0, 0.0]]]), torch.tensor([[1.0, -1.0]]))
    assert matching_distance(orthogonal, real).item() == pytest.approx(3.0, abs=1e-5)


def test_train_linear_takes_the_steps_plain_sgd_would():
    generator = torch.Generator().manual_seed(2)
    features, labels = torch.randn(10, 3, generator=generator), torch.randint(0, 4, (10,), generator=generator)
    weight, bias = torch.randn(4, 3, generator=generator), torch.zeros(4)
    w, b = weight.clone().requires_grad_(True), bias.clone().requires_grad_(True)
    optimizer = torch.optim.SGD([w, b], lr=0.1)
    order_generator = torch.Generator().manual_seed(3)
    for _ in range(2):
        order = torch.randperm(10, generator=order_generator)
        for start in range(0, 10, 4):
            idx = order[start : start + 4]
            loss = torch.nn.functional.cross_entropy(features[idx] @ w.T + b, labels[idx])
            optimizer.zero_grad(), loss.backward(), optimizer.step()
    steps = train_linear(weight, bias, features, labels, epochs=2, lr=0.1, batch_size=4,
                         generator=torch.Generator().manual_seed(3))
    assert steps == 2 * 3
    assert_allclose(weight, w.detach(), atol=1e-6)
    assert_allclose(bias, b.detach(), atol=1e-6)


# -- the methods on the engine: reductions bit for bit, and what they cost -----------------------------
FEDERATION = dict(clients=3, fraction=1.0, rounds=3, local_epochs=1, batch_size=16, lr=0.05, momentum=0.9,
                  weight_decay=0.0, eval_every=1, proxy_per_class=5)


@pytest.fixture(scope="module")
def digits():
    torch.set_num_threads(1)
    return load_dataset("digits", "unused")


def federation_of(digits, clients: list[np.ndarray], proxy=None) -> FederatedData:
    return FederatedData.from_indices(digits.x_train, digits.y_train, digits.x_test, digits.y_test,
                                      client_indices=clients, num_classes=10, groups=None, device=torch.device("cpu"),
                                      transfer_indices=proxy)


def skewed_clients(digits, seed=0) -> tuple[list[np.ndarray], np.ndarray]:
    """Three clients with label skew (client k mostly holds classes 3k..3k+3) and a 5-per-class transfer set."""
    rng = np.random.default_rng(seed)
    labels = digits.y_train.numpy()
    proxy = np.sort(np.concatenate([rng.choice(np.flatnonzero(labels == c), 5, replace=False) for c in range(10)]))
    rest = np.setdiff1d(np.arange(len(labels)), proxy)
    clients = [np.sort(rest[(labels[rest] // 4 == k) | (rest % 7 == k)]) for k in range(3)]
    return clients, proxy


def balanced_clients(digits, per_class=8) -> list[np.ndarray]:
    labels = digits.y_train.numpy()
    members = [np.flatnonzero(labels == c) for c in range(10)]
    return [np.sort(np.concatenate([m[k * per_class:(k + 1) * per_class] for m in members])) for k in range(3)]


def run(method_class: str, data: FederatedData, options=None, **federation):
    method = get_method(method_class)(validate_method_options(method_class, options or {}))
    return run_federation(method, data, RunSetup({**FEDERATION, **federation}, "mlp", 0, torch.device("cpu")))


@pytest.mark.parametrize("method_class, options", [
    ("fedprox", {"mu": 0.0}),
    ("fedlc", {"tau": 0.0}),
    ("fedntd", {"beta": 0.0}),
    ("feddf", {"distill_steps": 0}),
    ("fedavg-ccvr", {"calibration_epochs": 0}),
])
def test_switched_off_it_is_fedavg_bit_for_bit(digits, method_class, options):
    clients, proxy = skewed_clients(digits)
    data = federation_of(digits, clients, proxy)
    expected = run("fedavg", data)
    found = run(method_class, data, options)
    assert torch.equal(found.final_weights, expected.final_weights)
    assert found.history == expected.history


@pytest.mark.parametrize("method_class", ["fedavg-cw", "fedavg-ros", "fedavg-rus"])
def test_on_balanced_clients_it_is_fedavg_bit_for_bit(digits, method_class):
    data = federation_of(digits, balanced_clients(digits))
    expected, found = run("fedavg", data), run(method_class, data)
    assert torch.equal(found.final_weights, expected.final_weights)
    prepared, _ = get_method(method_class)(validate_method_options(method_class, {})).prepare_clients(data.clients, 0)
    for before, after in zip(data.clients, prepared):  # resamplers train on the very same examples
        assert torch.equal(before.x, after.x) and torch.equal(before.y, after.y)


def test_centralised_pools_the_clients_and_with_one_client_is_fedavg(digits):
    clients, _ = skewed_clients(digits)
    data = federation_of(digits, clients)
    pooled, counters = get_method("centralised")({}).prepare_clients(data.clients, 0)
    assert len(pooled) == 1 and pooled[0].num_examples == sum(len(c) for c in clients)
    assert torch.equal(pooled[0].class_counts, sum(c.class_counts for c in data.clients)) and counters
    one = federation_of(digits, [np.concatenate(clients)])
    assert torch.equal(run("centralised", one, clients=1).final_weights, run("fedavg", one, clients=1).final_weights)


def test_creff_deploys_fedavgs_backbone_with_its_own_classifier(digits):
    clients, _ = skewed_clients(digits)
    data = federation_of(digits, clients)
    fedavg = run("fedavg", data)
    creff = run("creff", data, {"match_steps": 5, "retrain_epochs": 2})
    head = 64 * 10 + 10  # the mlp's head: 64 features x 10 classes + 10 biases, stored last
    assert torch.equal(creff.final_weights[:-head], fedavg.final_weights[:-head])
    assert not torch.equal(creff.final_weights[-head:], fedavg.final_weights[-head:])


def test_extra_uploads_and_steps_are_counted(digits):
    clients, proxy = skewed_clients(digits)
    data = federation_of(digits, clients, proxy)
    fedavg = run("fedavg", data)
    weights_bytes = fedavg.num_params * 4
    assert fedavg.totals.bytes_up == fedavg.totals.bytes_down == 3 * 3 * weights_bytes
    assert fedavg.totals.server_steps == 0

    # CCVR: in the last round each client sends, per class it holds, a mean (64), a covariance (64 x 64),
    # a count and the class id, and receives the final model once more.
    ccvr = run("fedavg-ccvr", data)
    held = sum(int((c.class_counts > 0).sum()) for c in data.clients)
    assert ccvr.totals.bytes_up - fedavg.totals.bytes_up == held * (64 * 4 + 64 * 64 * 4 + 4 + 8)
    assert ccvr.totals.bytes_down - fedavg.totals.bytes_down == 3 * weights_bytes
    classes_held = int((sum(c.class_counts for c in data.clients) > 0).sum())
    assert ccvr.totals.server_steps == 10 * math.ceil(classes_held * 200 / 64)  # 10 epochs, batches of 64

    # CReFF: per class held, the classifier's gradients (10 x 64 + 10) and the class id, every round;
    # the server's classifier (10 x 64 + 10) travels down with the model.
    creff = run("creff", data, {"match_steps": 5, "retrain_epochs": 2})
    assert creff.totals.bytes_up - fedavg.totals.bytes_up == 3 * held * ((10 * 64 + 10) * 4 + 8)
    assert creff.totals.bytes_down - fedavg.totals.bytes_down == 3 * 3 * (10 * 64 + 10) * 4
    assert creff.totals.server_steps == 3 * (5 + 2 * math.ceil(10 * 100 / 32))

    # FedAKD's attention layer (64 x 64) travels both ways; its server steps are counted.
    fedakd = run("fedakd", data, {"distill_steps": 7})
    assert fedakd.num_params == fedavg.num_params + 64 * 64
    assert fedakd.totals.bytes_up == 3 * 3 * fedakd.num_params * 4 and fedakd.totals.server_steps == 3 * 7

    # SMOTE's extra examples are extra local steps.
    smote = run("fedavg-smote", data)
    assert smote.totals.local_steps > fedavg.totals.local_steps == 3 * sum(math.ceil(len(c) / 16) for c in clients)


# -- bad options are refused before any work ------------------------------------------------------------
@pytest.fixture
def smoke():
    import yaml

    from tests.conftest import ROOT

    return yaml.safe_load((ROOT / "config" / "smoke.yaml").read_text())


@pytest.mark.parametrize("override, expected", [
    ("methods.fedprox.mu=-0.1", "methods.fedprox.mu: -0.1 -- a finite number >= 0"),
    ("methods.fedlc.tau=-1", "methods.fedlc.tau: -1 -- a finite number >= 0"),
    ("methods.fedavg-cw.weighting=sqrt", "methods.fedavg-cw.weighting: 'sqrt' -- one of 'inverse', 'effective'"),
    ("methods.fedntd.tau=0", "methods.fedntd.tau: 0 -- a finite number > 0"),
    ("methods.creff.features_per_class=0", "methods.creff.features_per_class: 0 -- an integer >= 1"),
    ("federation.proxy_per_class=0", "federation.proxy_per_class: 0 -- at least 1: methods "),
])
def test_bad_options_are_refused_naming_the_key(smoke, override, expected):
    config = {**smoke, "methods": {"fedprox": {"method": "fedprox"}, "fedlc": {"method": "fedlc"},
                                   "fedavg-cw": {"method": "fedavg-cw"}, "fedntd": {"method": "fedntd"},
                                   "creff": {"method": "creff"}, "feddf": {"method": "feddf"}}}
    with pytest.raises(ConfigError) as caught:
        validate_config(apply_overrides(config, [override]))
    assert any(line.startswith(expected) for line in str(caught.value).splitlines()), str(caught.value)
    if override.startswith("federation.proxy_per_class"):
        assert "feddf" in str(caught.value)


def test_every_registered_method_class_defines_its_own_behaviour():
    """A registered name must not be a bare alias of FedAvg: each overrides a hook or has options."""
    from fedakd.method import Method
    from fedakd.registry import method_names

    hooks = ("prepare_clients", "prepare_client_data", "client_update", "aggregate", "server_update", "model_options")
    for name in method_names():
        cls = get_method(name)
        assert issubclass(cls, Method)
        own = {hook for hook in hooks if any(hook in vars(k) for k in cls.__mro__[:-1] if k is not Method)}
        assert name == "fedavg" or own or cls.options_schema, name
        assert cls.__module__.split(".")[0] in ("baselines", "fedakd"), name


def test_client_data_is_what_a_client_holds(digits):
    client = ClientData(0, digits.x_train[:5], digits.y_train[:5], 5, torch.bincount(digits.y_train[:5], minlength=10))
    assert int(client.class_counts.sum()) == client.num_examples
