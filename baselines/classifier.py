"""Classifier re-training on features, shared by CCVR and CReFF (which both re-train the model's last
linear layer, its "head", on features the server holds rather than on data)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def head_views(ctx, weights: "torch.Tensor") -> tuple["torch.Tensor", "torch.Tensor"]:
    """The head's weight (C, d) and bias (C,) as views into ``weights`` (a flat weight vector of ctx's model)."""
    views = ctx.views(weights, prefix="head.")
    return views["head.weight"], views["head.bias"]


def embed_all(ctx, x: "torch.Tensor", batch_size: int = 1024) -> "torch.Tensor":
    """Features that ctx.model's head sees for every row of ``x`` (eval mode, no gradients)."""
    import torch

    model = ctx.model
    was_training = model.training
    model.eval()
    with torch.no_grad():
        features = torch.cat([model.embed(x[start : start + batch_size]) for start in range(0, x.shape[0], batch_size)])
    model.train(was_training)
    return features


def init_linear(out_features: int, in_features: int, generator: "torch.Generator",
                device) -> tuple["torch.Tensor", "torch.Tensor"]:
    """A fresh linear layer as torch.nn.Linear initialises one (U(-1/sqrt(d), 1/sqrt(d)) for weight and
    bias), drawn from ``generator`` rather than torch's global stream."""
    import torch

    bound = in_features**-0.5
    weight = (torch.rand(out_features, in_features, generator=generator) * 2 - 1) * bound
    bias = (torch.rand(out_features, generator=generator) * 2 - 1) * bound
    return weight.to(device), bias.to(device)


def train_linear(weight: "torch.Tensor", bias: "torch.Tensor", features: "torch.Tensor", labels: "torch.Tensor", *,
                 epochs: int, lr: float, batch_size: int, generator: "torch.Generator") -> int:
    """Plain SGD on the mean cross-entropy of a linear classifier over (features, labels), in place;
    returns the steps taken.

    Each epoch visits the examples once in a fresh seeded order, in batches of ``batch_size`` (the
    last one smaller), as a shuffling DataLoader would. The gradient is the softmax's closed form,
    ((p - onehot(y))^T f / B, mean(p - onehot(y))), the same numbers autograd would give (a test
    compares them) at a fraction of the cost: CReFF takes thousands of these steps every round.
    """
    import torch
    import torch.nn.functional as F

    features, labels = features.detach(), labels.detach()
    targets = F.one_hot(labels, weight.shape[0]).to(features.dtype)
    n, steps = features.shape[0], 0
    with torch.no_grad():
        for _ in range(epochs):
            order = torch.randperm(n, generator=generator).to(features.device)
            for start in range(0, n, batch_size):
                idx = order[start : start + batch_size]
                batch = features[idx]
                error = (torch.softmax(batch @ weight.T + bias, dim=-1) - targets[idx]) / idx.numel()
                weight.sub_(error.T @ batch, alpha=lr)
                bias.sub_(error.sum(dim=0), alpha=lr)
                steps += 1
    return steps
