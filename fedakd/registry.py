"""Method registry: config names -> method classes.

Methods are found through the ``fedakd.methods`` entry-point group declared in
pyproject.toml, so the engine (and fedakd/ as a whole) never imports baselines/
by name. A third-party package can add a method the same way.
"""

from __future__ import annotations

from functools import lru_cache
from importlib.metadata import entry_points

ENTRY_POINT_GROUP = "fedakd.methods"


class UnknownMethodError(KeyError):
    pass


@lru_cache(maxsize=1)
def _entry_points() -> dict:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


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
