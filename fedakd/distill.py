"""Server-side training of the aggregated model on the transfer set.

With lam > 0 this is FedAKD's distillation (METHOD.md §3): the averaged model q
(student) learns L = CE(y, q) + lam * T^2 * mean_k KL(p_k^T || q^T) from the
uploaded client models p_k (teachers). With lam = 0 it is plain fine-tuning
(fedavg-ft), and no teacher is evaluated. FedDF (baselines/feddf.py) takes the
same steps with its own, label-free loss.

torch is imported inside the functions: config validation imports the method
classes (for their option schemas) and must stay cheap.
"""

from __future__ import annotations

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
        out = predict_logits(ctx.spare, ctx.proxy_x, with_attention=with_attention)
        if with_attention:
            out, att = out
            attention.append(att)
        logits.append(out)
    return torch.stack(logits), (torch.stack(attention) if with_attention else None)


def train_on_transfer_set(ctx, *, steps: int, lr: float, batch_size: int, loss_fn) -> None:
    """``steps`` Adam steps on ``ctx.global_weights`` over the transfer set's inputs, in place.

    ``loss_fn(logits, attention, idx)`` gives the loss of a batch (``idx`` indexes the transfer set,
    e.g. to look up teachers' outputs). Batches are drawn without replacement from a seeded
    permutation, reshuffled when fewer than a batch remain; every server-side method that trains on
    the transfer set (FedAKD, fedavg-ft, FedDF) takes these same steps, optimiser and batches.
    """
    import torch

    from fedakd.engine import STREAM_SERVER
    from fedakd.optim import Adam

    ctx.flat.copy_(ctx.global_weights)
    model = ctx.model
    model.train()
    optimizer = Adam(model.parameters(), lr=lr)
    generator = ctx.generator(STREAM_SERVER)
    n = ctx.proxy_x.shape[0]
    order, cursor = torch.randperm(n, generator=generator), 0
    for _ in range(steps):
        if cursor + batch_size > n:  # a fresh pass over the transfer set
            order, cursor = torch.randperm(n, generator=generator), 0
        idx = order[cursor : cursor + batch_size].to(ctx.device)
        cursor += batch_size
        with ctx.autocast():
            logits, attention = model.forward_features(ctx.proxy_x[idx])
            loss = loss_fn(logits, attention, idx)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    ctx.count_server_steps(steps)
    ctx.global_weights = ctx.flat.clone()


def require_transfer_set(ctx) -> None:
    if ctx.proxy_x is None:  # config validation refuses this; a direct caller of the engine may not have
        raise RuntimeError("this method trains on the transfer set, but the federation has none")


def distill_on_proxy(ctx, uploads, *, lam: float, temperature: float, steps: int, lr: float, batch_size: int,
                     teacher_weighting: str = "uniform", attention_transfer: float = 0.0) -> None:
    """FedAKD's server step (lam > 0) or fedavg-ft's fine-tuning (lam = 0) on the labelled transfer set."""
    import torch

    from fedakd.losses import attention_transfer_loss, class_count_teacher_weights, kd_loss

    require_transfer_set(ctx)
    if steps == 0:
        return
    needs_teachers = lam > 0 or attention_transfer > 0
    teachers, teacher_attention = (
        teacher_outputs(ctx, uploads, with_attention=attention_transfer > 0) if needs_teachers else (None, None)
    )
    weights = None
    if needs_teachers and teacher_weighting == "class_count":
        counts = torch.stack([u.class_counts for u in uploads]).to(ctx.device, torch.float32)
        weights = class_count_teacher_weights(counts, ctx.proxy_y)

    def loss_fn(logits, attention, idx):
        loss = kd_loss(logits, teachers[:, idx] if teachers is not None else None, ctx.proxy_y[idx], lam=lam,
                       temperature=temperature, teacher_weights=weights[:, idx] if weights is not None else None)
        if attention_transfer > 0:
            loss = loss + attention_transfer * attention_transfer_loss(attention, teacher_attention[:, idx])
        return loss

    train_on_transfer_set(ctx, steps=steps, lr=lr, batch_size=batch_size, loss_fn=loss_fn)
