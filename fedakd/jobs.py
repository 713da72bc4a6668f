"""The two jobs of the pipeline: make a partition, train one (dataset, setting, method, seed).

Both are plain functions called by the CLI and by the Snakemake scripts. A train
job is restartable: a finished one does nothing, a killed one resumes from its
last checkpointed round into the same MLflow run, and the metrics.json it ends
with is byte-identical to an uninterrupted run's.
"""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from fedakd.io import atomic_write_json, read_json

log = logging.getLogger("fedakd")

METRICS_FILE, TIMINGS_FILE, CHECKPOINT_FILE, RUN_FILE = "metrics.json", "timings.json", "checkpoint.pt", "run.json"


class JobError(RuntimeError):
    """A job cannot run as asked (inconsistent inputs, foreign outputs in its folder)."""


def job_key(job: dict[str, Any]) -> str:
    return f"{job['dataset']}/{job['setting']}/{job['method']}/seed{job['seed']}"


def job_digest(job: dict[str, Any]) -> str:
    """What identifies a job's results: everything in its config slice except where it logs to."""
    from fedakd.config import config_digest

    return config_digest({k: v for k, v in job.items() if k not in ("experiment", "tracking_uri")})


def git_commit() -> str:
    """The commit of the code that ran, with '-dirty' if the work tree had changes."""
    repo = Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, timeout=10)
        if head.returncode != 0:
            return "unknown"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return head.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


# -- partitions -----------------------------------------------------------------------------
def partition_params(job: dict[str, Any]) -> dict[str, Any]:
    """The arguments of make_partition that a job's config determines."""
    fed = job["federation"]
    return {"imbalance": job["setting_params"]["imbalance"], "split": job["setting_params"]["split"],
            "clients": fed["clients"], "proxy_per_class": fed["proxy_per_class"], "seed": job["seed"],
            "dataset": job["dataset"]}


def build_partition(job: dict[str, Any], labels, num_classes: int):
    from fedakd.partition import make_partition

    return make_partition(labels, num_classes, **partition_params(job))


def check_partition_matches(partition, job: dict[str, Any], where: Path) -> None:
    """A saved partition must have been made with exactly this job's partition parameters."""
    wanted = partition_params(job)
    found = {key: partition.params.get(key) for key in wanted}
    if json.dumps(found, sort_keys=True) != json.dumps(wanted, sort_keys=True):
        differing = sorted(k for k in wanted if json.dumps(found[k], sort_keys=True) != json.dumps(wanted[k], sort_keys=True))
        raise JobError(
            f"partition {where} was made with other parameters than this job ({', '.join(differing)} differ); "
            f"delete {where} and rerun the partition step (or `fedakd partition`)"
        )


def partition_job(job: dict[str, Any], *, out_dir: str | Path) -> Path:
    """Make and save the partition of ``job`` (its dataset, setting and seed) with its heatmap."""
    from fedakd.data import dataset_spec, load_train_labels
    from fedakd.partition import save_partition
    from fedakd.reporting.figures import partition_heatmap

    out_dir = Path(out_dir)
    spec = dataset_spec(job["dataset"])
    labels = load_train_labels(job["dataset"], job["data_root"])
    partition = build_partition(job, labels, spec.num_classes)
    save_partition(partition, out_dir)
    partition_heatmap(partition.manifest(), out_dir / "heatmap.png")
    return out_dir / "manifest.json"


# -- training -------------------------------------------------------------------------------
def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def _progress(job: dict[str, Any]):
    """A tqdm bar on a terminal; one plain line per round in a log file."""
    rounds = job["federation"]["rounds"]
    if sys.stderr.isatty():
        from tqdm import tqdm

        bar = tqdm(total=rounds, desc=job_key(job), unit="round", file=sys.stderr)

        def update(record, timing):
            bar.update(record["round"] - bar.n)
            if "accuracy" in record:
                bar.set_postfix(acc=f"{record['accuracy']:.4f}", minority=record.get("minority_recall"))
            if record["round"] == rounds:
                bar.close()

        return update

    def line(record, timing):
        acc = f" accuracy {record['accuracy']:.4f}" if "accuracy" in record else ""
        seconds = timing["client_seconds"] + timing["server_seconds"] + timing["eval_seconds"]
        print(f"{job_key(job)} round {record['round']}/{rounds}{acc} ({seconds:.2f} s)", file=sys.stderr, flush=True)

    return line


def _summaries(history: list[dict[str, Any]]) -> tuple[dict, dict]:
    """Final-round metrics (the headline) and best-round ones (optimistic: chosen on the test set)."""
    from fedakd.metrics import METRIC_KEYS

    def pick(record):
        return {key: record.get(key) for key in (*METRIC_KEYS, "per_class_recall")}

    best = max(history, key=lambda rec: (rec["accuracy"], -rec["round"]))
    return pick(history[-1]), {**pick(best), "round": best["round"]}


def train_job(job: dict[str, Any], *, out_dir: str | Path, partition_dir: str | Path | None = None,
              experiment_id: str | None = None, threads: int | None = None) -> dict[str, Any]:
    """Train one job into ``out_dir``; return the metrics.json content."""
    out_dir = Path(out_dir)
    digest = job_digest(job)
    metrics_path = out_dir / METRICS_FILE
    if metrics_path.exists():
        existing = read_json(metrics_path, "metrics file")
        if existing.get("job_digest") == digest:
            log.info("%s is finished already (%s); nothing to do", job_key(job), metrics_path)
            (out_dir / CHECKPOINT_FILE).unlink(missing_ok=True)
            return existing
        raise JobError(f"{metrics_path} holds the results of a different configuration; "
                       f"delete it or choose another output folder")

    import torch

    from fedakd.data import load_dataset
    from fedakd.engine import resolve_device, run_federation
    from fedakd.partition import load_partition
    from fedakd.registry import get_method
    from fedakd.tracking import RunTracker, ensure_experiment

    started = time.perf_counter()
    if threads:
        torch.set_num_threads(int(threads))
    device = resolve_device(job["device"])
    dataset = load_dataset(job["dataset"], job["data_root"])
    if partition_dir is not None:
        partition = load_partition(partition_dir)
        check_partition_matches(partition, job, Path(partition_dir))
    else:
        partition = build_partition(job, dataset.y_train.numpy(), dataset.num_classes)
    method_cls = get_method(job["method_class"])
    method = method_cls(job["method_options"])
    if method_cls.needs_transfer_set(job["method_options"]) and len(partition.proxy_indices) == 0:
        raise JobError(f"method {job['method']} trains on the transfer set but proxy_per_class is 0; "
                       f"set federation.proxy_per_class > 0")

    out_dir.mkdir(parents=True, exist_ok=True)
    run_file = out_dir / RUN_FILE
    resume_run_id = read_json(run_file, "run file").get("mlflow_run_id") if run_file.exists() else None
    experiment_id = experiment_id or ensure_experiment(job["tracking_uri"], job["experiment"])
    commit = git_commit()
    tags = {"dataset": job["dataset"], "setting": job["setting"], "method": job["method"],
            "method_class": job["method_class"], "seed": str(job["seed"]), "partition_sha256": partition.sha256,
            "git_commit": commit, "device": str(device)}
    tracker = RunTracker(job["tracking_uri"], experiment_id, job_key(job), tags, params=job,
                         resume_run_id=resume_run_id,
                         on_created=lambda run_id: atomic_write_json(run_file, {"mlflow_run_id": run_id}))
    previous_handler = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        result = run_federation(
            method, x_train=dataset.x_train, y_train=dataset.y_train, x_test=dataset.x_test,
            y_test=dataset.y_test, client_indices=partition.client_indices, proxy_indices=partition.proxy_indices,
            num_classes=dataset.num_classes, groups=partition.groups, federation=job["federation"],
            backbone=job["model"]["backbone"], seed=job["seed"], device=device, amp=job.get("amp", False),
            checkpoint=out_dir / CHECKPOINT_FILE,
            checkpoint_extra={"job_digest": digest, "partition_sha256": partition.sha256},
            on_round=tracker.log_round, on_resume=lambda state: tracker.log_history(state["history"]),
            progress=_progress(job),
        )
        final, best = _summaries(result.history)
        metrics = {
            "job": {"dataset": job["dataset"], "setting": job["setting"], "method": job["method"],
                    "method_class": job["method_class"], "seed": job["seed"]},
            "job_digest": digest,
            "setting": job["setting_params"], "method_options": job["method_options"],
            "federation": job["federation"],
            "model": {"backbone": job["model"]["backbone"], "num_params": result.num_params},
            "num_classes": dataset.num_classes, "class_counts": partition.class_counts,
            "groups": partition.groups, "partition_sha256": partition.sha256,
            "client_counters": result.counters,
            "final": final, "best": best, "history": result.history,
            "mlflow_run_id": tracker.run_id, "mlflow_experiment_id": experiment_id,
            "git_commit": commit, "device": str(device),
        }
        from fedakd.run_artifacts import write_run_artifacts

        artifacts = write_run_artifacts(out_dir / "artifacts", job=job, metrics=metrics,
                                        y_true=dataset.y_test.numpy(), y_pred=result.final_predictions,
                                        class_names=dataset.class_names,
                                        manifest=Path(partition_dir) / "manifest.json" if partition_dir else None)
        summary = {f"final_{k}": v for k, v in final.items() if k != "per_class_recall" and v is not None}
        tracker.log_summary({**summary, **{f"best_{k}": v for k, v in best.items()
                                           if k not in ("per_class_recall", "round") and v is not None},
                             **result.counters})
        tracker.finish("FINISHED", artifacts)
    except BaseException as exc:
        status = "KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED"
        try:
            tracker.finish(status)
        except Exception as tracking_error:  # the original error matters more
            log.warning("could not mark the MLflow run %s: %s", status, tracking_error)
        raise
    finally:
        signal.signal(signal.SIGTERM, previous_handler)
    atomic_write_json(out_dir / TIMINGS_FILE, {"history": result.timings,
                                               "wall_seconds": time.perf_counter() - started})
    atomic_write_json(metrics_path, metrics)
    (out_dir / CHECKPOINT_FILE).unlink(missing_ok=True)
    run_file.unlink(missing_ok=True)
    return metrics
