"""MLflow tracking: one run per training job, logged after the job has trained, in batches.

Why after: importing MLflow and opening its store cost about 3 CPU-seconds, more than the rounds of a
small job. A training job therefore never imports MLflow: it writes its results to its run folder
(metrics.json, timings.json, artifacts/), and one tracking step logs many finished run folders in one
process (the pipeline's ``track`` rule per dataset and setting; ``fedakd train`` logs its own run at
the end unless ``--no-track``). Results never depend on the tracking store.

Run life cycle (what keeps the store honest):
- the experiment is created once, before any job (``ensure_experiment``), marked as a model-training
  experiment so that MLflow's UI opens it on its runs;
- the tracking step checks first that the tracking URI answers (``check_reachable``: seconds, not
  minutes);
- a fresh run first retires the earlier runs it replaces -- the same job key, the same job digest (the
  resolved config of the job) and the same run folder (the ``owner`` tags): FINISHED ones are deleted
  (soft, recoverable: they are superseded), RUNNING ones are marked KILLED. A run of the same job by
  hand into another folder, or of another config, is another run and leaves them alone;
- the run's id is kept in the run folder (``mlflow.json``) from its creation, so a tracking step that
  lost its server reopens the same run, reads which (metric, step) points it already holds, and logs
  exactly the missing ones: a run is made whole, never doubled; ``finished`` is set there only once the
  run is FINISHED;
- when the tracking server goes away, the step stops with one line saying what is safe (every result
  is on disk) and to rerun it; nothing is marked finished.

MLflow's own HTTP client would otherwise retry a lost server for minutes per call (7 retries,
exponential backoff, 120 s timeouts); ``configure_http`` sets its documented environment variables
from the config's ``tracking`` block.
"""

from __future__ import annotations

import os
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Callable, Mapping

#: MLflow's experiment tag for the kind of experiment; its UI opens a training experiment on its runs.
EXPERIMENT_KIND_TAG, TRAINING_KIND = "mlflow.experimentKind", "custom_model_development"
#: Tag of the one run per experiment that holds a study's tables and report (not a training job).
SUMMARY_TAG = "fedakd.summary"


#: The URI schemes of MLflow's stores (a database's may name its driver: postgresql+psycopg2://).
TRACKING_SCHEMES = ("", "file", "sqlite", "http", "https", "postgresql", "mysql", "mssql", "databricks")
_SQLITE_HEADER = b"SQLite format 3\x00"


class TrackingError(RuntimeError):
    """The tracking store cannot take this job's run (unreachable, lost, or inconsistent)."""


def uri_problem(tracking_uri: str) -> str | None:
    """What a tracking URI must be, when it is not a store MLflow can open; None when it is one."""
    scheme = urllib.parse.urlparse(tracking_uri).scheme.split("+")[0]
    if scheme in TRACKING_SCHEMES and (scheme != "sqlite" or tracking_uri.startswith("sqlite:///")):
        return None
    return ("an MLflow store: sqlite:///path/to/mlflow.db, http(s)://host:port of an MLflow server, "
            "postgresql://, mysql:// or mssql:// of a database, or a folder")


def tracking_settings(tracking: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The config's ``tracking`` block with the schema's defaults under it (a validated config's is complete)."""
    from fedakd.config.schema import load_schema

    defaults = {key: entry["default"] for key, entry in load_schema()["properties"]["tracking"]["properties"].items()}
    return {**defaults, **(tracking or {})}


def configure_http(tracking: Mapping[str, Any] | None = None) -> None:
    """Bound MLflow's HTTP calls (timeout, retries, backoff) through its documented environment variables,
    unless the user set them already."""
    settings = tracking_settings(tracking)
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(int(settings["request_timeout"])))
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", str(int(settings["request_retries"])))
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_JITTER", "0.5")


def check_reachable(tracking_uri: str, timeout: float) -> None:
    """Raise TrackingError, in at most about ``timeout`` seconds, if the tracking URI does not answer.

    http(s): GET <uri>/health (every MLflow server has it); a database URI: a TCP connection to its
    host and port; sqlite: the folder of the file can be created, and the file, if there is one, is an
    SQLite database. A scheme MLflow has no store for is refused; a folder (file:) is not checked.
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
        if db.is_file() and db.stat().st_size and db.open("rb").read(len(_SQLITE_HEADER)) != _SQLITE_HEADER:
            raise TrackingError(f"the tracking store {db} is not an SQLite database (damaged, or another file); "
                                f"move it aside and rerun: every result is on disk and is logged again")
        return
    if (problem := uri_problem(tracking_uri)) is not None:
        raise TrackingError(f"tracking_uri {tracking_uri!r} is not {problem}")


def connect(tracking_uri: str, tracking: Mapping[str, Any] | None = None) -> None:
    """Before talking to the store: bound MLflow's HTTP calls, then check in seconds that the URI answers."""
    configure_http(tracking)
    check_reachable(tracking_uri, tracking_settings(tracking)["connect_timeout"])


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
    connect(tracking_uri, tracking)
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


def _found_or_none(lookup: Callable, *args):
    """``lookup(*args)``, or None when the store answers that it has no such thing; an outage raises."""
    try:
        return lookup(*args)
    except Exception as exc:
        if _is_outage(exc):
            raise
        return None


#: The tags that say whose a run is: a new run retires only earlier runs with the same job key and these.
OWNER_TAGS = ("job_digest", "run_folder")


def _open_run(client, experiment_id: str, job_key: str, run_name: str, tags: dict[str, str],
              resume_run_id: str | None) -> tuple[str, dict[str, set[int]], bool]:
    """Reopen ``resume_run_id`` when it is an active run of the store, else retire the job's earlier runs and
    create one; return the run id, the (metric -> steps) points it holds and whether it has its inputs."""
    experiment = _found_or_none(client.get_experiment, experiment_id)
    if experiment is None or experiment.lifecycle_stage != "active":
        raise TrackingError(f"experiment {experiment_id} is missing or deleted in the tracking store; if the store "
                            f"was deleted, also delete results/mlflow/experiment.json so that the pipeline creates "
                            f"the experiment again")
    if resume_run_id is not None:
        run = _found_or_none(client.get_run, resume_run_id)
        if run is not None and run.info.lifecycle_stage == "active" and run.info.experiment_id == experiment_id:
            _retry(client.update_run, resume_run_id, status="RUNNING")
            present = {key: {m.step for m in _retry(client.get_metric_history, resume_run_id, key)}
                       for key in run.data.metrics}
            return resume_run_id, present, bool(run.inputs.dataset_inputs)
    for earlier in _retry(client.search_runs, [experiment_id], filter_string=f"tags.job_key = '{job_key}'"):
        if any(earlier.data.tags.get(tag) != tags.get(tag) for tag in OWNER_TAGS):
            continue  # another folder's or another config's run of this job: not this one's to retire
        if earlier.info.status == "FINISHED":  # superseded: soft-deleted, recoverable
            _retry(client.delete_run, earlier.info.run_id)
        elif earlier.info.status == "RUNNING":
            _retry(client.set_terminated, earlier.info.run_id, status="KILLED")
    run = _retry(client.create_run, experiment_id, run_name=run_name, tags={**tags, "job_key": job_key})
    return run.info.run_id, {}, False


def log_run(tracking_uri: str, experiment_id: str, *, job_key: str, run_name: str, tags: dict[str, str],
            params: Mapping[str, Any], history: list[dict[str, Any]], timings: list[dict[str, float]] = (),
            summary: Mapping[str, float] = (), artifacts: list[tuple[Path, str | None]] = (),
            inputs: Callable[[], list] | None = None, resume_run_id: str | None = None,
            on_created: Callable[[str], None] | None = None, safe: str = "the results are saved") -> str:
    """Log one finished job as one FINISHED MLflow run and return its id.

    Every round of ``history`` (with its ``timings``) is a step, ``summary`` is logged at step 0, then
    the artifacts (file, artifact folder) and the status. Given ``resume_run_id`` of a run that an earlier
    attempt opened, it logs exactly the points that run lacks: a run is made whole, never doubled. A
    fresh run first retires the earlier runs it replaces (same job key and OWNER_TAGS; FINISHED ones are
    deleted, RUNNING ones KILLED);
    ``on_created`` gets its id before anything is logged, so that a rerun can resume it.
    A lost server raises TrackingError in seconds (see configure_http), naming what is ``safe``.
    """
    from mlflow.entities import Metric, Param, RunTag

    client = _client(tracking_uri)
    where = "before the run was opened"
    try:
        run_id, present, has_inputs = _open_run(client, experiment_id, job_key, run_name, tags, resume_run_id)
        if run_id != resume_run_id and on_created is not None:
            on_created(run_id)
        where = f"while logging run {run_id}"
        # Params and tags are set again on a resumed run: the same values are accepted, and a run whose first
        # attempt lost its server before logging them gets them now.
        items = [Param(k, v[:6000]) for k, v in sorted(flatten("", params, {}).items())]
        for start in range(0, len(items), 100):  # log_batch takes at most 100 params
            _retry(client.log_batch, run_id, params=items[start:start + 100])
        _retry(client.log_batch, run_id, tags=[RunTag(k, v) for k, v in {**tags, "job_key": job_key}.items()])
        if inputs is not None and not has_inputs:
            log_inputs(client, run_id, inputs())
        timing_of = {timing["round"]: timing for timing in timings}
        steps = [(int(r["round"]), round_metrics(r, timing_of.get(r["round"]))) for r in history]
        steps.append((0, {k: float(v) for k, v in dict(summary).items()}))
        now = int(time.time() * 1000)
        points = [Metric(key, value, now, step) for step, values in steps for key, value in values.items()
                  if step not in present.get(key, ())]
        for start in range(0, len(points), 1000):
            _retry(client.log_batch, run_id, metrics=points[start:start + 1000])
        for path, folder in artifacts:
            _retry(client.log_artifact, run_id, str(path), folder)
        _retry(client.set_terminated, run_id, status="FINISHED")
    except Exception as exc:
        if not _is_outage(exc):
            raise
        reason = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"
        raise TrackingError(f"lost the MLflow tracking server at {tracking_uri} {where} ({reason}); {safe}; rerun the "
                            f"same command once the server answers: it logs what the run lacks and finishes it"
                            ) from None
    return run_id


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
