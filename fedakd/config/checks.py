"""Validation of a whole config: the schema first, then what a schema cannot express (known datasets,
registered methods and their own options, k <= classes, clients <= examples, backbone vs input size, a
tracking store MLflow can open, declared comparisons, the tune block). Every bad value stops here, before any
work starts; what leaves is checked, and no later step checks it again."""

from __future__ import annotations

import copy
from typing import Callable

from fedakd.config.methods import method_options, resolve_method
from fedakd.config.schema import MISSING, ConfigError, KeyPath, Problem, load_schema, schema_problems
from fedakd.config.tuning import tuning_problems

#: Input height x width each backbone is built for (``auto`` picks by input size, so it always fits).
BACKBONE_INPUT = {"cnn": (28, 28), "mlp": (8, 8), "resnet": (32, 32)}


def _known_datasets(config: dict, skip: Callable[[KeyPath], bool]) -> tuple[dict, list[Problem]]:
    from fedakd.data import DATASETS

    if skip(("datasets",)):
        return {}, []
    specs, problems = {}, []
    for index, name in enumerate(config["datasets"]):
        if name in DATASETS:
            specs[name] = DATASETS[name]
        else:
            problems.append(Problem(("datasets", index), name, "one of " + ", ".join(map(repr, DATASETS))))
    return specs, problems


def _check_settings(config: dict, specs: dict, skip) -> list[Problem]:
    if not specs:
        return []
    problems = []
    fewest = min(specs.values(), key=lambda spec: spec.num_classes)
    for name, setting in config["settings"].items():
        path = ("settings", name, "split", "k")
        if skip(path) or "k" not in setting["split"]:
            continue
        if setting["split"]["k"] > fewest.num_classes:
            problems.append(Problem(path, setting["split"]["k"],
                                    f"at most {fewest.num_classes}: {fewest.name} has {fewest.num_classes} classes"))
    return problems


#: The largest float32: the models compute in float32, where a larger factor (a learning rate of 1e308) overflows.
FLOAT32_MAX = 3.4028234663852886e38


def _check_float32(config: dict, skip) -> list[Problem]:
    """Every number of the federation, the settings and the methods fits a float32 (JSON Schema's finite
    numbers go up to 1.8e308, where torch refuses to multiply a float32 tensor by one in mid-run)."""
    problems = []

    def walk(node, path):
        if skip(path):
            return
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, (*path, key))
        elif isinstance(node, (int, float)) and not isinstance(node, bool) and abs(node) > FLOAT32_MAX:
            problems.append(Problem(path, node, f"at most {FLOAT32_MAX:.1e} in size: the models compute in float32, "
                                    "where a larger number overflows; a step this large cannot train"))

    for section in ("federation", "settings", "methods"):
        walk(config.get(section), (section,))
    return problems


def _check_step_settings(config: dict, skip) -> list[Problem]:
    """A ``step_of`` setting repeats an existing base setting (same imbalance and split) at a client step of its
    own; its seeds are the study's."""
    settings, problems = config["settings"], []
    for name, setting in settings.items():
        base = setting.get("step_of")
        if "seeds" in setting and not skip(("seeds",)):
            problems += [Problem(("settings", name, "seeds", index), seed, "one of the study's seeds: "
                                 + ", ".join(map(str, config["seeds"])))
                         for index, seed in enumerate(setting["seeds"]) if seed not in config["seeds"]]
        if base is None:
            if "federation" in setting:
                problems.append(Problem(("settings", name, "federation"), setting["federation"],
                                        "only with step_of: a setting's own client step repeats another setting"))
            continue
        where = ("settings", name, "step_of")
        if base not in settings or base == name or "step_of" in settings[base]:
            problems.append(Problem(where, base, "another setting of this config, itself no step_of setting: "
                                    + ", ".join(n for n, s in settings.items() if "step_of" not in s and n != name)))
        elif skip(("settings", name)) or skip(("settings", base)):
            continue  # a schema problem there is said already; the two cannot be compared
        elif any(setting.get(key) != settings[base].get(key) for key in ("imbalance", "split")):
            problems.append(Problem(where, base, f"a setting with the same imbalance and split as {name} (a step "
                                    "setting repeats its base's partitions at another client step)"))
        elif not set(setting.get("seeds") or config["seeds"]) <= set(settings[base].get("seeds") or config["seeds"]):
            problems.append(Problem(("settings", name, "seeds"), setting.get("seeds"),
                                    f"seeds that {base} runs too (a step setting trains on its base's partitions)"))
        if "federation" not in setting:
            problems.append(Problem(("settings", name, "federation"), MISSING, "the client step (lr, momentum) at "
                                    "which step_of repeats the base setting"))
    return problems


def _check_federation(config: dict, specs: dict, skip) -> list[Problem]:
    """The transfer set, the validation set and the clients must fit in every dataset's training split."""
    paths = {key: ("federation", key) for key in ("clients", "proxy_per_class", "validation_per_class")}
    if any(skip(path) for path in paths.values()):
        return []
    federation = config["federation"]
    clients, proxy, validation = (federation[key] for key in paths)
    held_out_key = "validation_per_class" if validation else "proxy_per_class"
    for spec in sorted(specs.values(), key=lambda s: s.n_train - (proxy + validation) * s.num_classes):
        set_aside = (proxy + validation) * spec.num_classes
        if set_aside >= spec.n_train:
            most = (spec.n_train - 1) // spec.num_classes - (proxy if validation else 0)
            return [Problem(paths[held_out_key], federation[held_out_key],
                            f"at most {most}: {spec.name} has {spec.n_train} training examples in "
                            f"{spec.num_classes} classes" + (f" and the transfer set takes {proxy} per class"
                                                            if validation and proxy else ""))]
        if clients > spec.n_train - set_aside:
            held = f" minus {set_aside} held out ({proxy} + {validation} per class x {spec.num_classes} classes)"
            return [Problem(paths["clients"], clients, f"at most {spec.n_train - set_aside}: {spec.name} has "
                                                       f"{spec.n_train} training examples{held if set_aside else ''}")]
    return []


def _check_backbone(config: dict, specs: dict, skip) -> list[Problem]:
    path = ("model", "backbone")
    backbone = None if skip(path) else config["model"]["backbone"]
    if backbone in (None, "auto"):
        return []
    misfits = {name: spec.in_shape[1:] for name, spec in specs.items()
               if spec.in_shape[1:] != BACKBONE_INPUT[backbone]}
    if not misfits:
        return []
    height, width = BACKBONE_INPUT[backbone]
    shapes = ", ".join(f"{name} is {h}x{w}" for name, (h, w) in misfits.items())
    return [Problem(path, backbone, f"{backbone} takes {height}x{width} inputs but {shapes}; use auto")]


def _check_amp(config: dict, skip) -> list[Problem]:
    if skip(("amp",)) or skip(("device",)) or not config["amp"] or config["device"] != "cpu":
        return []
    return [Problem(("amp",), True, "mixed precision runs on CUDA only: set amp: false, or device: auto or cuda")]


def _check_tracking_uri(config: dict, skip) -> list[Problem]:
    from fedakd.tracking import uri_problem

    if skip(("tracking_uri",)) or (problem := uri_problem(config["tracking_uri"])) is None:
        return []
    return [Problem(("tracking_uri",), config["tracking_uri"], problem)]


def _setting_entries(config: dict, skip) -> tuple[list[tuple[KeyPath, str, dict]], list[Problem]]:
    """(where, method, entry) of every setting's ``method_options``, each merged over its method's entry (checked
    as a method entry is), and the problems of those that name no method or sit in a step setting."""
    entries, problems = [], []
    for setting, params in config["settings"].items():
        where = ("settings", setting, "method_options")
        if "method_options" not in params or skip(where):
            continue
        if "step_of" in params:
            problems.append(Problem(where, params["method_options"], f"none in a step setting: it runs its base's "
                                    f"(settings.{params['step_of']}.method_options)"))
            continue
        for method, options in params["method_options"].items():
            if method not in config["methods"]:
                problems.append(Problem((*where, method), options, "one of the config's methods: "
                                        + ", ".join(config["methods"])))
            elif "method" in options:
                method_class = config["methods"][method]["method"]
                problems.append(Problem((*where, method, "method"), options["method"], f"no method key: options "
                                        f"only, of the class of methods.{method} ({method_class})"))
            elif not skip(("methods", method)):
                entries.append(((*where, method), method, {**config["methods"][method], **options}))
    return entries, problems


def _check_methods(config: dict, skip) -> list[Problem]:
    """Each method registered and its options valid for its class (defaults filled in place), and so each
    setting's ``method_options`` over them."""
    problems, needing_proxy, needing_validation = [], [], []
    entries = [(("methods", name), name, entry) for name, entry in config["methods"].items()
               if not skip(("methods", name))]
    if isinstance(config.get("settings"), dict):
        more, problems = _setting_entries(config, skip)
        entries += more
    for where, name, entry in entries:
        method_class, found = resolve_method(entry["method"], entry, where)
        problems += found
        if method_class is not None and not found:
            if method_class.needs_transfer_set(method_options(entry)) and name not in needing_proxy:
                needing_proxy.append(name)
            if method_class.needs_validation_split(method_options(entry)) and name not in needing_validation:
                needing_validation.append(name)
    for key, needing, what in (("proxy_per_class", needing_proxy, "train on the transfer set"),
                               ("validation_per_class", needing_validation, "validate their server step on the "
                                "validation split (validation: validation)")):
        path = ("federation", key)
        if needing and not skip(path) and config["federation"][key] == 0:
            problems.append(Problem(path, 0, f"at least 1: methods {', '.join(needing)} {what} (or remove them)"))
    return problems


def _check_comparisons(config: dict, skip) -> list[Problem]:
    """Declared comparisons must name the config's own methods (unset baseline/focus fall back to
    fedavg/fedakd only when the config has them)."""
    if skip(("comparisons",)) or skip(("methods",)):
        return []
    comparisons, methods = config["comparisons"], set(config["methods"])
    allowed = "one of the config's methods: " + ", ".join(sorted(methods))
    defaults = load_schema()["properties"]["comparisons"]["properties"]
    problems = [Problem(("comparisons", key), comparisons[key], allowed + ", or null")
                for key in ("baseline", "focus") if comparisons[key] is not None and comparisons[key] not in methods
                and comparisons[key] != defaults[key]["default"]]  # a default the config lacks switches the role off
    for index, pair in enumerate(comparisons["pairs"]):
        problems += [Problem(("comparisons", "pairs", index, side), name, allowed)
                     for side, name in enumerate(pair) if name not in methods]
        if pair[0] == pair[1]:
            problems.append(Problem(("comparisons", "pairs", index), pair, "two different methods"))
    return problems


def _semantic_problems(config: dict, schema_found: list[Problem]) -> list[Problem]:
    """Checks that need the datasets' sizes and the method registry; parts with schema problems are skipped."""

    def skip(path: KeyPath) -> bool:
        """A schema problem at, inside or above ``path``: checks there would read bad values."""
        return any(p.path[: len(path)] == path or path[: len(p.path)] == p.path for p in schema_found)

    def unusable(section: str) -> bool:
        """A schema problem at or above a whole section (missing, wrong type, bad names)."""
        return any(p.path in ((), (section,)) for p in schema_found)

    specs, problems = _known_datasets(config, skip)
    if not unusable("settings"):
        problems += _check_settings(config, specs, skip)
        problems += _check_step_settings(config, skip)
    problems += _check_federation(config, specs, skip)
    problems += _check_float32(config, skip)
    problems += _check_backbone(config, specs, skip)
    problems += _check_amp(config, skip)
    problems += _check_tracking_uri(config, skip)
    if not unusable("methods"):
        problems += _check_methods(config, skip)
        problems += _check_comparisons(config, skip)
        if not any(p.path[:1] == ("methods",) for p in problems):  # candidates are checked against valid methods
            problems += tuning_problems(config, skip)
    return problems


def validate_config(config: dict) -> dict:
    """A copy of ``config`` with every default filled; ConfigError listing every problem (schema ones first)."""
    filled = copy.deepcopy(config)
    problems = schema_problems(filled, load_schema())
    if isinstance(filled, dict):
        problems += _semantic_problems(filled, problems)
    if problems:
        raise ConfigError("\n".join(map(str, problems)))
    return filled
