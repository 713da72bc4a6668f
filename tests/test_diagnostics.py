"""Training diagnostics and failure flags (fedakd.diagnostics), the residual attention form and the validated
server step (FedDF's guard): each against hand-computed values or a bit-for-bit reduction."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import baselines.feddf as feddf_module
from fedakd.config import ConfigError, apply_overrides, validate_config, validate_method_options
from fedakd.data import load_dataset
from fedakd.diagnostics import (attention_entropy, collapse_onset, dead_share, describe, diag_key, failure_flags,
                                prediction_summary)
from fedakd.distill import held_out_transfer
from fedakd.engine import FederatedData, RunSetup, ServerUpdate, run_federation
from fedakd.method import Method
from fedakd.models import FeatureAttention, build_model
from fedakd.registry import get_method
from fedakd.config.tuning import select, selection_record
from tests.helpers import ROOT

FEDERATION = dict(clients=3, fraction=1.0, rounds=3, local_epochs=1, batch_size=16, lr=0.05, momentum=0.9,
                  weight_decay=0.0, eval_every=1, proxy_per_class=5)


# -- single measurements by hand ----------------------------------------------------------------------
def test_attention_entropy_by_hand():
    # rows: (1/2, 1/2, 0, 0) -> ln 2; one-hot -> 0; uniform over 4 -> ln 4
    a = torch.tensor([[0.5, 0.5, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0], [0.25, 0.25, 0.25, 0.25]])
    assert attention_entropy(a[:1]) == pytest.approx(math.log(2))
    assert attention_entropy(a[1:2]) == 0.0 and str(attention_entropy(a[1:2])) == "0.0"
    assert attention_entropy(a) == pytest.approx((math.log(2) + 0 + math.log(4)) / 3)


def test_dead_units_by_hand():
    # unit 0 is zero on every row, unit 1 on one row only, unit 2 never: 1 of 3 dead
    features = torch.tensor([[0.0, 1.0, 2.0], [0.0, 0.0, 3.0]])
    assert dead_share(features) == pytest.approx(1 / 3)
    assert dead_share(torch.zeros(4, 5)) == 1.0 and dead_share(torch.ones(4, 5)) == 0.0


def test_distinct_predicted_classes_and_top_share_by_hand():
    assert prediction_summary(np.array([2, 2, 2, 1]), 4) == (2, 0.75)
    assert prediction_summary([0, 1, 2, 3], 4) == (4, 0.25)
    assert prediction_summary([3] * 10, 4) == (1, 1.0)


def test_collapse_onset_is_the_round_from_which_it_stays():
    def history(shares, averaged=None):
        return [{"round": r + 1, "top_class_share": s,
                 **({diag_key("averaged", "top_class_share"): averaged[r]} if averaged else {})}
                for r, s in enumerate(shares)]

    assert collapse_onset(history([0.3, 0.95, 0.97, 1.0]))["round"] == 2
    assert collapse_onset(history([0.95, 0.3, 0.95, 0.99]))["round"] == 3  # a recovery resets the onset
    assert collapse_onset(history([0.95, 0.99, 0.3])) is None  # recovered by the end: not collapsed
    assert collapse_onset(history([0.3, 0.9])) is None  # the threshold itself is not above it
    assert collapse_onset(history([0.3, 1.0], averaged=[0.2, 1.0]))["step"] == "averaged"
    assert collapse_onset(history([0.3, 1.0], averaged=[0.2, 0.4]))["step"] == "server"
    assert failure_flags(history([0.95, 0.3, 0.95, 0.99]), None)["transient_collapses"] == [1]
    assert failure_flags(history([0.3, 0.95, 0.6, 0.95, 0.2]), None)["transient_collapses"] == [2, 4]
    flags = failure_flags(history([0.3, 1.0]), None)
    assert describe(flags) == "collapsed from round 2 (server)" and describe(failure_flags(history([0.3]), None)) == "none"


# -- whole runs on digits -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def digits():
    torch.set_num_threads(1)
    return load_dataset("digits", "unused")


@pytest.fixture(scope="module")
def federation(digits):
    labels = digits.y_train.numpy()
    rng = np.random.default_rng(0)
    proxy = np.sort(np.concatenate([rng.choice(np.flatnonzero(labels == c), 5, replace=False) for c in range(10)]))
    rest = np.setdiff1d(np.arange(len(labels)), proxy)
    clients = [np.sort(rest[(labels[rest] // 4 == k) | (rest % 7 == k)]) for k in range(3)]
    return FederatedData.from_indices(digits.x_train, digits.y_train, digits.x_test, digits.y_test,
                                      client_indices=clients, num_classes=10, groups=None,
                                      device=torch.device("cpu"), transfer_indices=proxy)


def run(method, data, **federation):
    return run_federation(method, data, RunSetup({**FEDERATION, **federation}, "mlp", 0, torch.device("cpu")))


class OneClassFromRound2(Method):
    """FedAvg whose server, from round 2, sets the head to always answer class 3."""

    def server_update(self, ctx, uploads, averaged):
        if ctx.round >= 2:
            views = ctx.views(averaged, prefix="head.")
            views["head.weight"].zero_()
            views["head.bias"].copy_(torch.eye(ctx.num_classes)[3] * 5)
        return ServerUpdate(averaged)


class NaNDeployedFromRound2(Method):
    """FedAvg that deploys (evaluates) a copy of the global model with one NaN weight from round 2, and
    broadcasts the finite global model."""

    def server_update(self, ctx, uploads, averaged):
        if ctx.round < 2:
            return ServerUpdate(averaged)
        deployed = averaged.clone()
        deployed[0] = float("nan")
        return ServerUpdate(averaged, deployed=deployed)


def test_a_model_forced_to_one_class_from_round_2_is_flagged_collapsed_from_round_2(federation):
    result = run(OneClassFromRound2({}), federation, rounds=4)
    flags = failure_flags(result.history, result.diverged)
    assert flags["collapsed"] == {"round": 2, "step": "server", "top_class_share": 1.0} and flags["diverged"] is None
    assert flags["transient_collapses"] == []
    assert [r["predicted_classes"] for r in result.history][1:] == [1, 1, 1]
    assert result.history[1][diag_key("server", "top_class_share")] == 1.0
    healthy = run(Method({}), federation, rounds=4)
    assert failure_flags(healthy.history, healthy.diverged) == {"collapsed": None, "diverged": None,
                                                                 "transient_collapses": []}
    assert healthy.history[-1]["predicted_classes"] >= 5


def test_a_nan_in_the_deployed_model_is_flagged_diverged_and_the_run_finishes(federation):
    result = run(NaNDeployedFromRound2({}), federation, rounds=4)
    assert result.diverged == {"round": 2, "step": "server", "what": "the model after the server's step"}
    assert [r["round"] for r in result.history] == [1, 2, 3, 4]  # frozen, not stopped: the curve is whole
    for record in result.history[1:]:  # scored as the uniform prediction: finite, chance level
        assert record["balanced_accuracy"] == pytest.approx(0.1) and record["nll"] == pytest.approx(math.log(10))
    assert result.totals.local_steps == run(Method({}), federation, rounds=2).totals.local_steps
    flags = failure_flags(result.history, result.diverged)
    assert flags["diverged"]["round"] == 2 and describe(flags).startswith("diverged at round 2 (server)")


def test_diagnostics_cover_every_stage_and_change_no_result(federation):
    result = run(get_method("fedakd")(validate_method_options("fedakd", {"distill_steps": 5})), federation)
    record = result.history[-1]
    for stage in ("local_min", "local_mean", "local_max", "averaged", "server"):
        assert 0 <= record[diag_key(stage, "dead_units")] <= 1
        assert 0 < record[diag_key(stage, "attention_entropy")] <= math.log(64) + 1e-9
    assert record[diag_key("local_min", "attention_max")] <= record[diag_key("local_max", "attention_max")]


# -- the residual attention form --------------------------------------------------------------------------
def test_residual_attention_is_a_times_f_plus_f():
    torch.manual_seed(0)
    layer = FeatureAttention(4, "residual")
    f = torch.tensor([[1.0, 2.0, 0.0, 4.0]])
    h, a = layer(f)  # W = 0: a = 1/4 everywhere, h = f/4 + f
    assert torch.equal(a, torch.full((1, 4), 0.25)) and torch.allclose(h, 1.25 * f)
    with torch.no_grad():
        layer.weight.weight.copy_(torch.randn(4, 4))
    h, a = layer(f)
    expected_a = torch.softmax(f @ layer.weight.weight.T, dim=-1)
    assert torch.allclose(a, expected_a) and torch.allclose(h, expected_a * f + f)
    scaled = FeatureAttention(4)
    with torch.no_grad():
        scaled.weight.weight.copy_(layer.weight.weight)
    assert torch.allclose(scaled(f)[0], 4 * expected_a * f)  # the paper's form, d * a * f
    with pytest.raises(ValueError, match="attention form"):
        FeatureAttention(4, "gated")


def test_residual_fedakd_builds_the_residual_model_and_trains(federation):
    method = get_method("fedakd")(validate_method_options("fedakd", {"attention_form": "residual",
                                                                     "distill_steps": 5}))
    model = build_model("mlp", in_shape=(1, 8, 8), num_classes=10, **method.model_options())
    assert model.attention.form == "residual"
    result = run(method, federation)
    assert result.history[-1]["balanced_accuracy"] > 0.3 and result.diverged is None
    with pytest.raises(ConfigError, match="attention_form applies to attention: true"):
        validate_method_options("fedakd", {"attention": False, "attention_form": "residual"})


# -- FedDF's guard --------------------------------------------------------------------------------------
def test_held_out_transfer_keeps_every_class_in_both_parts():
    labels = torch.tensor([0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 2, 2])
    train, held = held_out_transfer(labels, 0.2)  # ceil(0.2 * 5) = 1 of classes 0, 1; ceil(0.2 * 2) = 1 of class 2
    assert held.tolist() == [0, 5, 10] and sorted(train.tolist() + held.tolist()) == list(range(12))


def test_feddf_guard_keeps_the_averaged_model_bit_for_bit_when_the_teachers_are_worse(federation, monkeypatch):
    def wrong_teachers(ctx, uploads, with_attention):  # every teacher sure of the wrong class (y + 1) mod C
        wrong = torch.nn.functional.one_hot((ctx.transfer_y + 1) % ctx.num_classes, ctx.num_classes).float() * 20
        return wrong.expand(len(uploads), -1, -1), None

    monkeypatch.setattr(feddf_module, "teacher_outputs", wrong_teachers)
    options = {"distill_steps": 60, "validate_every": 20, "patience": 40}
    guarded = run(get_method("feddf")(validate_method_options("feddf", options)), federation)
    fedavg = run(Method({}), federation)
    assert torch.equal(guarded.final_weights, fedavg.final_weights)
    assert [r["server/kept_average"] for r in guarded.history] == [1.0, 1.0, 1.0]
    unguarded = run(get_method("feddf")(validate_method_options("feddf", {**options, "keep_average": False})),
                    federation)
    assert not torch.equal(unguarded.final_weights, fedavg.final_weights)


def test_feddf_parity_is_the_fixed_step_form(federation):
    parity = {"distill_steps": 7, "validation": "none", "patience": 0, "keep_average": False, "schedule": "constant",
              "grad_clip": 0}
    result = run(get_method("feddf")(validate_method_options("feddf", parity)), federation)
    assert result.totals.server_steps == 3 * 7 and "server/kept_average" not in result.history[-1]
    early = run(get_method("feddf")(validate_method_options("feddf", {"distill_steps": 400, "validate_every": 10,
                                                                      "patience": 10})), federation)
    assert early.totals.server_steps < 3 * 400  # early stopping took fewer steps than the cap


def test_guard_options_that_need_validation_are_refused_naming_the_key():
    with pytest.raises(ConfigError, match="patience needs validation"):
        validate_method_options("feddf", {"validation": "none"})  # the default patience is 2000
    with pytest.raises(ConfigError, match="keep_average needs validation"):
        validate_method_options("fedakd", {"keep_average": True})
    import yaml

    config = yaml.safe_load((ROOT / "config" / "smoke.yaml").read_text())
    config = apply_overrides(config, ["methods.feddf.validation=validation"])
    with pytest.raises(ConfigError, match="validation_per_class"):
        validate_config(config)


# -- tuning counts a failed candidate as a failure --------------------------------------------------------
def test_a_candidate_with_a_failed_run_loses_to_every_healthy_one():
    scores = [[0.9, 0.9], [0.5, 0.6], [0.7, 0.2]]
    assert select(scores) == 0
    assert select(scores, [[False, True], [False, False], [False, False]]) == 1
    assert select(scores, [[True, False], [True, False], [False, True]]) == 0  # all failed: the highest mean
    record = selection_record(dataset="d", setting="s", method="m", candidates=[{}, {}, {}], scores=scores,
                              seeds=[100, 101], metric="val_balanced_accuracy", budget=3,
                              failed=[[False, True], [False, False], [False, False]])
    assert record["chosen"]["index"] == 1 and record["candidates"][0]["failed_seeds"] == [101]
