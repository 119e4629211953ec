"""The screens of the simulated phone: each state laid out as a flat list of elements.

``layout(phone)`` builds what is on screen now (lock screen, the app's screen, keyboard,
popup, status and navigation bars); one function per screen, found in a table, draws its
part. The same list drives rendering, hit-testing and the view hierarchy, so what is drawn
is what can be tapped. Taps are wired to the phone's own handlers; this module reads the
phone's state and must not change it.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING

from vlagent.drivers.sim.catalog import (
    APPBAR_H,
    APPS,
    BATTERY_PERCENT,
    CLOCK_TEXT,
    DATE_TEXT,
    HOME_CELL_H,
    HOME_COLS,
    HOME_TOP,
    KEY_H,
    KEY_ROWS,
    LOCK_LABELS,
    NAV_H,
    PIN_PROMPT,
    ROW_H,
    STATUS_H,
    UNLOCK_HINT,
    Box,
    Element,
    Popup,
    avatar_color,
)

if TYPE_CHECKING:
    from vlagent.drivers.sim.world import SimPhone

__all__ = ["layout", "status_element"]


def layout(p: SimPhone) -> list[Element]:
    """Every element of the phone's current state, in drawing order (nothing while the screen is off)."""
    out: list[Element] = []
    if not p.awake:  # nothing is visible or tappable on a dark screen
        return out
    if p.keyguard_shown:
        _keyguard(p, out)
        return out
    screen = p.screen
    builder = _SCREENS.get(screen)
    if builder is not None:
        builder(p, out)
    else:
        _info(p, out, screen)
    if p._focused is not None:
        _keyboard(p, out)
    if p._popup is not None:
        _popup(p, out, p._popup)
    out.append(status_element(p))
    _nav(p, out)
    return out


def status_element(p: SimPhone) -> Element:
    """The status bar; ``subtitle`` lists its icons right to left."""
    on = p._toggles
    icons = (
        ["airplane"] if on["airplane_mode"] else [w for w, k in (("wifi", "wifi"), ("signal", "mobile_data")) if on[k]]
    )
    icons += [w for w, k in (("bluetooth", "bluetooth"), ("dnd", "do_not_disturb")) if on[k]]
    box = (0, 0, p.width, p._px(STATUS_H))
    return Element("status", "Status bar", box, (CLOCK_TEXT, f"{BATTERY_PERCENT}%"), subtitle=" ".join(icons))


def _nav(p: SimPhone, out: list[Element]) -> None:
    top = p.height - p._px(NAV_H)
    out.append(Element("panel", "Navigation bar", (0, top, p.width, p.height), opaque=True, role="nav"))
    third = p.width // 3
    actions = (
        ("Back", p._back),
        ("Home", lambda: p._go(["home"])),
        ("Recents", lambda: p._push("recents")),
    )
    for i, (label, fn) in enumerate(actions):
        if label == "Recents" and p.screen == "recents":
            fn = p._back
        out.append(Element("nav", label, (i * third, top, (i + 1) * third, p.height), on_tap=fn))


def _appbar(p: SimPhone, out: list[Element], title: str, action: tuple[str, Callable[[], None]] | None = None) -> None:
    top, bottom = p._px(STATUS_H), p._px(STATUS_H + APPBAR_H)
    out.append(Element("panel", "App bar", (0, top, p.width, bottom), opaque=True, role="appbar"))
    out.append(Element("icon_button", "Navigate up", p._box(0, STATUS_H, 150, STATUS_H + APPBAR_H), on_tap=p._back))
    out.append(Element("title", title, p._box(150, STATUS_H, 800, STATUS_H + APPBAR_H), (title,), size=60))
    if action is not None:
        label, fn = action
        box = p._box(820, STATUS_H + 28, 1040, STATUS_H + APPBAR_H - 28)
        out.append(Element("text_button", label, box, (label,), on_tap=fn, size=46))


def _list_rows(p: SimPhone, out: list[Element], rows: list[Element], screen: str) -> None:
    """Place full-width rows (built at y=0 upward) in the scrolled viewport."""
    top, bottom = p._list_viewport()
    if p._focused is not None:
        bottom = p._keyboard_top()
    offset = p._scroll.get(screen, 0)
    y = top - offset
    for row in rows:
        height = row.box[3] - row.box[1]
        box = (row.box[0], y, row.box[2], y + height)
        y += height
        if box[3] <= top or box[1] >= bottom:
            continue
        clip = (box[0], max(box[1], top), box[2], min(box[3], bottom))
        visible = top <= (box[1] + box[3]) // 2 < bottom
        out.append(
            Element(
                row.kind,
                row.label,
                box,
                row.texts,
                row.on_tap,
                clip,
                visible,
                text=row.text,
                subtitle=row.subtitle,
                value=row.value,
                color=row.color,
                size=row.size,
                on_long_press=row.on_long_press,
            )
        )


def _home(p: SimPhone, out: list[Element]) -> None:
    out.append(Element("wallpaper", "Wallpaper", (0, 0, p.width, p.height)))
    out.append(Element("text", CLOCK_TEXT, p._box(0, 250, 1080, 480), (CLOCK_TEXT,), size=190, role="on_wallpaper"))
    out.append(Element("text", DATE_TEXT, p._box(0, 480, 1080, 560), (DATE_TEXT,), size=46, role="on_wallpaper"))
    cell_w = 1080 / HOME_COLS
    for app in APPS:
        cell = p._home_cells[app.package]
        col, row = cell % HOME_COLS, cell // HOME_COLS
        x0, y0 = col * cell_w, HOME_TOP + row * HOME_CELL_H
        box = p._box(x0 + 10, y0, x0 + cell_w - 10, y0 + HOME_CELL_H - 20)
        info = Popup("app_info", app.label, app.package)
        out.append(
            Element(
                "icon",
                app.label,
                box,
                (app.label,),
                on_tap=partial(p._launch, app),
                color=app.color,
                on_long_press=partial(p._open_popup, info),
            )
        )


def _keyguard(p: SimPhone, out: list[Element]) -> None:
    """The lock screen, drawn over everything: wallpaper, clock, date, and how to unlock."""
    out.append(Element("wallpaper", "Lock screen", (0, 0, p.width, p.height), opaque=True))
    out.append(status_element(p))
    out.append(Element("padlock", "Locked", p._box(490, 180, 590, 290)))
    out.append(Element("text", CLOCK_TEXT, p._box(0, 420, 1080, 700), (CLOCK_TEXT,), size=230, role="on_wallpaper"))
    out.append(Element("text", DATE_TEXT, p._box(0, 700, 1080, 790), (DATE_TEXT,), size=50, role="on_wallpaper"))
    if p._bouncer:
        out.append(
            Element("text", PIN_PROMPT, p._box(0, 1100, 1080, 1220), (PIN_PROMPT,), size=64, role="on_wallpaper")
        )
    else:
        hint = p._box(0, 2080, 1080, 2180)
        out.append(Element("text", UNLOCK_HINT, hint, (UNLOCK_HINT,), size=44, role="on_wallpaper"))


def _recents(p: SimPhone, out: list[Element]) -> None:
    out.append(Element("panel", "Recents", (0, 0, p.width, p.height), role="recents"))
    labels = {app.package: app for app in APPS}
    if not p._recents:
        out.append(Element("text", "No recent items", p._box(0, 1000, 1080, 1100), ("No recent items",), role="muted"))
        return
    for i, package in enumerate(p._recents[:4]):
        app = labels[package]
        y0 = 200 + i * 420
        box = p._box(90, y0, 990, y0 + 380)
        out.append(Element("card", app.label, box, (app.label,), on_tap=partial(p._launch, app), color=app.color))
    out.append(Element("button", "Clear all", p._box(390, 1960, 690, 2080), ("Clear all",), on_tap=p._clear_recents))


def _settings(p: SimPhone, out: list[Element]) -> None:
    rows = []
    for row in p._settings_rows:
        if row.toggle:
            on = p._toggles[row.key]
            sub = "On" if on else "Off"
            tap = partial(p._toggle, row.key)
            box = (0, 0, p.width, p._px(ROW_H))
            rows.append(Element("row", row.label, box, (row.label, sub), tap, subtitle=sub, value=on))
        else:
            subtitle = f"Screen lock: {LOCK_LABELS[p.screen_lock]}" if row.key == "security" else row.subtitle
            texts = (row.label, subtitle)
            rows.append(Element("row", row.label, (0, 0, p.width, p._px(ROW_H)), texts, subtitle=subtitle))
    _list_rows(p, out, rows, "settings")
    _appbar(p, out, "Settings")


def _notes(p: SimPhone, out: list[Element]) -> None:
    rows = []
    for i, note in enumerate(p._notes):
        first, _, rest = note.partition("\n")
        texts = (first, rest.split("\n")[0]) if rest else (first,)
        tap = partial(p._open_note, i)
        hold = partial(p._open_popup, Popup("note", first, i))
        box = (0, 0, p.width, p._px(ROW_H))
        sub = texts[-1] if rest else ""
        rows.append(Element("row", first, box, texts, tap, subtitle=sub, on_long_press=hold))
    _list_rows(p, out, rows, "notes")
    if not p._notes:
        out.append(Element("text", "No notes yet", p._box(0, 1000, 1080, 1100), ("No notes yet",), role="muted"))
    _appbar(p, out, "Notes")
    _fab(p, out, "New note", lambda: p._open_note(None))


def _fab(p: SimPhone, out: list[Element], label: str, fn: Callable[[], None]) -> None:
    bottom = p.height - p._px(NAV_H + 48)
    box = (p._px(560), bottom - p._px(150), p._px(1032), bottom)
    out.append(Element("button", label, box, (label,), on_tap=fn, text="+  " + label, size=46))


def _note_editor(p: SimPhone, out: list[Element]) -> None:
    _appbar(p, out, "Edit note" if p._editing_note is not None else "New note", ("Save", p._save_note))
    bottom = (p._keyboard_top() if p._focused else p.height - p._px(NAV_H)) - p._px(48)
    _field(p, out, "note_text", "Note text", "Write your note here", (p._px(48), p._px(360), p._px(1032), bottom))


def _field(p: SimPhone, out: list[Element], name: str, label: str, placeholder: str, box: Box) -> None:
    value = p._fields.get(name, "")
    texts = (label, value) if value else (label, placeholder)
    out.append(
        Element(
            "field",
            label,
            box,
            texts,
            on_tap=partial(p._focus, name),
            text=value,
            subtitle=placeholder,
            focused=p._focused == name,
        )
    )


def _contacts(p: SimPhone, out: list[Element]) -> None:
    rows = []
    for contact in sorted(p._contacts, key=lambda c: c.name.casefold()):
        texts = (contact.name, contact.phone)
        box = (0, 0, p.width, p._px(ROW_H))
        color = avatar_color(contact.name)
        rows.append(Element("row", contact.name, box, texts, subtitle=contact.phone, color=color))
    _list_rows(p, out, rows, "contacts")
    _appbar(p, out, "Contacts")
    _fab(p, out, "Add contact", p._open_contact_form)


def _contact_editor(p: SimPhone, out: list[Element]) -> None:
    _appbar(p, out, "New contact", ("Save", p._save_contact))
    _field(p, out, "contact_name", "Name", "First and last name", p._box(48, 380, 1032, 530))
    _field(p, out, "contact_phone", "Phone", "Phone number", p._box(48, 660, 1032, 810))
    if p._form_error:
        out.append(Element("text", p._form_error, p._box(48, 850, 1032, 920), (p._form_error,), role="error", size=40))


def _info(p: SimPhone, out: list[Element], screen: str) -> None:
    app = next(a for a in APPS if a.screen == screen)
    if screen == "camera":
        out.append(Element("panel", "Viewfinder", (0, 0, p.width, p.height), role="camera"))
        box = p._box(430, 1880, 650, 2100)
        out.append(Element("shutter", "Shutter", box, on_tap=p._shutter))
        return
    _appbar(p, out, app.label)
    lines: list[tuple[str, int, str]]
    if screen == "clock":
        lines = [(CLOCK_TEXT, 190, "text"), (DATE_TEXT, 46, "muted"), ("Alarm 7:00 AM", 46, "text")]
    elif screen == "browser":
        online = not p._toggles["airplane_mode"] and (p._toggles["wifi"] or p._toggles["mobile_data"])
        lines = [("https://start.vlagent.test", 40, "muted")]
        lines += [("Welcome to the start page", 50, "text")] if online else [("No internet connection", 50, "error")]
    else:
        lines = [(f"{p._photos} photos" if p._photos else "No photos yet", 50, "muted")]
        for i in range(min(p._photos, 12)):
            x0, y0 = 48 + (i % 3) * 336, 560 + (i // 3) * 336
            out.append(Element("photo", f"Photo {i + 1}", p._box(x0, y0, x0 + 312, y0 + 312), color=app.color))
    y = 420.0
    for text, size, role in lines:
        height = size * 1.6
        out.append(Element("text", text, p._box(0, y, 1080, y + height), (text,), size=size, role=role))
        y += height + 20


def _popup(p: SimPhone, out: list[Element], popup: Popup) -> None:
    """A dimmed screen (a tap on it dismisses, as on Android) under a centred card."""
    out.append(Element("scrim", "Dismiss popup", (0, 0, p.width, p.height), on_tap=p._close_popup))
    if popup.kind == "note":
        label, lines = "Note actions", ["Note actions"]
        buttons: list[tuple[str, Callable[[], None]]] = [
            ("Cancel", p._close_popup),
            ("Delete", partial(p._delete_note, int(popup.target))),
        ]
    else:
        label, lines = "App info", ["App info", str(popup.target)]
        buttons = [("Close", p._close_popup)]
    height = 150 + 70 * len(lines) + 170
    top = (p.height / p._u - height) / 2
    texts = (popup.title, *lines)
    card = p._box(90, top, 990, top + height)
    out.append(Element("popup", label, card, texts, opaque=True, text=popup.title, subtitle="\n".join(lines)))
    x = 960.0 - 260 * len(buttons) + 20  # buttons sit at the bottom right, as in Material dialogs
    for text, fn in buttons:
        box = p._box(x, top + height - 150, x + 240, top + height - 30)
        out.append(Element("text_button", text, box, (text,), on_tap=fn, size=46))
        x += 260


def _keyboard(p: SimPhone, out: list[Element]) -> None:
    top = p._keyboard_top()
    out.append(Element("panel", "Keyboard", (0, top, p.width, p.height - p._px(NAV_H)), opaque=True, role="keyboard"))
    y = 12
    for keys in KEY_ROWS:
        x = (1080 - 108 * len(keys)) / 2
        for ch in keys:
            _key(p, out, ch, ch, partial(p.type_text, ch), x, y, 108)
            x += 108
        y += KEY_H
    _key(p, out, "backspace", "⌫", lambda: p.press_key("backspace"), 1080 - 162, y - KEY_H, 150)
    _key(p, out, ",", ",", lambda: p.type_text(","), 12, y, 150)
    _key(p, out, "space", "space", lambda: p.type_text(" "), 174, y, 600)
    _key(p, out, ".", ".", lambda: p.type_text("."), 786, y, 120)
    _key(p, out, "enter", "⏎", p._enter, 918, y, 150)


def _key(
    p: SimPhone, out: list[Element], label: str, text: str, fn: Callable[[], None], x: float, y: float, w: float
) -> None:
    top = p._keyboard_top()
    x0, y0 = p._px(x + 6), top + p._px(y + 8)
    out.append(Element("key", label, (x0, y0, x0 + p._px(w - 12), y0 + p._px(KEY_H - 16)), on_tap=fn, text=text))


#: The screens with a layout of their own; the decorative apps share ``_info``.
_SCREENS: dict[str, Callable[[SimPhone, list[Element]], None]] = {
    "home": _home,
    "recents": _recents,
    "settings": _settings,
    "notes": _notes,
    "note_editor": _note_editor,
    "contacts": _contacts,
    "contact_editor": _contact_editor,
}
