"""Screen power and lock handling for the adb driver: wake a sleeping phone, dismiss a lock screen
that needs no credential, refuse (DeviceLockedError) one that does, and the parsers of what
``dumpsys power`` and ``dumpsys window policy`` print across Android versions.

:class:`ScreenGuard` acts through its driver's shell; it never types or guesses a credential
and never changes a setting to keep the screen on.
"""

from __future__ import annotations

import logging
import re
import time
from typing import TYPE_CHECKING

from PIL import Image

from vlagent.drivers.android_state import CommandFailed
from vlagent.errors import DeviceLockedError

if TYPE_CHECKING:
    from vlagent.drivers.android import AdbDriver

__all__ = ["KEYCODE_WAKEUP", "ScreenGuard", "is_black", "parse_keyguard_showing", "parse_wakefulness"]

log = logging.getLogger("vlagent.drivers.android")  # part of the adb driver: one logger for it

#: android.view.KeyEvent.KEYCODE_WAKEUP (API 20+): turns the screen on, and does nothing when it is on
#: (unlike KEYCODE_POWER, which would turn an awake screen off).
KEYCODE_WAKEUP = 224
#: A frame counts as black when fewer than this fraction of its pixels are brighter than _BLACK_LEVEL:
#: screen-off captures are all zeros; dark-mode backgrounds (#121212 = 18) stay well above the level.
_BLACK_FRACTION = 0.005
_BLACK_LEVEL = 8
# PowerManagerInternal WAKEFULNESS_* values, for builds that print the number.
_WAKEFULNESS_CODES = {"0": "Asleep", "1": "Awake", "2": "Dreaming", "3": "Dozing"}
# Keyguard lines of `dumpsys window [policy]` across Android versions (AOSP PhoneWindowManager,
# KeyguardServiceDelegate and KeyguardStateMonitor dumps; appium-adb's lockmgmt reads the same).
_KEYGUARD_PATTERNS = (
    re.compile(r"KeyguardServiceDelegate\b[^\n]*\n(?:[ \t]+\S[^\n]*\n)*?[ \t]+showing=(true|false)"),  # Android 5+
    re.compile(r"\bisStatusBarKeyguard=(true|false)"),  # Android 8-9
    re.compile(r"\bmShowingLockscreen=(true|false)"),  # up to Android 7
    re.compile(r"KeyguardStateMonitor\b[^\n]*\n(?:[ \t]+\S[^\n]*\n)*?[ \t]+mIsShowing=(true|false)"),
    re.compile(r"\bmDreamingLockscreen=(true)"),  # a screen saver over the lock screen
)


def parse_wakefulness(dumpsys_power: str) -> str | None:
    """The power state in ``dumpsys power`` output: "Awake", "Asleep", "Dozing" or "Dreaming"; None if absent.

    Read from ``mWakefulness=`` (Android 4.2+; some builds print ``getWakefulnessLocked()=`` or a number),
    else ``Display Power: state=ON|OFF|DOZE``, else the pre-4.2 ``mScreenOn=``.
    """
    match = re.search(r"(?:mWakefulness|getWakefulnessLocked\(\))=(\w+)", dumpsys_power)
    if match is not None:
        value = match.group(1)
        return _WAKEFULNESS_CODES.get(value, value.capitalize())
    match = re.search(r"Display Power: state=(\w+)", dumpsys_power)
    if match is not None:
        display = match.group(1).upper()
        return "Awake" if display == "ON" else "Dozing" if display.startswith("DOZE") else "Asleep"
    match = re.search(r"\bmScreenOn=(true|false)", dumpsys_power)
    if match is not None:
        return "Awake" if match.group(1) == "true" else "Asleep"
    return None


def parse_keyguard_showing(dumpsys_window: str) -> bool | None:
    """Whether ``dumpsys window [policy]`` output says the lock screen shows; None when it has no keyguard lines.

    Understands ``KeyguardServiceDelegate`` ... ``showing=`` (Android 5+), ``isStatusBarKeyguard=`` (8-9),
    ``mShowingLockscreen=`` (up to 7), ``KeyguardStateMonitor`` ... ``mIsShowing=`` and ``mDreamingLockscreen=``.
    """
    found = [match.group(1) == "true" for p in _KEYGUARD_PATTERNS if (match := p.search(dumpsys_window))]
    return any(found) if found else None


def is_black(image: Image.Image) -> bool:
    """True when (nearly) every pixel is black, as in a capture of a phone whose screen is off."""
    histogram = image.convert("L").histogram()
    return sum(histogram[_BLACK_LEVEL + 1 :]) <= _BLACK_FRACTION * image.width * image.height


class ScreenGuard:
    """Keeps a phone's screen usable for the driver: awake and past a non-secure lock screen."""

    def __init__(self, driver: AdbDriver) -> None:
        self.driver = driver
        self.credential_lock = False
        """Set once a PIN/pattern lock was met: every capture then checks that it is gone."""

    def wake_at_open(self) -> None:
        state = self._wakefulness()
        if state is not None and state != "Awake":
            self._wake_up()
            log.info("%s was %s (screen off): woke it with KEYCODE_WAKEUP", self.driver.serial, state.lower())
        self._unlock()

    def recover(self, image: Image.Image, how: str) -> tuple[Image.Image, str]:
        """A black frame (or a phone met with a PIN lock): wake and unlock if it is asleep, then capture again."""
        if self.credential_lock:
            self._unlock()  # raises while the PIN/pattern lock is still up
            return self.driver._call("taking a screenshot", self.driver._capture)
        state = self._wakefulness()
        if state is None or state == "Awake":
            log.debug(
                "%s: black frame from an awake phone (%s); kept as it is", self.driver.serial, state or "state unknown"
            )
            return image, how
        self._wake_up()
        log.warning(
            "%s: the screenshot was black because the phone was %s (screen off): woke it with KEYCODE_WAKEUP",
            self.driver.serial,
            state.lower(),
        )
        self._unlock()
        deadline = time.monotonic() + self.driver.config.wake_timeout
        image, how = self.driver._call("taking a screenshot", self.driver._capture)
        while is_black(image) and time.monotonic() < deadline:  # the display takes a moment to light up
            time.sleep(0.1)
            image, how = self.driver._call("taking a screenshot", self.driver._capture)
        return image, how

    def _wakefulness(self) -> str | None:
        try:
            output = self.driver._run("reading the power state", [["dumpsys", "power"]])
        except CommandFailed as exc:
            log.debug("%s: power state unknown: %s", self.driver.serial, exc)
            return None
        return parse_wakefulness(output)

    def _keyguard_showing(self) -> bool:
        try:
            output = self.driver._run("reading the lock screen state", [["dumpsys", "window", "policy"]])
        except CommandFailed as exc:
            log.debug("%s: lock screen state unknown: %s", self.driver.serial, exc)
            return False
        return bool(parse_keyguard_showing(output))

    def _wake_up(self) -> None:
        self.driver._run("waking the phone", [["input", "keyevent", str(KEYCODE_WAKEUP)]])
        deadline = time.monotonic() + self.driver.config.wake_timeout
        while self._wakefulness() not in (None, "Awake") and time.monotonic() < deadline:
            time.sleep(0.1)

    def _unlock(self) -> None:
        """Dismiss a lock screen without a credential; DeviceLockedError when one is needed."""
        if not self._keyguard_showing():
            if self.credential_lock:
                log.info("%s: the lock screen is gone (unlocked by hand); going on", self.driver.serial)
                self.credential_lock = False
            return
        if not self.credential_lock:  # a known PIN lock is not poked again on every capture
            try:
                self.driver._run("dismissing the lock screen", [["wm", "dismiss-keyguard"]])  # Android 6+
                dismissed = self._keyguard_gone()
            except CommandFailed as exc:  # older Android: no such command, go straight to the swipe
                log.debug("%s: wm dismiss-keyguard failed: %s", self.driver.serial, exc)
                dismissed = False
            if dismissed:
                log.info("%s: dismissed the lock screen (wm dismiss-keyguard)", self.driver.serial)
                return
            width, height = self.driver.screen_size()
            swipe = [str(v) for v in (width // 2, height * 4 // 5, width // 2, height // 5, 300)]
            self.driver._run("swiping the lock screen up", [["input", "swipe", *swipe]])
            if self._keyguard_gone():
                log.info("%s: dismissed the lock screen with a swipe up", self.driver.serial)
                return
            self.credential_lock = True
        raise DeviceLockedError(
            f"{self.driver.serial} is locked with a PIN, pattern or password: the lock screen stayed after "
            "'wm dismiss-keyguard' and a swipe up, and vlagent will not guess a credential. Unlock the phone "
            "by hand and run again; for unattended runs set its screen lock to None or Swipe "
            "(Settings > Security > Screen lock) or keep it awake (Developer options > Stay awake)."
        )

    def _keyguard_gone(self) -> bool:
        deadline = time.monotonic() + self.driver.config.wake_timeout
        while self._keyguard_showing():
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.1)
        return True
