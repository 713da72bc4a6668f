"""What every benchmark module shares: the data, the partitions, the sizes, the machine description."""

from __future__ import annotations

import fcntl
import itertools
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DATASET = "fashion-mnist"
BACKBONE = "cnn"
#: NIID-Bench's FedAvg setting (docs/method-card.md §7), local epochs and rounds set by each measurement.
NIID_FEDERATION = {"clients": 10, "fraction": 1.0, "batch_size": 64, "lr": 0.01, "momentum": 0.9,
                   "weight_decay": 0.0, "eval_every": 1, "proxy_per_class": 0, "validation_per_class": 0}
BALANCED = {"kind": "none"}
NIID_SPLIT = {"kind": "dirichlet", "alpha": 0.5}


class BenchError(RuntimeError):
    """The benchmark cannot run as asked (missing config, a failed subprocess)."""


def stage(message: str) -> None:
    """A progress line: the full benchmark takes many minutes."""
    print(f"bench: {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Sizes:
    """How much data each measurement uses; --quick shrinks everything to a smoke test of seconds."""

    train_examples: int | None  # None: the whole training split
    test_examples: int | None
    bare_examples: int  # one client's data for engine_vs_bare
    scaling_clients: tuple[int, ...]
    data_fractions: tuple[float, ...]
    proxy_per_class: int
    fedakd_options: dict[str, Any]  # over the schema defaults


FULL = Sizes(None, None, 12000, (10, 50, 100), (0.25, 0.5, 1.0), 50, {})
QUICK = Sizes(1000, 300, 1000, (10, 50, 100), (0.25, 0.5, 1.0), 10, {"distill_steps": 10})


def machine_info(threads: int) -> dict[str, Any]:
    from fedakd.machine import machine_info as info

    return info(threads)


@dataclass
class Data:
    x_train: Any
    y_train: Any
    x_test: Any
    y_test: Any
    num_classes: int

    def prefix(self, examples: int) -> "Data":
        """The first ``examples`` training examples (the IDX training split is already shuffled)."""
        return Data(self.x_train[:examples], self.y_train[:examples], self.x_test, self.y_test, self.num_classes)


def load_data(data_root: str, sizes: Sizes) -> Data:
    from fedakd.data import load_dataset

    dataset = load_dataset(DATASET, data_root)
    n_train = sizes.train_examples or len(dataset.y_train)
    n_test = sizes.test_examples or len(dataset.y_test)
    return Data(dataset.x_train[:n_train], dataset.y_train[:n_train], dataset.x_test[:n_test],
                dataset.y_test[:n_test], dataset.num_classes)


def make_split(data: Data, *, clients: int, split: dict, proxy_per_class: int, seed: int):
    """A balanced pool split over ``clients`` (the partition spec resolved as a config's would be)."""
    from fedakd.config import resolve_setting
    from fedakd.partition import make_partition
    from fedakd.config.spec import PartitionSpec

    setting = resolve_setting({"imbalance": BALANCED, "split": split})
    spec = PartitionSpec(dataset=DATASET, seed=seed, clients=clients, proxy_per_class=proxy_per_class,
                         validation_per_class=0, **setting)
    return make_partition(data.y_train.numpy(), data.num_classes, spec)


def default_options(method_name: str) -> dict[str, Any]:
    """A method's options with every schema default filled, as config validation would."""
    from fedakd.config import validate_method_options

    return validate_method_options(method_name, {})


def train_jobs(jobs, config: Path, out_root: Path, workers: int) -> int:
    """Train every job of ``jobs`` -- (out folder, overrides, method, setting, seed) -- whose metrics.json is
    missing, with ``fedakd train --no-track``, ``workers`` at a time, one torch thread each. A killed study
    resumes: finished jobs are skipped, interrupted ones resume from their checkpoint. Drivers may share folders:
    a job another driver holds (its lock) is skipped, so a second driver adds workers to a running study instead
    of duplicating its jobs."""
    todo = [job for job in jobs if not (job[0] / "metrics.json").exists()]
    stage(f"{len(todo)} jobs to train, {workers} at a time")
    failures = []

    def train(job):
        out, overrides, method, setting, seed = job
        out.mkdir(parents=True, exist_ok=True)
        with open(out / ".lock", "w") as lock:  # another driver on the same folder trains it: skip
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return
            if not (out / "metrics.json").exists():
                _train_one(out, overrides, method, setting, seed)

    def _train_one(out, overrides, method, setting, seed):
        command = [str(Path(sys.executable).with_name("fedakd")), "train", "--config", str(config), "--dataset",
                   DATASET, "--setting", setting, "--method", method, "--seed", str(seed), "--out", str(out),
                   "--no-track", "--threads", "1", *itertools.chain.from_iterable(("--set", o) for o in overrides)]
        with open(out / "train.log", "w") as log:
            done = subprocess.run(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        stage(f"{'done' if done.returncode == 0 else 'FAILED'}: {out.relative_to(out_root)}")
        if done.returncode != 0:
            failures.append(out)

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(train, todo))
    for out in failures:
        print(f"failed: {out} (see its train.log)", file=sys.stderr)
    return 1 if failures else 0


def publish(lines: list[str], name: str) -> int:
    """Print a study's Markdown tables and write them to reports/{name}.md (generated, never committed)."""
    from fedakd.io import atomic_write_text

    text = "\n".join(lines) + "\n"
    print(text)
    atomic_write_text(ROOT / "reports" / f"{name}.md", text)
    return 0


def study_main(doc: str, run, table, argv=None) -> int:
    """The command line of a study driver: ``run`` (train the missing jobs, --workers at a time) or ``table``."""
    import argparse

    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("action", choices=("run", "table"))
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    return run(args.workers) if args.action == "run" else table()
