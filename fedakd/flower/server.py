"""The ServerApp: the engine's own round loop (fedakd.engine.run_federation) with Flower as its link to the
clients. Sampling, aggregation, the method's server step, what it deploys, the byte counts, the diagnostics
and the evaluation are the engine's; only the three calls that reach the clients (prepare, train, ask) travel
as Flower messages, so a method runs here unchanged and a run here can be compared with the engine's.

The run folder is the engine's (metrics.json through fedakd.record.RunRecord, with ``engine: flower``), and the
finished run is logged to the config's MLflow store like any other, tagged ``engine: flower``.
"""

from __future__ import annotations

import time

import torch
from flwr.app import Context, Message
from flwr.serverapp import Grid, ServerApp

from fedakd.flower import FlowerError, records
from fedakd.flower.settings import FlowerJob


class FlowerClients:
    """The engine's link to its clients over a Flower Grid: one ClientApp per client of the partition."""

    engine = "flower"
    holds_client_data = False  # the server never sees a client's examples

    def __init__(self, grid: Grid, job: FlowerJob, *, partition_sha256: str, timeout: float = 600.0,
                 wait: float = 120.0):
        self.grid, self.job, self.partition_sha256 = grid, job.to_config(), partition_sha256
        self.timeout, self.wait = timeout, wait
        self.nodes: dict[int, int] = {}  # client index -> node id

    # -- the three calls of the engine's link (fedakd.engine.InProcessClients) --------------------------
    def prepare(self, method, clients, seed: int):
        """Each node prepares its own data (its method's prepare_client_data) and says who it is; returns stand-ins
        for the clients (counts, no examples) and the summed counters, in client order as the engine sums them."""
        from fedakd.engine import ClientData
        from fedakd.method import Method

        if type(method).prepare_clients is not Method.prepare_clients:
            raise FlowerError(f"{type(method).__name__} prepares every client's data at once (a centralised "
                              f"reference), which a federation cannot do")
        node_ids = self._await_nodes(len(clients))
        replies = self._exchange([Message(records.broadcast(self.job, torch.zeros(0), 0), dst_node_id=node,
                                          message_type=records.IDENTIFY) for node in node_ids])
        identities = {}
        for node, reply in zip(node_ids, replies):
            identity, partition = dict(reply.content["identity"]), reply.content["partition"]
            if partition["sha256"] != self.partition_sha256:
                raise FlowerError(f"node {node} holds data of partition {partition['sha256'][:12]}, not this job's "
                                  f"{self.partition_sha256[:12]}; give every SuperNode a shard of this partition")
            client_id = int(identity["client_id"])
            if client_id in identities:
                raise FlowerError(f"two nodes ({self.nodes[client_id]} and {node}) hold client {client_id}; give each "
                                  f"SuperNode its own partition-id")
            self.nodes[client_id] = node
            identities[client_id] = (identity, reply.content["counts"], list(partition["counters"]))
        if sorted(identities) != list(range(len(clients))):
            raise FlowerError(f"the nodes hold clients {sorted(identities)}, the partition has 0..{len(clients) - 1}")
        stubs, counters = [], {}
        for client_id in range(len(clients)):
            identity, counts, names = identities[client_id]
            class_counts = counts.to_torch_state_dict()["class_counts"].clone()
            empty = torch.zeros(0)
            stubs.append(ClientData(client_id, empty, empty, int(identity["num_examples"]), class_counts))
            for name in names:
                counters[name] = counters.get(name, 0) + identity[f"counter/{name}"]
        return stubs, counters

    def train(self, method, ctx):
        """Every sampled client's update, in client order, and what the clients counted and recorded."""
        shared = method.shared_state()
        replies = self._exchange([self._message(ctx, client.client_id, ctx.global_weights, records.TRAIN, shared)
                                  for client in ctx.clients])
        uploads = []
        for reply in replies:
            upload, tally = records.upload_of(reply.content, ctx.device)
            ctx.count(local_steps=tally["local_steps"], server_steps=tally["server_steps"],
                      bytes_down=tally["bytes_down"], bytes_up=tally["bytes_up"])
            for name, value in tally["losses"].items():
                ctx.record_loss(name, torch.tensor(value, dtype=torch.float32, device=ctx.device))
            uploads.append(upload)
        return uploads

    def ask(self, ctx, compute, weights):
        """A further exchange: each sampled client runs the method's hook ``compute`` (asked for by name)."""
        from fedakd.engine import tensor_bytes

        if getattr(compute, "__self__", None) is None:
            raise FlowerError("a further exchange over Flower asks the clients for a hook of the method by name; "
                              "pass a bound method of the method (e.g. self.feature_statistics), not a function")
        shared = compute.__self__.shared_state()
        replies = self._exchange([self._message(ctx, client.client_id, weights, records.ASK, shared,
                                                hook=compute.__name__) for client in ctx.clients])
        results = []
        for client, reply in zip(ctx.clients, replies):
            answer = {name: value.to(ctx.device) for name, value in records.tensors(reply.content["answer"]).items()}
            ctx.count(bytes_down=tensor_bytes([weights]), bytes_up=tensor_bytes(answer.values()))
            results.append((client, answer))
        return results

    # -- messages ---------------------------------------------------------------------------------------
    def _message(self, ctx, client_id: int, weights, message_type: str, shared=None, **config) -> Message:
        return Message(records.broadcast(self.job, weights.cpu(), ctx.round, shared, **config),
                       dst_node_id=self.nodes[client_id], message_type=message_type, group_id=str(ctx.round))

    def _exchange(self, messages: list[Message]) -> list[Message]:
        """The replies to ``messages``, in their order; a missing or failed reply is a FlowerError."""
        replies = {reply.metadata.src_node_id: reply
                   for reply in self.grid.send_and_receive(messages, timeout=self.timeout)}
        ordered = []
        for message in messages:
            node = message.metadata.dst_node_id
            reply = replies.get(node)
            if reply is None:
                raise FlowerError(f"node {node} did not answer a {message.metadata.message_type} message within "
                                  f"{self.timeout:g} s")
            if reply.has_error():
                raise FlowerError(f"node {node} failed a {message.metadata.message_type} message: {reply.error.reason}")
            ordered.append(reply)
        return ordered

    def _await_nodes(self, count: int) -> list[int]:
        deadline = time.monotonic() + self.wait
        while True:
            nodes = sorted(self.grid.get_node_ids())
            if len(nodes) >= count:
                return nodes
            if time.monotonic() > deadline:
                raise FlowerError(f"{len(nodes)} SuperNodes connected within {self.wait:g} s, and the partition has "
                                  f"{count} clients; start one SuperNode per client")
            time.sleep(1.0)


def run_server(flower_job: FlowerJob, grid: Grid) -> dict:
    """Train the job with the clients of ``grid`` into ``flower_job.out``; log it to MLflow unless told not to."""
    from fedakd.jobs import train_job
    from fedakd.partition import load_partition

    job = flower_job.job_spec()
    partition = load_partition(flower_job.partition, job.partition)
    link = FlowerClients(grid, flower_job, partition_sha256=partition.sha256)
    metrics = train_job(job, out_dir=flower_job.out, partition_dir=flower_job.partition, threads=flower_job.threads,
                        link=link)
    if flower_job.track:
        from fedakd.track import track_job
        from fedakd.tracking import ensure_experiment

        experiment_id = ensure_experiment(job.tracking_uri, job.experiment, job.tracking)
        track_job(flower_job.out, tracking_uri=job.tracking_uri, experiment_id=experiment_id)
    return metrics


def make_server_app(jobs: list[FlowerJob] | None = None) -> ServerApp:
    """The ServerApp; ``jobs`` fixes the jobs it runs one after the other (a simulation), else the run's
    run_config names one."""
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        for job in jobs if jobs is not None else [FlowerJob.from_config(context.run_config)]:
            run_server(job, grid)

    return app
