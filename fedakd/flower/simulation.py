"""A benchmarked job on Flower's Simulation Runtime (``run_simulation``, Ray): one virtual SuperNode per client
of the partition, each reading only its own client's examples."""

from __future__ import annotations

from fedakd.flower.settings import FlowerJob


def simulate(jobs: list[FlowerJob], *, clients: int, verbose: bool = False) -> list[dict]:
    """Run ``jobs``, one after the other, in one simulation of ``clients`` virtual SuperNodes (one CPU each: Ray
    starts once); return their metrics.json."""
    import logging

    from flwr.simulation import run_simulation

    from fedakd.flower.client import make_client_app
    from fedakd.flower.server import make_server_app
    from fedakd.io import read_json
    from fedakd.layout import METRICS_FILE

    logging.getLogger("flwr").setLevel(logging.INFO if verbose else logging.WARNING)
    run_simulation(server_app=make_server_app(jobs), client_app=make_client_app(), num_supernodes=clients,
                   backend_config={"client_resources": {"num_cpus": 1, "num_gpus": 0.0},
                                   "init_args": {"num_cpus": 1, "include_dashboard": False}},
                   verbose_logging=verbose)
    return [read_json(f"{job.out}/{METRICS_FILE}", "metrics file") for job in jobs]
