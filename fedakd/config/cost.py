"""What a config costs before it runs, so that an absurd size is said before hours are spent: the examples one
job's training passes over, in CPU-hours at a CPU core's pace with the cnn (the same estimate gives a cluster
job its wall-time, workflow/rules/common.smk)."""

from __future__ import annotations

from typing import Any

#: Training examples one CPU core passes through the cnn per second (measured: Fashion-MNIST, one thread).
EXAMPLES_PER_SECOND = 3000
#: A job estimated above this many CPU-hours gets a warning.
WARN_HOURS = 48.0


def local_examples(config: dict[str, Any], dataset: str) -> float:
    """The examples a job's clients pass over: rounds x local epochs x the sampled share of the training set."""
    from fedakd.data import DATASETS

    federation = config["federation"]
    return federation["rounds"] * federation["local_epochs"] * federation["fraction"] * DATASETS[dataset].n_train


def server_examples(config: dict[str, Any], method: str) -> float:
    """The examples a method's server steps pass over: rounds x every *_steps option x its batch (64 unless the
    method names one)."""
    options = config["methods"][method]
    batch = next((value for key, value in options.items() if key.endswith("batch_size")), 64)
    steps = sum(value for key, value in options.items() if key.endswith("_steps") and isinstance(value, int))
    return config["federation"]["rounds"] * steps * batch


def job_hours(config: dict[str, Any], dataset: str, method: str) -> float:
    return (local_examples(config, dataset) + server_examples(config, method)) / EXAMPLES_PER_SECOND / 3600


def cost_warnings(config: dict[str, Any]) -> list[str]:
    """One line per dataset whose jobs would take more than WARN_HOURS CPU-hours, naming them."""
    warnings = []
    for dataset in config["datasets"]:
        hours = {method: job_hours(config, dataset, method) for method in config["methods"]}
        over = [method for method, h in hours.items() if h > WARN_HOURS]
        if over:
            which = f"every {dataset} job needs" if len(over) == len(hours) else \
                f"{dataset} jobs of {', '.join(over)} need"
            warnings.append(f"warning: {which} up to {max(hours.values()):,.0f} CPU-hours at "
                            f"{EXAMPLES_PER_SECOND:,} examples a second (federation.rounds x local_epochs x the "
                            f"training set, and a method's *_steps); check the config")
    return warnings
