"""A tracking outage loses nothing: a job that cannot reach its server stops at once with one clear line,
a job whose server dies mid-run trains to the end, keeps its results and stops with one line without a
FINISHED run, and its rerun, once the server is back, logs the run whole (every round once) and finishes it;
a run that an earlier tracking attempt left half-logged is completed, never doubled."""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fedakd.cli import main
from fedakd.tracking import check_reachable
from tests.helpers import free_port, start_mlflow, stop


def start_server(folder: Path, port: int) -> subprocess.Popen:
    """An MLflow server on 127.0.0.1:port over a SQLite store in ``folder`` (the same store when restarted)."""
    return start_mlflow("server", port, "--backend-store-uri", f"sqlite:///{folder / 'server.db'}",
                        "--artifacts-destination", str(folder / "artifacts"), "--workers", "1", timeout=120)


def kill_server(server: subprocess.Popen) -> None:
    """SIGKILL the server's whole process group (uvicorn and its workers), as a crash would."""
    stop(server, signal.SIGKILL)


def train_command(config: Path, out: Path, uri: str, rounds: int) -> list[str]:
    return [sys.executable, "-m", "fedakd.cli", "train", "--config", str(config), "--dataset", "digits",
            "--setting", "lt10-dir1", "--method", "fedavg", "--seed", "0", "--out", str(out), "--threads", "1",
            "--set", f"tracking_uri={uri}", "--set", f"federation.rounds={rounds}"]


def test_the_start_check_names_the_uri_and_the_fix_within_seconds():
    port = free_port()  # nothing listens there
    started = time.perf_counter()
    with pytest.raises(Exception) as caught:
        check_reachable(f"http://127.0.0.1:{port}", timeout=3)
    assert time.perf_counter() - started < 5
    message = str(caught.value)
    assert f"the MLflow tracking server at http://127.0.0.1:{port} is unreachable" in message
    assert f"tried GET http://127.0.0.1:{port}/health" in message and "start it" in message


def test_an_unreachable_server_stops_a_job_before_any_work(digits_config, tmp_path, capsys):
    port = free_port()
    out = tmp_path / "run"
    started = time.perf_counter()
    assert main(["train", "--config", str(digits_config), "--dataset", "digits", "--setting", "lt10-dir1",
                 "--method", "fedavg", "--seed", "0", "--out", str(out),
                 "--set", f"tracking_uri=http://127.0.0.1:{port}"]) == 2
    seconds = time.perf_counter() - started
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"fedakd: error: the MLflow tracking server at "
                                                   f"http://127.0.0.1:{port} is unreachable")
    assert not out.exists() and seconds < 10, seconds  # MLflow alone would retry for minutes


@pytest.mark.slow
def test_a_server_lost_mid_run_loses_nothing_once_it_is_back(digits_config, tmp_path):
    from mlflow.tracking import MlflowClient

    port, rounds = free_port(), 60
    uri = f"http://127.0.0.1:{port}"
    server = start_server(tmp_path, port)
    out = tmp_path / "run"
    job = subprocess.Popen(train_command(digits_config, out, uri, rounds), stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while not (out / "checkpoint.pt").exists():  # training is under way
            assert job.poll() is None, job.communicate()
            assert time.time() < deadline
            time.sleep(0.05)
        kill_server(server)
        killed_at = time.perf_counter()
        _, err = job.communicate(timeout=300)
        ended_after = time.perf_counter() - killed_at
    finally:
        if job.poll() is None:
            job.kill()
    assert job.returncode == 2, err
    lines = [line for line in err.splitlines() if line.startswith("fedakd:")]
    assert len(lines) == 1 and "lost the MLflow tracking server at " + uri in lines[0]
    assert "rerun the same command" in lines[0] and "Traceback" not in err
    assert ended_after < 60, ended_after  # bounded: seconds of retries, not MLflow's default minutes
    assert (out / "metrics.json").exists() and not (out / "checkpoint.pt").exists()  # the results are safe
    assert not (out / "mlflow.json").exists()  # ... and no run is marked logged
    print(f"job ended {ended_after:.1f} s after the server was killed")

    server = start_server(tmp_path, port)  # the same store, back
    try:
        rerun = subprocess.run(train_command(digits_config, out, uri, rounds), capture_output=True, text=True,
                               timeout=300)
        assert rerun.returncode == 0, rerun.stderr[-3000:]
        metrics = json.loads((out / "metrics.json").read_text())
        record = json.loads((out / "mlflow.json").read_text())
        client = MlflowClient(tracking_uri=uri)
        runs = client.search_runs([record["experiment_id"]],
                                  filter_string="tags.job_key = 'digits/lt10-dir1/fedavg/seed0'")
        assert [r.info.status for r in runs] == ["FINISHED"] and runs[0].info.run_id == record["run_id"]
        history = {record["round"]: record for record in metrics["history"]}
        assert sorted(history) == list(range(1, rounds + 1))
        for key in ("accuracy", "balanced_accuracy", "nll", "bytes_up", "train_loss", "recall_class_9"):
            points = client.get_metric_history(record["run_id"], key)
            assert sorted(p.step for p in points) == list(range(1, rounds + 1)), key  # every round, once
            if key in ("accuracy", "balanced_accuracy", "nll"):
                assert all(p.value == pytest.approx(history[p.step][key]) for p in points), key
        assert {"job.json", "figures"} <= {a.path for a in client.list_artifacts(record["run_id"])}
    finally:
        kill_server(server)


def test_a_half_logged_run_is_completed_not_doubled(digits_config, tmp_path):
    """A tracking step that lost its server after logging some rounds left the run RUNNING with its id in
    mlflow.json: the next one resumes that run and logs exactly the points it lacks."""
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    from fedakd.track import track_job

    out = tmp_path / "run"
    assert main(["train", "--config", str(digits_config), "--dataset", "digits", "--setting", "lt10-dir1",
                 "--method", "fedavg", "--seed", "0", "--out", str(out), "--no-track"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    from fedakd.tracking import ensure_experiment

    experiment_id = ensure_experiment(uri, "half-logged")
    client = MlflowClient(tracking_uri=uri)
    half = client.create_run(experiment_id, tags={"job_key": "digits/lt10-dir1/fedavg/seed0"}).info.run_id
    client.log_batch(half, metrics=[Metric("accuracy", metrics["history"][0]["accuracy"], 0, 1)])  # round 1 only
    results = hashlib.sha256((out / "metrics.json").read_bytes()).hexdigest()
    (out / "mlflow.json").write_text(json.dumps({"tracking_uri": uri, "experiment_id": experiment_id,
                                                 "metrics_sha256": results, "run_id": half, "finished": False}))
    assert track_job(out, tracking_uri=uri, experiment_id=experiment_id) == half
    assert client.get_run(half).info.status == "FINISHED"
    rounds = [record["round"] for record in metrics["history"]]
    assert sorted(p.step for p in client.get_metric_history(half, "accuracy")) == rounds  # every round once
    assert json.loads((out / "mlflow.json").read_text())["finished"] is True
    assert track_job(out, tracking_uri=uri, experiment_id=experiment_id) == half  # logged: left alone
    assert len(client.search_runs([experiment_id])) == 1
