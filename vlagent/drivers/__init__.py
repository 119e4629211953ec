"""Drivers: screens vlagent can observe and act on. See :mod:`vlagent.drivers.base`."""

from vlagent.drivers.base import (
    DESKTOP_CAPABILITIES,
    PHONE_CAPABILITIES,
    BaseDriver,
    Capabilities,
    Driver,
    check_driver,
)
from vlagent.drivers.registry import available_drivers, open_driver

__all__ = [
    "DESKTOP_CAPABILITIES",
    "PHONE_CAPABILITIES",
    "BaseDriver",
    "Capabilities",
    "Driver",
    "available_drivers",
    "check_driver",
    "open_driver",
]
