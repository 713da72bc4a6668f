"""CReFF (Shang et al., IJCAI 2022): classifier re-training with federated features.

Each round, besides FedAvg's local training:

1. every sampled client computes, for each class it holds, the gradient of the cross-entropy with
   respect to a linear classifier (the server's last re-trained one, sent with the global model) on
   features of the global backbone: ``real_batch_size`` random examples of that class, averaged over
   ``gradient_repeats`` draws; it uploads these per-class gradients (counted in the bytes);
2. the server averages each class's gradients over the clients holding it, and updates its
   ``features_per_class`` federated features per class for ``match_steps`` SGD steps so that the same
   classifier's gradient on them matches the real one (Zhao et al.'s gradient-matching distance: sum
   over the classifier's rows of 1 - cosine, plus 1 - cosine of the bias);
3. the server re-trains a fresh linear classifier on the federated features (``retrain_epochs``
   passes of SGD) and deploys the FedAvg backbone with it; the FedAvg model itself, head included, is
   what the next round starts from.

The federated features and the re-trained classifier persist across rounds (saved in the checkpoint).
Defaults are the reference implementation's (CReFF-FL options.py): 100 features per class, 100
matching steps at lr 0.1, 300 re-training epochs at lr 0.01 in batches of 32, real batches of 32
drawn 10 times.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from baselines.classifier import embed_all, head_views, init_linear, train_linear
from baselines.fedavg import FedAvg
from fedakd.seeding import CREFF_CLIENT, CREFF_INIT, CREFF_SERVER

if TYPE_CHECKING:
    import torch


def classifier_gradients(features: "torch.Tensor", classes: "torch.Tensor", weight: "torch.Tensor",
                         bias: "torch.Tensor") -> tuple["torch.Tensor", "torch.Tensor"]:
    """For each block k, the gradient of the mean cross-entropy CE(W f + b, classes[k]) over features[k].

    features (K, M, d) holds M feature vectors for each of K blocks, block k labelled classes[k];
    returns (K, C, d) and (K, C). The softmax's gradient in closed form, (p - onehot(c))^T f / M and
    mean(p - onehot(c)), so it is differentiable in ``features`` by an ordinary backward pass (what
    gradient matching needs) and all classes are done at once.
    """
    import torch
    import torch.nn.functional as F

    probabilities = torch.softmax(features @ weight.T + bias, dim=-1)  # (K, M, C)
    error = probabilities - F.one_hot(classes, weight.shape[0]).to(features.dtype)[:, None, :]
    return torch.einsum("kmc,kmd->kcd", error, features) / features.shape[1], error.mean(dim=1)


def matching_distance(synthetic: tuple["torch.Tensor", ...], real: tuple["torch.Tensor", ...]) -> "torch.Tensor":
    """Per class: over the classifier's gradients, the sum over rows of 1 - cos(real row, synthetic row),
    a bias being one row (Zhao et al. 2021's layer-wise distance, as CReFF uses it); summed over classes.

    synthetic and real are (weight gradients (K, C, d), bias gradients (K, C)) for K classes.
    """
    def one_minus_cosine(s, r):
        return 1 - (s * r).sum(dim=-1) / (s.norm(dim=-1) * r.norm(dim=-1) + 1e-6)

    (s_weight, s_bias), (r_weight, r_bias) = synthetic, real
    return one_minus_cosine(s_weight, r_weight).sum() + one_minus_cosine(s_bias, r_bias).sum()


class CReFF(FedAvg):
    options_schema = {
        "features_per_class": {"type": "integer", "minimum": 1, "default": 100,
                               "description": "federated features the server learns per class"},
        "match_steps": {"type": "integer", "minimum": 0, "default": 100,
                        "description": "SGD steps of gradient matching per round"},
        "feature_lr": {"type": "number", "exclusiveMinimum": 0, "default": 0.1,
                       "description": "learning rate of the federated features"},
        "retrain_epochs": {"type": "integer", "minimum": 1, "default": 300,
                           "description": "passes of SGD over the federated features per round"},
        "retrain_lr": {"type": "number", "exclusiveMinimum": 0, "default": 0.01,
                       "description": "learning rate of the re-trained classifier"},
        "retrain_batch_size": {"type": "integer", "minimum": 1, "default": 32,
                               "description": "federated features per re-training step"},
        "real_batch_size": {"type": "integer", "minimum": 1, "default": 32,
                            "description": "a client's examples per class per gradient draw"},
        "gradient_repeats": {"type": "integer", "minimum": 1, "default": 10,
                             "description": "gradient draws a client averages per class"},
    }

    def __init__(self, options):
        super().__init__(options)
        self.features = None  # (C * features_per_class, d): federated features, class-major
        self.head = None  # (weight, bias) of the last re-trained classifier

    # -- state across rounds --------------------------------------------------------------
    def state_dict(self):
        if self.features is None:
            return {}
        return {"features": self.features.cpu(), "head_weight": self.head[0].cpu(), "head_bias": self.head[1].cpu()}

    def load_state_dict(self, state, device):
        if state:
            self.features = state["features"].to(device)
            self.head = (state["head_weight"].to(device), state["head_bias"].to(device))

    def shared_state(self):
        """The classifier the clients take their gradients with (the server's last re-trained one)."""
        return {} if self.head is None else {"head_weight": self.head[0].cpu(), "head_bias": self.head[1].cpu()}

    def receive_shared_state(self, state, device):
        if state:
            self.head = (state["head_weight"].to(device), state["head_bias"].to(device))

    def _start(self, ctx) -> None:
        """Round 1: a random classifier and random features (CReFF's torch.randn), from our own stream."""
        import torch

        weight, _ = head_views(ctx, ctx.global_weights)
        generator = ctx.generator(CREFF_INIT)
        self.head = init_linear(ctx.num_classes, weight.shape[1], generator, ctx.device)
        count = ctx.num_classes * self.options["features_per_class"]
        self.features = torch.randn(count, weight.shape[1], generator=generator).to(ctx.device)

    # -- client -------------------------------------------------------------------------
    def real_gradients(self, ctx, client) -> dict[str, "torch.Tensor"]:
        """Per class the client holds: the classifier's gradient on the global backbone's features,
        averaged over ``gradient_repeats`` random batches of ``real_batch_size`` of its examples."""
        import torch

        ctx.flat.copy_(ctx.global_weights)
        features = embed_all(ctx, client.x)
        generator = ctx.generator(CREFF_CLIENT, client.client_id)
        classes = torch.nonzero(client.class_counts > 0).flatten().tolist()
        labels = client.y.cpu()
        grad_weight, grad_bias = [], []
        for c in classes:
            members = torch.nonzero(labels == c).flatten()
            draws = [members[torch.randperm(members.numel(), generator=generator)[: self.options["real_batch_size"]]]
                     for _ in range(self.options["gradient_repeats"])]
            batches = torch.stack([features[idx.to(ctx.device)] for idx in draws])  # (repeats, B, d)
            grads = classifier_gradients(batches, torch.full((len(draws),), c, device=ctx.device), *self.head)
            grad_weight.append(grads[0].mean(dim=0))
            grad_bias.append(grads[1].mean(dim=0))
        return {"classes": torch.tensor(classes, dtype=torch.int64), "grad_weight": torch.stack(grad_weight),
                "grad_bias": torch.stack(grad_bias)}

    def client_update(self, ctx, client):
        from fedakd.engine import tensor_bytes

        if self.head is None:  # round 1 (a server's classifier arrives by receive_shared_state later on)
            self._start(ctx)
        ctx.count(bytes_down=tensor_bytes(self.head))  # the server's classifier travels with the model
        extras = self.real_gradients(ctx, client)
        upload = ctx.local_sgd(client)
        upload.extras.update(extras)
        return upload

    # -- server -------------------------------------------------------------------------
    def match_features(self, ctx, uploads) -> int:
        """Gradient matching: move the federated features so the classifier's gradients on them match the
        clients' (averaged per class over the clients holding it). Returns the steps taken."""
        import torch

        from fedakd.optim import SGD

        per_class: dict[int, list] = {}
        for upload in uploads:
            for c, gw, gb in zip(upload.extras["classes"].tolist(), upload.extras["grad_weight"],
                                 upload.extras["grad_bias"]):
                per_class.setdefault(c, []).append((gw, gb))
        real = {c: (torch.stack([g[0] for g in grads]).mean(dim=0), torch.stack([g[1] for g in grads]).mean(dim=0))
                for c, grads in per_class.items()}
        classes = sorted(real)
        targets = (torch.stack([real[c][0] for c in classes]), torch.stack([real[c][1] for c in classes]))
        class_ids = torch.tensor(classes, device=ctx.device)
        features = self.features.detach().clone().requires_grad_(True)
        optimizer = SGD([features], lr=self.options["feature_lr"])
        weight, bias = self.head
        m = self.options["features_per_class"]
        for _ in range(self.options["match_steps"]):
            blocks = features.view(ctx.num_classes, m, -1)[class_ids]  # the classes some client holds
            loss = matching_distance(classifier_gradients(blocks, class_ids, weight, bias), targets)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        self.features = features.detach()
        return self.options["match_steps"]

    def server_update(self, ctx, uploads, averaged):
        import torch

        from fedakd.engine import ServerUpdate

        if self.features is None:  # a server that ran no client update (a real federation): the same start
            self._start(ctx)
        steps = self.match_features(ctx, uploads)
        weight, _ = head_views(ctx, averaged)
        generator = ctx.generator(CREFF_SERVER)
        head_weight, head_bias = init_linear(ctx.num_classes, weight.shape[1], generator, ctx.device)
        labels = torch.arange(ctx.num_classes, device=ctx.device).repeat_interleave(self.options["features_per_class"])
        steps += train_linear(head_weight, head_bias, self.features, labels, epochs=self.options["retrain_epochs"],
                              lr=self.options["retrain_lr"], batch_size=self.options["retrain_batch_size"],
                              generator=generator)
        ctx.count(server_steps=steps)
        self.head = (head_weight, head_bias)
        deployed = averaged.clone()
        deployed_weight, deployed_bias = head_views(ctx, deployed)
        deployed_weight.copy_(head_weight)
        deployed_bias.copy_(head_bias)
        return ServerUpdate(averaged, deployed=deployed)
