"""Results must not move when the code around them is restructured.

Each job below trains on digits through the command line; its metrics.json is compared with the
values stored in tests/data/regression_digits.json, which were written by the code before the
engine and config refactor (issue 13). Everything the stored file holds must be found again:
metrics, per-round history, class counts, groups, partition hash, counters. Keys added since
(cost accounting, new options with defaults) are allowed; a changed or missing value is not.

Floats are compared to 1e-6 relative: on one machine the values are bit-identical (the same
seed gives the same bits, tests/test_jobs.py), but a CI machine with another CPU may take
another BLAS kernel and differ in the last digits. A refactor that changes a random stream or
the order of updates moves these numbers by far more than that.

Regenerate (only for an intended change of results, saying why in the commit), all jobs or some:
    .venv/bin/python -m tests.test_regression --write [NAME ...]
Check bit for bit (on the machine that wrote the file): .venv/bin/python -m tests.test_regression --exact

History of intended changes: fedakd-client's train_loss became the local pass's loss alone (the
distillation pass's is client_kd_loss), issue 10.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

from fedakd.cli import main
from tests.helpers import smoke_config

ROOT = Path(__file__).resolve().parents[1]
EXPECTED = ROOT / "tests" / "data" / "regression_digits.json"
#: Volatile keys: they name the run, the machine or the code, not the result.
VOLATILE = {"mlflow_run_id", "mlflow_experiment_id", "git_commit", "device", "job_digest"}

#: name -> (method of config/smoke.yaml, overrides)
JOBS = {
    "fedavg": ("fedavg", []),
    "fedavg-smote": ("fedavg-smote", []),
    "fedavg-ft": ("fedavg-ft", []),
    "fedakd": ("fedakd", []),
    "fedakd-noattn": ("fedakd", ["methods.fedakd.attention=false"]),
    "fedakd-client": ("fedakd", ["methods.fedakd.kd_site=client"]),
    "fedavg-half": ("fedavg", ["federation.fraction=0.5", "federation.rounds=4"]),
}


def train(config: Path, out: Path, method: str, overrides: list[str]) -> dict:
    args = ["train", "--config", str(config), "--dataset", "digits", "--setting", "lt10-dir1", "--method", method,
            "--seed", "0", "--out", str(out), "--threads", "1"]
    for override in overrides:
        args += ["--set", override]
    assert main(args) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    return {key: value for key, value in metrics.items() if key not in VOLATILE}


def differences(stored, found, path: str = "", rel_tol: float = 1e-6) -> list[str]:
    """Where ``found`` fails to contain ``stored`` (floats to ``rel_tol``); extra keys in ``found`` are fine."""
    if isinstance(stored, dict):
        if not isinstance(found, dict):
            return [f"{path}: expected a mapping, found {found!r}"]
        return [problem for key, value in stored.items()
                for problem in (differences(value, found[key], f"{path}.{key}", rel_tol) if key in found
                                else [f"{path}.{key}: missing"])]
    if isinstance(stored, list):
        if not isinstance(found, list) or len(found) != len(stored):
            return [f"{path}: expected {len(stored)} items, found {found!r}"]
        return [problem for i, (a, b) in enumerate(zip(stored, found))
                for problem in differences(a, b, f"{path}[{i}]", rel_tol)]
    if isinstance(stored, float) and isinstance(found, (int, float)) and not isinstance(found, bool):
        close = stored == found or (rel_tol > 0 and math.isclose(stored, found, rel_tol=rel_tol, abs_tol=1e-9))
        return [] if close else [f"{path}: {stored!r} -> {found!r}"]
    return [] if stored == found and type(stored) is type(found) else [f"{path}: {stored!r} -> {found!r}"]


def run_all(folder: Path, names=tuple(JOBS)) -> dict[str, dict]:
    config = smoke_config(folder)
    return {name: train(config, folder / name, *JOBS[name]) for name in names}


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    return run_all(tmp_path_factory.mktemp("regression"))


@pytest.mark.parametrize("name", list(JOBS))
def test_results_match_the_stored_ones(results, name):
    stored = json.loads(EXPECTED.read_text())[name]
    problems = differences(stored, results[name])
    assert not problems, f"{name}: results moved:\n" + "\n".join(problems[:20])


def test_the_comparison_notices_a_change():
    stored = {"final": {"accuracy": 0.5, "per_class_recall": [0.1, 0.2]}, "groups": {"tail": [3]}}
    assert differences(stored, {**stored, "extra": 1}) == []
    assert differences(stored, {"final": {"accuracy": 0.5 + 1e-5, "per_class_recall": [0.1, 0.2]},
                                "groups": {"tail": [3]}}) == [".final.accuracy: 0.5 -> 0.50001"]
    assert differences(stored, {"final": {"accuracy": 0.5, "per_class_recall": [0.1]}, "groups": {"tail": [3]}})
    assert differences(stored, {"final": {"accuracy": 0.5, "per_class_recall": [0.1, 0.2]}}) == [".groups: missing"]
    assert differences({"n": 1}, {"n": 1.0}) == [".n: 1 -> 1.0"]


if __name__ == "__main__" and sys.argv[1:2] == ["--exact"]:
    import tempfile

    import torch

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as folder:
        found = run_all(Path(folder))
    for name, stored in json.loads(EXPECTED.read_text()).items():
        problems = differences(stored, found[name], rel_tol=0.0)
        print(f"{name}: {'bit for bit' if not problems else 'differs: ' + '; '.join(problems[:5])}")

if __name__ == "__main__" and sys.argv[1:2] == ["--write"]:
    import tempfile

    import torch

    torch.set_num_threads(1)
    names = sys.argv[2:] or list(JOBS)
    with tempfile.TemporaryDirectory() as folder:
        found = run_all(Path(folder), names)
    stored = json.loads(EXPECTED.read_text()) if EXPECTED.exists() else {}
    EXPECTED.parent.mkdir(parents=True, exist_ok=True)
    EXPECTED.write_text(json.dumps({**stored, **found}, indent=1, sort_keys=True) + "\n")
    print(f"wrote {', '.join(names)} into {EXPECTED}")
