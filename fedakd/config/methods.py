"""A config's method entries: the registered class each names, and its options checked against the class's own
schema (defaults filled)."""

from __future__ import annotations

import copy

from fedakd.config.schema import ConfigError, KeyPath, Problem, schema_problems


def method_options(entry: dict) -> dict:
    """A ``methods.<name>`` entry without its ``method`` key: the options the method class receives."""
    return {key: value for key, value in entry.items() if key != "method"}


def resolve_method(method_class: str, entry: dict, where: KeyPath) -> tuple[type | None, list[Problem]]:
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


def validate_method_options(method_class: str, options: dict) -> dict:
    """A copy of ``options`` for the registered method ``method_class``, checked, with its defaults filled."""
    filled = copy.deepcopy(options)
    _, problems = resolve_method(method_class, filled, ("methods", method_class))
    if problems:
        raise ConfigError("\n".join(map(str, problems)))
    return method_options(filled)


def changed_options(method_class: str, options: dict) -> dict:
    """The options that differ from the registered class's defaults (all of them for an unknown class)."""
    from fedakd import registry

    try:
        schema = registry.get_method(method_class).options_schema
    except registry.UnknownMethodError:
        return dict(options)
    return {key: value for key, value in options.items()
            if key not in schema or "default" not in schema[key] or schema[key]["default"] != value}


def describe_options(methods: list[str] | tuple[str, ...] = ()) -> str:
    """Each registered method's options as Markdown: name, default, description (``fedakd options``)."""
    import json

    from fedakd import registry

    lines = []
    for name in methods or registry.method_names():
        schema = registry.get_method(name).options_schema
        lines += [f"## {name}", ""]
        if not schema:
            lines += ["No options.", ""]
            continue
        lines += ["| option | default | what it does |", "|---|---|---|"]
        lines += [f"| {option} | `{json.dumps(entry.get('default'))}` | {entry.get('description', '')} |"
                  for option, entry in schema.items()]
        lines.append("")
    return "\n".join(lines).rstrip()
