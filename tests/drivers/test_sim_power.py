"""The simulated phone's screen power and lock screen, directly and over the adb protocol."""

from __future__ import annotations

import pytest
from adbutils import AdbClient

from vlagent.drivers.sim.adb_server import SimAdbServer
from vlagent.drivers.sim.world import PIN_PROMPT, UNLOCK_HINT, SimPhone


def test_a_sleeping_phone_is_black_and_deaf() -> None:
    phone = SimPhone()
    before = phone.snapshot()
    settings = phone.locate("Settings")
    assert settings is not None
    phone.sleep()
    frame = phone.render()
    assert frame.size == (1080, 2400) and frame.mode == "RGB"
    assert frame.getbbox() is None  # every pixel black
    assert phone.text_on_screen() == [] and phone.locate("Settings") is None
    phone.tap(*settings)
    phone.swipe(540, 1800, 540, 600)
    phone.press_key("home")
    phone.press_key("app_switch")
    phone.scroll("down")
    assert phone.snapshot()["stack"] == before["stack"] and phone.snapshot()["power"] == "Asleep"


def test_waking_shows_the_lock_screen_that_a_swipe_up_removes() -> None:
    phone = SimPhone()
    assert phone.screen_lock == "swipe"  # the default, as on a new Android phone
    assert phone.open_app("Settings")
    phone.press_key("power")
    assert not phone.awake and phone.keyguard_shown
    phone.press_key("wakeup")
    assert phone.awake and phone.keyguard_shown
    assert UNLOCK_HINT in phone.text_on_screen() and "Wi-Fi" not in phone.text_on_screen()
    phone.tap(540, 1200)  # taps on the lock screen do nothing
    phone.swipe(540, 800, 540, 200)  # a swipe up from the upper half is not an unlock
    phone.swipe(540, 1900, 700, 1850)  # nor is a short sideways one
    assert phone.keyguard_shown and not phone.toggles["wifi"]
    phone.swipe(540, 1900, 540, 900)
    assert not phone.keyguard_shown and phone.screen == "settings"
    assert "Wi-Fi" in phone.text_on_screen()


def test_power_key_toggles_and_no_lock_phone_wakes_unlocked() -> None:
    phone = SimPhone(screen_lock="none")
    phone.press_key("power")
    assert not phone.awake and not phone.keyguard_shown
    phone.press_key("power")
    assert phone.awake and not phone.keyguard_shown
    phone.press_key("wakeup")  # waking an awake phone changes nothing
    assert phone.awake
    phone.press_key("sleep")
    assert not phone.awake


def test_a_pin_lock_cannot_be_dismissed() -> None:
    phone = SimPhone(screen_lock="pin")
    phone.sleep()
    phone.wake()
    assert phone.keyguard_secure and not phone.dismiss_keyguard()
    phone.swipe(540, 1900, 540, 900)
    assert phone.keyguard_shown and PIN_PROMPT in phone.text_on_screen()
    with pytest.raises(ValueError, match="screen_lock"):
        SimPhone(screen_lock="face")  # type: ignore[arg-type]


def test_settings_shows_the_screen_lock_type() -> None:
    phone = SimPhone(screen_lock="pin")
    assert phone.open_app("Settings")
    phone.scroll("down", amount=3)
    assert "Screen lock: PIN" in phone.text_on_screen()


@pytest.mark.parametrize(
    ("fmt", "line"),
    [
        ("delegate", "    KeyguardServiceDelegate\n      showing=true\n"),
        ("status_bar", "isStatusBarKeyguard=true"),
        ("lockscreen", "mShowingLockscreen=true"),
    ],
)
def test_adb_shell_reports_power_and_keyguard_like_android(adb_sim: SimAdbServer, fmt: str, line: str) -> None:
    device = adb_sim["sim-0"]
    device.keyguard_format = fmt  # type: ignore[assignment]
    shell = AdbClient(port=adb_sim.port).device("sim-0").shell
    assert "mWakefulness=Awake" in shell("dumpsys power") and "Display Power: state=ON" in shell("dumpsys power")
    assert line.replace("true", "false") in shell("dumpsys window policy")
    shell("input keyevent KEYCODE_SLEEP")
    assert not device.phone.awake
    assert "mWakefulness=Asleep" in shell("dumpsys power") and "Display Power: state=OFF" in shell("dumpsys power")
    assert line in shell("dumpsys window")  # the full dump holds the policy section too
    shell("input keyevent 224")
    assert device.phone.awake and device.phone.keyguard_shown
    shell("wm dismiss-keyguard")
    assert not device.phone.keyguard_shown
    shell("input keyevent 26")
    assert not device.phone.awake
