"""More training jobs than cores writing into one SQLite MLflow store at once.

The pipeline's setting: the store and experiment are created once, then jobs
start in parallel. Nothing may be lost (runs, metric points, artifacts), and a
job's results must not depend on what ran beside it.
"""

import json
import subprocess
import sys

import pytest
import yaml

from fedakd.tracking import ensure_experiment

JOBS = [("fedavg", 0), ("fedavg", 1), ("fedakd", 0), ("fedavg-smote", 0)]  # 4 processes on 2 cores


@pytest.mark.slow
def test_parallel_jobs_lose_nothing_and_match_a_sequential_run(digits_config, tmp_path):
    from mlflow.tracking import MlflowClient

    config = yaml.safe_load(digits_config.read_text())
    experiment_id = ensure_experiment(config["tracking_uri"], config["experiment"])  # once, before the jobs
    rounds = config["federation"]["rounds"]

    def command(method, seed, out):
        return [sys.executable, "-m", "fedakd.cli", "train", "--config", str(digits_config), "--dataset", "digits",
                "--setting", "lt10-dir1", "--method", method, "--seed", str(seed), "--out", str(out),
                "--experiment-id", experiment_id, "--threads", "1"]

    procs = [subprocess.Popen(command(m, s, tmp_path / f"{m}-{s}"), stderr=subprocess.PIPE, text=True)
             for m, s in JOBS]
    for proc in procs:
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err

    client = MlflowClient(tracking_uri=config["tracking_uri"])
    runs = client.search_runs([experiment_id])
    assert len(runs) == len(JOBS) and {r.info.status for r in runs} == {"FINISHED"}
    assert {r.data.tags["job_key"] for r in runs} == {f"digits/lt10-dir1/{m}/seed{s}" for m, s in JOBS}
    for run in runs:
        for key in ("accuracy", "minority_recall", "bytes_up", "recall_class_9"):
            steps = [m.step for m in client.get_metric_history(run.info.run_id, key)]
            assert sorted(steps) == list(range(1, rounds + 1)), (run.data.tags["job_key"], key, steps)
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {"job.json", "per_class.csv", "figures"} <= artifacts

    # the same job run alone gives the same metrics.json
    alone = tmp_path / "alone"
    subprocess.run(command("fedakd", 0, alone), check=True, capture_output=True)
    parallel = json.loads((tmp_path / "fedakd-0" / "metrics.json").read_text())
    sequential = json.loads((alone / "metrics.json").read_text())
    assert parallel == sequential


RACED = ('BAD_REQUEST: (psycopg2.errors.UniqueViolation) duplicate key value violates unique constraint "dataset_pk"'
         '\nDETAIL:  Key (experiment_id, name, digest)=(1, digits/lt10-dir1/seed0, de36aafd) already exists.')


class Flaky:
    """Raises the given errors in turn, then returns "logged"; counts its calls."""

    def __init__(self, *errors: str):
        self.errors, self.calls = list(errors), 0

    def __call__(self):
        self.calls += 1
        if self.errors:
            raise RuntimeError(self.errors.pop(0))
        return "logged"


@pytest.fixture
def sleeps(monkeypatch) -> list[float]:
    """The back-offs fedakd.tracking._retry waits, recorded instead of slept."""
    from fedakd import tracking

    waited: list[float] = []
    monkeypatch.setattr(tracking.time, "sleep", waited.append)
    return waited


def test_a_dataset_insert_raced_by_another_job_is_tried_again(sleeps):
    """Two jobs on one partition log its dataset at once; the MLflow store's look-up-then-insert lets the second
    break the unique key (CI, PostgreSQL). Tried again, it finds the row: the job goes on. (Against a real
    server: tests/test_tracking_postgres.py.)"""
    from types import SimpleNamespace

    from fedakd.tracking import log_inputs

    for error in (RACED, "UNIQUE constraint failed: datasets.experiment_id, datasets.name, datasets.digest"):
        sleeps.clear()
        log = Flaky(error)
        log_inputs(SimpleNamespace(log_inputs=lambda run_id, datasets: log()), "run", [])
        assert (log.calls, sleeps) == (2, [0.2])


def test_only_the_named_transient_errors_are_tried_again(sleeps):
    from fedakd.tracking import _retry

    raced = Flaky(RACED)  # by default (every call but log_inputs) a unique violation is a real error
    with pytest.raises(RuntimeError, match="duplicate key"):
        _retry(raced)
    assert (raced.calls, sleeps) == (1, [])
    locked = Flaky("database is locked", "database is locked")
    assert _retry(locked) == "logged"
    assert (locked.calls, sleeps) == (3, [0.2, 0.4])
    stuck = Flaky(*["database is locked"] * 3)  # attempts run out: the last error is raised
    sleeps.clear()
    with pytest.raises(RuntimeError, match="locked"):
        _retry(stuck, attempts=3)
    assert (stuck.calls, sleeps) == (3, [0.2, 0.4])
