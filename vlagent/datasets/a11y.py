"""AndroidControl's accessibility trees: android_env's ``AndroidAccessibilityForest`` read by hand.

The messages, from google-deepmind/android_env ``android_env/proto/a11y/`` (field numbers
as published at 0be7d50)::

    message AndroidAccessibilityForest     { repeated AndroidAccessibilityWindowInfo windows = 1; }
    message AndroidAccessibilityWindowInfo { ProtoRect bounds_in_screen = 1; int32 id = 3; int32 layer = 4;
                                             string title = 5; WindowType window_type = 6;
                                             AndroidAccessibilityTree tree = 11; ... }
    message AndroidAccessibilityTree       { repeated AndroidAccessibilityNodeInfo nodes = 1; }
    message AndroidAccessibilityNodeInfo   { int32 unique_id = 1; ProtoRect bounds_in_screen = 2;
                                             string class_name = 3; string content_description = 4;
                                             string text = 7; string view_id_resource_name = 10;
                                             bool is_clickable = 14; bool is_visible_to_user = 23; ... }
    message ProtoRect                      { int32 left = 1; int32 top = 2; int32 right = 3; int32 bottom = 4; }

Only what judging a step needs is kept: each node's bounds in screen pixels, its texts and
whether it is visible. The decoder shares :mod:`~vlagent.datasets.example`'s bounded wire
reader, so a hostile tree gives :class:`~vlagent.datasets.example.ExampleError`, never
another exception or a hang.

**Candidate boxes.** The Qwen AndroidControl rule accepts a click inside any of the gold's
``candidate_bbox`` es (enlarged 1.2x), and a click on the app's icon for ``open_app``. The
preprocessing that made those boxes for the Qwen test set is not published; this module
takes, for a click or long press, the smallest visible node(s) whose bounds contain the gold
point (the element the finger landed on, as a view hierarchy's hit test finds it), and for
``open_app`` the visible nodes whose text or content description names the app (an icon on
the screen; none when the app was opened from elsewhere, so only ``open`` answers count).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from vlagent.datasets.example import _LEN, _VARINT, ExampleError, _Cursor, _field, _varint

__all__ = ["A11yNode", "app_icon_boxes", "candidate_boxes", "encode_forest", "parse_forest"]

#: Most nodes read from one forest (published screens have a few hundred).
MAX_NODES = 20_000


@dataclass(frozen=True)
class A11yNode:
    """One accessibility node: bounds ``(left, top, right, bottom)`` in screen pixels and its texts."""

    bounds: tuple[int, int, int, int]
    text: str = ""
    content_description: str = ""
    class_name: str = ""
    resource_id: str = ""
    clickable: bool = False
    visible: bool = True
    window_type: int = 0

    @property
    def area(self) -> int:
        left, top, right, bottom = self.bounds
        return max(0, right - left) * max(0, bottom - top)

    def contains(self, x: float, y: float) -> bool:
        left, top, right, bottom = self.bounds
        return left <= x <= right and top <= y <= bottom


def _int32(value: int) -> int:
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value >= 1 << 31 else value


def _text(cursor: _Cursor) -> str:
    start, end = cursor.span()
    return bytes(cursor.data[start:end]).decode("utf-8", errors="replace")


def _rect(cursor: _Cursor) -> tuple[int, int, int, int]:
    values = [0, 0, 0, 0]
    for number, wire in cursor.fields():
        if 1 <= number <= 4 and wire == _VARINT:
            values[number - 1] = _int32(cursor.varint())
        else:
            cursor.skip(wire)
    return values[0], values[1], values[2], values[3]


_TEXTS = {3: "class_name", 4: "content_description", 7: "text", 10: "resource_id"}
_FLAGS = {14: "clickable", 23: "visible"}


def _node(cursor: _Cursor, window_type: int) -> A11yNode:
    bounds = (0, 0, 0, 0)
    texts: dict[str, str] = {}
    flags = {"clickable": False, "visible": False}
    for number, wire in cursor.fields():
        if number == 2 and wire == _LEN:
            bounds = _rect(cursor.sub())
        elif number in _TEXTS and wire == _LEN:
            texts[_TEXTS[number]] = _text(cursor)
        elif number in _FLAGS and wire == _VARINT:
            flags[_FLAGS[number]] = cursor.varint() != 0
        else:
            cursor.skip(wire)
    return A11yNode(
        bounds,
        text=texts.get("text", ""),
        content_description=texts.get("content_description", ""),
        class_name=texts.get("class_name", ""),
        resource_id=texts.get("resource_id", ""),
        clickable=flags["clickable"],
        visible=flags["visible"],
        window_type=window_type,
    )


def _window(cursor: _Cursor, into: list[A11yNode]) -> None:
    window_type = 0
    trees: list[_Cursor] = []
    for number, wire in cursor.fields():
        if number == 6 and wire == _VARINT:
            window_type = _int32(cursor.varint())
        elif number == 11 and wire == _LEN:
            trees.append(cursor.sub())  # read after the loop: the type may come after the tree
        else:
            cursor.skip(wire)
    for tree in trees:
        for number, wire in tree.fields():
            if number == 1 and wire == _LEN:
                if len(into) >= MAX_NODES:
                    raise ExampleError(f"the accessibility forest holds more than {MAX_NODES} nodes")
                into.append(_node(tree.sub(), window_type))
            else:
                tree.skip(wire)


def parse_forest(data: bytes) -> list[A11yNode]:
    """Every node of a serialized ``AndroidAccessibilityForest``, window by window in file order."""
    view = memoryview(data)
    top = _Cursor(view, 0, len(view))
    nodes: list[A11yNode] = []
    for number, wire in top.fields():
        if number == 1 and wire == _LEN:
            _window(top.sub(), nodes)
        else:
            top.skip(wire)
    return nodes


def _message(fields: Iterable[bytes]) -> bytes:
    return b"".join(fields)


def _varint_field(number: int, value: int) -> bytes:
    return _varint(number << 3 | _VARINT) + _varint(value & 0xFFFFFFFFFFFFFFFF)


def _encode_node(node: A11yNode, unique_id: int) -> bytes:
    rect = _message(_varint_field(i + 1, v) for i, v in enumerate(node.bounds) if v)
    parts = [_varint_field(1, unique_id), _field(2, _LEN, rect)]
    for number, name in _TEXTS.items():
        value: str = getattr(node, name)
        if value:
            parts.append(_field(number, _LEN, value.encode("utf-8")))
    parts.extend(_varint_field(n, 1) for n, name in _FLAGS.items() if getattr(node, name))
    return _message(parts)


def encode_forest(windows: Sequence[Sequence[A11yNode]]) -> bytes:
    """A serialized ``AndroidAccessibilityForest`` of ``windows`` (each a list of nodes; a
    window's type is its first node's ``window_type``, 1 = application): for writing test files."""
    out = []
    for index, nodes in enumerate(windows):
        tree = _message(_field(1, _LEN, _encode_node(n, i)) for i, n in enumerate(nodes))
        kind = nodes[0].window_type if nodes else 1
        out.append(_field(1, _LEN, _varint_field(3, index) + _varint_field(6, kind) + _field(11, _LEN, tree)))
    return _message(out)


def _shown(nodes: Sequence[A11yNode]) -> list[A11yNode]:
    """The visible nodes of non-zero area (all of them when a forest marks none visible:
    a writer that leaves ``is_visible_to_user`` unset must not hide every element)."""
    marked = any(n.visible for n in nodes)
    return [n for n in nodes if n.area > 0 and (n.visible or not marked)]


def candidate_boxes(nodes: Sequence[A11yNode], x: float, y: float) -> list[tuple[int, int, int, int]]:
    """The bounds of the smallest visible node(s) of non-zero area that contain ``(x, y)``."""
    hits = [n for n in _shown(nodes) if n.contains(x, y)]
    if not hits:
        return []
    smallest = min(n.area for n in hits)
    return list(dict.fromkeys(n.bounds for n in hits if n.area == smallest))


def app_icon_boxes(nodes: Sequence[A11yNode], app_name: str) -> list[tuple[int, int, int, int]]:
    """The bounds of visible nodes whose text or content description is ``app_name`` (case and
    surrounding spaces aside): the app's icon, when the screen shows one."""
    wanted = app_name.strip().lower()
    if not wanted:
        return []
    found = [
        n.bounds for n in _shown(nodes) if wanted in (n.text.strip().lower(), n.content_description.strip().lower())
    ]
    return list(dict.fromkeys(found))
