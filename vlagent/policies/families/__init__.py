"""Model families: each model's own prompt, output format, coordinate units and action mapping.

=========  ===============================  ======================  ==============================
family     models                           units                   output format
=========  ===============================  ======================  ==============================
qwen2vl    Qwen2-VL-*-Instruct (default)    0-1000 relative         vlagent JSON step
qwen25vl   Qwen2.5-VL-*-Instruct            pixels of resized image mobile_use/computer_use call
qwen3vl    Qwen3-VL-*                       0-999 relative          Thought/Action + tool call
uitars     UI-TARS 2B/7B/72B (v1)           0-1000 relative         Thought/Action: click(...)
uitars15   UI-TARS-1.5-7B                   pixels of resized image Thought/Action: click(...)
showui     ShowUI-2B                        0-1 fractions           Python dict {'action': ...}
=========  ===============================  ======================  ==============================

:data:`BUILTIN` lists them in registration order; :mod:`vlagent.policies.prompt` registers
them. Each module documents what its parser accepts and rejects. Nothing here imports
heavy libraries.
"""

from __future__ import annotations

from vlagent.policies.families import qwen_tools, showui, uitars
from vlagent.policies.families.base import ModelFamily

__all__ = ["BUILTIN"]

_TOOL_ASK = "What is the next action? Answer with one tool call."
_TARS_ASK = "What is the next action? Answer in the Thought/Action format."

BUILTIN: tuple[ModelFamily, ...] = (
    ModelFamily(
        "qwen2vl",
        "norm1000",
        model_types=("qwen2_vl",),
        name_hints=("qwen2-vl", "qwen2_vl"),
        models="Qwen2-VL-2B/7B/72B-Instruct, OS-Atlas (Qwen2-VL based)",
    ),
    ModelFamily(
        "qwen25vl",
        "abs_resized",
        model_types=("qwen2_5_vl",),
        name_hints=("qwen2.5-vl", "qwen2_5_vl"),
        json_actions=False,
        parse=qwen_tools.parse_tool_call,
        instructions=qwen_tools.instructions_qwen25,
        grammar=qwen_tools.grammar_qwen25,
        render=qwen_tools.render_tool_call,
        ask=_TOOL_ASK,
        user_turn=qwen_tools.user_turn_qwen25,
        models="Qwen2.5-VL-3B/7B/32B/72B-Instruct",
    ),
    ModelFamily(
        "qwen3vl",
        "norm999",
        model_types=("qwen3_vl", "qwen3_vl_moe"),
        name_hints=("qwen3-vl",),
        json_actions=False,
        parse=qwen_tools.parse_tool_call,
        instructions=qwen_tools.instructions_qwen3,
        grammar=qwen_tools.grammar_qwen3,
        render=qwen_tools.render_tool_call,
        ask=_TOOL_ASK,
        user_turn=qwen_tools.user_turn_qwen3,
        models="Qwen3-VL-2B/4B/8B/32B, Qwen3-VL-30B-A3B/235B-A22B",
    ),
    ModelFamily(
        "showui",
        "norm1000",
        model_types=("qwen2_vl",),
        name_hints=("showui",),
        json_actions=False,
        parse=showui.parse_showui,
        instructions=showui.instructions_showui,
        grammar=showui.grammar_showui,
        render=showui.render_showui,
        ask="What is the next action? Answer with one dictionary.",
        user_turn=showui.user_turn_showui,
        instructions_in_user=True,
        models="ShowUI-2B",
    ),
    ModelFamily(
        "uitars",
        "norm1000",
        model_types=("qwen2_vl",),
        name_hints=("ui-tars", "uitars", "ui_tars"),
        json_actions=False,
        parse=uitars.parse_v1,
        instructions=uitars.instructions_v1,
        grammar=uitars.grammar_v1,
        render=uitars.render_v1,
        ask=_TARS_ASK,
        history_turns=uitars.answer_text,
        models="UI-TARS-2B/7B/72B-SFT and -DPO",
    ),
    ModelFamily(
        "uitars15",
        "abs_resized",
        model_types=("qwen2_5_vl",),
        name_hints=("ui-tars-1.5", "ui_tars_1.5", "uitars-1.5", "ui-tars-15", "uitars15"),
        json_actions=False,
        parse=uitars.parse_v15,
        instructions=uitars.instructions_v15,
        grammar=uitars.grammar_v15,
        render=uitars.render_v15,
        ask=_TARS_ASK,
        history_turns=uitars.answer_text,
        models="UI-TARS-1.5-7B",
    ),
)
