"""The prompt shown to a model and the model families' coordinate conventions (no model needed)."""

from __future__ import annotations

import pytest
from PIL import Image

from vlagent.actions import Click, Swipe
from vlagent.drivers.base import DESKTOP_CAPABILITIES, PHONE_CAPABILITIES
from vlagent.errors import ConfigError, InvalidModelOutput
from vlagent.frames import Frame
from vlagent.policies.base import HistoryEntry, Observation
from vlagent.policies.grammar import bound_numbers, cap_strings
from vlagent.policies.prompt import ModelFamily, build_messages, detect_family, get_family, register_family
from vlagent.schema import step_schema


def _frame(width: int, height: int, colour: str = "white") -> Frame:
    return Frame.of(Image.new("RGB", (width, height), colour))


def _texts(messages: list[dict[str, object]]) -> str:
    parts = [p for m in messages for p in m["content"]]  # type: ignore[attr-defined]
    return "\n".join(p["text"] for p in parts if p["type"] == "text")


def test_messages_carry_task_actions_history_hint_feedback_and_images_current_last() -> None:
    old, current = _frame(280, 560, "red"), _frame(560, 1120, "blue")
    obs = Observation(
        "turn on wifi",
        Frame.of(Image.new("RGB", (1080, 2400))),
        PHONE_CAPABILITIES,
        step_index=2,
        history=(HistoryEntry(0, Click(x=540, y=1200), thought="open settings"),),
        images=(old, current),
        feedback="point (1200, 5) is outside the screen",
        hint="the last 2 actions changed nothing",
    )
    messages = build_messages(obs, get_family("qwen2vl"))
    assert [m["role"] for m in messages] == ["system", "user"]
    system = messages[0]["content"][0]["text"]
    assert "Task: turn on wifi" in system and '"open_app"' in system and "0 to 1000" in system
    images = [p["image"] for p in messages[1]["content"] if p["type"] == "image"]
    assert images == [old.image, current.image]
    labels = [p["text"] for p in messages[1]["content"] if p["type"] == "text"]
    assert labels[0].startswith("Earlier screenshot 1") and labels[1].startswith("Current screen (step 3)")
    text = _texts(messages)
    # History is shown in the model's grid (0-1000), not in device pixels.
    assert "Step 1: click(500, 500) - open settings" in text
    assert "changed nothing" in text and "outside the screen" in text


@pytest.mark.parametrize("family", ["qwen2vl", "showui"])
def test_earlier_screens_are_labelled_by_step_so_the_prompt_start_stays_put(family: str) -> None:
    """With memory's choice, an earlier screen's label names its step (not its rank among the shown
    ones), so under block dropping each prompt's images and labels start like the previous one's."""
    from vlagent.memory import MemoryConfig, TrajectoryMemory

    memory = TrajectoryMemory(MemoryConfig(max_images=4, half_steps=0))
    parts: list[list[object]] = []
    for step in range(7):
        frame = _frame(1080, 2400, ("red", "green", "blue", "white", "black", "gray", "pink")[step])
        obs = Observation(
            "open settings", frame, PHONE_CAPABILITIES, step, memory.history, choice=memory.lazy_choice(frame)
        )
        user = build_messages(obs, get_family(family))[-1]["content"]
        shown = [p["image"] if p["type"] == "image" else p["text"] for p in user]  # type: ignore[index]
        earlier = [n for n, p in enumerate(shown) if isinstance(p, str) and p.startswith(("Screenshot at", "Earlier"))]
        parts.append([item for n in earlier for item in shown[n : n + 2]])  # each label and its image
        memory.add(HistoryEntry(step, Click(x=1, y=1)), frame)
    labels = [p for p in parts[-1] if isinstance(p, str)]
    # Blocks of three: the screens of steps 0-2, then 3-5 (labels count steps from 1).
    assert labels == ["Screenshot at step 4:", "Screenshot at step 5:", "Screenshot at step 6:"]
    assert [p for p in parts[4] if isinstance(p, str)] == ["Screenshot at step 4:"]
    grown = [n for n in range(1, 7) if len(parts[n]) > len(parts[n - 1])]
    for n in grown:  # the earlier screens of a prompt start the next one's, as the same image objects
        assert all(a is b or a == b for a, b in zip(parts[n - 1], parts[n], strict=False)), (n, parts[n - 1], parts[n])
    assert len(grown) >= 3


def test_desktop_prompt_lists_only_desktop_actions() -> None:
    obs = Observation("save the file", _frame(1280, 800), DESKTOP_CAPABILITIES)
    system = build_messages(obs, get_family("qwen2vl"))[0]["content"][0]["text"]
    assert "computer" in system and '"open_app"' not in system and '"long_press"' not in system


@pytest.mark.parametrize(
    ("model_type", "name", "family", "grid"),
    [
        ("qwen2_vl", "Qwen/Qwen2-VL-2B-Instruct", "qwen2vl", (1000, 1000)),
        ("qwen2_5_vl", "Qwen/Qwen2.5-VL-3B-Instruct", "qwen25vl", (1092, 2408)),
        ("qwen3_vl", "/models/anything", "qwen3vl", (999, 999)),
        (None, "Qwen/Qwen2.5-VL-7B-Instruct", "qwen25vl", (1092, 2408)),
    ],
)
def test_family_detection_and_grid(model_type: str | None, name: str, family: str, grid: tuple[int, int]) -> None:
    detected = detect_family(model_type, name)
    assert detected.name == family
    assert detected.grid((1092, 2408)) == grid


def test_fine_tune_family_registered_by_name_wins_over_its_architecture() -> None:
    tars = register_family(
        ModelFamily(
            "test-tars",
            "norm1000",
            model_types=("qwen2_vl",),
            name_hints=("ui-tars",),
            json_actions=False,
            instructions=lambda task, caps, family, size, thought: f"Thought: ...\nAction: click(...) for {task}",
        )
    )
    try:
        assert detect_family("qwen2_vl", "bytedance-research/UI-TARS-2B-SFT") is tars
        assert detect_family("qwen2_vl", "Qwen/Qwen2-VL-2B-Instruct").name == "qwen2vl"
        obs = Observation("open mail", _frame(1080, 2400), PHONE_CAPABILITIES)
        system = build_messages(obs, tars)[0]["content"][0]["text"]
        assert system == "Thought: ...\nAction: click(...) for open mail"
    finally:
        from vlagent.policies.prompt import FAMILIES

        FAMILIES.pop("test-tars")


def test_unknown_family_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="qwen2vl"):
        get_family("nope")


def test_abs_resized_codec_maps_image_pixels_to_the_screen() -> None:
    family = get_family("qwen25vl")
    codec = family.codec((1092, 2408))  # the image the model saw, for a 1080x2400 screen
    assert codec.to_device(546, 1204, 1080, 2400) == (540, 1200)
    assert codec.to_device(1092, 2408, 1080, 2400) == (1079, 2399)
    with pytest.raises(InvalidModelOutput, match="1092"):
        codec.to_device(1200, 10, 1080, 2400)
    assert "1092x2408 pixels" in family.coordinate_rule((1092, 2408))


def test_qwen3_history_uses_its_999_grid() -> None:
    obs = Observation(
        "t",
        _frame(1000, 2000),
        PHONE_CAPABILITIES,
        history=(HistoryEntry(0, Swipe(x1=0, y1=2000, x2=1000, y2=0)),),
    )
    # Shown in the family's own tool-call arguments, on its 0-999 grid.
    text = _texts(build_messages(obs, get_family("qwen3vl")))
    assert '{"action": "swipe", "coordinate": [0, 999], "coordinate2": [999, 0]}' in text


def test_grammar_schema_caps_strings_and_numbers() -> None:
    schema = step_schema(PHONE_CAPABILITIES)
    capped = cap_strings(schema, 12, fields=("text",))
    assert capped["$defs"]["Type"]["properties"]["text"]["maxLength"] == 12
    assert capped["$defs"]["OpenApp"]["properties"]["name"]["maxLength"] == 100  # untouched
    assert schema["$defs"]["Type"]["properties"]["text"]["maxLength"] == 500  # a copy, not in place
    bounded = bound_numbers(schema)
    assert bounded["$defs"]["Wait"]["properties"]["seconds"]["multipleOf"] == 0.01
    assert "multipleOf" not in bounded["$defs"]["Click"]["properties"]["x"]
