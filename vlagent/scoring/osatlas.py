"""AndroidControl step accuracy as OS-Atlas's evaluation script computes it.

Reference: OS-Copilot/OS-Atlas, ``eval/eval_scripts/android_control/evaluation_unify.py``
(``evaluate`` and ``calculate_f1_score``), last changed at commit
38740e54f17860834caf7d708fd3aa96769139e1 (read at the repository's commit
bad08407ab54b5bf6c17a69fe1ced476b9494926). The script compares action *strings* in
OS-Atlas's format (``CLICK <point>[[x, y]]</point>``, ``TYPE [text]``, ``SCROLL [UP]``,
``OPEN_APP [name]``, ``PRESS_BACK``, ``WAIT``, ...), points on the 0-1000 grid:

- the type is the first whitespace token; types must be equal;
- ``CLICK`` / ``LONG_PRESS``: the first two runs of digits (``\\d+``) of each string are the
  point (a prediction without two gives (-100, -100)); right when the Euclidean distance is
  at most 0.14 * 1000 on the grid;
- ``OPEN_APP`` / ``TYPE``: right when the strings are equal or when ``calculate_f1_score`` of
  their *second whitespace token* is above 0.5. That token is the first word with its
  bracket (``[Google`` of ``OPEN_APP [Google Chrome]``) and the F1 is over lower-cased
  token *sets*, so in effect the first word must be equal, case aside, bracket included;
- anything else: the strings must be equal.

Where the script would crash (an empty prediction, a ``TYPE``/``OPEN_APP`` string with one
token, a gold click without two numbers), :func:`osatlas_match` raises ``ValueError``.
"""

from __future__ import annotations

import math
import re
from typing import NamedTuple

from vlagent.actions import SCROLL_FINGER, Action, CallUser, Click, Done, Key, LongPress, OpenApp, Scroll, Swipe, Type

__all__ = [
    "OSATLAS_CLICK_DISTANCE",
    "OsAtlasResult",
    "osatlas_action",
    "osatlas_extract_action",
    "osatlas_f1",
    "osatlas_match",
]

#: ``0.14*1000``: click tolerance on the 0-1000 grid ("14 % of screen size").
OSATLAS_CLICK_DISTANCE = 0.14 * 1000


class OsAtlasResult(NamedTuple):
    """What the script counts for one step: ``type_match`` and the step match (``full``)."""

    type_match: bool
    step_match: bool


def osatlas_extract_action(prediction: str) -> str:
    """The action part of a model answer, as the script cuts it.

    The text after ``actions:\\n`` with every leading/trailing character of ``<|im_end|>``
    stripped (``str.strip`` takes a *set* of characters), or ``"invalid action"`` when there
    is no ``actions:\\n``.
    """
    parts = prediction.split("actions:\n")
    if len(parts) < 2:
        return "invalid action"
    return parts[1].strip("<|im_end|>")  # noqa: B005 - a set of characters, as in the script


def osatlas_f1(predicted: str, ground_truth: str) -> float:
    """``calculate_f1_score``: F1 over the *sets* of lower-cased whitespace tokens (0 when empty)."""
    predicted_tokens = set(predicted.lower().split())
    ground_truth_tokens = set(ground_truth.lower().split())
    common_tokens = predicted_tokens.intersection(ground_truth_tokens)
    precision = len(common_tokens) / len(predicted_tokens) if predicted_tokens else 0
    recall = len(common_tokens) / len(ground_truth_tokens) if ground_truth_tokens else 0
    if precision + recall == 0:
        return 0
    return 2 * (precision * recall) / (precision + recall)


def _point(action: str) -> tuple[int, int]:
    numbers = re.findall(r"\d+", action)
    return int(numbers[0]), int(numbers[1])


def _second_token(action: str, side: str) -> str:
    tokens = action.split()
    if len(tokens) < 2:
        raise ValueError(f"{side} action {action!r} has no argument: OS-Atlas's script fails here (IndexError)")
    return tokens[1]


def osatlas_match(prediction: str, gold: str) -> OsAtlasResult:
    """Score one predicted action string against the gold one, as ``evaluate`` does.

    ``prediction`` is the already extracted action (see :func:`osatlas_extract_action`),
    ``gold`` the text after ``actions:\\n`` of the gold answer.
    """
    gold_tokens, pred_tokens = gold.split(), prediction.split()
    if not gold_tokens or not pred_tokens:
        side = "gold" if not gold_tokens else "predicted"
        raise ValueError(f"the {side} action is empty: OS-Atlas's script fails here (IndexError)")
    gold_type, pred_type = gold_tokens[0], pred_tokens[0]
    if gold_type != pred_type:
        return OsAtlasResult(False, False)
    if gold_type in ("CLICK", "LONG_PRESS"):
        try:
            pred_x, pred_y = _point(prediction)
        except (IndexError, ValueError):  # the script's bare except
            pred_x, pred_y = -100, -100
        try:
            gold_x, gold_y = _point(gold)
        except IndexError as exc:
            raise ValueError(f"gold action {gold!r} has no point: OS-Atlas's script fails here") from exc
        distance = math.sqrt((pred_x - gold_x) ** 2 + (pred_y - gold_y) ** 2)
        return OsAtlasResult(True, distance <= OSATLAS_CLICK_DISTANCE)
    if gold_type in ("OPEN_APP", "TYPE"):
        if gold == prediction:
            return OsAtlasResult(True, True)
        pred_word, gold_word = _second_token(prediction, "predicted"), _second_token(gold, "gold")
        return OsAtlasResult(True, osatlas_f1(pred_word, gold_word) > 0.5)
    return OsAtlasResult(True, gold == prediction)


# --- vlagent actions in OS-Atlas's words -----------------------------------------------------


def _grid(value: int, extent: int) -> int:
    """Device pixels -> the 0-1000 grid, to the nearest whole number (halves up)."""
    return math.floor(value * 1000 / extent + 0.5)


def _scroll_word(action: Scroll | Swipe) -> str:
    if isinstance(action, Scroll):
        return action.direction.upper()
    dx, dy = action.x2 - action.x1, action.y2 - action.y1
    # The content direction the finger reveals, the word vlagent's Scroll uses.
    for word, (fx, fy) in SCROLL_FINGER.items():
        if (abs(dy) >= abs(dx) and fx == 0 and fy * dy > 0) or (abs(dx) > abs(dy) and fy == 0 and fx * dx > 0):
            return word.upper()
    return "NONE"  # a swipe that does not move


def osatlas_action(action: Action, size: tuple[int, int]) -> str:
    """``action`` (device pixels of a ``size`` = (width, height) screen) as OS-Atlas writes it.

    Points go to the 0-1000 grid rounded to whole numbers, as the script reads them; swipes
    become ``SCROLL`` with the direction of the content they reveal (vlagent's word); keys
    become ``PRESS_<KEY>``; done is ``COMPLETE`` (``IMPOSSIBLE`` when it failed). Actions
    outside OS-Atlas's AndroidControl vocabulary (other keys, a failed done, call_user) get
    names that only equal themselves.
    """
    width, height = size
    if isinstance(action, (Click, LongPress)):
        name = "CLICK" if isinstance(action, Click) else "LONG_PRESS"
        return f"{name} <point>[[{_grid(action.x, width)}, {_grid(action.y, height)}]]</point>"
    if isinstance(action, Type):
        return f"TYPE [{action.text}]"
    if isinstance(action, OpenApp):
        return f"OPEN_APP [{action.name}]"
    if isinstance(action, (Scroll, Swipe)):
        return f"SCROLL [{_scroll_word(action)}]"
    if isinstance(action, Key):
        return "PRESS_" + "+".join((*action.modifiers, action.key)).upper()
    if isinstance(action, Done):
        return "COMPLETE" if action.status == "success" else "IMPOSSIBLE"
    if isinstance(action, CallUser):
        return "CALL_USER"
    return "WAIT"
