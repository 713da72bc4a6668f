"""The analysis a config declares before any result exists: its ``comparisons`` block, read from a validated
config (every default comes from the schema), resolved into a ``Study`` that the aggregate, figures and report
steps receive.

Roles: the baseline (every competitor is compared with it) and the focus method (compared with every
competitor, the method the verdict is about). A role whose method the config lacks is switched off when the
role keeps its schema default (fedavg, fedakd), and refused by validation when the config names it. The
ablation ladder and what each of its rungs adds are the config's too (``ladder``, ``ladder_adds``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

def setting_seeds(config: dict[str, Any], setting: str) -> list[int]:
    """The evaluation seeds a setting runs: its own ``seeds`` (a subset of the study's), else the study's."""
    return list(config["settings"][setting].get("seeds") or config["seeds"])


def setting_federation(config: dict[str, Any], setting: str) -> dict[str, Any]:
    """The federation a setting trains with: the study's, with the setting's own client step (lr, momentum)."""
    return {**config["federation"], **config["settings"][setting].get("federation", {})}


def setting_method_entry(config: dict[str, Any], setting: str, method: str) -> dict[str, Any]:
    """The ``methods`` entry that a setting's jobs of ``method`` run: the config's, with the setting's
    ``method_options`` for it over it (a step setting's are its base's: it repeats its base at another step)."""
    base = config["settings"][step_families(config)[setting]]
    return {**config["methods"][method], **base.get("method_options", {}).get(method, {})}


def step_families(config: dict[str, Any]) -> dict[str, str]:
    """setting -> the base setting of its step family: a setting with ``step_of`` repeats its base at another
    client step (docs/method-card.md §5, the verdict across step sizes); a base is its own family."""
    return {name: entry.get("step_of") or name for name, entry in config["settings"].items()}


def effective_step(federation: dict[str, Any]) -> float:
    """The client step lr / (1 - momentum): SGD with heavy-ball momentum m moves lr / (1 - m) per unit gradient
    at steady state, the figure the field's protocols are compared by."""
    return federation["lr"] / (1 - federation["momentum"])


def reference_methods(config: dict[str, Any]) -> set[str]:
    """Config method names whose registered class is a reference row (e.g. centralised)."""
    from fedakd.registry import get_method

    return {name for name, entry in config["methods"].items() if get_method(entry["method"]).reference}


def roles(config: dict[str, Any]) -> tuple[str | None, str | None]:
    """(baseline, focus) of a validated config; a role whose method the config lacks is None (switched off)."""
    comparisons, methods = config["comparisons"], config["methods"]
    return tuple(comparisons[key] if comparisons[key] in methods else None for key in ("baseline", "focus"))


def declared_comparisons(config: dict[str, Any]) -> list[tuple[str, str]]:
    """(method, baseline) pairs of a validated config, in a fixed order, without repeats.

    Every method against the baseline, the focus method against every other method, then the
    explicit ``pairs``. References are never compared.
    """
    references = reference_methods(config)
    competitors = [m for m in config["methods"] if m not in references]
    baseline, focus = roles(config)
    pairs: list[tuple[str, str]] = []
    if baseline is not None:
        pairs += [(m, baseline) for m in competitors if m != baseline]
    if focus is not None:
        pairs += [(focus, m) for m in competitors if m != focus]
    pairs += [tuple(pair) for pair in config["comparisons"]["pairs"]]
    unique: list[tuple[str, str]] = []
    for pair in pairs:
        if pair not in unique and pair[::-1] not in unique:
            unique.append(pair)
    return unique


@dataclass(frozen=True)
class Study:
    """What a config declares about its analysis (the ``comparisons`` block, resolved)."""

    pairs: tuple[tuple[str, str], ...]
    baseline: str | None  # every method is compared with it
    focus: str | None  # it is compared with every method: the method the verdict is about
    primary: str  # its family alone decides win / tie / loss
    secondary: tuple[str, ...]  # each its own adjusted family, descriptive
    alpha: float
    ladder: tuple[str, ...]
    ladder_adds: dict[str, str]  # rung -> what it adds to the one below it
    window: float  # convergence: the last fraction of the rounds...
    threshold: float  # ...over which a converged curve rises by at most this much
    reach: float  # rounds to reach this fraction of the final value
    final_window: float = 0.1  # a run's headline figure: the mean over this last fraction of the rounds
    target: float = 0.7  # communication: rounds and bytes to reach this balanced accuracy
    #: setting -> the setting it repeats at another client step (its step family's base; itself for a base)
    step_family: dict[str, str] = field(default_factory=dict)
    references: tuple[str, ...] = ()
    tuned: dict[str, Any] = field(default_factory=dict)  # method -> the options tuning chose

    @property
    def metrics(self) -> tuple[str, ...]:
        """The headline metrics: the primary one first, then the secondary ones."""
        return (self.primary, *[m for m in self.secondary if m != self.primary])

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "Study":
        """The study of a validated config."""
        comparisons = config["comparisons"]
        convergence = comparisons["convergence"]
        baseline, focus = roles(config)
        return cls(pairs=tuple(declared_comparisons(config)), baseline=baseline, focus=focus,
                   primary=comparisons["primary"], secondary=tuple(comparisons["secondary"]),
                   alpha=comparisons["alpha"], ladder=tuple(comparisons["ladder"]),
                   ladder_adds=dict(comparisons["ladder_adds"]), window=convergence["window"],
                   threshold=convergence["threshold"], reach=convergence["reach"],
                   final_window=comparisons["final_window"], target=comparisons["target"],
                   step_family=step_families(config), references=tuple(sorted(reference_methods(config))))

    def to_dict(self) -> dict[str, Any]:
        return {"pairs": [list(p) for p in self.pairs], "baseline": self.baseline, "focus": self.focus,
                "primary": self.primary, "secondary": list(self.secondary), "alpha": self.alpha,
                "ladder": list(self.ladder), "ladder_adds": dict(self.ladder_adds), "window": self.window,
                "threshold": self.threshold, "reach": self.reach, "final_window": self.final_window,
                "target": self.target, "step_family": dict(self.step_family), "references": list(self.references),
                "tuned": self.tuned}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Study":
        return cls(pairs=tuple(tuple(p) for p in data["pairs"]), baseline=data["baseline"], focus=data["focus"],
                   primary=data["primary"], secondary=tuple(data["secondary"]), alpha=data["alpha"],
                   ladder=tuple(data["ladder"]), ladder_adds=dict(data["ladder_adds"]), window=data["window"],
                   threshold=data["threshold"], reach=data["reach"], final_window=data["final_window"],
                   target=data["target"], step_family=dict(data["step_family"]),
                   references=tuple(data["references"]), tuned=dict(data.get("tuned", {})))
