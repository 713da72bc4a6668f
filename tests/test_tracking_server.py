"""The cluster setting: parallel jobs log over HTTP to one MLflow tracking server.

On a cluster many jobs must not share one SQLite file; they talk to a server
(README, "On a cluster"), which alone writes its database. Here the server runs
on 127.0.0.1 with a SQLite backend; tests/test_tracking_postgres.py fronts PostgreSQL.
"""

import pytest

from fedakd.tracking import ensure_experiment
from tests.helpers import free_port, start_mlflow, stop, train_jobs


@pytest.fixture
def tracking_server(tmp_path):
    port = free_port()
    server = start_mlflow("server", port, "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
                          "--artifacts-destination", str(tmp_path / "server-artifacts"), "--workers", "1")
    yield f"http://127.0.0.1:{port}"
    stop(server)


@pytest.mark.slow
def test_parallel_jobs_through_a_tracking_server(digits_config, tmp_path, tracking_server):
    from mlflow.tracking import MlflowClient

    experiment_id = ensure_experiment(tracking_server, "cluster-check")
    jobs = [("fedavg", 0), ("fedavg", 1), ("fedakd", 0)]
    procs = train_jobs(digits_config, tmp_path, jobs, tracking_server, experiment_id)
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
