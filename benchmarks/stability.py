"""The stability study (issue 17) and the protocol's learning rate chosen for FedAvg on the validation split.

    .venv/bin/python -m benchmarks.stability run       # train every missing job, two at a time, one thread each
    .venv/bin/python -m benchmarks.stability table     # the tables from the runs on disk (Markdown)

``run`` trains two grids with ``fedakd train --no-track`` (a killed study resumes: finished jobs are
skipped, interrupted ones resume from their checkpoint):

1. protocol: FedAvg alone, every (federation.lr, local_epochs) of PROTOCOL_GRID, on the tuning seeds
   (not the evaluation seeds) with a validation split of 50 examples a class held out from the pool,
   scored by the validation balanced accuracy at the final round. The choice: the highest mean over
   settings and seeds (fedakd.config.tuning.select, ties to the first listed).
2. stability: every method of config/stability.yaml on both settings, the evaluation seeds, at local lr
   0.02 and 0.05: final test balanced accuracy, and how many seeds collapsed or diverged (fedakd.diagnostics).

Seeds are interleaved (seed 0 of every job first), so that a study cut short holds whole seeds.
Runs live in results/stability/, which, like results/, is never committed.
"""

from __future__ import annotations

import itertools
import json
import math
import sys
from pathlib import Path

from benchmarks.common import ROOT, machine_info, publish, study_main, train_jobs

CONFIG = ROOT / "config" / "stability.yaml"
OUT = ROOT / "results" / "stability"
SETTINGS = ("lt10-dir0.5", "lt100-dir0.5")
METHODS = ("fedavg", "fedakd", "fedakd-res", "fedakd-nokd", "fedakd-res-nokd", "fedavg-ft", "feddf", "feddf-parity")
SEEDS = (0, 1, 2, 3, 4)
RATES = (0.02, 0.05)
PROTOCOL_GRID = {"lr": (0.01, 0.02, 0.05, 0.1), "local_epochs": (1, 2)}
PROTOCOL_SEEDS = (100, 101)
VALIDATION_PER_CLASS = 50
#: FedDF's reference-code server step (up to 10,000 steps, patience 2,000, validated every 100) costs about
#: 30 CPU-s a round here, 4.5 min a job; the study keeps its rules (cosine schedule, clipping, validation,
#: early stopping, keep-average guard) at a fifth of the budget.
FEDDF_STUDY = ("methods.feddf.distill_steps=2000", "methods.feddf.patience=400", "methods.feddf.validate_every=50")


def _jobs():
    """(name, out folder, overrides, method, setting, seed) of every job, protocol first, seeds interleaved."""
    jobs = []
    for seed, setting, (lr, epochs) in itertools.product(PROTOCOL_SEEDS, SETTINGS, itertools.product(
            PROTOCOL_GRID["lr"], PROTOCOL_GRID["local_epochs"])):
        out = OUT / "protocol" / f"lr{lr}-e{epochs}" / setting / f"seed{seed}"
        overrides = (f"federation.lr={lr}", f"federation.local_epochs={epochs}",
                     f"federation.validation_per_class={VALIDATION_PER_CLASS}", f"seeds=[{seed}]")
        jobs.append((out, overrides, "fedavg", setting, seed))
    for seed, lr, setting, method in itertools.product(SEEDS, RATES, SETTINGS, METHODS):
        out = OUT / f"lr{lr}" / setting / method / f"seed{seed}"
        jobs.append((out, (f"federation.lr={lr}", *FEDDF_STUDY), method, setting, seed))
    return jobs


def run(workers: int) -> int:
    return train_jobs(_jobs(), CONFIG, OUT, workers)


def _read(out: Path):
    path = out / "metrics.json"
    return json.loads(path.read_text()) if path.exists() else None


def _mean_std(values):
    if not values:
        return "-"
    mean = math.fsum(values) / len(values)
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else math.nan
    return f"{mean:.3f} ± {std:.3f}"


def protocol_table() -> list[str]:
    from fedakd.config.tuning import select

    candidates = list(itertools.product(PROTOCOL_GRID["lr"], PROTOCOL_GRID["local_epochs"]))
    lines = ["| local lr | local epochs | " + " | ".join(f"{s} seed {seed}" for s in SETTINGS for seed in PROTOCOL_SEEDS)
             + " | mean |", "|---|---|" + "---|" * (len(SETTINGS) * len(PROTOCOL_SEEDS) + 1)]
    from fedakd.diagnostics import failed

    scores, failures = [], []
    for lr, epochs in candidates:
        row, fails = [], []
        for setting, seed in itertools.product(SETTINGS, PROTOCOL_SEEDS):
            run = _read(OUT / "protocol" / f"lr{lr}-e{epochs}" / setting / f"seed{seed}")
            row.append(run["history"][-1].get("val_balanced_accuracy") if run else None)
            fails.append(bool(run) and failed(run["failure"]))
        scores.append([math.nan if v is None else v for v in row])
        failures.append(fails)
        cells = " | ".join("-" if v is None else f"{v:.3f}" + (" (collapsed)" if f else "")
                           for v, f in zip(row, fails))
        mean = math.fsum(v for v in row if v is not None) / max(1, sum(v is not None for v in row))
        lines.append(f"| {lr} | {epochs} | {cells} | {mean:.3f} |")
    chosen = candidates[select(scores, failures)]
    return lines + ["", f"Chosen for FedAvg (fedakd.config.tuning.select: the highest mean validation balanced accuracy at "
                        f"the final round; a candidate with a missing score or a collapsed or diverged run loses): "
                        f"local lr {chosen[0]}, local epochs {chosen[1]}."]


def stability_table() -> list[str]:
    from fedakd.diagnostics import describe

    from fedakd.diagnostics import transient_collapses

    lines = ["| method | setting | lr | final balanced accuracy | collapsed | diverged | collapsed and recovered | n |",
             "|---|---|---|---|---|---|---|---|"]
    failed_runs = []
    for method, setting, lr in itertools.product(METHODS, SETTINGS, RATES):
        runs = [(seed, _read(OUT / f"lr{lr}" / setting / method / f"seed{seed}")) for seed in SEEDS]
        runs = [(seed, run) for seed, run in runs if run]
        values = [run["final"]["balanced_accuracy"] for _, run in runs]
        collapsed = sum(bool(run["failure"]["collapsed"]) for _, run in runs)
        diverged = sum(bool(run["failure"]["diverged"]) for _, run in runs)
        recovered = sum(bool(transient_collapses(run["history"])) for _, run in runs)
        lines.append(f"| {method} | {setting} | {lr} | {_mean_std(values)} | {collapsed} of {len(runs)} | "
                     f"{diverged} of {len(runs)} | {recovered} of {len(runs)} | {len(runs)} |")
        failed_runs += [(method, setting, lr, seed, run) for seed, run in runs
                        if run["failure"]["collapsed"] or run["failure"]["diverged"]]
    lines += ["", "Failed runs (deployed model; diagnostics of the failing round: the worst upload's dead units and "
              "largest head input, the average's dead units and top-class share on the probe):", ""]
    for method, setting, lr, seed, run in failed_runs:
        onset = (run["failure"]["collapsed"] or run["failure"]["diverged"])["round"]
        record = next(r for r in run["history"] if r["round"] == onset)
        diag = {key: record.get(f"diag/{key}") for key in ("local_max/dead_units", "local_max/embed_max",
                                                          "averaged/dead_units", "averaged/top_class_share")}
        curve = ", ".join(f"{r['balanced_accuracy']:.3f}" for r in run["history"])
        lines.append(f"- {method}, {setting}, lr {lr}, seed {seed}: {describe(run['failure'])}; balanced accuracy "
                     f"by round {curve}; " + ", ".join(f"{k} {v:.3g}" for k, v in diag.items() if v is not None))
    return lines


def _median_over_seeds(runs, key: str, pick) -> str:
    """The median over runs of ``pick`` (max or min) of diag/<key> over a run's rounds."""
    import statistics

    values = [pick(v) for run in runs if (v := [r[f"diag/{key}"] for r in run["history"]
                                                 if r.get(f"diag/{key}") is not None])]
    return f"{statistics.median(values):.3g}" if values else "-"


def mechanism_table() -> list[str]:
    """What the diagnostics show, per method, setting and rate: over a run's rounds, the largest head input
    and dead-unit share of the worst upload, the lowest attention entropy of any upload, and the deployed
    model's dead units at the last round (medians over seeds)."""
    lines = ["| method | setting | lr | worst upload: largest head input | worst upload: dead units | "
             "lowest upload attention entropy | deployed: dead units at the end |", "|---|---|---|---|---|---|---|"]
    for method, setting, lr in itertools.product(METHODS, SETTINGS, RATES):
        runs = [run for seed in SEEDS if (run := _read(OUT / f"lr{lr}" / setting / method / f"seed{seed}"))]
        if runs:
            last = [{"history": run["history"][-1:]} for run in runs]
            lines.append(f"| {method} | {setting} | {lr} | {_median_over_seeds(runs, 'local_max/embed_max', max)} | "
                         f"{_median_over_seeds(runs, 'local_max/dead_units', max)} | "
                         f"{_median_over_seeds(runs, 'local_min/attention_entropy', min)} | "
                         f"{_median_over_seeds(last, 'server/dead_units', max)} |")
    return lines


def table() -> int:
    """Print the tables and write them to reports/stability.md (generated, like every report, never committed)."""
    info = machine_info(1)
    lines = ["# Stability study and the protocol's learning rate", "",
             f"Machine: {info['cpu_model']}, {info['cores']} cores, torch {info['torch']}, one thread per job.", "",
             "## Protocol: FedAvg on the validation split", "", *protocol_table(), "",
             "## Stability: final round, 6 rounds, 5 seeds", "", *stability_table(), "",
             "## The mechanism: diagnostics (medians over seeds)", "", *mechanism_table()]
    return publish(lines, "stability")


if __name__ == "__main__":
    sys.exit(study_main(__doc__, run, table))
