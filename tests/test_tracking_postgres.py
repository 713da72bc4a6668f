"""The cluster's tracking setup for real, on one machine: PostgreSQL (Debian's postgresql) as MLflow's backend
store, an `mlflow server` on loopback in front of it, and six training jobs logging to it at once.

The fixture starts a private PostgreSQL cluster in a temporary folder (as the postgres user when run as root,
since PostgreSQL refuses to run as root), on a free port, listening on 127.0.0.1 only.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.helpers import free_port, start_mlflow, stop, train_jobs

BIN = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not BIN, reason="no PostgreSQL server here: apt-get install postgresql (.ci/run installs it)"),
]
JOBS = [("fedavg", 0), ("fedavg", 1), ("fedakd", 0), ("fedprox", 0), ("fedavg-smote", 0), ("fedntd", 0)]


def as_postgres(*command: str) -> list[str]:
    """PostgreSQL's tools refuse to run as root: run them as the postgres user then."""
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else list(command)


@pytest.fixture(scope="module")
def postgres():
    """A private PostgreSQL cluster with a database `mlflow`; yields its SQLAlchemy URI.

    Its folder is outside pytest's temporary tree, which only root may enter, since the server runs as postgres.
    """
    import tempfile

    bin_dir = Path(BIN[-1])
    base = Path(tempfile.mkdtemp(prefix="fedakd-pg-"))
    data, sockets = base / "data", base / "sockets"
    if os.geteuid() == 0:
        shutil.chown(base, "postgres", "postgres")
    for folder in (data, sockets):
        subprocess.run(as_postgres("mkdir", "-m", "700", str(folder)), check=True)
    port = free_port()
    subprocess.run(as_postgres(str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"),
                   check=True, capture_output=True)
    options = f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1 -c max_connections=100"
    subprocess.run(as_postgres(str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options, "-l",
                               str(base / "postgres.log"), "-w", "start"), check=True, capture_output=True)
    try:
        subprocess.run(as_postgres(str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres",
                                   "mlflow"), check=True, capture_output=True)
        yield f"postgresql://postgres@127.0.0.1:{port}/mlflow"
    finally:
        subprocess.run(as_postgres(str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"), capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def server(postgres, tmp_path_factory):
    """`mlflow server` on loopback with the PostgreSQL backend store, shared by this module's tests."""
    tmp_path = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    process = start_mlflow("server", port, "--backend-store-uri", postgres, "--artifacts-destination",
                           str(tmp_path / "artifacts"), "--workers", "2", log=tmp_path / "server.log")
    yield f"http://127.0.0.1:{port}"
    stop(process)


def test_six_jobs_at_once_log_everything_to_a_postgresql_backed_server(digits_config, tmp_path, server):
    from mlflow.tracking import MlflowClient

    from fedakd.tracking import ensure_experiment

    experiment_id = ensure_experiment(server, "postgres-check")
    procs = train_jobs(digits_config, tmp_path, JOBS, server, experiment_id)
    for proc in procs:
        _, err = proc.communicate(timeout=900)
        assert proc.returncode == 0, err[-3000:]
    client = MlflowClient(tracking_uri=server)
    runs = client.search_runs([experiment_id])
    assert sorted(r.data.tags["job_key"] for r in runs) == sorted(f"digits/lt10-dir1/{m}/seed{s}" for m, s in JOBS)
    assert {r.info.status for r in runs} == {"FINISHED"}
    for run in runs:
        for key in ("accuracy", "balanced_accuracy", "minority_recall", "bytes_up", "train_loss", "recall_class_9"):
            steps = sorted(m.step for m in client.get_metric_history(run.info.run_id, key))
            assert steps == [1, 2, 3], (run.data.tags["job_key"], key, steps)
        (dataset,) = run.inputs.dataset_inputs  # the partition, its digest within PostgreSQL's 36 characters
        assert dataset.dataset.digest == run.data.tags["partition_sha256"][:36]
        assert "figures" in {a.path for a in client.list_artifacts(run.info.run_id)}


def test_jobs_logging_one_partition_at_once_each_link_it_once(server):
    """The race CI met: jobs on one partition log its dataset at the same instant, MLflow's store looks it up and
    inserts it when absent, and a second insert breaks the unique key (without the retry, 29 of 90 such calls
    failed here). Each trial: 6 runs, 6 threads released together by a barrier, one new dataset."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from mlflow.entities import Dataset, DatasetInput
    from mlflow.tracking import MlflowClient

    from fedakd.tracking import ensure_experiment, log_inputs

    experiment_id = ensure_experiment(server, "postgres-race")
    client = MlflowClient(tracking_uri=server)
    for trial in range(5):
        runs = [client.create_run(experiment_id).info.run_id for _ in range(6)]
        datasets = [DatasetInput(Dataset(name=f"digits/race/seed{trial}", digest=f"{trial:036d}",
                                         source_type="fedakd-partition", source="{}"))]
        barrier = threading.Barrier(len(runs))

        def log(run_id: str) -> None:
            barrier.wait()
            log_inputs(client, run_id, datasets)

        with ThreadPoolExecutor(len(runs)) as pool:
            list(pool.map(log, runs))  # re-raises a thread's error
        for run_id in runs:
            (linked,) = client.get_run(run_id).inputs.dataset_inputs
            assert (linked.dataset.name, linked.dataset.digest) == (f"digits/race/seed{trial}", f"{trial:036d}")
