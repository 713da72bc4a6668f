"""Every method trains on digits, and the ablations are what they claim to be.

The strongest checks are identities between methods: with the same seed, a
variant that switches a component off must give bit-identical weights to the
method it reduces to.
"""

import numpy as np
import pytest
import torch

from fedakd.config import resolve_setting
from fedakd.data import load_dataset
from fedakd.engine import FederatedData, RunSetup, predict_logits, run_federation
from fedakd.models import build_model
from fedakd.partition import make_partition
from fedakd.registry import get_method
from fedakd.config.spec import PartitionSpec

FEDERATION = dict(clients=4, fraction=1.0, rounds=5, local_epochs=2, batch_size=32, lr=0.05, momentum=0.9,
                  weight_decay=0.0, eval_every=1, proxy_per_class=5)


@pytest.fixture(scope="module")
def digits():
    torch.set_num_threads(1)
    data = load_dataset("digits", "unused")
    setting = resolve_setting({"imbalance": {"kind": "longtail", "factor": 10.0},
                               "split": {"kind": "dirichlet", "alpha": 1.0}})
    spec = PartitionSpec(dataset="digits", seed=0, clients=4, proxy_per_class=5, validation_per_class=0, **setting)
    return data, make_partition(data.y_train.numpy(), data.num_classes, spec)


def run(digits, method_class, options=None, **federation):
    from fedakd.config import validate_method_options

    data, partition = digits
    cls = get_method(method_class)
    method = cls(validate_method_options(method_class, options or {}))
    federated = FederatedData.from_indices(
        data.x_train, data.y_train, data.x_test, data.y_test, client_indices=partition.client_indices,
        num_classes=data.num_classes, groups=partition.groups, device=torch.device("cpu"),
        transfer_indices=partition.transfer_indices)
    return run_federation(method, federated, RunSetup({**FEDERATION, **federation}, "mlp", 0, torch.device("cpu")))


def untrained_accuracy(digits):
    data, _ = digits
    torch.manual_seed(0)
    model = build_model("mlp", in_shape=tuple(data.x_train.shape[1:]), num_classes=data.num_classes)
    return float((predict_logits(model, data.x_test).argmax(1) == data.y_test).float().mean())


SMALL = {  # options that keep the server-side methods to a fraction of a second on digits
    "fedavg-ft": {"distill_steps": 10}, "fedakd": {"distill_steps": 10}, "feddf": {"distill_steps": 10},
    "creff": {"retrain_epochs": 30},
}
#: Methods that upload more than their weights, or download more: their bytes are checked by their own tests.
EXTRA_TRAFFIC = {"creff", "fedavg-ccvr"}


@pytest.mark.parametrize("method_class, options", [
    *((name, SMALL.get(name, {})) for name in sorted(__import__("fedakd.registry").registry.method_names())),
    ("fedakd", {"kd_site": "client"}),
    ("fedakd", {"distill_steps": 10, "teacher_weighting": "class_count", "attention_transfer": 0.5}),
    ("fedavg-cw", {"weighting": "effective"}),
    ("fedavg-focal", {"weighting": "inverse"}),
])
def test_every_method_learns(digits, method_class, options):
    result = run(digits, method_class, options)
    final = result.history[-1]
    assert [h["round"] for h in result.history] == [1, 2, 3, 4, 5]
    assert final["accuracy"] > untrained_accuracy(digits) + 0.3, final["accuracy"]
    clients = 1 if method_class == "centralised" else 4
    if method_class not in EXTRA_TRAFFIC:  # rounds * clients * params * 4 bytes
        assert final["bytes_up"] == final["bytes_down"] == 5 * clients * result.num_params * 4
    assert final["local_steps"] == result.totals.local_steps > 0


def test_fedakd_without_attention_and_kd_is_fedavg_ft(digits):
    """lambda = 0 and no attention leave exactly FedAvg-FT's server fine-tuning."""
    ft = run(digits, "fedavg-ft", {"distill_steps": 10})
    akd = run(digits, "fedakd", {"distill_steps": 10, "lambda": 0.0, "attention": False})
    assert torch.equal(ft.final_weights, akd.final_weights)


def test_fedakd_without_server_steps_and_attention_is_fedavg(digits):
    avg = run(digits, "fedavg")
    akd = run(digits, "fedakd", {"distill_steps": 0, "attention": False})
    assert torch.equal(avg.final_weights, akd.final_weights)


def test_distillation_changes_the_model(digits):
    ft = run(digits, "fedakd", {"distill_steps": 10, "lambda": 0.0})
    kd = run(digits, "fedakd", {"distill_steps": 10, "lambda": 1.0})
    assert not torch.equal(ft.final_weights, kd.final_weights)


def test_same_seed_is_bit_identical(digits):
    a = run(digits, "fedakd", {"distill_steps": 5})
    b = run(digits, "fedakd", {"distill_steps": 5})
    assert torch.equal(a.final_weights, b.final_weights)
    assert a.history == b.history


def test_smote_counters_are_reported(digits):
    result = run(digits, "fedavg-smote")
    assert result.counters["smote_n_after"] > result.counters["smote_n_before"]


def test_partial_participation_samples_clients(digits):
    result = run(digits, "fedavg", fraction=0.5)
    assert result.history[-1]["bytes_up"] == 5 * 2 * result.num_params * 4
    assert np.isfinite(result.history[-1]["accuracy"])
