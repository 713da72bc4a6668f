"""From a validated config to the immutable specs every later step reads (fedakd.config.spec): one per
partition (dataset, setting, seed) and one per training job."""

from __future__ import annotations

from typing import Any

from fedakd.config.methods import method_options
from fedakd.config.schema import ConfigError, Problem
from fedakd.config.spec import JobSpec, PartitionSpec, digest
from fedakd.config.study import setting_federation, setting_method_entry, setting_seeds


def _check_choice(config: dict, **choices: Any) -> None:
    """Each chosen dataset/setting/method/seed must be one of the config's (compared with its type too:
    True == 1 and 1.0 == 1, but neither is seed 1)."""
    known = {"dataset": config["datasets"], "setting": list(config["settings"]), "method": list(config["methods"]),
             "seed": config["seeds"]}
    problems = [
        Problem((key,), value, f"one of the config's {key}s: " + ", ".join(map(repr, known[key])))
        for key, value in choices.items()
        if not any(value == option and type(value) is type(option) for option in known[key])
    ]
    if problems:
        raise ConfigError("\n".join(map(str, problems)))


def partition_spec(config: dict, *, dataset: str, setting: str, seed: int) -> PartitionSpec:
    """What the partition of (dataset, setting, seed) depends on, from a validated config; no method involved.

    ``seed`` may be an evaluation seed or a tuning seed (tune.seeds)."""
    seeds = config["seeds"] + config.get("tune", {}).get("seeds", [])
    _check_choice({**config, "seeds": seeds}, dataset=dataset, setting=setting, seed=seed)
    federation, params = config["federation"], config["settings"][setting]
    return PartitionSpec(dataset=dataset, seed=seed, clients=federation["clients"],
                         proxy_per_class=federation["proxy_per_class"],
                         validation_per_class=federation["validation_per_class"],
                         imbalance=params["imbalance"], split=params["split"])


def build_job_spec(config: dict, *, dataset: str, setting: str, method: str, seed: int,
                   options: dict | None = None, experiment: str | None = None) -> JobSpec:
    """A job's spec from a validated config: the method's configured options (its entry, with the setting's
    ``method_options`` over it), ``options`` over those (a tuning candidate, already checked), and another MLflow
    experiment if given; the choices are not checked."""
    entry = setting_method_entry(config, setting, method)
    setting_params = {key: value for key, value in config["settings"][setting].items() if key != "method_options"}
    return JobSpec(
        experiment=experiment or config["experiment"], tracking_uri=config["tracking_uri"],
        data_root=config["data_root"], device=config["device"], amp=config["amp"],
        deterministic=config["deterministic"], dataset=dataset, setting=setting,
        setting_params=setting_params, method=method, method_class=entry["method"],
        method_options={**method_options(entry), **(options or {})},
        federation=setting_federation(config, setting),
        model=config["model"], seed=seed, partition=partition_spec(config, dataset=dataset, setting=setting, seed=seed),
        tracking=config["tracking"],
    )


def job_spec(config: dict, *, dataset: str, setting: str, method: str, seed: int) -> JobSpec:
    """One evaluation job's resolved spec, from a validated config (Snakemake's params for that job)."""
    _check_choice(config, dataset=dataset, setting=setting, method=method, seed=seed)
    if setting in config["settings"] and seed not in setting_seeds(config, setting):
        raise ConfigError(f"seed: {seed} -- one of setting {setting}'s seeds: "
                          + ", ".join(map(str, setting_seeds(config, setting))))
    return build_job_spec(config, dataset=dataset, setting=setting, method=method, seed=seed)


def config_digest(config: dict) -> str:
    """SHA-256 of the config's canonical JSON: equal configs, equal digests, whatever the key order."""
    return digest(config)
