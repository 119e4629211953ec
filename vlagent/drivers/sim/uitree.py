"""The simulated phone's screen as a view hierarchy, shaped like what ``uiautomator dump`` shows on Android.

Only the app's own window is described (as on a phone, the status bar, navigation bar and
keyboard are other windows). A Settings toggle row is a clickable container holding its
title, its summary and an ``android.widget.Switch`` that carries ``checked``, as in AOSP
Settings; a text field is an ``EditText`` that reports its hint as text while empty, as
Android does. Resource ids are ``PACKAGE:id/NAME`` with NAME taken from the element.

This module only describes; it must not change the phone.
"""

from __future__ import annotations

import re

from vlagent.drivers.sim.catalog import Element
from vlagent.drivers.sim.world import SimPhone
from vlagent.tasks.uitree import UiNode, UiTree

__all__ = ["phone_ui_tree"]

_SKIPPED = {"status", "nav", "key", "wallpaper", "scrim", "panel"}
_WIDGET = "android.widget."


def _slug(label: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", label.casefold()).strip("_") or "item"


class _Builder:
    def __init__(self, package: str) -> None:
        self.package = package
        self.nodes: list[UiNode] = []
        self._index: dict[int | None, int] = {}

    def add(self, parent: int | None, cls: str, bounds: tuple[int, int, int, int], **fields: object) -> int:
        index = self._index.get(parent, 0)
        self._index[parent] = index + 1
        depth = 0 if parent is None else self.nodes[parent].depth + 1
        node = UiNode(
            class_name=cls if "." in cls else _WIDGET + cls,
            package=self.package,
            bounds=bounds,
            index=index,
            depth=depth,
            parent=parent,
            **fields,  # type: ignore[arg-type]  # keyword names are UiNode fields, checked by the dataclass
        )
        self.nodes.append(node)
        return len(self.nodes) - 1


def _element(b: _Builder, root: int, e: Element) -> None:
    box = e.hit_box
    rid = f"{b.package}:id/{_slug(e.label)}"
    clickable = e.on_tap is not None
    long_clickable = e.on_long_press is not None
    if e.kind == "field":
        hint = e.subtitle
        b.add(
            root,
            "EditText",
            box,
            text=e.text or hint,
            hint=hint,
            resource_id=f"{b.package}:id/{_slug(e.label)}",
            content_desc=e.label,
            clickable=True,
            focusable=True,
            focused=e.focused,
            long_clickable=True,
        )
        return
    if e.kind in ("row", "card") or e.value is not None:
        row = b.add(
            root,
            "LinearLayout",
            box,
            resource_id=rid,
            clickable=clickable,
            focusable=clickable,
            long_clickable=long_clickable,
        )
        title = e.text or (e.texts[0] if e.texts else e.label)
        b.add(row, "TextView", box, text=title, resource_id="android:id/title")
        for extra in [t for t in e.texts if t != title] or ([e.subtitle] if e.subtitle else []):
            b.add(row, "TextView", box, text=extra, resource_id="android:id/summary")
        if e.value is not None:
            b.add(
                row,
                "Switch",
                box,
                resource_id="android:id/switch_widget",
                checkable=True,
                checked=bool(e.value),
                clickable=False,
                focusable=True,
            )
        return
    if e.kind in ("icon_button", "shutter", "photo", "padlock"):
        b.add(root, "ImageButton" if clickable else "ImageView", box, content_desc=e.label, resource_id=rid,
              clickable=clickable, focusable=clickable, long_clickable=long_clickable)  # fmt: skip
        return
    if e.kind == "icon":  # a launcher icon: its label is both its text and its description
        b.add(root, "TextView", box, text=e.label, content_desc=e.label, resource_id=rid,
              clickable=clickable, focusable=True, long_clickable=long_clickable)  # fmt: skip
        return
    cls = "Button" if e.kind in ("button", "text_button") else "TextView"
    texts = list(e.texts) or [e.label]
    for text in texts:
        b.add(root, cls, box, text=text, resource_id=rid if cls == "Button" else "",
              clickable=clickable, focusable=clickable, long_clickable=long_clickable)  # fmt: skip


def phone_ui_tree(phone: SimPhone) -> UiTree:
    """The current screen's view hierarchy (empty while the screen is off)."""
    elements = phone.elements()
    package = "com.android.systemui" if phone.keyguard_shown else phone.current_app
    builder = _Builder(package)
    if not phone.awake:
        return UiTree(())
    root = builder.add(None, "FrameLayout", (0, 0, phone.width, phone.height))
    content = builder.add(root, "FrameLayout", (0, 0, phone.width, phone.height), resource_id="android:id/content")
    for element in elements:
        if element.kind in _SKIPPED:
            continue
        _element(builder, content, element)
    return UiTree(tuple(builder.nodes))
