"""The resolved, immutable specification of one partition and one training job.

The config is validated once (fedakd.config); what comes out for each job is a ``JobSpec`` with
every default filled and every check done. The Snakemake rules, the partition step, the
training job and the partition check all read it; none of them re-derives or re-validates a
value. A spec travels between processes as a plain dict (``to_dict`` / ``from_dict``, e.g. as a
Snakemake param) and is rebuilt without checks: it was checked when it was made.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Mapping


class FrozenDict(dict):
    """A dict that refuses changes, so a spec cannot be edited on its way through a job."""

    def _refuse(self, *args, **kwargs):
        raise TypeError("a resolved spec is read-only; build another one with fedakd.config.job_spec")

    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = __ior__ = _refuse

    def __reduce__(self):  # pickling (Snakemake params) rebuilds it in one go, without __setitem__
        return (FrozenDict, (dict(self),))


def freeze(value: Any) -> Any:
    """Mappings become FrozenDicts and lists tuples, all the way down."""
    if isinstance(value, Mapping):
        return FrozenDict({key: freeze(item) for key, item in value.items()})
    if isinstance(value, (list, tuple)):
        return tuple(freeze(item) for item in value)
    return value


def thaw(value: Any) -> Any:
    """The plain JSON-shaped copy of a frozen value (dicts and lists)."""
    if isinstance(value, Mapping):
        return {key: thaw(item) for key, item in value.items()}
    if isinstance(value, tuple):
        return [thaw(item) for item in value]
    return value


def digest(value: Any) -> str:
    """SHA-256 of the canonical JSON of ``value``: equal values, equal digests, whatever the key order."""
    text = json.dumps(thaw(value), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class PartitionSpec:
    """Everything a partition depends on (docs/method-card.md §1), and nothing else: one per dataset x setting x
    seed."""

    dataset: str
    seed: int
    clients: int
    proxy_per_class: int
    validation_per_class: int
    imbalance: Mapping[str, Any]  # kind, factor, minority_fraction (step), shuffle_classes
    split: Mapping[str, Any]  # kind, alpha | k, min_size, max_retries

    def __post_init__(self):
        object.__setattr__(self, "imbalance", freeze(self.imbalance))
        object.__setattr__(self, "split", freeze(self.split))

    def to_dict(self) -> dict[str, Any]:
        return thaw(asdict(self))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "PartitionSpec":
        return cls(**{f.name: data[f.name] for f in fields(cls)})

    @property
    def digest(self) -> str:
        """What a saved partition is checked against: equal digests, same partition parameters."""
        return digest(self.to_dict())


@dataclass(frozen=True)
class JobSpec:
    """One training job (dataset, setting, method, seed), resolved."""

    experiment: str
    tracking_uri: str
    data_root: str
    device: str
    amp: bool
    deterministic: bool
    dataset: str
    setting: str
    setting_params: Mapping[str, Any]  # the setting's imbalance and split, defaults filled
    method: str  # the config's name for it (e.g. fedakd-noattn)
    method_class: str  # the registered method it runs
    method_options: Mapping[str, Any]  # the method's options, defaults filled
    federation: Mapping[str, Any]
    model: Mapping[str, Any]
    seed: int
    partition: PartitionSpec
    candidate: int | None = None  # a tuning job's candidate (its index in the method's grid); None otherwise
    tracking: Mapping[str, Any] = field(default_factory=dict)  # how patient the job is with its tracking server

    def __post_init__(self):
        for name in ("setting_params", "method_options", "federation", "model", "tracking"):
            object.__setattr__(self, name, freeze(getattr(self, name)))

    @property
    def key(self) -> str:
        """dataset/setting/method[/c<candidate>]/seed<seed>: the job's name in MLflow and its run folder."""
        from fedakd.layout import job_key

        return job_key({"dataset": self.dataset, "setting": self.setting, "method": self.method, "seed": self.seed,
                        "candidate": self.candidate})

    def to_dict(self) -> dict[str, Any]:
        data = {f.name: thaw(getattr(self, f.name)) for f in fields(self) if f.name != "partition"}
        return {**data, "partition": self.partition.to_dict()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "JobSpec":
        values = {f.name: data[f.name] for f in fields(cls) if f.name in data}
        return cls(**{**values, "partition": PartitionSpec.from_dict(data["partition"])})

    @property
    def digest(self) -> str:
        """What identifies the job's results: everything but where it logs to and how patiently."""
        return digest({k: v for k, v in self.to_dict().items() if k not in ("experiment", "tracking_uri", "tracking")})
