"""Load, override and validate the benchmark config; resolve it into one spec per job.

Every bad value stops here, before any work starts, with one line per problem:
``<key.path>: <value> -- <what is allowed>``. The schema (fedakd/schemas/config.schema.yaml, shipped
inside the package; workflow/schemas/ links to it) is the user's reference and supplies the
defaults; what a schema cannot express (known datasets, registered methods and their own options,
k <= classes, clients <= examples, backbone vs input size) is checked here in Python against
fedakd.data.DATASETS and fedakd.registry. What leaves this module is checked: ``job_spec`` and
``partition_spec`` turn a validated config into the immutable specs (fedakd.spec) that every later
step reads without checking again.
"""

from __future__ import annotations

import copy
import math
import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Sequence

import yaml
from jsonschema import Draft202012Validator, validators

from fedakd.spec import JobSpec, PartitionSpec, digest

#: The schema ships inside the package, so a wheel installed anywhere can validate a config.
SCHEMA_RESOURCE = resources.files("fedakd") / "schemas" / "config.schema.yaml"
SCHEMA_NAME = "fedakd/schemas/config.schema.yaml"

#: Input height x width each backbone is built for (``auto`` picks by input size, so it always fits).
BACKBONE_INPUT = {"cnn": (28, 28), "mlp": (8, 8), "resnet": (32, 32)}

_MAX_VALUE_CHARS = 100


class ConfigError(ValueError):
    """The config (file, override or value) cannot be used; the message has one line per problem."""


class _Missing:
    def __repr__(self) -> str:
        return "(missing)"


MISSING = _Missing()
KeyPath = tuple[Any, ...]


@dataclass(frozen=True)
class Problem:
    path: KeyPath
    value: Any
    allowed: str

    def __str__(self) -> str:
        return f"{format_path(self.path)}: {_short_repr(self.value)} -- {self.allowed}"


def format_path(path: KeyPath) -> str:
    """``("settings", "lt", "split", "k")`` -> ``settings.lt.split.k``; list indices as ``seeds[1]``."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "<config>"


def _short_repr(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _MAX_VALUE_CHARS else text[: _MAX_VALUE_CHARS - 3] + "..."


# -- YAML ---------------------------------------------------------------------------------------
class _ConfigLoader(yaml.SafeLoader):
    """yaml.SafeLoader that reads ``1e-3`` as a float (as YAML 1.2 does) and rejects duplicated keys.

    PyYAML follows YAML 1.1, where ``lr: 1e-3`` is the *string* "1e-3"; and a key written twice
    silently keeps its last value. Both are config mistakes nobody means to make.
    """

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=deep)
            try:
                duplicated = key in seen
            except TypeError:  # an unhashable key: SafeLoader reports it
                continue
            if duplicated:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping", node.start_mark, f"found duplicated key {key!r}",
                    key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


_ConfigLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                    |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
                    |[-+]?\.(?:inf|Inf|INF)
                    |\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."),
)


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """A YAML error on one line: what is wrong and where."""
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    mark = getattr(exc, "problem_mark", None)
    return f"{problem} at line {mark.line + 1}, column {mark.column + 1}" if mark else problem


# -- schema validation with defaults -------------------------------------------------------------
def _strict_integer(checker, instance) -> bool:
    """JSON Schema counts 10.0 as an integer; range(10.0) does not."""
    return isinstance(instance, int) and not isinstance(instance, bool)


def _finite_number(checker, instance) -> bool:
    """Every number of a config is finite: NaN and +-inf pass JSON Schema's bounds checks (NaN compares false
    both ways) and would end in a traceback, a misattributed divergence or a run scored as if it were a result."""
    return isinstance(instance, (int, float)) and not isinstance(instance, bool) and math.isfinite(instance)


def _with_defaults(validator_class):
    """The jsonschema FAQ recipe: a validator that fills each property's "default" as it validates."""
    check_properties = validator_class.VALIDATORS["properties"]

    def fill_defaults(validator, properties, instance, schema):
        if validator.is_type(instance, "object"):
            for name, subschema in properties.items():
                if isinstance(subschema, dict) and "default" in subschema:
                    instance.setdefault(name, copy.deepcopy(subschema["default"]))
        yield from check_properties(validator, properties, instance, schema)

    return validators.extend(
        validator_class, {"properties": fill_defaults},
        type_checker=validator_class.TYPE_CHECKER.redefine_many({"integer": _strict_integer,
                                                                 "number": _finite_number}),
    )


FillingValidator = _with_defaults(Draft202012Validator)


@lru_cache(maxsize=1)
def load_schema() -> dict[str, Any]:
    return yaml.safe_load(SCHEMA_RESOURCE.read_text(encoding="utf-8"))


_TYPE_WORDS = {"integer": "an integer", "number": "a finite number", "string": "a string", "boolean": "true or false",
               "array": "a list", "object": "a mapping", "null": "null"}
_BOUNDS = (("minimum", ">="), ("exclusiveMinimum", ">"), ("maximum", "<="), ("exclusiveMaximum", "<"))


def _allowed(schema: Any) -> str:
    """What a (sub)schema accepts, in words: 'an integer >= 1', "one of 'auto', 'cpu'"."""
    if not isinstance(schema, dict):
        return "not allowed here"
    if "enum" in schema:
        return "one of " + ", ".join(map(repr, schema["enum"]))
    if "pattern" in schema:
        return schema.get("description", f"a string matching {schema['pattern']}")
    kind = schema.get("type")
    if kind == "array":
        phrase = "a non-empty list" if schema.get("minItems") else "a list"
        phrase += " without duplicates" if schema.get("uniqueItems") else ""
        return phrase + (", each " + _allowed(schema["items"]) if "items" in schema else "")
    if kind == "object" and "properties" in schema:
        return "a mapping with keys " + ", ".join(schema["properties"])
    phrase = _TYPE_WORDS.get(kind, "a valid value")
    if schema.get("minLength") or schema.get("minProperties"):
        phrase = phrase.replace("a ", "a non-empty ", 1)
    bounds = [f"{op} {schema[key]}" for key, op in _BOUNDS if key in schema]
    return " ".join([phrase, " and ".join(bounds)]) if bounds else phrase


def _local_reference(root: dict, reference: str) -> Any:
    """The subschema a local reference such as ``#/$defs/name`` points to (our schemas use no others)."""
    node = root
    for part in reference.removeprefix("#/").split("/"):
        node = node[part]
    return node


def _condition_description(root: dict, schema_path) -> str | None:
    """The description of the if/then block an error comes from (e.g. 'kind iid takes no alpha')."""
    node, previous, found = root, None, None
    for key in schema_path:
        while isinstance(node, dict) and key not in node and "$ref" in node:  # jsonschema omits "$ref" steps
            node = _local_reference(root, node["$ref"])
        node = node[key]
        if key == "then" and previous != "properties":
            found = node.get("description")
        previous = key
    return found


def _explain(error, root: dict, prefix: KeyPath) -> list[Problem]:
    path = prefix + tuple(error.absolute_path)
    if list(error.absolute_schema_path)[-2:-1] == ["propertyNames"]:  # a bad name: point at it, not its parent
        path += (error.instance,)
    condition = _condition_description(root, error.absolute_schema_path)
    if error.validator == "additionalProperties":
        known = list(error.schema.get("properties", {}))
        allowed = "unknown key; allowed keys: " + ", ".join(known) if known else "unknown key"
        return [Problem(path + (key,), value, allowed) for key, value in error.instance.items() if key not in known]
    if error.validator == "required":
        properties = error.schema.get("properties", {})
        return [
            Problem(path + (key,), MISSING, condition or "required: " + properties.get(key, {}).get(
                "description", _allowed(properties.get(key))))
            for key in error.validator_value if key not in error.instance
        ]
    return [Problem(path, error.instance, condition or _allowed(error.schema))]


def schema_problems(instance: Any, schema: dict, prefix: KeyPath = ()) -> list[Problem]:
    """Validate ``instance`` in place (filling defaults); the problems, sorted by key path, without repeats."""
    problems: list[Problem] = []
    for error in FillingValidator(schema).iter_errors(instance):
        problems.extend(p for p in _explain(error, schema, prefix) if p not in problems)
    return sorted(problems, key=lambda p: format_path(p.path))


# -- checks beyond the schema -------------------------------------------------------------------
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


def method_options(entry: dict) -> dict:
    """A ``methods.<name>`` entry without its ``method`` key: the options the method class receives."""
    return {key: value for key, value in entry.items() if key != "method"}


def _resolve_method(method_class: str, entry: dict, where: KeyPath) -> tuple[type | None, list[Problem]]:
    """The registered class named ``method_class`` and the problems of ``entry`` (validated in place)."""
    from fedakd import registry

    try:
        resolved = registry.get_method(method_class)
    except registry.UnknownMethodError:
        return None, [Problem(where + ("method",), method_class,
                              "one of the registered methods: " + ", ".join(registry.method_names()))]
    schema = {"type": "object", "additionalProperties": False,
              "properties": {"method": {"type": "string"}, **resolved.options_schema}}
    problems = schema_problems(entry, schema, where)
    if not problems:
        options = method_options(entry)
        problems = [Problem(where, options, sentence) for sentence in resolved.check_options(options)]
    return resolved, problems


def _check_methods(config: dict, skip) -> list[Problem]:
    """Each method registered and its options valid for its class (defaults filled in place)."""
    problems, needing_proxy, needing_validation = [], [], []
    for name, entry in config["methods"].items():
        if skip(("methods", name)):
            continue
        method_class, found = _resolve_method(entry["method"], entry, ("methods", name))
        problems += found
        if method_class is not None and not found:
            if method_class.needs_transfer_set(method_options(entry)):
                needing_proxy.append(name)
            if method_class.needs_validation_split(method_options(entry)):
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
    problems = [Problem(("comparisons", key), comparisons[key], allowed + ", or null")
                for key in ("baseline", "focus") if comparisons.get(key) is not None and comparisons[key] not in methods]
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
    problems += _check_federation(config, specs, skip)
    problems += _check_backbone(config, specs, skip)
    problems += _check_amp(config, skip)
    problems += _check_tracking_uri(config, skip)
    if not unusable("methods"):
        problems += _check_methods(config, skip)
        problems += _check_comparisons(config, skip)
        if not any(p.path[:1] == ("methods",) for p in problems):  # candidates are checked against valid methods
            from fedakd.tuning import tuning_problems

            problems += tuning_problems(config, skip)
    return problems


# -- public API ---------------------------------------------------------------------------------
def validate_config(config: dict) -> dict:
    """A copy of ``config`` with every default filled; ConfigError listing every problem (schema ones first)."""
    filled = copy.deepcopy(config)
    problems = schema_problems(filled, load_schema())
    if isinstance(filled, dict):
        problems += _semantic_problems(filled, problems)
    if problems:
        raise ConfigError("\n".join(map(str, problems)))
    return filled


def validate_method_options(method_class: str, options: dict) -> dict:
    """A copy of ``options`` for the registered method ``method_class``, checked, with its defaults filled."""
    filled = copy.deepcopy(options)
    _, problems = _resolve_method(method_class, filled, ("methods", method_class))
    if problems:
        raise ConfigError("\n".join(map(str, problems)))
    return method_options(filled)


def load_config(path: str | Path, overrides: Sequence[str] = ()) -> dict:
    """Read a YAML config file, apply ``KEY.PATH=VALUE`` overrides, validate."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found -- pass an existing YAML file, "
                          f"e.g. config/smoke.yaml") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the config file -- {exc}") from None
    try:
        config = yaml.load(text, Loader=_ConfigLoader)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML -- {_yaml_problem(exc)}; fix the file") from None
    if not isinstance(config, dict):
        raise ConfigError(f"{path}: {_short_repr(config)} -- a YAML mapping of config keys "
                          f"(see {SCHEMA_NAME})")
    return validate_config(apply_overrides(config, overrides))


def _set_by_path(config: dict, parts: list[str], value: Any, override: str) -> None:
    """Set ``config[a][b]... = value``, creating mappings on the way; a dotted existing key matches whole."""
    node, start = config, 0
    while True:
        if not isinstance(node, dict):
            walked = ".".join(parts[:start])
            raise ConfigError(f"override: {override!r} -- {walked} is {_short_repr(node)}, not a mapping; "
                              f"address a key inside a mapping")
        end = next((stop for stop in range(len(parts), start, -1) if ".".join(parts[start:stop]) in node), start + 1)
        key = ".".join(parts[start:end])
        if end == len(parts):
            node[key] = value
            return
        node, start = node.setdefault(key, {}), end


def apply_overrides(config: dict, overrides: Sequence[str]) -> dict:
    """A copy of ``config`` with ``KEY.PATH=VALUE`` overrides applied; VALUE is YAML (0.5, true, [0, 1])."""
    result = copy.deepcopy(config)
    for override in overrides:
        key, equals, text = str(override).partition("=")
        parts = key.strip().split(".")
        if not equals or not all(parts):
            raise ConfigError(f"override: {override!r} -- KEY.PATH=VALUE, e.g. federation.rounds=5")
        try:
            value = yaml.load(text, Loader=_ConfigLoader)
        except yaml.YAMLError as exc:
            raise ConfigError(f"override: {override!r} -- a YAML value after '=' "
                              f"(e.g. 5, 0.5, true, [0, 1]); {_yaml_problem(exc)}") from None
        _set_by_path(result, parts, value, override)
    return result


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


def resolve_setting(setting: dict, name: str = "setting") -> dict:
    """One setting ({imbalance, split}) checked against the schema, with its defaults filled (a copy).

    For code that makes partitions outside a config (tests, benchmarks); a config's settings are
    resolved by validate_config.
    """
    schema = load_schema()
    subschema = {**schema["properties"]["settings"]["additionalProperties"], "$defs": schema["$defs"]}
    filled = copy.deepcopy(setting)
    problems = schema_problems(filled, subschema, ("settings", name))
    if problems:
        raise ConfigError("\n".join(map(str, problems)))
    return filled


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
    """A job's spec from a validated config, with ``options`` over the method's configured ones (a tuning
    candidate, already checked) and another MLflow experiment if given; the choices are not checked."""
    entry = config["methods"][method]
    return JobSpec(
        experiment=experiment or config["experiment"], tracking_uri=config["tracking_uri"],
        data_root=config["data_root"], device=config["device"], amp=config["amp"],
        deterministic=config["deterministic"], dataset=dataset, setting=setting,
        setting_params=config["settings"][setting], method=method, method_class=entry["method"],
        method_options={**method_options(entry), **(options or {})}, federation=config["federation"],
        model=config["model"], seed=seed, partition=partition_spec(config, dataset=dataset, setting=setting, seed=seed),
        tracking=config["tracking"],
    )


def job_spec(config: dict, *, dataset: str, setting: str, method: str, seed: int) -> JobSpec:
    """One evaluation job's resolved spec, from a validated config (Snakemake's params for that job)."""
    _check_choice(config, dataset=dataset, setting=setting, method=method, seed=seed)
    return build_job_spec(config, dataset=dataset, setting=setting, method=method, seed=seed)


def config_digest(config: dict) -> str:
    """SHA-256 of the config's canonical JSON: equal configs, equal digests, whatever the key order."""
    return digest(config)
