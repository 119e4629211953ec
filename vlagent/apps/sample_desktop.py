"""A sample Tk desktop application with a state file, for tests and scenarios.

Run it with ``python -m vlagent.apps.sample_desktop --state FILE``. The window shows three
panels at a fixed position and size (so screenshots are reproducible):

- **Sign in**: username, password and a "Log in" button. Any non-empty username with the
  password ``secret`` signs in; anything else shows an error.
- **Settings**: three checkboxes, a volume slider and a free-text "Note" field.
- **Shopping list**: a search box filtering a list; a click selects an item, a double
  click opens it, a right click marks it for the context menu.

After every change the app rewrites ``FILE`` atomically (temporary file + rename) with its
whole state as JSON: field contents, checkbox values, visible and selected items, the last
mouse click in screen coordinates, the last key with its modifiers, the focused widget, and
the screen rectangle of every named widget. A test proves that a click or a typed string reached the app by reading that
file, and can find where to click without hard-coding pixels.

This module must not import vlagent's heavy parts; it only needs the standard library
(tkinter). It is not a public API of vlagent: fields may be added, never renamed.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
import tkinter as tk
from pathlib import Path
from tkinter import font as tkfont
from typing import Any

__all__ = ["ITEMS", "PASSWORD", "TITLE", "SampleDesktopApp", "main"]

log = logging.getLogger(__name__)

TITLE = "vlagent sample desktop"
PASSWORD = "secret"
GEOMETRY = "960x560+0+0"
ITEMS: tuple[str, ...] = (
    "Apples",
    "Bananas",
    "Bread",
    "Butter",
    "Café au lait",
    "Carrots",
    "Cheese",
    "Coffee beans",
    "Eggs",
    "Flour",
    "Honey",
    "Lemons",
    "Milk",
    "Oranges",
    "Pasta",
    "Rice",
    "Tea",
    "Tomatoes",
    "Yoghurt",
    "买牛奶",
)
SETTINGS: tuple[tuple[str, str, bool], ...] = (
    ("dark_mode", "Dark mode", False),
    ("notifications", "Notifications", True),
    ("auto_save", "Auto-save", False),
)
# Families tried in order; the first installed one that covers CJK is preferred so that
# Unicode text is visible on screen (the state file is correct either way).
_FONT_FAMILIES = ("Noto Sans CJK SC", "Noto Sans SC", "WenQuanYi Zen Hei", "Noto Sans", "DejaVu Sans")
_BUTTON_NAMES = {1: "left", 2: "middle", 3: "right"}
# X11 modifier bits of a key event's state (Alt is Mod1 and Super is Mod4 on common keymaps).
_SHIFT, _CONTROL, _MOD1, _MOD4 = 0x1, 0x4, 0x8, 0x40


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Replace ``path`` with ``data`` so a reader never sees a half-written file."""
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, ensure_ascii=False, indent=1)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class SampleDesktopApp:
    """The application; ``root`` may be any Tk root (tests of the app itself pass their own)."""

    def __init__(self, root: tk.Tk, state_path: Path) -> None:
        self.root = root
        self.state_path = state_path
        self._seq = 0
        self._logged_in_user: str | None = None
        self._login_error: str | None = None
        self._login_attempts = 0
        self._opened: str | None = None
        self._context: str | None = None
        self._last_click: dict[str, Any] | None = None
        self._last_key: dict[str, Any] | None = None
        self._clicks = 0
        self._ready = False
        self._save_pending = False
        self._widgets: dict[str, tk.Widget] = {}

        root.title(TITLE)
        root.geometry(GEOMETRY)
        root.resizable(False, False)
        self._set_font()

        self.username = tk.StringVar(master=root, name="username")
        self.password = tk.StringVar(master=root, name="password")
        self.note = tk.StringVar(master=root, name="note")
        self.search = tk.StringVar(master=root, name="search")
        self.volume = tk.IntVar(master=root, value=30, name="volume")
        self.settings = {key: tk.BooleanVar(master=root, value=default, name=key) for key, _, default in SETTINGS}
        self.status = tk.StringVar(master=root, value="Please sign in.")
        self._visible: list[str] = list(ITEMS)

        self._build()
        for var in (self.username, self.password, self.note, self.volume, *self.settings.values()):
            var.trace_add("write", lambda *_: self.save())
        self.search.trace_add("write", lambda *_: self._filter())
        # Record every click wherever it lands: tests check where the pointer really went.
        root.bind_all("<ButtonPress>", self._on_click, add="+")
        root.bind_all("<KeyPress>", self._on_key, add="+")
        root.bind_all("<FocusIn>", lambda _e: self.save(), add="+")
        root.bind("<Configure>", lambda _e: self.save(), add="+")
        root.after(50, self._mark_ready)

    # --- layout -----------------------------------------------------------------------

    def _set_font(self) -> None:
        families = set(tkfont.families(self.root))
        family = next((f for f in _FONT_FAMILIES if f in families), None)
        if family is not None:
            for name in ("TkDefaultFont", "TkTextFont", "TkFixedFont"):
                tkfont.nametofont(name, root=self.root).configure(family=family, size=11)

    def _named(self, name: str, widget: tk.Widget) -> tk.Widget:
        self._widgets[name] = widget
        return widget

    def _build(self) -> None:
        root = self.root
        pad: dict[str, Any] = {"padx": 8, "pady": 4}

        login = tk.LabelFrame(root, text="Sign in", name="login_panel", width=300, height=540)
        login.place(x=10, y=10, width=300, height=540)
        tk.Label(login, text="Username").pack(anchor="w", **pad)
        self._named("username", tk.Entry(login, textvariable=self.username, name="username")).pack(fill="x", **pad)
        tk.Label(login, text="Password").pack(anchor="w", **pad)
        self._named("password", tk.Entry(login, textvariable=self.password, show="•", name="password")).pack(
            fill="x", **pad
        )
        login_button = tk.Button(login, text="Log in", command=self._login, name="login_button")
        self._named("login_button", login_button).pack(anchor="w", **pad)
        self._named("status", tk.Label(login, textvariable=self.status, name="status", wraplength=270)).pack(
            anchor="w", **pad
        )

        settings = tk.LabelFrame(root, text="Settings", name="settings_panel")
        settings.place(x=320, y=10, width=300, height=540)
        for key, label, _ in SETTINGS:
            check = tk.Checkbutton(settings, text=label, variable=self.settings[key], name=key, anchor="w")
            self._named(key, check).pack(fill="x", **pad)
        tk.Label(settings, text="Volume").pack(anchor="w", **pad)
        slider = tk.Scale(
            settings, from_=0, to=100, orient="horizontal", variable=self.volume, name="volume", length=260
        )
        self._named("volume", slider).pack(anchor="w", **pad)
        tk.Label(settings, text="Note").pack(anchor="w", **pad)
        self._named("note", tk.Entry(settings, textvariable=self.note, name="note")).pack(fill="x", **pad)

        shopping = tk.LabelFrame(root, text="Shopping list", name="list_panel")
        shopping.place(x=630, y=10, width=320, height=540)
        tk.Label(shopping, text="Search").pack(anchor="w", **pad)
        self._named("search", tk.Entry(shopping, textvariable=self.search, name="search")).pack(fill="x", **pad)
        self.listbox = tk.Listbox(shopping, name="items", height=10, exportselection=False, activestyle="none")
        self._named("items", self.listbox).pack(fill="x", **pad)
        self.listbox.bind("<<ListboxSelect>>", lambda _e: self.save())
        self.listbox.bind("<Double-Button-1>", self._open_item)
        self.listbox.bind("<Button-3>", self._context_item)
        for sequence in ("<Button-4>", "<Button-5>", "<MouseWheel>"):  # scrolling changes the visible rows
            self.listbox.bind(sequence, lambda _e: self.save(), add="+")
        self._fill_list()

    # --- behaviour --------------------------------------------------------------------

    def _login(self) -> None:
        self._login_attempts += 1
        user = self.username.get().strip()
        if user and self.password.get() == PASSWORD:
            self._logged_in_user, self._login_error = user, None
            self.status.set(f"Welcome, {user}!")
        else:
            self._logged_in_user = None
            self._login_error = "unknown user or wrong password"
            self.status.set("Unknown user or wrong password.")
        self.save()

    def _fill_list(self) -> None:
        self.listbox.delete(0, "end")
        for item in self._visible:
            self.listbox.insert("end", item)

    def _filter(self) -> None:
        needle = self.search.get().strip().casefold()
        self._visible = [item for item in ITEMS if needle in item.casefold()]
        self._fill_list()
        self.save()

    def _item_at(self, y: int) -> str | None:
        if not self._visible:
            return None
        index = self.listbox.nearest(y)
        bbox = self.listbox.bbox(index)
        if not bbox or not (bbox[1] <= y < bbox[1] + bbox[3]):
            return None
        return self._visible[index]

    def _open_item(self, event: tk.Event) -> None:  # type: ignore[type-arg]
        self._opened = self._item_at(event.y)
        self.save()

    def _context_item(self, event: tk.Event) -> None:  # type: ignore[type-arg]
        self._context = self._item_at(event.y)
        self.save()

    def _on_click(self, event: tk.Event) -> None:  # type: ignore[type-arg]
        if event.num not in _BUTTON_NAMES:  # 4/5 are wheel "buttons" on X11
            return
        self._clicks += 1
        widget = event.widget
        self._last_click = {
            "button": _BUTTON_NAMES[int(event.num)],
            "x": int(event.x_root),
            "y": int(event.y_root),
            "widget": widget.winfo_name() if isinstance(widget, tk.Misc) else str(widget),
            "count": self._clicks,
        }
        self.save()

    def _on_key(self, event: tk.Event) -> None:  # type: ignore[type-arg]
        keysym = str(event.keysym)
        if keysym.endswith(("_L", "_R")):  # a modifier on its own: wait for the real key
            return
        state = int(event.state)
        self._last_key = {
            "keysym": keysym,
            "shift": bool(state & _SHIFT),
            "ctrl": bool(state & _CONTROL),
            "alt": bool(state & _MOD1),
            "super": bool(state & _MOD4),
        }
        self.save()

    def _mark_ready(self) -> None:
        self.root.update_idletasks()
        # Without a window manager (Xvfb) nothing gives a new window the keyboard focus, and
        # Tk drops key events until it has it; a window mapped under a resting pointer never
        # gets the pointer-follows-focus event either. Take the focus explicitly.
        self.root.update()  # the window is mapped once pending events are handled
        self.root.focus_force()
        self.root.update()
        self._ready = True
        self._write()

    # --- state ------------------------------------------------------------------------

    def _rect(self, widget: tk.Misc) -> list[int]:
        return [widget.winfo_rootx(), widget.winfo_rooty(), widget.winfo_width(), widget.winfo_height()]

    def state(self) -> dict[str, Any]:
        """The whole application state as plain JSON data."""
        focus = self.root.focus_get()
        first, _last = self.listbox.yview()
        top = round(first * len(self._visible)) if self._visible else 0
        rows = []
        lx, ly = self.listbox.winfo_rootx(), self.listbox.winfo_rooty()
        for index, item in enumerate(self._visible):
            bbox = self.listbox.bbox(index)
            if bbox:  # only rows currently in view have a box
                rows.append([item, lx + bbox[0], ly + bbox[1], bbox[2], bbox[3]])
        selection = self.listbox.curselection()
        return {
            "version": 1,
            "seq": self._seq,
            "pid": os.getpid(),
            "ready": self._ready,
            "title": TITLE,
            "window": self._rect(self.root),
            "username": self.username.get(),
            "password_length": len(self.password.get()),
            "logged_in": self._logged_in_user is not None,
            "user": self._logged_in_user,
            "login_error": self._login_error,
            "login_attempts": self._login_attempts,
            "status": self.status.get(),
            "settings": {**{key: var.get() for key, var in self.settings.items()}, "volume": self.volume.get()},
            "note": self.note.get(),
            "search": self.search.get(),
            "visible_items": list(self._visible),
            "selected": self._visible[selection[0]] if selection else None,
            "opened": self._opened,
            "context_item": self._context,
            "list_top": top,
            "rows": rows,
            "last_click": self._last_click,
            "last_key": self._last_key,
            "focus": focus.winfo_name() if focus is not None else None,
            "widgets": {name: self._rect(widget) for name, widget in self._widgets.items()},
        }

    def save(self) -> None:
        """Write the state file once the current event is fully handled (called after every change).

        Several handlers react to one click (the widget's, then the recorder bound to "all");
        writing when Tk is idle again means a reader never sees half of an event's effects.
        """
        if self._ready and not self._save_pending:
            self._save_pending = True
            self.root.after_idle(self._write)

    def _write(self) -> None:
        self._save_pending = False
        self._seq += 1
        write_json_atomic(self.state_path, self.state())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vlagent.apps.sample_desktop", description=__doc__.split("\n")[0])
    parser.add_argument("--state", type=Path, required=True, help="JSON file rewritten after every change")
    parser.add_argument("--quit-after", type=float, default=0.0, help="exit after this many seconds (0: never)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    try:
        root = tk.Tk()
    except tk.TclError as exc:
        parser.exit(2, f"cannot open a window: {exc}\nIs DISPLAY set? (e.g. Xvfb :99 & export DISPLAY=:99)\n")
    app = SampleDesktopApp(root, args.state.resolve())
    if args.quit_after > 0:
        root.after(int(args.quit_after * 1000), root.destroy)
    log.info("sample desktop app running, state in %s", app.state_path)
    root.mainloop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
