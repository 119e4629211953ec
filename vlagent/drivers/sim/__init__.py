"""The simulated phone: a deterministic Android-like device drawn with Pillow.

``open_driver("sim")`` or ``open_driver("sim:SEED")`` gives a SimDriver around a fresh
SimPhone; ``SimDriver.state()`` is the phone as a :class:`vlagent.tasks.DeviceState`, which the
built-in tasks (``vlagent.tasks.BUILTIN_TASKS``) and scenario checks are judged from.
"""

from __future__ import annotations

from typing import Any

from vlagent.drivers.sim.catalog import APPS, App, Contact, Popup
from vlagent.drivers.sim.driver import SimDriver
from vlagent.drivers.sim.world import SimPhone
from vlagent.errors import ConfigError

__all__ = ["APPS", "App", "Contact", "Popup", "SimDriver", "SimPhone", "create_driver"]


def create_driver(arg: str | None = None, **options: Any) -> SimDriver:
    """Factory for the registry: ``arg`` is the layout seed from "sim:SEED" (optional).

    Options go to SimPhone (seed, transition_delay, width, height, clock, serial).
    """
    if arg:
        try:
            seed = int(arg)
        except ValueError as exc:
            raise ConfigError(f"'sim:{arg}': the part after 'sim:' must be an integer layout seed") from exc
        if "seed" in options and options["seed"] != seed:
            raise ConfigError(f"'sim:{arg}' conflicts with seed={options['seed']!r}")
        options["seed"] = seed
    try:
        return SimDriver(**options)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"invalid options for the simulated phone: {exc}") from exc
