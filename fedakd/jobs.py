"""The jobs of the pipeline: make a partition, train one (dataset, setting, method, seed).

Plain functions of a resolved spec (fedakd.config.spec), called by the CLI and by the Snakemake scripts. A
train job is restartable: a finished one does nothing, a killed one resumes from its last checkpointed round,
and the metrics.json it ends with is byte-identical to an uninterrupted run's. It never imports MLflow:
fedakd.track logs the finished folder afterwards (fedakd.tracking says why).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from fedakd.config.spec import JobSpec, PartitionSpec
from fedakd.io import atomic_write_json, read_json
from fedakd.layout import ARTIFACTS_DIR, CHECKPOINT_FILE, MANIFEST_FILE, METRICS_FILE, TIMINGS_FILE, WEIGHTS_FILE
from fedakd.machine import machine_info
from fedakd.record import RunRecord

if TYPE_CHECKING:
    import torch

    from fedakd.data import Dataset
    from fedakd.engine import Callback, FederationResult
    from fedakd.method import Method
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




def configure_determinism(device, deterministic: bool) -> None:
    """On CUDA, deterministic kernels unless the config says ``deterministic: false`` (the CPU needs nothing)."""
    if device.type != "cuda" or not deterministic:
        return
    import torch

    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # read when cuBLAS starts, before any matmul
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False


def _finished_metrics(job: JobSpec, out_dir: Path) -> dict[str, Any] | None:
    """The metrics.json of a finished run of this job, None if there is none; refuses a foreign one."""
    metrics_path = out_dir / METRICS_FILE
    if not metrics_path.exists():
        return None
    existing = read_json(metrics_path, "metrics file")
    if existing.get("job_digest") != job.digest:
        raise JobError(f"{metrics_path} holds the results of a different configuration; "
                       f"delete it or choose another output folder")
    RunRecord.checked(existing, metrics_path)  # a damaged or hand-edited record is refused, never logged
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
    return ("; set away from their defaults: " + ", ".join(changed)
            + ": undo or lower the one that made the steps too large")


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


# -- training, as named steps ---------------------------------------------------------------------------------
def _set_up_torch(job: JobSpec, threads: int | None) -> "torch.device":
    import torch

    from fedakd.engine import resolve_device

    if threads:
        torch.set_num_threads(int(threads))
    device = resolve_device(job.device)
    configure_determinism(device, job.deterministic)
    return device


def _load_inputs(job: JobSpec, partition_dir: Path | None) -> tuple["Dataset", "Partition"]:
    """The dataset, and the job's partition: the saved one (checked against its hashes and this job's
    parameters), or made here when none is given."""
    from fedakd.data import load_dataset
    from fedakd.partition import load_partition

    dataset = load_dataset(job.dataset, job.data_root)
    if partition_dir is not None:
        return dataset, load_partition(partition_dir, job.partition)
    return dataset, build_partition(job.partition, job.data_root, labels=dataset.y_train.numpy())


def _federate(job: JobSpec, method: "Method", dataset: "Dataset", partition: "Partition", device: "torch.device",
              out_dir: Path, callbacks: Sequence["Callback"], link) -> "FederationResult":
    """Run the federation with a checkpoint in ``out_dir``; SIGTERM interrupts it like Ctrl-C (resumable). A link
    that reaches remote clients (fedakd.flower) gets no client's examples: the server holds none."""
    from fedakd.engine import Checkpoint, FederatedData, RunSetup, run_federation

    remote = link is not None and not link.holds_client_data
    client_indices = [[] for _ in partition.client_indices] if remote else partition.client_indices
    data = FederatedData.from_indices(
        dataset.x_train, dataset.y_train, dataset.x_test, dataset.y_test, client_indices=client_indices,
        num_classes=dataset.num_classes, groups=partition.groups, device=device,
        transfer_indices=partition.transfer_indices, validation_indices=partition.validation_indices)
    setup = RunSetup(job.federation, job.model["backbone"], job.seed, device, job.amp)
    checkpoint = Checkpoint(out_dir / CHECKPOINT_FILE, {"job_digest": job.digest, "partition_sha256": partition.sha256})
    main_thread = threading.current_thread() is threading.main_thread()  # Flower's simulation runs us in a thread
    previous_handler = signal.signal(signal.SIGTERM, _raise_interrupt) if main_thread else None
    try:
        return run_federation(method, data, setup, checkpoint=checkpoint, callbacks=[_progress(job), *callbacks],
                              link=link)
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous_handler)


def _warn_if_failed(job: JobSpec, failure: dict[str, Any]) -> None:
    from fedakd.diagnostics import describe, failed

    if failed(failure):
        hint = _divergence_hint(job, failure["diverged"]["step"]) if failure["diverged"] else ""
        log.warning("%s: training %s; the run is kept and flagged in metrics.json (failure)%s", job.key,
                    describe(failure), hint)


def _write_outputs(out_dir: Path, job: JobSpec, record: RunRecord, result: "FederationResult", started: float,
                   partition_dir: Path | None) -> dict[str, Any]:
    """artifacts/, the deployed model's weights, timings.json, then metrics.json (last: it marks the job
    finished); the checkpoint goes."""
    import torch

    from fedakd.io import atomic_path
    from fedakd.run_artifacts import write_job_files

    metrics = record.to_json()
    write_job_files(out_dir / ARTIFACTS_DIR, job=job.to_dict(), metrics=metrics,
                    manifest=partition_dir / MANIFEST_FILE if partition_dir else None)
    with atomic_path(out_dir / WEIGHTS_FILE) as tmp:
        torch.save({"weights": result.final_weights, "backbone": job.model["backbone"],
                    "model_options": dict(result.model_options)}, tmp)
    # cpu_seconds: this process's (a resumed job's last leg); machine: what bit-identity depends on
    atomic_write_json(out_dir / TIMINGS_FILE, {"history": result.timings, "wall_seconds": time.perf_counter() - started,
                                               "cpu_seconds": time.process_time(), "machine": machine_info()})
    atomic_write_json(out_dir / METRICS_FILE, metrics)
    (out_dir / CHECKPOINT_FILE).unlink(missing_ok=True)
    return metrics


def train_job(job: JobSpec, *, out_dir: str | Path, partition_dir: str | Path | None = None,
              threads: int | None = None, callbacks: Sequence["Callback"] = (), link=None) -> dict[str, Any]:
    """Train one job into ``out_dir``; return the metrics.json content.

    Training never touches the tracking store (fedakd.track logs the finished folder): the job imports
    only what it trains with, and its results do not depend on a server staying up. ``link`` is how the server
    reaches the clients (fedakd.engine.InProcessClients by default; fedakd.flower's over a Flower grid).
    """
    from fedakd.registry import get_method

    out_dir, partition_dir = Path(out_dir), None if partition_dir is None else Path(partition_dir)
    preflight(out_dir)
    if (finished := _finished_metrics(job, out_dir)) is not None:
        return finished
    started = time.perf_counter()
    device = _set_up_torch(job, threads)
    dataset, partition = _load_inputs(job, partition_dir)
    method_class = get_method(job.method_class)
    out_dir.mkdir(parents=True, exist_ok=True)
    result = _federate(job, method_class(dict(job.method_options)), dataset, partition, device, out_dir, callbacks,
                       link)
    record = RunRecord.build(job, reference=method_class.reference, dataset=dataset, partition=partition,
                             result=result, device=str(device), git_commit=git_commit(),
                             engine=getattr(link, "engine", "fedakd"))
    _warn_if_failed(job, record.failure)
    return _write_outputs(out_dir, job, record, result, started, partition_dir)
