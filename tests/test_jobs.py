"""Training jobs through the CLI: outputs, reruns, determinism, and kill-and-resume."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fedakd.cli import main
from tests.helpers import run_id

REQUIRED_FINAL = {"accuracy", "balanced_accuracy", "macro_f1", "minority_recall", "worst_class_recall", "gmean",
                  "per_class_recall"}


def train_args(config, out, method="fedavg", seed=0, *extra):
    return ["train", "--config", str(config), "--dataset", "digits", "--setting", "lt10-dir1", "--method", method,
            "--seed", str(seed), "--out", str(out), *extra]


def mlflow_runs(config_path, job_key=None):
    import yaml
    from mlflow.tracking import MlflowClient

    config = yaml.safe_load(Path(config_path).read_text())
    client = MlflowClient(tracking_uri=config["tracking_uri"])
    experiment = client.get_experiment_by_name(config["experiment"])
    if experiment is None:  # nothing was ever logged: the experiment is made when a trained run is logged
        return client, []
    query = f"tags.job_key = '{job_key}'" if job_key else ""
    return client, client.search_runs([experiment.experiment_id], filter_string=query)


def test_train_writes_metrics_and_a_finished_run(digits_config, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["ui-link", "--config", str(digits_config)]) == 0  # before any run: says so, creates no store
    assert "no experiment 'fedakd-bench-smoke'" in capsys.readouterr().out
    assert not (tmp_path / "mlflow.db").exists()
    assert main(train_args(digits_config, out, "fedakd")) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert REQUIRED_FINAL <= set(metrics["final"])
    assert [h["round"] for h in metrics["history"]] == [1, 2, 3]
    assert len(metrics["partition_sha256"]) == 64
    assert not (out / "checkpoint.pt").exists()
    client, runs = mlflow_runs(digits_config)
    assert [r.info.run_id for r in runs] == [run_id(out)]
    assert "mlflow_run_id" not in metrics  # results never depend on the tracking store
    run = runs[0]
    assert run.info.status == "FINISHED"
    assert run.data.tags["job_key"] == "digits/lt10-dir1/fedakd/seed0"
    assert run.data.tags["partition_sha256"] == metrics["partition_sha256"]
    assert len(client.get_metric_history(run.info.run_id, "accuracy")) == 3
    assert metrics["failure"] == {"collapsed": None, "diverged": None, "transient_collapses": []}
    assert (run.data.tags["collapsed"], run.data.tags["diverged"]) == ("no", "no")
    assert len(client.get_metric_history(run.info.run_id, "diag/server/dead_units")) == 3  # diagnostics per round
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"job.json", "per_class.csv", "figures"} <= artifacts
    assert {a.path for a in client.list_artifacts(run.info.run_id, "figures")} == {
        "figures/learning_curve.png", "figures/per_class_recall.png", "figures/confusion_matrix.png",
        "figures/diagnostics.png"}

    mtime = (out / "metrics.json").stat().st_mtime_ns
    assert main(train_args(digits_config, out, "fedakd")) == 0  # finished: nothing to do
    assert (out / "metrics.json").stat().st_mtime_ns == mtime
    assert len(mlflow_runs(digits_config)[1]) == 1
    capsys.readouterr()
    assert main(["ui-link", "--config", str(digits_config), "--url", "http://127.0.0.1:5077/"]) == 0
    assert capsys.readouterr().out.strip() == (f"open http://127.0.0.1:5077/#/experiments/{run.info.experiment_id}"
                                               "?workflowType=machine_learning")  # the training view


def test_same_seed_gives_identical_metrics(digits_config, tmp_path):
    assert main(train_args(digits_config, tmp_path / "a", "fedavg-smote", 1)) == 0
    assert main(train_args(digits_config, tmp_path / "b", "fedavg-smote", 1)) == 0
    a = json.loads((tmp_path / "a" / "metrics.json").read_text())
    b = json.loads((tmp_path / "b" / "metrics.json").read_text())
    assert a == b
    # the same job in another folder is a run of its own: it retires nobody's run
    _, runs = mlflow_runs(digits_config, "digits/lt10-dir1/fedavg-smote/seed1")
    first_a = run_id(tmp_path / "a")
    assert sorted(r.info.run_id for r in runs if r.info.status == "FINISHED") == sorted([first_a, run_id(tmp_path / "b")])
    # retrained into the same folder (same job, config and folder) with other results (as on another machine:
    # here the record of what was logged is made to differ), it supersedes that folder's earlier run only
    (tmp_path / "a" / "metrics.json").unlink()
    record = json.loads((tmp_path / "a" / "mlflow.json").read_text())
    (tmp_path / "a" / "mlflow.json").write_text(json.dumps({**record, "metrics_sha256": "0" * 64}))
    assert main(train_args(digits_config, tmp_path / "a", "fedavg-smote", 1)) == 0
    _, runs = mlflow_runs(digits_config, "digits/lt10-dir1/fedavg-smote/seed1")
    finished = sorted(r.info.run_id for r in runs if r.info.status == "FINISHED")
    assert first_a not in finished and finished == sorted([run_id(tmp_path / "a"), run_id(tmp_path / "b")])


def test_saved_partition_is_used_and_checked(digits_config, tmp_path):
    part = tmp_path / "part"
    assert main(["partition", "--config", str(digits_config), "--dataset", "digits", "--setting", "lt10-dir1",
                 "--seed", "0", "--out", str(part)]) == 0
    manifest = json.loads((part / "manifest.json").read_text())
    assert (part / "heatmap.png").stat().st_size > 0
    assert main(train_args(digits_config, tmp_path / "run", "fedavg", 0, "--partition", str(part))) == 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["partition_sha256"] == manifest["sha256"]
    # a partition of another seed does not fit this job
    other = tmp_path / "other"
    assert main(["partition", "--config", str(digits_config), "--dataset", "digits", "--setting", "lt10-dir1",
                 "--seed", "1", "--out", str(other)]) == 0
    assert main(train_args(digits_config, tmp_path / "run2", "fedavg", 0, "--partition", str(other))) == 2
    assert not (tmp_path / "run2").exists()


def _spawn(config, out, rounds, method="fedakd"):
    return subprocess.Popen(
        [sys.executable, "-m", "fedakd.cli", *train_args(config, out, method, 0, "--set",
                                                         f"federation.rounds={rounds}", "--threads", "1")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def _wait_for(path: Path, proc, timeout=120):
    deadline = time.time() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.time() < deadline, f"{path} never appeared"
        time.sleep(0.05)


@pytest.mark.slow
@pytest.mark.parametrize("kill_when", ["first-checkpoint", "mid-run"])
def test_sigkill_then_rerun_equals_uninterrupted(digits_config, tmp_path, kill_when):
    rounds = 40  # a digits round takes a few hundredths of a second: enough of them to be killed mid-way
    # one torch thread in every leg: bit-identity holds for one thread count, and an earlier test in this
    # process may have set another
    reference = tmp_path / "reference"
    assert main(train_args(digits_config, reference, "fedakd", 0, "--set", f"federation.rounds={rounds}",
                           "--threads", "1")) == 0

    out = tmp_path / "killed"
    proc = _spawn(digits_config, out, rounds)
    if kill_when == "mid-run":  # its progress lines: one per finished round
        while f"round 5/{rounds}" not in (line := proc.stderr.readline()):
            assert line, proc.communicate()
    else:
        _wait_for(out / "checkpoint.pt", proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "metrics.json").exists()
    assert main(train_args(digits_config, out, "fedakd", 0, "--set", f"federation.rounds={rounds}",
                           "--threads", "1")) == 0

    expected = json.loads((reference / "metrics.json").read_text())
    resumed = json.loads((out / "metrics.json").read_text())
    assert resumed == expected
    client, runs = mlflow_runs(digits_config, "digits/lt10-dir1/fedakd/seed0")
    finished = [r for r in runs if r.info.status == "FINISHED"]  # the reference's and the resumed folder's
    assert sorted(r.info.run_id for r in finished) == sorted([run_id(out), run_id(reference)])
    assert len({r.data.tags["run_folder"] for r in finished}) == 2
    history = client.get_metric_history(run_id(out), "accuracy")
    assert sorted(m.step for m in history) == list(range(1, rounds + 1))  # no point lost or doubled


@pytest.mark.slow
def test_sigterm_stops_cleanly_and_logs_nothing_half_done(digits_config, tmp_path):
    out = tmp_path / "terminated"
    proc = _spawn(digits_config, out, 200)
    _wait_for(out / "checkpoint.pt", proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "rerun the same command to resume" in err and "Traceback" not in err
    assert not (out / "metrics.json").exists() and (out / "checkpoint.pt").exists()
    assert not (out / "mlflow.json").exists()
    _, runs = mlflow_runs(digits_config)
    assert runs == []  # a run is logged once the job has trained: no RUNNING or KILLED run is left behind


def test_on_cuda_deterministic_algorithms_are_switched_on_unless_the_config_says_not(monkeypatch):
    import torch

    from fedakd.jobs import configure_determinism

    calls = []
    monkeypatch.setattr(torch, "use_deterministic_algorithms", lambda flag: calls.append(flag))
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", False)
    configure_determinism(torch.device("cpu"), True)  # the CPU needs nothing
    assert calls == [] and "CUBLAS_WORKSPACE_CONFIG" not in os.environ
    configure_determinism(torch.device("cuda"), False)  # the config said deterministic: false
    assert calls == []
    configure_determinism(torch.device("cuda"), True)
    assert calls == [True] and os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    assert torch.backends.cudnn.deterministic is True and torch.backends.cudnn.benchmark is False


def test_client_side_distillation_logs_both_losses(digits_config, tmp_path):
    assert main(train_args(digits_config, tmp_path / "run", "fedakd", 0, "--set", "methods.fedakd.kd_site=client")) == 0
    history = json.loads((tmp_path / "run" / "metrics.json").read_text())["history"]
    assert all(record["train_loss"] > 0 and record["client_kd_loss"] > 0 for record in history)
    assert any(record["train_loss"] != record["client_kd_loss"] for record in history)
