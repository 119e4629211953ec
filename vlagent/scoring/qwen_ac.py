"""AndroidControl step matching by the rules of the Qwen2.5-VL AndroidControl evaluation.

Source: the Qwen team posted their AndroidControl evaluation code as a gist
(gist.github.com/LukeForeverYoung/1f5d19495788de0d905c5ac6341153f5), linked from
QwenLM/Qwen2.5-VL issue #904 (comment 2710055247, 2025-03-10). The gist itself could not be
read from this project's workplace. What is ported here is
Reallm-Labs/InfiGUI-R1, ``eval/android_control/evaluate_android_control.py``
(``evaluate_android_control_action``), added at commit
2c842d3b66f08a7e65c907ffd655f19c975b4951 (repository read at
d280ab8786cb3b063ae5cc62dc5fa91c4ceb348e), whose README says its AndroidControl evaluation
is "largely adapted from" that comment. Other published copies of the gist differ in two
rules (one compares the click distance in 0-1 units without ``max(W, H)``, one flips
up/down gold labels or skips the swipe check); the rules below are InfiGUI-R1's.

Actions are the dataset-side dicts of that script: ``{"action": "click", "coordinate": [x,
y], "candidate_bbox": [[x1, y1, x2, y2], ...]}`` and so on; the prediction's points are on
the resized image (``resized_width`` x ``resized_height``), the gold's on the original.

- ``click`` / ``long_press``: right inside any candidate box enlarged to 1.2x its width and
  height around its centre, NOT clipped at the screen edge, or when the pixel distance
  on the resized image is at most ``0.04 * max(resized_width, resized_height)``;
- ``open``: an ``open`` is right when one lower-cased, stripped text contains the other; a
  ``click`` also counts as the right type when the gold has a candidate box (the app's
  icon), judged as a click with the first box's centre as the gold point;
- ``swipe``: the predicted direction is the finger's (``up`` when it moves up; vertical on
  ties, measured in 0-1 units of each axis) and must equal the gold ``direction`` label;
- ``type``: substring either way, as for ``open``; ``system_button``: equal names;
  ``wait``: the type alone.

Where the script raises (a gold action it does not know, a missing field), this raises
``ValueError``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Literal, NamedTuple, Required, TypedDict

from vlagent.actions import SCROLL_FINGER, Action, CallUser, Click, Done, Key, LongPress, OpenApp, Scroll, Swipe, Type
from vlagent.scoring.boxes import Box

__all__ = [
    "QWEN_AC_BOX_FACTOR",
    "QWEN_AC_POINT_DISTANCE",
    "QwenAcAction",
    "QwenAcResult",
    "qwen_ac_action",
    "qwen_ac_direction",
    "qwen_ac_match",
]

#: ``BBOX_ENLARGE_FACTOR``: candidate boxes grow to 1.2x their width and height, unclipped.
QWEN_AC_BOX_FACTOR = 1.2
#: ``POINT_DISTANCE_THRESHOLD``: times ``max(width, height)`` of the resized image, in pixels.
QWEN_AC_POINT_DISTANCE = 0.04


class QwenAcAction(TypedDict, total=False):
    """One action as the script reads it (points and boxes in pixels)."""

    action: Required[str]
    coordinate: Sequence[float]
    coordinate2: Sequence[float]
    candidate_bbox: Sequence[Sequence[float]]
    text: str
    button: str
    direction: str


class QwenAcResult(NamedTuple):
    """The script's ``(type match, exact match)`` pair."""

    type_match: bool
    exact_match: bool


def _field(action: Mapping[str, object], key: str, side: str) -> object:
    if key not in action:
        raise ValueError(f"{side} {action.get('action')!r} action has no {key!r}: the reference script fails here")
    return action[key]


def _xy(value: object, key: str) -> tuple[float, float]:
    if not isinstance(value, Sequence) or len(value) < 2:
        raise ValueError(f"{key} must be an [x, y] pair, got {value!r}")
    return float(value[0]), float(value[1])


def _boxes(value: object) -> list[tuple[float, float, float, float]]:
    if not isinstance(value, Sequence):
        raise ValueError(f"candidate_bbox must be a list of [x1, y1, x2, y2], got {value!r}")
    out = []
    for row in value:
        if not isinstance(row, Sequence) or len(row) != 4:
            raise ValueError(f"candidate_bbox rows are [x1, y1, x2, y2], got {row!r}")
        out.append((float(row[0]), float(row[1]), float(row[2]), float(row[3])))
    return out


def _check_text(pred: str, gold: str) -> bool:
    """``check_text``: lower-cased and stripped, either one inside the other."""
    pred, gold = pred.lower().strip(), gold.lower().strip()
    return pred in gold or gold in pred


def _enlarge(box: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
    """``enlarge_bbox`` for one box: 1.2x around the centre, no clipping."""
    x_min, y_min, x_max, y_max = box
    x_center, y_center = (x_min + x_max) / 2, (y_min + y_max) / 2
    width, height = (x_max - x_min) * QWEN_AC_BOX_FACTOR, (y_max - y_min) * QWEN_AC_BOX_FACTOR
    return x_center - width / 2, y_center - height / 2, x_center + width / 2, y_center + height / 2


def _check_click(
    click: tuple[float, float],
    candidate_bbox: list[tuple[float, float, float, float]],
    gt_point: tuple[float, float],
    width: int,
    height: int,
) -> bool:
    """``check_click`` on normalised points and boxes; the distance in resized pixels."""
    for box in map(_enlarge, candidate_bbox):
        if (box[0] <= click[0] <= box[2]) and (box[1] <= click[1] <= box[3]):
            return True
    dx = (gt_point[0] - click[0]) * width
    dy = (gt_point[1] - click[1]) * height
    return math.sqrt(dx**2 + dy**2) <= QWEN_AC_POINT_DISTANCE * max(width, height)


def qwen_ac_direction(start: Sequence[float], end: Sequence[float]) -> Literal["up", "down", "left", "right"]:
    """``predict_direction``: the finger's direction; vertical unless |dx| > |dy| (no motion: up)."""
    delta_x, delta_y = end[0] - start[0], end[1] - start[1]
    if abs(delta_x) > abs(delta_y):
        return "right" if delta_x > 0 else "left"
    return "down" if delta_y > 0 else "up"


def _normalised(point: tuple[float, float], width: int, height: int) -> tuple[float, float]:
    return point[0] / width, point[1] / height


def qwen_ac_match(
    prediction: QwenAcAction,
    gold: QwenAcAction,
    width: int,
    height: int,
    resized_width: int,
    resized_height: int,
) -> QwenAcResult:
    """``evaluate_android_control_action(prediction, gold, width, height, resized_width, resized_height)``.

    ``width`` x ``height`` is the screenshot the gold points and boxes are in;
    ``resized_width`` x ``resized_height`` the image the model saw (its points are in it).
    """
    kind, pred_kind = gold["action"], prediction["action"]
    if kind == "wait":
        ok = pred_kind == "wait"
        return QwenAcResult(ok, ok)
    if kind == "system_button":
        if pred_kind != "system_button":
            return QwenAcResult(False, False)
        gold_button = str(_field(gold, "button", "gold")).lower().strip()
        return QwenAcResult(True, gold_button == str(_field(prediction, "button", "predicted")).lower().strip())
    if kind in ("type", "open") and pred_kind == kind:
        pred_text, gold_text = str(_field(prediction, "text", "predicted")), str(_field(gold, "text", "gold"))
        return QwenAcResult(True, _check_text(pred_text, gold_text))
    if kind == "type":
        return QwenAcResult(False, False)
    if kind == "open":
        boxes = _boxes(gold.get("candidate_bbox", []))
        if pred_kind != "click" or not boxes:
            return QwenAcResult(False, False)
        normal = [(x1 / width, y1 / height, x2 / width, y2 / height) for x1, y1, x2, y2 in boxes]
        centre = ((normal[0][0] + normal[0][2]) / 2, (normal[0][1] + normal[0][3]) / 2)
        click = _normalised(
            _xy(_field(prediction, "coordinate", "predicted"), "coordinate"), resized_width, resized_height
        )
        return QwenAcResult(True, _check_click(click, normal, centre, resized_width, resized_height))
    if kind == "swipe":
        if pred_kind != "swipe":
            return QwenAcResult(False, False)
        start = _normalised(
            _xy(_field(prediction, "coordinate", "predicted"), "coordinate"), resized_width, resized_height
        )
        end = _normalised(
            _xy(_field(prediction, "coordinate2", "predicted"), "coordinate2"), resized_width, resized_height
        )
        return QwenAcResult(True, qwen_ac_direction(start, end) == _field(gold, "direction", "gold"))
    if kind in ("long_press", "click"):
        if pred_kind != kind:
            return QwenAcResult(False, False)
        boxes = _boxes(_field(gold, "candidate_bbox", "gold"))
        normal = [(x1 / width, y1 / height, x2 / width, y2 / height) for x1, y1, x2, y2 in boxes]
        gold_point = _normalised(_xy(_field(gold, "coordinate", "gold"), "coordinate"), width, height)
        click = _normalised(
            _xy(_field(prediction, "coordinate", "predicted"), "coordinate"), resized_width, resized_height
        )
        return QwenAcResult(True, _check_click(click, normal, gold_point, resized_width, resized_height))
    raise ValueError(f"gold action {kind!r} is not one the reference script scores (it raises NotImplementedError)")


# --- vlagent actions as the script's dicts ---------------------------------------------------


def _finger(action: Scroll | Swipe, size: tuple[int, int]) -> tuple[list[float], list[float]]:
    if isinstance(action, Swipe):
        return [action.x1, action.y1], [action.x2, action.y2]
    width, height = size
    cx = action.x if action.x is not None else width / 2
    cy = action.y if action.y is not None else height / 2
    dx, dy = SCROLL_FINGER[action.direction]
    return [cx, cy], [cx + dx * width / 4, cy + dy * height / 4]


def qwen_ac_action(action: Action, size: tuple[int, int], boxes: Sequence[Box] = (), *, gold: bool) -> QwenAcAction:
    """``action`` (device pixels of a ``size`` screen) as the script's dict.

    A gold click, long press or open_app carries ``boxes`` as its ``candidate_bbox``. A gold
    scroll or swipe is labelled with the direction word :func:`qwen_ac_direction` gives its
    finger motion, the naming the script applies to predictions; a predicted scroll becomes
    the swipe that performs it (a quarter of the screen from its point or the centre).
    Actions outside the script's vocabulary keep their vlagent name (``done``, ``call_user``).
    """
    width, height = size
    if isinstance(action, (Click, LongPress)):
        out: QwenAcAction = {"action": action.action, "coordinate": [action.x, action.y]}
        if gold:
            out["candidate_bbox"] = [_pixel_box(b, size) for b in boxes]
        return out
    if isinstance(action, OpenApp):
        out = {"action": "open", "text": action.name}
        if gold:
            out["candidate_bbox"] = [_pixel_box(b, size) for b in boxes]
        return out
    if isinstance(action, Type):
        return {"action": "type", "text": action.text}
    if isinstance(action, (Scroll, Swipe)):
        start, end = _finger(action, size)
        if gold:
            return {
                "action": "swipe",
                "direction": qwen_ac_direction(
                    (start[0] / width, start[1] / height), (end[0] / width, end[1] / height)
                ),
            }
        return {"action": "swipe", "coordinate": start, "coordinate2": end}
    if isinstance(action, Key):
        return {"action": "system_button", "button": "+".join((*action.modifiers, action.key))}
    if isinstance(action, (Done, CallUser)):
        return {"action": action.action}
    return {"action": "wait"}


def _pixel_box(box: Box, size: tuple[int, int]) -> list[float]:
    width, height = size
    return [box.left * width, box.top * height, (box.left + box.width) * width, (box.top + box.height) * height]
