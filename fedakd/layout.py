"""The run-folder contract: where a job writes, what it names its files, what a metrics.json holds.

Training (fedakd.jobs) writes these files and reporting (fedakd.reporting) reads them; both import
this module and neither imports the other.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from fedakd.metrics import METRIC_KEYS

METRICS_FILE, TIMINGS_FILE, CHECKPOINT_FILE = "metrics.json", "timings.json", "checkpoint.pt"
ARTIFACTS_DIR = "artifacts"
#: Written by the tracking step, not by training: the run's MLflow store, experiment and run id, and whether
#: the run is FINISHED there (fedakd.jobs.track_job).
TRACKING_FILE = "mlflow.json"

#: Identity of a run inside metrics.json["job"].
JOB_KEYS = ("dataset", "setting", "method", "method_class", "seed")
#: Top-level keys every metrics.json has (reporting refuses a file that lacks one).
REQUIRED_KEYS = ("job", "setting", "method_options", "federation", "model", "num_classes", "class_counts", "groups",
                 "partition_sha256", "final", "best", "failure", "history", "cost")
#: Cost counters of metrics.json["cost"] (METHOD.md §3, compute parity).
COST_KEYS = ("local_steps", "server_steps", "bytes_down", "bytes_up", "rounds", "clients_per_round")


def job_key(job: Mapping[str, Any]) -> str:
    """dataset/setting/method/seed<seed> of a metrics.json's "job" (or any mapping with those keys); a tuning
    job's candidate comes before the seed: dataset/setting/method/c<candidate>/seed<seed>."""
    candidate = f"c{job['candidate']}/" if job.get("candidate") is not None else ""
    return f"{job['dataset']}/{job['setting']}/{job['method']}/{candidate}seed{job['seed']}"


def run_dir(results: str | Path, job: Mapping[str, Any]) -> Path:
    """results/runs/{dataset}/{setting}/{method}/seed{seed} under the results folder."""
    return Path(results) / "runs" / job_key(job)


def missing_keys(metrics: Mapping[str, Any]) -> list[str]:
    """The contract's keys a metrics.json lacks (empty when it is complete)."""
    missing = [key for key in REQUIRED_KEYS if key not in metrics]
    missing += [f"job.{key}" for key in JOB_KEYS if key not in metrics.get("job", {})]
    missing += [f"final.{key}" for key in (*METRIC_KEYS, "per_class_recall") if key not in metrics.get("final", {})]
    return missing
