"""The federated simulation engine: one flat loop that runs every method.

Each round the server samples clients, sends the global weights, each sampled
client trains locally, uploads weights and its example count, and the server
aggregates. Methods change only hooks (fedakd.method.Method); the engine knows
none by name.

Why it is fast: all data are tensors already on the device, batches are fetched
by indexing them, one model object serves every client (weights are loaded into
one flat parameter buffer, never deep-copied), aggregation is arithmetic over
flat vectors, and the step loop never synchronises with the host.

Why it is reproducible: every random stream is derived from (seed, round,
purpose, client), so a run resumed from its checkpoint after round r draws
exactly what an uninterrupted run draws, and every method sees the same client
sampling and the same initial weights for a given seed.
"""

from __future__ import annotations

import os
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from fedakd.io import atomic_path

#: Distinct tags for the random streams derived from the seed.
STREAM_INIT, STREAM_SAMPLE, STREAM_LOCAL, STREAM_SERVER = 11, 23, 37, 53


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
    """What a client sends back: weights (flat) and its example count."""

    client_id: int
    weights: torch.Tensor
    num_examples: int
    class_counts: torch.Tensor


def derive_seed(*parts: int) -> int:
    """A 63-bit seed from integer parts; stable across processes and platforms.

    The number of parts is mixed in because SeedSequence ignores trailing zeros:
    (1, 2) and (1, 2, 0) must give different streams.
    """
    return int(np.random.SeedSequence([len(parts), *(int(p) for p in parts)]).generate_state(2, dtype=np.uint32).view(np.uint64)[0] >> 1)


def make_generator(*parts: int) -> torch.Generator:
    generator = torch.Generator()  # CPU: index permutations are drawn on the host, then moved
    generator.manual_seed(derive_seed(*parts))
    return generator


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


def sample_clients(num_clients: int, fraction: float, seed: int, round_idx: int) -> list[int]:
    """Seeded client sampling: the same clients for every method in a round."""
    m = max(1, int(round(fraction * num_clients)))
    if m >= num_clients:
        return list(range(num_clients))
    rng = np.random.default_rng(derive_seed(seed, STREAM_SAMPLE, round_idx))
    return sorted(rng.choice(num_clients, size=m, replace=False).tolist())


def predict_logits(model: torch.nn.Module, x: torch.Tensor, batch_size: int = 4096, with_attention: bool = False):
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


def _report_startup() -> None:
    """For benchmarks/bench.py: seconds from FEDAKD_BENCH_T0 (set at launch) to the first local step."""
    t0 = os.environ.get("FEDAKD_BENCH_T0")
    if t0:
        print(f"FEDAKD_STARTUP_SECONDS={time.time() - float(t0):.3f}", file=sys.stderr, flush=True)


LossFn = Callable[[torch.nn.Module, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class RoundContext:
    """What a method's hooks see in one round."""

    round: int
    seed: int
    federation: dict[str, Any]
    device: torch.device
    model: torch.nn.Module  # the working model; its parameters are views of ``flat``
    flat: torch.Tensor
    spare: torch.nn.Module  # a second model object (teachers), with its own flat buffer
    spare_flat: torch.Tensor
    global_weights: torch.Tensor
    num_classes: int
    proxy_x: torch.Tensor | None = None
    proxy_y: torch.Tensor | None = None
    amp: bool = False
    counters: dict[str, float] = field(default_factory=dict)
    train_loss: list[torch.Tensor] = field(default_factory=list)

    def generator(self, *parts: int) -> torch.Generator:
        return make_generator(self.seed, self.round, *parts)

    def autocast(self):
        """bfloat16 autocast on CUDA when ``amp: true``; a no-op on the CPU."""
        if self.amp and self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return nullcontext()

    def local_sgd(self, client: ClientData, loss_fn: LossFn | None = None, tag: int = 0) -> Upload:
        """E local epochs of SGD from the global weights on the client's data.

        ``loss_fn(model, xb, yb, idx)`` replaces cross-entropy (``idx`` indexes the
        client's data, e.g. to look up precomputed teacher logits).
        """
        fed = self.federation
        self.flat.copy_(self.global_weights)
        model = self.model
        model.train()
        optimizer = torch.optim.SGD(
            model.parameters(), lr=fed["lr"], momentum=fed["momentum"], weight_decay=fed["weight_decay"]
        )
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
        self.train_loss.append(loss_sum / max(steps, 1))
        return Upload(client.client_id, self.flat.clone(), client.num_examples, client.class_counts)


def resolve_device(requested: str) -> torch.device:
    """``auto`` -> CUDA when present, else CPU; ``cuda`` without a GPU is an error."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device: cuda was requested but torch sees no CUDA device; use device: auto or cpu")
    return torch.device(requested)


@dataclass
class FederationResult:
    history: list[dict[str, Any]]
    timings: list[dict[str, float]]
    counters: dict[str, float]
    num_params: int
    final_weights: torch.Tensor
    final_predictions: np.ndarray  # the final global model's predicted classes on the test set


def _build_clients(x, y, client_indices, num_classes, device) -> list[ClientData]:
    clients = []
    for k, idx in enumerate(client_indices):
        index = torch.as_tensor(np.asarray(idx, dtype=np.int64))
        cy = y[index]
        clients.append(
            ClientData(
                client_id=k,
                x=x[index].to(device),
                y=cy.to(device),
                num_examples=int(index.numel()),
                class_counts=torch.bincount(cy, minlength=num_classes),
            )
        )
    return clients


def run_federation(
    method,
    *,
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    x_test: torch.Tensor,
    y_test: torch.Tensor,
    client_indices: list,
    proxy_indices,
    num_classes: int,
    groups: dict[str, list[int]] | None,
    federation: dict[str, Any],
    backbone: str,
    seed: int,
    device: torch.device,
    amp: bool = False,
    checkpoint: Path | None = None,
    checkpoint_extra: dict[str, Any] | None = None,
    on_round: Callable[[dict[str, Any], dict[str, float]], None] | None = None,
    on_resume: Callable[[dict[str, Any]], None] | None = None,
    progress=None,
) -> FederationResult:
    """Run ``federation['rounds']`` rounds of ``method``; resume from ``checkpoint`` if it exists.

    ``checkpoint_extra`` is stored in the checkpoint and must match on resume (it
    identifies the job); ``on_round(record, timing)`` is called after every
    round has been checkpointed, ``on_resume(state)`` once when resuming.
    """
    from fedakd.metrics import evaluate_predictions
    from fedakd.models import build_model

    torch.manual_seed(derive_seed(seed, STREAM_INIT))
    model = build_model(backbone, in_shape=tuple(x_train.shape[1:]), num_classes=num_classes, **method.model_options())
    spare = build_model(backbone, in_shape=tuple(x_train.shape[1:]), num_classes=num_classes, **method.model_options())
    model.to(device)
    spare.to(device)
    flat, spare_flat = flatten_parameters(model), flatten_parameters(spare)
    global_weights = flat.clone()

    clients = _build_clients(x_train, y_train, client_indices, num_classes, device)
    counters: dict[str, float] = {}
    prepared = []
    for client in clients:
        client, client_counters = method.prepare_client_data(client, derive_seed(seed, client.client_id))
        for key, value in client_counters.items():
            counters[key] = counters.get(key, 0) + value
        prepared.append(client)
    clients = prepared

    proxy_x = proxy_y = None
    if proxy_indices is not None and len(proxy_indices):
        pidx = torch.as_tensor(np.asarray(proxy_indices, dtype=np.int64))
        proxy_x, proxy_y = x_train[pidx].to(device), y_train[pidx].to(device)
    x_test, y_test_np = x_test.to(device), y_test.cpu().numpy()

    history: list[dict[str, Any]] = []
    timings: list[dict[str, float]] = []
    start_round, bytes_down, bytes_up = 0, 0, 0
    if checkpoint is not None and checkpoint.exists():
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
        if state.get("extra") != (checkpoint_extra or {}):
            raise RuntimeError(
                f"checkpoint {checkpoint} belongs to a different job or configuration; "
                f"delete it to start this job afresh"
            )
        global_weights.copy_(state["global_weights"].to(device))
        start_round, history, timings = state["round"], state["history"], state["timings"]
        bytes_down, bytes_up = state["bytes_down"], state["bytes_up"]
        if on_resume is not None:
            on_resume(state)

    rounds, eval_every = federation["rounds"], federation["eval_every"]
    _report_startup()
    payload = flat.numel() * flat.element_size()
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    predictions = None  # the last evaluation's predicted classes, kept for the final model's artifacts
    for r in range(start_round + 1, rounds + 1):
        ctx = RoundContext(
            round=r, seed=seed, federation=federation, device=device, model=model, flat=flat, spare=spare,
            spare_flat=spare_flat, global_weights=global_weights, num_classes=num_classes,
            proxy_x=proxy_x, proxy_y=proxy_y, amp=amp,
        )
        t0 = time.perf_counter()
        sampled = sample_clients(len(clients), federation["fraction"], seed, r)
        uploads = [method.client_update(ctx, clients[k]) for k in sampled]
        sync()
        t1 = time.perf_counter()
        ctx.global_weights = method.aggregate(ctx, uploads)
        method.server_update(ctx, uploads)
        global_weights = ctx.global_weights
        sync()
        t2 = time.perf_counter()
        bytes_down += payload * len(sampled)
        bytes_up += payload * len(sampled)
        record: dict[str, Any] = {"round": r, "bytes_down": bytes_down, "bytes_up": bytes_up,
                                  "train_loss": float(torch.stack(ctx.train_loss).mean()) if ctx.train_loss else None}
        if r % eval_every == 0 or r == rounds:
            flat.copy_(global_weights)
            probs = torch.softmax(predict_logits(model, x_test).float(), dim=1).cpu().numpy()
            record.update(evaluate_predictions(y_test_np, probs, num_classes, groups))
            predictions = probs.argmax(axis=1)
            history.append(record)
        t3 = time.perf_counter()
        timing = {"round": r, "client_seconds": t1 - t0, "server_seconds": t2 - t1, "eval_seconds": t3 - t2}
        timings.append(timing)
        if checkpoint is not None:
            state = {
                "round": r, "global_weights": global_weights.cpu(), "history": history, "timings": timings,
                "bytes_down": bytes_down, "bytes_up": bytes_up, "extra": checkpoint_extra or {},
            }
            with atomic_path(checkpoint) as tmp:
                torch.save(state, tmp)
        if on_round is not None:
            on_round(record, timing)
        if progress is not None:
            progress(record, timing)

    if predictions is None:  # resumed after the last round: the loop evaluated nothing
        flat.copy_(global_weights)
        predictions = predict_logits(model, x_test).argmax(dim=1).cpu().numpy()
    return FederationResult(history, timings, counters, flat.numel(), global_weights.cpu(), predictions)
