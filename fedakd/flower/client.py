"""The ClientApp: one client of a benchmarked federation, running its method's client side -- the same hooks
the engine calls (``prepare_client_data``, ``client_update``, and the hooks a server may ask for by name) --
on its own data only.

What a node knows: from each message, the job it belongs to (fedakd.flower.settings.FlowerJob: the YAML config,
overrides, dataset, setting, method, seed and the partition's folder), and from its own configuration its
identity and data (``node_config``: ``partition-id``, the client's index in the partition, and optionally
``shard``, a file written by ``fedakd flower shard`` that holds that client's examples and nothing else; without
one the node reads its client's slice of the dataset through the partition).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from flwr.app import ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from fedakd.flower import records
from fedakd.flower.settings import FlowerJob


@dataclass
class Node:
    """What one client keeps between messages of a run: its job, its method, its (prepared) data and the two
    model objects its rounds work in."""

    job: Any  # fedakd.config.spec.JobSpec
    method: Any  # fedakd.method.Method
    client: Any  # fedakd.engine.ClientData, after prepare_client_data
    counters: dict[str, float]
    partition_sha256: str
    num_classes: int
    device: torch.device
    models: tuple  # (model, flat, spare, spare_flat)

    def context(self, round_index: int, weights: torch.Tensor):
        """The round's context as this client's hooks see it: the weights the server sent, its data alone."""
        from fedakd.engine import Federation, RoundContext

        model, flat, spare, spare_flat = self.models
        return RoundContext(round=round_index, seed=self.job.seed,
                            federation=Federation.from_mapping(self.job.federation), device=self.device, model=model,
                            flat=flat, spare=spare, spare_flat=spare_flat, global_weights=weights.to(self.device),
                            num_classes=self.num_classes, clients=[self.client], amp=self.job.amp)


def load_shard(path: str | Path) -> dict[str, Any]:
    """A client's data written by ``fedakd flower shard``: its examples, labels, index and partition hash."""
    return torch.load(Path(path), map_location="cpu", weights_only=True)


def _client_data(flower_job: FlowerJob, job, client_id: int, shard: str | None) -> tuple[Any, str, int]:
    """(ClientData, partition sha256, number of classes) of one client: from its shard, else from the dataset and
    the partition (a node that may read both)."""
    from fedakd.engine import ClientData

    if shard:
        data = load_shard(shard)
        x, y, sha, num_classes = data["x"], data["y"], data["partition_sha256"], int(data["num_classes"])
        if int(data["client_id"]) != client_id:
            raise ValueError(f"shard {shard} holds client {int(data['client_id'])}, but this node is partition-id "
                             f"{client_id}; give each SuperNode its own client's shard")
    else:
        from fedakd.data import load_dataset
        from fedakd.partition import load_partition

        dataset = load_dataset(job.dataset, job.data_root)
        partition = load_partition(flower_job.partition, job.partition)
        index = torch.as_tensor(partition.client_indices[client_id])
        x, y, sha, num_classes = dataset.x_train[index], dataset.y_train[index], partition.sha256, dataset.num_classes
    return ClientData(client_id, x, y, int(y.numel()), torch.bincount(y, minlength=num_classes)), sha, num_classes


@functools.lru_cache(maxsize=8)
def _node(run_id: int, node_id: int, job_fields: tuple, node_config: tuple) -> Node:
    """This node's state for one job of a run, made at its first message and kept for the job's later ones."""
    from fedakd.engine import flatten_parameters, resolve_device
    from fedakd.models import build_model
    from fedakd.registry import get_method
    from fedakd.seeding import client_preparation_seed

    flower_job = FlowerJob.from_config(dict(job_fields))
    job = flower_job.job_spec()
    torch.set_num_threads(flower_job.threads)
    device = resolve_device(job.device)
    settings = dict(node_config)
    client_id = int(settings["partition-id"])
    client, sha, num_classes = _client_data(flower_job, job, client_id, settings.get("shard"))
    client.x, client.y = client.x.to(device), client.y.to(device)
    method = get_method(job.method_class)(dict(job.method_options))
    client, counters = method.prepare_client_data(client, client_preparation_seed(job.seed, client_id))
    model, spare = (build_model(job.model["backbone"], in_shape=tuple(client.x.shape[1:]), num_classes=num_classes,
                                **method.model_options()).to(device) for _ in range(2))
    models = (model, flatten_parameters(model), spare, flatten_parameters(spare))
    return Node(job, method, client, dict(counters), sha, num_classes, device, models)


def node_of(context: Context, message: Message) -> Node:
    """This node's state for the job the message belongs to."""
    return _node(context.run_id, context.node_id, tuple(sorted(message.content["job"].items())),
                 tuple(sorted(context.node_config.items())))


def identify(node: Node, message: Message) -> Message:
    """Who this node is: its client index, example and class counts, what preparing its data did, and the hash
    of the partition its data comes from (the server refuses a node of another partition)."""
    content = RecordDict({
        "identity": MetricRecord({"client_id": node.client.client_id, "num_examples": node.client.num_examples,
                                  **{f"counter/{k}": v for k, v in node.counters.items()}}),
        "counts": records.arrays({"class_counts": node.client.class_counts.cpu()}),
        "partition": ConfigRecord({"sha256": node.partition_sha256, "counters": list(node.counters)}),
    })
    return Message(content, reply_to=message)


def train(node: Node, message: Message) -> Message:
    """The method's client update from the weights the server sent; the upload and the round's tally."""
    weights, shared, config = records.received(message.content)
    node.method.receive_shared_state(shared, node.device)
    ctx = node.context(int(config["round"]), weights)
    upload = node.method.client_update(ctx, node.client)
    return Message(records.upload_reply(upload, ctx.tally), reply_to=message)


def ask(node: Node, message: Message) -> Message:
    """A hook of the method the server asks for by name (CCVR's feature statistics), with the sent weights."""
    weights, shared, config = records.received(message.content)
    node.method.receive_shared_state(shared, node.device)
    ctx = node.context(int(config["round"]), weights)
    ctx.flat.copy_(ctx.global_weights)
    answer = getattr(node.method, str(config["hook"]))(ctx, node.client)
    return Message(RecordDict({"answer": records.arrays(answer)}), reply_to=message)


def make_client_app() -> ClientApp:
    """The ClientApp: any job of any config, as each message names it."""
    app = ClientApp()

    def handler(step):
        def handle(message: Message, context: Context) -> Message:
            return step(node_of(context, message), message)
        handle.__name__ = step.__name__
        return handle

    app.query("identify")(handler(identify))
    app.train()(handler(train))
    app.query("ask")(handler(ask))
    return app
