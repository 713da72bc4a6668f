"""What a method sees: the data a federation trains on, what a client uploads, the round's context with its
services (local SGD, a further exchange with the clients, seeded generators, one counting call), and what a
server step returns. A method author reads this module and fedakd/method.py.
"""

from __future__ import annotations

import math
from contextlib import nullcontext
from dataclasses import dataclass, field, fields
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from fedakd.engine.weights import flat_layout, tensor_bytes
from fedakd.optim import SGD
from fedakd.seeding import LOCAL, torch_generator


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


@dataclass
class FederatedData:
    """Everything a federation trains and evaluates on, resident on the device."""

    clients: list[ClientData]
    test_x: torch.Tensor
    test_y: np.ndarray  # labels on the host: metrics are computed there
    num_classes: int
    groups: dict[str, list[int]] | None  # head/medium/tail/minority classes (docs/method-card.md §1)
    transfer_x: torch.Tensor | None = None  # the server's labelled transfer set
    transfer_y: torch.Tensor | None = None
    validation_x: torch.Tensor | None = None  # held out from the pool for tuning (never the test set)
    validation_y: np.ndarray | None = None

    @classmethod
    def from_indices(cls, x_train: torch.Tensor, y_train: torch.Tensor, x_test: torch.Tensor, y_test: torch.Tensor, *,
                     client_indices: Sequence, num_classes: int, groups: dict[str, list[int]] | None,
                     device: torch.device, transfer_indices=None, validation_indices=None) -> "FederatedData":
        """Slice a dataset by a partition's index lists and move each part to ``device`` once."""

        def take(indices):
            index = torch.as_tensor(np.asarray(indices, dtype=np.int64))
            return x_train[index].to(device), y_train[index]

        clients = []
        for k, indices in enumerate(client_indices):
            x, y = take(indices)
            clients.append(ClientData(k, x, y.to(device), int(y.numel()), torch.bincount(y, minlength=num_classes)))
        data = cls(clients, x_test.to(device), y_test.cpu().numpy(), num_classes, groups)
        if transfer_indices is not None and len(transfer_indices):
            data.transfer_x, transfer_y = take(transfer_indices)
            data.transfer_y = transfer_y.to(device)
        if validation_indices is not None and len(validation_indices):
            data.validation_x, validation_y = take(validation_indices)
            data.validation_y = validation_y.numpy()
        return data


# -- the protocol -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Federation:
    """The federation's protocol, as the engine runs it (the config's ``federation`` block, whose partition keys
    -- clients, proxy_per_class, validation_per_class -- shaped the data already)."""

    rounds: int
    fraction: float
    local_epochs: int
    batch_size: int
    lr: float
    momentum: float
    weight_decay: float
    eval_every: int

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> "Federation":
        return cls(**{f.name: values[f.name] for f in fields(cls)})


@dataclass(frozen=True)
class RunSetup:
    """The protocol every method shares in one job: federation, model, seed and device."""

    federation: Federation
    backbone: str
    seed: int
    device: torch.device
    amp: bool = False

    def __post_init__(self):
        if not isinstance(self.federation, Federation):  # a config's mapping
            object.__setattr__(self, "federation", Federation.from_mapping(self.federation))


# -- what a server step returns ----------------------------------------------------------------
@dataclass
class ServerUpdate:
    """What a method's server step produces: the weights the server broadcasts next round, the model it
    deploys (evaluates) when that is another one (CReFF's re-trained head), and what it reports into the
    round's record (``server/...`` values)."""

    weights: torch.Tensor
    deployed: torch.Tensor | None = None
    notes: dict[str, float] = field(default_factory=dict)


@dataclass
class Tally:
    """What a round costs and reports, counted by ``RoundContext.count`` and ``record_loss``."""

    local_steps: int = 0
    server_steps: int = 0
    bytes_down: int = 0  # beyond the broadcast weights
    bytes_up: int = 0  # beyond the uploads
    losses: dict[str, list[torch.Tensor]] = field(default_factory=dict)  # name -> per-client mean losses


LossFn = Callable[[torch.nn.Module, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
#: A client's answer in a further exchange (``RoundContext.client_pass``): a hook of the method, called with the
#: round's context (its model holding the weights the server sent) and the client's data.
ClientQuery = Callable[["RoundContext", ClientData], dict[str, torch.Tensor]]


class InProcessClients:
    """How the server reaches its clients when every client's data is in this process (the simulation engine).
    fedakd.flower reaches them through Flower's messages instead, with the same three calls."""

    engine = "fedakd"  # what runs the rounds' client side, as a run records it
    holds_client_data = True

    def prepare(self, method, clients: list[ClientData], seed: int) -> tuple[list[ClientData], dict[str, float]]:
        """Each client's one-off preparation of its data (SMOTE); the clients and the summed counters."""
        return method.prepare_clients(clients, seed)

    def train(self, method, ctx: "RoundContext") -> list[Upload]:
        """Every sampled client's local update, in client order."""
        return [method.client_update(ctx, client) for client in ctx.clients]

    def ask(self, ctx: "RoundContext", compute: ClientQuery,
            weights: torch.Tensor) -> list[tuple[ClientData, dict[str, torch.Tensor]]]:
        """Every sampled client's answer to ``compute`` with ``ctx.model`` holding ``weights``; both directions
        counted in the bytes."""
        results = []
        for client in ctx.clients:
            ctx.flat.copy_(weights)
            answer = compute(ctx, client)
            ctx.count(bytes_down=tensor_bytes([weights]), bytes_up=tensor_bytes(answer.values()))
            results.append((client, answer))
        return results


# -- what a method's hooks see ----------------------------------------------------------------
@dataclass
class RoundContext:
    """One round as the hooks see it.

    Inputs: the round, the protocol, this round's sampled clients, the weights broadcast at its start, the
    server's labelled data. Workspace: ``model`` (its parameters are views of ``flat``) and ``spare`` (a
    second model for teachers and frozen global models, over ``spare_flat``), loaded with any weight vector
    by ``flat.copy_(w)``. Services: ``local_sgd``, ``client_pass``, ``generator``, ``autocast``, ``views``,
    and ``count``, the one call that counts steps and bytes.
    """

    round: int
    seed: int
    federation: Federation
    device: torch.device
    model: torch.nn.Module
    flat: torch.Tensor
    spare: torch.nn.Module
    spare_flat: torch.Tensor
    global_weights: torch.Tensor  # broadcast at the start of the round
    num_classes: int
    clients: list[ClientData] = field(default_factory=list)
    transfer_x: torch.Tensor | None = None
    transfer_y: torch.Tensor | None = None
    validation_x: torch.Tensor | None = None  # the held-out validation split (labelled server data, never test)
    validation_y: np.ndarray | None = None
    amp: bool = False
    tally: Tally = field(default_factory=Tally)
    link: Any = field(default_factory=InProcessClients)  # how the server reaches the clients (client_pass)

    def generator(self, *parts: int) -> torch.Generator:
        """This round's random stream named by ``parts`` (tags in fedakd.seeding)."""
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

    def count(self, *, local_steps: int = 0, server_steps: int = 0, bytes_down: int = 0, bytes_up: int = 0) -> None:
        """Add to the round's cost: optimisation steps, and bytes sent beyond the weights each way."""
        self.tally.local_steps += local_steps
        self.tally.server_steps += server_steps
        self.tally.bytes_down += bytes_down
        self.tally.bytes_up += bytes_up

    def record_loss(self, name: str, value: torch.Tensor) -> None:
        """A client's mean loss, averaged over the round's clients into the record's ``name``."""
        self.tally.losses.setdefault(name, []).append(value)

    def local_sgd(self, client: ClientData, loss_fn: LossFn | None = None, tag: int = 0,
                  loss_name: str = "train_loss") -> Upload:
        """E local epochs of SGD from the global weights on the client's data.

        ``loss_fn(model, xb, yb, idx)`` replaces cross-entropy (``idx`` indexes the
        client's data, e.g. to look up precomputed teacher logits); the mean loss is
        recorded under ``loss_name``; ``tag`` names a second pass's random stream.
        """
        fed = self.federation
        self.flat.copy_(self.global_weights)
        model = self.model
        model.train()
        optimizer = SGD(model.parameters(), lr=fed.lr, momentum=fed.momentum, weight_decay=fed.weight_decay)
        generator = self.generator(LOCAL, client.client_id, tag)
        n, batch_size = client.x.shape[0], fed.batch_size
        loss_sum = torch.zeros((), device=self.device)
        for _ in range(fed.local_epochs):
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
        steps = fed.local_epochs * -(-n // batch_size)
        self.count(local_steps=steps)
        self.record_loss(loss_name, loss_sum / max(steps, 1))
        return Upload(client.client_id, self.flat.clone(), client.num_examples, client.class_counts)

    def client_pass(self, compute: ClientQuery,
                    weights: torch.Tensor) -> list[tuple[ClientData, dict[str, torch.Tensor]]]:
        """A further exchange with this round's clients: the server sends ``weights``, each client returns
        ``compute(ctx, client)`` computed on its own data with ``ctx.model`` holding those weights. Both
        directions are counted in the bytes. ``compute`` is a hook of the method (a bound method): over a real
        federation the clients are asked for it by name."""
        return self.link.ask(self, compute, weights)
