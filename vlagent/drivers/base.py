"""The Driver boundary: what any screen vlagent can drive must offer.

A driver captures frames and executes actions in device (logical) pixels. It knows
nothing of models, grids or memory. Third-party drivers implement the small ``Driver``
protocol and prove it with ``check_driver`` in their own tests.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Protocol, Self, runtime_checkable

from vlagent.actions import (
    ACTION_TYPES,
    KEY_NAMES,
    Action,
    Click,
    Key,
    Wait,
    describe_action,
)
from vlagent.errors import ActionNotSupportedError, DriverConformanceError
from vlagent.frames import Frame
from vlagent.outcome import ActionOutcome

__all__ = [
    "DESKTOP_CAPABILITIES",
    "PHONE_CAPABILITIES",
    "BaseDriver",
    "Capabilities",
    "Driver",
    "check_driver",
]

PHONE_KEYS = frozenset(
    {
        "home",
        "back",
        "app_switch",
        "menu",
        "power",
        "volume_up",
        "volume_down",
        "enter",
        "backspace",
        "delete",
        "space",
        "tab",
    }
)
DESKTOP_KEYS = frozenset(set(KEY_NAMES) - {"home", "back", "app_switch", "menu", "power", "volume_up", "volume_down"})


@dataclass(frozen=True)
class Capabilities:
    """What a driver can do; used to restrict the schema shown to a model."""

    actions: frozenset[str]
    keys: frozenset[str] = field(default_factory=frozenset)
    buttons: frozenset[str] = frozenset({"left"})
    modifiers: bool = False

    def __post_init__(self) -> None:
        unknown = set(self.actions) - set(ACTION_TYPES)
        if unknown:
            raise ValueError(f"unknown action types in capabilities: {sorted(unknown)}")

    def refusal(self, action: Action) -> str | None:
        """Why this driver cannot perform ``action``, or None when it can."""
        if action.action not in self.actions:
            return f"this device cannot '{action.action}'; allowed actions: {', '.join(sorted(self.actions))}"
        if isinstance(action, Click) and action.button not in self.buttons:
            return f"this device has no {action.button} button; allowed: {', '.join(sorted(self.buttons))}"
        if isinstance(action, Key):
            if action.key not in self.keys:
                return f"this device has no key '{action.key}'; allowed keys: {', '.join(sorted(self.keys))}"
            if action.modifiers and not self.modifiers:
                return "this device does not support modifier keys"
        return None


PHONE_CAPABILITIES = Capabilities(
    actions=frozenset({"click", "long_press", "type", "swipe", "scroll", "key", "open_app", "wait", "done"}),
    keys=PHONE_KEYS,
)
DESKTOP_CAPABILITIES = Capabilities(
    actions=frozenset({"click", "type", "swipe", "scroll", "key", "wait", "done"}),
    keys=DESKTOP_KEYS,
    buttons=frozenset({"left", "right", "middle"}),
    modifiers=True,
)


@runtime_checkable
class Driver(Protocol):
    """A screen that can be observed and acted on."""

    name: str

    @property
    def capabilities(self) -> Capabilities: ...

    def screen_size(self) -> tuple[int, int]:
        """Logical (width, height) in which actions are executed."""
        ...

    def screenshot(self) -> Frame: ...

    def execute(self, action: Action) -> ActionOutcome | None:
        """Perform ``action`` (device pixels). Raises ActionNotSupportedError or DeviceError.

        Returns what the driver learned doing it (e.g. whether typed text arrived), or None.
        """
        ...

    def close(self) -> None:
        """Release the device; calling it twice is harmless."""
        ...

    def __enter__(self) -> Driver: ...

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...


class BaseDriver:
    """Convenience base: context manager, capability check and action dispatch by type."""

    name: str = "driver"
    _capabilities: Capabilities = PHONE_CAPABILITIES

    @property
    def capabilities(self) -> Capabilities:
        return self._capabilities

    def ensure_supported(self, action: Action) -> None:
        reason = self.capabilities.refusal(action)
        if reason is not None:
            raise ActionNotSupportedError(f"{describe_action(action)}: {reason}")

    def close(self) -> None:
        return None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def check_driver(driver: Driver, *, act: bool = True) -> None:
    """Check that ``driver`` behaves as vlagent expects; raise DriverConformanceError listing every problem.

    With ``act=True`` (default) it also executes harmless actions: a zero wait and, when
    supported, a click in the middle of the screen. Run it against a test device.
    """
    problems: list[str] = []
    if not isinstance(getattr(driver, "name", None), str):
        problems.append("driver.name must be a str")
    caps = getattr(driver, "capabilities", None)
    if not isinstance(caps, Capabilities):
        problems.append("driver.capabilities must be a Capabilities")
    elif "done" not in caps.actions or "wait" not in caps.actions:
        problems.append("capabilities must include 'done' and 'wait'")
    try:
        width, height = driver.screen_size()
        if not (isinstance(width, int) and isinstance(height, int) and width > 0 and height > 0):
            problems.append(f"screen_size() must return two positive ints, got {(width, height)!r}")
    except Exception as exc:
        problems.append(f"screen_size() raised {exc!r}")
        width = height = 0
    frames: list[Frame] = []
    for attempt in range(2):
        try:
            frame = driver.screenshot()
        except Exception as exc:
            problems.append(f"screenshot() #{attempt + 1} raised {exc!r}")
            continue
        if not isinstance(frame, Frame):
            problems.append(f"screenshot() must return a Frame, got {type(frame).__name__}")
            continue
        frames.append(frame)
        if frame.image.mode != "RGB":
            problems.append(f"frame image mode must be RGB, got {frame.image.mode}")
        if (frame.width, frame.height) != (width, height):
            problems.append(f"frame size {frame.size} differs from screen_size() {(width, height)}")
    if len(frames) == 2 and frames[1].timestamp < frames[0].timestamp:
        problems.append("frame timestamps go backwards")
    if act and isinstance(caps, Capabilities):
        _check_actions(driver, caps, width, height, problems)
    if problems:
        raise DriverConformanceError(problems)


def _check_actions(driver: Driver, caps: Capabilities, width: int, height: int, problems: list[str]) -> None:
    try:
        driver.execute(Wait(seconds=0))
    except Exception as exc:
        problems.append(f"execute(wait 0s) raised {exc!r}")
    if "click" in caps.actions and width > 0:
        try:
            driver.execute(Click(x=width // 2, y=height // 2))
        except Exception as exc:
            problems.append(f"execute(click centre) raised {exc!r}")
    unsupported = _unsupported_examples(caps)
    for action in unsupported:
        try:
            driver.execute(action)
        except ActionNotSupportedError:
            continue
        except Exception as exc:
            problems.append(f"{describe_action(action)} must raise ActionNotSupportedError, raised {exc!r}")
        else:
            problems.append(
                f"{describe_action(action)} is outside capabilities but did not raise ActionNotSupportedError"
            )


def _unsupported_examples(caps: Capabilities) -> Iterable[Action]:
    missing_keys = sorted(set(KEY_NAMES) - caps.keys)
    if "key" in caps.actions and missing_keys:
        yield Key(key=missing_keys[0])  # type: ignore[arg-type]
    if "click" in caps.actions and "right" not in caps.buttons:
        yield Click(x=0, y=0, button="right")
