"""``fedakd flower simulate | shard | app``: a benchmarked job on Flower.

- ``simulate``: the job on Flower's Simulation Runtime, one virtual SuperNode per client; the run folder and the
  MLflow run are the engine's, tagged ``engine: flower``.
- ``shard``: one client's examples (and nothing else) in a file, for the SuperNode that holds that client.
- ``app``: a Flower App directory for ``flwr run DIR <superlink>``; the job is its run_config.
"""

from __future__ import annotations

import argparse
from pathlib import Path

APP_PYPROJECT = """\
# A Flower App that runs one job of the fedakd-bench suite (written by `fedakd flower app`).
#   flwr run {directory} <superlink-connection> --run-config "config='...' dataset='...' ..."
# Every SuperNode and the SuperLink need the fedakd-bench package installed (pip install "fedakd-bench[flower]").
[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[project]
name = "fedakd-flower"
version = "1.0.0"
description = "A fedakd-bench job as a Flower App"
dependencies = []

[tool.hatch.build.targets.wheel]
packages = ["."]

[tool.flwr.app]
publisher = "fedakd-bench"

[tool.flwr.app.components]
serverapp = "fedakd.flower.app:server_app"
clientapp = "fedakd.flower.app:client_app"

[tool.flwr.app.config]
{config}
"""


def add_arguments(commands, add_job_arguments) -> None:
    """The ``flower`` command and its three subcommands, on the main parser's subcommands; ``add_job_arguments``
    is the command line's own (--config, --dataset, --setting, [--method,] --seed, --out, --set)."""
    flower = commands.add_parser("flower", help="a benchmarked job on Flower (pip install '.[flower]')")
    actions = flower.add_subparsers(dest="flower_command", required=True)
    simulate = actions.add_parser("simulate", help="the job on Flower's Simulation Runtime")
    add_job_arguments(simulate, method=True)
    simulate.add_argument("--partition", required=True, help="folder written by `fedakd partition`")
    simulate.add_argument("--no-track", action="store_true", help="do not log the run to MLflow")
    shard = actions.add_parser("shard", help="one client's data, for the SuperNode that holds it")
    add_job_arguments(shard, method=False)
    shard.add_argument("--partition", required=True, help="folder written by `fedakd partition`")
    shard.add_argument("--client", required=True, type=int, help="the client's index in the partition")
    app = actions.add_parser("app", help="a Flower App directory for `flwr run`")
    add_job_arguments(app, method=True)
    app.add_argument("--partition", required=True, help="folder written by `fedakd partition` (server side)")
    app.add_argument("--run-folder", required=True, help="where the ServerApp writes the run's results")


def flower_job(args: argparse.Namespace, out: str):
    from fedakd.flower.settings import OVERRIDE_SEPARATOR, FlowerJob

    return FlowerJob(config=str(Path(args.config).resolve()), dataset=args.dataset, setting=args.setting,
                     method=args.method, seed=args.seed, partition=str(Path(args.partition).resolve()),
                     out=str(Path(out).resolve()), overrides=OVERRIDE_SEPARATOR.join(args.overrides),
                     track=not getattr(args, "no_track", False))


def write_shard(args: argparse.Namespace) -> Path:
    """The client's examples, labels, index and partition hash, in one file (torch.save, tensors only)."""
    import torch

    from fedakd.config import load_config, partition_spec
    from fedakd.data import load_dataset
    from fedakd.io import atomic_path
    from fedakd.partition import PartitionError, load_partition

    config = load_config(args.config, args.overrides)
    partition = load_partition(args.partition, partition_spec(config, dataset=args.dataset, setting=args.setting,
                                                              seed=args.seed))
    if not 0 <= args.client < len(partition.client_indices):
        raise PartitionError(f"--client {args.client}: the partition has clients "
                             f"0..{len(partition.client_indices) - 1}")
    dataset = load_dataset(args.dataset, config["data_root"])
    index = torch.as_tensor(partition.client_indices[args.client])
    with atomic_path(Path(args.out)) as tmp:
        torch.save({"client_id": args.client, "x": dataset.x_train[index], "y": dataset.y_train[index],
                    "num_classes": dataset.num_classes, "partition_sha256": partition.sha256}, tmp)
    return Path(args.out)


#: The app's paths that the ServerApp opens on the SuperLink's machine.
SERVER_PATHS = (("--config", "config"), ("--partition", "partition"), ("--run-folder", "run_folder"))


def write_app(args: argparse.Namespace) -> Path:
    """A Flower App directory whose run_config defaults name the job. Its server-side paths must be absolute: the
    ServerApp runs on the SuperLink's machine, from a folder of Flower's choosing, where a relative one names
    another place than here."""
    import json

    from fedakd.flower import FlowerError

    relative = [f"{flag} {getattr(args, name)}" for flag, name in SERVER_PATHS
                if not Path(getattr(args, name)).is_absolute()]
    if relative:
        raise FlowerError(f"{', '.join(relative)}: relative, but the ServerApp opens these paths on the SuperLink's "
                          "machine, from a working folder of Flower's choosing; give absolute paths on that machine")
    job = flower_job(args, args.run_folder)
    lines = [f"{key} = {json.dumps(value)}" for key, value in job.to_config().items()]
    directory = Path(args.out)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "pyproject.toml").write_text(APP_PYPROJECT.format(directory=directory, config="\n".join(lines)))
    return directory


def run(args: argparse.Namespace) -> None:
    if args.flower_command == "shard":
        print(f"wrote {write_shard(args)}")
    elif args.flower_command == "app":
        print(f"wrote {write_app(args) / 'pyproject.toml'}; run it with `flwr run {args.out} <superlink>`")
    else:
        from fedakd.flower.simulation import simulate
        from fedakd.partition import load_partition

        job = flower_job(args, args.out)
        clients = len(load_partition(args.partition).client_indices)
        metrics = simulate([job], clients=clients)[0]
        print(f"{args.dataset}/{args.setting}/{args.method}/seed{args.seed} on Flower ({clients} SuperNodes): "
              f"final balanced accuracy {metrics['final']['balanced_accuracy']:.4f}; results in {args.out}")
