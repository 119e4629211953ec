"""The Driver boundary: what any screen vlagent can drive must offer.

A driver captures frames and executes actions in device (logical) pixels. It knows
nothing of models, grids or memory. Third-party drivers implement the small ``Driver``
protocol and prove it with ``check_driver`` in their own tests.
"""

from __future__ import annotations

from collections.abc import Iterable
from types import TracebackType
from typing import Protocol, Self, runtime_checkable

from vlagent.actions import (
    KEY_NAMES,
    Action,
    Click,
    Key,
    LongPress,
    Scroll,
    Swipe,
    Wait,
    describe_action,
)
from vlagent.capabilities import DESKTOP_CAPABILITIES, PHONE_CAPABILITIES, Capabilities
from vlagent.errors import ActionNotSupportedError, ActionRefusedError, DriverConformanceError
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


@runtime_checkable
class Driver(Protocol):
    """A screen that can be observed and acted on.

    A driver that retries failed device calls itself, within a bound on time, says so with the
    class attribute ``retries_device_errors = True`` (see :class:`BaseDriver`): the loop then makes
    one attempt per call rather than retrying on top. It is optional (read with
    ``getattr(driver, "retries_device_errors", False)``), so it is not a member of this protocol.
    """

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
    """Convenience base: context manager and capability check (each driver executes actions itself)."""

    name: str = "driver"
    _capabilities: Capabilities = PHONE_CAPABILITIES
    retries_device_errors: bool = False
    """True for a driver that retries lost connections and timeouts itself, within a bound on time:
    callers (the loop) must not retry its DeviceErrors again."""

    @property
    def capabilities(self) -> Capabilities:
        return self._capabilities

    def screen_size(self) -> tuple[int, int]:
        """Logical (width, height) in which actions are executed; every driver defines it."""
        raise NotImplementedError(f"{type(self).__name__} must define screen_size()")

    def ensure_supported(self, action: Action) -> None:
        """Raise ActionNotSupportedError when the device cannot perform ``action`` (an action, key or
        button it lacks), ActionRefusedError (one of those) for a point outside its screen (device pixels)."""
        reason = self.capabilities.refusal(action)
        if reason is not None:
            raise ActionNotSupportedError(f"{describe_action(action)}: {reason}")
        if _has_point(action):  # the size only when needed: adb asks the phone
            reason = self.capabilities.refusal(action, screen=self.screen_size())
            if reason is not None:
                raise ActionRefusedError(f"{describe_action(action)}: {reason}")

    def close(self) -> None:
        return None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _has_point(action: Action) -> bool:
    return isinstance(action, (Click, LongPress, Swipe)) or (
        isinstance(action, Scroll) and (action.x is not None or action.y is not None)
    )


def check_driver(driver: Driver, *, act: bool = True, close: bool = False) -> None:
    """Check that ``driver`` behaves as vlagent expects; raise DriverConformanceError listing every problem.

    With ``act=True`` (default) it also executes harmless actions: a zero wait and, when
    supported, a click in the middle of the screen. With ``close=True`` it ends by closing the
    driver twice: the second ``close()`` must be harmless. Run it against a test device.
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
    if close:
        for which in ("first", "second"):
            try:
                driver.close()
            except Exception as exc:
                problems.append(f"the {which} close() raised {exc!r} (closing twice must be harmless)")
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
