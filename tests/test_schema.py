"""The step schema shown to models: restricted per driver, compilable by llguidance, sound.

Soundness is checked by generating documents from the restricted schema itself (a small
generator below, independent of pydantic) and validating each with pydantic.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vlagent.actions import Click, Step
from vlagent.drivers.base import DESKTOP_CAPABILITIES, PHONE_CAPABILITIES, Capabilities
from vlagent.schema import JSONObject, describe_actions, step_schema

TINY_CAPS = Capabilities(actions=frozenset({"click", "done"}))


def _defs(schema: JSONObject) -> dict[str, Any]:
    defs = schema["$defs"]
    assert isinstance(defs, dict)
    return defs


def _action_names(schema: JSONObject) -> set[str]:
    return {d["properties"]["action"]["const"] for d in _defs(schema).values()}


def test_desktop_schema_has_no_phone_keys_and_no_phone_actions() -> None:
    schema = step_schema(DESKTOP_CAPABILITIES, grid=(1279, 799))
    assert _action_names(schema) == {"click", "type", "swipe", "scroll", "key", "wait", "done"}
    keys = _defs(schema)["Key"]["properties"]["key"]["enum"]
    assert "home" not in keys and "back" not in keys
    assert "enter" in keys and "f5" in keys
    assert "modifiers" in _defs(schema)["Key"]["properties"]
    assert _defs(schema)["Click"]["properties"]["button"]["enum"] == ["left", "right", "middle"]
    assert "long_press" not in json.dumps(schema) and "open_app" not in json.dumps(schema)


def test_phone_schema_has_no_right_button_and_no_modifiers() -> None:
    schema = step_schema(PHONE_CAPABILITIES)
    assert _defs(schema)["Click"]["properties"]["button"]["enum"] == ["left"]
    assert "modifiers" not in _defs(schema)["Key"]["properties"]
    assert "home" in _defs(schema)["Key"]["properties"]["key"]["enum"]
    assert {"long_press", "open_app"} <= _action_names(schema)


def test_coordinates_are_bounded_by_the_grid() -> None:
    schema = step_schema(grid=(1092, 2408))
    defs = _defs(schema)
    assert defs["Click"]["properties"]["x"]["maximum"] == 1092
    assert defs["Click"]["properties"]["y"]["maximum"] == 2408
    assert defs["Swipe"]["properties"]["x2"]["maximum"] == 1092
    assert defs["Swipe"]["properties"]["y1"]["maximum"] == 2408
    scroll_x = defs["Scroll"]["properties"]["x"]["anyOf"]
    assert {"type": "integer", "minimum": 0, "maximum": 1092} in scroll_x
    assert defs["Type"]["properties"]["text"]["maxLength"] == 500


def test_thought_is_required_or_absent() -> None:
    assert step_schema()["required"] == ["thought", "action"]
    without = step_schema(with_thought=False)
    assert without["required"] == ["action"]
    assert "thought" not in without["properties"]  # type: ignore[operator]


def test_schema_is_plain_json_without_pydantic_only_keywords() -> None:
    text = json.dumps(step_schema(PHONE_CAPABILITIES))
    assert "discriminator" not in text and "oneOf" not in text and '"title"' not in text


def test_a_single_allowed_action_is_not_wrapped_in_anyof() -> None:
    schema = step_schema(Capabilities(actions=frozenset({"done"})))
    assert schema["properties"]["action"] == {"$ref": "#/$defs/Done"}  # type: ignore[index]


def test_bad_grid_is_refused() -> None:
    with pytest.raises(ValueError, match="grid"):
        step_schema(grid=(0, 10))


def test_describe_actions_lists_only_allowed_actions_with_the_grid() -> None:
    text = describe_actions(DESKTOP_CAPABILITIES, (1279, 799))
    assert "0 to 1279 for x" in text and "0 to 799 for y" in text
    assert '"action": "click"' in text and '"action": "open_app"' not in text
    assert '"home"' not in text
    phone = describe_actions(PHONE_CAPABILITIES)
    assert '"action": "open_app"' in phone and '"modifiers"' not in phone and '"button"' not in phone


# --- documents generated from the schema are valid Steps ---------------------------------


def _from_schema(node: dict[str, Any], defs: dict[str, Any]) -> st.SearchStrategy[Any]:
    if "$ref" in node:
        return st.deferred(lambda: _from_schema(defs[node["$ref"].rsplit("/", 1)[-1]], defs))
    if "anyOf" in node:
        return st.one_of([_from_schema(branch, defs) for branch in node["anyOf"]])
    if "const" in node:
        return st.just(node["const"])
    if "enum" in node:
        return st.sampled_from(node["enum"])
    kind = node.get("type")
    if kind == "integer":
        return st.integers(node.get("minimum"), node.get("maximum"))
    if kind == "number":
        return st.floats(node.get("minimum"), node.get("maximum"), allow_nan=False)
    if kind == "string":
        return st.text(min_size=node.get("minLength", 0), max_size=node.get("maxLength"))
    if kind == "boolean":
        return st.booleans()
    if kind == "null":
        return st.none()
    if kind == "array":
        return st.lists(_from_schema(node["items"], defs), max_size=node.get("maxItems"))
    if kind == "object":
        props = node["properties"]
        required = node.get("required", [])
        optional = {k: _from_schema(v, defs) for k, v in props.items() if k not in required}
        return st.fixed_dictionaries({k: _from_schema(props[k], defs) for k in required}, optional=optional)
    raise AssertionError(f"schema node the generator does not know: {node}")


def _documents(schema: JSONObject) -> st.SearchStrategy[Any]:
    return _from_schema(dict(schema), _defs(schema))


@pytest.mark.parametrize(
    ("caps", "grid"),
    [(None, (1000, 1000)), (PHONE_CAPABILITIES, (999, 999)), (DESKTOP_CAPABILITIES, (1279, 799))],
    ids=["all", "phone", "desktop"],
)
def test_every_document_valid_under_the_schema_is_a_valid_step(
    caps: Capabilities | None, grid: tuple[int, int]
) -> None:
    schema = step_schema(caps, grid=grid)

    @settings(max_examples=150, deadline=None)
    @given(_documents(schema))
    def check(document: dict[str, Any]) -> None:
        step = Step.model_validate_json(json.dumps(document))
        if caps is not None:
            assert caps.refusal(step.action) is None

    check()


# --- llguidance compiles it and enforces it ----------------------------------------------


@pytest.fixture(scope="module")
def byte_tokenizer() -> Any:
    """A tiny byte-level BPE tokenizer trained on the spot: any text can be tokenized."""
    tokenizers = pytest.importorskip("tokenizers", reason="the qwen extra provides tokenizers")
    llguidance_hf = pytest.importorskip("llguidance.hf", reason="the qwen extra provides llguidance")
    transformers = pytest.importorskip("transformers", reason="the qwen extra provides transformers")
    pre = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok = tokenizers.Tokenizer(tokenizers.models.BPE())
    tok.pre_tokenizer = pre
    tok.decoder = tokenizers.decoders.ByteLevel()
    trainer = tokenizers.trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<|endoftext|>"], initial_alphabet=pre.alphabet()
    )
    tok.train_from_iterator([Step(action=Click(x=12, y=34)).model_dump_json(exclude_none=True)] * 20, trainer)
    hf = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>")
    return hf, llguidance_hf.from_tokenizer(hf)


def _accepts(byte_tokenizer: Any, schema: JSONObject, text: str) -> bool:
    import llguidance

    hf, ll_tok = byte_tokenizer
    grammar = llguidance.LLMatcher.grammar_from_json_schema(schema, defaults={"whitespace_flexible": False})
    matcher = llguidance.LLMatcher(ll_tok, grammar, log_level=0)
    assert not matcher.is_error(), matcher.get_error()
    return bool(matcher.consume_tokens(hf.encode(text, add_special_tokens=False)) and matcher.is_accepting())


def test_llguidance_accepts_a_valid_step_and_rejects_invalid_ones(byte_tokenizer: Any) -> None:
    phone = step_schema(PHONE_CAPABILITIES)
    assert _accepts(byte_tokenizer, phone, '{"thought":"go","action":{"action":"click","x":12,"y":34}}')
    assert _accepts(byte_tokenizer, phone, '{"thought":"","action":{"action":"key","key":"home"}}')
    # beyond the grid, a button the phone lacks, a key it lacks, no thought
    assert not _accepts(byte_tokenizer, phone, '{"thought":"go","action":{"action":"click","x":1001,"y":34}}')
    assert not _accepts(
        byte_tokenizer, phone, '{"thought":"go","action":{"action":"click","x":1,"y":3,"button":"right"}}'
    )
    assert not _accepts(byte_tokenizer, phone, '{"thought":"go","action":{"action":"key","key":"f5"}}')
    assert not _accepts(byte_tokenizer, phone, '{"action":{"action":"click","x":12,"y":34}}')
    desktop = step_schema(DESKTOP_CAPABILITIES, grid=(1279, 799))
    assert _accepts(
        byte_tokenizer, desktop, '{"thought":"copy","action":{"action":"key","key":"c","modifiers":["ctrl"]}}'
    )
    assert not _accepts(byte_tokenizer, desktop, '{"thought":"go","action":{"action":"open_app","name":"x"}}')
