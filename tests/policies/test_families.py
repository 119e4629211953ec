"""Each model family's parser on realistic answers, its prompt (snapshots) and its grammar.

The answers in ``tests/data/family_outputs.yaml`` are written from each family's
documented format and the defects seen in the wild (REFERENCE section 8); the expected
actions are in device pixels, so the parser, the coordinate codec and the action mapping
are checked together, the way a user's episode uses them. No model is needed here.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from vlagent.actions import ACTION_ADAPTER, Click
from vlagent.coords import decode_action
from vlagent.drivers.base import DESKTOP_CAPABILITIES, PHONE_CAPABILITIES
from vlagent.errors import InvalidModelOutput
from vlagent.policies.families._common import int_range_regex
from vlagent.policies.prompt import FAMILIES, detect_family, get_family, system_prompt

DATA = Path(__file__).parent.parent / "data"
CASES: dict[str, Any] = yaml.safe_load((DATA / "family_outputs.yaml").read_text(encoding="utf-8"))
SCREEN: tuple[int, int] = tuple(CASES["screen"])  # type: ignore[assignment]
IMAGE: tuple[int, int] = tuple(CASES["image"])  # type: ignore[assignment]
BUILTIN = ("qwen2vl", "qwen25vl", "qwen3vl", "showui", "uitars", "uitars15")


def _cases() -> list[Any]:
    return [
        pytest.param(name, case, id=f"{name}-{i}")
        for name, cases in CASES["families"].items()
        for i, case in enumerate(cases)
    ]


def test_every_family_has_at_least_15_valid_and_some_invalid_answers() -> None:
    assert set(CASES["families"]) == set(BUILTIN)
    for name, cases in CASES["families"].items():
        assert sum("expect" in c for c in cases) >= 15, name
        assert any("error" in c for c in cases), name


@pytest.mark.parametrize(("name", "case"), _cases())
def test_answer_becomes_the_expected_device_action(name: str, case: dict[str, Any]) -> None:
    family = get_family(name)
    caps = DESKTOP_CAPABILITIES if case.get("device") == "desktop" else PHONE_CAPABILITIES
    grid = family.grid(IMAGE)
    if "error" in case:
        with pytest.raises(InvalidModelOutput) as info:
            family.parse(case["raw"], grid, caps)
        assert case["error"] in info.value.feedback
        assert info.value.raw == case["raw"]
        return
    step = family.parse(case["raw"], grid, caps)
    action = decode_action(step.action, family.codec(IMAGE), *SCREEN)
    assert action == ACTION_ADAPTER.validate_python(case["expect"])
    if "thought" in case:
        assert step.thought == case["thought"]


@pytest.mark.parametrize("name", [n for n in BUILTIN if n != "qwen2vl"])
@pytest.mark.parametrize("device", ["phone", "desktop"])
def test_system_prompt_snapshot(name: str, device: str) -> None:
    caps = PHONE_CAPABILITIES if device == "phone" else DESKTOP_CAPABILITIES
    text = system_prompt("Turn on Wi-Fi", caps, get_family(name), IMAGE)
    path = DATA / "family_prompts" / f"{name}-{device}.txt"
    if os.environ.get("VLAGENT_UPDATE_SNAPSHOTS"):
        path.parent.mkdir(exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert text == path.read_text(encoding="utf-8"), f"prompt changed; rerun with VLAGENT_UPDATE_SNAPSHOTS=1 ({path})"


def test_prompts_state_the_grid_the_model_answers_on() -> None:
    assert "The screen's resolution is 1092x2408." in system_prompt(
        "t", PHONE_CAPABILITIES, get_family("qwen25vl"), IMAGE
    )
    assert "The screen's resolution is 999x999." in system_prompt("t", PHONE_CAPABILITIES, get_family("qwen3vl"), IMAGE)
    assert "press_home()" in system_prompt("t", PHONE_CAPABILITIES, get_family("uitars"), IMAGE)
    assert "press_home()" not in system_prompt("t", DESKTOP_CAPABILITIES, get_family("uitars"), IMAGE)


@pytest.mark.parametrize(
    ("model_type", "name", "family"),
    [
        ("qwen2_vl", "bytedance-research/UI-TARS-7B-SFT", "uitars"),
        ("qwen2_5_vl", "ByteDance-Seed/UI-TARS-1.5-7B", "uitars15"),
        (None, "ByteDance-Seed/UI-TARS-1.5-7B", "uitars15"),
        ("qwen2_vl", "showlab/ShowUI-2B", "showui"),
        ("qwen2_vl", "/models/my-finetune", "qwen2vl"),
        ("qwen2_5_vl", "/models/agent", "qwen25vl"),
        ("qwen3_vl", "Qwen/Qwen3-VL-8B-Instruct", "qwen3vl"),
    ],
)
def test_family_detection_prefers_the_fine_tune_by_name(model_type: str | None, name: str, family: str) -> None:
    assert detect_family(model_type, name).name == family


def test_int_range_regex_matches_exactly_0_to_n() -> None:
    import re

    for limit in (0, 7, 10, 99, 100, 999, 1000, 1092, 2408):
        pattern = re.compile(int_range_regex(limit))
        matched = [n for n in range(3000) if pattern.fullmatch(str(n))]
        assert matched == list(range(limit + 1))
        assert not pattern.fullmatch("01")


@pytest.mark.parametrize("name", [n for n in BUILTIN if n != "qwen2vl"])
@pytest.mark.parametrize("caps", [PHONE_CAPABILITIES, DESKTOP_CAPABILITIES], ids=["phone", "desktop"])
def test_native_grammar_compiles_for_a_real_tokenizer(name: str, caps: Any, tiny_qwen2vl: Path) -> None:
    pytest.importorskip("llguidance", reason="needs the qwen extra (llguidance)")
    transformers = pytest.importorskip("transformers", reason="needs the qwen extra (transformers)")
    import llguidance
    import llguidance.hf

    from vlagent.policies.prompt import GrammarLimits

    tok = transformers.AutoTokenizer.from_pretrained(str(tiny_qwen2vl))
    eos = tok.convert_tokens_to_ids("<|im_end|>")
    tokenizer = llguidance.hf.from_tokenizer(tok, n_vocab=len(tok), eos_token=eos)
    family = FAMILIES[name]
    lark = family.lark_grammar(caps, family.grid(IMAGE), GrammarLimits(40, 20, True))
    assert lark is not None
    grammar = llguidance.LLMatcher.grammar_from_lark(lark)
    assert not llguidance.LLMatcher.validate_grammar(grammar, tokenizer)


def test_uitars_box_centre_is_rounded_once_to_a_device_pixel() -> None:
    # The `ui-tars` package decodes this v1 box on a 1080x2400 screen to (634.5, 951.6): the
    # centre (587.5, 396.5) on the 0-1000 grid, scaled exactly. Rounding it to the grid first
    # would land on y=950.
    family = get_family("uitars")
    text = "Thought: tap it\nAction: click(start_box='<|box_start|>(578,383,597,410)<|box_end|>')"
    step = family.parse(text, family.grid((1080, 2400)), PHONE_CAPABILITIES)
    action = decode_action(step.action, family.codec((1080, 2400)), 1080, 2400)
    assert isinstance(action, Click)  # device pixels are ints: within half a pixel of (634.5, 951.6)
    assert action.x in (634, 635) and action.y == 952


def test_a_plugin_parser_never_sees_a_runaway_answer() -> None:
    """Policies read answers through ``ModelFamily.read``: the shared size bound comes first, so a
    plugin family's own parser (here one that would take time per character) is not even called."""
    from vlagent.actions import Step, Wait
    from vlagent.errors import InvalidModelOutput
    from vlagent.parsetail import MAX_ANSWER_CHARS
    from vlagent.policies.families.base import ModelFamily

    seen: list[int] = []

    def slow_parse(text: str, grid: tuple[int, int], capabilities: object) -> Step:
        seen.append(len(text))
        return Step(action=Wait())

    plugin = ModelFamily(name="plugin-test", coords="norm1000", parse=slow_parse)
    with pytest.raises(InvalidModelOutput, match="characters long") as error:
        plugin.read("{" * (MAX_ANSWER_CHARS + 1), (1000, 1000), None)
    assert seen == [] and len(error.value.raw) < MAX_ANSWER_CHARS + 100
    assert plugin.read("wait", (1000, 1000), None).action == Wait()
    assert seen == [4]
