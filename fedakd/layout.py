"""Where everything lives: the results tree the pipeline writes (its Snakemake rules take these patterns) and
the files of a run folder. Training, tracking, reporting and the workflow all import the names from here;
none retypes a path.
"""

from __future__ import annotations

from typing import Any, Mapping

# -- the results tree (Snakemake wildcard patterns, relative to the working folder) ---------------------------
DATA_RECORD = "results/data/{dataset}.json"
PARTITION_DIR = "results/partitions/{dataset}/{setting}/seed{seed}"
RUN_DIR = "results/runs/{dataset}/{setting}/{method}/seed{seed}"
TUNING_RUN_DIR = "results/tuning/runs/{dataset}/{setting}/{method}/c{candidate}/seed{seed}"
TUNING_CHOICE = "results/tuning/{dataset}/{setting}/{method}.json"
TRACKED_RUNS = "results/mlflow/runs/{dataset}/{setting}.json"
TRACKED_TUNING_RUNS = "results/mlflow/tuning/{dataset}/{setting}.json"
EXPERIMENT_FILE = "results/mlflow/experiment.json"
SUMMARY_RUN_FILE = "results/mlflow/summary.json"
TABLES_DIR = "results/tables"
FIGURES_DIR = "reports/figures"
REPORT_FILE = "reports/report.md"
#: The study's tables (results/tables/{name}.{csv,md,tex}); a tuned study adds "tuning".
TABLE_NAMES = ("summary", "comparison", "ladder", "cost", "across")
TABLE_FORMATS = ("csv", "md", "tex")

# -- a partition folder and a run folder ---------------------------------------------------------------------
MANIFEST_FILE, INDICES_FILE, HEATMAP_FILE = "manifest.json", "indices.npz", "heatmap.png"
METRICS_FILE, TIMINGS_FILE, CHECKPOINT_FILE = "metrics.json", "timings.json", "checkpoint.pt"
ARTIFACTS_DIR = "artifacts"
#: The deployed model: its flat weights (fedakd.engine.flatten_parameters' order), backbone and model options.
WEIGHTS_FILE = "model.pt"
#: Written by the tracking step, not by training: the run's MLflow store, experiment and run id, and whether
#: the run is FINISHED there (fedakd.track.track_job).
TRACKING_FILE = "mlflow.json"


def job_key(job: Mapping[str, Any]) -> str:
    """dataset/setting/method/seed<seed> of a metrics.json's "job" (or any mapping with those keys); a tuning
    job's candidate comes before the seed: dataset/setting/method/c<candidate>/seed<seed>."""
    candidate = f"c{job['candidate']}/" if job.get("candidate") is not None else ""
    return f"{job['dataset']}/{job['setting']}/{job['method']}/{candidate}seed{job['seed']}"
