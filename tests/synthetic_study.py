"""A synthetic study of config/full.yaml's 21 methods (2 pools, one pool repeated at two other client steps, 5
seeds, 30 rounds, 10 classes, two failed runs), for the figure and report tests: every figure type and the
report are drawn from it as the pipeline would draw them, and nothing is trained.

    python -m tests.synthetic_study OUT   # renders every figure and the report into OUT, to look at
"""

from __future__ import annotations

import hashlib
import math
import sys
from pathlib import Path

import numpy as np
import yaml

from fedakd.config.study import Study

ROOT = Path(__file__).resolve().parents[1]
SEEDS = (0, 1, 2, 3, 4)
ROUNDS = 30
CLASSES = 10
CLASS_COUNTS = [int(6000 * 0.1 ** (c / 9)) for c in range(CLASSES)]  # a long tail of factor 10
LONGTAIL = {"head": [0, 1, 2], "medium": [3, 4, 5, 6], "tail": [7, 8, 9], "minority": [5, 6, 7, 8, 9]}


def _settings() -> dict:
    base = {"split": {"kind": "dirichlet", "alpha": 0.5, "min_size": 10, "max_retries": 100}}
    lt = {factor: {"imbalance": {"kind": "longtail", "factor": float(factor), "minority_fraction": 0.5,
                                 "shuffle_classes": False}, **base} for factor in (10, 100)}
    return {"lt10-dir0.5": lt[10], "lt100-dir0.5": lt[100],
            "lt100-dir0.5-lr0.01": {**lt[100], "step_of": "lt100-dir0.5", "federation": {"lr": 0.01},
                                    "seeds": list(SEEDS)},
            "lt100-dir0.5-lr0.05": {**lt[100], "step_of": "lt100-dir0.5", "federation": {"lr": 0.05},
                                    "seeds": list(SEEDS)}}


def config() -> dict:
    """config/full.yaml's 21 methods on the settings above, with its comparisons block filled from the schema."""
    from tests.test_reporting import with_comparisons

    methods = yaml.safe_load((ROOT / "config" / "full.yaml").read_text())["methods"]
    return with_comparisons({
        "experiment": "synthetic-21", "tracking_uri": "sqlite:///results/mlflow.db", "data_root": "data",
        "device": "cpu", "seeds": list(SEEDS), "datasets": ["fashion-mnist"], "settings": _settings(),
        "federation": {"clients": 10, "fraction": 1.0, "rounds": ROUNDS, "local_epochs": 2, "batch_size": 64,
                       "lr": 0.02, "momentum": 0.9, "weight_decay": 0.0, "eval_every": 1, "proxy_per_class": 50},
        "model": {"backbone": "cnn"}, "methods": methods})


def study() -> Study:
    return Study.from_config(config())


def draw_seed(name: str) -> int:
    return int(hashlib.sha256(name.encode()).hexdigest()[:8], 16)


def _level(method: str, setting: str, seed: int) -> float:
    """A method's final balanced accuracy: a fixed draw from its name, lower on the harder pool, seed noise."""
    draw = draw_seed(method) / 16**8
    pool = 0.82 if setting.startswith("lt10-") else 0.72
    noise = np.random.default_rng([seed, draw_seed(method), len(setting)]).normal(0, 0.012)
    return float(pool + 0.08 * (draw - 0.5) + (0.03 if method == "fedakd" else 0) + noise
                 + (0.1 if method == "centralised" else 0))


#: (setting, method, seed) -> (kind, round, step): the failed runs of the study
FAILURES = {("lt100-dir0.5", "fedakd", 1): ("collapsed", 6, "averaged"),
            ("lt100-dir0.5", "fedavg-ft", 2): ("diverged", 18, "server"),
            ("lt100-dir0.5-lr0.05", "fedakd", 3): ("collapsed", 2, "averaged")}


def _metrics(ba: float, per_class: np.ndarray) -> dict:
    return {"accuracy": ba + 0.04, "balanced_accuracy": ba, "macro_f1": ba - 0.03,
            "minority_recall": float(per_class[LONGTAIL["minority"]].mean()),
            "worst_class_recall": float(per_class.min()), "gmean": ba - 0.05, "nll": 1.6 - ba,
            "head_accuracy": float(per_class[LONGTAIL["head"]].mean()),
            "medium_accuracy": float(per_class[LONGTAIL["medium"]].mean()),
            "tail_accuracy": float(per_class[LONGTAIL["tail"]].mean()), "per_class_recall": per_class.tolist()}


def _per_class(ba: float) -> np.ndarray:
    tilt = np.linspace(0.12, -0.12, CLASSES)  # head classes above the mean, tail classes below
    return np.clip(ba + tilt, 0.0, 1.0)


def make_run(setting: str, method: str, seed: int, settings: dict, methods: dict, federation: dict) -> dict:
    level = _level(method, setting, seed)
    failure = FAILURES.get((setting, method, seed))
    lr = settings[setting].get("federation", {}).get("lr", federation["lr"])
    history = []
    for r in range(1, ROUNDS + 1):
        ba = level * (1 - math.exp(-r / 6)) + 0.1 * math.exp(-r / 6)
        if failure and r >= failure[1]:
            ba = 0.1
        per_class = _per_class(ba) if ba > 0.1 else np.eye(CLASSES)[0]
        history.append({"round": r, **_metrics(ba, per_class), "bytes_down": 10 * 177_000 * r,
                        "bytes_up": 10 * 177_000 * r, "train_loss": 1.0 / r})
    final = {k: v for k, v in history[-1].items() if k not in ("round", "bytes_down", "bytes_up", "train_loss")}
    kind = failure and {"collapsed": None, "diverged": None, failure[0]: {"round": failure[1], "step": failure[2]}}
    spec = methods[method]
    return {
        "job": {"dataset": "fashion-mnist", "setting": setting, "method": method, "method_class": spec["method"],
                "seed": seed},
        "setting": {k: settings[setting][k] for k in ("imbalance", "split")},
        "method_options": {k: v for k, v in spec.items() if k != "method"},
        "federation": {**federation, "lr": lr}, "model": {"backbone": "cnn", "num_params": 44_426},
        "num_classes": CLASSES, "class_counts": CLASS_COUNTS,
        "groups": LONGTAIL, "partition_sha256": hashlib.sha256(f"{setting[:12]}/{seed}".encode()).hexdigest(),
        "final": final, "best": {**final, "round": ROUNDS},
        "failure": kind or {"collapsed": None, "diverged": None}, "history": history,
        "cost": {"local_steps": 700 * ROUNDS, "server_steps": 100 * ROUNDS, "bytes_down": 10 * 177_000 * ROUNDS,
                 "bytes_up": 10 * 177_000 * ROUNDS, "rounds": ROUNDS, "clients_per_round": 10},
        "mlflow_run_id": f"run-{setting}-{method}-{seed}", "mlflow_experiment_id": "1", "git_commit": "abc123",
        "device": "cpu", "job_digest": f"digest-{setting}-{method}-{seed}", "reference": method == "centralised",
        "class_names": [str(c) for c in range(CLASSES)], "client_counters": {},
        "partition": {"num_examples": 23_000, "clients": 10, "transfer_set": 500, "validation_set": 0},
        "confusion_matrix": [[0] * CLASSES for _ in range(CLASSES)],
    }


def runs() -> list[dict]:
    conf = config()
    settings, methods = conf["settings"], conf["methods"]
    return [make_run(setting, method, seed, settings, methods, conf["federation"])
            for setting in settings for method in methods for seed in settings[setting].get("seeds", SEEDS)]


def manifests() -> list[dict]:
    found = []
    for setting in ("lt10-dir0.5", "lt100-dir0.5"):
        for seed in SEEDS[:1]:
            rows = [[c // 10 + (k < c % 10) for c in CLASS_COUNTS] for k in range(10)]
            found.append({"format_version": 1, "dataset": "fashion-mnist", "seed": seed,
                          "sha256": hashlib.sha256(f"{setting[:12]}/{seed}".encode()).hexdigest(),
                          "params": {"dataset": "fashion-mnist", "seed": seed, "clients": 10,
                                     **{k: _settings()[setting][k] for k in ("imbalance", "split")}},
                          "num_classes": CLASSES, "class_counts": CLASS_COUNTS, "client_class_counts": rows,
                          "client_sizes": [sum(r) for r in rows], "transfer_counts": [50] * CLASSES,
                          "groups": LONGTAIL})
    return found


def render(out: Path) -> tuple[list[Path], Path]:
    """Every figure and the report of the synthetic study, into ``out``."""
    from fedakd.reporting import collect, figures, report, tables

    the_runs, the_study = runs(), study()
    frame = collect.runs_frame(the_runs, the_study.final_window, the_study.target)
    built = tables.build_tables(frame, the_study)
    written = figures.make_figures(the_runs, manifests(), out / "figures", comparison=built["comparison"],
                                   study=the_study)
    path = report.write_report(the_runs, built, written, out / "report.md", config(), manifests(), the_study)
    return written, path


if __name__ == "__main__":
    written, path = render(Path(sys.argv[1]))
    print(f"{len(written)} figure files and {path}")
