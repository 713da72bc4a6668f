"""Start-up and memory of a real training job, launched as a subprocess the way the pipeline launches it.

Start-up is the wall time from the launch to the job's first local step. The job runs through
``python -m benchmarks.startup JOB <launch time> <fedakd train arguments>``: the ordinary
``fedakd train`` entry point, with one extra engine callback that prints the seconds elapsed when
the first round starts. Its peak resident set comes from os.wait4 in a small parent process.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import DATASET, ROOT, BenchError

STARTUP_MARK, MAXRSS_MARK = "FEDAKD_STARTUP_SECONDS=", "FEDAKD_BENCH_MAXRSS="
LAUNCH_TIME = "{launch_time}"  # replaced by the probe with time.time() just before it starts the job

#: Runs the job as its own child and reports the job's ru_maxrss. A child started directly from the
#: (large) benchmark process would not do: on Linux, exec records the replaced memory's high-water
#: mark, so a vfork()ed child inherits this process's peak. The launch time it passes on is taken
#: just before the launch, so the probe's own start-up is not counted.
RSS_PROBE = f"""\
import os, subprocess, sys, time
command = [repr(time.time()) if part == {LAUNCH_TIME!r} else part for part in sys.argv[1:]]
process = subprocess.Popen(command)
_, status, usage = os.wait4(process.pid, 0)
print(f"{MAXRSS_MARK}{{usage.ru_maxrss}}", file=sys.stderr, flush=True)
sys.exit(os.waitstatus_to_exitcode(status))
"""
MAXRSS_UNIT = 1 if sys.platform == "darwin" else 1024  # ru_maxrss is in bytes on macOS, KiB on Linux


def _marked_value(output: str, mark: str, missing: str) -> float:
    values = [line[len(mark):] for line in output.splitlines() if line.startswith(mark)]
    if not values:
        raise BenchError(f"the job's output has no {mark} line: {missing}; its output:\n{output}")
    return float(values[0])


def _absolute_data_root(config: dict) -> str:
    data_root = Path(config["data_root"])
    return str(data_root if data_root.is_absolute() else ROOT / data_root)


def startup_job(quick: bool) -> tuple[Path, list[str]]:
    """The config of the timed training job and the overrides that make it the default job."""
    default = ROOT / "config" / "config.yaml"
    if default.exists() and not quick:
        return default, []
    smoke = ROOT / "config" / "smoke.yaml"
    return smoke, ([] if quick else [f"datasets=[{DATASET}]"])  # --quick keeps digits: seconds, not minutes


def launch_train_job(config_path: Path, overrides: list[str], *, threads: int, workdir: Path,
                     experiment_id: str | None) -> dict[str, Any]:
    """One `fedakd train` job (1 round) as a subprocess: its start-up seconds and its peak resident set."""
    from fedakd.config import load_config
    from fedakd.io import read_json

    config = load_config(config_path, overrides)
    method = "fedakd" if "fedakd" in config["methods"] else next(iter(config["methods"]))
    out = Path(tempfile.mkdtemp(prefix="job-", dir=workdir))
    arguments = ["train", "--config", str(config_path), "--dataset", config["datasets"][0],
                 "--setting", next(iter(config["settings"])), "--method", method,
                 "--seed", str(config["seeds"][0]), "--out", str(out / "run"), "--threads", str(threads)]
    if experiment_id is not None:
        arguments += ["--experiment-id", experiment_id]
    for override in [*overrides, "federation.rounds=1", f"tracking_uri=sqlite:///{workdir / 'mlflow.db'}",
                     f"data_root={_absolute_data_root(config)}"]:
        arguments += ["--set", override]
    job = [sys.executable, "-m", "benchmarks.startup", "JOB", LAUNCH_TIME, *arguments]
    log_path = out / "job.log"
    with open(log_path, "wb") as log:
        completed = subprocess.run([sys.executable, "-S", "-c", RSS_PROBE, *job], cwd=ROOT, stdout=log,
                                   stderr=subprocess.STDOUT)
    output = log_path.read_text(errors="replace")
    if completed.returncode != 0:
        raise BenchError(f"`{' '.join(job)}` failed with exit status {completed.returncode}; its output:\n{output}")
    metrics = read_json(out / "run" / "metrics.json", "the training job's metrics file")
    startup = _marked_value(output, STARTUP_MARK, "the startup callback never saw a round start")
    peak_rss_mb = _marked_value(output, MAXRSS_MARK, "RSS_PROBE did not run") * MAXRSS_UNIT / 2**20
    return {"startup_seconds": startup, "peak_rss_mb": peak_rss_mb,
            "method": method, "experiment_id_given": experiment_id is not None,
            "experiment_id": metrics["mlflow_experiment_id"]}


def bench_startup(*, quick: bool, threads: int, repeats: int) -> dict[str, Any]:
    """Median start-up of ``repeats`` launches given the experiment id, as the pipeline launches its jobs.

    The first launch creates the MLflow store and experiment (the pipeline does that once, before any
    job) and warms the file cache; it is reported apart. --quick times only that first launch.
    """
    config_path, overrides = startup_job(quick)
    with tempfile.TemporaryDirectory(prefix="fedakd-bench-") as tmp:
        first = launch_train_job(config_path, overrides, threads=threads, workdir=Path(tmp), experiment_id=None)
        launches = [first] if quick else [
            launch_train_job(config_path, overrides, threads=threads, workdir=Path(tmp),
                             experiment_id=first["experiment_id"])
            for _ in range(repeats)
        ]
    return {
        "startup_seconds": statistics.median(run["startup_seconds"] for run in launches),
        "first_launch_startup_seconds": first["startup_seconds"],
        "peak_rss_mb": max(run["peak_rss_mb"] for run in [first, *launches]),
        "launches": launches,
        "config": str(config_path.relative_to(ROOT)), "overrides": [*overrides, "federation.rounds=1"],
        "rss_source": "ru_maxrss of the job process, from os.wait4 in a small parent (largest over the launches)",
    }


def run_job(launch_time: float, arguments: list[str]) -> int:
    """`fedakd train` with a callback that reports the seconds from ``launch_time`` to the first round."""
    from fedakd.cli import main
    from fedakd.engine import Callback

    class StartupTimer(Callback):
        reported = False

        def on_round_start(self, round_idx):
            if not self.reported:
                print(f"{STARTUP_MARK}{time.time() - launch_time:.3f}", file=sys.stderr, flush=True)
                self.reported = True

    return main(arguments, callbacks=[StartupTimer()])


if __name__ == "__main__" and sys.argv[1:2] == ["JOB"]:
    sys.exit(run_job(float(sys.argv[2]), sys.argv[3:]))
