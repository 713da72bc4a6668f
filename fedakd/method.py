"""The hook interface every federated method implements.

The engine (fedakd.engine) runs rounds and knows no method by name. A method is
a small object whose hooks say what differs from plain FedAvg:

- ``model_options()``        how the global model is built (e.g. with attention);
- ``prepare_clients()``      once per run, what the clients do to their own data (SMOTE),
                             by default ``prepare_client_data()`` for each client;
- ``client_update()``        local training from the global weights; returns the upload
                             (weights, counts, and any extra tensors, which count as bytes up);
- ``aggregate()``            server: uploads -> the average (weighted mean);
- ``server_update()``        server: after aggregation (distillation, fine-tuning, classifier
                             re-training); returns a ServerUpdate: the weights it broadcasts next
                             round, the model it deploys when that is another one, and notes;
- ``state_dict()`` / ``load_state_dict()``  server state that lives across rounds (saved
                             in the checkpoint, so a resumed run equals an uninterrupted one);
- ``shared_state()`` / ``receive_shared_state()``  server state the clients' hooks read (CReFF's
                             classifier): in the engine server and clients share one object, over a
                             real federation (fedakd.flower) it travels with the weights.

What a hook sees is in fedakd/engine/context.py (RoundContext: the round's inputs, the models
to work in, local SGD, a further exchange with the clients, seeded generators, and ``count``,
the one call that counts steps and bytes).

Options come from the config (``methods.<name>``) and are validated against
``options_schema`` (JSON Schema properties with defaults) before any work starts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:  # imported for annotations only: keep job start-up cheap
    import torch

    from fedakd.engine import ClientData, RoundContext, ServerUpdate, Upload


class Method:
    """FedAvg's behaviour; subclasses override only what differs."""

    #: JSON Schema ``properties`` for this method's options (defaults are filled in).
    options_schema: ClassVar[dict[str, Any]] = {}
    #: True for a reference row (e.g. centralised training): tabulated, never a declared competitor.
    reference: ClassVar[bool] = False

    @classmethod
    def check_options(cls, options: dict[str, Any]) -> list[str]:
        """Problems with a combination of (schema-valid) options, one sentence each."""
        return []

    @classmethod
    def needs_transfer_set(cls, options: dict[str, Any]) -> bool:
        """Whether these options train on the server's labelled transfer set (proxy_per_class > 0)."""
        return False

    @classmethod
    def needs_validation_split(cls, options: dict[str, Any]) -> bool:
        """Whether these options read the validation split during training (validation_per_class > 0)."""
        return False

    def __init__(self, options: dict[str, Any]):
        self.options = dict(options)

    # -- construction -----------------------------------------------------------------
    def model_options(self) -> dict[str, Any]:
        """Keyword arguments for fedakd.models.build_model (e.g. ``attention``)."""
        return {"attention": False}

    # -- client side ------------------------------------------------------------------
    def prepare_clients(self, clients: list["ClientData"], seed: int) -> tuple[list["ClientData"], dict[str, float]]:
        """Once per run: each client transforms its own data; returns the clients and summed counters."""
        from fedakd.seeding import client_preparation_seed

        prepared, counters = [], {}
        for client in clients:
            client, found = self.prepare_client_data(client, client_preparation_seed(seed, client.client_id))
            for key, value in found.items():
                counters[key] = counters.get(key, 0) + value
            prepared.append(client)
        return prepared, counters

    def prepare_client_data(self, client: "ClientData", seed: int) -> tuple["ClientData", dict[str, float]]:
        """Transform a client's data once per run; returns it and counters to log."""
        return client, {}

    def client_update(self, ctx: "RoundContext", client: "ClientData") -> "Upload":
        """Local training from ``ctx.global_weights``: E epochs of SGD."""
        return ctx.local_sgd(client)

    # -- server side ------------------------------------------------------------------
    def aggregate(self, ctx: "RoundContext", uploads: list["Upload"]) -> "torch.Tensor":
        """Weights averaged in proportion to client example counts (McMahan et al. 2017)."""
        from fedakd.engine import weighted_average

        return weighted_average([u.weights for u in uploads], [u.num_examples for u in uploads])

    def server_update(self, ctx: "RoundContext", uploads: list["Upload"], averaged: "torch.Tensor") -> "ServerUpdate":
        """After aggregation: what the server broadcasts (and deploys). FedAvg keeps the average."""
        from fedakd.engine import ServerUpdate

        return ServerUpdate(averaged)

    # -- state across rounds ----------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Server-side state kept across rounds (tensors and plain values); FedAvg keeps none."""
        return {}

    def load_state_dict(self, state: dict[str, Any], device: "torch.device") -> None:
        """Restore what ``state_dict`` returned (from a checkpoint)."""

    # -- state the clients read -------------------------------------------------------
    def shared_state(self) -> dict[str, "torch.Tensor"]:
        """Server state a client's hooks read, sent with the weights over a real federation; FedAvg has none.
        (A method counts its bytes itself, in client_update, as CReFF does.)"""
        return {}

    def receive_shared_state(self, state: dict[str, "torch.Tensor"], device: "torch.device") -> None:
        """On a client over a real federation: take what the server's ``shared_state`` returned."""
