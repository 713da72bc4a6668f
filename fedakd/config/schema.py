"""The config's schema (fedakd/schemas/config.schema.yaml, shipped inside the package; workflow/schemas/ links
to it): validation that fills every default, and problems in words, one per line:
``<key.path>: <value> -- <what is allowed>``. The schema is the user's reference and the one home of every
default."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

import yaml
from jsonschema import Draft202012Validator, validators

#: The schema ships inside the package, so a wheel installed anywhere can validate a config.
SCHEMA_RESOURCE = resources.files("fedakd") / "schemas" / "config.schema.yaml"
SCHEMA_NAME = "fedakd/schemas/config.schema.yaml"

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
        return f"{format_path(self.path)}: {short_repr(self.value)} -- {self.allowed}"


def format_path(path: KeyPath) -> str:
    """``("settings", "lt", "split", "k")`` -> ``settings.lt.split.k``; list indices as ``seeds[1]``."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "<config>"


def short_repr(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _MAX_VALUE_CHARS else text[: _MAX_VALUE_CHARS - 3] + "..."


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

