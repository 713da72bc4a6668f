"""Backbones, the FedAKD feature attention and the classifier that joins them (docs/method-card.md §2).

A model is backbone f: x -> R^d, optional attention, head g: R^d -> R^C. torch is
imported at module level because every name here is a torch module; the engine
imports this module only when it builds a model.
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple

import torch
from torch import nn


class BackboneError(ValueError):
    """An unknown backbone, or one that cannot take the dataset's input shape."""


#: How the attention weights a re-weight the features f (docs/method-card.md §2).
ATTENTION_FORMS = ("scaled", "residual")


class FeatureAttention(nn.Module):
    """Attention over features, a = softmax(W f), in one of two forms:

    - ``scaled`` (the paper's literal form): h = d * a * f. W starts at zero, so a is uniform (1/d) and
      h = f: the layer begins as the identity. d * a_j can amplify one feature up to d times, which is
      how a client with few classes drives the model into a one-class collapse (docs/method-card.md).
    - ``residual``: h = a * f + f. It starts at (1 + 1/d) f, never amplifies a feature more than twice,
      and keeps every feature that the backbone computes in the head's input.
    """

    def __init__(self, dim: int, form: str = "scaled"):
        super().__init__()
        if form not in ATTENTION_FORMS:
            raise ValueError(f"attention form {form!r} is not one of {', '.join(ATTENTION_FORMS)}")
        self.dim, self.form = dim, form
        self.weight = nn.Linear(dim, dim, bias=False)
        nn.init.zeros_(self.weight.weight)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        attention = torch.softmax(self.weight(features), dim=-1)
        if self.form == "residual":
            return attention * features + features, attention
        return self.dim * attention * features, attention


class Classifier(nn.Module):
    """features -> (attention) -> head; ``logits_and_attention`` returns the logits with the attention (None without
    it), for the losses that read both; ``embed`` is what the head sees."""

    def __init__(self, features: nn.Module, head: nn.Linear, attention: FeatureAttention | None = None):
        super().__init__()
        self.features = features
        self.attention = attention
        self.head = head

    def logits_and_attention(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        features = self.features(x)
        attention = None
        if self.attention is not None:
            features, attention = self.attention(features)
        return self.head(features), attention

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """What the head sees: the backbone's features, attention-weighted when the model has attention."""
        features = self.features(x)
        return features if self.attention is None else self.attention(features)[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits_and_attention(x)[0]


class SimpleCNN(nn.Module):
    """NIID-Bench's SimpleCNN for 28x28 images (conv 6 and 16 channels, kernel 5, FC 120-84); d = 84."""

    feature_dim = 84

    def __init__(self, in_channels: int):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(in_channels, 6, 5), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(16 * 4 * 4, 120), nn.ReLU(),
            nn.Linear(120, 84), nn.ReLU(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class MLP(nn.Module):
    """Two hidden layers (128, 64) on the flattened input; sized for 8x8 digits (64 inputs); d = 64."""

    feature_dim = 64

    def __init__(self, in_features: int):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Flatten(), nn.Linear(in_features, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


def _group_norm(channels: int) -> nn.GroupNorm:
    # 2 groups per normalisation layer (Hsieh et al. 2020): GroupNorm keeps no running
    # statistics, so averaging client weights averages the whole model state.
    return nn.GroupNorm(2, channels)


class BasicBlock(nn.Module):
    """ResNet basic block: two 3x3 convolutions with GroupNorm and an identity (or 1x1 projection) shortcut."""

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.residual = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False), _group_norm(out_channels),
            nn.ReLU(),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False), _group_norm(out_channels),
        )
        self.shortcut = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False), _group_norm(out_channels)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.residual(x) + self.shortcut(x))


class ResNet8(nn.Module):
    """A ResNet-8 for 32x32 images: 3x3 stem (16 channels), three stages of one basic block
    (16, 32, 64 channels; strides 1, 2, 2), GroupNorm with 2 groups, global average pooling; d = 64."""

    feature_dim = 64

    def __init__(self, in_channels: int):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(in_channels, 16, 3, padding=1, bias=False), _group_norm(16), nn.ReLU(),
            BasicBlock(16, 16, stride=1),
            BasicBlock(16, 32, stride=2),
            BasicBlock(32, 64, stride=2),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class _BackboneSpec(NamedTuple):
    fits: Callable[[int, int, int], bool]  # (channels, height, width) -> can it take this input?
    takes: str  # what it takes, for error messages
    build: Callable[[tuple[int, int, int]], nn.Module]


_BACKBONES = {
    "cnn": _BackboneSpec(lambda c, h, w: (h, w) == (28, 28), "28x28 images", lambda shape: SimpleCNN(shape[0])),
    "mlp": _BackboneSpec(lambda c, h, w: True, "any input (flattened; sized for 8x8)",
                         lambda shape: MLP(math.prod(shape))),
    "resnet": _BackboneSpec(lambda c, h, w: h >= 8 and w >= 8,
                            "images of at least 8x8 (global pooling; sized for 32x32)",
                            lambda shape: ResNet8(shape[0])),
}
_AUTO_BACKBONE = {(28, 28): "cnn", (8, 8): "mlp", (32, 32): "resnet"}


def _resolve_backbone(backbone: str, in_shape: tuple[int, int, int]) -> str:
    channels, height, width = in_shape
    fitting = [name for name, spec in _BACKBONES.items() if spec.fits(channels, height, width)]
    if backbone == "auto":
        if (height, width) in _AUTO_BACKBONE:
            return _AUTO_BACKBONE[(height, width)]
        raise BackboneError(
            f"model.backbone 'auto' has no default for {height}x{width} inputs; set model.backbone to one that "
            f"fits: {', '.join(fitting)}"
        )
    if backbone not in _BACKBONES:
        raise BackboneError(f"unknown backbone {backbone!r}; use one of: auto, {', '.join(_BACKBONES)}")
    if backbone not in fitting:
        raise BackboneError(
            f"backbone {backbone!r} takes {_BACKBONES[backbone].takes}, not input shape {tuple(in_shape)}; "
            f"backbones that fit: {', '.join(fitting)}"
        )
    return backbone


def build_model(backbone: str, *, in_shape: tuple[int, int, int], num_classes: int,
                attention: bool = False, attention_form: str = "scaled") -> Classifier:
    """Build backbone, head, then attention, in that order: W's zero init draws no random numbers,
    but its construction does, so this order gives the same backbone and head weights (for a given
    torch seed) with and without attention -- the ablation compares like with like."""
    if len(in_shape) != 3:
        raise BackboneError(f"in_shape must be (channels, height, width), got {tuple(in_shape)}")
    name = _resolve_backbone(backbone, tuple(in_shape))
    features = _BACKBONES[name].build(tuple(in_shape))
    head = nn.Linear(features.feature_dim, num_classes)
    feature_attention = FeatureAttention(features.feature_dim, attention_form) if attention else None
    return Classifier(features, head, feature_attention)


def num_parameters(model: nn.Module) -> int:
    """Number of parameter scalars (reported with every run as the model size)."""
    return sum(p.numel() for p in model.parameters())
