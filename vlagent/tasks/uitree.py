"""The view hierarchy of a screen as typed nodes: parsed from ``uiautomator dump``, written back the same way.

Android's ``uiautomator dump`` writes one line of XML: a ``<hierarchy rotation="0">`` root
holding nested ``<node>`` elements whose attributes are strings (``text``, ``resource-id``,
``class``, ``package``, ``content-desc``, ``checked="true"``, ``bounds="[x0,y0][x1,y1]"`` ...).
:func:`parse_hierarchy` turns that into a :class:`UiTree` of frozen :class:`UiNode` (document
order, children by index), tolerating what real phones print around it (the "dumped to"
message glued to the XML, newer attributes, ``NAF``, invalid UTF-8). A truncated or
malformed dump raises :class:`UiDumpError`, never a half tree. :func:`to_hierarchy_xml`
writes a tree in the same format (the simulated phone serves it).

The XML comes from a device and is parsed with expat directly (the dump is flat attributes,
and a 10,000-node dump must parse in under 100 ms): a document type declaration,
an entity declaration or an external entity is refused outright, so an XML bomb from a
hostile device never expands. Nodes are built without the frozen dataclass's per-field
``__setattr__`` (they are the same frozen :class:`UiNode` objects). This module must not
talk to devices.
"""

from __future__ import annotations

import gc
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from xml.parsers import expat
from xml.sax.saxutils import quoteattr

from pydantic import BaseModel, ConfigDict

from vlagent.errors import DeviceError

__all__ = ["NodeRef", "UiDumpError", "UiNode", "UiTree", "parse_hierarchy", "to_hierarchy_xml"]

Box = tuple[int, int, int, int]

#: The message ``uiautomator dump`` prints after writing (AOSP spells it "hierchary"; some ROMs fix it).
DUMPED_RE = re.compile(r"UI hier(?:chary|archy) dumped to: \S+\s*$")
_BOUNDS_RE = re.compile(r"\[(-?\d+),(-?\d+)\]\[(-?\d+),(-?\d+)\]")
#: Boolean attributes in the order AccessibilityNodeInfoDumper writes them.
_FLAGS = (
    "checkable",
    "checked",
    "clickable",
    "enabled",
    "focusable",
    "focused",
    "scrollable",
    "long-clickable",
    "password",
    "selected",
)


class UiDumpError(DeviceError):
    """A view-hierarchy dump could not be read (truncated, malformed, or not a dump at all)."""


@dataclass(frozen=True)
class UiNode:
    """One node of the view hierarchy, as ``uiautomator dump`` describes it."""

    text: str = ""
    resource_id: str = ""
    class_name: str = ""
    package: str = ""
    content_desc: str = ""
    bounds: Box = (0, 0, 0, 0)
    """``(x0, y0, x1, y1)`` in screen pixels."""
    checkable: bool = False
    checked: bool = False
    clickable: bool = False
    enabled: bool = True
    focusable: bool = False
    focused: bool = False
    scrollable: bool = False
    long_clickable: bool = False
    password: bool = False
    selected: bool = False
    hint: str = ""
    index: int = 0
    depth: int = 0
    parent: int | None = None
    """Position of the parent in :attr:`UiTree.nodes` (None for a top node)."""

    @property
    def center(self) -> tuple[int, int]:
        x0, y0, x1, y1 = self.bounds
        return (x0 + x1) // 2, (y0 + y1) // 2

    @property
    def is_text_field(self) -> bool:
        return self.class_name.endswith("EditText") or self.class_name.endswith("AutoCompleteTextView")

    def field_text(self) -> str:
        """What the field holds: empty when it only shows its hint (Android reports the hint as text)."""
        return "" if self.hint and self.text == self.hint else self.text

    def matches(self, selector: str) -> bool:
        """True when ``selector`` is this node's resource-id (with or without ``package:id/``), text or content-desc."""
        if not selector:
            return False
        short_id = self.resource_id.rsplit("/", 1)[-1]
        return selector in (self.resource_id, short_id, self.text, self.content_desc)

    def describe(self) -> str:
        name = self.resource_id or self.content_desc or repr(self.text) or self.class_name
        return f"{self.class_name.rsplit('.', 1)[-1] or 'node'} {name} at {list(self.bounds)}"


@dataclass(frozen=True)
class UiTree:
    """The nodes of one dump in document order; ``rotation`` as the dump reports it."""

    nodes: tuple[UiNode, ...]
    rotation: int = 0
    _children: dict[int | None, list[int]] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        children = self._children
        known = children.get
        for i, node in enumerate(self.nodes):
            parent = node.parent
            siblings = known(parent)
            if siblings is None:
                children[parent] = [i]
            else:
                siblings.append(i)

    def __len__(self) -> int:
        return len(self.nodes)

    def __iter__(self) -> Iterator[UiNode]:
        return iter(self.nodes)

    def children(self, position: int | None) -> list[UiNode]:
        """Children of the node at ``position`` (None: the top nodes)."""
        return [self.nodes[i] for i in self._children.get(position, [])]

    def find(self, selector: str) -> list[UiNode]:
        """Nodes whose resource-id, text or content-desc is ``selector`` (resource-id matches first)."""
        by_id = [n for n in self.nodes if selector in (n.resource_id, n.resource_id.rsplit("/", 1)[-1]) and selector]
        return by_id or [n for n in self.nodes if n.matches(selector)]

    def focused(self) -> UiNode | None:
        """The node with input focus (the deepest one when several claim it)."""
        found = [n for n in self.nodes if n.focused]
        return max(found, key=lambda n: n.depth) if found else None

    def texts(self) -> list[str]:
        """Every non-empty text and content description, in document order."""
        out: list[str] = []
        for node in self.nodes:
            out.extend(t for t in (node.text, node.content_desc) if t)
        return out

    def position(self, node: UiNode) -> int:
        return self.nodes.index(node)

    def descendants(self, position: int) -> list[UiNode]:
        out: list[UiNode] = []
        stack = list(reversed(self._children.get(position, [])))
        while stack:
            i = stack.pop()
            out.append(self.nodes[i])
            stack.extend(reversed(self._children.get(i, [])))
        return out

    def node_at(self, x: int, y: int) -> UiNode | None:
        """The deepest node at ``(x, y)`` that says what it is (a resource-id, text or description),
        preferring one that takes taps: what a tap at that point is aimed at."""
        hits = [
            n
            for n in self.nodes
            if n.bounds[0] <= x < n.bounds[2] and n.bounds[1] <= y < n.bounds[3]
            and (n.resource_id or n.text or n.content_desc)
        ]  # fmt: skip
        if not hits:
            return None
        return max(hits, key=lambda n: (n.clickable or n.long_clickable, n.depth))

    def switch_for(self, node: UiNode) -> UiNode:
        """The node that carries ``node``'s on/off state: itself when checkable, else the checkable
        widget of the row it sits in (a Settings label's Switch is its sibling, not the label)."""
        if node.checkable:
            return node
        position: int | None = self.position(node)
        for _ in range(3):  # label -> text container -> row: rows are shallow in every Settings app seen
            if position is None:
                break
            parent = self.nodes[position].parent
            if parent is None:
                break
            found = [n for n in self.descendants(parent) if n.checkable]
            if len(found) == 1:
                return found[0]
            if len(found) > 1 or self.nodes[parent].clickable:
                break
            position = parent
        return node


class NodeRef(BaseModel):
    """How to find a UI element again on another screen: what it said and what it was called."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    resource_id: str = ""
    text: str = ""
    content_desc: str = ""
    class_name: str = ""

    @classmethod
    def of(cls, node: UiNode) -> NodeRef:
        return cls(
            resource_id=node.resource_id, text=node.text, content_desc=node.content_desc, class_name=node.class_name
        )

    def describe(self) -> str:
        named = (("id", self.resource_id), ("text", self.text), ("desc", self.content_desc))
        return " ".join(f"{k}={v!r}" for k, v in named if v) or "an unnamed node"

    def find_in(self, tree: UiTree) -> UiNode | None:
        """The one node of ``tree`` that matches every field this reference has; None when none or
        several do (then the reference does not say which)."""
        fields = {k: v for k, v in self.model_dump().items() if v}
        if not fields:
            return None
        found = [n for n in tree.nodes if all(getattr(n, k) == v for k, v in fields.items())]
        return found[0] if len(found) == 1 else None


def _bounds(value: str) -> Box:
    """Bounds written loosely (spaces, signs); (0, 0, 0, 0) when they are not bounds at all."""
    m = _BOUNDS_RE.fullmatch(value.strip())
    if m is None:
        return (0, 0, 0, 0)
    x0, y0, x1, y1 = (int(v) for v in m.groups())
    return x0, y0, x1, y1


#: The attributes every node carries, in the order AccessibilityNodeInfoDumper writes them (after an
#: optional ``NAF``; newer builds append ``drawing-order`` and ``hint``): read by position on the fast path.
_STANDARD = ["index", "text", "resource-id", "class", "package", "content-desc", *_FLAGS, "bounds"]
_STANDARD_SPAN = 2 * len(_STANDARD)
_FLAG_FIELDS = tuple(name.replace("-", "_") for name in _FLAGS)
_DEFAULTS = {"index": "0", "enabled": "true", **{name: "false" for name in _FLAGS if name != "enabled"}}


class _Forbidden(ValueError):
    """The dump declares a DTD or entities: refused before anything expands."""


def _forbid(*args: object) -> None:
    raise _Forbidden("a view-hierarchy dump must not declare a DTD or entities (refused: a possible XML bomb)")


def _forbid_external(context: str, base: str | None, system_id: str | None, public_id: str | None) -> int:
    raise _Forbidden(f"a view-hierarchy dump must not reference external entities ({system_id!r})")


def _parse_nodes(xml: str) -> tuple[str | None, int, list[UiNode]]:
    """Root tag, rotation and nodes of a dump, built from expat callbacks (no recursion, no element objects).

    The callbacks are closures over local lists and bound methods: they run once per node, and
    on a 10,000-node dump attribute lookups on a builder object cost more than the work itself.
    """
    nodes: list[UiNode] = []
    root: list[str | int] = []  # [tag, rotation] once the root element is seen
    # positions of the open <node> elements; -1 for the root, -2 inside an element that is not a node
    stack: list[int] = []
    push, pop, add = stack.append, stack.pop, nodes.append
    bounds_seen: dict[str, Box] = {}  # real dumps repeat bounds (a row and its labels)
    flags_seen: dict[str, dict[str, object]] = {}
    known_bounds, known_flags = bounds_seen.get, flags_seen.get
    new_node, set_fields = object.__new__, object.__setattr__

    def start(tag: str, a: list[str]) -> None:
        if not stack:
            if not root:
                attrs = dict(zip(a[::2], a[1::2], strict=False))
                try:
                    rotation = int(attrs.get("rotation", "0"))
                except ValueError:
                    rotation = 0
                root.extend((tag, rotation))
            push(-1)
            return
        parent = stack[-1]
        if tag != "node" or parent == -2:
            push(-2)  # skipped, with everything inside it (as before: only <node> elements count)
            return
        # expat hands attributes as [name, value, name, value, ...] (ordered_attributes): a real dump's
        # nodes all have the standard names in the standard order, so the values are taken by position.
        if a and a[0] == "NAF":
            a = a[2:]
        if a[:_STANDARD_SPAN:2] != _STANDARD:  # a dump from an odd builder: each attribute by name, or its default
            g = dict(zip(a[::2], a[1::2], strict=False)).get
            a = [x for name in _STANDARD for x in (name, g(name, _DEFAULTS.get(name, "")))] + ["hint", g("hint", "")]
        hint = ""
        if len(a) > _STANDARD_SPAN and "hint" in a[_STANDARD_SPAN::2]:  # newer builds append drawing-order, hint
            hint = a[_STANDARD_SPAN + 1 + 2 * a[_STANDARD_SPAN::2].index("hint")]
        # Nodes share a handful of flag combinations: each is turned into booleans once per dump.
        flag_key = " ".join(a[13:32:2])
        flags = known_flags(flag_key)
        if flags is None:
            flags = flags_seen[flag_key] = {f: v == "true" for f, v in zip(_FLAG_FIELDS, a[13:32:2], strict=True)}
        box = a[33]
        bounds = known_bounds(box)
        if bounds is None:
            try:  # "[x0,y0][x1,y1]" split by hand: 2x faster than the regex, which judges anything else
                x0, y0, x1, y1 = map(int, box[1:-1].replace("][", ",").split(","))
                bounds = (x0, y0, x1, y1) if box == f"[{x0},{y0}][{x1},{y1}]" else _bounds(box)
            except ValueError:
                bounds = _bounds(box)
            bounds_seen[box] = bounds
        try:
            index = int(a[1])
        except ValueError:
            index = 0
        # The fields UiNode() would set, in one step (its frozen __setattr__ costs ~3 us per field).
        fields = flags.copy()
        fields["text"] = a[3]
        fields["resource_id"] = a[5]
        fields["class_name"] = a[7]
        fields["package"] = a[9]
        fields["content_desc"] = a[11]
        fields["bounds"] = bounds
        fields["hint"] = hint
        fields["index"] = index
        fields["depth"] = len(stack) - 1
        fields["parent"] = None if parent == -1 else parent
        node = new_node(UiNode)
        set_fields(node, "__dict__", fields)
        push(len(nodes))
        add(node)

    def end(tag: str) -> None:
        pop()

    parser = expat.ParserCreate()
    parser.ordered_attributes = True
    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.StartDoctypeDeclHandler = _forbid
    parser.EntityDeclHandler = _forbid
    parser.UnparsedEntityDeclHandler = _forbid
    parser.ExternalEntityRefHandler = _forbid_external
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    parser.Parse(xml, True)
    tag, rotation = root or (None, 0)
    assert isinstance(rotation, int) and (tag is None or isinstance(tag, str))
    return tag, rotation, nodes


def _xml_part(data: bytes | str) -> str:
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    if "\x00" in text:
        text = text.replace("\x00", "")
    start = text.find("<?xml")
    if start < 0:
        start = text.find("<hierarchy")
    if start < 0:
        head = text.strip().splitlines()[0][:200] if text.strip() else "nothing"
        raise UiDumpError(f"not a view-hierarchy dump: {head!r}")
    end = text.rfind("</hierarchy>")
    if end < 0:
        if re.search(r"<hierarchy[^>]*/>", text[start:]):
            return text[start:]
        raise UiDumpError(f"view-hierarchy dump is truncated ({len(text) - start} characters, no </hierarchy>)")
    return text[start : end + len("</hierarchy>")]


def parse_hierarchy(data: bytes | str) -> UiTree:
    """A :class:`UiTree` from the output of ``uiautomator dump`` (file contents or ``/dev/tty`` output).

    Text before the XML and the "UI hierchary dumped to" message after it are ignored.
    Invalid UTF-8 is replaced, not fatal. UiDumpError when the XML is missing, cut short or malformed.
    """
    xml = _xml_part(data)
    # Thousands of new node objects would set off the cyclic garbage collector several times
    # over (~15% of the parse on a 10,000-node dump); the nodes hold no cycles, so it waits.
    collecting = gc.isenabled()
    gc.disable()
    try:
        root, rotation, nodes = _parse_nodes(xml)
    except expat.ExpatError as exc:
        raise UiDumpError(f"view-hierarchy dump is not valid XML: {exc}") from exc
    except _Forbidden as exc:
        raise UiDumpError(str(exc)) from exc
    finally:
        if collecting:
            gc.enable()
    if root != "hierarchy":
        raise UiDumpError(f"view-hierarchy dump has root <{root}>, expected <hierarchy>")
    return UiTree(tuple(nodes), rotation)


def _attrs(node: UiNode) -> str:
    x0, y0, x1, y1 = node.bounds
    parts = [
        ("index", str(node.index)),
        ("text", node.text),
        ("resource-id", node.resource_id),
        ("class", node.class_name),
        ("package", node.package),
        ("content-desc", node.content_desc),
        *((name, "true" if getattr(node, name.replace("-", "_")) else "false") for name in _FLAGS),
        ("bounds", f"[{x0},{y0}][{x1},{y1}]"),
    ]
    if node.hint:
        parts.append(("hint", node.hint))
    return " ".join(f"{name}={quoteattr(value)}" for name, value in parts)


def to_hierarchy_xml(nodes: Sequence[UiNode], rotation: int = 0) -> str:
    """One line of XML in ``uiautomator dump``'s format; nesting follows each node's ``parent``."""
    children: dict[int | None, list[int]] = {}
    for i, node in enumerate(nodes):
        children.setdefault(node.parent, []).append(i)
    out = ["<?xml version='1.0' encoding='UTF-8' standalone='yes' ?>", f'<hierarchy rotation="{rotation}">']
    stack: list[tuple[int, bool]] = [(i, False) for i in reversed(children.get(None, []))]
    while stack:
        i, closing = stack.pop()
        if closing:
            out.append("</node>")
            continue
        kids = children.get(i, [])
        if not kids:
            out.append(f"<node {_attrs(nodes[i])} />")
            continue
        out.append(f"<node {_attrs(nodes[i])}>")
        stack.append((i, True))
        stack.extend((k, False) for k in reversed(kids))
    out.append("</hierarchy>")
    return "".join(out)
