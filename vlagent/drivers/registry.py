"""Driver registry: ``open_driver("sim" | "desktop" | "adb:SERIAL" | "replay:PATH")``.

Drivers are found through the entry-point group ``vlagent.drivers``; each entry point
names a factory ``(arg: str | None, **options) -> Driver`` where ``arg`` is whatever follows
the first colon of the spec. The built-ins are listed here too so that a source checkout
works without installed metadata. Factories import their heavy libraries lazily and raise
MissingExtraError when an extra is absent.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import cast

from vlagent.drivers.base import Driver
from vlagent.errors import ConfigError, UnknownDriverError
from vlagent.plugins import discover, load_target

__all__ = ["DriverFactory", "available_drivers", "open_driver"]

log = logging.getLogger(__name__)

DriverFactory = Callable[..., Driver]

BUILTIN_DRIVERS: dict[str, str] = {
    "sim": "vlagent.drivers.sim:create_driver",
    "adb": "vlagent.drivers.android:create_driver",
    "desktop": "vlagent.drivers.desktop:create_driver",
    "replay": "vlagent.drivers.replay:create_driver",
}


def available_drivers() -> dict[str, str]:
    """Name -> 'module:factory' for built-in and entry-point drivers."""
    return discover("vlagent.drivers", BUILTIN_DRIVERS)


def open_driver(spec: str, **options: object) -> Driver:
    """Open the device named by ``spec``; ``options`` go to the driver's factory.

    Raises UnknownDriverError for unknown names and MissingExtraError when the driver's
    optional dependencies are not installed.
    """
    if not spec or not spec.strip():
        raise ConfigError("device spec is empty; use e.g. 'sim', 'desktop', 'adb:SERIAL'")
    name, sep, arg = spec.strip().partition(":")
    drivers = available_drivers()
    if name not in drivers:
        raise UnknownDriverError(name, list(drivers))
    factory = cast(DriverFactory, load_target(drivers[name]))
    log.debug("opening driver %s (arg=%r) via %s", name, arg, drivers[name])
    return factory(arg if sep else None, **options)
