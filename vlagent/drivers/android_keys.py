"""Android names the adb driver and the simulated phone share: key codes and the ADBKeyboard IME.

Plain constants; this module must not import anything of vlagent.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

__all__ = ["ADB_KEYBOARD_IME", "ADB_KEYBOARD_PACKAGE", "ANDROID_KEYCODES"]

#: The ADBKeyboard input method (https://github.com/senzhk/ADBKeyBoard), needed for non-ASCII text.
ADB_KEYBOARD_IME = "com.android.adbkeyboard/.AdbIME"
ADB_KEYBOARD_PACKAGE = "com.android.adbkeyboard"
#: vlagent key names -> Android KeyEvent codes (android.view.KeyEvent).
ANDROID_KEYCODES: Mapping[str, int] = MappingProxyType(
    {
        "home": 3,
        "back": 4,
        "up": 19,
        "down": 20,
        "left": 21,
        "right": 22,
        "volume_up": 24,
        "volume_down": 25,
        "power": 26,
        "tab": 61,
        "space": 62,
        "enter": 66,
        "backspace": 67,  # KEYCODE_DEL deletes backwards
        "menu": 82,
        "page_up": 92,
        "page_down": 93,
        "escape": 111,
        "delete": 112,  # KEYCODE_FORWARD_DEL
        "line_start": 122,
        "line_end": 123,
        "app_switch": 187,
        **{f"f{i}": 130 + i for i in range(1, 13)},
        **{chr(ord("a") + i): 29 + i for i in range(26)},
        **{str(i): 7 + i for i in range(10)},
    }
)
