"""CIFAR-10-LT offline: a tiny CIFAR-10 written in torchvision's on-disk layout (random images, the official
format) is partitioned long-tailed, the resnet backbone trains on it for one round, and config/paper.yaml (whose
GPU grid holds CIFAR-10) validates and builds every one of its CIFAR-10 partitions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from fedakd.cli import main
from tests.helpers import write_tiny_cifar10

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def cifar(tmp_path_factory):
    """300 training and 20 test images a class: enough for paper.yaml's transfer set of 50 a class and a
    long tail of 100 over 10 clients."""
    root = tmp_path_factory.mktemp("cifar")
    write_tiny_cifar10(root / "data", train_per_class=300, test_per_class=20)
    return root


def test_a_long_tailed_cifar10_partition_trains_the_resnet_for_a_round(cifar):
    config = yaml.safe_load((ROOT / "config" / "smoke.yaml").read_text())
    config.update(datasets=["cifar10"], data_root=str(cifar / "data"), tracking_uri=f"sqlite:///{cifar / 'mlflow.db'}",
                  device="cpu", settings={"lt100": {"imbalance": {"kind": "longtail", "factor": 100},
                                                    "split": {"kind": "dirichlet", "alpha": 0.5}}})
    config["model"] = {"backbone": "resnet"}
    config["federation"].update(clients=3, rounds=1, local_epochs=1, proxy_per_class=10)
    config["methods"] = {"fedakd": {"method": "fedakd", "distill_steps": 2}}
    path = cifar / "lt.yaml"
    path.write_text(yaml.safe_dump(config))
    job = ("--dataset", "cifar10", "--setting", "lt100", "--seed", "0")
    assert main(["partition", "--config", str(path), *job, "--out", str(cifar / "part")]) == 0
    manifest = json.loads((cifar / "part" / "manifest.json").read_text())
    # 290 a class left after the transfer set: floor(290 * 100^(-c/9)) gives 290, 173, ..., 2
    assert manifest["class_counts"][0] == 290 and manifest["class_counts"][9] == 2
    assert manifest["groups"]["tail"] and manifest["groups"]["head"] == [0, 1, 2]
    assert main(["train", "--config", str(path), *job, "--method", "fedakd", "--partition", str(cifar / "part"),
                 "--out", str(cifar / "run"), "--no-track", "--threads", "1"]) == 0
    metrics = json.loads((cifar / "run" / "metrics.json").read_text())
    assert metrics["model"]["backbone"] == "resnet" and len(metrics["history"]) == 1
    assert metrics["class_names"][0] == "airplane" and 0.0 <= metrics["final"]["balanced_accuracy"] <= 1.0


def test_paper_yaml_validates_and_builds_its_cifar10_partitions(cifar, capsys):
    from fedakd.config import load_config, partition_spec
    from fedakd.data import load_train_labels
    from fedakd.models import build_model
    from fedakd.partition import make_partition

    assert main(["validate", "--config", str(ROOT / "config" / "paper.yaml")]) == 0
    assert "valid;" in capsys.readouterr().out
    config = load_config(ROOT / "config" / "paper.yaml", [f"data_root={cifar / 'data'}"])
    assert "cifar10" in config["datasets"]
    labels = load_train_labels("cifar10", cifar / "data")
    for setting in config["settings"]:
        partition = make_partition(labels, 10, partition_spec(config, dataset="cifar10", setting=setting, seed=0))
        assert len(partition.client_indices) == config["federation"]["clients"]
        assert partition.transfer_counts.tolist() == [config["federation"]["proxy_per_class"]] * 10
    model = build_model("auto", in_shape=(3, 32, 32), num_classes=10, attention=True)
    assert type(model.features).__name__.lower().startswith("resnet")
