"""The round loop: ``run_federation`` and its named steps (sample, train, aggregate and update, account,
diagnose, evaluate, checkpoint)."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import torch

from fedakd.engine.checkpoint import Checkpoint, ServerState, Totals, restore_checkpoint, save_checkpoint
from fedakd.engine.context import FederatedData, InProcessClients, RoundContext, RunSetup, Upload
from fedakd.engine.weights import flatten_parameters, predict_logits, tensor_bytes
from fedakd.seeding import INIT, SAMPLE, derive_seed

if TYPE_CHECKING:
    from fedakd.method import Method

#: Prefix of the validation-set metrics in a round's record (the test-set metrics have none).
VALIDATION_PREFIX = "val_"


class DeviceError(RuntimeError):
    """The config asks for a device this machine does not have."""


def resolve_device(requested: str) -> torch.device:
    """``auto`` -> CUDA when present, else CPU; ``cuda`` without a GPU is an error."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise DeviceError("device: cuda was requested but torch sees no CUDA device; use device: auto or cpu")
    return torch.device(requested)


def clients_per_round(num_clients: int, fraction: float) -> int:
    """NIID-Bench's int(fraction * K), at least one client.

    Rounded down with a tolerance of 1e-9, so that 0.29 * 100 = 28.999999999999996 counts as 29.
    """
    return max(1, min(num_clients, math.floor(fraction * num_clients + 1e-9)))


def sample_clients(num_clients: int, fraction: float, seed: int, round_idx: int) -> list[int]:
    """Seeded client sampling: the same clients for every method in a round."""
    m = clients_per_round(num_clients, fraction)
    if m >= num_clients:
        return list(range(num_clients))
    rng = np.random.default_rng(derive_seed(seed, SAMPLE, round_idx))
    return sorted(rng.choice(num_clients, size=m, replace=False).tolist())


class Callback:
    """Notified by ``run_federation``; override what you need (tracking, progress, benchmark timers)."""

    def on_resume(self, history: list[dict[str, Any]], timings: list[dict[str, float]]) -> None:
        """Once, when a run resumes from its checkpoint, with the rounds already done and their timings."""

    def on_round_start(self, round_idx: int) -> None:
        """Before a round's first local step."""

    def on_round_end(self, record: dict[str, Any], timing: dict[str, float]) -> None:
        """After a round has been evaluated (if due) and checkpointed."""


@dataclass
class FederationResult:
    history: list[dict[str, Any]]
    timings: list[dict[str, float]]
    counters: dict[str, float]
    num_params: int
    final_weights: torch.Tensor  # of the model the server deploys (evaluated in the last round)
    final_predictions: np.ndarray  # that model's predicted classes on the test set
    totals: Totals
    clients_per_round: int
    diverged: dict[str, Any] | None = None  # round, step and what, when training diverged (fedakd.diagnostics)
    model_options: dict[str, Any] | None = None  # how the model was built (fedakd.models.build_model)


def build_server(method: "Method", data: FederatedData, setup: RunSetup) -> ServerState:
    """The server at round 0: the initial weights of ``setup.seed`` (the same for every method)."""
    from fedakd.models import build_model

    torch.manual_seed(derive_seed(setup.seed, INIT))
    in_shape = tuple(data.test_x.shape[1:])
    model, spare = (build_model(setup.backbone, in_shape=in_shape, num_classes=data.num_classes,
                                **method.model_options()).to(setup.device) for _ in range(2))
    flat, spare_flat = flatten_parameters(model), flatten_parameters(spare)
    return ServerState(model, flat, spare, spare_flat, global_weights=flat.clone())


# -- the steps of a round ---------------------------------------------------------------------
def evaluate(server: ServerState, x: torch.Tensor, y: np.ndarray,
             data: FederatedData) -> tuple[dict[str, Any], np.ndarray]:
    """Metrics (docs/method-card.md §4) of the deployed model on (x, y), and its predicted classes."""
    from fedakd.metrics import evaluate_predictions

    server.flat.copy_(server.deployed)
    probs = torch.softmax(predict_logits(server.model, x).float(), dim=1)
    # A diverged model's non-finite outputs carry no information: scored as the uniform prediction
    # (class 0 by argmax, NLL ln C), so that the run keeps finite scores and stays in the statistics.
    broken = ~torch.isfinite(probs).all(dim=1)
    if bool(broken.any()):
        probs[broken] = 1.0 / data.num_classes
    probs = probs.cpu().numpy()
    return evaluate_predictions(y, probs, data.num_classes, data.groups), probs.argmax(axis=1)


def _sample(server: ServerState, clients, data: FederatedData, setup: RunSetup, r: int, link) -> RoundContext:
    """Round r's context: the sampled clients and what the server holds at the start of the round."""
    sampled = [clients[k] for k in sample_clients(len(clients), setup.federation.fraction, setup.seed, r)]
    return RoundContext(round=r, seed=setup.seed, federation=setup.federation, device=setup.device,
                        model=server.model, flat=server.flat, spare=server.spare, spare_flat=server.spare_flat,
                        global_weights=server.global_weights, num_classes=data.num_classes, clients=sampled,
                        transfer_x=data.transfer_x, transfer_y=data.transfer_y, validation_x=data.validation_x,
                        validation_y=data.validation_y, amp=setup.amp, link=link)


def _finite(tensor: torch.Tensor | None) -> bool:
    return tensor is None or bool(torch.isfinite(tensor).all())


def _aggregate_and_update(method: "Method", server: ServerState, ctx: RoundContext, uploads: list[Upload],
                          keep_average: bool) -> tuple[torch.Tensor | None, dict[str, float]]:
    """The method's aggregation and server step; returns the step's notes and, when ``keep_average``, a copy of
    the average of the uploads taken before the server step (which may work on it in place), for diagnostics.

    A non-finite weight or loss in the models of the round sets ``server.diverged`` to where it first
    appeared (local, averaged, server); training stops there."""
    averaged = method.aggregate(ctx, uploads)
    averaged_finite = _finite(averaged)
    kept = averaged.clone() if keep_average else None
    update = method.server_update(ctx, uploads, averaged)
    server.global_weights, server.deployed_weights = update.weights, update.deployed
    local_loss_finite = all(bool(torch.isfinite(torch.stack(values)).all()) for values in ctx.tally.losses.values())
    if averaged_finite and local_loss_finite and _finite(server.global_weights) and _finite(server.deployed_weights):
        return kept, update.notes
    if not local_loss_finite or not all(_finite(upload.weights) for upload in uploads):
        step, what = "local", "a client's loss or uploaded weights"
    elif not averaged_finite:
        step, what = "averaged", "the average of the uploads"
    else:
        step, what = "server", "the model after the server's step"
    server.diverged = {"round": ctx.round, "step": step, "what": what}
    return kept, update.notes


def _account(server: ServerState, ctx: RoundContext, uploads: list[Upload], payload: int) -> None:
    totals, tally = server.totals, ctx.tally
    totals.bytes_down += payload * len(ctx.clients) + tally.bytes_down
    totals.bytes_up += sum(upload.nbytes for upload in uploads) + tally.bytes_up
    totals.local_steps += tally.local_steps
    totals.server_steps += tally.server_steps


def _round_record(server: ServerState, ctx: RoundContext, notes: dict[str, float]) -> dict[str, Any]:
    record: dict[str, Any] = {"round": ctx.round, "bytes_down": server.totals.bytes_down,
                              "bytes_up": server.totals.bytes_up, "local_steps": server.totals.local_steps,
                              "server_steps": server.totals.server_steps, "train_loss": None}
    for name, values in ctx.tally.losses.items():
        record[name] = float(torch.stack(values).mean())
    record.update(notes)
    return record


def _diagnose(server: ServerState, data: FederatedData, probe_x: torch.Tensor, uploads: list[Upload],
              averaged: torch.Tensor | None) -> dict[str, float]:
    """The round's ``diag/...`` keys (fedakd.diagnostics) from the uploads, their average (when given) and the
    deployed model."""
    from fedakd.diagnostics import model_diagnostics, stage_record

    def measure(weights):
        return model_diagnostics(server.spare, server.spare_flat, weights, probe_x, data.num_classes)

    local = [measure(upload.weights) for upload in uploads]
    averaged_values = measure(averaged) if averaged is not None else None
    server_values = (averaged_values if averaged is not None and torch.equal(averaged, server.deployed)
                     else measure(server.deployed))
    return stage_record(local, averaged_values, server_values)


def _evaluate_round(server: ServerState, data: FederatedData, record: dict[str, Any]) -> np.ndarray:
    """Test metrics (and validation metrics, prefixed, where there is a validation split) into ``record``,
    which joins the history; returns the deployed model's predicted test classes."""
    from fedakd.diagnostics import prediction_summary

    metrics, predictions = evaluate(server, data.test_x, data.test_y, data)
    record.update(metrics)
    record["predicted_classes"], record["top_class_share"] = prediction_summary(predictions, data.num_classes)
    if data.validation_x is not None:
        validation, _ = evaluate(server, data.validation_x, data.validation_y, data)
        record.update({VALIDATION_PREFIX + key: value for key, value in validation.items()})
    server.history.append(record)
    return predictions


def _train_round(method: "Method", server: ServerState, clients, data: FederatedData, setup: RunSetup, r: int,
                 due: bool, probe_x: torch.Tensor, payload: int, link) -> tuple[dict, dict, np.ndarray | None]:
    """One round: sample, local training, aggregation and the server step, accounting, and (when due, or when
    it diverged) diagnostics and evaluation. Returns the record, the timing and the predicted test classes."""
    sync = torch.cuda.synchronize if setup.device.type == "cuda" else (lambda: None)
    t0 = time.perf_counter()
    ctx = _sample(server, clients, data, setup, r, link)
    uploads = link.train(method, ctx)
    sync()
    t1 = time.perf_counter()
    averaged, notes = _aggregate_and_update(method, server, ctx, uploads, keep_average=due)
    sync()
    t2 = time.perf_counter()
    _account(server, ctx, uploads, payload)
    record, predictions = _round_record(server, ctx, notes), None
    if due or server.diverged is not None:
        record.update(_diagnose(server, data, probe_x, uploads, averaged))  # no average between evaluated rounds
        t3 = time.perf_counter()
        predictions = _evaluate_round(server, data, record)
    else:
        t3 = t2
    timing = {"round": r, "client_seconds": t1 - t0, "server_seconds": t2 - t1, "diagnostics_seconds": t3 - t2,
              "eval_seconds": time.perf_counter() - t3}
    return record, timing, predictions


def _frozen_round(server: ServerState, r: int, due: bool) -> tuple[dict, dict]:
    """A round after a divergence: the model is frozen, its scores repeat, nothing trains."""
    record = {**server.history[-1], "round": r}  # the diverged round was evaluated
    if due:
        server.history.append(record)
    return record, {"round": r, "client_seconds": 0.0, "server_seconds": 0.0, "eval_seconds": 0.0}


def _notify(callbacks: Sequence[Callback], event: str, *args) -> None:
    for callback in callbacks:
        getattr(callback, event)(*args)


def run_federation(method: "Method", data: FederatedData, setup: RunSetup, *, checkpoint: Checkpoint | None = None,
                   callbacks: Sequence[Callback] = (), link=None) -> FederationResult:
    """Run ``setup.federation.rounds`` rounds of ``method``; resume from ``checkpoint`` if one was saved.

    ``link`` is how the server reaches the clients: by default every client's data is in ``data``
    (InProcessClients); fedakd.flower passes one that reaches them through Flower's messages, so that the
    same loop, the same server steps and the same accounting run in a real federation."""
    from fedakd.diagnostics import probe_indices

    link = link or InProcessClients()
    server = build_server(method, data, setup)
    clients, counters = link.prepare(method, data.clients, setup.seed)
    if checkpoint is not None and restore_checkpoint(checkpoint, server, method, setup.device):
        _notify(callbacks, "on_resume", server.history, server.timings)
    rounds, eval_every = setup.federation.rounds, setup.federation.eval_every
    payload = tensor_bytes([server.flat])
    probe_x = data.test_x[torch.as_tensor(probe_indices(data.test_x.shape[0]), device=data.test_x.device)]
    predictions = None  # the last evaluation's predicted classes, kept for the final model's artifacts
    for r in range(server.round + 1, rounds + 1):
        _notify(callbacks, "on_round_start", r)
        due = r % eval_every == 0 or r == rounds
        if server.diverged is not None:
            record, timing = _frozen_round(server, r, due)
        else:
            record, timing, evaluated = _train_round(method, server, clients, data, setup, r, due, probe_x, payload,
                                                     link)
            predictions = evaluated if evaluated is not None else predictions
        server.timings.append(timing)
        server.round = r
        if checkpoint is not None:
            save_checkpoint(checkpoint, server, method)
        _notify(callbacks, "on_round_end", record, timing)

    if predictions is None:  # resumed after the last round: the loop evaluated nothing
        _, predictions = evaluate(server, data.test_x, data.test_y, data)
    return FederationResult(server.history, server.timings, counters, server.flat.numel(), server.deployed.cpu(),
                            predictions, server.totals, clients_per_round(len(clients), setup.federation.fraction),
                            server.diverged, method.model_options())
