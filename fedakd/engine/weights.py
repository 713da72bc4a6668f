"""Flat weights: one tensor holds a model's every parameter, so that loading, snapshotting, averaging and
counting bytes are arithmetic over vectors, never deep copies of modules."""

from __future__ import annotations

import torch


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


def tensor_bytes(tensors) -> int:
    """Bytes a list of tensors takes on the wire (their element count x element size)."""
    return sum(t.numel() * t.element_size() for t in tensors)


def predict_logits(model: torch.nn.Module, x: torch.Tensor, batch_size: int = 1024, with_attention: bool = False):
    """Logits (and attention, if asked) of ``model`` on ``x`` in large batches, in eval mode."""
    was_training = model.training
    model.eval()
    logits, attn = [], []
    with torch.no_grad():
        for start in range(0, x.shape[0], batch_size):
            out, a = model.logits_and_attention(x[start : start + batch_size])
            logits.append(out)
            if with_attention:
                attn.append(a)
    model.train(was_training)
    if with_attention:
        return torch.cat(logits), torch.cat(attn)
    return torch.cat(logits)
