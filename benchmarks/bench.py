"""Performance benchmark of the engine (`make bench`): one run measures, on this machine,

- engine_vs_bare: RoundContext.local_sgd's throughput over a bare PyTorch loop on the same tensors
  (the engine's overhead per step; 1.0 = none);
- speedup_vs_reference: seconds per FedAvg round of benchmarks/reference.py (the common per-sample /
  deepcopy / per-key style) over the engine's, in NIID-Bench's setting, with both accuracies;
- startup_seconds and peak_rss_mb of a `fedakd train` job launched as a subprocess;
- scaling: seconds per round against the number of clients and the amount of data;
- fedakd_overhead: seconds per round of fedakd and fedavg-smote over fedavg;
- pipeline_seconds (only with --pipeline): the default Snakemake pipeline's wall time.

Figures are medians of several repeats after a warm-up. The table is printed and, with every
detail, written atomically to results/bench/summary.json.
"""

from __future__ import annotations

import argparse
import copy
import gzip
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script (`python benchmarks/bench.py`): make `benchmarks` importable
    sys.path.insert(0, str(ROOT))

from fedakd.io import atomic_write_json  # noqa: E402

DATASET = "fashion-mnist"
BACKBONE = "cnn"
FORMAT_VERSION = 1
#: NIID-Bench's FedAvg setting (METHOD.md §6), local epochs configurable.
NIID_FEDERATION = {"clients": 10, "fraction": 1.0, "batch_size": 64, "lr": 0.01, "momentum": 0.9,
                   "weight_decay": 0.0, "eval_every": 1, "proxy_per_class": 0}
BALANCED = {"kind": "none"}
NIID_SPLIT = {"kind": "dirichlet", "alpha": 0.5}


class BenchError(RuntimeError):
    """The benchmark cannot run as asked (missing config, a failed subprocess)."""


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


# -- machine and data -----------------------------------------------------------------------
def machine_info(threads: int) -> dict[str, Any]:
    import torch

    cpu_model = "unknown"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    return {"cpu_model": cpu_model, "cores": os.cpu_count(), "torch": torch.__version__, "torch_threads": threads,
            "python": platform.python_version(), "platform": platform.platform()}


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
    from fedakd.partition import make_partition

    return make_partition(data.y_train.numpy(), data.num_classes, imbalance=BALANCED, split=split,
                          clients=clients, proxy_per_class=proxy_per_class, seed=seed, dataset=DATASET)


def default_options(method_name: str) -> dict[str, Any]:
    """A method's options with every schema default filled, as config validation would."""
    from fedakd.registry import get_method

    schema = get_method(method_name).options_schema
    return {name: spec["default"] for name, spec in schema.items() if "default" in spec}


# -- engine_vs_bare -------------------------------------------------------------------------
def _timed(fn: Callable[[], Any]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def bare_epoch(model, x, y, *, batch_size: int, lr: float, momentum: float, generator) -> None:
    """What the engine's local step does, written directly: randperm, index, forward, CE, backward, SGD step."""
    import torch
    import torch.nn.functional as F

    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    model.train()
    order = torch.randperm(x.shape[0], generator=generator)
    for start in range(0, x.shape[0], batch_size):
        idx = order[start : start + batch_size]
        loss = F.cross_entropy(model(x[idx]), y[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()


def bench_engine_vs_bare(data: Data, *, examples: int, repeats: int, seed: int) -> dict[str, Any]:
    """One client's epoch through RoundContext.local_sgd against bare_epoch, interleaved, after a warm-up each."""
    import torch

    from fedakd.engine import ClientData, RoundContext, flatten_parameters
    from fedakd.models import build_model

    x, y = data.x_train[:examples], data.y_train[:examples]
    federation = {**NIID_FEDERATION, "local_epochs": 1}
    def build():
        return build_model(BACKBONE, in_shape=tuple(x.shape[1:]), num_classes=data.num_classes)

    torch.manual_seed(seed)
    engine_model, spare = build(), build()
    bare_model = copy.deepcopy(engine_model)
    initial_state = copy.deepcopy(bare_model.state_dict())
    flat, spare_flat = flatten_parameters(engine_model), flatten_parameters(spare)
    ctx = RoundContext(round=1, seed=seed, federation=federation, device=torch.device("cpu"), model=engine_model,
                       flat=flat, spare=spare, spare_flat=spare_flat, global_weights=flat.clone(),
                       num_classes=data.num_classes)
    client = ClientData(0, x, y, len(y), torch.bincount(y, minlength=data.num_classes))
    generator = torch.Generator().manual_seed(seed)

    def engine_run() -> float:
        ctx.train_loss.clear()
        return _timed(lambda: ctx.local_sgd(client))

    def bare_run() -> float:
        bare_model.load_state_dict(initial_state)  # like the engine, start each epoch from the same weights
        return _timed(lambda: bare_epoch(bare_model, x, y, batch_size=federation["batch_size"],
                                         lr=federation["lr"], momentum=federation["momentum"], generator=generator))

    engine_run(), bare_run()  # warm-up
    engine_seconds, bare_seconds = [], []
    for repeat in range(repeats):  # alternate which goes first, so drift in machine load hits both alike
        first, second = (engine_run, bare_run) if repeat % 2 == 0 else (bare_run, engine_run)
        a, b = first(), second()
        engine_seconds.append(a if first is engine_run else b)
        bare_seconds.append(b if first is engine_run else a)
    engine_rate = len(y) / statistics.median(engine_seconds)
    bare_rate = len(y) / statistics.median(bare_seconds)
    return {"ratio": engine_rate / bare_rate, "engine_samples_per_second": engine_rate,
            "bare_samples_per_second": bare_rate, "examples": len(y), "batch_size": federation["batch_size"],
            "engine_seconds": engine_seconds, "bare_seconds": bare_seconds}


# -- in-process federations -----------------------------------------------------------------
def time_federation(method_name: str, data: Data, partition, federation: dict[str, Any], *, warmup_rounds: int,
                    seed: int, options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run the engine; median seconds per round after ``warmup_rounds``, accuracy after every round."""
    import torch

    from fedakd.engine import run_federation
    from fedakd.registry import get_method

    method = get_method(method_name)(options if options is not None else {})
    first_round_done: list[float] = []
    started = time.perf_counter()
    result = run_federation(
        method, x_train=data.x_train, y_train=data.y_train, x_test=data.x_test, y_test=data.y_test,
        client_indices=partition.client_indices, proxy_indices=partition.proxy_indices,
        num_classes=data.num_classes, groups=partition.groups, federation=federation, backbone=BACKBONE,
        seed=seed, device=torch.device("cpu"),
        on_round=lambda record, timing: first_round_done or first_round_done.append(time.perf_counter()),
    )
    round_seconds = [t["client_seconds"] + t["server_seconds"] + t["eval_seconds"] for t in result.timings]
    client_seconds = [t["client_seconds"] for t in result.timings]
    timed = round_seconds[warmup_rounds:]
    return {
        "seconds_per_round": statistics.median(timed),
        "client_seconds_per_round": statistics.median(client_seconds[warmup_rounds:]),
        "round_seconds": round_seconds,
        # before the first round: building the model, moving client data, prepare_client_data (SMOTE)
        "setup_seconds": first_round_done[0] - started - round_seconds[0],
        "accuracy": [record["accuracy"] for record in result.history],
    }


def warm_up(data: Data, *, seed: int) -> None:
    """One tiny federation before anything is timed: lazy imports (metrics: scikit-learn, imbalanced-learn)
    and first-call kernel set-up would otherwise land in the first timed round."""
    subset = data.prefix(200)
    partition = make_split(subset, clients=2, split={"kind": "iid"}, proxy_per_class=0, seed=seed)
    time_federation("fedavg", subset, partition, {**NIID_FEDERATION, "clients": 2, "local_epochs": 1, "rounds": 1},
                    warmup_rounds=0, seed=seed)


def bench_scaling(data: Data, sizes: Sizes, *, repeats: int, seed: int) -> dict[str, Any]:
    """Seconds per FedAvg round (E = 1, IID split) against clients (all data) and data (10 clients)."""
    federation = {**NIID_FEDERATION, "local_epochs": 1, "rounds": 1 + repeats}
    runs: dict[tuple[int, float], dict[str, Any]] = {}
    shapes = {(k, 1.0) for k in sizes.scaling_clients} | {(10, f) for f in sizes.data_fractions}
    for clients, fraction in sorted(shapes):
        subset = data.prefix(round(fraction * len(data.y_train)))
        partition = make_split(subset, clients=clients, split={"kind": "iid"}, proxy_per_class=0, seed=seed)
        runs[clients, fraction] = time_federation("fedavg", subset, partition, {**federation, "clients": clients},
                                                  warmup_rounds=1, seed=seed)
    by_clients = {str(k): runs[k, 1.0]["seconds_per_round"] for k in sizes.scaling_clients}
    by_fraction = {str(f): runs[10, f]["seconds_per_round"] for f in sizes.data_fractions}
    most_clients, fewest_clients = max(sizes.scaling_clients), min(sizes.scaling_clients)
    largest, smallest = max(sizes.data_fractions), min(sizes.data_fractions)
    return {
        "seconds_per_round": {"by_clients": by_clients, "by_data_fraction": by_fraction},
        "client_seconds_per_round": {f"{k}_clients_{round(100 * f)}pct": run["client_seconds_per_round"]
                                     for (k, f), run in sorted(runs.items())},
        f"clients_{most_clients}_over_{fewest_clients}":
            by_clients[str(most_clients)] / by_clients[str(fewest_clients)],
        f"data_{round(100 * largest)}_over_{round(100 * smallest)}":
            by_fraction[str(largest)] / by_fraction[str(smallest)],
        "split": "iid", "local_epochs": 1, "examples": len(data.y_train),
    }


def bench_method_overhead(data: Data, sizes: Sizes, *, repeats: int, seed: int) -> dict[str, Any]:
    """Seconds per round of fedakd (default options) and fedavg-smote over fedavg on one partition (E = 1)."""
    federation = {**NIID_FEDERATION, "local_epochs": 1, "rounds": 1 + repeats,
                  "proxy_per_class": sizes.proxy_per_class}
    partition = make_split(data, clients=federation["clients"], split=NIID_SPLIT,
                           proxy_per_class=sizes.proxy_per_class, seed=seed)
    options = {"fedavg": {}, "fedakd": {**default_options("fedakd"), **sizes.fedakd_options},
               "fedavg-smote": default_options("fedavg-smote")}
    runs = {name: time_federation(name, data, partition, federation, warmup_rounds=1, seed=seed,
                                  options=options[name])
            for name in options}
    fedavg = runs["fedavg"]["seconds_per_round"]
    return {
        "fedakd_over_fedavg": runs["fedakd"]["seconds_per_round"] / fedavg,
        "fedavg-smote_over_fedavg": runs["fedavg-smote"]["seconds_per_round"] / fedavg,
        "seconds_per_round": {name: run["seconds_per_round"] for name, run in runs.items()},
        "setup_seconds": {name: run["setup_seconds"] for name, run in runs.items()},
        "fedakd_options": options["fedakd"], "proxy_per_class": sizes.proxy_per_class,
        "split": NIID_SPLIT, "local_epochs": 1, "partition_sha256": partition.sha256,
    }


# -- speedup_vs_reference -------------------------------------------------------------------
def torchvision_root(data_root: str, into: Path) -> Path:
    """A root with FashionMNIST/raw/ holding the decompressed IDX files torchvision's class reads."""
    from fedakd.data import ensure_dataset

    found = ensure_dataset(DATASET, data_root, download=False)
    raw = into / "FashionMNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for name in found["files"]:
        source = Path(found["source"]) / name
        opener = gzip.open if name.endswith(".gz") else open
        with opener(source, "rb") as src, open(raw / name.removesuffix(".gz"), "wb") as dst:
            shutil.copyfileobj(src, dst)
    return into


def bench_reference(data: Data, sizes: Sizes, *, data_root: str, rounds: int, local_epochs: int,
                    seed: int) -> dict[str, Any]:
    """FedAvg rounds of benchmarks/reference.py and of the engine: same partition, initial weights, settings."""
    import torch
    from torch.utils.data import Subset

    from benchmarks.reference import fashion_mnist, run_reference
    from fedakd.data import dataset_spec
    from fedakd.engine import STREAM_INIT, derive_seed
    from fedakd.models import build_model

    federation = {**NIID_FEDERATION, "local_epochs": local_epochs, "rounds": rounds}
    partition = make_split(data, clients=federation["clients"], split=NIID_SPLIT, proxy_per_class=0, seed=seed)
    engine = time_federation("fedavg", data, partition, federation, warmup_rounds=0, seed=seed)

    spec = dataset_spec(DATASET)
    with tempfile.TemporaryDirectory(prefix="fedakd-bench-") as tmp:
        root = str(torchvision_root(data_root, Path(tmp)))
        train_set = fashion_mnist(root, True, spec.mean[0], spec.std[0])
        test_set = fashion_mnist(root, False, spec.mean[0], spec.std[0])
        test_set = Subset(test_set, range(len(data.y_test)))  # the engine's test set: a prefix in --quick
        torch.manual_seed(derive_seed(seed, STREAM_INIT))  # the engine's initial weights
        model = build_model(BACKBONE, in_shape=tuple(data.x_train.shape[1:]), num_classes=data.num_classes)
        reference = run_reference(model, train_set, test_set, partition.client_indices, rounds=rounds,
                                  local_epochs=local_epochs, batch_size=federation["batch_size"],
                                  lr=federation["lr"], momentum=federation["momentum"],
                                  weight_decay=federation["weight_decay"])
    reference_seconds = statistics.median(reference.round_seconds)
    return {
        "speedup": reference_seconds / engine["seconds_per_round"],
        "engine_seconds_per_round": engine["seconds_per_round"], "reference_seconds_per_round": reference_seconds,
        "engine_round_seconds": engine["round_seconds"], "reference_round_seconds": reference.round_seconds,
        "engine_accuracy": engine["accuracy"], "reference_accuracy": reference.test_accuracy,
        "accuracy_gap_points": 100 * abs(engine["accuracy"][-1] - reference.test_accuracy[-1]),
        "federation": federation, "split": NIID_SPLIT, "examples": len(data.y_train),
        "partition_sha256": partition.sha256,
    }


# -- subprocesses ---------------------------------------------------------------------------
def _absolute_data_root(config: dict) -> str:
    data_root = Path(config["data_root"])
    return str(data_root if data_root.is_absolute() else ROOT / data_root)


def startup_job(quick: bool) -> tuple[Path, list[str]]:
    """The config of the timed training job and the overrides that make it the default job."""
    default = ROOT / "config" / "config.yaml"
    if default.exists() and not quick:
        return default, []
    smoke = ROOT / "config" / "smoke.yaml"
    return smoke, ([] if quick else [f"datasets=[{DATASET}]"])  # --quick keeps digits: seconds, not minutes


#: Runs the job as its own child and reports the job's ru_maxrss. A child started directly from this
#: (large) process would not do: on Linux, exec records the replaced memory's high-water mark, so a
#: vfork()ed child inherits this process's peak. The probe also sets FEDAKD_BENCH_T0 just before
#: the launch, so its own start-up is not counted.
RSS_PROBE = """\
import os, subprocess, sys, time
env = {**os.environ, "FEDAKD_BENCH_T0": repr(time.time())}
process = subprocess.Popen(sys.argv[1:], env=env)
_, status, usage = os.wait4(process.pid, 0)
print(f"FEDAKD_BENCH_MAXRSS={usage.ru_maxrss}", file=sys.stderr, flush=True)
sys.exit(os.waitstatus_to_exitcode(status))
"""
MAXRSS_UNIT = 1 if sys.platform == "darwin" else 1024  # ru_maxrss is in bytes on macOS, KiB on Linux


def _marked_value(output: str, mark: str, missing: str) -> float:
    values = [line[len(mark):] for line in output.splitlines() if line.startswith(mark)]
    if not values:
        raise BenchError(f"the job's output has no {mark} line: {missing}; its output:\n{output}")
    return float(values[0])


def launch_train_job(config_path: Path, overrides: list[str], *, threads: int, workdir: Path,
                     experiment_id: str | None) -> dict[str, Any]:
    """One `fedakd train` job (1 round) as a subprocess: its start-up seconds and its peak resident set."""
    from fedakd.config import load_config
    from fedakd.io import read_json

    config = load_config(config_path, overrides)
    method = "fedakd" if "fedakd" in config["methods"] else next(iter(config["methods"]))
    out = Path(tempfile.mkdtemp(prefix="job-", dir=workdir))
    command = [sys.executable, "-m", "fedakd.cli", "train", "--config", str(config_path),
               "--dataset", config["datasets"][0], "--setting", next(iter(config["settings"])), "--method", method,
               "--seed", str(config["seeds"][0]), "--out", str(out / "run"), "--threads", str(threads)]
    if experiment_id is not None:
        command += ["--experiment-id", experiment_id]
    for override in [*overrides, "federation.rounds=1", f"tracking_uri=sqlite:///{workdir / 'mlflow.db'}",
                     f"data_root={_absolute_data_root(config)}"]:
        command += ["--set", override]
    log_path = out / "job.log"
    with open(log_path, "wb") as log:
        completed = subprocess.run([sys.executable, "-S", "-c", RSS_PROBE, *command], cwd=workdir, stdout=log,
                                   stderr=subprocess.STDOUT)
    output = log_path.read_text(errors="replace")
    if completed.returncode != 0:
        raise BenchError(f"`{' '.join(command)}` failed with exit status {completed.returncode}; its output:\n{output}")
    metrics = read_json(out / "run" / "metrics.json", "the training job's metrics file")
    startup = _marked_value(output, "FEDAKD_STARTUP_SECONDS=",
                            "does fedakd.engine still call _report_startup() before the first round?")
    peak_rss_mb = _marked_value(output, "FEDAKD_BENCH_MAXRSS=", "RSS_PROBE did not run") * MAXRSS_UNIT / 2**20
    return {"startup_seconds": startup, "peak_rss_mb": peak_rss_mb,
            "method": method, "experiment_id_given": experiment_id is not None,
            "experiment_id": metrics["mlflow_experiment_id"]}


def bench_startup(*, quick: bool, threads: int, repeats: int) -> dict[str, Any]:
    """Median start-up of ``repeats`` launches given the experiment id, as the pipeline launches its jobs.

    The first launch creates the MLflow store and experiment (the pipeline does that once, before any
    job) and warms the file cache; it is reported apart. --quick times only that first launch.
    """
    config_path, overrides = startup_job(quick)
    with tempfile.TemporaryDirectory(prefix="fedakd-bench-") as tmp:
        first = launch_train_job(config_path, overrides, threads=threads, workdir=Path(tmp), experiment_id=None)
        launches = [first] if quick else [
            launch_train_job(config_path, overrides, threads=threads, workdir=Path(tmp),
                             experiment_id=first["experiment_id"])
            for _ in range(repeats)
        ]
    return {
        "startup_seconds": statistics.median(run["startup_seconds"] for run in launches),
        "first_launch_startup_seconds": first["startup_seconds"],
        "peak_rss_mb": max(run["peak_rss_mb"] for run in [first, *launches]),
        "launches": launches,
        "config": str(config_path.relative_to(ROOT)), "overrides": [*overrides, "federation.rounds=1"],
        "rss_source": "ru_maxrss of the job process, from os.wait4 in a small parent (largest over the launches)",
    }


def bench_pipeline(*, cores: int) -> float:
    """Wall seconds of the default pipeline, from nothing, in a temporary working directory."""
    config = ROOT / "config" / "config.yaml"
    if not config.exists():
        raise BenchError(f"--pipeline needs {config}, which does not exist; write it or drop --pipeline")
    snakemake = Path(sys.executable).with_name("snakemake")
    with tempfile.TemporaryDirectory(prefix="fedakd-bench-pipeline-") as tmp:
        command = [str(snakemake if snakemake.exists() else "snakemake"), "--snakefile", str(ROOT / "Snakefile"),
                   "--profile", str(ROOT / "workflow" / "profiles" / "default"), "--configfile", str(config),
                   "--directory", tmp, "--cores", str(cores)]
        started = time.perf_counter()
        completed = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
        seconds = time.perf_counter() - started
    if completed.returncode != 0:
        raise BenchError(f"the pipeline failed (exit status {completed.returncode}):\n{completed.stderr[-4000:]}")
    return seconds


# -- report ---------------------------------------------------------------------------------
def format_table(summary: dict[str, Any]) -> str:
    from tabulate import tabulate

    m, details = summary["machine"], summary["details"]
    ref, bare = details["speedup_vs_reference"], details["engine_vs_bare"]
    scaling, overhead = summary["scaling"], summary["fedakd_overhead"]
    by_clients = scaling["seconds_per_round"]["by_clients"]
    by_fraction = scaling["seconds_per_round"]["by_data_fraction"]
    e = ref["federation"]["local_epochs"]
    rows = [
        ("engine_vs_bare", f"{summary['engine_vs_bare']:.3f}",
         f"{bare['engine_samples_per_second']:.0f} vs {bare['bare_samples_per_second']:.0f} samples/s "
         f"({bare['examples']} examples, batch {bare['batch_size']})"),
        ("speedup_vs_reference", f"{summary['speedup_vs_reference']:.2f}x",
         f"{ref['reference_seconds_per_round']:.1f} s vs {ref['engine_seconds_per_round']:.1f} s per round (E={e}); "
         f"test accuracy reference {ref['reference_accuracy'][-1]:.4f}, engine {ref['engine_accuracy'][-1]:.4f} "
         f"after {len(ref['engine_accuracy'])} round(s)"),
        ("startup_seconds", f"{summary['startup_seconds']:.2f}",
         f"{details['startup']['config']}, launch to first local step (first launch, creating the MLflow store: "
         f"{details['startup']['first_launch_startup_seconds']:.2f} s)"),
        ("peak_rss_mb", f"{summary['peak_rss_mb']:.0f}", details["startup"]["rss_source"]),
        ("scaling (clients)", ", ".join(f"{k}: {s:.2f} s" for k, s in by_clients.items()),
         "; ".join(f"{key} = {value:.2f}" for key, value in scaling.items() if "_over_" in key)),
        ("scaling (data)", ", ".join(f"{float(f):.0%}: {s:.2f} s" for f, s in by_fraction.items()), "10 clients, E=1"),
        ("fedakd_overhead", f"{overhead['fedakd_over_fedavg']:.2f}x",
         f"fedavg-smote {overhead['fedavg-smote_over_fedavg']:.2f}x; per round "
         + ", ".join(f"{k} {s:.2f} s" for k, s in overhead["seconds_per_round"].items())),
        ("pipeline_seconds", "-" if summary["pipeline_seconds"] is None else f"{summary['pipeline_seconds']:.0f}",
         "with --pipeline only"),
    ]
    header = (f"{m['cpu_model']}, {m['cores']} cores, torch {m['torch']} ({m['torch_threads']} threads), "
              f"Python {m['python']}{' [--quick]' if summary['quick'] else ''}")
    return header + "\n" + tabulate(rows, headers=("measure", "value", "detail"))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a tiny smoke version (seconds; used by the tests)")
    parser.add_argument("--pipeline", action="store_true", help="also time the default Snakemake pipeline")
    parser.add_argument("--repeats", type=int, help="timed repeats per measure (default 3; 1 with --quick)")
    parser.add_argument("--local-epochs", type=int, help="E for speedup_vs_reference (default 10; 1 with --quick)")
    parser.add_argument("--reference-rounds", type=int, default=2, help="rounds timed for speedup_vs_reference")
    parser.add_argument("--threads", type=int, default=2, help="torch threads, in-process and for the job")
    parser.add_argument("--data-root", default="data", help="where to look for Fashion-MNIST first")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("results/bench/summary.json"))
    args = parser.parse_args(argv)
    if args.repeats is None:
        args.repeats = 1 if args.quick else 3
    if args.local_epochs is None:
        args.local_epochs = 1 if args.quick else 10
    for name in ("repeats", "local_epochs", "reference_rounds", "threads"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    return args


def main(argv: list[str] | None = None) -> int:
    from fedakd.config import ConfigError
    from fedakd.data import DataError

    args = parse_args(argv)
    try:
        run(args)
    except (BenchError, ConfigError, DataError) as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        return 2
    return 0


def _stage(message: str) -> None:
    """A progress line: the full benchmark takes many minutes."""
    print(f"bench: {message}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(args.threads)
    sizes = QUICK if args.quick else FULL
    _stage("loading Fashion-MNIST and warming up")
    data = load_data(args.data_root, sizes)
    warm_up(data, seed=args.seed)
    _stage("engine_vs_bare")
    bare = bench_engine_vs_bare(data, examples=sizes.bare_examples, repeats=args.repeats, seed=args.seed)
    _stage(f"speedup_vs_reference ({args.reference_rounds} rounds of E={args.local_epochs}, engine then reference)")
    reference = bench_reference(data, sizes, data_root=args.data_root, rounds=args.reference_rounds,
                                local_epochs=args.local_epochs, seed=args.seed)
    _stage("scaling")
    scaling = bench_scaling(data, sizes, repeats=args.repeats, seed=args.seed)
    _stage("fedakd_overhead")
    overhead = bench_method_overhead(data, sizes, repeats=args.repeats, seed=args.seed)
    _stage("startup_seconds and peak_rss_mb (`fedakd train` subprocesses)")
    startup = bench_startup(quick=args.quick, threads=args.threads, repeats=args.repeats)
    pipeline_seconds = None
    if args.pipeline:
        _stage("pipeline_seconds (the default Snakemake pipeline)")
        pipeline_seconds = bench_pipeline(cores=os.cpu_count() or 1)
    summary = {
        "format_version": FORMAT_VERSION, "quick": args.quick, "machine": machine_info(args.threads),
        "repeats": args.repeats, "seed": args.seed,
        "engine_vs_bare": bare["ratio"],
        "speedup_vs_reference": reference["speedup"],
        "startup_seconds": startup["startup_seconds"],
        "peak_rss_mb": startup["peak_rss_mb"],
        "scaling": scaling,
        "fedakd_overhead": overhead,
        "pipeline_seconds": pipeline_seconds,
        "details": {"engine_vs_bare": bare, "speedup_vs_reference": reference, "startup": startup},
    }
    atomic_write_json(args.out, summary)
    print(format_table(summary))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    sys.exit(main())
