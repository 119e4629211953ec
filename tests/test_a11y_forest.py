"""AndroidControl's accessibility forests: read by hand, checked against protobuf's own encoder.

protobuf builds android_env's a11y messages from their published field numbers, so the
bytes under test are written by an implementation independent of ours; hostile bytes only
ever give ExampleError.
"""

from __future__ import annotations

import contextlib
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vlagent.datasets.a11y import A11yNode, app_icon_boxes, candidate_boxes, encode_forest, parse_forest
from vlagent.datasets.example import ExampleError

descriptor_pb2 = pytest.importorskip("google.protobuf.descriptor_pb2", reason="needs protobuf (the test extra)")
from google.protobuf import descriptor_pool, message_factory  # noqa: E402

_F = descriptor_pb2.FieldDescriptorProto


def _classes() -> dict[str, type]:
    """android_env's a11y messages (android_env/proto/a11y/*.proto), the fields we read plus some we skip."""
    proto = descriptor_pb2.FileDescriptorProto(name="a11y_test.proto", package="android_env", syntax="proto3")

    def message(name: str, fields: list[tuple[str, int, int, int, str | None]]) -> None:
        msg = proto.message_type.add(name=name)
        for field_name, number, kind, label, type_name in fields:
            f = msg.field.add(name=field_name, number=number, type=kind, label=label)
            if type_name:
                f.type_name = type_name

    opt, rep = _F.LABEL_OPTIONAL, _F.LABEL_REPEATED
    message(
        "ProtoRect", [(n, i + 1, _F.TYPE_INT32, opt, None) for i, n in enumerate(("left", "top", "right", "bottom"))]
    )
    message(
        "AndroidAccessibilityNodeInfo",
        [
            ("unique_id", 1, _F.TYPE_INT32, opt, None),
            ("bounds_in_screen", 2, _F.TYPE_MESSAGE, opt, ".android_env.ProtoRect"),
            ("class_name", 3, _F.TYPE_STRING, opt, None),
            ("content_description", 4, _F.TYPE_STRING, opt, None),
            ("hint_text", 5, _F.TYPE_STRING, opt, None),
            ("text", 7, _F.TYPE_STRING, opt, None),
            ("text_selection_start", 8, _F.TYPE_INT64, opt, None),
            ("view_id_resource_name", 10, _F.TYPE_STRING, opt, None),
            ("is_clickable", 14, _F.TYPE_BOOL, opt, None),
            ("is_visible_to_user", 23, _F.TYPE_BOOL, opt, None),
            ("child_ids", 25, _F.TYPE_INT32, rep, None),
            ("depth", 27, _F.TYPE_INT32, opt, None),
        ],
    )
    message(
        "AndroidAccessibilityTree", [("nodes", 1, _F.TYPE_MESSAGE, rep, ".android_env.AndroidAccessibilityNodeInfo")]
    )
    message(
        "AndroidAccessibilityWindowInfo",
        [
            ("bounds_in_screen", 1, _F.TYPE_MESSAGE, opt, ".android_env.ProtoRect"),
            ("id", 3, _F.TYPE_INT32, opt, None),
            ("title", 5, _F.TYPE_STRING, opt, None),
            ("window_type", 6, _F.TYPE_INT32, opt, None),
            ("tree", 11, _F.TYPE_MESSAGE, opt, ".android_env.AndroidAccessibilityTree"),
        ],
    )
    message(
        "AndroidAccessibilityForest",
        [("windows", 1, _F.TYPE_MESSAGE, rep, ".android_env.AndroidAccessibilityWindowInfo")],
    )
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return {
        m.name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"android_env.{m.name}"))
        for m in proto.message_type
    }


CLASSES = _classes()


def _random_forest(rng: random.Random) -> tuple[bytes, list[A11yNode]]:
    forest = CLASSES["AndroidAccessibilityForest"]()
    expected = []
    for w in range(rng.randint(1, 3)):
        window = forest.windows.add(id=w, title="t" * rng.randint(0, 5), window_type=rng.randint(1, 4))
        window.bounds_in_screen.right = 1080
        for i in range(rng.randint(0, 30)):
            left, top = rng.randint(-5, 1000), rng.randint(-5, 2300)
            bounds = (left, top, left + rng.randint(0, 500), top + rng.randint(0, 500))
            node = window.tree.nodes.add(unique_id=i, depth=rng.randint(0, 9), text_selection_start=-1)
            rect = node.bounds_in_screen
            rect.left, rect.top, rect.right, rect.bottom = bounds
            texts = {k: rng.choice(["", "Settings", "Wi‑Fi 🙂", "x" * 300]) for k in ("text", "cd", "cls", "rid")}
            node.text, node.content_description = texts["text"], texts["cd"]
            node.class_name, node.view_id_resource_name = texts["cls"], texts["rid"]
            node.hint_text = "hint"
            node.is_clickable, node.is_visible_to_user = rng.random() < 0.5, rng.random() < 0.8
            node.child_ids.extend(rng.randint(0, 99) for _ in range(rng.randint(0, 4)))
            expected.append(
                A11yNode(bounds, texts["text"], texts["cd"], texts["cls"], texts["rid"], node.is_clickable,
                         node.is_visible_to_user, window.window_type)
            )  # fmt: skip
    return forest.SerializeToString(), expected


def test_forests_written_by_protobuf_read_back_node_for_node() -> None:
    rng = random.Random(5)
    for _ in range(300):
        data, expected = _random_forest(rng)
        assert parse_forest(data) == expected


def test_our_encoder_is_read_by_protobuf_the_same_way() -> None:
    nodes = [
        A11yNode((0, 0, 1080, 2400), window_type=1),
        A11yNode((3, 233, 87, 327), "Settings", "Settings", "V", "", True, True, 1),
    ]
    parsed = CLASSES["AndroidAccessibilityForest"].FromString(encode_forest([nodes]))
    (window,) = parsed.windows
    assert window.window_type == 1
    second = window.tree.nodes[1]
    assert (second.bounds_in_screen.left, second.bounds_in_screen.bottom, second.text) == (3, 327, "Settings")
    assert second.is_clickable and second.is_visible_to_user
    assert parse_forest(encode_forest([nodes])) == nodes


def test_candidates_are_the_smallest_visible_elements_under_the_point() -> None:
    screen = A11yNode((0, 0, 1080, 2400))
    row = A11yNode((0, 200, 1080, 400), text="Wi-Fi")
    switch = A11yNode((900, 250, 1000, 350), content_description="Wi-Fi switch")
    twin = A11yNode((900, 250, 1000, 350), text="on")
    hidden = A11yNode((950, 280, 960, 290), visible=False)
    nodes = [screen, row, switch, twin, hidden]
    assert candidate_boxes(nodes, 955, 285) == [(900, 250, 1000, 350)]  # the hidden one is not a target
    assert candidate_boxes(nodes, 100, 300) == [(0, 200, 1080, 400)]
    assert candidate_boxes(nodes, 2000, 3000) == []
    assert app_icon_boxes([screen, A11yNode((3, 233, 87, 327), content_description=" Settings ")], "settings") == [
        (3, 233, 87, 327)
    ]
    assert app_icon_boxes(nodes, "Clock") == [] and app_icon_boxes(nodes, " ") == []
    # a writer that marks nothing visible hides nothing
    unmarked = [A11yNode(n.bounds, visible=False) for n in (screen, row)]
    assert candidate_boxes(unmarked, 100, 300) == [(0, 200, 1080, 400)]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400), st.integers(0, 2**32 - 1))
def test_hostile_forests_only_give_example_errors(noise: bytes, seed: int) -> None:
    data, _ = _random_forest(random.Random(seed))
    mutated = bytearray(data)
    for i, b in enumerate(noise[:50]):
        if mutated:
            mutated[(i * 7919 + b) % len(mutated)] = b
    for candidate in (bytes(mutated), noise, data[: len(data) // 2]):
        with contextlib.suppress(ExampleError):
            parse_forest(candidate)


def test_a_forest_over_the_node_bound_is_refused() -> None:
    many = [A11yNode((0, 0, 1, 1))] * 20_001
    with pytest.raises(ExampleError, match="more than 20000 nodes"):
        parse_forest(encode_forest([many]))
