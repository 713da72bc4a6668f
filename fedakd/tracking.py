"""MLflow tracking: one run per training job, logged in batches from a worker thread.

Why a worker thread: importing MLflow and opening the store costs seconds; the
job starts training at once, the run is opened when the first round is logged,
and the worker catches up, logging each round in one ``log_batch``. Calls run in submission order, so the store sees what a
synchronous logger would.

Run life cycle (what keeps the store honest):
- the experiment is created once, before any job (``ensure_experiment``);
- a fresh job first retires earlier runs of the same job key: FINISHED ones are
  deleted (soft, recoverable: they are superseded), RUNNING ones are marked KILLED;
- a resumed job reopens its own run (id kept in the job folder) and logs only the
  rounds that run does not have yet;
- an interrupted job marks its run KILLED (SIGTERM/Ctrl-C) or leaves it RUNNING
  (SIGKILL) until a rerun resumes it; only FINISHED runs count in tables.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

class TrackingError(RuntimeError):
    """The tracking store cannot take this job's run."""


#: Metric that is logged every round, used to find where a resumed run left off.
ROUND_MARKER = "bytes_up"


def _retry(fn: Callable, *args, attempts: int = 8, **kwargs):
    """Retry on SQLite's 'database is locked' when several jobs write at once."""
    for attempt in range(attempts):
        try:
            return fn(*args, **kwargs)
        except Exception as exc:  # MlflowException or sqlalchemy OperationalError
            if "locked" not in str(exc).lower() or attempt == attempts - 1:
                raise
            time.sleep(0.2 * 2**attempt)


def _client(tracking_uri: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri)


def artifact_root(tracking_uri: str) -> str | None:
    """For a SQLite store, artifacts go beside the database; a server decides for itself."""
    if tracking_uri.startswith("sqlite:///"):
        db = Path(tracking_uri[len("sqlite:///"):])
        return (db.resolve().parent / "mlartifacts").as_uri()
    return None


def ensure_experiment(tracking_uri: str, name: str) -> str:
    """Create the tracking store and the experiment if needed; return the experiment id.

    Call it from one process before any training job starts: several processes
    creating a new SQLite store at once corrupt it.
    """
    if tracking_uri.startswith("sqlite:///"):
        Path(tracking_uri[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
    client = _client(tracking_uri)
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        return client.create_experiment(name, artifact_location=artifact_root(tracking_uri))
    if experiment.lifecycle_stage == "deleted":
        client.restore_experiment(experiment.experiment_id)
    return experiment.experiment_id


def flatten(prefix: str, value: Any, out: dict[str, str]) -> dict[str, str]:
    """{'a': {'b': 1}} -> {'a.b': '1'}: MLflow params are flat strings."""
    if isinstance(value, dict):
        for key, sub in value.items():
            flatten(f"{prefix}.{key}" if prefix else str(key), sub, out)
    else:
        out[prefix] = str(value)
    return out


def round_metrics(record: dict[str, Any], timing: dict[str, float] | None = None) -> dict[str, float]:
    """One round's numbers as MLflow metrics (per-class recall expanded, empty groups left out)."""
    metrics: dict[str, float] = {}
    for key, value in {**record, **(timing or {})}.items():
        if key == "round" or value is None:
            continue
        if key.endswith("per_class_recall"):  # per_class_recall, val_per_class_recall
            prefix = key.removesuffix("per_class_recall")
            metrics.update({f"{prefix}recall_class_{c}": float(v) for c, v in enumerate(value)})
        else:
            metrics[key] = float(value)
    return metrics


class RunTracker:
    """One MLflow run for one training job; every call is queued to one worker thread."""

    def __init__(self, tracking_uri: str, experiment_id: str, job_key: str, tags: dict[str, str],
                 params: dict[str, Any], resume_run_id: str | None = None,
                 on_created: Callable[[str], None] | None = None):
        self.tracking_uri, self.experiment_id, self.job_key = tracking_uri, experiment_id, job_key
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mlflow")
        self._client = None
        self._last_step = 0
        self._pending: list = []
        self._open_args = (tags, params, resume_run_id, on_created)
        self._opened = None  # opened at the first logged round: MLflow's import stays off the start-up path

    # -- worker-side ------------------------------------------------------------------
    def _open(self, tags, params, resume_run_id, on_created) -> str:
        from mlflow.entities import Param, RunTag

        self._client = client = _client(self.tracking_uri)
        experiment = client.get_experiment(self.experiment_id)  # raises if the store lacks it
        if experiment.lifecycle_stage != "active":
            raise TrackingError(f"experiment {self.experiment_id} is deleted")
        if resume_run_id is not None:
            try:
                run = client.get_run(resume_run_id)
            except Exception:
                run = None
            if run is not None and run.info.lifecycle_stage == "active":
                _retry(client.update_run, resume_run_id, status="RUNNING")
                history = _retry(client.get_metric_history, resume_run_id, ROUND_MARKER)
                self._last_step = max((m.step for m in history), default=0)
                return resume_run_id
        self._retire_earlier_runs(client)
        run = _retry(client.create_run, self.experiment_id, run_name=self.job_key,
                     tags={**tags, "job_key": self.job_key})
        run_id = run.info.run_id
        if on_created is not None:
            on_created(run_id)
        items = [Param(k, v[:6000]) for k, v in sorted(flatten("", params, {}).items())]
        for start in range(0, len(items), 100):  # log_batch takes at most 100 params
            _retry(client.log_batch, run_id, params=items[start:start + 100])
        _retry(client.log_batch, run_id, tags=[RunTag("mlflow.note.content", f"job {self.job_key}")])
        return run_id

    def _retire_earlier_runs(self, client) -> None:
        runs = _retry(client.search_runs, [self.experiment_id], filter_string=f"tags.job_key = '{self.job_key}'")
        for run in runs:
            if run.info.status == "FINISHED":
                _retry(client.delete_run, run.info.run_id)
            elif run.info.status == "RUNNING":
                _retry(client.set_terminated, run.info.run_id, status="KILLED")

    def _log(self, step: int, metrics: dict[str, float]) -> None:
        from mlflow.entities import Metric

        if step <= self._last_step:
            return  # already in the run (resumed job)
        run_id = self._opened.result()
        now = int(time.time() * 1000)
        items = [Metric(k, v, now, step) for k, v in metrics.items()]
        for start in range(0, len(items), 1000):
            _retry(self._client.log_batch, run_id, metrics=items[start:start + 1000])
        self._last_step = step

    def _log_summary(self, metrics: dict[str, float]) -> None:
        from mlflow.entities import Metric

        run_id = self._opened.result()
        if _retry(self._client.get_metric_history, run_id, next(iter(metrics))):
            return  # a resumed run logged its summary before it was interrupted
        now = int(time.time() * 1000)
        items = [Metric(k, float(v), now, 0) for k, v in metrics.items()]
        for start in range(0, len(items), 1000):
            _retry(self._client.log_batch, run_id, metrics=items[start:start + 1000])

    def _finish(self, status: str, artifacts: list[tuple[Path, str | None]]) -> None:
        run_id = self._opened.result()
        for path, folder in artifacts:
            _retry(self._client.log_artifact, run_id, str(path), folder)
        _retry(self._client.set_terminated, run_id, status=status)

    # -- caller-side ------------------------------------------------------------------
    def _ensure_open(self):
        if self._opened is None:
            self._opened = self._pool.submit(self._open, *self._open_args)
        return self._opened

    def _raise_if_failed(self) -> None:
        """Stop the job at the next round, not after training, when the run could not be opened."""
        if self._ensure_open().done() and self._opened.exception() is not None:
            raise TrackingError(
                f"MLflow run for {self.job_key} could not be opened in {self.tracking_uri} "
                f"(experiment {self.experiment_id}): {self._opened.exception()}. If the store was deleted, also "
                f"delete results/mlflow/experiment.json so the pipeline creates the experiment again"
            ) from self._opened.exception()

    def log_round(self, record: dict[str, Any], timing: dict[str, float] | None = None) -> None:
        self._raise_if_failed()
        self._pending.append(self._pool.submit(self._log, int(record["round"]), round_metrics(record, timing)))

    def log_summary(self, metrics: dict[str, float]) -> None:
        """Run-level figures (final/best metrics, counters) at step 0, once."""
        if metrics:
            self._ensure_open()
            self._pending.append(self._pool.submit(self._log_summary, dict(metrics)))

    def log_history(self, records: list[dict[str, Any]]) -> None:
        """Re-log rounds a resumed run may lack (skipped if present)."""
        for record in records:
            self.log_round(record)

    def callback(self):
        """The engine's view of this tracker: log every round, and re-log what a resumed run may lack."""
        from fedakd.engine import Callback

        tracker = self

        class Tracking(Callback):
            def on_resume(self, history):
                tracker.log_history(history)

            def on_round_end(self, record, timing):
                tracker.log_round(record, timing)

        return Tracking()

    @property
    def run_id(self) -> str:
        return self._ensure_open().result()

    def finish(self, status: str = "FINISHED", artifacts: list[tuple[Path, str | None]] = ()) -> None:
        """Log artifacts, set the final status, and wait for every queued call."""
        try:
            if self._opened is None and status != "FINISHED":
                return  # interrupted before the first round was logged: no run was opened, none to mark
            self._ensure_open()
            for future in self._pending:  # surface a failed log call instead of losing it
                future.result()
            self._pool.submit(self._finish, status, list(artifacts)).result()
        finally:
            self._pool.shutdown(wait=True)
