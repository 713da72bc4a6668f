"""The cluster setting: parallel jobs log over HTTP to one MLflow tracking server.

On a cluster many jobs must not share one SQLite file; they talk to a server
(README, "On a cluster"), which alone writes its database. Here the server runs
on 127.0.0.1 with a SQLite backend; in production it would front PostgreSQL.
"""

import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from fedakd.tracking import ensure_experiment


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def tracking_server(tmp_path):
    port = free_port()
    mlflow = Path(sys.executable).with_name("mlflow")
    server = subprocess.Popen(
        [str(mlflow), "server", "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
         "--artifacts-destination", str(tmp_path / "server-artifacts"), "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    uri = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while True:
        try:
            urllib.request.urlopen(f"{uri}/health", timeout=2)
            break
        except OSError:
            assert server.poll() is None, "mlflow server exited"
            assert time.time() < deadline, "mlflow server did not start in 120 s"
            time.sleep(0.5)
    yield uri
    server.terminate()
    server.wait(timeout=30)


@pytest.mark.slow
def test_parallel_jobs_through_a_tracking_server(digits_config, tmp_path, tracking_server):
    from mlflow.tracking import MlflowClient

    experiment_id = ensure_experiment(tracking_server, "cluster-check")
    jobs = [("fedavg", 0), ("fedavg", 1), ("fedakd", 0)]
    procs = [
        subprocess.Popen([sys.executable, "-m", "fedakd.cli", "train", "--config", str(digits_config), "--dataset",
                          "digits", "--setting", "lt10-dir1", "--method", method, "--seed", str(seed), "--out",
                          str(tmp_path / f"{method}-{seed}"), "--experiment-id", experiment_id, "--threads", "1",
                          "--set", f"tracking_uri={tracking_server}"], stderr=subprocess.PIPE, text=True)
        for method, seed in jobs
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err
    client = MlflowClient(tracking_uri=tracking_server)
    runs = client.search_runs([experiment_id])
    assert sorted(r.data.tags["job_key"] for r in runs) == sorted(f"digits/lt10-dir1/{m}/seed{s}" for m, s in jobs)
    assert {r.info.status for r in runs} == {"FINISHED"}
    for run in runs:
        assert len(client.get_metric_history(run.info.run_id, "accuracy")) == 3
        assert "figures/confusion_matrix.png" in {a.path for a in client.list_artifacts(run.info.run_id, "figures")}
