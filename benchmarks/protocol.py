"""The protocol at a study's budget: FedAvg's local learning rate and epochs chosen on the validation split
after as many rounds as a converged study runs, and the rounds FedAvg needs to converge there.

    .venv/bin/python -m benchmarks.protocol run       # train every missing job, two at a time, one thread each
    .venv/bin/python -m benchmarks.protocol table     # the choice and the rounds, from the runs on disk

Why not the 6-round grid of benchmarks/stability.py: a grid scored after 6 rounds picks the learning rate
that learns fastest, not the one that ends best. At its choice (lr 0.05, 2 local epochs, momentum 0.9)
FedAvg itself collapsed to one class from round 1 and stayed there for 50 rounds on one evaluation seed of
the imbalance-10 pool (Intel Xeon), and on the imbalance-100 pool swung between chance and 0.28 for 20
rounds before climbing.

FedAvg alone, every (local lr, local epochs) of GRID, on four tuning seeds (never the evaluation seeds),
with a validation split of 50 examples a class held out of the pool, ROUNDS rounds, evaluated every round.
The grid runs past the step where FedAvg fails (lr 0.1 at momentum 0.9, an effective step of 1.0).
Everything is judged on the validation split, never on the test set:
- the choice: the margin rule (fedakd.config.tuning.select_with_margin): the highest mean validation balanced
  accuracy at the final round, over settings and seeds, among the steps that failed on no tuning run and whose
  next larger step failed on none either, so that the protocol keeps one clean step of margin below the
  smallest failing one (the old rule, the best step that did not fail, chose the edge: lr 0.05, where FedAvg then
  failed on 2 of 16 evaluation runs);
- the rounds: for each budget R of BUDGETS, whether the tuning runs of the choice (all but one) have converged by R,
  judged on its first R rounds by the rule the study's summary uses (fedakd.reporting.curves: the fitted
  line through the last 20 % of the rounds rises by at most 1 point).
"""

from __future__ import annotations

import itertools
import json
import math
import sys

from benchmarks.common import ROOT, machine_info, publish, study_main, train_jobs

CONFIG = ROOT / "config" / "stability.yaml"  # Fashion-MNIST, lt10 and lt100 over Dirichlet(0.5), 10 clients
OUT = ROOT / "results" / "protocol"
SETTINGS = ("lt10-dir0.5", "lt100-dir0.5")
#: Momentum 0.9 throughout, so the effective client step lr / (1 - momentum) runs 0.1 (NIID-Bench's, FedNTD's) to 1.0,
#: past the step where FedAvg fails (docs/method-card.md §5). Two local epochs: on the earlier grid (Intel Xeon,
#: 60 rounds) two beat one at every lr.
GRID = {"lr": (0.01, 0.02, 0.05, 0.1), "local_epochs": (2,)}
#: Four tuning seeds per setting, eight runs per candidate: a candidate that collapses one run in ten is caught by
#: 8 runs with probability 1 - 0.9^8 = 0.57, by 4 with 0.34 (the 60-round study at lr 0.05 saw FedAvg collapse).
SEEDS = (100, 101, 102, 103)
ROUNDS = 100
BUDGETS = (40, 60, 80, 100)
VALIDATION_PER_CLASS = 50
METRIC = "val_balanced_accuracy"
MOMENTUM = 0.9  # config/stability.yaml's


def candidates() -> list[tuple[float, int]]:
    return list(itertools.product(GRID["lr"], GRID["local_epochs"]))


def _folder(lr: float, epochs: int, setting: str, seed: int):
    return OUT / f"lr{lr}-e{epochs}" / setting / f"seed{seed}"


def _jobs():
    """The steps the margin rule weighs first (0.05 and 0.02), the largest last (one failed run there is enough to
    show the edge), seeds outermost within a step, so that a study cut short holds whole rows that matter most."""
    order = sorted(candidates(), key=lambda c: (c[0] == max(GRID["lr"]), -c[0]))
    return [(_folder(lr, epochs, setting, seed),
             (f"federation.lr={lr}", f"federation.local_epochs={epochs}", f"federation.rounds={ROUNDS}",
              f"federation.validation_per_class={VALIDATION_PER_CLASS}", "federation.eval_every=1", f"seeds=[{seed}]"),
             "fedavg", setting, seed)
            for (lr, epochs) in order for seed, setting in itertools.product(SEEDS, SETTINGS)]


def _read(lr, epochs, setting, seed):
    path = _folder(lr, epochs, setting, seed) / "metrics.json"
    return json.loads(path.read_text()) if path.exists() else None


def converged_by(run: dict, budget: int) -> bool:
    """Whether the run's validation curve, cut after ``budget`` rounds, passes the study's convergence rule
    (and the run neither collapsed nor diverged by then)."""
    from fedakd.diagnostics import collapse_onset
    from fedakd.reporting.curves import curve, rise, seed_converged

    history = [record for record in run["history"] if record["round"] <= budget]
    rounds, values = curve(history, METRIC)
    diverged = run["failure"].get("diverged")
    failed_by = collapse_onset(history) is not None or bool(diverged and diverged["round"] <= budget)
    return seed_converged(rise(rounds, values, budget), failed_by)


def _at(run: dict, budget: int) -> float:
    return next((record[METRIC] for record in run["history"] if record["round"] == budget), math.nan)


def table() -> int:
    """Print the tables and write them to reports/protocol.md (generated, never committed)."""
    from fedakd.config.tuning import MARGIN_RULE, select_with_margin
    from fedakd.diagnostics import failed

    runs = {(lr, epochs, setting, seed): _read(lr, epochs, setting, seed)
            for lr, epochs in candidates() for setting in SETTINGS for seed in SEEDS}
    cells = [(setting, seed) for setting in SETTINGS for seed in SEEDS]
    header = ("| local lr | effective step | local epochs | " + " | ".join(f"{s} seed {seed}" for s, seed in cells)
              + " | mean | failed |")
    lines = [f"Validation balanced accuracy after {ROUNDS} rounds, momentum {MOMENTUM} (failed: collapsed or "
             "diverged):", "", header, "|---|---|---|" + "---|" * (len(cells) + 2)]
    scores, failures = {}, {}
    for lr, epochs in candidates():
        row = [runs[lr, epochs, setting, seed] for setting, seed in cells]
        values = [run["history"][-1][METRIC] if run else math.nan for run in row]
        fails = [bool(run) and failed(run["failure"]) for run in row]
        scores[lr, epochs], failures[lr, epochs] = values, fails
        mean = math.fsum(values) / len(values)
        lines.append(f"| {lr} | {lr / (1 - MOMENTUM):.2g} | {epochs} | " + " | ".join(
            "-" if math.isnan(v) else f"{v:.3f}" + (" (failed)" if f else "") for v, f in zip(values, fails))
            + f" | {mean:.3f} | {sum(fails)} of {sum(bool(run) for run in row)} |")
    choices = []
    for epochs in GRID["local_epochs"]:  # a step with runs to come cannot be chosen (a NaN score) but can fail
        lrs = [lr for lr in GRID["lr"] if any(runs[lr, epochs, setting, seed] for setting, seed in cells)]
        index = select_with_margin(lrs, [scores[lr, epochs] for lr in lrs], [failures[lr, epochs] for lr in lrs])
        if index is not None:
            choices.append((lrs[index], epochs))
    choice = max(choices, key=lambda c: math.fsum(scores[c]) / len(scores[c])) if choices else None
    lines += ["", f"The margin rule: {MARGIN_RULE}.", "",
              f"Chosen for the protocol: local lr {choice[0]} (effective step {choice[0] / (1 - MOMENTUM):.2g}), "
              f"{choice[1]} local epoch(s)." if choice else
              "No step of the finished grid has a clean step of margin above it: extend the grid or finish its runs.",
              "", "Convergence by budget (validation curve cut after R rounds; converged runs of "
              f"{len(cells)}), and the mean validation balanced accuracy at round R:", "",
              "| local lr | local epochs | " + " | ".join(f"R = {b}" for b in BUDGETS) + " |",
              "|---|---|" + "---|" * len(BUDGETS)]
    for lr, epochs in candidates():
        row = [runs[lr, epochs, setting, seed] for setting, seed in cells]
        if not all(row):
            continue
        lines.append(f"| {lr} | {epochs} | " + " | ".join(
            f"{sum(converged_by(run, b) for run in row)} of {len(row)}, "
            f"{math.fsum(_at(run, b) for run in row) / len(row):.3f}" for b in BUDGETS) + " |")
    if choice:
        chosen_runs = [runs[choice[0], choice[1], setting, seed] for setting, seed in cells]
        lines += ["", "Not converged at R = " + str(ROUNDS) + ": " + (", ".join(
            f"{setting} seed {seed}" for (setting, seed), run in zip(cells, chosen_runs)
            if not converged_by(run, ROUNDS)) or "none") + "."]
        enough = next((b for b in BUDGETS if sum(converged_by(run, b) for run in chosen_runs) >= len(cells) - 1),
                      None)
        lines += ["", f"Rounds the choice needs (converged on all tuning runs but at most one): {enough}" if enough
                  else f"The choice has not converged on all tuning runs but one within {ROUNDS} rounds."]
    info = machine_info(1)
    return publish([f"# The protocol at the study's budget ({info['cpu_model']}, torch {info['torch']})", "", *lines],
                   "protocol")


if __name__ == "__main__":
    sys.exit(study_main(__doc__, lambda workers: train_jobs(_jobs(), CONFIG, OUT, workers), table))
