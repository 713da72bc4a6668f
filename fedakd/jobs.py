"""The jobs of the pipeline: make a partition, train one (dataset, setting, method, seed), log a trained one.

Plain functions of a resolved spec (fedakd.config.spec) or a run folder, called by the CLI and by the Snakemake
scripts. A train job is restartable: a finished one does nothing, a killed one resumes from its
last checkpointed round, and the metrics.json it ends with is byte-identical to an uninterrupted
run's. It never imports MLflow: ``track_job`` logs the finished folder afterwards (fedakd.tracking says why).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from fedakd.io import atomic_write_json, read_json
from fedakd.layout import ARTIFACTS_DIR, CHECKPOINT_FILE, METRICS_FILE, TIMINGS_FILE, TRACKING_FILE, job_key
from fedakd.config.spec import JobSpec, PartitionSpec

if TYPE_CHECKING:
    from fedakd.engine import Callback
    from fedakd.partition import Partition

log = logging.getLogger("fedakd")


class JobError(RuntimeError):
    """A job cannot run as asked (inconsistent inputs, foreign outputs in its folder)."""


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
def build_partition(spec: PartitionSpec, data_root: str, labels=None) -> "Partition":
    """The partition ``spec`` describes, from the dataset's training labels (loaded unless given)."""
    from fedakd.data import dataset_spec, load_train_labels
    from fedakd.partition import make_partition

    if labels is None:
        labels = load_train_labels(spec.dataset, data_root)
    return make_partition(labels, dataset_spec(spec.dataset).num_classes, spec)


def partition_job(spec: PartitionSpec, *, data_root: str, out_dir: str | Path) -> "Partition":
    """Make and save one partition (indices.npz + manifest.json) into ``out_dir``."""
    from fedakd.partition import save_partition

    partition = build_partition(spec, data_root)
    save_partition(partition, out_dir)
    return partition


# -- training -------------------------------------------------------------------------------
def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def _progress(job: JobSpec) -> "Callback":
    """A tqdm bar on a terminal; one plain line per round in a log file."""
    from fedakd.engine import Callback

    rounds = job.federation["rounds"]

    class Progress(Callback):
        bar = None

        def on_round_end(self, record, timing):
            if not sys.stderr.isatty():
                acc = f" accuracy {record['accuracy']:.4f}" if "accuracy" in record else ""
                seconds = timing["client_seconds"] + timing["server_seconds"] + timing["eval_seconds"]
                print(f"{job.key} round {record['round']}/{rounds}{acc} ({seconds:.2f} s)", file=sys.stderr,
                      flush=True)
                return
            if self.bar is None:
                from tqdm import tqdm

                self.bar = tqdm(total=rounds, desc=job.key, unit="round", file=sys.stderr)
            self.bar.update(record["round"] - self.bar.n)
            if "accuracy" in record:
                self.bar.set_postfix(acc=f"{record['accuracy']:.4f}", minority=record.get("minority_recall"))
            if record["round"] == rounds:
                self.bar.close()

    return Progress()


def _summaries(history: list[dict[str, Any]]) -> tuple[dict, dict]:
    """Final-round metrics (the headline) and best-round ones (optimistic: chosen on the test set)."""
    from fedakd.metrics import METRIC_KEYS

    def pick(record):
        return {key: record.get(key) for key in (*METRIC_KEYS, "per_class_recall")}

    best = max(history, key=lambda rec: (rec["accuracy"], -rec["round"]))
    return pick(history[-1]), {**pick(best), "round": best["round"]}


def run_name(job: Mapping[str, Any]) -> str:
    """The MLflow run's name (from a metrics.json's "job"), method first so that a narrow column still shows it."""
    candidate = f" c{job['candidate']}" if job.get("candidate") is not None else ""
    return f"{job['method']}{candidate} | {job['setting']} | seed {job['seed']} | {job['dataset']}"


def source_tags(commit: str) -> dict[str, str]:
    """MLflow's source tags: what ran (a Snakemake rule's script or the command line) and at which commit."""
    entry = "snakemake workflow (rules train and track)" if "snakemake" in sys.modules else "fedakd train"
    return {"mlflow.source.name": entry, "mlflow.source.type": "LOCAL", "mlflow.source.git.commit": commit,
            "mlflow.user": os.environ.get("USER", "fedakd")}


def partition_profile(partition) -> dict[str, Any]:
    """What a run records of its partition beside the hash: sizes, for the MLflow dataset input's profile."""
    return {"num_examples": int(sum(len(c) for c in partition.client_indices)),
            "clients": len(partition.client_indices), "transfer_set": int(len(partition.transfer_indices)),
            "validation_set": int(len(partition.validation_indices))}


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


def configure_determinism(device, deterministic: bool) -> None:
    """On CUDA, deterministic kernels unless the config says ``deterministic: false`` (the CPU needs nothing)."""
    if device.type != "cuda" or not deterministic:
        return
    import torch

    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # read when cuBLAS starts, before any matmul
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False


def _finished_metrics(job: JobSpec, metrics_path: Path, out_dir: Path) -> dict[str, Any] | None:
    """The metrics.json of a finished run of this job, None if there is none; refuses a foreign one."""
    if not metrics_path.exists():
        return None
    existing = read_json(metrics_path, "metrics file")
    if existing.get("job_digest") != job.digest:
        raise JobError(f"{metrics_path} holds the results of a different configuration; "
                       f"delete it or choose another output folder")
    log.info("%s is finished already (%s); nothing to do", job.key, metrics_path)
    (out_dir / CHECKPOINT_FILE).unlink(missing_ok=True)
    return existing


#: The federation's options that make local training step harder, suspects when a run diverges.
STEP_OPTIONS = ("lr", "momentum", "local_epochs")


def _divergence_hint(job: JobSpec, step: str) -> str:
    """What to change after a divergence: the step-size options this job set away from their defaults (the
    federation's and the method's own; the method's first when the server's step diverged), else the
    learning rates in general."""
    from fedakd.config import load_schema, validate_method_options

    federation_defaults = load_schema()["properties"]["federation"]["properties"]
    method_defaults = validate_method_options(job.method_class, {})
    changed = [f"federation.{key}={job.federation[key]!r} (default {federation_defaults[key]['default']!r})"
               for key in STEP_OPTIONS if job.federation[key] != federation_defaults[key]["default"]]
    changed += [f"methods.{job.method}.{key}={value!r} (default {method_defaults.get(key)!r})"
                for key, value in job.method_options.items() if method_defaults.get(key) != value]
    # learning rates first (the usual cause), the method's own first when its server step diverged
    changed.sort(key=lambda option: ("lr=" not in option, step == "server" and option.startswith("federation.")))
    if not changed:
        return "; every option is at its default: lower federation.lr or the method's own learning rates"
    return "; set away from their defaults: " + ", ".join(changed) + ": undo or lower the one that made the steps too large"


#: Free space a job needs before it starts: its checkpoint (a few MB for the suite's models), metrics.json,
#: artifacts and figures, with room to spare.
MIN_FREE_BYTES = 64 * 2**20


def _nearest_existing(path: Path) -> Path:
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def preflight(out_dir: Path, tracking_uri: str | None = None) -> None:
    """Before any work, writing nothing: the output folder can be made and written, has room for a checkpoint,
    and (when the job is tracked) a SQLite tracking store can be written. Each failure is one JobError naming
    the path and the fix."""
    import shutil

    if out_dir.exists() and not out_dir.is_dir():
        raise JobError(f"--out {out_dir} is a file, not a folder; choose a folder for the run's results")
    base = _nearest_existing(out_dir)
    if not base.is_dir():
        raise JobError(f"--out {out_dir}: {base} is a file, so the folder cannot be made; choose another --out")
    if not os.access(base, os.W_OK | os.X_OK):
        raise JobError(f"cannot write to {base} (permission denied); choose a writable --out or fix its permissions")
    free = shutil.disk_usage(base).free
    if free < MIN_FREE_BYTES:
        raise JobError(f"only {free / 2**20:.1f} MiB free on the disk of {base}, and a job needs "
                       f"{MIN_FREE_BYTES / 2**20:.0f} MiB for its checkpoint and results; free some space")
    if tracking_uri and tracking_uri.startswith("sqlite:///"):
        store = Path(tracking_uri[len("sqlite:///"):])
        target = store if store.exists() else _nearest_existing(store)
        if not os.access(target, os.W_OK):
            raise JobError(f"the MLflow store {store} is read-only ({target} cannot be written); make it writable, "
                           f"point tracking_uri elsewhere, or train with --no-track")


def train_job(job: JobSpec, *, out_dir: str | Path, partition_dir: str | Path | None = None,
              threads: int | None = None, callbacks: Sequence["Callback"] = ()) -> dict[str, Any]:
    """Train one job into ``out_dir``; return the metrics.json content.

    Training never touches the tracking store (``track_job`` logs the finished folder): the job imports
    only what it trains with, and its results do not depend on a server staying up.
    """
    out_dir = Path(out_dir)
    metrics_path = out_dir / METRICS_FILE
    preflight(out_dir)
    finished = _finished_metrics(job, metrics_path, out_dir)
    if finished is not None:
        return finished

    import torch

    from fedakd.data import load_dataset
    from fedakd.diagnostics import describe, failed, failure_flags
    from fedakd.engine import Checkpoint, FederatedData, RunSetup, resolve_device, run_federation
    from fedakd.partition import load_partition
    from fedakd.registry import get_method
    from fedakd.run_artifacts import confusion_counts, write_job_files

    started = time.perf_counter()
    if threads:
        torch.set_num_threads(int(threads))
    device = resolve_device(job.device)
    configure_determinism(device, job.deterministic)
    dataset = load_dataset(job.dataset, job.data_root)
    if partition_dir is not None:
        partition = load_partition(partition_dir, job.partition)
    else:
        partition = build_partition(job.partition, job.data_root, labels=dataset.y_train.numpy())
    method_cls = get_method(job.method_class)
    method = method_cls(dict(job.method_options))

    out_dir.mkdir(parents=True, exist_ok=True)
    data = FederatedData.from_indices(
        dataset.x_train, dataset.y_train, dataset.x_test, dataset.y_test, client_indices=partition.client_indices,
        num_classes=dataset.num_classes, groups=partition.groups, device=device,
        transfer_indices=partition.transfer_indices, validation_indices=partition.validation_indices)
    setup = RunSetup(job.federation, job.model["backbone"], job.seed, device, job.amp)
    checkpoint = Checkpoint(out_dir / CHECKPOINT_FILE, {"job_digest": job.digest, "partition_sha256": partition.sha256})
    previous_handler = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        result = run_federation(method, data, setup, checkpoint=checkpoint, callbacks=[_progress(job), *callbacks])
    finally:
        signal.signal(signal.SIGTERM, previous_handler)
    final, best = _summaries(result.history)
    totals = result.totals
    failure = failure_flags(result.history, result.diverged)
    if failed(failure):
        log.warning("%s: training %s; the run is kept and flagged in metrics.json (failure)%s", job.key,
                    describe(failure), _divergence_hint(job, failure["diverged"]["step"]) if failure["diverged"] else "")
    metrics = {
        "job": {"dataset": job.dataset, "setting": job.setting, "method": job.method,
                "method_class": job.method_class, "seed": job.seed,
                **({"candidate": job.candidate} if job.candidate is not None else {})},
        "job_digest": job.digest, "reference": method_cls.reference,
        "setting": job.setting_params, "method_options": job.method_options,
        "federation": job.federation,
        "model": {"backbone": job.model["backbone"], "num_params": result.num_params},
        "num_classes": dataset.num_classes, "class_names": list(dataset.class_names),
        "class_counts": partition.class_counts, "groups": partition.groups, "partition_sha256": partition.sha256,
        "partition": partition_profile(partition),
        "client_counters": result.counters,
        "cost": {"local_steps": totals.local_steps, "server_steps": totals.server_steps,
                 "bytes_down": totals.bytes_down, "bytes_up": totals.bytes_up,
                 "rounds": job.federation["rounds"], "clients_per_round": result.clients_per_round},
        "final": final, "best": best, "failure": failure, "history": result.history,
        "confusion_matrix": confusion_counts(dataset.y_test.numpy(), result.final_predictions, dataset.num_classes),
        "git_commit": git_commit(), "device": str(device),
    }
    write_job_files(out_dir / ARTIFACTS_DIR, job=job.to_dict(), metrics=metrics,
                    manifest=Path(partition_dir) / "manifest.json" if partition_dir else None)
    atomic_write_json(out_dir / TIMINGS_FILE, {"history": result.timings,
                                               "wall_seconds": time.perf_counter() - started})
    atomic_write_json(metrics_path, metrics)
    (out_dir / CHECKPOINT_FILE).unlink(missing_ok=True)
    return metrics


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
    timings = out_dir / TIMINGS_FILE
    artifacts = out_dir / ARTIFACTS_DIR
    if not all((artifacts / name).exists() for name in FIGURE_FILES):
        draw_run_figures(artifacts, metrics)
    final, best = metrics["final"], metrics["best"]
    summary = {**{f"final_{k}": v for k, v in final.items() if k != "per_class_recall" and v is not None},
               **{f"optimistic_best_round_{k}": v for k, v in best.items()
                  if k not in ("per_class_recall", "round") and v is not None},
               **metrics["client_counters"], **{f"cost_{k}": v for k, v in metrics["cost"].items()},
               **{f"{kind}_round": entry["round"] for kind in ("collapsed", "diverged")
                  if (entry := (metrics.get("failure") or {}).get(kind))}}
    job = metrics["job"]
    commit = metrics["git_commit"]
    tags = {"dataset": job["dataset"], "setting": job["setting"], "method": job["method"],
            "method_class": job["method_class"], "seed": str(job["seed"]),
            "partition_sha256": metrics["partition_sha256"],
            **({"candidate": str(job["candidate"])} if job.get("candidate") is not None else {}),
            "git_commit": commit, "device": metrics["device"], **source_tags(commit), **failure_tags(metrics),
            # whose run this is (fedakd.tracking.OWNER_TAGS): it retires only earlier runs of the same job,
            # config and folder
            "job_digest": metrics["job_digest"], "run_folder": str(out_dir.resolve())}

    def remember(run_id: str, finished: bool = False) -> None:
        atomic_write_json(record_path, {"tracking_uri": tracking_uri, "experiment_id": experiment_id,
                                        "metrics_sha256": results, "run_id": run_id, "finished": finished})

    run_id = log_run(tracking_uri, experiment_id, job_key=job_key(job), run_name=run_name(job), tags=tags,
                     params=read_json(artifacts / "job.json", "job spec"), history=metrics["history"],
                     timings=read_json(timings, "timings file")["history"] if timings.exists() else [],
                     summary=summary, artifacts=artifact_files(artifacts), inputs=lambda: partition_inputs(metrics),
                     resume_run_id=record.get("run_id") if same_run else None, on_created=remember,
                     safe=f"the results are saved in {out_dir}")
    remember(run_id, finished=True)
    return run_id
