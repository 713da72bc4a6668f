"""What travels between the ServerApp and the ClientApps, as Flower records: the weights and a method's extra
tensors (ArrayRecord), and scalars (MetricRecord, ConfigRecord). Tensors travel as they are (float32 weights
stay float32), so a run over Flower computes on the same numbers as the engine."""

from __future__ import annotations

from typing import Any, Mapping

import torch
from flwr.app import ArrayRecord, ConfigRecord, MetricRecord, RecordDict

from fedakd.engine import Tally, Upload

#: Message types: the ClientApp's handlers (``query.<action>`` routes to @app.query(action)).
IDENTIFY, TRAIN, ASK = "query.identify", "train", "query.ask"


def tensors(record: ArrayRecord) -> dict[str, torch.Tensor]:
    return {name: tensor.clone() for name, tensor in record.to_torch_state_dict().items()}


def arrays(values: Mapping[str, torch.Tensor]) -> ArrayRecord:
    return ArrayRecord(torch_state_dict={name: tensor.detach().cpu() for name, tensor in values.items()})


def broadcast(job: Mapping[str, Any], weights: torch.Tensor, round_index: int,
              shared: Mapping[str, torch.Tensor] | None = None, **config: Any) -> RecordDict:
    """The server's message to a client: which job (fedakd.flower.settings.FlowerJob's fields), the weights, the
    method's shared state (Method.shared_state) and the round (whose random streams the client draws)."""
    return RecordDict({"job": ConfigRecord(dict(job)), "weights": arrays({"weights": weights}),
                       "shared": arrays(shared or {}), "config": ConfigRecord({"round": round_index, **config})})


def received(content: RecordDict) -> tuple[torch.Tensor, dict[str, torch.Tensor], dict[str, Any]]:
    """The weights, the method's shared state and the config of a server's message."""
    return (content["weights"].to_torch_state_dict()["weights"].clone(), tensors(content["shared"]),
            dict(content["config"]))


def upload_reply(upload: Upload, tally: Tally) -> RecordDict:
    """A client's reply to ``train``: its upload (weights, extras, example and class counts) and what its round
    cost it (steps, bytes beyond the weights, mean losses in the order they were recorded)."""
    losses = {name: float(torch.stack(values).mean()) for name, values in tally.losses.items()}
    return RecordDict({
        "weights": arrays({"weights": upload.weights}), "extras": arrays(upload.extras),
        "counts": arrays({"class_counts": upload.class_counts}),
        "tally": MetricRecord({"client_id": upload.client_id, "num_examples": upload.num_examples,
                               "local_steps": tally.local_steps, "server_steps": tally.server_steps,
                               "bytes_down": tally.bytes_down, "bytes_up": tally.bytes_up,
                               **{f"loss/{name}": value for name, value in losses.items()}}),
        "losses": ConfigRecord({"names": list(losses)}),
    })


def upload_of(content: RecordDict, device: torch.device) -> tuple[Upload, dict[str, Any]]:
    """The Upload of a client's ``train`` reply, on ``device``, and its tally (steps, bytes, losses)."""
    tally = dict(content["tally"])
    upload = Upload(int(tally["client_id"]), received_weights(content, device), int(tally["num_examples"]),
                    content["counts"].to_torch_state_dict()["class_counts"].clone(),
                    {name: value.to(device) for name, value in tensors(content["extras"]).items()})
    losses = {name: tally[f"loss/{name}"] for name in content["losses"]["names"]}
    return upload, {**{key: int(tally[key]) for key in ("local_steps", "server_steps", "bytes_down", "bytes_up")},
                    "losses": losses}


def received_weights(content: RecordDict, device: torch.device) -> torch.Tensor:
    return content["weights"].to_torch_state_dict()["weights"].clone().to(device)
