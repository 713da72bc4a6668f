"""The ladder's server-side rungs at the headline budget, one seed outside the study, three client step sizes:
what breaks fedavg-ft late, and whether its fix holds (docs/method-card.md §6).

    .venv/bin/python -m benchmarks.rungs run       # train every missing job, two at a time, one thread each
    .venv/bin/python -m benchmarks.rungs table     # final and final-window balanced accuracy, failures, from disk

config/converged.yaml with only federation.lr and federation.rounds changed, imbalance-100 pool, seed 9 (not an
evaluation seed of the headline study, never a tuning seed): the run the step-size issue measured on an AMD EPYC.
"""

from __future__ import annotations

import itertools
import json
import math
import sys

from benchmarks.common import ROOT, machine_info, publish, study_main, train_jobs

CONFIG = ROOT / "config" / "converged.yaml"
OUT = ROOT / "results" / "rungs"
SETTING = "lt100-dir0.5"
SEED = 9
ROUNDS = 60
STEPS = (0.01, 0.02, 0.05)  # local lr, momentum 0.9: effective steps 0.1, 0.2, 0.5
#: name -> (method of converged.yaml, its options here): FedAvg for reference, fedavg-ft as it was (100 Adam steps at
#: 1e-3 every round, nothing to restrain them), then the candidate remedies, one lever each: the guard (validated
#: on a held-out fifth of the transfer set, best validated step kept, early stop, the average kept when no step
#: beats it: Lin et al.'s practice for FedDF), a tenth of the server learning rate, a tenth of the steps; and the
#: server learning rate the headline's tuning stage chose for fedavg-ft on this pool (published/converged-tuning:
#: 3e-5, the one candidate that failed on neither tuning seed). Each row names every server option it changes from
#: the class's defaults, set as the pool's own method_options, which win over whatever choice converged.yaml carries.
METHODS = {
    "fedavg": ("fedavg", ()),
    "fedavg-ft": ("fedavg-ft", ("distill_lr=0.001",)),
    "fedavg-ft guard": ("fedavg-ft", ("distill_lr=0.001", "validation=transfer", "validate_every=10", "patience=20",
                                      "keep_average=true")),
    "fedavg-ft lr 1e-4": ("fedavg-ft", ("distill_lr=0.0001",)),
    "fedavg-ft 10 steps": ("fedavg-ft", ("distill_lr=0.001", "distill_steps=10")),
    "fedavg-ft lr 3e-5": ("fedavg-ft", ("distill_lr=0.00003",)),  # the tuning stage's choice
}


def _folder(name: str, lr: float):
    return OUT / f"lr{lr}" / name.replace(" ", "_")


def _jobs():
    import yaml

    # seed 9 joins the study's seeds (its step settings name some of those, and must still find them)
    seeds = sorted({*yaml.safe_load(CONFIG.read_text())["seeds"], SEED})
    return [(_folder(name, lr), (f"federation.lr={lr}", f"federation.rounds={ROUNDS}", f"seeds={seeds}",
                                 *(f"settings.{SETTING}.method_options.{method}.{option}" for option in options)),
             method, SETTING, SEED)
            for (name, (method, options)), lr in itertools.product(METHODS.items(), STEPS)]


def _summary(run: dict) -> str:
    from fedakd.diagnostics import describe
    from fedakd.reporting.curves import curve, late_mean

    rounds, values = curve(run["history"], "balanced_accuracy")
    text = f"{values[-1]:.3f} (last 10 %: {late_mean(rounds, values, ROUNDS, 0.1):.3f})"
    failure = describe(run["failure"])
    return text + (f"; {failure}" if failure != "none" else "")


def table() -> int:
    header = "| method | " + " | ".join(f"lr {lr} (effective {lr / 0.1:.1f})" for lr in STEPS) + " |"
    lines = [f"Final balanced accuracy, {SETTING} seed {SEED}, {ROUNDS} rounds, momentum 0.9:", "", header,
             "|---|" + "---|" * len(STEPS)]
    for name in METHODS:
        cells = []
        for lr in STEPS:
            path = _folder(name, lr) / "metrics.json"
            cells.append(_summary(json.loads(path.read_text())) if path.exists() else "-")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    info = machine_info(1)
    return publish([f"# The server-side rungs across step sizes ({info['cpu_model']}, torch {info['torch']})", "",
                    *lines], "rungs")


if __name__ == "__main__":
    sys.exit(study_main(__doc__, lambda workers: train_jobs(_jobs(), CONFIG, OUT, workers), table))
