"""The federated simulation engine: one flat loop that runs every method (docs/method-card.md §3).

Each round the server samples clients, sends the global weights, each sampled client trains locally and
uploads its weights and example count, the server aggregates, may train further (distillation, classifier
re-training), and the deployed model is evaluated. A method changes only its hooks (fedakd.method.Method);
the engine knows none by name.

- ``context``: what a method sees (the data, uploads, the round's context and its services, ServerUpdate);
- ``loop``: ``run_federation`` and the steps of a round;
- ``weights``: flat weight vectors (one buffer per model; averaging and byte counts over vectors);
- ``checkpoint``: the server's state across rounds and its checkpoint.

Why it is fast: all data are tensors already on the device, batches are fetched by indexing them, one model
object serves every client (weights are loaded into one flat parameter buffer, never deep-copied),
aggregation is arithmetic over flat vectors, and the step loop never synchronises with the host.

Why it is reproducible: every random stream is derived from (seed, round, purpose, client) (fedakd.seeding),
so a run resumed from its checkpoint after round r draws exactly what an uninterrupted run draws, and every
method sees the same client sampling and the same initial weights for a given seed.

What it counts (the cost table): local SGD steps, server optimisation steps, and bytes sent down and up --
the weights each way per sampled client plus every extra upload a method makes (``Upload.extras``,
``RoundContext.count``).
"""

from fedakd.engine.checkpoint import Checkpoint, CheckpointError, ServerState, Totals
from fedakd.engine.context import (ClientData, ClientQuery, FederatedData, Federation, InProcessClients, LossFn,
                                   RoundContext, RunSetup, ServerUpdate, Tally, Upload)
from fedakd.engine.loop import (VALIDATION_PREFIX, Callback, DeviceError, FederationResult, build_server,
                                clients_per_round, evaluate, resolve_device, run_federation, sample_clients)
from fedakd.engine.weights import flat_layout, flatten_parameters, predict_logits, tensor_bytes, weighted_average

__all__ = [
    "VALIDATION_PREFIX", "Callback", "Checkpoint", "CheckpointError", "ClientData", "ClientQuery", "DeviceError",
    "FederatedData", "Federation", "FederationResult", "InProcessClients", "LossFn", "RoundContext", "RunSetup", "ServerState", "ServerUpdate", "Tally",
    "Totals", "Upload", "build_server", "clients_per_round", "evaluate", "flat_layout", "flatten_parameters",
    "predict_logits", "resolve_device", "run_federation", "sample_clients", "tensor_bytes", "weighted_average",
]
