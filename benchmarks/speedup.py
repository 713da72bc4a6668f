"""The engine against benchmarks/reference.py (FedAvg in the common per-sample / deepcopy / per-key style):
seconds per round on the same partition, initial weights and settings, with both accuracies."""

from __future__ import annotations

import gzip
import shutil
import statistics
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.common import BACKBONE, DATASET, NIID_FEDERATION, NIID_SPLIT, Data, make_split
from benchmarks.throughput import time_federation


def torchvision_root(data_root: str, into: Path) -> Path:
    """A root with FashionMNIST/raw/ holding the decompressed IDX files torchvision's class reads."""
    from fedakd.data import ensure_dataset

    found = ensure_dataset(DATASET, data_root, download=False)
    raw = into / "FashionMNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for name in found["files"]:
        source = Path(found["source"]) / name
        opener = gzip.open if name.endswith(".gz") else open
        with opener(source, "rb") as src, open(raw / name.removesuffix(".gz"), "wb") as dst:
            shutil.copyfileobj(src, dst)
    return into


def bench_reference(data: Data, *, data_root: str, rounds: int, local_epochs: int, seed: int) -> dict[str, Any]:
    """FedAvg rounds of benchmarks/reference.py and of the engine: same partition, initial weights, settings."""
    import torch
    from torch.utils.data import Subset

    from benchmarks.reference import fashion_mnist, run_reference
    from fedakd.data import dataset_spec
    from fedakd.seeding import INIT
    from fedakd.models import build_model
    from fedakd.seeding import derive_seed

    federation = {**NIID_FEDERATION, "local_epochs": local_epochs, "rounds": rounds}
    partition = make_split(data, clients=federation["clients"], split=NIID_SPLIT, proxy_per_class=0, seed=seed)
    engine = time_federation("fedavg", data, partition, federation, warmup_rounds=0, seed=seed)

    spec = dataset_spec(DATASET)
    with tempfile.TemporaryDirectory(prefix="fedakd-bench-") as tmp:
        root = str(torchvision_root(data_root, Path(tmp)))
        train_set = fashion_mnist(root, True, spec.mean[0], spec.std[0])
        test_set = fashion_mnist(root, False, spec.mean[0], spec.std[0])
        test_set = Subset(test_set, range(len(data.y_test)))  # the engine's test set: a prefix in --quick
        torch.manual_seed(derive_seed(seed, INIT))  # the engine's initial weights
        model = build_model(BACKBONE, in_shape=tuple(data.x_train.shape[1:]), num_classes=data.num_classes)
        reference = run_reference(model, train_set, test_set, partition.client_indices, rounds=rounds,
                                  local_epochs=local_epochs, batch_size=federation["batch_size"],
                                  lr=federation["lr"], momentum=federation["momentum"],
                                  weight_decay=federation["weight_decay"])
    reference_seconds = statistics.median(reference.round_seconds)
    return {
        "speedup": reference_seconds / engine["seconds_per_round"],
        "engine_seconds_per_round": engine["seconds_per_round"], "reference_seconds_per_round": reference_seconds,
        "engine_round_seconds": engine["round_seconds"], "reference_round_seconds": reference.round_seconds,
        "engine_accuracy": engine["accuracy"], "reference_accuracy": reference.test_accuracy,
        "accuracy_gap_points": 100 * abs(engine["accuracy"][-1] - reference.test_accuracy[-1]),
        "federation": federation, "split": NIID_SPLIT, "examples": len(data.y_train),
        "partition_sha256": partition.sha256,
    }
