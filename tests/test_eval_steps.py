"""Step-level evaluation on AITW and AndroidControl files written in their published schemas.

The files are real TFRecords (GZIP, CRC32C) of real ``tf.train.Example`` s whose screenshots
are the simulated phone's; the expected figures are worked out by hand from the reference
rules (AITW's action matching, OS-Atlas's and Qwen's AndroidControl rules).
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import random
import struct
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest
from PIL import Image

from vlagent.actions import Action, Click, Done, Key, OpenApp, Scroll, Swipe, Type
from vlagent.datasets import (
    DatasetError,
    ExampleError,
    Features,
    aitw_record,
    androidcontrol_record,
    crc32c,
    masked_crc32c,
    parse_example,
    read_aitw,
    read_androidcontrol,
    read_records,
    read_split,
    tfrecord,
    write_records,
)
from vlagent.datasets.a11y import A11yNode, encode_forest
from vlagent.drivers.sim import SimDriver
from vlagent.errors import InvalidModelOutput, ModelError, OutputError, UserError
from vlagent.policies.base import Decision, Observation, decide_each
from vlagent.policies.scripted import ScriptedPolicy
from vlagent.report import write_report
from vlagent.stepeval import StepEvalConfig, evaluate_steps

W, H = 360, 800
GOAL = "open the settings and look for wifi"


@pytest.fixture(scope="module")
def screens() -> dict[str, tuple[Image.Image, list[tuple[float, float, float, float]]]]:
    """Simulated screenshots with their labelled elements as AITW annotations (y, x, h, w normalised)."""
    driver = SimDriver(width=W, height=H)
    out = {}
    trees: dict[str, bytes] = {}
    steps = (("home", None), ("settings", OpenApp(name="Settings")), ("scrolled", Scroll(direction="down")))
    for name, action in steps:
        if action is not None:
            driver.execute(action)
        nodes = driver.state().ui_tree().value.nodes
        boxes = [
            (y0 / H, x0 / W, (y1 - y0) / H, (x1 - x0) / W)
            for n in nodes
            if (n.text or n.content_desc)
            for x0, y0, x1, y1 in [n.bounds]
        ]
        out[name] = (driver.screenshot().image, boxes)
        trees[name] = encode_forest(
            [
                [
                    A11yNode(n.bounds, n.text, n.content_desc, n.class_name, n.resource_id, n.clickable, True, 1)
                    for n in nodes
                ]
            ]
        )
    out["trees"] = trees  # type: ignore[assignment]
    return out


# The Settings icon of the home screen is at x 3-87, y 233-327: centre (45, 280).
SETTINGS_ICON = (233 / H, 3 / W, 94 / H, 84 / W)


def _aitw_file(path: Path, screens: dict, episode: str = "ep-a", reverse: bool = False) -> Path:
    home, home_boxes = screens["home"]
    settings, settings_boxes = screens["settings"]
    scrolled, _ = screens["scrolled"]
    common = {"episode_id": episode, "goal": GOAL, "episode_length": 4}
    records = [
        aitw_record(**common, step_id=0, image=home, action_type=4, touch_yx=(0.35, 0.125), lift_yx=(0.35, 0.125),
                    annotations=home_boxes, annotation_texts=["x"] * len(home_boxes)),
        aitw_record(**common, step_id=1, image=settings, action_type=4, touch_yx=(0.75, 0.5), lift_yx=(0.25, 0.5),
                    annotations=settings_boxes),
        aitw_record(**common, step_id=2, image=scrolled, action_type=3, type_text="wifi"),
        aitw_record(**common, step_id=3, image=scrolled, action_type=10),
    ]  # fmt: skip
    write_records(path, reversed(records) if reverse else records)
    return path


def _ac_file(path: Path, screens: dict, episode_id: int = 7, *, trees: bool = False) -> Path:
    shots = [screens[name][0] for name in ("home", "settings", "scrolled", "scrolled", "home")]
    actions = [
        {"action_type": "click", "x": 45, "y": 280},
        {"action_type": "scroll", "direction": "down"},
        {"action_type": "input_text", "text": "wifi"},
        {"action_type": "navigate_back"},
    ]
    record = androidcontrol_record(
        episode_id=episode_id,
        goal=GOAL,
        screenshots=shots,
        actions=actions,
        step_instructions=["open settings", "scroll down", "type wifi", "go back"],
        accessibility_trees=[screens["trees"][n] for n in ("home", "settings", "scrolled", "scrolled", "home")]
        if trees
        else [b"\x0a\x00"] * len(shots),
    )
    write_records(path, [record])
    return path


class Recorder:
    """A policy that plays a script and keeps every observation it was shown."""

    name = "recorder"

    def __init__(self, script: Sequence[Action | Exception]) -> None:
        self.script = list(script)
        self.seen: list[Observation] = []

    def decide(self, observation: Observation) -> Decision:
        self.seen.append(observation)
        item = self.script[len(self.seen) - 1]
        if isinstance(item, BaseException):
            raise item
        policy = ScriptedPolicy([item])
        return policy.decide(observation)

    def decide_batch(self, observations: Sequence[Observation]) -> list[Decision | ModelError]:
        return decide_each(self, observations)


def _run(tmp_path: Path, dataset: str, files: list[Path], policy: Recorder | None = None, **kw: object):
    config = StepEvalConfig(
        dataset=dataset,  # type: ignore[arg-type]
        files=files,
        out=tmp_path / "out",
        policy_factory=(lambda episode: policy) if policy is not None else None,
        **kw,  # type: ignore[arg-type]
    )
    return evaluate_steps(config)


def _lines(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "steps.jsonl").read_text(encoding="utf-8").splitlines()]


# --- the framing and the Example ------------------------------------------------------------


def test_crc32c_and_the_tfrecord_mask() -> None:
    assert crc32c(b"123456789") == 0xE3069283  # the CRC-32C check value
    assert crc32c(b"") == 0 and masked_crc32c(b"") == 0xA282EAD8
    data = random.Random(5).randbytes(300_001)
    python = tfrecord._crc32c_python(data) ^ 0xFFFFFFFF
    if tfrecord._has_numpy():
        assert tfrecord._crc32c_lanes(data) ^ 0xFFFFFFFF == python  # numpy lanes, chained
    assert crc32c(data) == python


def test_example_round_trip_and_protobuf_wire_variants() -> None:
    features = Features({"b": [b"x", b""], "s": ["é".encode()]}, {"f": [0.5, -2.25]}, {"i": [0, -1, 2**40]})
    again = parse_example(features.encode())
    assert again == features and again.text("s") == "é" and again.int64_lists["i"] == [0, -1, 2**40]
    # unpacked floats and ints, an unknown field, and a oneof set twice (the last member wins)
    unpacked_f = b"\x0d" + struct.pack("<f", 1.5) + b"\x0d" + struct.pack("<f", 2.5)
    ints = b"\x08\x05\x08\x07"
    feature_f = b"\x12" + bytes([len(unpacked_f)]) + unpacked_f
    feature_i = b"\x0a\x00" + b"\x1a" + bytes([len(ints)]) + ints  # bytes_list, then int64_list
    entries = b""
    for name, feature in ((b"f", feature_f), (b"i", feature_i)):
        entry = b"\x0a" + bytes([len(name)]) + name + b"\x12" + bytes([len(feature)]) + feature + b"\x18\x01"
        entries += b"\x0a" + bytes([len(entry)]) + entry
    example = b"\x0a" + bytes([len(entries)]) + entries + b"\x10\x2a"
    parsed = parse_example(example)
    assert parsed.floats("f") == [1.5, 2.5] and parsed.ints("i") == [5, 7] and parsed.kind("i") == "int64_list"
    with pytest.raises(ExampleError, match="'f' is a float_list, expected a int64_list"):
        parsed.ints("f")
    with pytest.raises(ExampleError, match="'zz' is missing"):
        parsed.text("zz")


@pytest.mark.parametrize(
    "data, reason",
    [
        (b"\x0a\x05\x0a\x03", "claims 5 bytes but its message has 2 left"),
        (b"\x0a\x02\x0a\x85", "runs past the end"),  # a number cut off
        (b"\x0a" + b"\xff" * 11, "longer than 10 bytes"),
        (b"\x0a\x02\x0b\x00", "wire type 3"),  # a group
        (b"\x0a\x04\x0a\x02\x12\x05", "claims 5 bytes"),
        (b"\x02\x00", "number 0"),
    ],
)
def test_hostile_examples_are_refused_with_a_reason(data: bytes, reason: str) -> None:
    with pytest.raises(ExampleError, match=reason):
        parse_example(data)


def test_mutated_examples_never_raise_anything_else(screens: dict) -> None:
    valid = parse_example(aitw_record(episode_id="e", step_id=0, episode_length=1, goal="g",
                                      image=Image.new("RGB", (4, 4)), action_type=10)).encode()  # fmt: skip
    rng = random.Random(11)
    for _ in range(3000):
        data = bytearray(valid)
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        cut = bytes(data[: rng.randint(0, len(data))]) if rng.random() < 0.3 else bytes(data)
        with contextlib.suppress(ExampleError):
            parse_example(cut)


def test_records_round_trip_gzip_and_plain(tmp_path: Path) -> None:
    records = [b"", b"one", os.urandom(70_000)]
    for compress in (True, False):
        path = tmp_path / f"r{compress}.tfrecord"
        assert write_records(path, records, compress=compress) == 3
        assert path.read_bytes().startswith(b"\x1f\x8b") == compress
        assert [data for _, data in read_records(path)] == records
    (tmp_path / "empty").write_bytes(b"")
    assert list(read_records(tmp_path / "empty")) == []


def _one_line_error(path: Path, match: str) -> str:
    with pytest.raises(DatasetError) as caught:
        list(read_records(path))
    message = str(caught.value)
    assert "\n" not in message and str(path) in message and match in message, message
    return message


def test_broken_files_give_one_line_naming_the_file_and_the_record(tmp_path: Path) -> None:
    plain = tmp_path / "plain.tfrecord"
    write_records(plain, [b"first", b"second record"], compress=False)
    whole = plain.read_bytes()
    first = 8 + 4 + 5 + 4
    for cut in range(1, len(whole)):
        (tmp_path / "cut").write_bytes(whole[:cut])
        if cut == first:
            assert len(list(read_records(tmp_path / "cut"))) == 1  # a clean end between records
        else:
            _one_line_error(tmp_path / "cut", "record 1" if cut > first else "record 0")
    flipped = bytearray(whole)
    flipped[first + 14] ^= 1  # a byte of the second record's data
    (tmp_path / "flipped").write_bytes(bytes(flipped))
    _one_line_error(tmp_path / "flipped", "record 1: the data's checksum is wrong")
    header = struct.pack("<Q", 2**62)
    (tmp_path / "huge").write_bytes(header + struct.pack("<I", masked_crc32c(header)) + b"x" * 10)
    _one_line_error(tmp_path / "huge", "claims 4611686018427387904 bytes, more than the limit")
    (tmp_path / "text").write_bytes(b"this is not a tfrecord file at all\n")
    _one_line_error(tmp_path / "text", "record 0: the length's checksum is wrong")
    packed = gzip.compress(whole)
    (tmp_path / "cut.gz").write_bytes(packed[: len(packed) - 9])
    _one_line_error(tmp_path / "cut.gz", "GZIP stream is cut off")
    (tmp_path / "bad.gz").write_bytes(packed[:12] + b"\xff" * 20 + packed[32:])
    _one_line_error(tmp_path / "bad.gz", "GZIP stream is corrupt")
    _one_line_error(tmp_path, "cannot read it")  # a directory


def test_random_files_only_ever_give_dataset_errors(tmp_path: Path, screens: dict) -> None:
    good = _aitw_file(tmp_path / "good.gz", screens)
    payloads = [data for _, data in read_records(good)]
    rng = random.Random(3)
    path = tmp_path / "fuzz"
    for trial in range(150):
        if trial % 3 == 0:  # garbage, compressed or not
            raw = rng.randbytes(rng.randint(0, 300))
            path.write_bytes(gzip.compress(raw) if trial % 2 else raw)
        else:  # valid framing around a mutated Example
            data = bytearray(payloads[trial % 4][:4000])
            for _ in range(rng.randint(1, 6)):
                data[rng.randrange(len(data))] = rng.randrange(256)
            write_records(path, [bytes(data)])
        try:
            for episode in read_aitw([path]):
                for step in episode.steps:
                    step.frame()
        except DatasetError as exc:
            assert "\n" not in str(exc) and str(path) in str(exc)


# --- AITW ------------------------------------------------------------------------------------


def test_aitw_steps_read_as_published(tmp_path: Path, screens: dict) -> None:
    path = _aitw_file(tmp_path / "aitw.gz", screens, reverse=True)  # records out of order: sorted by step_id
    (episode,) = read_aitw([path])
    assert episode.episode_id == "ep-a" and episode.goal == GOAL
    assert [s.kind for s in episode.steps] == ["tap", "swipe", "type", "status_task_complete"]
    assert [s.gold for s in episode.steps] == [
        Click(x=45, y=280),
        Swipe(x1=180, y1=600, x2=180, y2=200),
        Type(text="wifi"),
        Done(status="success"),
    ]
    first = episode.steps[0]
    assert first.frame().image.tobytes() == screens["home"][0].tobytes()  # raw pixels, height x width x 3
    assert any(box == pytest.approx(SETTINGS_ICON) for box in first.annotations)  # float32, as published


def test_aitw_gold_scores_100_percent(tmp_path: Path, screens: dict) -> None:
    files = [_aitw_file(tmp_path / "a.gz", screens), _aitw_file(tmp_path / "b.gz", screens, episode="ep-b")]
    result = _run(tmp_path, "aitw", files)
    aitw = result.summary["scores"]["aitw"]
    assert (aitw["steps"], aitw["step_success_rate"], aitw["type_accuracy"], aitw["grounding_accuracy"]) == (8, 1, 1, 1)
    assert aitw["episodes"] == 2 and aitw["episode_success_rate"] == 1.0
    data = json.loads((tmp_path / "out" / "results.json").read_text())
    assert data["config"]["policy"] == "gold" and data["config"]["scoring"] == ["aitw"]
    assert [e["episode_id"] for e in data["episodes"]] == ["ep-a", "ep-b"]
    assert write_report(tmp_path / "out") == tmp_path / "out" / "report.html"  # `vlagent report DIR` knows it
    assert "Step-level evaluation: aitw" in (tmp_path / "out" / "report.html").read_text()


def test_aitw_right_on_3_of_4(tmp_path: Path, screens: dict) -> None:
    # step 0: 95 px (0.26) right of the gold tap, beyond 0.14, but inside the Settings icon's
    #   box enlarged by 1.4x its size (x up to 45 + 2.4 * 84 / 2 = 145.8): a match;
    # step 1: the gold swipes vertically, this one horizontally: the right type, the wrong axis;
    # steps 2, 3: the right type (the text is compared apart: equal).
    policy = Recorder([Click(x=140, y=280), Swipe(x1=300, y1=400, x2=60, y2=400), Type(text="WiFi"), Done()])
    result = _run(tmp_path, "aitw", [_aitw_file(tmp_path / "a.gz", screens)], policy)
    aitw = result.summary["scores"]["aitw"]
    assert aitw["step_success_rate"] == 0.75 and aitw["type_accuracy"] == 1.0
    assert aitw["grounding_accuracy"] == 1.0 and aitw["grounded_steps"] == 1 and aitw["text_accuracy"] == 1.0
    assert aitw["episode_success_rate"] == 0.0
    per = {k: v["step_success_rate"] for k, v in result.summary["per_action_type"]["aitw"].items()}
    assert per == {"tap": 1.0, "swipe": 0.0, "type": 1.0, "status_task_complete": 1.0}
    lines = _lines(tmp_path / "out")
    assert [line["match"]["aitw"]["success"] for line in lines] == [True, False, True, True]
    assert lines[1]["match"]["aitw"]["detail"] == "swipe on the other axis"
    assert lines[0]["predicted_native"]["aitw"]["action_type"] == 4
    assert lines[0]["gold"]["touch_yx"] == pytest.approx([0.35, 0.125])
    # teacher forcing: each step sees the dataset's screen and the gold steps before it
    assert [o.step_index for o in policy.seen] == [0, 1, 2, 3]
    assert [e.action for e in policy.seen[3].history] == [Click(x=45, y=280), Swipe(x1=180, y1=600, x2=180, y2=200),
                                                          Type(text="wifi")]  # fmt: skip
    assert policy.seen[1].frame.image.tobytes() == screens["settings"][0].tobytes()
    assert all(o.task == GOAL for o in policy.seen)


def test_aitw_a_tap_outside_every_box_and_far_away_misses(tmp_path: Path, screens: dict) -> None:
    policy = Recorder([Click(x=300, y=700), InvalidModelOutput("no action", raw="I think"), Type(text="x"), Done()])
    result = _run(tmp_path, "aitw", [_aitw_file(tmp_path / "a.gz", screens)], policy)
    aitw = result.summary["scores"]["aitw"]
    assert aitw["step_success_rate"] == 0.5 and aitw["grounding_accuracy"] == 0.0 and aitw["type_accuracy"] == 0.75
    assert aitw["text_accuracy"] == 0.0 and result.summary["invalid_answers"] == 1
    line = _lines(tmp_path / "out")[1]
    assert line["predicted"] is None and "I think" in line["error"] and line["match"]["aitw"]["type"] is False


# --- AndroidControl --------------------------------------------------------------------------


def test_androidcontrol_episode_read_as_published(tmp_path: Path, screens: dict) -> None:
    (episode,) = read_androidcontrol([_ac_file(tmp_path / "ac.gz", screens)])
    assert episode.episode_id == "7" and len(episode.steps) == 4
    assert [s.kind for s in episode.steps] == ["click", "scroll", "input_text", "navigate_back"]
    assert [s.gold for s in episode.steps] == [Click(x=45, y=280), Scroll(direction="down"), Type(text="wifi"),
                                               Key(key="back")]  # fmt: skip
    assert episode.steps[2].instruction == "type wifi"
    assert episode.steps[1].frame().image.tobytes() == screens["settings"][0].tobytes()


def test_androidcontrol_gold_scores_100_percent_on_both_rules(tmp_path: Path, screens: dict) -> None:
    result = _run(tmp_path, "androidcontrol", [_ac_file(tmp_path / "ac.gz", screens)], level="low")
    for convention in ("osatlas", "qwen_androidcontrol"):
        s = result.summary["scores"][convention]
        assert (s["steps"], s["step_success_rate"], s["type_accuracy"], s["grounding_accuracy"]) == (4, 1, 1, 1)


def test_androidcontrol_right_on_3_of_4_under_each_rule(tmp_path: Path, screens: dict) -> None:
    # The click is 708 (x) and 525 (y) away on the 0-1000 grid (OS-Atlas: over 140) and
    # 255 x 420 px away (Qwen: over 0.04 * 800 = 32 px, and no candidate box): wrong, right type.
    policy = Recorder([Click(x=300, y=700), Scroll(direction="down"), Type(text="wifi"), Key(key="back")])
    result = _run(tmp_path, "androidcontrol", [_ac_file(tmp_path / "ac.gz", screens)], policy, level="low")
    for convention in ("osatlas", "qwen_androidcontrol"):
        s = result.summary["scores"][convention]
        assert s["step_success_rate"] == 0.75 and s["type_accuracy"] == 1.0 and s["grounding_accuracy"] == 0.0
        per = {k: v["step_success_rate"] for k, v in result.summary["per_action_type"][convention].items()}
        assert per == {"click": 0.0, "scroll": 1.0, "input_text": 1.0, "navigate_back": 1.0}
    first = _lines(tmp_path / "out")[0]
    assert first["predicted_native"]["osatlas"] == "CLICK <point>[[833, 875]]</point>"
    assert first["gold"] == {
        "action_type": "click", "x": 45, "y": 280, "accessibility_tree": True, "candidate_bbox": []
    }  # fmt: skip
    assert policy.seen[2].task == f"{GOAL}\nCurrent step: type wifi"


def test_accessibility_trees_give_the_qwen_rule_its_candidate_boxes(tmp_path: Path, screens: dict) -> None:
    """(85, 300) is 44.7 px from the gold (45, 280), over 0.04 * 800 = 32 px, but inside the
    Settings icon (3-87, 233-327) enlarged 1.2x (-5.4..95.4, 223.6..336.4): wrong without the
    tree, right with it; OS-Atlas's rule reads no tree (111 x 25 on the grid: under 140)."""
    script = [Click(x=85, y=300), Scroll(direction="down"), Type(text="wifi"), Key(key="back")]
    for trees, expected in ((False, 0.75), (True, 1.0)):
        out = tmp_path / str(trees)
        out.mkdir()
        policy = Recorder(script)
        result = _run(out, "androidcontrol", [_ac_file(out / "ac.gz", screens, trees=trees)], policy, level="low")
        assert result.summary["scores"]["qwen_androidcontrol"]["step_success_rate"] == expected
        assert result.summary["scores"]["osatlas"]["step_success_rate"] == 1.0
    first = _lines(tmp_path / "True" / "out")[0]
    assert first["gold"]["candidate_bbox"] == [[3, 233, 87, 327]]
    assert first["predicted_native"]["qwen_androidcontrol"]["coordinate"] == [85, 300]


def test_open_app_counts_a_click_on_the_icon_only_where_the_tree_shows_it(tmp_path: Path, screens: dict) -> None:
    home = screens["home"][0]
    for trees, expected in ((b"\x0a\x00", 0.0), (screens["trees"]["home"], 1.0)):
        path = tmp_path / f"open{expected}.gz"
        record = androidcontrol_record(
            episode_id=3, goal="open settings", screenshots=[home, home],
            actions=[{"action_type": "open_app", "app_name": "settings"}], accessibility_trees=[trees, trees],
        )  # fmt: skip
        write_records(path, [record])
        out = tmp_path / f"out{expected}"
        out.mkdir()
        result = _run(out, "androidcontrol", [path], Recorder([Click(x=50, y=290)]))
        assert result.summary["scores"]["qwen_androidcontrol"]["step_success_rate"] == expected


def test_androidcontrol_high_level_shows_the_goal_alone(tmp_path: Path, screens: dict) -> None:
    policy = Recorder([Click(x=45, y=280), Scroll(direction="up"), Type(text="wifi"), Key(key="back")])
    result = _run(tmp_path, "androidcontrol", [_ac_file(tmp_path / "ac.gz", screens)], policy, batch=3)
    assert all(o.task == GOAL for o in policy.seen)
    assert result.summary["scores"]["osatlas"]["step_success_rate"] == 0.75  # the scroll goes the other way


@pytest.mark.parametrize(
    "change, reason",
    [
        ({"actions": [b'{"action_type": "click", "x": 1}']}, "needs a finite number 'y'"),
        ({"actions": [b"[" * 5000]}, "not JSON"),
        ({"actions": [b'{"action_type": "fly"}']}, "'fly' is not one of"),
        ({"actions": []}, "0 actions for 2 screenshots"),
        ({"screenshots": [b"not a png", b"x"]}, "screenshot cannot be decoded"),
    ],
)
def test_broken_androidcontrol_episodes_name_the_file_and_record(
    tmp_path: Path, change: dict[str, list[bytes]], reason: str
) -> None:
    image = Image.new("RGB", (8, 8), "white")
    record = androidcontrol_record(episode_id=1, goal="g", screenshots=[image, image],
                                   actions=[{"action_type": "wait"}])  # fmt: skip
    features = parse_example(record)
    bytes_lists = {**features.bytes_lists, **change}
    path = tmp_path / "broken.gz"
    write_records(path, [Features(bytes_lists, features.float_lists, features.int64_lists).encode()])
    with pytest.raises(DatasetError, match=reason) as caught:
        for episode in read_androidcontrol([path]):
            episode.steps[0].frame()
    assert f"{path}: record 0" in str(caught.value) and "\n" not in str(caught.value)


def test_an_aitw_record_without_a_field_names_it(tmp_path: Path) -> None:
    record = parse_example(aitw_record(episode_id="e", step_id=0, episode_length=1, goal="g",
                                       image=Image.new("RGB", (4, 4)), action_type=4, touch_yx=(0.5, 0.5),
                                       lift_yx=(0.5, 0.5)))  # fmt: skip
    floats = {k: v for k, v in record.float_lists.items() if k != "results/yx_lift"}
    write_records(tmp_path / "f.gz", [Features(record.bytes_lists, floats, record.int64_lists).encode()])
    with pytest.raises(DatasetError, match=r"record 0: not an AITW step \(feature 'results/yx_lift' is missing\)"):
        list(read_aitw([tmp_path / "f.gz"]))


# --- outputs ---------------------------------------------------------------------------------


def test_outputs_refuse_an_earlier_evaluation_and_survive_a_broken_file(tmp_path: Path, screens: dict) -> None:
    good = _aitw_file(tmp_path / "a.gz", screens)
    _run(tmp_path, "aitw", [good])
    with pytest.raises(OutputError, match=r"already holds results\.json"):
        _run(tmp_path, "aitw", [good])
    broken = tmp_path / "broken.gz"
    broken.write_bytes(gzip.compress(b"\x00" * 30))
    with pytest.raises(DatasetError):
        _run(tmp_path, "aitw", [good, broken], overwrite=True)
    summary = json.loads((tmp_path / "out" / "results.json").read_text())["summary"]
    assert summary["episodes"] == 1 and summary["steps"] == 4 and "broken.gz: record 0" in summary["stopped_by"]
    report = (tmp_path / "out" / "report.html").read_text()
    assert "Step-level evaluation: aitw" in report and "stopped by" in report


def test_ctrl_c_writes_the_steps_so_far(tmp_path: Path, screens: dict) -> None:
    policy = Recorder([Click(x=45, y=280), KeyboardInterrupt()])
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path, "aitw", [_aitw_file(tmp_path / "a.gz", screens)], policy)
    summary = json.loads((tmp_path / "out" / "results.json").read_text())["summary"]
    assert summary["interrupted"] is True and len(_lines(tmp_path / "out")) == 1


def test_a_split_file_chooses_the_episodes(tmp_path: Path, screens: dict) -> None:
    files = [_aitw_file(tmp_path / "a.gz", screens), _aitw_file(tmp_path / "b.gz", screens, episode="ep-b")]
    (tmp_path / "splits.json").write_text(json.dumps({"train": ["ep-a"], "test": ["ep-b", "ep-z"]}))
    result = _run(tmp_path, "aitw", files, episode_ids=read_split(tmp_path / "splits.json", "test"))
    assert result.summary["episodes"] == 1 and {line["episode"] for line in _lines(tmp_path / "out")} == {"ep-b"}
    with pytest.raises(DatasetError, match="no split 'dev'; it has train, test"):
        read_split(tmp_path / "splits.json", "dev")
    (tmp_path / "ints.json").write_text('{"test": [7]}')  # AndroidControl's ids are integers
    assert read_split(tmp_path / "ints.json", "test") == {"7"}


def test_level_low_is_only_for_androidcontrol(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="only AndroidControl"):
        StepEvalConfig(dataset="aitw", files=[tmp_path], out=tmp_path, level="low")


# --- the command -----------------------------------------------------------------------------


def _vlagent(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vlagent.cli", *args], capture_output=True, text=True, timeout=120,
        env={**os.environ, "ADBUTILS_ADB_PATH": "/bin/false"},
    )  # fmt: skip


def test_cli_eval_steps_writes_the_files_and_prints_the_table(tmp_path: Path, screens: dict) -> None:
    path = _ac_file(tmp_path / "ac.tfrecord.gz", screens)
    out = tmp_path / "out"
    result = _vlagent("eval-steps", "androidcontrol", str(path), "--out", str(out), "--level", "low")
    assert result.returncode == 0, result.stderr
    assert {p.name for p in out.iterdir()} >= {"results.json", "steps.jsonl", "report.html"}
    assert "androidcontrol (low level): 1 episodes, 4 steps" in result.stdout
    assert "osatlas                 100.0%" in result.stdout
    (tmp_path / "splits.json").write_text('{"test": [8]}')
    none = _vlagent("eval-steps", "androidcontrol", str(path), "--out", str(tmp_path / "o3"),
                    "--split", f"{tmp_path / 'splits.json'}:test")  # fmt: skip
    assert none.returncode == 0 and "0 episodes, 0 steps" in none.stdout, none.stderr
    broken = tmp_path / "broken.gz"
    broken.write_bytes(gzip.compress(b"\x01" * 40))
    failed = _vlagent("eval-steps", "aitw", str(broken), "--out", str(tmp_path / "out2"))
    assert failed.returncode == 2
    assert failed.stderr.strip().startswith("error: ") and "record 0" in failed.stderr
    assert len(failed.stderr.strip().splitlines()) == 1 and "Traceback" not in failed.stderr


def test_no_history_reuse_asks_memory_for_the_former_schedule() -> None:
    from vlagent.stepeval import _memory_config

    assert _memory_config({"no_history_reuse": True, "max_images": 3}).sizes == "shrink"
    assert _memory_config({"max_images": 3}).sizes == "stable"
