"""Bad input and foreseeable faults through the command line, one table (issue: nothing accepted that should
be refused, nothing lost by a hand run). Every case must come out clean: exit status 2, one line on stderr
naming the problem and the fix, no traceback, nothing half-written and nothing earlier lost.

Kinds: non-finite or absurd numbers (refused by validation, naming the key), a tampered partition record
(refused by its hashes, or its types), and faults of the machine or of earlier files (a full disk, a
read-only store, a damaged checkpoint, store or metrics.json). A by-hand run of a pipeline's job is
tests/test_pipeline.py's (it needs the smoke pipeline).

    .venv/bin/python -m tests.test_faults     # every case with its exit status and its message's last line
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import sys
import tempfile
from pathlib import Path
from typing import Callable
from unittest import mock

import pytest

from fedakd.cli import main

JOB = ("--dataset", "digits", "--setting", "lt10-dir1", "--seed", "0")


def train_args(config: Path, out: Path, *extra: str, method: str = "fedavg") -> list[str]:
    return ["train", "--config", str(config), *JOB, "--method", method, "--out", str(out), "--threads", "1", *extra]


def override(key_value: str, method: str = "fedavg"):
    """A case that trains with one bad ``--set``; nothing may be written."""
    return lambda folder, config: (train_args(config, folder / "run", "--set", key_value, method=method), [])


NON_FINITE = [
    ("lr nan", "federation.lr=nan", "federation.lr"),
    ("lr inf", "federation.lr=inf", "federation.lr"),
    ("lr -inf", "federation.lr=-inf", "federation.lr"),
    ("lr true", "federation.lr=true", "federation.lr"),
    ("fraction nan", "federation.fraction=nan", "federation.fraction"),
    ("momentum inf", "federation.momentum=inf", "federation.momentum"),
    ("weight decay nan", "federation.weight_decay=nan", "federation.weight_decay"),
    ("imbalance factor inf", "settings.lt10-dir1.imbalance.factor=inf", "settings.lt10-dir1.imbalance.factor"),
    ("dirichlet alpha nan", "settings.lt10-dir1.split.alpha=nan", "settings.lt10-dir1.split.alpha"),
    ("fedakd lambda nan", "methods.fedakd.lambda=nan", "methods.fedakd.lambda"),
    ("fedakd temperature inf", "methods.fedakd.temperature=inf", "methods.fedakd.temperature"),
    ("fedakd distill_lr nan", "methods.fedakd.distill_lr=nan", "methods.fedakd.distill_lr"),
    ("fedlc tau nan", "methods.fedlc.tau=nan", "methods.fedlc.tau"),
    ("creff feature_lr nan", "methods.creff.feature_lr=nan", "methods.creff.feature_lr"),
    ("creff retrain_lr inf", "methods.creff.retrain_lr=inf", "methods.creff.retrain_lr"),
    ("ccvr calibration_lr nan", "methods.fedavg-ccvr.calibration_lr=nan", "methods.fedavg-ccvr.calibration_lr"),
    ("comparisons alpha nan", "comparisons.alpha=nan", "comparisons.alpha"),
    ("fedprox mu true", "methods.fedprox.mu=true", "methods.fedprox.mu"),
]
ABSURD = [
    ("max_retries past its bound", "settings.lt10-dir1.split.max_retries=1000000000", "split.max_retries"),
    ("a billion rounds", "federation.rounds=1000000000", "federation.rounds"),
    ("unknown tracking scheme", "tracking_uri=foo://bar", "tracking_uri"),
    ("sqlite with two slashes", "tracking_uri=sqlite://mlflow.db", "tracking_uri"),
]


def _partition(folder: Path, config: Path) -> Path:
    part = folder / "part"
    assert main(["partition", "--config", str(config), *JOB, "--out", str(part)]) == 0
    return part


def edited_manifest(edit: Callable[[dict], None]):
    def case(folder, config):
        part = _partition(folder, config)
        manifest = json.loads((part / "manifest.json").read_text())
        edit(manifest)
        (part / "manifest.json").write_text(json.dumps(manifest))
        return train_args(config, folder / "run", "--partition", str(part)), []
    return case


def finished_run(folder: Path, config: Path) -> Path:
    out = folder / "done"
    assert main(train_args(config, out, "--no-track")) == 0
    return out


def damaged_metrics(content: str):
    def case(folder, config):
        out = finished_run(folder, config)
        (out / "metrics.json").write_text(content)
        return train_args(config, out, "--no-track"), []
    return case


def edited_metrics(edit: Callable[[dict], None]):
    """A finished run whose metrics.json is edited by hand; the rerun must refuse it, not log it as a result."""
    def case(folder, config):
        out = finished_run(folder, config)
        record = json.loads((out / "metrics.json").read_text())
        edit(record)
        (out / "metrics.json").write_text(json.dumps(record))
        return train_args(config, out), []
    return case


def data_root_a_file(folder, config):
    (folder / "datasets").write_text("not a folder")
    return train_args(config, folder / "run", "--no-track", "--set", f"data_root={folder / 'datasets'}"), []


def flower_app_relative_run_folder(folder, config):
    part = _partition(folder, config)
    return (["flower", "app", "--config", str(config), *JOB, "--method", "fedavg", "--partition", str(part),
             "--run-folder", "runs/fedavg", "--out", str(folder / "app")], [])


def checkpoint(content: Callable[[Path], None]):
    def case(folder, config):
        out = folder / "run"
        out.mkdir()
        content(out / "checkpoint.pt")
        return train_args(config, out, "--no-track"), []
    return case


def _foreign_checkpoint(path: Path) -> None:
    import torch

    torch.save({"round": 1, "extra": {"job_digest": "another job", "partition_sha256": "?"}}, path)


def out_is_a_file(folder, config):
    (folder / "run").write_text("not a folder")
    return train_args(config, folder / "run", "--no-track"), []


def corrupt_store(folder, config):
    (folder / "bad.db").write_bytes(b"this is no database" * 10)
    return train_args(config, folder / "run", "--set", f"tracking_uri=sqlite:///{folder / 'bad.db'}"), []


def read_only_store(folder, config):
    import os

    store = folder / "mlflow.db"
    store.write_bytes(b"")
    writable = os.access  # root passes os.access whatever the mode bits say: the check is patched instead
    return train_args(config, folder / "run"), [mock.patch("os.access", lambda p, m: Path(p) != store and writable(p, m))]


def read_only_out(folder, config):
    import os

    return train_args(config, folder / "run", "--no-track"), [
        mock.patch("os.access", lambda p, m: Path(p) != folder and os.path.exists(p))]


def disk_full_mid_run(folder, config):
    """The disk fills after the pre-flight check, when the first checkpoint is written."""
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(folder / "run" / "checkpoint.pt"))
    return train_args(config, folder / "run", "--no-track"), [mock.patch("torch.save", full)]


def disk_full_at_start(folder, config):
    return train_args(config, folder / "run", "--no-track"), [mock.patch("fedakd.jobs.MIN_FREE_BYTES", 2**62)]


def no_cuda(folder, config):
    return (train_args(config, folder / "run", "--no-track", "--set", "device=cuda"),
            [mock.patch("torch.cuda.is_available", lambda: False)])


def flower_missing(folder, config):
    import importlib.util

    real = importlib.util.find_spec
    part = _partition(folder, config)
    return (["flower", "simulate", "--config", str(config), *JOB, "--method", "fedavg", "--partition", str(part),
             "--out", str(folder / "run")],
            [mock.patch("importlib.util.find_spec", lambda name, *a: None if name in ("flwr", "ray") else real(name, *a))])


#: (name, kind, case, a fragment the one line must hold)
CASES = [
    *[(name, "non-finite", override(value, value.split(".")[1] if value.startswith("methods.") else "fedavg"), key)
      for name, value, key in NON_FINITE],
    *[(name, "unbounded", override(value), key) for name, value, key in ABSURD],
    ("manifest: a class count", "manifest", edited_manifest(lambda m: m["class_counts"].__setitem__(0, 1)),
     "manifest.json was changed after it was written"),
    ("manifest: the minority group", "manifest", edited_manifest(lambda m: m["groups"].__setitem__("minority", [0, 1])),
     "manifest.json was changed after it was written"),
    ("manifest: a count of the wrong type", "manifest",
     edited_manifest(lambda m: m["transfer_counts"].__setitem__(0, "ten")), "lacks or garbles a field"),
    ("manifest: groups a list", "manifest", edited_manifest(lambda m: m.__setitem__("groups", [])),
     "lacks or garbles a field"),
    ("manifest: an older format", "manifest", edited_manifest(lambda m: m.__setitem__("format_version", 2)),
     "format_version 2"),
    ("--out is a file", "fault", out_is_a_file, "is a file, not a folder"),
    ("--out not writable", "fault", read_only_out, "permission denied"),
    ("read-only MLflow store", "fault", read_only_store, "is read-only"),
    ("disk full before the run", "fault", disk_full_at_start, "free some space"),
    ("disk full mid-run", "fault", disk_full_mid_run, "no space left on the disk"),
    ("truncated checkpoint", "fault", checkpoint(lambda p: p.write_bytes(b"PK\x03\x04 half a zip")),
     "checkpoint.pt cannot be read"),
    ("empty checkpoint", "fault", checkpoint(lambda p: p.write_bytes(b"")), "checkpoint.pt cannot be read"),
    ("another job's checkpoint", "fault", checkpoint(_foreign_checkpoint), "belongs to a different job"),
    ("corrupt MLflow store", "fault", corrupt_store, "is not an SQLite database"),
    ("device cuda without a GPU", "fault", no_cuda, "torch sees no CUDA device"),
    ("metrics.json a JSON list", "fault", damaged_metrics("[1, 2]"), "holds a JSON list"),
    ("metrics.json a number", "fault", damaged_metrics("3"), "holds a JSON int"),
    ("metrics.json truncated", "fault", damaged_metrics('{"final": {'), "is not valid JSON"),
    ("the flower extra missing", "fault", flower_missing, "pip install 'fedakd-bench[flower]'"),
    ("metrics.json: an evaluated round cut", "fault", edited_metrics(lambda m: m["history"].pop(1)),
     "history's evaluated rounds [2]"),
    ("metrics.json: the final score edited", "fault",
     edited_metrics(lambda m: m["final"].__setitem__("balanced_accuracy", 0.99)), "differ from its history's last"),
    ("lr too large for float32", "unbounded", override("federation.lr=1e308"), "federation.lr: 1e+308 -- at most"),
    ("data_root a file", "fault", data_root_a_file, "is a file, not a folder"),
    ("flower app: a relative run folder", "fault", flower_app_relative_run_folder, "--run-folder runs/fedavg"),
]


def run_case(case, folder: Path, config: Path) -> tuple[int, str]:
    """The exit status and stderr of one case, in this process (so that its patches apply)."""
    argv, patches = case(folder, config)
    err = io.StringIO()
    with contextlib.ExitStack() as stack:
        for patch in patches:
            stack.enter_context(patch)
        stack.enter_context(contextlib.redirect_stderr(err))
        stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
        try:
            code = main(argv)
        except SystemExit as exit:  # argparse's refusals
            code = exit.code
    return code, err.getvalue()


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("case, fragment", [(case, fragment) for _, _, case, fragment in CASES],
                         ids=[name for name, *_ in CASES])
def test_a_fault_is_one_clean_line(tmp_path, case, fragment):
    from tests.helpers import smoke_config

    config = smoke_config(tmp_path)
    before: dict[str, bytes] = {}

    def snapshot(original):
        def wrapped(folder, config):
            result = original(folder, config)
            before.update(_tree(folder))  # what the case set up: nothing of it may change or vanish
            return result
        return wrapped

    code, err = run_case(snapshot(case), tmp_path, config)
    lines = err.strip().splitlines()
    assert code == 2 and "Traceback" not in err, err
    assert lines[-1].startswith("fedakd: error:") and fragment in lines[-1], lines
    after = _tree(tmp_path)
    assert {k: v for k, v in after.items() if k in before} == before  # nothing earlier lost or changed
    assert not (tmp_path / "run" / "metrics.json").exists()  # nothing written as if it were a result
    assert not [name for name in after if name not in before and not name.startswith("data/")]


if __name__ == "__main__":  # the catalogue: every case, its exit status and the last line it printed
    from tests.helpers import smoke_config

    clean = 0
    for name, kind, case, fragment in CASES:
        with tempfile.TemporaryDirectory() as tmp:
            code, err = run_case(case, Path(tmp), smoke_config(Path(tmp)))
        last = err.strip().splitlines()[-1] if err.strip() else ""
        ok = code == 2 and "Traceback" not in err and fragment in last
        clean += ok
        print(f"| {name} | {kind} | {code} | {last.replace('|', '/')} | {'clean' if ok else 'NOT CLEAN'} |")
    print(f"{clean} of {len(CASES)} clean", file=sys.stderr)


def test_an_absurd_size_is_warned_of_before_any_work(tmp_path, capsys):
    from tests.helpers import smoke_config

    config = smoke_config(tmp_path)
    # digits: 134 a class, 129 after the 5 set aside; its long tail of 10 keeps 129, 99, 77, 59, 46, 35, 27, 21, 16,
    # 12 = 521 examples; 3 rounds x 10^8 epochs x 521 / 9,500 a second = 4,570 CPU-hours a job
    assert main(["validate", "--config", str(config), "--set", "federation.local_epochs=100000000"]) == 0
    err = capsys.readouterr().err
    from fedakd.config import load_config
    from fedakd.config.cost import job_hours

    huge = load_config(config, ["federation.local_epochs=100000000"])
    assert job_hours(huge, "digits", "fedavg") == pytest.approx(4570, abs=0.5)
    # the warning names the largest job: a resampling method's clients train on more examples than they hold
    largest = max(job_hours(huge, "digits", method) for method in huge["methods"])
    assert largest > 4570 and err.startswith(f"warning: every digits job needs up to {largest:,.0f} CPU-hours")
    assert main(["validate", "--config", str(config), "--set", "methods.fedakd.distill_steps=1000000000"]) == 0
    assert "digits jobs of fedakd need up to " in capsys.readouterr().err
    assert main(["validate", "--config", str(config)]) == 0 and capsys.readouterr().err == ""
