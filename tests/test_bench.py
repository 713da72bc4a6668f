"""benchmarks/bench.py --quick end to end, and the reference implementation's averaging by hand."""

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _fashion_mnist_present() -> bool:
    from fedakd.data import DataError, ensure_dataset

    try:
        ensure_dataset("fashion-mnist", ROOT / "data", download=False)
    except DataError:
        return False
    return True


def test_average_state_dicts_weights_by_example_count():
    import torch

    from benchmarks.reference import average_state_dicts

    states = [{"w": torch.tensor([1.0, 2.0]), "b": torch.tensor([0.0])},
              {"w": torch.tensor([4.0, 8.0]), "b": torch.tensor([3.0])}]
    averaged = average_state_dicts(states, [1, 2])
    # w: 1/3 * [1, 2] + 2/3 * [4, 8] = [3, 6]; b: 1/3 * 0 + 2/3 * 3 = 2
    torch.testing.assert_close(averaged["w"], torch.tensor([3.0, 6.0]))
    torch.testing.assert_close(averaged["b"], torch.tensor([2.0]))


@pytest.mark.slow
@pytest.mark.fmnist
def test_quick_bench_writes_every_figure(tmp_path):
    if not _fashion_mnist_present():
        pytest.skip("Fashion-MNIST is not on this machine (make data)")
    out = tmp_path / "summary.json"
    completed = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench.py"), "--quick", "--threads", "1", "--out", str(out)],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )
    assert completed.returncode == 0, completed.stderr
    summary = json.loads(out.read_text())

    for key in ("engine_vs_bare", "speedup_vs_reference", "startup_seconds", "startup_cpu_seconds",
                "overhead_cpu_seconds", "peak_rss_mb"):
        assert 0 < summary[key] < 1e5, (key, summary[key])
    assert 0 < summary["study_overhead_share"] < 1
    job = summary["details"]["overhead"]["trees"]["current"]
    assert len(job["imports"]) == 10 and job["imports"][0]["seconds"] >= job["imports"][-1]["seconds"] > 0
    assert "torch" in {row["module"] for row in job["imports"]}
    assert job["study"]["tracking_step_cpu_seconds"] > 0  # the track step's MLflow import is counted
    assert "overhead_cpu_seconds" in completed.stdout and "study_overhead_share" in completed.stdout
    assert 0.05 < summary["engine_vs_bare"] < 20  # same loop both sides: far from 1 means a broken measurement
    scaling = summary["scaling"]
    assert set(scaling["seconds_per_round"]["by_clients"]) == {"10", "50", "100"}
    assert set(scaling["seconds_per_round"]["by_data_fraction"]) == {"0.25", "0.5", "1.0"}
    assert all(s > 0 for part in scaling["seconds_per_round"].values() for s in part.values())
    assert scaling["clients_100_over_10"] > 0 and scaling["data_100_over_25"] > 0
    overhead = summary["fedakd_overhead"]
    assert overhead["fedakd_over_fedavg"] > 0 and overhead["fedavg-smote_over_fedavg"] > 0
    assert summary["pipeline_seconds"] is None  # only with --pipeline

    reference = summary["details"]["speedup_vs_reference"]
    rounds = len(reference["engine_round_seconds"])
    assert len(reference["engine_accuracy"]) == len(reference["reference_accuracy"]) == rounds
    assert all(0 <= a <= 1 for a in reference["engine_accuracy"] + reference["reference_accuracy"])
    machine = summary["machine"]
    assert machine["torch_threads"] == 1 and machine["cores"] >= 1 and machine["cpu_model"]
    assert "engine_vs_bare" in completed.stdout and "speedup_vs_reference" in completed.stdout


def test_the_gpu_check_refuses_at_once_without_cuda(tmp_path):
    """`make gpu-check` on a machine without a GPU: one line, exit 2, nothing written, seconds."""
    import os

    out = tmp_path / "gpu.json"
    started = time.perf_counter()
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--out", str(out)],
                          capture_output=True, text=True, timeout=120, env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().count("\n") == 0 and done.stderr.startswith("gpu-check: error: no CUDA device")
    assert "a machine with an NVIDIA GPU" in done.stderr and "Traceback" not in done.stderr
    assert not out.exists() and time.perf_counter() - started < 30


def test_the_rungs_jobs_resolve_against_the_headline_config_with_the_options_each_row_names():
    """benchmarks.rungs trains config/converged.yaml with a few keys changed: every job must still resolve (a step
    setting added to the config broke it once) and run exactly the options its row names, whatever choice the
    config carries for the pool."""
    import itertools

    import yaml

    from benchmarks import rungs
    from fedakd.config import job_spec, load_config

    rows = list(itertools.product(rungs.METHODS.items(), rungs.STEPS))
    jobs = rungs._jobs()
    assert len(jobs) == len(rows) == len({job[0] for job in jobs})
    for ((name, (method, options)), lr), (_, overrides, job_method, setting, seed) in zip(rows, jobs):
        spec = job_spec(load_config(rungs.CONFIG, list(overrides)), dataset="fashion-mnist", setting=setting,
                        method=job_method, seed=seed)
        assert (spec.method, spec.seed, spec.federation["lr"], spec.federation["rounds"]) == (method, 9, lr, 60)
        for option in options:
            key, value = option.split("=")
            assert spec.method_options[key] == yaml.safe_load(value), (name, key)
