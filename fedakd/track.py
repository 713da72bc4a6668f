"""Logging a finished run folder to MLflow: one FINISHED run per job, named, tagged, with its partition as the
run's dataset input and its figures as artifacts (fedakd.tracking has the store's mechanics and says why this
happens after training, in one process per setting)."""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any, Mapping

from fedakd.io import UnreadableFileError, atomic_write_json, read_json
from fedakd.layout import ARTIFACTS_DIR, METRICS_FILE, TIMINGS_FILE, TRACKING_FILE, job_key
from fedakd.record import RunRecord


def run_name(job: Mapping[str, Any]) -> str:
    """The MLflow run's name (from a metrics.json's "job"), method first so that a narrow column still shows it."""
    candidate = f" c{job['candidate']}" if job.get("candidate") is not None else ""
    return f"{job['method']}{candidate} | {job['setting']} | seed {job['seed']} | {job['dataset']}"


def source_tags(commit: str) -> dict[str, str]:
    """MLflow's source tags: what ran (a Snakemake rule's script or the command line) and at which commit."""
    entry = "snakemake workflow (rules train and track)" if "snakemake" in sys.modules else "fedakd train"
    return {"mlflow.source.name": entry, "mlflow.source.type": "LOCAL", "mlflow.source.git.commit": commit,
            "mlflow.user": os.environ.get("USER", "fedakd")}



def partition_inputs(metrics: Mapping[str, Any]) -> list:
    """A run's partition as its MLflow dataset input: name, digest, source, the class counts as its profile.

    MLflow keeps a dataset digest in 36 characters, so the digest is the first 36 hex digits of the
    partition's SHA-256 (the whole hash is in the profile and in the run's partition_sha256 tag).
    """
    import json

    from mlflow.entities import Dataset, DatasetInput, InputTag

    job, sha = metrics["job"], metrics["partition_sha256"]
    source = {"dataset": job["dataset"], "setting": job["setting"], "seed": job["seed"],
              "uri": f"results/partitions/{job['dataset']}/{job['setting']}/seed{job['seed']}"}
    profile = {"partition_sha256": sha, **metrics["partition"], "class_counts": metrics["class_counts"]}
    dataset = Dataset(name=f"{job['dataset']}/{job['setting']}/seed{job['seed']}", digest=sha[:36],
                      source_type="fedakd-partition", source=json.dumps(source),
                      schema=json.dumps({"imbalance": metrics["setting"]["imbalance"],
                                         "split": metrics["setting"]["split"]}),
                      profile=json.dumps(profile))
    return [DatasetInput(dataset, tags=[InputTag("mlflow.data.context", "training")])]


def failure_tags(metrics: Mapping[str, Any]) -> dict[str, str]:
    """MLflow tags of a run's failure flags: ``collapsed`` and ``diverged``, each 'no' or 'round r (step)'."""
    failure = metrics.get("failure") or {}
    return {kind: (f"round {entry['round']} ({entry['step']})" if (entry := failure.get(kind)) else "no")
            for kind in ("collapsed", "diverged")}



def run_summary(metrics: Mapping[str, Any]) -> dict[str, float]:
    """A run's single-valued MLflow metrics: final and (labelled optimistic) best-round figures, the client
    counters, the cost, and the rounds its failure flags name."""
    final, best = metrics["final"], metrics["best"]
    return {**{f"final_{k}": v for k, v in final.items() if k != "per_class_recall" and v is not None},
            **{f"optimistic_best_round_{k}": v for k, v in best.items()
               if k not in ("per_class_recall", "round") and v is not None},
            **metrics["client_counters"], **{f"cost_{k}": v for k, v in metrics["cost"].items()},
            **{f"{kind}_round": entry["round"] for kind in ("collapsed", "diverged")
               if (entry := (metrics.get("failure") or {}).get(kind))}}


def run_tags(metrics: Mapping[str, Any], out_dir: Path) -> dict[str, str]:
    """A run's MLflow tags: what ran, on which partition, at which commit, its failure flags, and whose run it is
    (fedakd.tracking.OWNER_TAGS: a run retires only earlier runs of the same job, config and folder)."""
    job, commit = metrics["job"], metrics["git_commit"]
    return {"dataset": job["dataset"], "setting": job["setting"], "method": job["method"],
            "method_class": job["method_class"], "seed": str(job["seed"]),
            "partition_sha256": metrics["partition_sha256"],
            **({"candidate": str(job["candidate"])} if job.get("candidate") is not None else {}),
            "git_commit": commit, "device": metrics["device"], "engine": metrics.get("engine", "fedakd"),
            **source_tags(commit), **failure_tags(metrics),
            "job_digest": metrics["job_digest"], "run_folder": str(out_dir.resolve())}


def tracking_record(out_dir: str | Path) -> dict[str, Any]:
    """The run folder's mlflow.json (store, experiment, run id, finished), empty when it was never logged."""
    path = Path(out_dir) / TRACKING_FILE
    return read_json(path, "MLflow tracking record") if path.exists() else {}


def track_job(out_dir: str | Path, *, tracking_uri: str, experiment_id: str) -> str:
    """Log a finished run folder as one FINISHED MLflow run of ``experiment_id``; return the run's id.

    A folder already logged to that experiment with the same metrics.json is left as it is; one whose
    earlier attempt lost its server resumes that run and logs only what it lacks; a retrained job (another
    metrics.json) gets a new run, which retires the old one. Draws the run's figures (artifacts/) when they are missing.
    """
    from fedakd.run_artifacts import FIGURE_FILES, artifact_files, draw_run_figures
    from fedakd.tracking import log_run

    out_dir = Path(out_dir)
    record_path = out_dir / TRACKING_FILE
    record = tracking_record(out_dir)
    raw = (out_dir / METRICS_FILE).read_bytes()
    results = hashlib.sha256(raw).hexdigest()
    # The same results into the same experiment: a retrained job's folder (new metrics.json) is a new run.
    same_run = (record.get("tracking_uri"), record.get("experiment_id"), record.get("metrics_sha256")) == (
        tracking_uri, experiment_id, results)
    if same_run and record.get("finished"):
        return record["run_id"]
    metrics = json.loads(raw)  # metrics.json as training wrote it (atomically): the file hashed just above
    if problems := RunRecord.problems(metrics):
        raise UnreadableFileError(f"metrics file {out_dir / METRICS_FILE} lacks {', '.join(problems)}; delete it and "
                                  f"rerun that job")
    timings = out_dir / TIMINGS_FILE
    artifacts = out_dir / ARTIFACTS_DIR
    if not all((artifacts / name).exists() for name in FIGURE_FILES):
        draw_run_figures(artifacts, metrics)
    job = metrics["job"]

    def remember(run_id: str, finished: bool = False) -> None:
        atomic_write_json(record_path, {"tracking_uri": tracking_uri, "experiment_id": experiment_id,
                                        "metrics_sha256": results, "run_id": run_id, "finished": finished})

    run_id = log_run(tracking_uri, experiment_id, job_key=job_key(job), run_name=run_name(job),
                     tags=run_tags(metrics, out_dir), params=read_json(artifacts / "job.json", "job spec"),
                     history=metrics["history"],
                     timings=read_json(timings, "timings file")["history"] if timings.exists() else [],
                     summary=run_summary(metrics), artifacts=artifact_files(artifacts),
                     inputs=lambda: partition_inputs(metrics),
                     resume_run_id=record.get("run_id") if same_run else None, on_created=remember,
                     safe=f"the results are saved in {out_dir}")
    remember(run_id, finished=True)
    return run_id

