"""Server-side training of the aggregated model on the transfer set.

With lam > 0 this is FedAKD's distillation (docs/method-card.md §3): the averaged model q
(student) learns L = CE(y, q) + lam * T^2 * mean_k KL(p_k^T || q^T) from the
uploaded client models p_k (teachers). With lam = 0 it is plain fine-tuning
(fedavg-ft), and no teacher is evaluated. FedDF (baselines/feddf.py) takes the
same steps with its own, label-free loss.

torch is imported inside the functions: config validation imports the method
classes (for their option schemas) and must stay cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fedakd.engine import ServerUpdate

DISTILL_OPTIONS = {
    "distill_steps": {"type": "integer", "minimum": 0, "default": 100,
                      "description": "server optimisation steps per round on the transfer set"},
    "distill_lr": {"type": "number", "exclusiveMinimum": 0, "default": 0.001, "description": "Adam learning rate"},
    "distill_batch_size": {"type": "integer", "minimum": 1, "default": 64,
                           "description": "transfer-set examples per server step"},
}


def teacher_outputs(ctx, uploads, with_attention: bool):
    """Logits (K, P, C) and, if asked, attention (K, P, d) of every uploaded model on the transfer set."""
    import torch

    from fedakd.engine import predict_logits

    logits, attention = [], []
    for upload in uploads:
        ctx.spare_flat.copy_(upload.weights)
        out = predict_logits(ctx.spare, ctx.transfer_x, with_attention=with_attention)
        if with_attention:
            out, att = out
            attention.append(att)
        logits.append(out)
    return torch.stack(logits), (torch.stack(attention) if with_attention else None)


#: The validated server step (Lin et al.'s reference code for FedDF; an extension for the other server-side
#: methods): options and their meaning. A method offers them with its own defaults.
GUARD_OPTIONS = {
    "validation": {"enum": ["none", "transfer", "validation"], "default": "none",
                   "description": "labelled server data the server step is validated on: none; transfer (a "
                                  "held-out share of the transfer set, see validation_share); validation (the "
                                  "validation split, federation.validation_per_class > 0)"},
    "validation_share": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1, "default": 0.2,
                         "description": "with validation: transfer, the share of each class of the transfer set "
                                        "held out from the server's training to validate on"},
    "validate_every": {"type": "integer", "minimum": 1, "default": 100,
                       "description": "server steps between validations"},
    "patience": {"type": "integer", "minimum": 0, "default": 0,
                 "description": "stop after this many steps without a better validation score (0: never)"},
    "keep_average": {"type": "boolean", "default": False,
                     "description": "deploy the averaged model when no validated step of the server beats it"},
    "schedule": {"enum": ["constant", "cosine"], "default": "constant",
                 "description": "server learning rate: constant, or cosine-annealed to 0 over distill_steps"},
    "grad_clip": {"type": "number", "minimum": 0, "default": 0.0,
                  "description": "clip the server's gradient to this L2 norm (0: no clipping)"},
}


def guard_problems(options: dict) -> list[str]:
    """Sentences for guard options that need a validation source to mean anything."""
    if options.get("validation", "none") != "none":
        return []
    return [f"{name} needs validation: transfer or validation" for name, value in
            (("patience", options.get("patience", 0)), ("keep_average", options.get("keep_average", False)))
            if value]


def needs_validation_split(options: dict) -> bool:
    return options.get("validation", "none") == "validation"


def held_out_transfer(transfer_y, share: float):
    """(training positions, validation positions) in the transfer set: the first ceil(share * n_c) examples
    of each class c (in transfer-set order) are held out, so both parts keep every class."""
    import math

    import torch

    labels = transfer_y.cpu()
    held = torch.zeros(labels.numel(), dtype=torch.bool)
    for c in labels.unique().tolist():
        where = (labels == c).nonzero().flatten()
        held[where[: math.ceil(share * where.numel())]] = True
    return (~held).nonzero().flatten(), held.nonzero().flatten()


def accuracy(model, x, y) -> float:
    """Accuracy of ``model`` on labelled server data (x, y on the device)."""
    from fedakd.engine import predict_logits

    return float((predict_logits(model, x).argmax(dim=1) == y).double().mean())


def _clip_gradients(params, max_norm: float) -> None:
    """torch.nn.utils.clip_grad_norm_'s rule: scale by max_norm / (norm + 1e-6) when that is below 1."""
    import torch

    grads = [p.grad for p in params if p.grad is not None]
    total = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
    coef = torch.clamp(max_norm / (total + 1e-6), max=1.0)
    for g in grads:
        g.mul_(coef)


def validation_data(ctx, options: dict):
    """(training positions in the transfer set or None for all, validation inputs, labels) of a guarded step,
    or (None, None, None) when it is not validated."""
    source = options.get("validation", "none")
    if source == "none":
        return None, None, None
    if source == "validation":
        if ctx.validation_x is None:  # config validation refuses this; a direct caller of the engine may not
            raise RuntimeError("validation: validation needs a validation split (federation.validation_per_class)")
        import torch

        return None, ctx.validation_x, torch.as_tensor(ctx.validation_y, device=ctx.device)
    train, held = held_out_transfer(ctx.transfer_y, options["validation_share"])
    held = held.to(ctx.device)
    return train.to(ctx.device), ctx.transfer_x[held], ctx.transfer_y[held]


def train_on_transfer_set(ctx, start, *, steps: int, lr: float, batch_size: int, loss_fn,
                          guard: dict | None = None) -> "ServerUpdate":
    """Up to ``steps`` Adam steps from the weights ``start`` over the transfer set's inputs; returns the
    weights the server keeps (and what the guard did, as notes).

    ``loss_fn(logits, attention, idx)`` gives the loss of a batch (``idx`` indexes the transfer set,
    e.g. to look up teachers' outputs). Batches are drawn without replacement from a seeded
    permutation, reshuffled when fewer than a batch remain; every server-side method that trains on
    the transfer set (FedAKD, fedavg-ft, FedDF) takes these same steps, optimiser and batches.

    ``guard`` (GUARD_OPTIONS; None or validation: none leaves them out, except schedule and grad_clip)
    validates the model on labelled server data every ``validate_every`` steps, keeps the best validated
    weights, stops after ``patience`` steps without improvement, and with ``keep_average`` deploys the
    averaged model when it validates better than every validated step (Lin et al.'s FedDF). What the
    guard did is recorded in the round's record (``server/...``).
    """
    import math

    from fedakd.engine import ServerUpdate
    from fedakd.optim import Adam

    guard = guard or {}
    train_positions, val_x, val_y = validation_data(ctx, guard)
    ctx.flat.copy_(start)
    model = ctx.model
    optimizer = Adam(model.parameters(), lr=lr)
    cosine, clip = guard.get("schedule") == "cosine", float(guard.get("grad_clip", 0.0))
    every, patience = guard.get("validate_every", 100), guard.get("patience", 0)
    best = _BestValidated(model, ctx.flat, val_x, val_y)
    model.train()
    taken = 0
    for step, idx in enumerate(_transfer_batches(ctx, train_positions, batch_size, steps), start=1):
        if cosine:  # torch's CosineAnnealingLR(T_max = steps, eta_min = 0), in closed form
            optimizer.lr = lr * (1 + math.cos(math.pi * (step - 1) / steps)) / 2
        with ctx.autocast():
            logits, attention = model.logits_and_attention(ctx.transfer_x[idx])
            loss = loss_fn(logits, attention, idx)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if clip > 0:
            _clip_gradients(optimizer.params, clip)
        optimizer.step()
        taken = step
        if val_x is not None and (step % every == 0 or step == steps) and best.stop_after(step, patience):
            break
    ctx.count(server_steps=taken)
    if val_x is None:
        return ServerUpdate(ctx.flat.clone())
    kept = bool(guard.get("keep_average")) and (best.score is None or best.initial > best.score)
    weights = start if kept else (best.weights if best.weights is not None else ctx.flat.clone())
    return ServerUpdate(weights, notes={"server/steps_taken": taken, "server/val_average": best.initial,
                                        "server/val_best": best.score, "server/kept_average": float(kept)})


def _transfer_batches(ctx, positions, batch_size: int, steps: int):
    """``steps`` batches of transfer-set positions (of ``positions`` when given), drawn without replacement from
    a seeded permutation, reshuffled when fewer than a batch remain."""
    import torch

    from fedakd.seeding import SERVER

    generator = ctx.generator(SERVER)
    n = ctx.transfer_x.shape[0] if positions is None else int(positions.numel())
    order, cursor = torch.randperm(n, generator=generator), 0
    for _ in range(steps):
        if cursor + batch_size > n:  # a fresh pass over the transfer set
            order, cursor = torch.randperm(n, generator=generator), 0
        idx = order[cursor : cursor + batch_size].to(ctx.device)
        cursor += batch_size
        yield idx if positions is None else positions[idx]


class _BestValidated:
    """The guard's memory: the starting model's validation accuracy, and the best validated step's weights."""

    def __init__(self, model, flat, val_x, val_y):
        self.model, self.flat, self.val_x, self.val_y = model, flat, val_x, val_y
        self.initial = accuracy(model, val_x, val_y) if val_x is not None else None
        self.score = self.weights = self.step = None

    def stop_after(self, step: int, patience: int) -> bool:
        """Validate the model at ``step``; True when ``patience`` steps have passed without a better score."""
        score = accuracy(self.model, self.val_x, self.val_y)
        self.model.train()
        if self.score is None or score > self.score:
            self.score, self.weights, self.step = score, self.flat.clone(), step
            return False
        return bool(patience) and step - self.step >= patience


def require_transfer_set(ctx) -> None:
    if ctx.transfer_x is None:  # config validation refuses this; a direct caller of the engine may not have
        raise RuntimeError("this method trains on the transfer set, but the federation has none")


def distill_on_transfer_set(ctx, uploads, averaged, *, lam: float, temperature: float, steps: int, lr: float,
                            batch_size: int, teacher_weighting: str = "uniform", attention_transfer: float = 0.0,
                            guard: dict | None = None) -> "ServerUpdate":
    """FedAKD's server step (lam > 0) or fedavg-ft's fine-tuning (lam = 0) on the labelled transfer set,
    from the average of the uploads."""
    import torch

    from fedakd.engine import ServerUpdate
    from fedakd.losses import attention_transfer_loss, class_count_teacher_weights, kd_loss

    require_transfer_set(ctx)
    if steps == 0:
        return ServerUpdate(averaged)
    needs_teachers = lam > 0 or attention_transfer > 0
    teachers, teacher_attention = (
        teacher_outputs(ctx, uploads, with_attention=attention_transfer > 0) if needs_teachers else (None, None)
    )
    weights = None
    if needs_teachers and teacher_weighting == "class_count":
        counts = torch.stack([u.class_counts for u in uploads]).to(ctx.device, torch.float32)
        weights = class_count_teacher_weights(counts, ctx.transfer_y)

    def loss_fn(logits, attention, idx):
        loss = kd_loss(logits, teachers[:, idx] if teachers is not None else None, ctx.transfer_y[idx], lam=lam,
                       temperature=temperature, teacher_weights=weights[:, idx] if weights is not None else None)
        if attention_transfer > 0:
            loss = loss + attention_transfer * attention_transfer_loss(attention, teacher_attention[:, idx])
        return loss

    return train_on_transfer_set(ctx, averaged, steps=steps, lr=lr, batch_size=batch_size, loss_fn=loss_fn,
                                 guard=guard)
