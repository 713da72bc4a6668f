"""pyproject.toml is the source of truth for dependencies; environment.yml must follow it."""

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
CONDA_NAMES = {"torch": "pytorch"}  # PyPI name -> conda-forge name where they differ


def _name_and_spec(requirement: str) -> tuple[str, str]:
    match = re.match(r"^\s*([A-Za-z0-9_.\-]+)\s*(.*)$", requirement)
    return match.group(1).lower(), match.group(2).replace(" ", "")


def test_environment_yml_lists_every_dependency_with_the_same_bound():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = dict(_name_and_spec(r) for r in project["dependencies"] + project["optional-dependencies"]["test"])
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda = dict(_name_and_spec(d) for d in env["dependencies"] if isinstance(d, str))
    for name, spec in wanted.items():
        conda_name = CONDA_NAMES.get(name, name)
        assert conda_name in conda, f"environment.yml lacks {conda_name} (pyproject: {name}{spec})"
        assert conda[conda_name] == spec, f"{conda_name}: environment.yml {conda[conda_name]!r} != pyproject {spec!r}"


def test_every_registered_method_loads():
    from fedakd.registry import get_method, method_names

    assert {"fedavg", "fedavg-smote", "fedavg-ft", "fedakd"} <= set(method_names())
    for name in method_names():
        assert hasattr(get_method(name), "client_update")
