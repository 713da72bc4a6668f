"""A benchmarked job as a Flower run: which job of which config, where its partition is, and where the server
writes its run folder. It travels as the run's ``run_config`` (flat keys, the values Flower allows), so the
ServerApp and every ClientApp resolve the same job spec from the same config."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Mapping

#: Separates the config overrides inside one run_config value (an override never holds a newline).
OVERRIDE_SEPARATOR = "\n"


@dataclass(frozen=True)
class FlowerJob:
    config: str  # the YAML config's path
    dataset: str
    setting: str
    method: str
    seed: int
    partition: str  # the partition's folder (fedakd partition), read by the server, and by nodes without a shard
    out: str  # the server's run folder: metrics.json and the rest, as the engine writes them
    overrides: str = ""  # KEY.PATH=VALUE lines, as --set gives them
    threads: int = 1  # torch threads of each process
    track: bool = True  # log the finished run to the config's MLflow store (tagged engine: flower)

    @classmethod
    def from_config(cls, run_config: Mapping[str, Any]) -> "FlowerJob":
        from fedakd.config import ConfigError

        missing = [f.name for f in fields(cls) if f.name not in run_config and f.default is f.default_factory]
        missing = [name for name in missing if name not in ("overrides", "threads", "track")]
        if missing:
            raise ConfigError(f"the Flower run's run_config lacks {', '.join(missing)}; run it with `fedakd flower "
                              f"run`, or give them with `flwr run --run-config`")
        return cls(**{f.name: run_config[f.name] for f in fields(cls) if f.name in run_config})

    def to_config(self) -> dict[str, Any]:
        return asdict(self)

    def job_spec(self):
        """The resolved job spec (checked like every job's, fedakd.config)."""
        from fedakd.config import job_spec, load_config

        overrides = [line for line in self.overrides.split(OVERRIDE_SEPARATOR) if line]
        config = load_config(self.config, overrides)
        return job_spec(config, dataset=self.dataset, setting=self.setting, method=self.method, seed=int(self.seed))
