"""SGD with momentum and Adam, the two optimisers the engine and the methods use, without torch.optim.

Why not torch.optim: constructing any torch.optim optimiser imports torch._dynamo (about 0.9 s of CPU
per job on a 2-core machine, more than a whole round of some jobs) to guard its ``step`` against
compilation. These two classes do exactly the arithmetic of torch's default single-tensor path on the
CPU (``torch.optim.SGD(foreach=False)`` and ``torch.optim.Adam(foreach=False)``, the default for CPU
tensors), op for op, so a run gives bit-identical weights; ``tests/test_optim.py`` checks that against
torch.optim on every step. Only the options the suite uses are offered: no Nesterov, dampening,
AMSGrad, maximise or Adam weight decay.
"""

from __future__ import annotations

from typing import Iterable

import torch


class _Optimizer:
    """What both share: the parameters, and zero_grad as torch's default (gradients set to None)."""

    def __init__(self, params: Iterable[torch.Tensor]):
        self.params = list(params)

    def zero_grad(self, set_to_none: bool = True) -> None:
        for param in self.params:
            param.grad = None


class SGD(_Optimizer):
    """torch.optim.SGD(params, lr, momentum, weight_decay): v = m·v + (g + wd·w) (v = g at the first step),
    w -= lr·v."""

    def __init__(self, params: Iterable[torch.Tensor], lr: float, momentum: float = 0.0, weight_decay: float = 0.0):
        super().__init__(params)
        self.lr, self.momentum, self.weight_decay = float(lr), float(momentum), float(weight_decay)
        self.buffers: list[torch.Tensor | None] = [None] * len(self.params)

    @torch.no_grad()
    def step(self) -> None:
        for i, param in enumerate(self.params):
            grad = param.grad
            if grad is None:
                continue
            if self.weight_decay != 0:
                grad = grad.add(param, alpha=self.weight_decay)
            if self.momentum != 0:
                buf = self.buffers[i]
                if buf is None:
                    buf = self.buffers[i] = grad.detach().clone()
                else:
                    buf.mul_(self.momentum).add_(grad)
                grad = buf
            param.add_(grad, alpha=-self.lr)


class Adam(_Optimizer):
    """torch.optim.Adam(params, lr, betas, eps) without weight decay: m = lerp(m, g, 1 - β1),
    v = β2·v + (1 - β2)·g², w -= lr / (1 - β1^t) · m / (√v / √(1 - β2^t) + eps)."""

    def __init__(self, params: Iterable[torch.Tensor], lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8):
        super().__init__(params)
        self.lr, (self.beta1, self.beta2), self.eps = float(lr), (float(betas[0]), float(betas[1])), float(eps)
        self.steps = [0] * len(self.params)
        self.exp_avg: list[torch.Tensor | None] = [None] * len(self.params)
        self.exp_avg_sq: list[torch.Tensor | None] = [None] * len(self.params)

    @torch.no_grad()
    def step(self) -> None:
        for i, param in enumerate(self.params):
            grad = param.grad
            if grad is None:
                continue
            if self.exp_avg[i] is None:
                self.exp_avg[i] = torch.zeros_like(param, memory_format=torch.preserve_format)
                self.exp_avg_sq[i] = torch.zeros_like(param, memory_format=torch.preserve_format)
            exp_avg, exp_avg_sq = self.exp_avg[i], self.exp_avg_sq[i]
            self.steps[i] += 1
            step = float(self.steps[i])
            exp_avg.lerp_(grad, 1 - self.beta1)
            exp_avg_sq.mul_(self.beta2).addcmul_(grad, grad, value=1 - self.beta2)
            step_size = self.lr / (1 - self.beta1**step)
            bias_correction2_sqrt = (1 - self.beta2**step) ** 0.5
            denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(self.eps)
            param.addcdiv_(exp_avg, denom, value=-step_size)
