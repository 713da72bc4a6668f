"""What several test modules need: the smoke config in a folder of its own, free loopback ports, MLflow
servers started, waited for and stopped, and the runs in a pipeline's MLflow store."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def smoke_config(folder: Path) -> Path:
    """config/smoke.yaml with its MLflow store and data root inside ``folder``; returns the config's path."""
    config = yaml.safe_load((ROOT / "config" / "smoke.yaml").read_text())
    config["tracking_uri"] = f"sqlite:///{folder / 'mlflow.db'}"
    config["data_root"] = str(folder / "data")
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_mlflow(command: str, port: int, *options: str, log: Path | None = None,
                 timeout: float = 180) -> subprocess.Popen:
    """`mlflow server` or `mlflow ui` on 127.0.0.1:port, in a process group of its own (so that all its
    workers can be stopped, or killed like a crash), once /health answers."""
    mlflow = Path(sys.executable).with_name("mlflow")
    process = subprocess.Popen([str(mlflow), command, *options, "--host", "127.0.0.1", "--port", str(port)],
                               stdout=subprocess.DEVNULL, stderr=open(log, "w") if log else subprocess.DEVNULL,
                               start_new_session=True)
    deadline = time.time() + timeout
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
            return process
        except OSError:
            assert process.poll() is None, f"mlflow {command} exited" + (f": {log.read_text()[-3000:]}" if log else "")
            assert time.time() < deadline, f"mlflow {command} did not start in {timeout:g} s"
            time.sleep(0.5)


def stop(process: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    """Signal a server's whole process group and wait for it."""
    os.killpg(process.pid, sig)
    process.wait(timeout=60)


def train_jobs(config: Path, out: Path, jobs: list[tuple[str, int]], tracking_uri: str,
               experiment_id: str) -> list[subprocess.Popen]:
    """`fedakd train` for each (method, seed) of the digits setting at once, logging to ``tracking_uri``."""
    return [
        subprocess.Popen([sys.executable, "-m", "fedakd.cli", "train", "--config", str(config), "--dataset", "digits",
                          "--setting", "lt10-dir1", "--method", method, "--seed", str(seed), "--out",
                          str(out / f"{method}-{seed}"), "--experiment-id", experiment_id, "--threads", "1",
                          "--set", f"tracking_uri={tracking_uri}"], stderr=subprocess.PIPE, text=True)
        for method, seed in jobs
    ]


def pipeline_store(workdir: Path) -> str:
    """The tracking URI of the pipeline's MLflow store under ``workdir`` (the configs' results/mlflow.db)."""
    return f"sqlite:///{workdir / 'results' / 'mlflow.db'}"


def pipeline_experiment(workdir: Path, experiment: str):
    """An MLflow client on the pipeline's store under ``workdir`` and the id of ``experiment`` in it."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=pipeline_store(workdir))
    return client, client.get_experiment_by_name(experiment).experiment_id


def finished_job_runs(workdir: Path, experiment: str) -> list:
    """The FINISHED runs of ``experiment`` in the pipeline store under ``workdir``, one per training job: the
    study's summary run (tagged fedakd.summary, no job_key) is not a job's run."""
    from fedakd.tracking import SUMMARY_TAG

    client, experiment_id = pipeline_experiment(workdir, experiment)
    runs = client.search_runs([experiment_id], max_results=1000)  # active (not deleted) runs
    return [run for run in runs if run.info.status == "FINISHED" and SUMMARY_TAG not in run.data.tags]


def run_id(run_dir: Path) -> str:
    """The MLflow run a run folder was logged as (its mlflow.json, written by the tracking step)."""
    import json

    record = json.loads((Path(run_dir) / "mlflow.json").read_text())
    assert record["finished"], record
    return record["run_id"]


def write_tiny_cifar10(root: Path, train_per_class: int, test_per_class: int, seed: int = 0,
                       fill: dict[int, int] | None = None) -> Path:
    """A tiny CIFAR-10 in torchvision's on-disk layout (the official python archive extracted under ``root``):
    five training batches, a test batch and batches.meta, pickled dicts of uint8 rows (1024 red, 1024 green,
    1024 blue values per image) and labels. Random images, or every image's channel c set to ``fill[c]``."""
    import pickle

    import numpy as np

    from fedakd.data import DATASETS

    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)

    def batch(per_class: int, label: str) -> dict:
        labels = [c for c in range(10) for _ in range(per_class)]
        rng.shuffle(labels)
        images = rng.integers(0, 256, size=(len(labels), 3, 32, 32), dtype=np.uint8)
        for channel, value in (fill or {}).items():
            images[:, channel] = value
        return {b"batch_label": label.encode(), b"labels": labels, b"data": images.reshape(len(labels), 3072),
                b"filenames": [f"{i}.png".encode() for i in range(len(labels))]}

    train = batch(train_per_class, "training batch")
    for i, part in enumerate(np.array_split(np.arange(len(train[b"labels"])), 5), start=1):
        chunk = {b"batch_label": f"training batch {i} of 5".encode(), b"data": train[b"data"][part],
                 b"labels": [train[b"labels"][j] for j in part], b"filenames": [train[b"filenames"][j] for j in part]}
        (folder / f"data_batch_{i}").write_bytes(pickle.dumps(chunk, protocol=2))
    (folder / "test_batch").write_bytes(pickle.dumps(batch(test_per_class, "testing batch 1 of 1"), protocol=2))
    meta = {b"label_names": [name.encode() for name in DATASETS["cifar10"].class_names], b"num_vis": 3072,
            b"num_cases_per_batch": 10000}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    return folder
