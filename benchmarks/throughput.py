"""In-process throughput: the engine's local step against a bare PyTorch loop, seconds per round
against clients and data, and each method's round against FedAvg's."""

from __future__ import annotations

import copy
import statistics
import time
from typing import Any, Callable

from benchmarks.common import BACKBONE, NIID_FEDERATION, NIID_SPLIT, Data, Sizes, default_options, make_split


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

    from fedakd.engine import ClientData, Federation, RoundContext, flatten_parameters
    from fedakd.models import build_model

    x, y = data.x_train[:examples], data.y_train[:examples]
    federation = {**NIID_FEDERATION, "local_epochs": 1, "rounds": 1}

    def build():
        return build_model(BACKBONE, in_shape=tuple(x.shape[1:]), num_classes=data.num_classes)

    torch.manual_seed(seed)
    engine_model, spare = build(), build()
    bare_model = copy.deepcopy(engine_model)
    initial_state = copy.deepcopy(bare_model.state_dict())
    flat, spare_flat = flatten_parameters(engine_model), flatten_parameters(spare)
    ctx = RoundContext(round=1, seed=seed, federation=Federation.from_mapping(federation), device=torch.device("cpu"),
                       model=engine_model, flat=flat, spare=spare, spare_flat=spare_flat, global_weights=flat.clone(),
                       num_classes=data.num_classes)
    client = ClientData(0, x, y, len(y), torch.bincount(y, minlength=data.num_classes))
    generator = torch.Generator().manual_seed(seed)

    def engine_run() -> float:
        ctx.tally.losses.clear()
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


def time_federation(method_name: str, data: Data, partition, federation: dict[str, Any], *, warmup_rounds: int,
                    seed: int, options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run the engine; median seconds per round after ``warmup_rounds``, accuracy after every round."""
    import torch

    from fedakd.engine import Callback, FederatedData, RunSetup, run_federation
    from fedakd.registry import get_method

    class FirstRound(Callback):
        done: float | None = None

        def on_round_end(self, record, timing):
            self.done = self.done or time.perf_counter()

    method = get_method(method_name)(options if options is not None else default_options(method_name))
    first_round = FirstRound()
    started = time.perf_counter()
    federated = FederatedData.from_indices(
        data.x_train, data.y_train, data.x_test, data.y_test, client_indices=partition.client_indices,
        num_classes=data.num_classes, groups=partition.groups, device=torch.device("cpu"),
        transfer_indices=partition.transfer_indices)
    result = run_federation(method, federated, RunSetup(federation, BACKBONE, seed, torch.device("cpu")),
                            callbacks=[first_round])
    round_seconds = [t["client_seconds"] + t["server_seconds"] + t["eval_seconds"] for t in result.timings]
    client_seconds = [t["client_seconds"] for t in result.timings]
    return {
        "seconds_per_round": statistics.median(round_seconds[warmup_rounds:]),
        "client_seconds_per_round": statistics.median(client_seconds[warmup_rounds:]),
        "round_seconds": round_seconds,
        # before the first round: moving client data, building the model, prepare_clients (SMOTE)
        "setup_seconds": first_round.done - started - round_seconds[0],
        "accuracy": [record["accuracy"] for record in result.history],
        "local_steps": result.totals.local_steps, "server_steps": result.totals.server_steps,
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


#: The methods whose cost per round is compared with FedAvg's (their default options; fedakd's and the
#: server-side methods' may be shrunk by --quick).
OVERHEAD_METHODS = ("fedavg", "fedakd", "fedavg-smote")


def bench_method_overhead(data: Data, sizes: Sizes, *, repeats: int, seed: int,
                          methods: tuple[str, ...] = OVERHEAD_METHODS) -> dict[str, Any]:
    """Seconds per round of each method (default options) over fedavg's, on one partition (E = 1)."""
    federation = {**NIID_FEDERATION, "local_epochs": 1, "rounds": 1 + repeats,
                  "proxy_per_class": sizes.proxy_per_class}
    partition = make_split(data, clients=federation["clients"], split=NIID_SPLIT,
                           proxy_per_class=sizes.proxy_per_class, seed=seed)
    options = {name: {**default_options(name), **(sizes.fedakd_options if name == "fedakd" else {})}
               for name in ("fedavg", *methods)}
    runs = {name: time_federation(name, data, partition, federation, warmup_rounds=1, seed=seed,
                                  options=options[name])
            for name in options}
    fedavg = runs["fedavg"]["seconds_per_round"]
    return {
        **{f"{name}_over_fedavg": run["seconds_per_round"] / fedavg for name, run in runs.items() if name != "fedavg"},
        "seconds_per_round": {name: run["seconds_per_round"] for name, run in runs.items()},
        "setup_seconds": {name: run["setup_seconds"] for name, run in runs.items()},
        "local_steps": {name: run["local_steps"] for name, run in runs.items()},
        "server_steps": {name: run["server_steps"] for name, run in runs.items()},
        "fedakd_options": options.get("fedakd"), "proxy_per_class": sizes.proxy_per_class,
        "split": NIID_SPLIT, "local_epochs": 1, "partition_sha256": partition.sha256,
    }
