"""The federated simulation engine: one flat loop that runs every method (METHOD.md §3).

Each round the server samples clients, sends the global weights, each sampled client trains
locally and uploads its weights and example count, the server aggregates, may train further
(distillation, classifier re-training), and the global model is evaluated. ``run_federation``
is that loop, step by step; a method changes only its hooks (fedakd.method.Method) and the
engine knows none by name.

Why it is fast: all data are tensors already on the device, batches are fetched by indexing
them, one model object serves every client (weights are loaded into one flat parameter buffer,
never deep-copied), aggregation is arithmetic over flat vectors, and the step loop never
synchronises with the host.

Why it is reproducible: every random stream is derived from (seed, round, purpose, client)
(fedakd.seeding), so a run resumed from its checkpoint after round r draws exactly what an
uninterrupted run draws, and every method sees the same client sampling and the same initial
weights for a given seed.

What it counts (the cost table): local SGD steps, server optimisation steps, and bytes sent
down and up -- the weights each way per sampled client plus every extra upload a method makes
(``Upload.extras``, ``RoundContext.client_pass``).
"""

from __future__ import annotations

import math
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from fedakd.io import atomic_path
from fedakd.optim import SGD
from fedakd.seeding import derive_seed, torch_generator

#: Distinct tags for the engine's random streams derived from the seed.
STREAM_INIT, STREAM_SAMPLE, STREAM_LOCAL, STREAM_SERVER = 11, 23, 37, 53
#: Prefix of the validation-set metrics in a round's record (the test-set metrics have none).
VALIDATION_PREFIX = "val_"


# -- what clients hold and send ---------------------------------------------------------------
@dataclass
class ClientData:
    """One client's training data, resident on the device."""

    client_id: int
    x: torch.Tensor
    y: torch.Tensor
    num_examples: int  # reported to the server for weighting (the client's own data, before augmentation)
    class_counts: torch.Tensor  # (C,) counts of the client's own data


@dataclass
class Upload:
    """What a client sends back: weights (flat), its example count and class counts, and any extra tensors."""

    client_id: int
    weights: torch.Tensor
    num_examples: int
    class_counts: torch.Tensor
    extras: dict[str, torch.Tensor] = field(default_factory=dict)  # e.g. feature statistics; counted in bytes up

    @property
    def nbytes(self) -> int:
        return tensor_bytes([self.weights, *self.extras.values()])


def tensor_bytes(tensors) -> int:
    """Bytes a list of tensors takes on the wire (their element count x element size)."""
    return sum(t.numel() * t.element_size() for t in tensors)


@dataclass
class FederatedData:
    """Everything a federation trains and evaluates on, resident on the device."""

    clients: list[ClientData]
    test_x: torch.Tensor
    test_y: np.ndarray  # labels on the host: metrics are computed there
    num_classes: int
    groups: dict[str, list[int]] | None  # head/medium/tail/minority classes (METHOD.md §1)
    proxy_x: torch.Tensor | None = None  # the server's labelled transfer set
    proxy_y: torch.Tensor | None = None
    validation_x: torch.Tensor | None = None  # held out from the pool for tuning (never the test set)
    validation_y: np.ndarray | None = None

    @classmethod
    def from_indices(cls, x_train: torch.Tensor, y_train: torch.Tensor, x_test: torch.Tensor, y_test: torch.Tensor, *,
                     client_indices: Sequence, num_classes: int, groups: dict[str, list[int]] | None,
                     device: torch.device, proxy_indices=None, validation_indices=None) -> "FederatedData":
        """Slice a dataset by a partition's index lists and move each part to ``device`` once."""

        def take(indices):
            index = torch.as_tensor(np.asarray(indices, dtype=np.int64))
            return x_train[index].to(device), y_train[index]

        clients = []
        for k, indices in enumerate(client_indices):
            x, y = take(indices)
            clients.append(ClientData(k, x, y.to(device), int(y.numel()), torch.bincount(y, minlength=num_classes)))
        data = cls(clients, x_test.to(device), y_test.cpu().numpy(), num_classes, groups)
        if proxy_indices is not None and len(proxy_indices):
            data.proxy_x, proxy_y = take(proxy_indices)
            data.proxy_y = proxy_y.to(device)
        if validation_indices is not None and len(validation_indices):
            data.validation_x, validation_y = take(validation_indices)
            data.validation_y = validation_y.numpy()
        return data


@dataclass(frozen=True)
class RunSetup:
    """The protocol every method shares in one job: federation settings, model, seed and device."""

    federation: Mapping[str, Any]  # rounds, fraction, local_epochs, batch_size, lr, momentum, weight_decay, eval_every
    backbone: str
    seed: int
    device: torch.device
    amp: bool = False


# -- flat weights -----------------------------------------------------------------------------
def flatten_parameters(model: torch.nn.Module) -> torch.Tensor:
    """Re-home every parameter (and floating buffer) of ``model`` in one flat tensor.

    Returns the flat tensor; the module's tensors become views into it, so
    ``flat.copy_(w)`` loads weights and ``flat.clone()`` snapshots them.
    """
    slots = []
    for module in model.modules():
        for name, param in module.named_parameters(recurse=False):
            slots.append((module, name, param, True))
        for name, buf in module.named_buffers(recurse=False):
            if buf is not None and buf.is_floating_point():
                slots.append((module, name, buf, False))
    flat = torch.cat([t.detach().reshape(-1) for *_, t, _ in slots]).clone()
    offset = 0
    for module, name, tensor, is_param in slots:
        n = tensor.numel()
        view = flat[offset : offset + n].view_as(tensor)
        if is_param:
            tensor.data = view
        else:
            module._buffers[name] = view
        offset += n
    return flat


def flat_layout(model: torch.nn.Module, flat: torch.Tensor) -> dict[str, tuple[int, torch.Size]]:
    """Name -> (offset, shape) of each parameter of ``model`` inside its flat buffer (flatten_parameters)."""
    base, size = flat.data_ptr(), flat.element_size()
    return {name: ((param.data_ptr() - base) // size, param.shape) for name, param in model.named_parameters()}


def weighted_average(weights: list[torch.Tensor], counts: list[int]) -> torch.Tensor:
    """Sum_k n_k w_k / Sum_k n_k, accumulated in float64 for stability."""
    if not weights:
        raise ValueError("cannot average zero uploads")
    total = float(sum(counts))
    if total <= 0:
        raise ValueError(f"example counts must sum to a positive number, got {counts}")
    out = torch.zeros_like(weights[0], dtype=torch.float64)
    for w, n in zip(weights, counts):
        out.add_(w.to(torch.float64), alpha=n / total)
    return out.to(weights[0].dtype)


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
    rng = np.random.default_rng(derive_seed(seed, STREAM_SAMPLE, round_idx))
    return sorted(rng.choice(num_clients, size=m, replace=False).tolist())


def predict_logits(model: torch.nn.Module, x: torch.Tensor, batch_size: int = 1024, with_attention: bool = False):
    """Logits (and attention, if asked) of ``model`` on ``x`` in large batches, in eval mode."""
    was_training = model.training
    model.eval()
    logits, attn = [], []
    with torch.no_grad():
        for start in range(0, x.shape[0], batch_size):
            out, a = model.forward_features(x[start : start + batch_size])
            logits.append(out)
            if with_attention:
                attn.append(a)
    model.train(was_training)
    if with_attention:
        return torch.cat(logits), torch.cat(attn)
    return torch.cat(logits)


LossFn = Callable[[torch.nn.Module, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


# -- what a method's hooks see ----------------------------------------------------------------
@dataclass
class RoundContext:
    """One round as the hooks see it: the models, the global weights, this round's clients, and counters."""

    round: int
    seed: int
    federation: Mapping[str, Any]
    device: torch.device
    model: torch.nn.Module  # the working model; its parameters are views of ``flat``
    flat: torch.Tensor
    spare: torch.nn.Module  # a second model object (teachers, frozen global models), with its own flat buffer
    spare_flat: torch.Tensor
    global_weights: torch.Tensor
    num_classes: int
    clients: list[ClientData] = field(default_factory=list)  # this round's sampled clients
    proxy_x: torch.Tensor | None = None
    proxy_y: torch.Tensor | None = None
    validation_x: torch.Tensor | None = None  # the held-out validation split (labelled server data, never test)
    validation_y: np.ndarray | None = None
    amp: bool = False
    #: What the server evaluates and deploys, when it is not the weights it broadcasts (CReFF, CCVR).
    eval_weights: torch.Tensor | None = None
    local_steps: int = 0
    server_steps: int = 0
    extra_bytes_down: int = 0
    extra_bytes_up: int = 0
    losses: dict[str, list[torch.Tensor]] = field(default_factory=dict)  # name -> per-client mean losses
    notes: dict[str, float] = field(default_factory=dict)  # what a server step reports into the round's record

    def generator(self, *parts: int) -> torch.Generator:
        return torch_generator(self.seed, self.round, *parts)

    def autocast(self):
        """bfloat16 autocast on CUDA when ``amp: true``; a no-op on the CPU."""
        if self.amp and self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return nullcontext()

    def views(self, flat: torch.Tensor, prefix: str = "") -> dict[str, torch.Tensor]:
        """Parameter name -> the view of ``flat`` (any weight vector of this model) that holds it."""
        return {name: flat[offset : offset + math.prod(shape)].view(shape)
                for name, (offset, shape) in flat_layout(self.model, self.flat).items() if name.startswith(prefix)}

    def count_server_steps(self, steps: int) -> None:
        self.server_steps += steps

    def local_sgd(self, client: ClientData, loss_fn: LossFn | None = None, tag: int = 0,
                  loss_name: str = "train_loss") -> Upload:
        """E local epochs of SGD from the global weights on the client's data.

        ``loss_fn(model, xb, yb, idx)`` replaces cross-entropy (``idx`` indexes the
        client's data, e.g. to look up precomputed teacher logits); the mean loss is
        recorded under ``loss_name``.
        """
        fed = self.federation
        self.flat.copy_(self.global_weights)
        model = self.model
        model.train()
        optimizer = SGD(model.parameters(), lr=fed["lr"], momentum=fed["momentum"], weight_decay=fed["weight_decay"])
        generator = self.generator(STREAM_LOCAL, client.client_id, tag)
        n, batch_size = client.x.shape[0], fed["batch_size"]
        loss_sum = torch.zeros((), device=self.device)
        for _ in range(fed["local_epochs"]):
            order = torch.randperm(n, generator=generator).to(self.device, non_blocking=True)
            for start in range(0, n, batch_size):
                idx = order[start : start + batch_size]
                xb, yb = client.x[idx], client.y[idx]
                with self.autocast():
                    loss = F.cross_entropy(model(xb), yb) if loss_fn is None else loss_fn(model, xb, yb, idx)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                loss_sum += loss.detach()
        steps = fed["local_epochs"] * -(-n // batch_size)
        self.local_steps += steps
        self.losses.setdefault(loss_name, []).append(loss_sum / max(steps, 1))
        return Upload(client.client_id, self.flat.clone(), client.num_examples, client.class_counts)

    def client_pass(self, compute: Callable[["RoundContext", ClientData], dict[str, torch.Tensor]],
                    weights: torch.Tensor | None = None) -> list[tuple[ClientData, dict[str, torch.Tensor]]]:
        """A further exchange with this round's clients: the server sends ``weights`` (default: the
        global ones), each client returns ``compute(ctx, client)`` computed on its own data with
        ``ctx.model`` holding those weights. Both directions are counted in the bytes."""
        weights = self.global_weights if weights is None else weights
        results = []
        for client in self.clients:
            self.flat.copy_(weights)
            answer = compute(self, client)
            self.extra_bytes_down += tensor_bytes([weights])
            self.extra_bytes_up += tensor_bytes(answer.values())
            results.append((client, answer))
        return results


# -- callbacks and checkpoints ----------------------------------------------------------------
class Callback:
    """Notified by ``run_federation``; override what you need (tracking, progress, benchmark timers)."""

    def on_resume(self, history: list[dict[str, Any]], timings: list[dict[str, float]]) -> None:
        """Once, when a run resumes from its checkpoint, with the rounds already done and their timings."""

    def on_round_start(self, round_idx: int) -> None:
        """Before a round's first local step."""

    def on_round_end(self, record: dict[str, Any], timing: dict[str, float]) -> None:
        """After a round has been evaluated (if due) and checkpointed."""


@dataclass(frozen=True)
class Checkpoint:
    """Where a run saves itself after every round, and what identifies it (checked on resume)."""

    path: Path
    identity: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class Totals:
    """Cumulative cost of a run (METHOD.md §3, compute parity)."""

    bytes_down: int = 0
    bytes_up: int = 0
    local_steps: int = 0
    server_steps: int = 0


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


class DeviceError(RuntimeError):
    """The config asks for a device this machine does not have."""


class CheckpointError(RuntimeError):
    """A job's checkpoint cannot be resumed from (damaged, or written by another job)."""


def resolve_device(requested: str) -> torch.device:
    """``auto`` -> CUDA when present, else CPU; ``cuda`` without a GPU is an error."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise DeviceError("device: cuda was requested but torch sees no CUDA device; use device: auto or cpu")
    return torch.device(requested)


@dataclass
class _Server:
    """The state that carries from round to round (and into a checkpoint)."""

    model: torch.nn.Module
    flat: torch.Tensor
    spare: torch.nn.Module
    spare_flat: torch.Tensor
    global_weights: torch.Tensor
    eval_weights: torch.Tensor | None = None
    round: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    timings: list[dict[str, float]] = field(default_factory=list)
    totals: Totals = field(default_factory=Totals)
    diverged: dict[str, Any] | None = None  # where a non-finite weight or loss first appeared


def _build_server(method, data: FederatedData, setup: RunSetup) -> _Server:
    from fedakd.models import build_model

    torch.manual_seed(derive_seed(setup.seed, STREAM_INIT))
    in_shape = tuple(data.test_x.shape[1:])
    model, spare = (build_model(setup.backbone, in_shape=in_shape, num_classes=data.num_classes,
                                **method.model_options()).to(setup.device) for _ in range(2))
    flat, spare_flat = flatten_parameters(model), flatten_parameters(spare)
    return _Server(model, flat, spare, spare_flat, global_weights=flat.clone())


def save_checkpoint(checkpoint: Checkpoint, server: _Server, method) -> None:
    state = {
        "round": server.round, "global_weights": server.global_weights.cpu(),
        "eval_weights": None if server.eval_weights is None else server.eval_weights.cpu(),
        "history": server.history, "timings": server.timings,
        "bytes_down": server.totals.bytes_down, "bytes_up": server.totals.bytes_up,
        "local_steps": server.totals.local_steps, "server_steps": server.totals.server_steps,
        "method_state": method.state_dict(), "extra": dict(checkpoint.identity), "diverged": server.diverged,
    }
    with atomic_path(checkpoint.path) as tmp:
        torch.save(state, tmp)


def restore_checkpoint(checkpoint: Checkpoint, server: _Server, method, device: torch.device) -> bool:
    """Load a saved round into ``server`` and ``method``; False when there is none to load."""
    if not checkpoint.path.exists():
        return False
    try:
        state = torch.load(checkpoint.path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated or foreign file: zip, unpickling and EOF errors alike
        reason = str(exc).split(". ")[0] or "damaged"  # torch's zip reader adds a paragraph of advice
        raise CheckpointError(f"checkpoint {checkpoint.path} cannot be read ({type(exc).__name__}: {reason}); "
                              f"delete it to start this job afresh") from None
    if not isinstance(state, dict) or state.get("extra") != dict(checkpoint.identity):
        raise CheckpointError(f"checkpoint {checkpoint.path} belongs to a different job or configuration; "
                              f"delete it to start this job afresh")
    server.global_weights.copy_(state["global_weights"].to(device))
    if state.get("eval_weights") is not None:
        server.eval_weights = state["eval_weights"].to(device)
    server.round, server.history, server.timings = state["round"], state["history"], state["timings"]
    server.totals = Totals(state["bytes_down"], state["bytes_up"], state.get("local_steps", 0),
                           state.get("server_steps", 0))
    server.diverged = state.get("diverged")
    method.load_state_dict(state.get("method_state") or {}, device)
    return True


# -- the steps of a round ---------------------------------------------------------------------
def evaluate(server: _Server, x: torch.Tensor, y: np.ndarray, data: FederatedData) -> tuple[dict[str, Any], np.ndarray]:
    """Metrics (METHOD.md §4) of the deployed model on (x, y), and its predicted classes."""
    from fedakd.metrics import evaluate_predictions

    server.flat.copy_(server.global_weights if server.eval_weights is None else server.eval_weights)
    probs = torch.softmax(predict_logits(server.model, x).float(), dim=1)
    # A diverged model's non-finite outputs carry no information: scored as the uniform prediction
    # (class 0 by argmax, NLL ln C), so that the run keeps finite scores and stays in the statistics.
    broken = ~torch.isfinite(probs).all(dim=1)
    if bool(broken.any()):
        probs[broken] = 1.0 / data.num_classes
    probs = probs.cpu().numpy()
    return evaluate_predictions(y, probs, data.num_classes, data.groups), probs.argmax(axis=1)


def _round_record(server: _Server, ctx: RoundContext) -> dict[str, Any]:
    record: dict[str, Any] = {"round": ctx.round, "bytes_down": server.totals.bytes_down,
                              "bytes_up": server.totals.bytes_up, "local_steps": server.totals.local_steps,
                              "server_steps": server.totals.server_steps,
                              "train_loss": None}
    for name, values in ctx.losses.items():
        record[name] = float(torch.stack(values).mean())
    record.update(ctx.notes)
    return record


def _account(server: _Server, ctx: RoundContext, uploads: list[Upload], payload: int) -> None:
    totals = server.totals
    totals.bytes_down += payload * len(ctx.clients) + ctx.extra_bytes_down
    totals.bytes_up += sum(upload.nbytes for upload in uploads) + ctx.extra_bytes_up
    totals.local_steps += ctx.local_steps
    totals.server_steps += ctx.server_steps


def _sample(server: _Server, clients: list[ClientData], data: FederatedData, setup: RunSetup,
            r: int) -> RoundContext:
    """Round r's context: the sampled clients and what the server holds at the start of the round."""
    sampled = [clients[k] for k in sample_clients(len(clients), setup.federation["fraction"], setup.seed, r)]
    return RoundContext(round=r, seed=setup.seed, federation=setup.federation, device=setup.device,
                        model=server.model, flat=server.flat, spare=server.spare, spare_flat=server.spare_flat,
                        global_weights=server.global_weights, num_classes=data.num_classes, clients=sampled,
                        proxy_x=data.proxy_x, proxy_y=data.proxy_y, validation_x=data.validation_x,
                        validation_y=data.validation_y, amp=setup.amp)


def _finite(tensor: torch.Tensor | None) -> bool:
    return tensor is None or bool(torch.isfinite(tensor).all())


def _aggregate_and_update(method, server: _Server, ctx: RoundContext, uploads: list[Upload],
                          keep_average: bool) -> torch.Tensor | None:
    """The method's aggregation and server step. Returns the average of the uploads when ``keep_average``
    (for the round's diagnostics). A non-finite weight or loss in the models of the round sets
    ``server.diverged`` to where it first appeared (local, averaged, server); training stops there."""
    averaged = ctx.global_weights = method.aggregate(ctx, uploads)
    averaged_finite = _finite(averaged)
    kept = averaged.clone() if keep_average else None
    method.server_update(ctx, uploads)
    server.global_weights, server.eval_weights = ctx.global_weights, ctx.eval_weights
    local_loss_finite = all(bool(torch.isfinite(torch.stack(values)).all()) for values in ctx.losses.values())
    if averaged_finite and local_loss_finite and _finite(server.global_weights) and _finite(server.eval_weights):
        return kept
    if not local_loss_finite or not all(_finite(upload.weights) for upload in uploads):
        step, what = "local", "a client's loss or uploaded weights"
    elif not averaged_finite:
        step, what = "averaged", "the average of the uploads"
    else:
        step, what = "server", "the model after the server's step"
    server.diverged = {"round": ctx.round, "step": step, "what": what}
    return kept


def _diagnose(server: _Server, data: FederatedData, probe_x: torch.Tensor, uploads: list[Upload],
              averaged: torch.Tensor | None) -> dict[str, float]:
    """The round's ``diag/...`` keys (fedakd.diagnostics) from the uploads, their average and the deployed model."""
    from fedakd.diagnostics import model_diagnostics, stage_record

    def measure(weights):
        return model_diagnostics(server.spare, server.spare_flat, weights, probe_x, data.num_classes)

    deployed = server.global_weights if server.eval_weights is None else server.eval_weights
    local = [measure(upload.weights) for upload in uploads]
    averaged_values = measure(averaged) if averaged is not None else None
    server_values = (averaged_values if averaged is not None and torch.equal(averaged, deployed)
                     else measure(deployed))
    return stage_record(local, averaged_values, server_values)


def _evaluate_round(server: _Server, data: FederatedData, record: dict[str, Any]) -> np.ndarray:
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


def _notify(callbacks: Sequence[Callback], event: str, *args) -> None:
    for callback in callbacks:
        getattr(callback, event)(*args)


def run_federation(method, data: FederatedData, setup: RunSetup, *, checkpoint: Checkpoint | None = None,
                   callbacks: Sequence[Callback] = ()) -> FederationResult:
    """Run ``setup.federation['rounds']`` rounds of ``method``; resume from ``checkpoint`` if one was saved."""
    server = _build_server(method, data, setup)
    clients, counters = method.prepare_clients(data.clients, setup.seed)
    if checkpoint is not None and restore_checkpoint(checkpoint, server, method, setup.device):
        _notify(callbacks, "on_resume", server.history, server.timings)

    rounds, eval_every = setup.federation["rounds"], setup.federation["eval_every"]
    payload = tensor_bytes([server.flat])
    sync = torch.cuda.synchronize if setup.device.type == "cuda" else (lambda: None)
    from fedakd.diagnostics import probe_indices

    probe_x = data.test_x[torch.as_tensor(probe_indices(data.test_x.shape[0]), device=data.test_x.device)]
    predictions = None  # the last evaluation's predicted classes, kept for the final model's artifacts
    for r in range(server.round + 1, rounds + 1):
        _notify(callbacks, "on_round_start", r)
        due = r % eval_every == 0 or r == rounds
        t0 = time.perf_counter()
        if server.diverged is not None:  # a diverged model is frozen: its scores repeat, nothing trains
            record = {**server.history[-1], "round": r}  # the diverged round was evaluated
            if due:
                server.history.append(record)
            timing = {"round": r, "client_seconds": 0.0, "server_seconds": 0.0, "eval_seconds": 0.0}
        else:
            ctx = _sample(server, clients, data, setup, r)
            uploads = [method.client_update(ctx, client) for client in ctx.clients]
            sync()
            t1 = time.perf_counter()
            averaged = _aggregate_and_update(method, server, ctx, uploads, keep_average=due)
            sync()
            t2 = time.perf_counter()
            _account(server, ctx, uploads, payload)
            record = _round_record(server, ctx)
            if due or server.diverged is not None:
                record.update(_diagnose(server, data, probe_x, uploads, averaged))
                t3 = time.perf_counter()
                predictions = _evaluate_round(server, data, record)
            else:
                t3 = t2
            timing = {"round": r, "client_seconds": t1 - t0, "server_seconds": t2 - t1,
                      "diagnostics_seconds": t3 - t2, "eval_seconds": time.perf_counter() - t3}
        server.timings.append(timing)
        server.round = r
        if checkpoint is not None:
            save_checkpoint(checkpoint, server, method)
        _notify(callbacks, "on_round_end", record, timing)

    if predictions is None:  # resumed after the last round: the loop evaluated nothing
        _, predictions = evaluate(server, data.test_x, data.test_y, data)
    deployed = server.global_weights if server.eval_weights is None else server.eval_weights
    return FederationResult(server.history, server.timings, counters, server.flat.numel(), deployed.cpu(),
                            predictions, server.totals, clients_per_round(len(clients), setup.federation["fraction"]),
                            server.diverged)
