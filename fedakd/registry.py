"""Method registry: config names -> method classes.

Methods are found through the ``fedakd.methods`` entry-point group declared in
pyproject.toml, so the engine (and fedakd/ as a whole) never imports baselines/
by name. A third-party package can add a method the same way.

Run from a source checkout that is not installed (the workflow's conda environments hold the
dependencies, not the package), there is no distribution metadata to read: the entry points are
then read from the checkout's pyproject.toml, the same table an installation would register.
"""

from __future__ import annotations

from functools import lru_cache
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path

ENTRY_POINT_GROUP = "fedakd.methods"
PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


class UnknownMethodError(KeyError):
    pass


def _from_pyproject() -> dict[str, EntryPoint]:
    """The entry points pyproject.toml declares, when this package runs from its source tree."""
    import tomllib

    if not PYPROJECT.exists():
        return {}
    table = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))
    declared = table.get("project", {}).get("entry-points", {}).get(ENTRY_POINT_GROUP, {})
    return {name: EntryPoint(name, target, ENTRY_POINT_GROUP) for name, target in declared.items()}


@lru_cache(maxsize=1)
def _entry_points() -> dict:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)} or _from_pyproject()


def method_names() -> list[str]:
    """Registered method names, sorted."""
    return sorted(_entry_points())


def get_method(name: str):
    """The method class registered as ``name``; a clear error for an unknown one."""
    eps = _entry_points()
    if name not in eps:
        known = ", ".join(method_names()) or "(none: is the package installed? run `make setup`)"
        raise UnknownMethodError(f"unknown method {name!r}; registered methods: {known}")
    return eps[name].load()
