"""MLflow tracking: one run per training job, logged in batches from a worker thread.

Why a worker thread: importing MLflow and opening the store costs seconds; the job starts training at
once, the run is opened when the first round is logged, and the worker catches up, logging each round
in one ``log_batch``. Calls run in submission order, so the store sees what a synchronous logger would.
Training never waits on tracking.

Run life cycle (what keeps the store honest):
- the experiment is created once, before any job (``ensure_experiment``), marked as a model-training
  experiment so that MLflow's UI opens it on its runs;
- a job checks first that the tracking URI answers (``check_reachable``: seconds, not minutes);
- a fresh job first retires earlier runs of the same job key: FINISHED ones are deleted (soft,
  recoverable: they are superseded), RUNNING ones are marked KILLED;
- a resumed job reopens its own run (id kept in the job folder), reads which (metric, step) points
  the run already holds, and logs exactly the missing ones: a run is made whole, never doubled;
- when the tracking server goes away mid-run, the tracker notes it and drops what it would log (the
  job's checkpoint keeps every round); the job trains to the end and then stops with one line
  saying what is safe and how to resume, and never marks itself finished;
- an interrupted job marks its run KILLED (SIGTERM/Ctrl-C) or leaves it RUNNING (SIGKILL) until a
  rerun resumes it; only FINISHED runs count in tables.

MLflow's own HTTP client would otherwise retry a lost server for minutes per call (7 retries,
exponential backoff, 120 s timeouts); ``configure_http`` sets its documented environment variables
from the config's ``tracking`` block.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Mapping

#: The tracking block's defaults (fedakd/schemas/config.schema.yaml documents each).
TRACKING_DEFAULTS = {"connect_timeout": 10, "request_timeout": 10, "request_retries": 2}
#: MLflow's experiment tag for the kind of experiment; its UI opens a training experiment on its runs.
EXPERIMENT_KIND_TAG, TRAINING_KIND = "mlflow.experimentKind", "custom_model_development"
#: Tag of the one run per experiment that holds a study's tables and report (not a training job).
SUMMARY_TAG = "fedakd.summary"


class TrackingError(RuntimeError):
    """The tracking store cannot take this job's run (unreachable, lost, or inconsistent)."""


def configure_http(tracking: Mapping[str, Any] | None = None) -> None:
    """Bound MLflow's HTTP calls (timeout, retries, backoff) through its documented environment variables,
    unless the user set them already."""
    settings = {**TRACKING_DEFAULTS, **(tracking or {})}
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(int(settings["request_timeout"])))
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", str(int(settings["request_retries"])))
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_JITTER", "0.5")


def check_reachable(tracking_uri: str, timeout: float = TRACKING_DEFAULTS["connect_timeout"]) -> None:
    """Raise TrackingError, in at most about ``timeout`` seconds, if the tracking URI does not answer.

    http(s): GET <uri>/health (every MLflow server has it); a database URI: a TCP connection to its
    host and port; sqlite: the folder of the file can be created. Other schemes are not checked.
    """
    parsed = urllib.parse.urlparse(tracking_uri)
    scheme = parsed.scheme.split("+")[0]
    if scheme in ("http", "https"):
        url = tracking_uri.rstrip("/") + "/health"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                if response.status == 200:
                    return
                problem = f"it answered HTTP {response.status}"
        except urllib.error.HTTPError as exc:
            problem = f"it answered HTTP {exc.code}"
        except (OSError, ValueError) as exc:
            problem = str(getattr(exc, "reason", exc)) or type(exc).__name__
        raise TrackingError(
            f"the MLflow tracking server at {tracking_uri} is unreachable ({problem}; tried GET {url}, "
            f"{timeout:g} s timeout); start it (e.g. `mlflow server --host 127.0.0.1 --port "
            f"{parsed.port or 5000}`) or set tracking_uri to a running server or a sqlite:/// file")
    if scheme in ("postgresql", "mysql", "mssql"):
        port = parsed.port or {"postgresql": 5432, "mysql": 3306, "mssql": 1433}[scheme]
        try:
            socket.create_connection((parsed.hostname or "localhost", port), timeout=timeout).close()
        except OSError as exc:
            raise TrackingError(
                f"the tracking database at {parsed.hostname}:{port} ({scheme}) is unreachable ({exc}; tried a TCP "
                f"connection, {timeout:g} s timeout); start the database or fix tracking_uri") from None
        return
    db = sqlite_file(tracking_uri)
    if db is not None:
        folder = db.parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise TrackingError(f"the tracking store's folder {folder} cannot be created ({exc}); fix "
                                f"tracking_uri") from None


def sqlite_file(tracking_uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` tracking URI; None for any other store."""
    return Path(tracking_uri[len("sqlite:///"):]) if tracking_uri.startswith("sqlite:///") else None


# SQLite's 'database is locked' while another job writes: worth another try for every call.
_TRANSIENT = ("locked",)
# For log_inputs only: MLflow's store looks a dataset up and inserts it when absent, so two jobs on one
# partition can both miss it and the second insert breaks the unique key (PostgreSQL: 'duplicate key',
# SQLite: 'UNIQUE constraint failed'). Tried again, the look-up finds the row and links the run to it.
_RACED_INSERT = ("duplicate key", "unique constraint")


def _retry(fn: Callable, *args, attempts: int = 8, transient: tuple[str, ...] = _TRANSIENT, **kwargs):
    """Call ``fn``, again after a back-off while its error names one of ``transient``."""
    for attempt in range(attempts):
        try:
            return fn(*args, **kwargs)
        except Exception as exc:  # MlflowException or sqlalchemy OperationalError
            message = str(exc).lower()
            if not any(word in message for word in transient) or attempt == attempts - 1:
                raise
            time.sleep(0.2 * 2**attempt)


def log_inputs(client, run_id: str, datasets: list) -> None:
    """Link the run to its datasets, creating them in the experiment where absent; a raced insert is retried."""
    _retry(client.log_inputs, run_id, datasets=datasets, transient=_TRANSIENT + _RACED_INSERT)


def _client(tracking_uri: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri)


def artifact_root(tracking_uri: str) -> str | None:
    """For a SQLite store, artifacts go beside the database; a server decides for itself."""
    db = sqlite_file(tracking_uri)
    return None if db is None else (db.resolve().parent / "mlartifacts").as_uri()


def find_experiment(tracking_uri: str, name: str) -> str | None:
    """The id of the experiment ``name``, or None; a SQLite store that does not exist is not created."""
    db = sqlite_file(tracking_uri)
    if db is not None and not db.exists():
        return None
    experiment = _client(tracking_uri).get_experiment_by_name(name)
    return experiment.experiment_id if experiment else None


def experiment_link(base_url: str, experiment_id: str) -> str:
    """The UI address of an experiment's training runs. MLflow 3's UI picks its GenAI or model-training view
    from a toggle it remembers per browser (starting on GenAI), not from the experiment-kind tag; the
    workflowType parameter chooses the training view."""
    return f"{base_url.rstrip('/')}/#/experiments/{experiment_id}?workflowType=machine_learning"


def ensure_experiment(tracking_uri: str, name: str, tracking: Mapping[str, Any] | None = None) -> str:
    """Create the tracking store and the experiment if needed, marked as model training; return its id.

    Call it from one process before any training job starts: several processes
    creating a new SQLite store at once corrupt it.
    """
    configure_http(tracking)
    check_reachable(tracking_uri, (tracking or {}).get("connect_timeout", TRACKING_DEFAULTS["connect_timeout"]))
    client = _client(tracking_uri)
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        return client.create_experiment(name, artifact_location=artifact_root(tracking_uri),
                                        tags={EXPERIMENT_KIND_TAG: TRAINING_KIND})
    if experiment.lifecycle_stage == "deleted":
        client.restore_experiment(experiment.experiment_id)
    if experiment.tags.get(EXPERIMENT_KIND_TAG) != TRAINING_KIND:
        client.set_experiment_tag(experiment.experiment_id, EXPERIMENT_KIND_TAG, TRAINING_KIND)
    return experiment.experiment_id


def flatten(prefix: str, value: Any, out: dict[str, str]) -> dict[str, str]:
    """{'a': {'b': 1}} -> {'a.b': '1'}: MLflow params are flat strings."""
    if isinstance(value, Mapping):
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


def _is_outage(exc: BaseException) -> bool:
    """A lost server or network (as opposed to a store that answers and refuses)."""
    text = f"{type(exc).__name__}: {exc}".lower()
    return isinstance(exc, (ConnectionError, TimeoutError, OSError)) or any(
        word in text for word in ("connection", "max retries exceeded", "timed out", "timeout", "unreachable",
                                  "name or service not known", "remote end closed", "bad gateway",
                                  "service unavailable"))


class RunTracker:
    """One MLflow run for one training job; every call is queued to one worker thread."""

    def __init__(self, tracking_uri: str, experiment_id: str, job_key: str, tags: dict[str, str],
                 params: dict[str, Any], resume_run_id: str | None = None,
                 on_created: Callable[[str], None] | None = None, run_name: str | None = None,
                 inputs: Callable[[], list] | None = None):
        self.tracking_uri, self.experiment_id, self.job_key = tracking_uri, experiment_id, job_key
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mlflow")
        self._client = None
        self._present: dict[str, set[int]] = {}  # metric key -> steps the run holds
        self._pending: list = []
        self._open_args = (tags, params, resume_run_id, on_created, run_name or job_key, inputs)
        self._opened = None  # opened at the first logged round: MLflow's import stays off the start-up path
        self.lost = threading.Event()  # set when the tracking server stopped answering
        self.lost_reason: str | None = None
        self.lost_at_round: int | None = None

    # -- worker-side ------------------------------------------------------------------
    def _guarded(self, fn: Callable, *args, step: int | None = None):
        """Run a worker call unless the server is lost; an outage marks it lost instead of raising."""
        if self.lost.is_set():
            return None
        try:
            return fn(*args)
        except Exception as exc:
            if not _is_outage(exc):
                raise
            self.lost_reason = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"
            self.lost_at_round = step
            self.lost.set()
            return None

    def _open(self, tags, params, resume_run_id, on_created, run_name, inputs) -> str | None:
        from mlflow.entities import Param, RunTag

        self._client = client = _client(self.tracking_uri)
        experiment = client.get_experiment(self.experiment_id)  # raises if the store lacks it
        if experiment.lifecycle_stage != "active":
            raise TrackingError(f"experiment {self.experiment_id} is deleted")
        run_id = None
        if resume_run_id is not None:
            try:
                run = client.get_run(resume_run_id)
            except Exception as exc:
                if _is_outage(exc):
                    raise
                run = None
            if run is not None and run.info.lifecycle_stage == "active":
                run_id = resume_run_id
                _retry(client.update_run, run_id, status="RUNNING")
                for key in run.data.metrics:  # what the run holds, so that only the missing points are logged
                    self._present[key] = {m.step for m in _retry(client.get_metric_history, run_id, key)}
        if run_id is None:
            self._retire_earlier_runs(client)
            run = _retry(client.create_run, self.experiment_id, run_name=run_name,
                         tags={**tags, "job_key": self.job_key})
            run_id = run.info.run_id
            if on_created is not None:
                on_created(run_id)
        # Params and tags are set again on a resumed run: the same values are accepted, and a run whose
        # first attempt lost its server before logging them gets them now.
        items = [Param(k, v[:6000]) for k, v in sorted(flatten("", params, {}).items())]
        for start in range(0, len(items), 100):  # log_batch takes at most 100 params
            _retry(client.log_batch, run_id, params=items[start:start + 100])
        _retry(client.log_batch, run_id, tags=[RunTag(k, v) for k, v in {**tags, "job_key": self.job_key}.items()])
        if inputs is not None and not run.inputs.dataset_inputs:
            log_inputs(client, run_id, inputs())
        return run_id

    def _retire_earlier_runs(self, client) -> None:
        runs = _retry(client.search_runs, [self.experiment_id], filter_string=f"tags.job_key = '{self.job_key}'")
        for run in runs:
            if run.info.status == "FINISHED":
                _retry(client.delete_run, run.info.run_id)
            elif run.info.status == "RUNNING":
                _retry(client.set_terminated, run.info.run_id, status="KILLED")

    def _log(self, step: int, metrics: dict[str, float]) -> None:
        """Log the points of ``metrics`` at ``step`` that the run does not hold yet."""
        from mlflow.entities import Metric

        run_id = self._opened.result()
        if run_id is None:
            return
        now = int(time.time() * 1000)
        items = [Metric(k, v, now, step) for k, v in metrics.items() if step not in self._present.get(k, ())]
        for start in range(0, len(items), 1000):
            _retry(self._client.log_batch, run_id, metrics=items[start:start + 1000])
        for item in items:
            self._present.setdefault(item.key, set()).add(step)

    def _finish(self, status: str, artifacts: list[tuple[Path, str | None]]) -> None:
        run_id = self._opened.result()
        if run_id is None:
            return
        for path, folder in artifacts:
            _retry(self._client.log_artifact, run_id, str(path), folder)
        _retry(self._client.set_terminated, run_id, status=status)

    # -- caller-side ------------------------------------------------------------------
    def _ensure_open(self):
        if self._opened is None:
            self._opened = self._pool.submit(self._guarded, self._open, *self._open_args)
        return self._opened

    def _raise_if_failed(self) -> None:
        """Stop the job at the next round, not after training, when the store answered but refused the run."""
        if self._ensure_open().done() and self._opened.exception() is not None:
            raise TrackingError(
                f"MLflow run for {self.job_key} could not be opened in {self.tracking_uri} "
                f"(experiment {self.experiment_id}): {self._opened.exception()}. If the store was deleted, also "
                f"delete results/mlflow/experiment.json so the pipeline creates the experiment again"
            ) from self._opened.exception()

    def _submit(self, fn: Callable, *args, step: int | None = None) -> None:
        self._pending.append(self._pool.submit(self._guarded, fn, *args, step=step))

    def log_round(self, record: dict[str, Any], timing: dict[str, float] | None = None) -> None:
        self._raise_if_failed()
        self._submit(self._log, int(record["round"]), round_metrics(record, timing), step=int(record["round"]))

    def log_summary(self, metrics: dict[str, float]) -> None:
        """Run-level figures (final/best metrics, counters, costs) at step 0, once."""
        if metrics:
            self._ensure_open()
            self._submit(self._log, 0, {k: float(v) for k, v in metrics.items()}, step=0)

    def log_history(self, records: list[dict[str, Any]], timings: list[dict[str, float]] = ()) -> None:
        """Log what a resumed run lacks of the rounds done before (points it holds are skipped)."""
        timing_of = {timing["round"]: timing for timing in timings}
        for record in records:
            self.log_round(record, timing_of.get(record["round"]))

    def callback(self):
        """The engine's view of this tracker: log every round, and make a resumed run whole."""
        from fedakd.engine import Callback

        tracker = self

        class Tracking(Callback):
            def on_resume(self, history, timings):
                tracker.log_history(history, timings)

            def on_round_end(self, record, timing):
                tracker.log_round(record, timing)

        return Tracking()

    @property
    def run_id(self) -> str | None:
        """The run's id; None when the server was lost before the run could be opened."""
        return self._ensure_open().result()

    def lost_message(self, safe: str) -> str:
        where = f"at round {self.lost_at_round}" if self.lost_at_round else "before the run was opened"
        return (f"lost the MLflow tracking server at {self.tracking_uri} {where} ({self.lost_reason}); {safe}; "
                f"rerun the same command once the server answers: the job logs what the run lacks and finishes it")

    def finish(self, status: str = "FINISHED", artifacts: list[tuple[Path, str | None]] = ()) -> None:
        """Wait for every queued call, log artifacts and set the final status.

        A FINISHED run is only set when every call went through: after an outage this raises
        TrackingError (the run stays RUNNING for the rerun to complete).
        """
        try:
            if self._opened is None and status != "FINISHED":
                return  # interrupted before the first round was logged: no run was opened, none to mark
            self._ensure_open()
            for future in self._pending:  # surface a failed log call instead of losing it
                future.result()
            if self.lost.is_set():
                if status == "FINISHED":
                    raise TrackingError(self.lost_message("the trained rounds are saved in the job's checkpoint"))
                return
            self._pool.submit(self._guarded, self._finish, status, list(artifacts)).result()
            if self.lost.is_set() and status == "FINISHED":
                raise TrackingError(self.lost_message("the trained rounds are saved in the job's checkpoint"))
        finally:
            self._pool.shutdown(wait=True)


def log_study_summary(tracking_uri: str, experiment_id: str, files: Mapping[str, list[Path]],
                      tags: Mapping[str, str] = ()) -> str:
    """One run of the experiment holding the study's tables, figures and report (artifact folder -> files),
    tagged fedakd.summary so that the cross-check skips it; an earlier summary run is deleted (superseded)."""
    client = _client(tracking_uri)
    for run in _retry(client.search_runs, [experiment_id], filter_string=f"tags.`{SUMMARY_TAG}` = 'true'"):
        _retry(client.delete_run, run.info.run_id)
    run = _retry(client.create_run, experiment_id, run_name="summary | tables, figures and report",
                 tags={SUMMARY_TAG: "true", "mlflow.note.content": "The study's tables, figures and report "
                       "(reports/report.md); the training runs are the other runs of this experiment.",
                       **dict(tags)})
    for folder, paths in files.items():
        for path in paths:
            _retry(client.log_artifact, run.info.run_id, str(path), folder)
    _retry(client.set_terminated, run.info.run_id, status="FINISHED")
    return run.info.run_id
