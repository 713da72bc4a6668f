"""``fedakd verify``: retrain jobs of a published bundle and compare them with what it holds (docs/method-card.md
§5, published results).

Each chosen job is rebuilt from the bundle alone: its partition is made again from the bundle's config and must
have the published manifest's SHA-256; the job then trains with the bundle's config, one torch thread, and its
result is compared with the published one:
- on the same kind of machine (CPU model, torch version, threads: fedakd.machine.same_kind), bit for bit: every
  evaluated round's record equal;
- elsewhere, within a tolerance: the final-window mean of balanced accuracy within ``tolerance`` and the same
  failure flags (collapsed, diverged). TOLERANCE's reasoning is in docs/method-card.md §5.
With ``rounds`` R, only the first R rounds are trained and compared (the R-th round's balanced accuracy is the
value shown): a cheap check of a long job.
"""

from __future__ import annotations

import math
import random
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fedakd.publish import BundleError, CONFIG_FILE, PARTITION_ENTRY, bundle_runs, check_bundle
from fedakd.record import same

#: Largest difference of the final-window balanced accuracy accepted from another kind of machine.
TOLERANCE = 0.02


@dataclass(frozen=True)
class Check:
    job: str
    published: float
    rerun: float
    machine: str  # "same kind", "other kind", or "not recorded" (a run trained before machines were recorded)
    verdict: str  # "bit-for-bit", "within tolerance", or what differs

    @property
    def passed(self) -> bool:
        return self.verdict in ("bit-for-bit", "within tolerance")


def _flags(failure: dict[str, Any]) -> tuple[bool, bool]:
    return bool(failure.get("collapsed")), bool(failure.get("diverged"))


def choose(keys: list[str], *, jobs: list[str] = (), sample: int | None = None, seed: int = 0) -> list[str]:
    """The jobs to verify: those named (each must be in the bundle), or ``sample`` drawn at random (seeded)."""
    if jobs:
        unknown = [job for job in jobs if job not in keys]
        if unknown:
            raise BundleError(f"--job {unknown[0]} is not a job of the bundle; its jobs look like {keys[0]}")
        return list(jobs)
    if not sample or sample < 1:
        raise BundleError("say which jobs to verify: --sample N or --job dataset/setting/method/seedS")
    return sorted(random.Random(seed).sample(sorted(keys), min(sample, len(keys))))


def _compare(published: dict[str, Any], rerun: dict[str, Any], *, same_machine: bool, rounds: int | None,
             fraction: float, tolerance: float) -> tuple[float, float, str]:
    """(published value, rerun value, verdict) of one job."""
    from fedakd.reporting.collect import final_window

    if rounds is not None:
        mine = {record["round"]: record for record in rerun["history"]}
        theirs = [record for record in published["history"] if record["round"] <= rounds and record["round"] in mine]
        if not theirs:
            raise BundleError(f"no round up to {rounds} is in both histories; choose a larger --rounds")
        last = theirs[-1]["round"]
        value, again = theirs[-1]["balanced_accuracy"], mine[last]["balanced_accuracy"]
        if same_machine:
            differing = [r["round"] for r in theirs if not same(r, mine[r["round"]])]
            return value, again, "bit-for-bit" if not differing else f"rounds {differing[:3]} differ"
    else:
        value = final_window(published, fraction)["balanced_accuracy"]
        again = final_window(rerun, fraction)["balanced_accuracy"]
        if same_machine:
            identical = same(published["history"], rerun["history"]) and same(published["final"], rerun["final"])
            return value, again, "bit-for-bit" if identical else "differs (same machine kind: bit-for-bit expected)"
        if _flags(published["failure"]) != _flags(rerun["failure"]):
            return value, again, "failure flags differ"
    within = abs(again - value) <= tolerance or (math.isnan(value) and math.isnan(again))
    return value, again, "within tolerance" if within else f"differs by more than {tolerance}"


def verify(bundle: str | Path, *, jobs: list[str] = (), sample: int | None = None, rounds: int | None = None,
           tolerance: float = TOLERANCE, workdir: str | Path | None = None, log=print) -> list[Check]:
    """Retrain the chosen jobs of ``bundle`` and compare each with its published run."""
    from fedakd import jobs as jobs_module
    from fedakd.config import apply_overrides, job_spec, load_config, partition_spec, validate_config
    from fedakd.config.study import step_families
    from fedakd.io import read_json
    from fedakd.machine import machine_info, same_kind

    check_bundle(bundle)
    bundle = Path(bundle)
    published = dict(bundle_runs(bundle))
    chosen = choose(list(published), jobs=list(jobs), sample=sample)
    config = load_config(bundle / CONFIG_FILE)
    fraction = config["comparisons"]["final_window"]
    if rounds is not None:
        config = validate_config(apply_overrides(config, [f"federation.rounds={rounds}"]))
    here = machine_info(1)
    checks = []
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        for key in chosen:
            run = published[key]
            job = run["metrics"]["job"]
            base = step_families(config)[job["setting"]]
            manifest = read_json(bundle / PARTITION_ENTRY.format(dataset=job["dataset"], setting=base,
                                                                 seed=job["seed"]), "partition manifest")
            part_dir = Path(tmp) / "partitions" / job["dataset"] / base / f"seed{job['seed']}"
            if not (part_dir / "manifest.json").exists():
                spec = partition_spec(config, dataset=job["dataset"], setting=base, seed=job["seed"])
                made = jobs_module.partition_job(spec, data_root=config["data_root"], out_dir=part_dir)
                if made.sha256 != manifest["sha256"]:
                    checks.append(Check(key, math.nan, math.nan, "-", "partition differs from the published one"))
                    log(f"{key}: its partition's SHA-256 differs from the published manifest's")
                    continue
            spec = job_spec(config, dataset=job["dataset"], setting=job["setting"], method=job["method"],
                            seed=job["seed"])
            log(f"{key}: training{f' {rounds} rounds' if rounds else ''} ...")
            rerun = jobs_module.train_job(spec, out_dir=Path(tmp) / "runs" / key, partition_dir=part_dir, threads=1)
            trained_on = run["timings"].get("machine")
            same_machine = same_kind(trained_on, here)
            value, again, verdict = _compare(run["metrics"], rerun, same_machine=same_machine, rounds=rounds,
                                             fraction=fraction, tolerance=tolerance)
            machine = "same kind" if same_machine else "other kind" if trained_on else "not recorded"
            checks.append(Check(key, value, again, machine, verdict))
    return checks


def table(checks: list[Check], *, rounds: int | None) -> str:
    """The verdict table, Markdown."""
    what = f"balanced accuracy at round {rounds}" if rounds else "final-window balanced accuracy"
    lines = [f"| job | published | rerun | difference | machine | verdict |", "|---|---|---|---|---|---|"]
    for c in checks:
        lines.append(f"| {c.job} | {c.published:.4f} | {c.rerun:.4f} | {c.rerun - c.published:+.2e} | "
                     f"{c.machine} | {c.verdict} |")
    passed = sum(c.passed for c in checks)
    return "\n".join([f"Verified on {what}:", "", *lines, "", f"{passed} of {len(checks)} jobs agree."])
