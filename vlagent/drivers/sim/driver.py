"""SimDriver: the Driver face of SimPhone, so the simulated phone runs wherever a device does.

It translates actions into phone input and frames out of phone renders; it keeps no state
of its own beyond the phone and must not change the phone in any other way.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from types import MappingProxyType
from typing import Any

from vlagent.actions import Action, Click, Done, Key, LongPress, OpenApp, Scroll, Swipe, Type, Wait
from vlagent.drivers.base import PHONE_CAPABILITIES, BaseDriver, Capabilities
from vlagent.drivers.sim.state import SimState
from vlagent.drivers.sim.world import SimPhone
from vlagent.frames import Frame
from vlagent.tasks.state import StartState

__all__ = ["SimDriver"]

log = logging.getLogger(__name__)


class SimDriver(BaseDriver):
    """Drives a SimPhone (a new one built from ``phone_options`` when none is given)."""

    name = "sim"
    _capabilities: Capabilities = PHONE_CAPABILITIES

    def __init__(
        self, phone: SimPhone | None = None, *, sleep: Callable[[float], None] = time.sleep, **phone_options: Any
    ) -> None:
        if phone is not None and phone_options:
            raise TypeError("give either a phone or options for a new one, not both")
        self.phone = phone if phone is not None else SimPhone(**phone_options)
        self._sleep = sleep
        self._meta = MappingProxyType(
            {"serial": self.phone.serial, "density": str(self.phone.density), "model": "vlagent-sim"}
        )

    def screen_size(self) -> tuple[int, int]:
        return self.phone.width, self.phone.height

    def close(self) -> None:
        """Let go of the rendered screens the phone keeps (the phone itself stays usable)."""
        self.phone.forget_frames()

    def state(self) -> SimState:
        """One look at the phone's state, for checks (see ``vlagent.tasks``)."""
        return SimState(self.phone)

    def prepare(self, start: StartState) -> None:
        """Bring the phone to ``start`` (toggles, notes, contacts, home screen)."""
        SimState(self.phone).prepare(start)

    def screenshot(self) -> Frame:
        image = self.phone.render()
        return Frame(image=image, width=image.width, height=image.height, device=self._meta)

    def execute(self, action: Action) -> None:
        self.ensure_supported(action)
        phone = self.phone
        if isinstance(action, Click):
            for _ in range(action.clicks):
                phone.tap(action.x, action.y)
        elif isinstance(action, LongPress):
            phone.long_press(action.x, action.y, action.duration)
        elif isinstance(action, Type):
            phone.type_text(action.text)
            if action.submit:
                phone.press_key("enter")
        elif isinstance(action, Swipe):
            phone.swipe(action.x1, action.y1, action.x2, action.y2, action.duration)
        elif isinstance(action, Scroll):
            phone.scroll(action.direction, action.x, action.y, action.amount)
        elif isinstance(action, Key):
            phone.press_key(action.key)
        elif isinstance(action, OpenApp):
            if not phone.open_app(action.name):
                log.warning("sim: no app called %r; known: %s", action.name, ", ".join(phone.packages().values()))
        elif isinstance(action, Wait):
            self._sleep(action.seconds)
        elif isinstance(action, Done):
            return
