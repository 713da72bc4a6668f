"""CCVR (Luo et al., NeurIPS 2021): FedAvg, then classifier calibration with virtual representations.

After the last round, every client of that round computes, with the final global model, the mean,
covariance and count of its features (what the head sees) for each class it holds, and uploads them
(counted in the bytes: a d-vector, a d x d matrix and a count per class held). The server pools them
into one Gaussian per class -- exactly the mean and covariance of the union of the clients' features
(Luo et al.'s Eq. 3-4) -- draws ``virtual_per_class`` virtual features per class, and re-trains the
head on them with SGD; the backbone is left as FedAvg trained it. Rounds before the last are FedAvg's.

Defaults: 200 virtual features per class (FL-bench's reimplementation; Luo et al. tune the number per
dataset, and their paper's exact values could not be checked here), SGD lr 0.01, 10 epochs over the
virtual features in batches of 64 (our choice: enough steps to move a biased head; FL-bench takes one
epoch). A class no client holds gets no virtual features.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from baselines.classifier import embed_all, head_views, train_linear
from baselines.fedavg import FedAvg
from fedakd.seeding import CCVR

if TYPE_CHECKING:
    import torch


def class_feature_statistics(features: "torch.Tensor", labels: "torch.Tensor") -> dict[str, "torch.Tensor"]:
    """Per class present: its id, count, mean and unbiased covariance (zeros for a class of one example)."""
    import torch

    classes = torch.unique(labels)
    counts, means, covariances = [], [], []
    for c in classes:
        block = features[labels == c].to(torch.float64)
        n = block.shape[0]
        mean = block.mean(dim=0)
        centred = block - mean
        covariance = centred.T @ centred / (n - 1) if n > 1 else torch.zeros(block.shape[1], block.shape[1],
                                                                             dtype=torch.float64)
        counts.append(n), means.append(mean), covariances.append(covariance)
    return {"classes": classes.to(torch.int64), "counts": torch.tensor(counts, dtype=torch.float32),
            "means": torch.stack(means).to(torch.float32), "covariances": torch.stack(covariances).to(torch.float32)}


def pool_statistics(statistics: list[dict[str, "torch.Tensor"]], num_classes: int, dim: int):
    """One (count, mean, covariance) per class from the clients' (Luo et al., Eq. 3-4):
    mu = sum_k n_k mu_k / N;
    Sigma = sum_k (n_k - 1)/(N - 1) Sigma_k + sum_k n_k/(N - 1) mu_k mu_k^T - N/(N - 1) mu mu^T."""
    import torch

    count = torch.zeros(num_classes, dtype=torch.float64)
    first = torch.zeros(num_classes, dim, dtype=torch.float64)  # sum_k n_k mu_k
    second = torch.zeros(num_classes, dim, dim, dtype=torch.float64)  # sum_k (n_k - 1) Sigma_k + n_k mu_k mu_k^T
    for stats in statistics:
        for c, n, mu, sigma in zip(stats["classes"].tolist(), stats["counts"].tolist(),
                                   stats["means"].to(torch.float64), stats["covariances"].to(torch.float64)):
            count[c] += n
            first[c] += n * mu
            second[c] += (n - 1) * sigma + n * torch.outer(mu, mu)
    mean = first / count.clamp_min(1).unsqueeze(1)
    covariance = torch.zeros_like(second)
    for c in range(num_classes):
        if count[c] > 1:
            covariance[c] = (second[c] - count[c] * torch.outer(mean[c], mean[c])) / (count[c] - 1)
    return count, mean, covariance


def sample_virtual_features(count, mean, covariance, per_class: int, generator: "torch.Generator"):
    """``per_class`` draws from N(mean_c, covariance_c) for every class with examples, seeded.

    Sampled through the covariance's eigendecomposition with negative eigenvalues (rounding) clamped
    to zero, so a singular covariance (ReLU features that are often exactly 0) is fine.
    """
    import torch

    features, labels = [], []
    for c in torch.nonzero(count > 0).flatten().tolist():
        eigenvalues, eigenvectors = torch.linalg.eigh(covariance[c])
        scale = eigenvectors * eigenvalues.clamp_min(0).sqrt()
        z = torch.randn(per_class, mean.shape[1], generator=generator, dtype=torch.float64)
        features.append(mean[c] + z @ scale.T)
        labels.append(torch.full((per_class,), c, dtype=torch.int64))
    return torch.cat(features).to(torch.float32), torch.cat(labels)


class FedAvgCCVR(FedAvg):
    options_schema = {
        "virtual_per_class": {"type": "integer", "minimum": 1, "default": 200,
                              "description": "virtual features drawn per class"},
        "calibration_epochs": {"type": "integer", "minimum": 0, "default": 10,
                               "description": "passes of SGD over the virtual features"},
        "calibration_lr": {"type": "number", "exclusiveMinimum": 0, "default": 0.01,
                           "description": "SGD learning rate of the calibration"},
        "calibration_batch_size": {"type": "integer", "minimum": 1, "default": 64,
                                   "description": "virtual features per calibration step"},
    }

    def feature_statistics(self, ctx, client) -> dict[str, "torch.Tensor"]:
        """A client's answer to the last round's query: count, mean and covariance of its features per class
        under the weights the server sent (ctx.model holds them)."""
        return class_feature_statistics(embed_all(ctx, client.x), client.y)

    def server_update(self, ctx, uploads, averaged):
        if ctx.round != ctx.federation.rounds or self.options["calibration_epochs"] == 0:
            return super().server_update(ctx, uploads, averaged)
        from fedakd.engine import ServerUpdate

        answers = ctx.client_pass(self.feature_statistics, averaged)
        weight, _ = head_views(ctx, averaged)
        count, mean, covariance = pool_statistics([stats for _, stats in answers], ctx.num_classes, weight.shape[1])
        generator = ctx.generator(CCVR)
        features, labels = sample_virtual_features(count, mean, covariance, self.options["virtual_per_class"],
                                                   generator)
        calibrated = averaged.clone()
        head_weight, head_bias = head_views(ctx, calibrated)
        steps = train_linear(head_weight, head_bias, features.to(ctx.device), labels.to(ctx.device),
                             epochs=self.options["calibration_epochs"], lr=self.options["calibration_lr"],
                             batch_size=self.options["calibration_batch_size"], generator=generator)
        ctx.count(server_steps=steps)
        return ServerUpdate(calibrated)
