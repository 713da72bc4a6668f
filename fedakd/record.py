"""A run's record, its metrics.json: built once, by the training job, from what the federation produced; checked
(keys and types) whenever it is loaded; read through here by the tracking step and by reporting.

What it holds: the job and its resolved options, the partition's hash and class profile, the final-round
metrics (the headline) and the best round's (optimistic: chosen on the test set), the per-round history with
its diagnostics, the failure flags, the cost counters, the final model's confusion matrix, and the commit and
device that produced it. Wall time is kept beside it (timings.json): it is not a result.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fedakd.io import UnreadableFileError, read_json
from fedakd.metrics import METRIC_KEYS

if TYPE_CHECKING:
    from fedakd.config.spec import JobSpec
    from fedakd.data import Dataset
    from fedakd.engine import FederationResult
    from fedakd.partition import Partition

#: Identity of a run inside its "job".
JOB_KEYS = ("dataset", "setting", "method", "method_class", "seed")
#: Cost counters of its "cost" (docs/method-card.md §3, compute parity).
COST_KEYS = ("local_steps", "server_steps", "bytes_down", "bytes_up", "rounds", "clients_per_round")
#: The metrics of "final" and "best".
FINAL_KEYS = (*METRIC_KEYS, "per_class_recall")


def final_and_best(history: list[dict[str, Any]]) -> tuple[dict, dict]:
    """Final-round metrics (the headline) and best-round ones (optimistic: chosen on the test set)."""
    def pick(record):
        return {key: record.get(key) for key in FINAL_KEYS}

    best = max(history, key=lambda rec: (rec["accuracy"], -rec["round"]))
    return pick(history[-1]), {**pick(best), "round": best["round"]}


def partition_profile(partition: "Partition") -> dict[str, Any]:
    """What a run records of its partition beside the hash: sizes (the MLflow dataset input's profile)."""
    return {"num_examples": int(sum(len(c) for c in partition.client_indices)),
            "clients": len(partition.client_indices), "transfer_set": int(len(partition.transfer_indices)),
            "validation_set": int(len(partition.validation_indices))}


@dataclass(frozen=True)
class RunRecord:
    """The content of a run's metrics.json (every key is required; ``to_json`` writes them all)."""

    job: dict[str, Any]  # JOB_KEYS, and a tuning job's candidate
    job_digest: str
    reference: bool
    setting: dict[str, Any]
    method_options: dict[str, Any]
    federation: dict[str, Any]
    model: dict[str, Any]
    num_classes: int
    class_names: list[str]
    class_counts: list[int]
    groups: dict[str, list[int]]
    partition_sha256: str
    partition: dict[str, Any]
    client_counters: dict[str, float]
    cost: dict[str, int]
    final: dict[str, Any]
    best: dict[str, Any]
    failure: dict[str, Any]
    history: list[dict[str, Any]]
    confusion_matrix: list[list[int]]
    git_commit: str
    device: str
    engine: str = "fedakd"  # what ran the rounds: the suite's engine, or "flower" (fedakd.flower)

    @classmethod
    def build(cls, job: "JobSpec", *, reference: bool, dataset: "Dataset", partition: "Partition",
              result: "FederationResult", device: str, git_commit: str, engine: str = "fedakd") -> "RunRecord":
        from fedakd.diagnostics import failure_flags
        from fedakd.run_artifacts import confusion_counts

        final, best = final_and_best(result.history)
        totals = result.totals
        return cls(
            job={"dataset": job.dataset, "setting": job.setting, "method": job.method,
                 "method_class": job.method_class, "seed": job.seed,
                 **({"candidate": job.candidate} if job.candidate is not None else {})},
            job_digest=job.digest, reference=reference, setting=job.setting_params,
            method_options=job.method_options, federation=job.federation,
            model={"backbone": job.model["backbone"], "num_params": result.num_params},
            num_classes=dataset.num_classes, class_names=list(dataset.class_names),
            class_counts=partition.class_counts, groups=partition.groups, partition_sha256=partition.sha256,
            partition=partition_profile(partition), client_counters=result.counters,
            cost={"local_steps": totals.local_steps, "server_steps": totals.server_steps,
                  "bytes_down": totals.bytes_down, "bytes_up": totals.bytes_up,
                  "rounds": job.federation["rounds"], "clients_per_round": result.clients_per_round},
            final=final, best=best, failure=failure_flags(result.history, result.diverged), history=result.history,
            confusion_matrix=confusion_counts(dataset.y_test.numpy(), result.final_predictions, dataset.num_classes),
            git_commit=git_commit, device=device, engine=engine)

    def to_json(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @staticmethod
    def problems(data: Any) -> list[str]:
        """What a loaded metrics.json lacks or garbles (empty when it is a whole record)."""
        if not isinstance(data, dict):
            return ["(not a JSON object)"]
        missing = [f.name for f in fields(RunRecord) if f.name not in data and f.name != "engine"]  # engine: later
        kinds = {"job": dict, "final": dict, "best": dict, "failure": dict, "history": list, "cost": dict,
                 "groups": dict, "class_counts": list}
        missing += [f"{key} (not a {kind.__name__})" for key, kind in kinds.items()
                    if key in data and not isinstance(data[key], kind)]

        def usable(key, kind):
            return isinstance(data.get(key), kind)

        for key, required in (("job", JOB_KEYS), ("cost", COST_KEYS), ("final", FINAL_KEYS)):
            missing += [f"{key}.{name}" for name in required if usable(key, dict) and name not in data[key]]
        if usable("history", list) and not (data["history"] and all(isinstance(r, dict) and "round" in r
                                                                    for r in data["history"])):
            missing.append("history (a list of rounds)")
        elif not missing:
            missing += _history_problems(data)
        return missing

    @classmethod
    def load(cls, path: str | Path) -> dict[str, Any]:
        """A checked metrics.json, as its plain dict (what reporting reads); UnreadableFileError otherwise."""
        return cls.checked(read_json(path, "metrics file"), path)

    @classmethod
    def checked(cls, data: Any, path: str | Path) -> dict[str, Any]:
        """``data`` (the content of ``path``) if it is a whole record; UnreadableFileError otherwise."""
        problems = cls.problems(data)
        if problems:
            raise UnreadableFileError(f"metrics file {path} lacks {', '.join(problems)}: it was written by another "
                                      f"version, damaged or edited by hand; delete it and rerun that job")
        return data


def same(a: Any, b: Any) -> bool:
    """Equal, NaN counting as equal to NaN, through nested dicts and lists (a record's values, fedakd verify's
    comparison)."""
    if isinstance(a, float) and isinstance(b, float) and a != a and b != b:
        return True
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


def _history_problems(data: dict[str, Any]) -> list[str]:
    """What a whole-looking record's history contradicts: the rounds the engine evaluates (every eval_every-th
    and the last, and the round a run diverged in), in order, once each; and the final metrics, which are its
    last round's."""
    rounds = [record["round"] for record in data["history"]]
    total = data["cost"]["rounds"]
    if not isinstance(total, int) or not all(isinstance(r, int) for r in rounds):
        return ["cost.rounds and history's rounds (whole numbers)"]
    every = data.get("federation", {}).get("eval_every", 1) if isinstance(data.get("federation"), dict) else 1
    due = {r for r in range(1, total + 1) if r % every == 0 or r == total}
    diverged = (data["failure"].get("diverged") or {}).get("round")
    problems = []
    if rounds != sorted(set(rounds)):
        problems.append("history (its rounds repeat or are out of order)")
    missing, extra = sorted(due - set(rounds)), sorted(set(rounds) - due - {diverged})
    if missing:
        problems.append(f"history's evaluated rounds {missing} (eval_every {every} of {total} rounds)")
    if extra:
        problems.append(f"history (rounds {extra} are not rounds the engine evaluates)")
    last = data["history"][-1]
    if not problems and any(not same(data["final"][key], last.get(key)) for key in FINAL_KEYS):
        problems.append("final (its metrics differ from its history's last round)")
    return problems
