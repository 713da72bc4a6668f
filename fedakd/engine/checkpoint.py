"""What the server carries from round to round, and its checkpoint: saved after every round, so that a killed
job resumes where it stopped and ends with the metrics of an uninterrupted run."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch

from fedakd.io import atomic_path


class CheckpointError(RuntimeError):
    """A job's checkpoint cannot be resumed from (damaged, or written by another job)."""


@dataclass
class Totals:
    """Cumulative cost of a run (docs/method-card.md §3, compute parity)."""

    bytes_down: int = 0
    bytes_up: int = 0
    local_steps: int = 0
    server_steps: int = 0


@dataclass
class ServerState:
    """The state that carries from round to round (and into a checkpoint), with the two model objects the
    rounds work in (``model`` over ``flat``, ``spare`` over ``spare_flat``)."""

    model: torch.nn.Module
    flat: torch.Tensor
    spare: torch.nn.Module
    spare_flat: torch.Tensor
    global_weights: torch.Tensor  # broadcast to the next round's clients
    deployed_weights: torch.Tensor | None = None  # evaluated and deployed, when not the broadcast weights
    round: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    timings: list[dict[str, float]] = field(default_factory=list)
    totals: Totals = field(default_factory=Totals)
    diverged: dict[str, Any] | None = None  # where a non-finite weight or loss first appeared

    @property
    def deployed(self) -> torch.Tensor:
        return self.global_weights if self.deployed_weights is None else self.deployed_weights


@dataclass(frozen=True)
class Checkpoint:
    """Where a run saves itself after every round, and what identifies it (checked on resume)."""

    path: Path
    identity: Mapping[str, Any] = field(default_factory=dict)


def save_checkpoint(checkpoint: Checkpoint, server: ServerState, method) -> None:
    state = {
        "round": server.round, "global_weights": server.global_weights.cpu(),
        "eval_weights": None if server.deployed_weights is None else server.deployed_weights.cpu(),
        "history": server.history, "timings": server.timings,
        "bytes_down": server.totals.bytes_down, "bytes_up": server.totals.bytes_up,
        "local_steps": server.totals.local_steps, "server_steps": server.totals.server_steps,
        "method_state": method.state_dict(), "extra": dict(checkpoint.identity), "diverged": server.diverged,
    }
    with atomic_path(checkpoint.path) as tmp:
        torch.save(state, tmp)


def restore_checkpoint(checkpoint: Checkpoint, server: ServerState, method, device: torch.device) -> bool:
    """Load a saved round into ``server`` and ``method``; False when there is none to load."""
    if not checkpoint.path.exists():
        return False
    try:
        state = torch.load(checkpoint.path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated or foreign file: zip, unpickling and EOF errors alike
        reason = str(exc).split(". ")[0] or "damaged"  # torch's zip reader adds a paragraph of advice
        raise CheckpointError(f"checkpoint {checkpoint.path} cannot be read ({type(exc).__name__}: {reason}); "
                              f"delete it to start this job afresh") from None
    if not isinstance(state, dict) or state.get("extra") != dict(checkpoint.identity):
        raise CheckpointError(f"checkpoint {checkpoint.path} belongs to a different job or configuration; "
                              f"delete it to start this job afresh")
    server.global_weights.copy_(state["global_weights"].to(device))
    if state.get("eval_weights") is not None:
        server.deployed_weights = state["eval_weights"].to(device)
    server.round, server.history, server.timings = state["round"], state["history"], state["timings"]
    server.totals = Totals(state["bytes_down"], state["bytes_up"], state.get("local_steps", 0),
                           state.get("server_steps", 0))
    server.diverged = state.get("diverged")
    method.load_state_dict(state.get("method_state") or {}, device)
    return True
