"""The simulated phone and its driver: what a user (or a model) sees and can do on it."""

from __future__ import annotations

import json
import threading

import pytest
from PIL import Image, ImageChops, ImageDraw, ImageStat

from vlagent.actions import Click, Done, Key, OpenApp, Scroll, Swipe, Type, Wait
from vlagent.drivers import check_driver, open_driver
from vlagent.drivers.sim import SimDriver, SimPhone, create_driver
from vlagent.drivers.sim.catalog import Element
from vlagent.drivers.sim.render import paint
from vlagent.drivers.sim.world import SETTINGS_ROWS
from vlagent.errors import ActionNotSupportedError, ConfigError


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def tap(phone: SimPhone, label: str) -> None:
    point = phone.locate(label)
    assert point is not None, f"{label!r} not on screen; visible: {phone.text_on_screen()}"
    phone.tap(*point)


def brightness(phone: SimPhone) -> float:
    return sum(ImageStat.Stat(phone.render().convert("L")).mean)


def test_driver_conforms_and_frames_carry_device_facts() -> None:
    driver = SimDriver()
    check_driver(driver)
    frame = driver.screenshot()
    assert frame.size == (1080, 2400) == driver.screen_size()
    assert frame.image.mode == "RGB" and frame.image.size == (1080, 2400)
    assert dict(frame.device) == {"serial": "sim-0", "density": "420", "model": "vlagent-sim"}


def test_open_driver_parses_the_layout_seed() -> None:
    driver = open_driver("sim:3", transition_delay=0.0)
    assert isinstance(driver, SimDriver) and driver.phone.seed == 3
    assert create_driver(None, seed=2, serial="sim-7").phone.serial == "sim-7"
    with pytest.raises(ConfigError, match="integer layout seed"):
        open_driver("sim:abc")
    with pytest.raises(ConfigError):
        create_driver(None, colour="red")


def test_home_screen_lists_apps_that_open_by_label_or_package() -> None:
    phone = SimPhone()
    assert phone.screen == "home" and phone.current_app == "com.android.launcher3"
    for label in ("Settings", "Notes", "Contacts", "Camera", "Clock", "Browser"):
        assert label in phone.text_on_screen()
    packages = phone.packages()
    assert packages["com.android.settings"] == "Settings" and packages["com.vlagent.notes"] == "Notes"
    assert phone.open_app("notes") and phone.current_app == "com.vlagent.notes"
    assert phone.open_app("com.android.contacts") and phone.screen == "contacts"
    assert not phone.open_app("Spreadsheet") and phone.screen == "contacts"
    tap(phone, "Home")
    tap(phone, "Browser")
    assert phone.screen == "browser" and "No internet connection" not in phone.text_on_screen()


def test_tapping_a_toggle_row_flips_it_and_the_status_bar_shows_wifi() -> None:
    phone = SimPhone()
    phone.open_app("Settings")
    before = phone.render()
    assert phone.toggles["wifi"] is False
    tap(phone, "Wi-Fi")
    assert phone.toggles["wifi"] is True
    after = phone.render()
    status = (0, 0, 1080, 84)
    assert ImageChops.difference(before.crop(status), after.crop(status)).getbbox() is not None
    tap(phone, "Wi-Fi")
    assert phone.toggles["wifi"] is False
    assert phone.render().tobytes() == before.tobytes()  # same state, same pixels


def test_dark_mode_darkens_every_screen() -> None:
    phone = SimPhone()
    light = {name: brightness(phone) for name in ("Settings", "Notes") if phone.open_app(name)}
    phone.set_toggle("dark_mode", True)
    for name, value in light.items():
        phone.open_app(name)
        assert brightness(phone) < value / 3, name


def test_settings_is_longer_than_the_screen_and_scrolling_reveals_lower_rows() -> None:
    phone = SimPhone()
    phone.open_app("Settings")
    assert len(SETTINGS_ROWS) >= 20
    first = phone.text_on_screen()
    assert "Wi-Fi" in first and "Dark mode" not in first and "About phone" not in first
    phone.scroll("down")
    assert "Dark mode" in phone.text_on_screen() and "Wi-Fi" not in phone.text_on_screen()
    phone.scroll("down", amount=3)
    assert "About phone" in phone.text_on_screen()
    phone.scroll("up", amount=5)
    assert phone.text_on_screen() == first
    # finger moves up => content moves up => lower rows come in
    phone.swipe(540, 1800, 540, 600)
    assert "Dark mode" in phone.text_on_screen()
    phone.swipe(540, 600, 540, 1800)
    assert phone.text_on_screen() == first


def test_a_short_swipe_is_a_tap() -> None:
    phone = SimPhone()
    x, y = phone.locate("Notes") or (0, 0)
    phone.swipe(x, y, x + 5, y + 5)
    assert phone.screen == "notes"


def test_back_home_and_recents_navigate() -> None:
    phone = SimPhone()
    phone.open_app("Notes")
    tap(phone, "New note")
    assert phone.screen == "note_editor"
    phone.press_key("back")
    assert phone.screen == "notes"
    phone.press_key("back")
    assert phone.screen == "home"
    phone.press_key("back")
    assert phone.screen == "home"
    phone.open_app("Contacts")
    tap(phone, "Add contact")
    phone.press_key("home")
    assert phone.screen == "home" and phone.current_app == "com.android.launcher3"
    phone.press_key("app_switch")
    assert phone.screen == "recents" and phone.text_on_screen()[:2] == ["Contacts", "Notes"]
    tap(phone, "Notes")
    assert phone.screen == "notes"
    tap(phone, "Navigate up")
    assert phone.screen == "home"


def test_typing_needs_focus_and_the_keyboard_appears_with_it() -> None:
    phone = SimPhone()
    phone.open_app("Notes")
    tap(phone, "New note")
    phone.type_text("lost")
    assert phone.fields == {"note_text": ""} and phone.focused_field is None
    assert phone.locate("q") is None
    tap(phone, "Note text")
    assert phone.focused_field == "note_text" and phone.keyboard_shown
    for key in ("h", "i", "space", "x", "backspace", "."):
        tap(phone, key)
    assert phone.fields["note_text"] == "hi ."
    phone.press_key("back")  # hides the keyboard first, like Android
    assert phone.screen == "note_editor" and phone.focused_field is None
    tap(phone, "Note text")
    tap(phone, "enter")
    assert phone.screen == "notes" and phone.notes[-1] == "hi ."


@pytest.mark.parametrize(
    "text",
    ["买牛奶 🥛 café", "Ünïcödé — ñ", "👩‍👩‍👧 family", "e\u0301 combining", "שלום עולם", "line one\nline two"],
)
def test_unicode_notes_are_stored_exactly(text: str) -> None:
    driver = SimDriver()
    phone = driver.phone
    driver.execute(OpenApp(name="Notes"))
    tap(phone, "New note")
    tap(phone, "Note text")
    driver.execute(Type(text=text, submit=True))
    assert phone.notes[-1] == text and phone.screen == "notes"
    driver.screenshot()  # renders (glyphs may be boxes, state stays exact)


def test_contact_form_saves_name_and_phone_and_requires_a_name() -> None:
    phone = SimPhone()
    phone.open_app("Contacts")
    tap(phone, "Add contact")
    tap(phone, "Save")
    assert phone.screen == "contact_editor" and "Name is required" in phone.text_on_screen()
    tap(phone, "Name")
    phone.type_text("Zoë Ng")
    phone.press_key("enter")  # moves to the phone field
    assert phone.focused_field == "contact_phone"
    phone.type_text("+33 1 23 45 67 89")
    tap(phone, "Save")
    assert phone.screen == "contacts"
    assert (phone.contacts[-1].name, phone.contacts[-1].phone) == ("Zoë Ng", "+33 1 23 45 67 89")
    assert "Zoë Ng" in phone.text_on_screen()


def test_transition_delay_shows_an_intermediate_frame_until_the_clock_passes_it() -> None:
    clock = FakeClock()
    phone = SimPhone(transition_delay=0.5, clock=clock)
    reference = SimPhone()
    home = phone.render()
    phone.open_app("Settings")
    reference.open_app("Settings")
    settled = reference.render()
    assert phone.in_transition
    mid = phone.render()
    assert mid.tobytes() not in (home.tobytes(), settled.tobytes())
    clock.now += 0.3
    assert phone.render().tobytes() == mid.tobytes()
    clock.now += 0.3
    assert not phone.in_transition
    assert phone.render().tobytes() == settled.tobytes()
    phone.tap(*(phone.locate("Wi-Fi") or (0, 0)))  # same screen: no transition
    assert not phone.in_transition


def test_layout_seeds_move_icons_and_rows_deterministically() -> None:
    canonical, shuffled, again = SimPhone(seed=0), SimPhone(seed=5), SimPhone(seed=5)
    assert canonical.locate("Settings") != shuffled.locate("Settings")
    assert shuffled.render().tobytes() == again.render().tobytes()
    assert canonical.settings_order() != shuffled.settings_order()
    assert sorted(canonical.settings_order()) == sorted(shuffled.settings_order())
    for phone in (canonical, shuffled):
        phone.open_app("Settings")
        assert "Dark mode" not in phone.text_on_screen()


def test_frames_are_cached_per_state_and_copies_are_safe_to_edit() -> None:
    phone = SimPhone()
    first = phone.render()
    first.paste((255, 0, 0), (0, 0, 500, 500))
    assert phone.render().getpixel((10, 300)) != (255, 0, 0)
    assert phone.render(copy=False) is phone.render(copy=False)
    version = phone.version
    phone.render()
    assert phone.version == version


def test_screenshots_share_the_rendered_screen_until_one_is_edited() -> None:
    # A 1080x2400 screen is ~10 MB and an episode holds one per step: a capture must not copy it.
    driver = SimDriver()
    first, second = driver.screenshot().image, driver.screenshot().image
    assert first.im is second.im is driver.phone.render(copy=False).im
    ImageDraw.Draw(first).rectangle((0, 0, 99, 99), fill=(255, 0, 0))  # drawing copies first
    assert first.getpixel((10, 10)) == (255, 0, 0)
    assert second.getpixel((10, 10)) != (255, 0, 0)
    assert driver.screenshot().image.getpixel((10, 10)) != (255, 0, 0)
    with pytest.raises(ValueError, match="readonly"):  # raw pixel access cannot reach the shared screen
        second.load()[10, 10] = (0, 255, 0)  # type: ignore[index]
    assert driver.phone.render(copy=False).getpixel((10, 10)) != (0, 255, 0)


def test_a_popup_dims_the_screen_behind_it_as_a_blend_with_black() -> None:
    size = (1080, 2400)
    wallpaper = Element("wallpaper", "Wallpaper", (0, 0, *size))  # a gradient: many grey levels
    scrim = Element("scrim", "Dismiss popup", (0, 0, *size))
    dimmed = paint(*size, 1.0, [wallpaper, scrim], dark=False)
    expected = Image.blend(paint(*size, 1.0, [wallpaper], dark=False), Image.new("RGB", size), 0.5)
    assert dimmed.tobytes() == expected.tobytes()


def test_concurrent_taps_and_renders_keep_state_consistent() -> None:
    phone = SimPhone()
    phone.open_app("Settings")
    x, y = phone.locate("Bluetooth") or (0, 0)
    start = phone.version
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            for _ in range(25):
                phone.tap(x, y)
                phone.render(copy=False)
        except BaseException as exc:  # surfaced by the assert below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert phone.version - start == 100 and phone.toggles["bluetooth"] is False


def test_snapshot_is_json_and_holds_the_whole_state() -> None:
    phone = SimPhone(seed=1)
    phone.open_app("Contacts")
    snap = json.loads(json.dumps(phone.snapshot()))
    assert snap["screen"] == "contacts" and snap["current_app"] == "com.android.contacts"
    assert snap["seed"] == 1 and {"name": "Alice Martin", "phone": "+1 555 0100"} in snap["contacts"]
    assert snap["toggles"]["wifi"] is False and "Contacts" in snap["text_on_screen"]


def test_driver_executes_every_phone_action() -> None:
    slept: list[float] = []
    driver = SimDriver(sleep=slept.append)
    phone = driver.phone
    driver.execute(Wait(seconds=1.5))
    assert slept == [1.5]
    driver.execute(Done())
    driver.execute(OpenApp(name="Settings"))
    driver.execute(Scroll(direction="down"))
    assert "Dark mode" in phone.text_on_screen()
    driver.execute(Swipe(x1=540, y1=600, x2=540, y2=2000))
    x, y = phone.locate("Wi-Fi") or (0, 0)
    driver.execute(Click(x=x, y=y, clicks=2))
    assert phone.toggles["wifi"] is False
    driver.execute(Click(x=x, y=y))
    assert phone.toggles["wifi"] is True
    driver.execute(Key(key="home"))
    assert phone.screen == "home"
    driver.execute(OpenApp(name="no such app"))  # logged, nothing happens
    assert phone.screen == "home"
    with pytest.raises(ActionNotSupportedError):
        driver.execute(Key(key="f5"))
