"""A centralised reference: one client holding the whole imbalanced pool, trained by the engine with
the same optimiser, batch size and local epochs per round, so it sees the same epochs of data as a
federation whose clients all take part. It is the upper bound every FL table needs, labelled as a
reference in the tables and never a declared competitor.
"""

from __future__ import annotations

from baselines.fedavg import FedAvg


class Centralised(FedAvg):
    reference = True

    def prepare_clients(self, clients, seed):
        import torch

        from fedakd.engine import ClientData

        pooled = ClientData(
            client_id=0, x=torch.cat([c.x for c in clients]), y=torch.cat([c.y for c in clients]),
            num_examples=sum(c.num_examples for c in clients),
            class_counts=torch.stack([c.class_counts for c in clients]).sum(dim=0),
        )
        return [pooled], {"pooled_clients": float(len(clients))}
