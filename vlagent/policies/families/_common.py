"""Shared pieces of the native-format parsers and grammars: validation, feedback, Lark bits.

Each family module turns its model's text into a plain dict in vlagent's action vocabulary
(``{"action": "click", "x": 12, "y": 34}``, grid coordinates); :func:`finish_step` turns
that dict into a validated Step or raises InvalidModelOutput with feedback that ends in the
family's own format hint. Keys, points and validation feedback are :mod:`vlagent.parsetail`'s,
shared with vlagent's JSON parser. This module must not import heavy libraries.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from vlagent.actions import Step, action_points
from vlagent.capabilities import Capabilities
from vlagent.errors import InvalidModelOutput
from vlagent.parsetail import (
    MAX_ANSWER_CHARS,
    NUMBER,
    ParseProblem,
    clipped,
    finite_number,
    key_name,
    numbers_in,
    oversized,
    point_of,
    repair_json,
    shape_problem,
    shown,
    split_hotkey,
    validate_step,
)

__all__ = [
    "MAX_ANSWER_CHARS",
    "NUMBER",
    "SPECIAL_TOKENS",
    "FamilyProblem",
    "finish_step",
    "finite_number",
    "int_range_regex",
    "invalid",
    "lark_literal",
    "numbers_in",
    "parse_keys",
    "point_of",
    "refuse_oversized",
    "repair_json",
    "shape_problem",
    "shown",
]

#: Special tokens that leak into decoded text (``<|im_end|>``, box tokens when not skipped).
SPECIAL_TOKENS = re.compile(r"<\|[A-Za-z0-9_]+\|>")

#: What is wrong with an answer; becomes the feedback shown to the model.
FamilyProblem = ParseProblem


def parse_keys(keys: str | Iterable[str], capabilities: Capabilities | None) -> dict[str, object]:
    """A hotkey such as ``'ctrl v'``, ``'ctrl+shift+a'`` or ``['ctrl', 'c']`` -> key action fields.

    A native format's ``home`` is the keyboard's line start on a device without a home button.
    """
    modifiers, word = split_hotkey(keys)
    key = key_name(word, capabilities)
    if key is None:
        raise FamilyProblem(f"unknown key {word!r}")
    fields: dict[str, object] = {"action": "key", "key": key}
    if modifiers:
        fields["modifiers"] = modifiers
    return fields


def finish_step(
    fields: Mapping[str, object],
    thought: str | None,
    grid: tuple[int, int],
    capabilities: Capabilities | None,
) -> Step:
    """A validated Step (grid coordinates) from vlagent action fields; raises FamilyProblem."""
    step = validate_step(fields, thought[:1000] if thought else None, grid)
    for x, y in action_points(step.action):
        if not (0 <= x <= grid[0] and 0 <= y <= grid[1]):
            raise FamilyProblem(f"point ({x}, {y}) is outside the screen: x must be 0..{grid[0]}, y 0..{grid[1]}")
    if capabilities is not None:
        refusal = capabilities.refusal(step.action)
        if refusal is not None:
            raise FamilyProblem(refusal)
    return step


def invalid(problem: FamilyProblem | str, hint: str, raw: str) -> InvalidModelOutput:
    """The typed error the loop feeds back: the problem, then how a valid answer looks."""
    return InvalidModelOutput(f"{problem}. {hint}", clipped(raw))


def refuse_oversized(text: str, hint: str) -> None:
    """Raise InvalidModelOutput for an answer longer than any step (the bound every parser shares).

    Called first by every native-format parser, before special tokens are stripped or anything is
    repaired, so that the time spent on a runaway answer does not depend on its size.
    """
    problem = oversized(text)
    if problem is not None:
        raise invalid(problem, hint, text)


# --- Lark helpers ------------------------------------------------------------------------


def lark_literal(text: str) -> str:
    """A Lark string literal for ``text``."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def int_range_regex(limit: int) -> str:
    """A regex (no anchors) matching the decimal integers 0..``limit`` without leading zeros."""
    if limit < 0:
        raise ValueError("limit must be >= 0")
    digits = str(limit)
    if len(digits) == 1:
        return f"[0-{limit}]"
    alternatives = ["[0-9]"]
    alternatives += [f"[1-9][0-9]{{{k - 1}}}" for k in range(2, len(digits))]
    for i, ch in enumerate(digits):
        low = 1 if i == 0 else 0
        d = int(ch)
        if d > low:
            rest = len(digits) - i - 1
            tail = f"[0-9]{{{rest}}}" if rest else ""
            alternatives.append(f"{digits[:i]}[{low}-{d - 1}]{tail}")
    alternatives.append(digits)
    return "(" + "|".join(alternatives) + ")"
