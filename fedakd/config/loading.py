"""Reading a config: YAML (as YAML 1.2 reads numbers, duplicated keys refused), ``KEY.PATH=VALUE`` overrides,
then validation (fedakd.config.checks)."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any, Sequence

import yaml

from fedakd.config.checks import validate_config
from fedakd.config.schema import SCHEMA_NAME, ConfigError, short_repr


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
        raise ConfigError(f"{path}: {short_repr(config)} -- a YAML mapping of config keys "
                          f"(see {SCHEMA_NAME})")
    return validate_config(apply_overrides(config, overrides))


def _set_by_path(config: dict, parts: list[str], value: Any, override: str) -> None:
    """Set ``config[a][b]... = value``, creating mappings on the way; a dotted existing key matches whole."""
    node, start = config, 0
    while True:
        if not isinstance(node, dict):
            walked = ".".join(parts[:start])
            raise ConfigError(f"override: {override!r} -- {walked} is {short_repr(node)}, not a mapping; "
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

