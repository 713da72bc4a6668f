"""fedakd.optim against torch.optim, bit for bit, and the reason it exists: no torch._dynamo import."""

import subprocess
import sys

import pytest
import torch

from fedakd.optim import SGD, Adam


def _model(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(7, 5), torch.nn.ReLU(), torch.nn.Linear(5, 3))


def _train(model, optimizer, steps: int = 25, seed: int = 1, skip_param: int | None = None):
    generator = torch.Generator().manual_seed(seed)
    for step in range(steps):
        x, y = torch.randn(16, 7, generator=generator), torch.randint(0, 3, (16,), generator=generator)
        optimizer.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(x), y).backward()
        if skip_param is not None and step % 3 == 0:  # a parameter without a gradient on some steps
            list(model.parameters())[skip_param].grad = None
        optimizer.step()
    return [p.detach().clone() for p in model.parameters()]


@pytest.mark.parametrize("momentum,weight_decay", [(0.0, 0.0), (0.9, 0.0), (0.9, 1e-4), (0.5, 1e-2)])
def test_sgd_is_torch_sgd_bit_for_bit(momentum, weight_decay):
    ours, theirs = _model(0), _model(0)
    got = _train(ours, SGD(ours.parameters(), lr=0.05, momentum=momentum, weight_decay=weight_decay), skip_param=1)
    want = _train(theirs, torch.optim.SGD(theirs.parameters(), lr=0.05, momentum=momentum,
                                          weight_decay=weight_decay), skip_param=1)
    for a, b in zip(got, want):
        assert torch.equal(a, b)


@pytest.mark.parametrize("lr", [1e-3, 3e-2])
def test_adam_is_torch_adam_bit_for_bit(lr):
    ours, theirs = _model(2), _model(2)
    got = _train(ours, Adam(ours.parameters(), lr=lr), steps=40, skip_param=2)
    want = _train(theirs, torch.optim.Adam(theirs.parameters(), lr=lr), steps=40, skip_param=2)
    for a, b in zip(got, want):
        assert torch.equal(a, b)


def test_sgd_step_by_hand():
    w = torch.tensor([1.0, -2.0], requires_grad=True)
    optimizer = SGD([w], lr=0.1, momentum=0.5, weight_decay=0.1)
    for _ in range(2):
        optimizer.zero_grad()
        (w * torch.tensor([3.0, 1.0])).sum().backward()  # gradient [3, 1]
        optimizer.step()
    # step 1: g = [3, 1] + 0.1·[1, -2] = [3.1, 0.8]; v = g; w = [0.69, -2.08]
    # step 2: g = [3, 1] + 0.1·[0.69, -2.08] = [3.069, 0.792]; v = 0.5·v + g = [4.619, 1.192]; w -= 0.1·v
    assert w.detach().tolist() == pytest.approx([0.69 - 0.4619, -2.08 - 0.1192], abs=1e-6)


def test_a_training_job_never_imports_torch_dynamo(digits_config, tmp_path):
    """What the optimisers are for: the whole job (a server-side Adam method included) keeps torch._dynamo out."""
    code = ("import sys\nfrom fedakd.cli import main\n"
            f"rc = main(['train', '--config', {str(digits_config)!r}, '--dataset', 'digits', '--setting', 'lt10-dir1',"
            f" '--method', 'fedakd', '--seed', '0', '--out', {str(tmp_path / 'run')!r}, '--no-track',"
            " '--set', 'federation.rounds=1'])\n"
            "assert rc == 0, rc\nprint(sorted(m for m in sys.modules if m.startswith(('torch._dynamo', 'mlflow',"
            " 'matplotlib', 'sklearn'))))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "[]"
