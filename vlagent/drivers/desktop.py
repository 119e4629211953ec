"""The desktop driver: capture a monitor with mss, act with pyautogui (and xdotool/xclip).

``open_driver("desktop")`` drives the primary monitor, ``open_driver("desktop:2")`` the
mss monitor with index 2 (index 0 is the bounding box of all monitors).

Coordinates and HiDPI. Three spaces are involved:

- *physical* pixels: what mss captures; the frame's image is in this space.
- *pointer units*: what the OS pointer API (pyautogui) and mss's monitor rectangles use.
  On X11 and on Windows (pyautogui makes the process DPI-aware) these are physical
  pixels; on macOS they are points, and a Retina capture has 2 physical pixels per point.
- *logical* pixels: the space of actions and of ``Frame.width/height``.

``scale`` is physical pixels per logical pixel (``Frame.scale``). By default it is detected
as captured pixels per pointer unit, so logical pixels *are* pointer units: 1.0 on X11
(toolkit scaling such as ``GDK_SCALE`` does not change X coordinates) and on Windows,
2.0 on a Retina Mac. Setting ``scale`` explicitly redefines the logical space; a logical
point is then sent to the pointer as ``x * scale / detected``. Either way a point chosen
on the image at physical ``(px, py)`` is clicked at logical ``(px / scale, py / scale)``
and lands where the image showed it. Wayland sessions without XWayland are not supported.

Typing. ``pyautogui.write`` silently drops non-ASCII characters, so text that is not
printable ASCII is pasted from the clipboard (``xclip`` on X11, which also reports when
the application has read it; pyperclip elsewhere). This replaces the clipboard's content.
``typing="xdotool"`` types it with ``xdotool type`` instead, which remaps a spare keycode
per character and can drop or repeat characters on a busy machine.

Safety. ``dry_run=True`` checks and records actions in ``journal`` without touching the
screen. ``allowed_regions`` (rects in frame coordinates) and ``allowed_windows`` (title
substrings, X11) refuse pointer actions elsewhere with ActionRefusedError; with
``allowed_windows`` typing and keys also need the focused window to match. pyautogui's
fail-safe (pointer in a screen corner aborts) is off by default for unattended runs and
on with ``failsafe=True``; when it fires, a UserError ends the run.

pyautogui's ``PAUSE`` (0.1 s after every call by default) and ``FAILSAFE`` are module
globals of pyautogui: opening a driver sets them for the whole process.

This module must not import mss, pyautogui or Xlib at import time (no DISPLAY needed to
import vlagent) and must not know about models or coordinate grids.
"""

from __future__ import annotations

import logging
import os
import select
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from types import MappingProxyType, ModuleType
from typing import Any, Literal

from PIL import Image

from vlagent.actions import Action, Click, Done, Key, Scroll, Swipe, Type, Wait, action_points, describe_action
from vlagent.drivers.base import DESKTOP_CAPABILITIES, BaseDriver, Capabilities
from vlagent.errors import (
    ActionNotSupportedError,
    ActionRefusedError,
    ConfigError,
    DeviceError,
    MissingExtraError,
    UserError,
    VlagentError,
)
from vlagent.frames import Frame

__all__ = ["DesktopConfig", "DesktopDriver", "Rect", "TypingMethod", "create_driver"]

log = logging.getLogger(__name__)

Rect = tuple[int, int, int, int]
"""(left, top, width, height) in logical frame coordinates."""
TypingMethod = Literal["auto", "pyautogui", "xdotool", "clipboard"]

_IS_X11 = sys.platform.startswith(("linux", "freebsd", "openbsd"))
_IS_MAC = sys.platform == "darwin"

# vlagent key names -> pyautogui key names (letters, digits and f-keys are the same).
_KEYS = {
    "enter": "enter",
    "escape": "esc",
    "page_up": "pageup",
    "page_down": "pagedown",
    "line_start": "home",
    "line_end": "end",
}
_MODIFIERS = {"ctrl": "ctrl", "alt": "alt", "shift": "shift", "super": "command" if _IS_MAC else "win"}


@dataclass(frozen=True)
class DesktopConfig:
    """Settings of one desktop driver; ``open_driver("desktop", **options)`` fills it."""

    monitor: int | None = None
    """mss monitor index; None = the primary monitor, 0 = all monitors together."""
    region: Rect | None = None
    """Capture and act only inside this rect (logical pixels relative to the monitor)."""
    scale: float | None = None
    """Physical pixels per logical pixel; None = detect (1.0 on X11)."""
    pause: float = 0.0
    """Seconds pyautogui sleeps after every call (pyautogui's own default is 0.1)."""
    failsafe: bool = False
    """Abort (UserError) when the pointer is in a screen corner, pyautogui's emergency stop."""
    dry_run: bool = False
    """Record and log actions in ``journal`` but do not perform them."""
    allowed_regions: tuple[Rect, ...] = ()
    """If set, pointer actions outside every one of these rects are refused."""
    allowed_windows: tuple[str, ...] = ()
    """If set, the target window's title must contain one of these (X11 only)."""
    typing: TypingMethod = "auto"
    """How to type text; auto = pyautogui for ASCII, else the clipboard (else xdotool)."""
    paste_timeout: float = 2.0
    """Seconds to wait for the application to read text pasted from the clipboard."""
    type_interval: float = 0.005
    """Seconds between typed characters."""
    scroll_clicks: int = 3
    """Wheel clicks per unit of Scroll.amount."""

    def __post_init__(self) -> None:
        if self.monitor is not None and self.monitor < 0:
            raise ConfigError(f"monitor index must be >= 0, got {self.monitor}")
        if self.scale is not None and not 0.25 <= self.scale <= 8:
            raise ConfigError(f"scale must be between 0.25 and 8, got {self.scale}")
        if self.pause < 0 or self.type_interval < 0 or self.paste_timeout <= 0:
            raise ConfigError("pause and type_interval must be >= 0, paste_timeout > 0")
        if not 1 <= self.scroll_clicks <= 100:
            raise ConfigError(f"scroll_clicks must be 1..100, got {self.scroll_clicks}")
        if self.typing not in ("auto", "pyautogui", "xdotool", "clipboard"):
            raise ConfigError(f"typing must be auto, pyautogui, xdotool or clipboard, got {self.typing!r}")
        for rect in (*self.allowed_regions, *((self.region,) if self.region else ())):
            if len(rect) != 4 or rect[2] <= 0 or rect[3] <= 0 or rect[0] < 0 or rect[1] < 0:
                raise ConfigError(f"a rect is (left, top, width, height) with positive size, got {rect!r}")
        if self.allowed_windows and not _IS_X11:
            raise ConfigError("allowed_windows needs an X11 desktop; use allowed_regions on this system")

    @classmethod
    def from_options(cls, options: dict[str, object]) -> DesktopConfig:
        """Build from loose options (CLI, YAML): lists become tuples, unknown names are an error."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ConfigError(f"unknown desktop option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        values: dict[str, Any] = dict(options)
        if values.get("region") is not None:
            values["region"] = _rect(values["region"])
        if "allowed_regions" in values:
            values["allowed_regions"] = tuple(_rect(r) for r in values["allowed_regions"])  # type: ignore[attr-defined]
        if isinstance(values.get("allowed_windows"), str):
            values["allowed_windows"] = (values["allowed_windows"],)
        elif "allowed_windows" in values:
            values["allowed_windows"] = tuple(str(t) for t in values["allowed_windows"])  # type: ignore[attr-defined]
        return cls(**values)


def _rect(value: object) -> Rect:
    try:
        left, top, width, height = (int(v) for v in value)  # type: ignore[attr-defined]
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"a rect is four integers (left, top, width, height), got {value!r}") from exc
    return (left, top, width, height)


def _inside(x: float, y: float, rect: Rect) -> bool:
    left, top, width, height = rect
    return left <= x < left + width and top <= y < top + height


@dataclass
class _Geometry:
    """Where the frame is on the pointer's screen and how big its pixels are."""

    left: float  # pointer units, top-left of the captured area
    top: float
    per_logical: float  # pointer units per logical pixel
    width: int  # logical size of the frame
    height: int
    box: dict[str, int] = field(default_factory=dict)  # mss grab rectangle (pointer units)

    def to_pointer(self, x: float, y: float) -> tuple[int, int]:
        return round(self.left + x * self.per_logical), round(self.top + y * self.per_logical)


class DesktopDriver(BaseDriver):
    """Drives one monitor of the local desktop. Open it with ``open_driver("desktop")``."""

    name = "desktop"
    _capabilities: Capabilities = DESKTOP_CAPABILITIES

    def __init__(self, config: DesktopConfig | None = None) -> None:
        self.config = config or DesktopConfig()
        self.journal: list[Action] = []
        """Every action accepted by ``execute`` (performed, or only recorded in dry-run)."""
        self._pyautogui: ModuleType | None = None
        self._xlib: Any = None  # Xlib display, opened only for allowed_windows
        self._clipboard: _X11Clipboard | None = None
        self._closed = False
        _check_display()
        mss = _import("mss", "mss", "Desktop screen capture")
        try:
            self._sct = mss.MSS()
        except Exception as exc:
            raise UserError(f"cannot open the screen for capture ({exc}). {_display_hint()}") from exc
        try:
            self._geometry, self.scale = self._measure()
            if not self.config.dry_run:
                self._pyautogui = self._input()
        except BaseException:
            self.close()
            raise
        self._meta = MappingProxyType(
            {
                "driver": "desktop",
                "monitor": str(self._monitor_index),
                "display": os.environ.get("DISPLAY", ""),
                "scale": f"{self.scale:g}",
                "dry_run": str(self.config.dry_run).lower(),
            }
        )
        log.info(
            "desktop driver: monitor %s, logical %dx%d, scale %g%s",
            self._monitor_index,
            self._geometry.width,
            self._geometry.height,
            self.scale,
            " (dry run)" if self.config.dry_run else "",
        )

    # --- set-up ---------------------------------------------------------------------

    def _measure(self) -> tuple[_Geometry, float]:
        monitors = self._sct.monitors
        index = self.config.monitor
        if index is None:
            primary = self._sct.primary_monitor
            index = next((i for i, m in enumerate(monitors) if i > 0 and m == primary), 1)
        if not 0 <= index < len(monitors):
            listing = ", ".join(
                f"{i}: {m['width']}x{m['height']}+{m['left']}+{m['top']}" for i, m in enumerate(monitors)
            )
            raise ConfigError(f"no monitor {index}; monitors are {listing} (0 = all together)")
        self._monitor_index = index
        mon = monitors[index]
        probe = self._grab({"left": mon["left"], "top": mon["top"], "width": mon["width"], "height": mon["height"]})
        detected = probe.size[0] / mon["width"]  # captured pixels per pointer unit
        scale = self.config.scale or detected
        per_logical = scale / detected
        if self.config.region is None:
            left, top = float(mon["left"]), float(mon["top"])
            width, height = round(mon["width"] / per_logical), round(mon["height"] / per_logical)
        else:
            rl, rt, width, height = self.config.region
            full_w, full_h = round(mon["width"] / per_logical), round(mon["height"] / per_logical)
            if rl + width > full_w or rt + height > full_h:
                raise ConfigError(f"region {self.config.region} exceeds the monitor's logical size {full_w}x{full_h}")
            left, top = mon["left"] + rl * per_logical, mon["top"] + rt * per_logical
        box = {
            "left": round(left),
            "top": round(top),
            "width": round(width * per_logical),
            "height": round(height * per_logical),
        }
        return _Geometry(left, top, per_logical, width, height, box), scale

    def _input(self) -> ModuleType:
        pyautogui = _import("pyautogui", "pyautogui", "Desktop mouse and keyboard control")
        pyautogui.PAUSE = self.config.pause
        pyautogui.FAILSAFE = self.config.failsafe
        return pyautogui

    def park_pointer(self) -> bool:
        """Move the pointer off the captured region (not into a corner, pyautogui's fail-safe), so a
        hover left by an earlier run does not change the first screen; False when the monitor has
        no room outside the region or the driver only records (dry run)."""
        gui = self._pyautogui
        if gui is None:
            return False
        mon = self._sct.monitors[self._monitor_index]
        left, top, width, height = self.region
        right, bottom = mon["left"] + mon["width"], mon["top"] + mon["height"]
        spots = [
            (left + width + (right - left - width) // 2, top + height // 2),  # right of the region
            (left + width // 2, top + height + (bottom - top - height) // 2),  # below it
        ]
        for x, y in spots:
            if (
                not _inside(x, y, (left, top, width, height))
                and mon["left"] < x < right - 1
                and mon["top"] < y < bottom - 1
            ):
                gui.moveTo(x, y)
                return True
        return False

    # --- Driver protocol ------------------------------------------------------------

    @property
    def region(self) -> Rect:
        """The captured rectangle in pointer units (left, top, width, height)."""
        b = self._geometry.box
        return (b["left"], b["top"], b["width"], b["height"])

    def screen_size(self) -> tuple[int, int]:
        return self._geometry.width, self._geometry.height

    def screenshot(self) -> Frame:
        self._check_open()
        shot = self._grab(self._geometry.box)
        image = Image.frombytes("RGB", shot.size, shot.bgra, "raw", "BGRX")
        return Frame(image, self._geometry.width, self._geometry.height, device=self._meta)

    def execute(self, action: Action) -> None:
        self._check_open()
        self.ensure_supported(action)
        self._check_allowed(action)
        self.journal.append(action)
        if self.config.dry_run:
            log.info("dry run, not performed: %s", describe_action(action))
            return
        log.debug("performing %s", describe_action(action))
        self._perform(action)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        sct = getattr(self, "_sct", None)
        if sct is not None:
            sct.close()
        if self._xlib is not None:
            self._xlib.close()
            self._xlib = None
        if self._clipboard is not None:
            self._clipboard.stop()
            self._clipboard = None

    # --- capture --------------------------------------------------------------------

    def _grab(self, box: dict[str, int]) -> Any:
        try:
            return self._sct.grab(box)
        except Exception as exc:
            raise DeviceError(f"screen capture of {box} failed: {exc}") from exc

    def _check_open(self) -> None:
        if self._closed:
            raise DeviceError("the desktop driver is closed")

    # --- safety ---------------------------------------------------------------------

    def _pointer_points(self, action: Action) -> list[tuple[int, int]]:
        if isinstance(action, Scroll) and action.x is None:
            return [(self._geometry.width // 2, self._geometry.height // 2)]
        return action_points(action)

    def _check_allowed(self, action: Action) -> None:
        points = self._pointer_points(action)
        width, height = self._geometry.width, self._geometry.height
        for x, y in points:
            if not (0 <= x < width and 0 <= y < height):
                raise ActionRefusedError(
                    f"{describe_action(action)}: ({x}, {y}) is outside the captured screen ({width}x{height})"
                )
            regions = self.config.allowed_regions
            if regions and not any(_inside(x, y, r) for r in regions):
                raise ActionRefusedError(
                    f"{describe_action(action)}: ({x}, {y}) is outside the allowed regions "
                    f"{', '.join(map(str, regions))} (option allowed_regions)"
                )
        if not self.config.allowed_windows:
            return
        if points:
            for x, y in points:
                title = self._window_title_at(*self._geometry.to_pointer(x, y))
                self._check_title(action, title, f"the window at ({x}, {y})")
        elif isinstance(action, (Type, Key)):
            self._check_title(action, self._focused_title(), "the focused window")

    def _check_title(self, action: Action, title: str | None, where: str) -> None:
        if title is not None and any(allowed in title for allowed in self.config.allowed_windows):
            return
        shown = repr(title) if title is not None else "no window"
        raise ActionRefusedError(
            f"{describe_action(action)}: {where} is {shown}, not one of the allowed windows "
            f"{list(self.config.allowed_windows)} (option allowed_windows)"
        )

    def _display(self) -> Any:
        if self._xlib is None:
            xdisplay = _import("Xlib.display", "python-xlib", "Checking window titles (allowed_windows)")
            try:
                self._xlib = xdisplay.Display()
            except Exception as exc:
                raise UserError(f"cannot connect to the X server ({exc}). {_display_hint()}") from exc
        return self._xlib

    def _window_title_at(self, x: int, y: int) -> str | None:
        """Title of the top-level window that is visible at pointer position (x, y)."""
        try:
            display = self._display()
            root = display.screen().root
            # query_tree lists children bottom to top: the last one containing the point is on top.
            for win in reversed(root.query_tree().children):
                if win.get_attributes().map_state != 2:  # X.IsViewable
                    continue
                g = win.get_geometry()
                if g.x <= x < g.x + g.width + 2 * g.border_width and g.y <= y < g.y + g.height + 2 * g.border_width:
                    return _title_below(display, win)
        except VlagentError:
            raise
        except Exception as exc:
            raise DeviceError(f"cannot look up the window at ({x}, {y}): {exc}") from exc
        return None

    def _focused_title(self) -> str | None:
        try:
            display = self._display()
            win = display.get_input_focus().focus
            if isinstance(win, int):  # PointerRoot or None: keys go to the window under the pointer
                win = display.screen().root.query_pointer().child
                return _title_below(display, win) if win and not isinstance(win, int) else None
            for _ in range(20):  # walk up from the focused widget to its top-level window
                title = _wm_title(display, win)
                if title:
                    return title
                parent = win.query_tree().parent
                if not parent or isinstance(parent, int) or parent == display.screen().root:
                    return None
                win = parent
        except VlagentError:
            raise
        except Exception as exc:
            raise DeviceError(f"cannot look up the focused window: {exc}") from exc
        return None

    # --- input ----------------------------------------------------------------------

    def _perform(self, action: Action) -> None:
        gui = self._pyautogui
        assert gui is not None, "pyautogui is loaded whenever dry_run is off"
        try:
            if isinstance(action, Click):
                x, y = self._geometry.to_pointer(action.x, action.y)
                gui.click(x=x, y=y, clicks=action.clicks, interval=0.0, button=action.button)
            elif isinstance(action, Swipe):
                x1, y1 = self._geometry.to_pointer(action.x1, action.y1)
                x2, y2 = self._geometry.to_pointer(action.x2, action.y2)
                gui.moveTo(x1, y1)
                gui.mouseDown(button="left")
                try:
                    gui.moveTo(x2, y2, duration=action.duration)
                finally:
                    gui.mouseUp(button="left")
            elif isinstance(action, Scroll):
                self._scroll(gui, action)
            elif isinstance(action, Key):
                names = [_MODIFIERS[m] for m in action.modifiers] + [_KEYS.get(action.key, action.key)]
                if len(names) > 1:
                    gui.hotkey(*names)
                else:
                    gui.press(names[0])
            elif isinstance(action, Type):
                self._type(gui, action.text)
                if action.submit:
                    gui.press("enter")
            elif isinstance(action, Wait):
                time.sleep(action.seconds)
            elif isinstance(action, Done):
                return
            else:  # capabilities already refused it; keep the dispatch honest
                raise ActionNotSupportedError(f"{describe_action(action)}: not implemented by the desktop driver")
        except VlagentError:
            raise
        except gui.FailSafeException as exc:
            raise UserError(
                "stopped by pyautogui's fail-safe: the pointer was moved into a screen corner "
                "(option failsafe=True). Move it away and start again."
            ) from exc
        except Exception as exc:
            raise DeviceError(f"{describe_action(action)} failed: {exc}") from exc

    def _scroll(self, gui: ModuleType, action: Scroll) -> None:
        ((lx, ly),) = self._pointer_points(action)
        x, y = self._geometry.to_pointer(lx, ly)
        clicks = action.amount * self.config.scroll_clicks
        # Direction names the content to reveal: "down" shows what is below = wheel down.
        if action.direction in ("up", "down"):
            gui.scroll(clicks if action.direction == "up" else -clicks, x=x, y=y)
        else:
            gui.hscroll(clicks if action.direction == "right" else -clicks, x=x, y=y)

    def _type(self, gui: ModuleType, text: str) -> None:
        method = self.config.typing
        plain = text.isascii() and all(ch.isprintable() or ch in "\n\t" for ch in text)
        if method == "auto":
            if plain:
                method = "pyautogui"
            elif _IS_X11 and not shutil.which("xclip") and shutil.which("xdotool"):
                method = "xdotool"
            else:
                method = "clipboard"
        if method == "pyautogui":
            if not plain:
                raise ActionNotSupportedError(
                    "pyautogui cannot type non-ASCII text (it drops those characters); use typing='auto'"
                )
            gui.write(text, interval=self.config.type_interval)
        elif method == "xdotool":
            delay_ms = str(max(1, round(self.config.type_interval * 1000)))
            _run_tool(["xdotool", "type", "--delay", delay_ms, "--", text], "xdotool", timeout=10 + len(text) * 0.05)
        elif _IS_X11:
            if self._clipboard is not None:
                self._clipboard.stop()
            self._clipboard = _X11Clipboard(text)
            gui.hotkey("ctrl", "v")
            self._clipboard.wait_pasted(self.config.paste_timeout)
        else:
            pyperclip = _import("pyperclip", "pyperclip", "Typing non-ASCII text via the clipboard")
            try:
                pyperclip.copy(text)
            except Exception as exc:
                raise DeviceError(f"cannot put text on the clipboard: {exc}") from exc
            gui.hotkey("command" if _IS_MAC else "ctrl", "v")
            time.sleep(0.05)  # let the application read the clipboard before it can change again


# --- helpers ----------------------------------------------------------------------------


def _import(module: str, package: str, purpose: str) -> Any:
    """Import an optional dependency, translating what can go wrong into UserErrors."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtraError("desktop", package, purpose) from exc
    except Exception as exc:  # pyautogui and Xlib connect to the display at import time
        if type(exc).__name__ == "XauthError":
            raise UserError(
                f"the X client library cannot read an Xauthority file ({exc}). Create an empty one "
                "with: touch ~/.Xauthority (or point XAUTHORITY at an existing file)"
            ) from exc
        raise UserError(f"{purpose} cannot start: {exc}. {_display_hint()}") from exc


def _display_hint() -> str:
    return (
        "Run inside a desktop session, or start a virtual screen: Xvfb :99 -screen 0 1280x800x24 & export DISPLAY=:99"
    )


def _check_display() -> None:
    if not _IS_X11 or os.environ.get("DISPLAY"):
        return
    if os.environ.get("WAYLAND_DISPLAY"):
        raise UserError(
            "this is a Wayland session without an X display (DISPLAY is not set); the desktop driver "
            "needs X11 or XWayland. Log in to an X11 session, or set DISPLAY to an XWayland/Xvfb display."
        )
    raise UserError(f"no X display: the DISPLAY environment variable is not set. {_display_hint()}")


def _wm_title(display: Any, win: Any) -> str | None:
    net_name = win.get_full_property(display.intern_atom("_NET_WM_NAME"), 0)
    value = net_name.value if net_name is not None and net_name.value else win.get_wm_name()
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return value or None


def _title_below(display: Any, win: Any, depth: int = 0) -> str | None:
    """The title of ``win`` or, for a window manager's frame, of the client inside it."""
    title = _wm_title(display, win)
    if title or depth >= 3:
        return title
    for child in reversed(win.query_tree().children):
        title = _title_below(display, child, depth + 1)
        if title:
            return title
    return None


def _run_tool(cmd: Sequence[str], tool: str, *, timeout: float) -> None:
    if shutil.which(cmd[0]) is None:
        raise ActionNotSupportedError(f"'{tool}' is not installed; install it with: sudo apt-get install {tool}")
    try:
        proc = subprocess.run(list(cmd), capture_output=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DeviceError(f"{tool} failed: {exc}") from exc
    if proc.returncode != 0:
        message = proc.stderr.decode(errors="replace").strip()[-300:]
        raise DeviceError(f"{tool} exited with status {proc.returncode}: {message}")


class _X11Clipboard:
    """Owns the X11 CLIPBOARD selection through a foreground ``xclip`` and sees it being read.

    ``xclip -verbose`` announces each selection request it waits for, so we know when it owns
    the clipboard (before pasting) and when the application has fetched the text (after).
    The process keeps serving until the next paste or ``stop`` (some toolkits ask twice:
    first for the formats, then for the text).
    """

    def __init__(self, text: str) -> None:
        if shutil.which("xclip") is None:
            raise ActionNotSupportedError(
                "typing non-ASCII text needs 'xclip' (or 'xdotool'); install it with: sudo apt-get install xclip"
            )
        try:
            self._proc = subprocess.Popen(
                ["xclip", "-selection", "clipboard", "-i", "-verbose"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
            assert self._proc.stdin is not None
            self._proc.stdin.write(text.encode("utf-8"))
            self._proc.stdin.close()
        except OSError as exc:
            raise DeviceError(f"xclip failed: {exc}") from exc
        self._output = b""
        self._wait_for(b"request number 1", 5.0, "xclip did not take the clipboard")

    def _wait_for(self, marker: bytes, timeout: float, problem: str) -> None:
        stdout = self._proc.stdout
        assert stdout is not None
        deadline = time.monotonic() + timeout
        while marker not in self._output:
            left = deadline - time.monotonic()
            ready = select.select([stdout], [], [], max(0.0, left))[0] if left > 0 else []
            chunk = os.read(stdout.fileno(), 4096) if ready else b""
            if not chunk:
                self.stop()
                tail = self._output.decode(errors="replace").strip().splitlines()[-1:]
                raise DeviceError(f"{problem} within {timeout:g} s{': ' + tail[0] if tail else ''}")
            self._output += chunk

    def wait_pasted(self, timeout: float) -> None:
        """Return once the first request was served (xclip then waits for request 2)."""
        self._wait_for(b"request number 2", timeout, "nothing read the pasted text (is a text field focused?)")

    def stop(self) -> None:
        if self._proc.poll() is None:
            self._proc.terminate()
        try:
            self._proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        if self._proc.stdout is not None:
            self._proc.stdout.close()


def create_driver(arg: str | None = None, **options: object) -> DesktopDriver:
    """Factory for ``open_driver("desktop")`` (primary monitor) and ``"desktop:MONITOR"``."""
    if arg:
        if not arg.strip().isdigit():
            raise ConfigError(f"desktop:{arg}: the part after 'desktop:' is an mss monitor index such as 1 or 2")
        if "monitor" in options:
            raise ConfigError("give the monitor either as desktop:MONITOR or as the monitor option, not both")
        options = {**options, "monitor": int(arg)}
    return DesktopDriver(DesktopConfig.from_options(dict(options)))
