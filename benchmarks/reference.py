"""FedAvg written the way common FL codebases write it: the "before" picture for benchmarks/bench.py.

The style of NIID-Bench (Li et al. 2022), Flower's and many papers' repositories: a torchvision
dataset that turns every image into a PIL image and through ToTensor + Normalize on each access, a
fresh DataLoader per client per round, a deep copy of the global model for every client, averaging
of the state_dict key by key, and each client's train and test accuracy measured every round (as
NIID-Bench's ``train_net`` does). Nothing is slowed on purpose: same model, optimiser,
hyper-parameters, batch size and torch threads as the engine it is compared with.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field


@dataclass
class ReferenceResult:
    round_seconds: list[float] = field(default_factory=list)
    test_accuracy: list[float] = field(default_factory=list)  # the global model's, after every round
    #: per round, each client's (train, test) accuracy after local training, as such codebases log it
    client_accuracy: list[list[tuple[float, float]]] = field(default_factory=list)


def fashion_mnist(root: str, train: bool, mean: float, std: float):
    """torchvision's FashionMNIST with the usual per-sample transform; ``root`` holds FashionMNIST/raw/."""
    from torchvision import datasets, transforms

    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((mean,), (std,))])
    return datasets.FashionMNIST(root, train=train, transform=transform, download=False)


def accuracy(model, loader) -> float:
    import torch

    model.eval()
    correct = total = 0
    with torch.no_grad():
        for x, target in loader:
            correct += (model(x).argmax(dim=1) == target).sum().item()
            total += target.shape[0]
    return correct / total


def local_train(model, loader, *, epochs: int, lr: float, momentum: float, weight_decay: float) -> None:
    import torch

    criterion = torch.nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    model.train()
    for _ in range(epochs):
        for x, target in loader:
            optimizer.zero_grad()
            loss = criterion(model(x), target)
            loss.backward()
            optimizer.step()


def average_state_dicts(states: list[dict], counts: list[int]) -> dict:
    """FedAvg's weighted mean, one state_dict key at a time."""
    total = sum(counts)
    averaged = {}
    for key in states[0]:
        averaged[key] = sum(state[key] * (n / total) for state, n in zip(states, counts))
    return averaged


def run_reference(global_model, train_set, test_set, client_indices: list, *, rounds: int, local_epochs: int,
                  batch_size: int, lr: float, momentum: float, weight_decay: float,
                  test_batch_size: int = 32) -> ReferenceResult:
    """``rounds`` of FedAvg over every client; per-round wall time and global test accuracy.

    ``test_batch_size`` 32 is NIID-Bench's test loader's.
    """
    from torch.utils.data import DataLoader, Subset

    result = ReferenceResult()
    test_loader = DataLoader(test_set, batch_size=test_batch_size, shuffle=False)
    for _ in range(rounds):
        started = time.perf_counter()
        states, counts, client_accuracy = [], [], []
        for indices in client_indices:
            train_loader = DataLoader(Subset(train_set, list(indices)), batch_size=batch_size, shuffle=True)
            model = copy.deepcopy(global_model)
            local_train(model, train_loader, epochs=local_epochs, lr=lr, momentum=momentum,
                        weight_decay=weight_decay)
            client_accuracy.append((accuracy(model, train_loader), accuracy(model, test_loader)))
            states.append(model.state_dict())
            counts.append(len(indices))
        global_model.load_state_dict(average_state_dicts(states, counts))
        result.test_accuracy.append(accuracy(global_model, test_loader))
        result.client_accuracy.append(client_accuracy)
        result.round_seconds.append(time.perf_counter() - started)
    return result
