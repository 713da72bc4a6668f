"""Gather finished runs: parse every metrics.json, check it against MLflow, flatten it into a table.

Tables and figures are only as honest as the set of runs they are built from, so
a damaged file, a missing run or a duplicated run stops the report with a list
of what to fix instead of being averaged in silently.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any, Iterable

from fedakd.io import read_json
from fedakd.layout import TIMINGS_FILE, TRACKING_FILE, job_key
from fedakd.record import JOB_KEYS, RunRecord
from fedakd.metrics import HEADLINE_METRICS, METRIC_KEYS
from fedakd.tracking import SUMMARY_TAG

#: Metrics whose logged steps the cross-check compares with each job's history (docs/method-card.md §4's headline).
HEADLINE_STEPS = HEADLINE_METRICS  # every round of these must be in MLflow


log = logging.getLogger(__name__)

BEST_COLUMNS = tuple(f"best_{key}" for key in METRIC_KEYS)  # optimistic: the round chosen on the test set
LAST_COLUMNS = tuple(f"last_{key}" for key in METRIC_KEYS)  # the final round, beside the final-window mean
FRAME_COLUMNS = ("dataset", "setting", "method", "method_class", "seed", *METRIC_KEYS, "per_class_recall",
                 *LAST_COLUMNS, *BEST_COLUMNS, "imbalance_kind", "imbalance_factor", "split_kind", "split_alpha",
                 "split_k", "lr", "momentum", "step", "rounds", "clients_per_round", "local_steps", "server_steps",
                 "bytes_down", "bytes_up", "rounds_to_target", "bytes_to_target", "wall_seconds", "collapsed",
                 "diverged", "failed", "failure", "ba_history")


class ResultsError(ValueError):
    """The collected results are damaged, incomplete or disagree with the MLflow store."""


def load_metrics(paths: Iterable[str | Path]) -> list[dict[str, Any]]:
    """Parse each metrics.json; any unreadable or incomplete one raises ResultsError naming all of them."""
    runs, problems = [], []
    for path in paths:
        try:
            run = RunRecord.load(path)
        except ValueError as exc:
            problems.append(str(exc))
            continue
        timings = Path(path).parent / TIMINGS_FILE  # written beside it, kept out of it: wall time is not a result
        run["wall_seconds"] = read_json(timings, "timings file")["wall_seconds"] if timings.exists() else None
        run["run_folder"] = str(Path(path).parent.resolve())  # whose MLflow run it is (fedakd.tracking.OWNER_TAGS)
        tracked = Path(path).parent / TRACKING_FILE  # written by the tracking step, after training
        if tracked.exists():
            run["mlflow_run_id"] = read_json(tracked, "MLflow tracking record").get("run_id")
        runs.append(run)
    if problems:
        raise ResultsError("cannot collect the results:\n- " + "\n- ".join(problems))
    return runs


def _search_all_runs(client, experiment_id: str, page_size: int) -> list:
    """Every active (not deleted) run of the experiment, following the result pages."""
    from mlflow.entities import ViewType

    found, token = [], None
    while True:
        page = client.search_runs([experiment_id], run_view_type=ViewType.ACTIVE_ONLY, max_results=page_size,
                                  page_token=token)
        found.extend(page)
        token = page.token
        if not token:
            return found


def missing_steps(client, run: dict[str, Any], metrics: Iterable[str] = HEADLINE_STEPS) -> list[str]:
    """Where an MLflow run lacks (or doubles) a headline metric at a round of the job's own history."""
    problems = []
    for key in metrics:
        expected = sorted(record["round"] for record in run["history"] if record.get(key) is not None)
        logged = sorted(point.step for point in client.get_metric_history(run["mlflow_run_id"], key))
        if logged != expected:
            missing = sorted(set(expected) - set(logged))
            doubled = sorted({step for step in logged if logged.count(step) > 1})
            extra = sorted(set(logged) - set(expected))
            problems.append(f"{key}: " + "; ".join(part for part in (
                f"missing rounds {missing}" if missing else "", f"rounds logged twice {doubled}" if doubled else "",
                f"rounds not in metrics.json {extra}" if extra else "") if part))
    return problems


def crosscheck_mlflow(runs: list[dict[str, Any]], tracking_uri: str, experiment: str, *,
                      page_size: int = 1000) -> str:
    """Check that runs and the experiment's FINISHED MLflow runs match one to one, by job key, and that
    each run holds every headline metric at every round of the job's history, once.

    Raises ResultsError listing every problem. KILLED, FAILED and RUNNING runs
    (interrupted jobs, superseded attempts), the study's summary run, and runs of a collected job that
    another folder or another config owns (a by-hand ``fedakd train`` elsewhere, fedakd.tracking.OWNER_TAGS)
    are ignored; the returned note (also logged) counts them.
    """
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    found = client.get_experiment_by_name(experiment)
    if found is None or found.lifecycle_stage == "deleted":
        raise ResultsError(f"MLflow experiment {experiment!r} does not exist in {tracking_uri}; check the config's "
                           f"experiment and tracking_uri, or rerun the training jobs")
    finished, unfinished, others = _sort_runs(runs, _search_all_runs(client, found.experiment_id, page_size))
    problems = _crosscheck_problems(client, runs, finished, experiment)
    # Jobs outside the collected set (a method or seed since dropped from the config) are out of scope:
    # the pipeline collects every job of its config, so a missing metrics.json stops it before this point.
    outside = sorted(key for key in finished if key not in {job_key(run["job"]) for run in runs})
    if problems:
        raise ResultsError(f"results and MLflow experiment {experiment!r} disagree:\n- " + "\n- ".join(problems))
    note = (f"MLflow experiment {experiment!r}: {len(runs)} finished runs match their metrics.json"
            + ("; ignored unfinished runs: " + ", ".join(f"{n} {s}" for s, n in sorted(unfinished.items()))
               if unfinished else "")
            + (f"; ignored {len(outside)} finished run(s) of jobs not collected here ({', '.join(outside[:3])}"
               f"{', ...' if len(outside) > 3 else ''})" if outside else "")
            + (f"; ignored {others} run(s) of collected jobs owned by another folder or config" if others else ""))
    log.info(note)
    return note


def _sort_runs(runs: list[dict[str, Any]], mlflow_runs) -> tuple[dict[str, list[str]], dict[str, int], int]:
    """The experiment's runs by job key: FINISHED run ids, counts of the others by status, and how many belong to
    another folder or config (the summary run is skipped)."""
    owners = {job_key(run["job"]): (run.get("job_digest"), run.get("run_folder")) for run in runs}
    named = {run.get("mlflow_run_id") for run in runs}  # a run a collected folder names is its own, wherever it moved
    finished: dict[str, list[str]] = {}
    unfinished: dict[str, int] = {}
    others = 0
    for mlflow_run in mlflow_runs:
        status = mlflow_run.info.status
        tags = mlflow_run.data.tags
        if tags.get(SUMMARY_TAG):
            continue
        key = tags.get("job_key", f"(untagged run {mlflow_run.info.run_id})")
        if (key in owners and "run_folder" in tags and mlflow_run.info.run_id not in named
                and (tags.get("job_digest"), tags["run_folder"]) != owners[key]):
            others += 1  # the same job run by hand elsewhere, or under another config: not this collection's
            continue
        if status == "FINISHED":
            finished.setdefault(key, []).append(mlflow_run.info.run_id)
        else:
            unfinished[status] = unfinished.get(status, 0) + 1
    return finished, unfinished, others


def _crosscheck_problems(client, runs: list[dict[str, Any]], finished: dict[str, list[str]],
                         experiment: str) -> list[str]:
    """Every disagreement between the collected runs and the experiment's FINISHED runs, one sentence each."""
    problems = []
    for run in runs:
        key = job_key(run["job"])
        run_ids = finished.get(key, [])
        if run.get("mlflow_run_id") is None:
            problems.append(f"{key}: was never logged to MLflow (no {TRACKING_FILE} beside its metrics.json); rerun "
                            f"the pipeline, whose track rule logs it, or `fedakd train` without --no-track")
            continue
        if run["mlflow_run_id"] not in run_ids:
            problems.append(f"{key}: metrics.json names MLflow run {run['mlflow_run_id']}, which is not a FINISHED "
                            f"run of this job in experiment {experiment!r} (deleted or lost?); delete that "
                            f"metrics.json and rerun the job")
            continue
        gaps = missing_steps(client, run)
        if gaps:
            problems.append(f"{key}: MLflow run {run['mlflow_run_id']} disagrees with its metrics.json ("
                            + "; ".join(gaps) + "); delete that metrics.json and rerun the job, which logs the "
                            "missing points into the same run")
    for key, run_ids in sorted(finished.items()):
        if len(run_ids) > 1:
            problems.append(f"{key}: {len(run_ids)} FINISHED MLflow runs ({', '.join(sorted(run_ids))}); delete the "
                            f"ones its metrics.json does not name (MlflowClient.delete_run)")
    return problems


def _failure_columns(failure: dict[str, Any] | None) -> dict[str, Any]:
    """collapsed, diverged, failed (either) and the failure's description (fedakd.diagnostics)."""
    from fedakd.diagnostics import describe

    failure = failure or {}
    collapsed, diverged = bool(failure.get("collapsed")), bool(failure.get("diverged"))
    return {"collapsed": collapsed, "diverged": diverged, "failed": collapsed or diverged,
            "failure": describe(failure)}


def final_window(run: dict[str, Any], fraction: float) -> dict[str, Any]:
    """Every metric's final-window mean (the rule of fedakd.reporting.curves.final_window_mean) over a run's
    history, and the per-class recall's, class by class; the final round's values (the record's ``final``) with
    ``fraction`` 0 or where a metric has no history."""
    import numpy as np

    from fedakd.reporting.curves import window_start  # the window rule of every curve summary

    if fraction <= 0:
        return {**{key: run["final"][key] for key in METRIC_KEYS},
                "per_class_recall": list(run["final"]["per_class_recall"])}
    window = [record for record in run["history"] if record["round"] > window_start(run["cost"]["rounds"], fraction)]
    window = window or run["history"][-1:]
    values = {}
    for key in METRIC_KEYS:
        points = [record[key] for record in window if record.get(key) is not None]
        values[key] = float(np.mean(points)) if points else run["final"].get(key)
    recalls = [record["per_class_recall"] for record in window if record.get("per_class_recall") is not None]
    values["per_class_recall"] = (np.mean(np.asarray(recalls, dtype=float), axis=0).tolist() if recalls
                                  else list(run["final"]["per_class_recall"]))
    return values


def _to_target(run: dict[str, Any], target: float) -> tuple[float, float]:
    """(rounds, bytes down and up) until the first evaluated round whose balanced accuracy reaches ``target``;
    NaN for a run that never does."""
    import math

    from fedakd.reporting.curves import curve, first_reaching

    reached = first_reaching(*curve(run["history"], "balanced_accuracy"), target)
    if math.isnan(reached):
        return math.nan, math.nan
    record = next(record for record in run["history"] if record["round"] == reached)
    return reached, float(record["bytes_down"] + record["bytes_up"])


def runs_frame(runs: list[dict[str, Any]], final_window_fraction: float = 0.0, target: float = math.nan):
    """One row per run: identity, every metric's final-window mean (the headline; ``final_window_fraction`` 0:
    the final round) with the final round beside it (``last_*``), the optimistic best-round ones, the setting's
    parameters and client step, the cost counters, the rounds and bytes to reach ``target`` balanced accuracy,
    the failure flags (collapsed, diverged, failed, failure: fedakd.diagnostics) and the balanced-accuracy curve
    (``ba_history``).

    Missing metrics (a group a balanced pool lacks) become NaN; per_class_recall and ba_history stay
    list columns.
    """
    import pandas as pd

    from fedakd.config.study import effective_step

    rows = []
    for run in runs:
        imbalance, split = run["setting"]["imbalance"], run["setting"]["split"]
        rows.append({
            **{key: run["job"][key] for key in JOB_KEYS},
            **final_window(run, final_window_fraction),
            **{f"last_{key}": run["final"][key] for key in METRIC_KEYS},
            **{f"best_{key}": run["best"].get(key) for key in METRIC_KEYS},
            "imbalance_kind": imbalance["kind"], "imbalance_factor": imbalance.get("factor"),
            "split_kind": split["kind"], "split_alpha": split.get("alpha"), "split_k": split.get("k"),
            "lr": run["federation"]["lr"], "momentum": run["federation"]["momentum"],
            "step": effective_step(run["federation"]),
            **{key: run["cost"][key] for key in ("rounds", "clients_per_round", "local_steps", "server_steps",
                                                 "bytes_down", "bytes_up")},
            **dict(zip(("rounds_to_target", "bytes_to_target"), _to_target(run, target))),
            "wall_seconds": run.get("wall_seconds"),
            **_failure_columns(run.get("failure")),
            "ba_history": [{"round": r["round"], "balanced_accuracy": r.get("balanced_accuracy")}
                           for r in run["history"]],
        })
    frame = pd.DataFrame(rows, columns=list(FRAME_COLUMNS))
    numeric = [*METRIC_KEYS, *LAST_COLUMNS, *BEST_COLUMNS, "imbalance_factor", "split_alpha", "lr", "momentum", "step",
               "local_steps", "server_steps", "bytes_down", "bytes_up", "rounds_to_target", "bytes_to_target",
               "wall_seconds"]
    frame[numeric] = frame[numeric].astype(float)
    frame[["seed", "rounds", "clients_per_round"]] = frame[["seed", "rounds", "clients_per_round"]].astype(int)
    frame["split_k"] = frame["split_k"].astype("Int64")
    return frame
