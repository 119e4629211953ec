"""Plugin discovery shared by the driver and policy registries.

A registry maps names to ``"module:attribute"`` targets: the built-ins it lists, merged with
the entry points of its group, which third-party packages declare in their metadata.
Targets are imported only when used, so listing plugins stays cheap.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from importlib.metadata import entry_points

__all__ = ["discover", "load_target"]


def discover(group: str, builtins: Mapping[str, str]) -> dict[str, str]:
    """Name -> ``module:attribute`` for ``builtins`` and the entry points of ``group``."""
    found = dict(builtins)
    for ep in entry_points(group=group):
        found[ep.name] = ep.value
    return found


def load_target(target: str) -> object:
    """Import ``module:attribute`` and return the attribute."""
    module_name, _, attr = target.partition(":")
    return getattr(importlib.import_module(module_name), attr)
