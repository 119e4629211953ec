"""Step-level scoring: does a predicted action match the gold one, by a published convention?

Three conventions are ports of the published scripts, equal to them on the scripts' own
inputs (each module names its source file and commit):

- ``aitw``: Android in the Wild's ``check_actions_match`` (:mod:`vlagent.scoring.aitw`), in
  float32 as the jax original computes, with every box passed in ``boxes`` as the screen's
  annotations. Actions outside AITW's vocabulary (open_app, wait, other keys, call_user) are
  compared by type. With no box at all, only the 0.14 distance rule is left (the original
  raises there).
- ``osatlas``: OS-Atlas's AndroidControl ``evaluation_unify.py`` (:mod:`vlagent.scoring.osatlas`)
  on the actions written in OS-Atlas's format, points rounded to the 0-1000 grid: clicks
  within 140, ``TYPE``/``OPEN_APP`` right when the first word after the type is equal (case
  aside), everything else by equal strings.
- ``qwen_androidcontrol``: the rules of the Qwen2.5-VL AndroidControl evaluation
  (:mod:`vlagent.scoring.qwen_ac`): clicks in a 1.2x unclipped box or within
  ``0.04 * max(width, height)`` pixels, open_app also answered by a click on the app's box,
  swipes by the finger's direction, text by substring.

Two are the project's own, kept because earlier results used them; neither equals a script:

- ``androidcontrol``: a click within 140 on the 0-1000 grid (unrounded), ``type`` and
  ``open_app`` text right when the SQuAD-style token F1 of the whole text is above 0.5,
  scrolls by direction, other actions by type (and key name).
- ``qwen``: a click inside a given box enlarged to 1.2x in total (clipped at the screen
  edge) or within 0.04 of the gold point (Euclidean, 0-1 units per axis); text by substring;
  scrolls and swipes by the content direction; open_app only by open_app.

Boxes are ``(top, left, height, width)`` fractions of the screen, containment inclusive of
edges. Inputs are typed: vlagent actions in device pixels, the screen size, optional boxes.
This package only compares; it must not run episodes or read files.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from vlagent.actions import (
    SCROLL_FINGER,
    Action,
    Click,
    Done,
    Key,
    LongPress,
    OpenApp,
    Scroll,
    Swipe,
    Type,
    Wait,
    tap_point,
)
from vlagent.scoring.aitw import (
    AITW_ANNOTATION_AUGMENT,
    AITW_SWIPE_DISTANCE,
    AITW_TAP_DISTANCE,
    AitwActionType,
    aitw_is_tap,
    aitw_match,
)
from vlagent.scoring.boxes import EPS, Box, augment_box
from vlagent.scoring.osatlas import (
    OSATLAS_CLICK_DISTANCE,
    OsAtlasResult,
    osatlas_action,
    osatlas_extract_action,
    osatlas_f1,
    osatlas_match,
)
from vlagent.scoring.qwen_ac import (
    QWEN_AC_BOX_FACTOR,
    QWEN_AC_POINT_DISTANCE,
    QwenAcAction,
    QwenAcResult,
    qwen_ac_action,
    qwen_ac_direction,
    qwen_ac_match,
)

__all__ = [
    "AITW_ANNOTATION_AUGMENT",
    "AITW_AUGMENT",
    "AITW_SWIPE_DISTANCE",
    "AITW_TAP_DISTANCE",
    "AITW_TAP_THRESHOLD",
    "ANDROIDCONTROL_CLICK_DISTANCE",
    "CONVENTIONS",
    "OSATLAS_CLICK_DISTANCE",
    "QWEN_AC_BOX_FACTOR",
    "QWEN_AC_POINT_DISTANCE",
    "QWEN_BOX_FACTOR",
    "QWEN_TAP_DISTANCE",
    "AitwActionType",
    "Box",
    "Convention",
    "OsAtlasResult",
    "QwenAcAction",
    "QwenAcResult",
    "ScoreSummary",
    "StepScore",
    "aitw_is_tap",
    "aitw_match",
    "augment_box",
    "osatlas_action",
    "osatlas_extract_action",
    "osatlas_f1",
    "osatlas_match",
    "qwen_ac_action",
    "qwen_ac_direction",
    "qwen_ac_match",
    "score_step",
    "summarize",
    "text_f1",
]

Convention = Literal["aitw", "androidcontrol", "osatlas", "qwen", "qwen_androidcontrol"]
CONVENTIONS: tuple[Convention, ...] = ("aitw", "androidcontrol", "osatlas", "qwen", "qwen_androidcontrol")

#: AITW: a dual-point gesture whose touch and lift are this close (0-1 units) is a tap.
AITW_TAP_THRESHOLD = AITW_SWIPE_DISTANCE
#: AITW: fraction of a box's height/width ADDED to it (the box becomes 2.4x).
AITW_AUGMENT = AITW_ANNOTATION_AUGMENT
#: ``androidcontrol`` variant: click tolerance on the 0-1000 grid.
ANDROIDCONTROL_CLICK_DISTANCE = 140.0
#: ``androidcontrol`` variant: text is right when token F1 is strictly above this.
ANDROIDCONTROL_TEXT_F1 = 0.5
#: ``qwen`` variant: total enlargement factor of a box (1.2x, i.e. 0.2 added).
QWEN_BOX_FACTOR = 1.2
#: ``qwen`` variant: click tolerance (0-1 units) when outside the box.
QWEN_TAP_DISTANCE = 0.04


@dataclass(frozen=True)
class StepScore:
    """How one predicted action compares with the gold one under one convention.

    ``grounding`` is None when the gold action addresses no point (nothing to ground);
    ``text_match`` is None when the gold action carries no text.
    """

    convention: Convention
    type_match: bool
    grounding: bool | None
    text_match: bool | None
    success: bool
    detail: str = ""


@dataclass(frozen=True)
class ScoreSummary:
    """Aggregate of many StepScores: the three numbers papers report, plus their bases."""

    steps: int
    type_accuracy: float
    grounding_accuracy: float | None
    """Over steps whose gold action addresses a point; None when there were none."""
    step_success_rate: float
    grounded_steps: int
    text_accuracy: float | None = None

    def as_dict(self) -> dict[str, float | int | None]:
        return {
            "steps": self.steps,
            "type_accuracy": self.type_accuracy,
            "grounding_accuracy": self.grounding_accuracy,
            "step_success_rate": self.step_success_rate,
            "grounded_steps": self.grounded_steps,
            "text_accuracy": self.text_accuracy,
        }


def summarize(scores: Iterable[StepScore]) -> ScoreSummary:
    """Type accuracy, grounding accuracy (over grounded gold steps) and step success rate."""
    items = list(scores)
    n = len(items)
    grounded = [s.grounding for s in items if s.grounding is not None]
    texts = [s.text_match for s in items if s.text_match is not None]
    return ScoreSummary(
        steps=n,
        type_accuracy=sum(s.type_match for s in items) / n if n else 0.0,
        grounding_accuracy=sum(grounded) / len(grounded) if grounded else None,
        step_success_rate=sum(s.success for s in items) / n if n else 0.0,
        grounded_steps=len(grounded),
        text_accuracy=sum(texts) / len(texts) if texts else None,
    )


# --- shared helpers ---------------------------------------------------------------------


def _norm(x: float, y: float, size: tuple[int, int]) -> tuple[float, float]:
    """Device pixels -> normalised (y, x), the order AITW uses."""
    width, height = size
    return y / height, x / width


def _dist(a: tuple[float, float], b: tuple[float, float]) -> float:
    return math.hypot(a[0] - b[0], a[1] - b[1])


def _gesture(action: Action, size: tuple[int, int]) -> tuple[tuple[float, float], tuple[float, float]] | None:
    """(touch_yx, lift_yx) normalised, for actions AITW records as a dual-point gesture."""
    if isinstance(action, (Click, LongPress)):
        p = _norm(action.x, action.y, size)
        return p, p
    if isinstance(action, Swipe):
        return _norm(action.x1, action.y1, size), _norm(action.x2, action.y2, size)
    if isinstance(action, Scroll):
        cx = action.x if action.x is not None else size[0] / 2
        cy = action.y if action.y is not None else size[1] / 2
        ty, tx = _norm(cx, cy, size)
        dx, dy = SCROLL_FINGER[action.direction]
        # A quarter of the screen: any scroll is far beyond the 0.04 tap threshold.
        return (ty, tx), (ty + 0.25 * dy, tx + 0.25 * dx)
    return None


def _direction(action: Action) -> str | None:
    """Content direction revealed by a scroll or swipe (``down`` = finger moves up)."""
    if isinstance(action, Scroll):
        return action.direction
    if isinstance(action, Swipe):
        dx, dy = action.x2 - action.x1, action.y2 - action.y1
        if dx == 0 and dy == 0:
            return None
        if abs(dy) >= abs(dx):
            return "down" if dy < 0 else "up"
        return "right" if dx < 0 else "left"
    return None


def _text(action: Action) -> str | None:
    if isinstance(action, Type):
        return action.text
    if isinstance(action, OpenApp):
        return action.name
    if isinstance(action, Done):
        return action.answer
    return None


def _tokens(text: str) -> list[str]:
    return re.findall(r"\w+", text.casefold())


def text_f1(prediction: str, gold: str) -> float:
    """SQuAD-style token F1 over case-insensitive ``\\w+`` tokens, counted with repeats.

    The ``androidcontrol`` variant uses it; OS-Atlas's script computes another F1
    (:func:`~vlagent.scoring.osatlas.osatlas_f1`, over whitespace token sets).
    """
    pred, ref = _tokens(prediction), _tokens(gold)
    if not pred or not ref:
        return float(pred == ref)
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def _same_text(a: str, b: str) -> bool:
    return " ".join(a.split()).casefold() == " ".join(b.split()).casefold()


def _substring(a: str, b: str) -> bool:
    a, b = a.strip().casefold(), b.strip().casefold()
    return a in b or b in a


# --- AITW: the reference port on vlagent actions ---------------------------------------------

_AITW_KEYS = {"back": AitwActionType.PRESS_BACK, "home": AitwActionType.PRESS_HOME, "enter": AitwActionType.PRESS_ENTER}
_NOWHERE = (-1.0, -1.0)  # the dataset's touch/lift of actions that are not gestures


def _aitw_fields(action: Action, size: tuple[int, int]) -> tuple[tuple[float, float], tuple[float, float], int | str]:
    """(touch_yx, lift_yx, type) as AITW records them; the type is a vlagent name outside its vocabulary."""
    gesture = _gesture(action, size)
    if gesture is not None:
        return gesture[0], gesture[1], AitwActionType.DUAL_POINT
    if isinstance(action, Type):
        return _NOWHERE, _NOWHERE, AitwActionType.TYPE
    if isinstance(action, Key) and not action.modifiers and action.key in _AITW_KEYS:
        return _NOWHERE, _NOWHERE, _AITW_KEYS[action.key]
    if isinstance(action, Done):
        status = (
            AitwActionType.STATUS_TASK_COMPLETE if action.status == "success" else AitwActionType.STATUS_TASK_IMPOSSIBLE
        )
        return _NOWHERE, _NOWHERE, status
    if isinstance(action, Key):
        return _NOWHERE, _NOWHERE, "key:" + "+".join((*action.modifiers, action.key))
    return _NOWHERE, _NOWHERE, action.action


def _aitw(pred: Action, gold: Action, size: tuple[int, int], boxes: Sequence[Box]) -> StepScore:
    p_touch, p_lift, ptype = _aitw_fields(pred, size)
    g_touch, g_lift, gtype = _aitw_fields(gold, size)
    gold_text = _text(gold) if isinstance(gold, (Type, OpenApp)) else None
    pred_text = _text(pred)
    text_match = None if gold_text is None else (pred_text is not None and _same_text(pred_text, gold_text))
    dual = AitwActionType.DUAL_POINT
    g_tap = gtype == dual and aitw_is_tap(g_touch, g_lift)
    p_tap = ptype == dual and aitw_is_tap(p_touch, p_lift)
    if isinstance(ptype, str) or isinstance(gtype, str):
        match = ptype == gtype  # outside AITW's action types: compared by type, as it does its own
    else:
        annotations = [(b.top, b.left, b.height, b.width) for b in boxes]
        match = aitw_match(p_touch, p_lift, ptype, g_touch, g_lift, gtype, annotations, no_annotations="distance")
    if ptype != gtype:
        return StepScore("aitw", False, False if g_tap else None, text_match, False, f"type {ptype} != {gtype}")
    if ptype != dual:
        return StepScore("aitw", True, None, text_match, match, "")
    if p_tap != g_tap:
        return StepScore("aitw", False, False if g_tap else None, None, False, "tap vs swipe")
    if g_tap:
        detail = "" if match else f"distance {_dist(p_touch, g_touch):.3f} > 0.14 and no box holds both"
        return StepScore("aitw", True, match, None, match, detail)
    return StepScore("aitw", True, None, None, match, "" if match else "swipe on the other axis")


# --- the reference ports: OS-Atlas and Qwen AndroidControl -----------------------------------


def _osatlas(pred: Action, gold: Action, size: tuple[int, int]) -> StepScore:
    p, g = osatlas_action(pred, size), osatlas_action(gold, size)
    result = osatlas_match(p, g)
    ok = result.step_match
    grounding = (ok if result.type_match else False) if isinstance(gold, (Click, LongPress)) else None
    text = (ok if result.type_match else False) if isinstance(gold, (Type, OpenApp)) else None
    return StepScore("osatlas", result.type_match, grounding, text, ok, "" if ok else f"{p} vs {g}")


def _qwen_ac(pred: Action, gold: Action, size: tuple[int, int], boxes: Sequence[Box]) -> StepScore:
    p, g = qwen_ac_action(pred, size, gold=False), qwen_ac_action(gold, size, boxes, gold=True)
    convention: Convention = "qwen_androidcontrol"
    if g["action"] in ("done", "call_user"):
        # Outside the script's vocabulary (it raises): the project compares the type, and a done's status.
        ok = p["action"] == g["action"] and (
            not isinstance(gold, Done) or (isinstance(pred, Done) and pred.status == gold.status)
        )
        return StepScore(
            convention, p["action"] == g["action"], None, None, ok, "" if ok else f"{p['action']} vs {g['action']}"
        )
    width, height = size
    result = qwen_ac_match(p, g, width, height, width, height)
    ok = result.exact_match
    grounding = (ok if result.type_match else False) if isinstance(gold, (Click, LongPress)) else None
    text = (ok if result.type_match else False) if isinstance(gold, (Type, OpenApp)) else None
    return StepScore(convention, result.type_match, grounding, text, ok, "" if ok else f"{p} vs {g}")


# --- the project's own variants: androidcontrol and qwen ---------------------------------


def _family(action: Action) -> str:
    """Action type as these benchmarks name it: swipes count as scrolls, keys by name."""
    if isinstance(action, Swipe):
        return "scroll"
    if isinstance(action, Key):
        return "key:" + "+".join((*action.modifiers, action.key))
    if isinstance(action, Done):
        return "done"
    return action.action


def _point_based(
    convention: Convention, pred: Action, gold: Action, size: tuple[int, int], boxes: Sequence[Box]
) -> StepScore:
    ptype, gtype = _family(pred), _family(gold)
    if ptype != gtype:
        grounding = False if tap_point(gold) is not None else None
        text = False if _text(gold) is not None and not isinstance(gold, Done) else None
        return StepScore(convention, False, grounding, text, False, f"type {ptype} != {gtype}")
    gold_point, pred_point = tap_point(gold), tap_point(pred)
    if gold_point is not None and pred_point is not None:
        ok, detail = _grounded(convention, pred_point, gold_point, size, boxes)
        return StepScore(convention, True, ok, None, ok, detail)
    if gtype == "scroll":
        ok = _direction(pred) == _direction(gold)
        return StepScore(
            convention, True, None, None, ok, "" if ok else f"direction {_direction(pred)} != {_direction(gold)}"
        )
    if isinstance(gold, (Type, OpenApp)):
        p, g = _text(pred) or "", _text(gold) or ""
        if convention == "androidcontrol":
            f1 = text_f1(p, g)
            ok = f1 > ANDROIDCONTROL_TEXT_F1
            return StepScore(convention, True, None, ok, ok, f"text F1 {f1:.2f}")
        ok = _substring(p, g)
        return StepScore(convention, True, None, ok, ok, "" if ok else "text differs")
    if isinstance(gold, Done):
        ok = isinstance(pred, Done) and pred.status == gold.status
        return StepScore(convention, True, None, None, ok, "" if ok else "other status")
    if isinstance(gold, Wait):
        return StepScore(convention, True, None, None, True)
    return StepScore(convention, True, None, None, True)


def _grounded(
    convention: Convention, pred: tuple[int, int], gold: tuple[int, int], size: tuple[int, int], boxes: Sequence[Box]
) -> tuple[bool, str]:
    if convention == "androidcontrol":
        width, height = size
        d = math.hypot((pred[0] - gold[0]) / width * 1000, (pred[1] - gold[1]) / height * 1000)
        return d <= ANDROIDCONTROL_CLICK_DISTANCE + EPS, f"distance {d:.0f}/1000"
    p, g = _norm(*pred, size), _norm(*gold, size)
    enlarged = [augment_box(b, QWEN_BOX_FACTOR - 1.0) for b in boxes]
    # The gold element's box is the one holding the gold point; the prediction must hit it.
    if any(b.contains(*g) and b.contains(*p) for b in enlarged):
        return True, "in the gold box"
    d = _dist(p, g)
    return d <= QWEN_TAP_DISTANCE + EPS, f"distance {d:.3f}"


def score_step(
    prediction: Action,
    gold: Action,
    size: tuple[int, int],
    *,
    boxes: Sequence[Box] = (),
    convention: Convention = "aitw",
) -> StepScore:
    """Compare ``prediction`` with ``gold`` (both in device pixels of a ``size`` = (width, height) screen).

    ``boxes`` are the annotated UI elements of the screen (``aitw``: every annotation the
    reference should see) or the gold element's box (``qwen``, ``qwen_androidcontrol``:
    the candidate boxes); without them only the distance rules apply.
    """
    if size[0] <= 0 or size[1] <= 0:
        raise ValueError(f"screen size must be positive, got {size}")
    if convention == "aitw":
        return _aitw(prediction, gold, size, boxes)
    if convention == "osatlas":
        return _osatlas(prediction, gold, size)
    if convention == "qwen_androidcontrol":
        return _qwen_ac(prediction, gold, size, boxes)
    if convention in ("androidcontrol", "qwen"):
        return _point_based(convention, prediction, gold, size, boxes)
    raise ValueError(f"unknown scoring convention {convention!r}: use one of {', '.join(CONVENTIONS)}")
