"""Fair tuning (docs/method-card.md §5): every method's options chosen the same way, on data that is neither the
test set nor the transfer set.

A config's ``tune`` block gives, per method, a grid of candidate options. Each candidate is trained on
every tuning seed (seeds no evaluation job uses, so partitions and initial weights differ from the
evaluation's) and scored on the validation split at the final round; the candidate with the highest
mean score is chosen, ties going to the one listed first in the grid. Every method gets the same
number of candidates -- the budget -- except a method with no numeric option to vary, which cannot
have more than its grid and says so. The evaluation jobs then run with the chosen options.

Checks (called from fedakd.config.checks, so a bad block stops before any work): tuning seeds distinct from
evaluation seeds, a validation split, options the method has with valid values, no empty grid, and
equal budgets.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from typing import Any, Mapping, Sequence

from fedakd.config.methods import method_options
from fedakd.config.schema import ConfigError, Problem, schema_problems
from fedakd.config.spec import JobSpec

SELECTION_RULE = ("the candidate with the highest mean of the selection metric over the tuning seeds among "
                  "those none of whose tuning runs collapsed or diverged (a failed candidate is chosen only when "
                  "every candidate failed); ties go to the candidate listed first in the grid")


def tuning_experiment(config: dict[str, Any]) -> str:
    return config["tune"].get("experiment") or f"{config['experiment']}-tuning"


def grid(config: dict[str, Any], method: str) -> list[dict[str, Any]]:
    """The candidate option overrides of a config method, in the order written (Cartesian product);
    a method the tune block does not list has one candidate: its configured options."""
    options = config["tune"]["methods"].get(method)
    if not options:
        return [{}]
    names = list(options)
    return [dict(zip(names, values)) for values in itertools.product(*(options[name] for name in names))]


def _numeric_options(method_class) -> list[str]:
    return sorted(name for name, schema in method_class.options_schema.items()
                  if schema.get("type") in ("integer", "number"))


def tuning_problems(config: dict[str, Any], skip) -> list:
    """What is wrong with a (schema-valid) tune block, as fedakd.config Problems."""
    from fedakd.registry import get_method

    if "tune" not in config or skip(("tune",)) or skip(("methods",)) or skip(("seeds",)):
        return []
    tune, problems = config["tune"], []
    for index, seed in enumerate(tune["seeds"]):
        if seed in config["seeds"]:
            problems.append(Problem(("tune", "seeds", index), seed, "a seed that is not an evaluation seed "
                                    f"(seeds: {config['seeds']}): tuning on the evaluation's partitions and "
                                    "initial weights would tune on the runs that are then reported"))
    if not skip(("federation",)) and config["federation"]["validation_per_class"] == 0:
        problems.append(Problem(("federation", "validation_per_class"), 0,
                                "at least 1 when the config has a tune block: candidates are scored on the "
                                "validation split, never on the test set"))
    budget = tune["budget"]
    for name in tune["methods"]:
        if name not in config["methods"]:
            problems.append(Problem(("tune", "methods", name), tune["methods"][name],
                                    "one of the config's methods: " + ", ".join(config["methods"])))
    for name, entry in config["methods"].items():
        method_class = get_method(entry["method"])
        where = ("tune", "methods", name)
        found = []
        for option, values in tune["methods"].get(name, {}).items():
            schema = method_class.options_schema.get(option)
            if schema is None or option == "method":
                found.append(Problem(where + (option,), values, f"an option of {entry['method']}: "
                                     + (", ".join(method_class.options_schema) or "it has none")))
                continue
            for index, value in enumerate(values):
                found += schema_problems(value, schema, where + (option, index))
        problems += found
        if found:
            continue
        candidates = grid(config, name)
        for index, candidate in enumerate(candidates):
            options = {**method_options(entry), **candidate}
            problems += [Problem(where, candidate, f"candidate {index}: {sentence}")
                         for sentence in method_class.check_options(options)]
        numeric = _numeric_options(method_class)
        if len(candidates) > budget:
            problems.append(Problem(where, tune["methods"].get(name),
                                    f"at most tune.budget = {budget} candidates (unequal budgets: this grid has "
                                    f"{len(candidates)}); shrink the grid"))
        elif len(candidates) < budget and numeric:
            listed = "its grid has" if name in tune["methods"] else "it is not in tune.methods, so it has"
            problems.append(Problem(where, tune["methods"].get(name),
                                    f"exactly tune.budget = {budget} candidates (unequal budgets: {listed} "
                                    f"{len(candidates)}, and it has numeric options to vary: {', '.join(numeric)})"))
    return problems


def tuning_spec(config: dict[str, Any], *, dataset: str, setting: str, method: str, candidate: int,
                seed: int) -> JobSpec:
    """The spec of one tuning job: a candidate's options, a tuning seed, the tuning experiment."""
    from fedakd.config.resolve import build_job_spec

    candidates = grid(config, method)
    if seed not in config["tune"]["seeds"] or not 0 <= candidate < len(candidates):
        raise ConfigError(f"tuning job {dataset}/{setting}/{method}/c{candidate}/seed{seed} is not in the tune block "
                          f"(seeds {config['tune']['seeds']}, {len(candidates)} candidates)")
    job = build_job_spec(config, dataset=dataset, setting=setting, method=method, seed=seed,
                         options=candidates[candidate], experiment=tuning_experiment(config))
    return dataclasses.replace(job, candidate=candidate)


def with_options(job: JobSpec, options: dict[str, Any]) -> JobSpec:
    """``job`` running the chosen options (a validated candidate of the tune block) over its own."""
    return dataclasses.replace(job, method_options={**job.method_options, **options})


def select(scores: Sequence[Sequence[float]], failed: Sequence[Sequence[bool]] | None = None) -> int:
    """Index of the chosen candidate: highest mean score over seeds, ties to the first listed.

    Means within 1e-12 (relative) of each other tie. A candidate with a NaN score (its metric undefined)
    loses to any candidate with a number. A candidate with a failed run (``failed``: per candidate and seed,
    collapsed or diverged, fedakd.diagnostics) loses to every candidate without one, whatever its mean.
    """
    means = [math.fsum(s) / len(s) if s and not any(math.isnan(v) for v in s) else -math.inf for s in scores]
    healthy = [not any(f) for f in failed] if failed is not None else [True] * len(scores)
    pool = [i for i, ok in enumerate(healthy) if ok] or list(range(len(scores)))
    best = max(means[i] for i in pool)
    # equal up to rounding (0.6 + 0.7 and 0.4 + 0.9 differ in the last bit) is a tie
    return next(i for i in pool if means[i] >= best - 1e-12 * max(1.0, abs(best)))


MARGIN_RULE = ("the step with the highest mean score among the steps none of whose tuning runs failed and whose next "
               "larger step in the grid failed on none either (one clean step of margin below the smallest failing "
               "step); ties go to the smaller step")


def select_with_margin(steps: Sequence[float], scores: Sequence[Sequence[float]],
                       failed: Sequence[Sequence[bool]]) -> int | None:
    """Index (into ``steps``) of the protocol's client step by MARGIN_RULE, or None when no step has the margin.

    ``steps`` are one grid of step sizes (any order), ``scores`` and ``failed`` per step and tuning run. The
    largest step of the grid never has the margin: nothing larger shows that it is not at the edge.
    """
    order = sorted(range(len(steps)), key=lambda i: steps[i])
    clean = {i: not any(failed[i]) for i in order}
    means = {i: math.fsum(scores[i]) / len(scores[i]) if scores[i] and not any(map(math.isnan, scores[i]))
             else -math.inf for i in order}
    eligible = [i for i, j in zip(order, order[1:]) if clean[i] and clean[j]]
    if not eligible:
        return None
    best = max(means[i] for i in eligible)
    return next(i for i in eligible if means[i] >= best - 1e-12 * max(1.0, abs(best)))


def selection_record(*, dataset: str, setting: str, method: str, candidates: list[dict[str, Any]],
                     scores: list[list[float]], seeds: list[int], metric: str, budget: int,
                     failed: list[list[bool]] | None = None) -> dict[str, Any]:
    """The content of results/tuning/{dataset}/{setting}/{method}.json."""
    failed = failed if failed is not None else [[False] * len(s) for s in scores]
    chosen = select(scores, failed)
    note = ("" if len(candidates) == budget else
            f"{len(candidates)} of {budget} candidates: the method has no numeric option to vary, so it repeats none")
    return {
        "dataset": dataset, "setting": setting, "method": method, "metric": metric, "seeds": seeds,
        "budget": budget, "rule": SELECTION_RULE, "note": note,
        "candidates": [{"index": i, "options": options, "scores": s, "mean": math.fsum(s) / len(s),
                        "failed_seeds": [seed for seed, f in zip(seeds, fails) if f]}
                       for i, (options, s, fails) in enumerate(zip(candidates, scores, failed))],
        "chosen": {"index": chosen, "options": candidates[chosen]},
    }


def choose(config: dict[str, Any], runs: Mapping[tuple[int, int], dict[str, Any]], *, dataset: str, setting: str,
           method: str) -> dict[str, Any]:
    """The selection record (``selection_record``) of one dataset x setting x method, made from its tuning runs'
    metrics keyed by (candidate, tuning seed): the tune_select rule's, and a bundle's check of the choices it
    carries."""
    from fedakd.diagnostics import failed

    tune, candidates = config["tune"], grid(config, method)
    scores = [[runs[index, seed]["history"][-1].get(tune["metric"]) for seed in tune["seeds"]]
              for index in range(len(candidates))]
    scores = [[math.nan if score is None else score for score in row] for row in scores]
    failures = [[failed(runs[index, seed]["failure"]) for seed in tune["seeds"]] for index in range(len(candidates))]
    return selection_record(dataset=dataset, setting=setting, method=method, candidates=candidates, scores=scores,
                            seeds=list(tune["seeds"]), metric=tune["metric"], budget=tune["budget"], failed=failures)
