"""What a config costs before it runs, so that an absurd size is said before hours are spent and a long study is
sized by measured cost: the examples one job's training passes over (its imbalanced pool, not the whole
training split), in CPU-hours at a CPU core's measured pace with the cnn (the same estimate gives a cluster job
its wall-time, workflow/rules/common.smk).
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

#: Training examples one CPU core passes through the cnn per second, evaluation and diagnostics included:
#: FedAvg on Fashion-MNIST lt10-dir0.5, 2 local epochs (48,800 examples a round) at 5.1 s a round with two
#: single-threaded jobs side by side on a 2-core AMD EPYC (benchmarks/protocol.py's runs).
EXAMPLES_PER_SECOND = 9500
#: A job estimated above this many CPU-hours gets a warning.
WARN_HOURS = 48.0
#: The registered methods whose clients train on resampled data (baselines/resampling.py): imbalanced-learn's kind
#: of sampling and the method's default strategy. SMOTE raises every class a client holds to its largest: on
#: Fashion-MNIST lt10-dir0.5 its clients train on 2.9 times their examples. tests/test_config.py holds this table
#: to the classes.
RESAMPLERS = {"fedavg-smote": ("over-sampling", "not majority"), "fedavg-ros": ("over-sampling", "not majority"),
              "fedavg-rus": ("under-sampling", "not minority")}


def pool_size(config: dict[str, Any], dataset: str, setting: str) -> float:
    """The examples the clients share: the imbalance profile of docs/method-card.md §1 applied to the training
    split's class size, less the transfer and validation sets (a balanced split is assumed: Fashion-MNIST,
    MNIST and CIFAR are)."""
    from fedakd.data import DATASETS
    from fedakd.partition import longtail_counts, step_counts

    spec, federation = DATASETS[dataset], config["federation"]
    imbalance = config["settings"][setting]["imbalance"]
    n_max = spec.n_train // spec.num_classes - federation["proxy_per_class"] - federation["validation_per_class"]
    n_max = min(n_max, imbalance.get("n_max") or n_max)
    if imbalance["kind"] == "longtail":
        return float(sum(longtail_counts(n_max, spec.num_classes, imbalance["factor"])))
    if imbalance["kind"] == "step":
        return float(sum(step_counts(n_max, spec.num_classes, imbalance["factor"], imbalance["minority_fraction"])))
    return float(n_max * spec.num_classes)


@lru_cache(maxsize=64)
def _client_class_counts(dataset: str, spec_json: str) -> tuple[tuple[int, ...], ...]:
    """Each client's class counts in the partition a spec describes, made from labels of n_train / num_classes
    examples a class, so no data are read: the split draws on the class sizes, not on which examples they are
    (tests/test_config.py), so the counts are exact on Fashion-MNIST and CIFAR, whose classes are that size, and
    close on MNIST."""
    import numpy as np

    from fedakd.config.spec import PartitionSpec
    from fedakd.data import DATASETS
    from fedakd.partition import make_partition

    spec = DATASETS[dataset]
    labels = np.repeat(np.arange(spec.num_classes), spec.n_train // spec.num_classes)
    partition = make_partition(labels, spec.num_classes, PartitionSpec(**json.loads(spec_json)))
    return tuple(tuple(int(n) for n in row) for row in partition.client_class_counts)


def resampling_factor(config: dict[str, Any], dataset: str, setting: str, method: str) -> float:
    """How many times their own examples a method's clients train on (1 unless it resamples, RESAMPLERS), on the
    partition of the setting's first seed."""
    from fedakd.config import partition_spec
    from fedakd.config.study import setting_method_entry, setting_seeds, step_families

    options = setting_method_entry(config, setting, method)
    if options["method"] not in RESAMPLERS:
        return 1.0
    from imblearn.utils import check_sampling_strategy
    import numpy as np

    kind, default = RESAMPLERS[options["method"]]
    spec = partition_spec(config, dataset=dataset, setting=step_families(config)[setting],
                          seed=setting_seeds(config, setting)[0])
    before = after = 0
    for counts in _client_class_counts(dataset, json.dumps(spec.to_dict(), sort_keys=True)):
        y = np.repeat(np.arange(len(counts)), counts)
        before += len(y)
        if sum(n > 0 for n in counts) < 2:  # one class: nothing to resample against
            after += len(y)
            continue
        change = check_sampling_strategy(options.get("sampling_strategy", default), y, kind)
        # over-sampling: examples to add per class; under-sampling: examples to keep per class
        after += len(y) + sum(change.values()) if kind == "over-sampling" else \
            len(y) - sum(counts[c] - n for c, n in change.items())
    return after / before


def local_examples(config: dict[str, Any], dataset: str, setting: str) -> float:
    """The examples a job's clients pass over: rounds x local epochs x the sampled share of the pool."""
    federation = config["federation"]
    return federation["rounds"] * federation["local_epochs"] * federation["fraction"] * pool_size(config, dataset,
                                                                                                   setting)


def server_examples(config: dict[str, Any], method: str, setting: str) -> float:
    """The examples a method's server steps pass over in a setting: rounds x every *_steps option x its batch (64
    unless the method names one)."""
    from fedakd.config.study import setting_method_entry

    options = setting_method_entry(config, setting, method)
    batch = next((value for key, value in options.items() if key.endswith("batch_size")), 64)
    steps = sum(value for key, value in options.items() if key.endswith("_steps") and isinstance(value, int))
    return config["federation"]["rounds"] * steps * batch


def job_hours(config: dict[str, Any], dataset: str, method: str, setting: str | None = None) -> float:
    """One job's CPU-hours; without a setting, the largest of the config's settings."""
    settings = [setting] if setting is not None else list(config["settings"])
    examples = max(local_examples(config, dataset, s) * resampling_factor(config, dataset, s, method)
                   + server_examples(config, method, s) for s in settings)
    return examples / EXAMPLES_PER_SECOND / 3600


def study_hours(config: dict[str, Any]) -> float:
    """The CPU-hours of every evaluation job of a config (tuning jobs not counted)."""
    from fedakd.config.study import setting_seeds

    return sum(job_hours(config, dataset, method, setting) * len(setting_seeds(config, setting))
               for dataset in config["datasets"] for setting in config["settings"] for method in config["methods"])


def tuning_hours(config: dict[str, Any]) -> float:
    """The CPU-hours of every tuning job of a config with a tune block (0 without): each candidate of each method
    on each tuning seed, in every setting, at the evaluation job's cost."""
    from fedakd.config.tuning import grid

    if "tune" not in config:
        return 0.0
    return sum(job_hours(config, dataset, method, setting) * len(grid(config, method)) * len(config["tune"]["seeds"])
               for dataset in config["datasets"] for setting in config["settings"] for method in config["methods"])


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
                            f"imbalanced pool, and a method's *_steps); check the config")
    return warnings
