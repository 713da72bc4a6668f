"""Bad input through the command line: one clear message, exit status 2, nothing written.

Each case breaks one thing (a config value, the data, a saved partition) and
names a fragment the message must contain.
"""

import json

import numpy as np
import pytest

from fedakd.cli import main

BAD_OVERRIDES = [
    ("settings.lt10-dir1.split.alpha=-0.5", ["settings.lt10-dir1.split.alpha", "-0.5"]),
    ("settings.lt10-dir1.split.alpha=0", ["settings.lt10-dir1.split.alpha", "0"]),
    ("settings.lt10-dir1.imbalance.factor=0.5", ["settings.lt10-dir1.imbalance.factor", "0.5"]),
    ("federation.fraction=0", ["federation.fraction", "0"]),
    ("federation.fraction=1.5", ["federation.fraction", "1.5"]),
    ("federation.clients=0", ["federation.clients", "0"]),
    ("federation.clients=100000", ["federation.clients", "100000"]),
    ("federation.rounds=0", ["federation.rounds", "0"]),
    ("federation.lr=-1", ["federation.lr", "-1"]),
    ("federation.momentum=1", ["federation.momentum", "1"]),
    ("federation.batch_size='64'", ["federation.batch_size", "'64'"]),
    ("federation.eval_every=0", ["federation.eval_every", "0"]),
    ("federation.proxy_per_class=0", ["proxy_per_class"]),
    ("federation.warmup=3", ["federation", "warmup"]),
    ("datasets=[imagenet]", ["datasets", "imagenet"]),
    ("model.backbone=transformer", ["model.backbone", "transformer"]),
    ("model.backbone=cnn", ["model.backbone", "cnn"]),  # cnn needs 28x28, digits are 8x8
    ("methods.fedakd.method=fedsgd", ["methods.fedakd.method", "fedsgd"]),
    ("methods.fedakd.temperature=hot", ["methods.fedakd.temperature", "hot"]),
    ("methods.fedakd.kd_site=everywhere", ["methods.fedakd.kd_site", "everywhere"]),
    ("methods.fedakd.beta=1", ["methods.fedakd", "beta"]),
    ("seeds=[]", ["seeds"]),
    ("seeds=[0,0]", ["seeds"]),
    ("device=tpu", ["device", "tpu"]),
    ("settings.lt10-dir1.split.kind=pathological", ["settings.lt10-dir1.split.kind", "pathological"]),
    ("settings.lt10-dir1.imbalance.kind=zipf", ["settings.lt10-dir1.imbalance.kind", "zipf"]),
    ("banana=1", ["banana"]),
    ("federation.rounds", ["federation.rounds", "KEY.PATH=VALUE"]),  # malformed override
]


def train(config, out, *extra, method="fedakd", setting="lt10-dir1"):
    return main(["train", "--config", str(config), "--dataset", "digits", "--setting", setting, "--method", method,
                 "--seed", "0", "--out", str(out), *extra])


@pytest.mark.parametrize("override, fragments", BAD_OVERRIDES, ids=[o for o, _ in BAD_OVERRIDES])
def test_bad_config_value(digits_config, tmp_path, capsys, override, fragments):
    out = tmp_path / "run"
    assert train(digits_config, out, "--set", override) == 2
    err = capsys.readouterr().err
    assert err.startswith("fedakd: error:") and "Traceback" not in err
    for fragment in fragments:
        assert fragment in err, (fragment, err)
    assert not out.exists()
    assert not (tmp_path / "mlflow.db").exists()


def test_unknown_setting_and_method_names(digits_config, tmp_path, capsys):
    assert train(digits_config, tmp_path / "a", setting="lt99") == 2
    assert "lt99" in capsys.readouterr().err
    assert train(digits_config, tmp_path / "b", method="fedbest") == 2
    assert "fedbest" in capsys.readouterr().err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_missing_config_file(tmp_path, capsys):
    assert train(tmp_path / "nope.yaml", tmp_path / "run") == 2
    assert "nope.yaml" in capsys.readouterr().err


def test_missing_dataset_says_how_to_get_it(digits_config, tmp_path, capsys, monkeypatch):
    import fedakd.data

    monkeypatch.setattr(fedakd.data, "SYSTEM_PREFIXES", (tmp_path / "empty-prefix",))
    out = tmp_path / "run"
    code = main(["train", "--config", str(digits_config), "--dataset", "fashion-mnist", "--setting", "lt10-dir1",
                 "--method", "fedavg", "--seed", "0", "--out", str(out), "--set", "datasets=[fashion-mnist]",
                 "--set", "model.backbone=auto"])
    assert code == 2
    err = capsys.readouterr().err
    assert "apt-get install dataset-fashion-mnist" in err
    assert not out.exists()


def _partition(config, out):
    assert main(["partition", "--config", str(config), "--dataset", "digits", "--setting", "lt10-dir1", "--seed", "0",
                 "--out", str(out)]) == 0


def test_tampered_partition_is_refused(digits_config, tmp_path, capsys):
    part = tmp_path / "part"
    _partition(digits_config, part)
    with np.load(part / "indices.npz") as data:
        arrays = {key: data[key].copy() for key in data.files}
    client_key = next(k for k in arrays if k != "transfer" and arrays[k].size)
    arrays[client_key][0] = arrays[client_key][0] + 1
    np.savez(part / "indices.npz", **arrays)
    out = tmp_path / "run"
    assert train(digits_config, out, "--partition", str(part)) == 2
    err = capsys.readouterr().err
    assert "indices.npz" in err and "sha256" in err.lower()
    assert not out.exists()


def test_truncated_partition_is_refused(digits_config, tmp_path, capsys):
    part = tmp_path / "part"
    _partition(digits_config, part)
    data = (part / "indices.npz").read_bytes()
    (part / "indices.npz").write_bytes(data[: len(data) // 2])
    assert train(digits_config, tmp_path / "run", "--partition", str(part)) == 2
    assert "indices.npz" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_foreign_metrics_json_is_not_overwritten(digits_config, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "metrics.json").write_text(json.dumps({"job_digest": "something else"}))
    assert train(digits_config, out) == 2
    assert "different configuration" in capsys.readouterr().err
    assert json.loads((out / "metrics.json").read_text()) == {"job_digest": "something else"}


def test_corrupt_metrics_json_is_named(digits_config, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "metrics.json").write_text('{"final": {"accuracy": 0.9')
    assert train(digits_config, out) == 2
    err = capsys.readouterr().err
    assert str(out / "metrics.json") in err and "not valid JSON" in err


def test_a_diverging_run_is_kept_flagged_and_named_in_one_warning(digits_config, tmp_path, capsys, caplog):
    out = tmp_path / "run"
    assert train(digits_config, out, "--set", "federation.lr=1e12", method="fedavg") == 0
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING" and r.name == "fedakd"]
    assert len(warnings) == 1 and "training diverged at round 1 (local)" in warnings[0]
    assert "federation.lr" in warnings[0] and "Traceback" not in capsys.readouterr().err
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["failure"]["diverged"] == {"round": 1, "step": "local", "what": "a client's loss or uploaded weights"}
    assert len(metrics["history"]) == metrics["federation"]["rounds"]  # frozen, scored, kept in the statistics


def test_a_diverged_run_is_tagged_in_mlflow(digits_config, tmp_path):
    from mlflow.tracking import MlflowClient

    out = tmp_path / "run"
    assert train(digits_config, out, "--set", "federation.lr=1e12", method="fedavg") == 0
    record = json.loads((out / "mlflow.json").read_text())
    run = MlflowClient(tracking_uri=record["tracking_uri"]).get_run(record["run_id"])
    assert run.data.tags["diverged"] == "round 1 (local)" and run.data.tags["collapsed"] == "round 1 (averaged)"
    assert run.data.metrics["diverged_round"] == 1


# -- pre-flight: each failure one line, non-zero, nothing written ----------------------------------------
def test_an_out_that_is_a_file_is_refused_before_any_work(digits_config, tmp_path, capsys):
    out = tmp_path / "run"
    out.write_text("not a folder")
    assert train(digits_config, out, "--no-track", method="fedavg") == 2
    err = capsys.readouterr().err
    assert f"fedakd: error: --out {out} is a file, not a folder" in err and "Traceback" not in err
    assert out.read_text() == "not a folder"


def test_a_full_disk_is_found_before_training(digits_config, tmp_path, capsys, monkeypatch):
    import fedakd.jobs

    monkeypatch.setattr(fedakd.jobs, "MIN_FREE_BYTES", 2**62)  # more than any disk has
    out = tmp_path / "run"
    assert train(digits_config, out, "--no-track", method="fedavg") == 2
    err = capsys.readouterr().err
    assert "MiB free on the disk of" in err and "free some space" in err and not out.exists()


@pytest.mark.parametrize("threads", ["-1", "0", "two"])
def test_bad_thread_counts_are_refused_by_the_parser(digits_config, tmp_path, capsys, threads):
    with pytest.raises(SystemExit) as stopped:
        train(digits_config, tmp_path / "run", "--threads", threads)
    assert stopped.value.code == 2 and "--threads" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_cuda_on_a_machine_without_one_is_one_line(digits_config, tmp_path, capsys, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    out = tmp_path / "run"
    assert train(digits_config, out, "--no-track", "--set", "device=cuda", method="fedavg") == 2
    err = capsys.readouterr().err
    assert "fedakd: error: device: cuda was requested but torch sees no CUDA device" in err and "Traceback" not in err
    assert not out.exists()
