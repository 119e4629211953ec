"""Step-level scoring: does a predicted action match the gold one, by a published convention?

Three conventions are implemented, each as its authors define it:

- ``aitw`` (Android in the Wild, ``action_matching.py``): coordinates normalised to 0-1 per
  axis. Types must be equal. A dual-point gesture (click, long press, swipe, scroll) is a
  *tap* when touch and lift are within 0.04 of each other (Euclidean). Two taps match when
  both lie inside one and the same annotated box after augmentation, or are within 0.14 of
  each other. Augmentation ADDS 1.4 times the height and width (2.4x in total, centred), the
  top/left clipped at 0 and the height/width at 1, exactly as the original code does. Two
  swipes match when their main axis (argmax of |dy|, |dx|) is the same. Typed text is not
  part of the match; it is reported separately in ``text_match``.
- ``androidcontrol`` (OS-Atlas evaluation of AndroidControl): a click or long press is right
  within 140 on the 0-1000 grid; ``type`` and ``open_app`` text right when token F1 > 0.5;
  scrolls by direction; other actions by type (and key name).
- ``qwen`` (Qwen2.5-VL / AITZ style): a click is right inside an annotated box enlarged to
  1.2x in total, or within 0.04 of the gold point; text right when one string contains the
  other (case-insensitive); scrolls and swipes by direction.

Boxes are ``(top, left, height, width)`` fractions of the screen, containment inclusive of
edges. Inputs are typed: vlagent actions in device pixels, the screen size, optional boxes.
This module only compares; it must not run episodes or read files.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal, NamedTuple

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

__all__ = [
    "AITW_AUGMENT",
    "AITW_TAP_DISTANCE",
    "AITW_TAP_THRESHOLD",
    "ANDROIDCONTROL_CLICK_DISTANCE",
    "CONVENTIONS",
    "QWEN_BOX_FACTOR",
    "QWEN_TAP_DISTANCE",
    "Box",
    "Convention",
    "ScoreSummary",
    "StepScore",
    "augment_box",
    "score_step",
    "summarize",
    "text_f1",
]

Convention = Literal["aitw", "androidcontrol", "qwen"]
CONVENTIONS: tuple[Convention, ...] = ("aitw", "androidcontrol", "qwen")

#: AITW: a dual-point gesture whose touch and lift are this close (0-1 units) is a tap.
AITW_TAP_THRESHOLD = 0.04
#: AITW: two taps this close (0-1 units) match even outside any box.
AITW_TAP_DISTANCE = 0.14
#: AITW: fraction of a box's height/width ADDED to it (the box becomes 2.4x).
AITW_AUGMENT = 1.4
#: AndroidControl (OS-Atlas): click tolerance on the 0-1000 grid.
ANDROIDCONTROL_CLICK_DISTANCE = 140.0
#: AndroidControl (OS-Atlas): text is right when token F1 is strictly above this.
ANDROIDCONTROL_TEXT_F1 = 0.5
#: Qwen / AITZ: total enlargement factor of a box (1.2x, i.e. 0.2 added).
QWEN_BOX_FACTOR = 1.2
#: Qwen / AITZ: click tolerance (0-1 units) when outside the box.
QWEN_TAP_DISTANCE = 0.04
# Thresholds are inclusive; pixel -> fraction arithmetic must not push a point lying exactly
# on one (e.g. 540/1000 - 500/1000 = 0.04000000000000004) to the wrong side.
_EPS = 1e-9


class Box(NamedTuple):
    """An annotated UI element: ``(top, left, height, width)`` as fractions of the screen."""

    top: float
    left: float
    height: float
    width: float

    @classmethod
    def from_pixels(cls, x0: float, y0: float, x1: float, y1: float, width: int, height: int) -> Box:
        """From pixel corners ``(x0, y0)``-``(x1, y1)`` on a ``width`` x ``height`` screen."""
        return cls(y0 / height, x0 / width, (y1 - y0) / height, (x1 - x0) / width)

    def contains(self, y: float, x: float) -> bool:
        """Inclusive of the edges, as in AITW's ``_yx_in_bounding_boxes``."""
        return (
            self.top - _EPS <= y <= self.top + self.height + _EPS
            and self.left - _EPS <= x <= self.left + self.width + _EPS
        )


def augment_box(box: Box, added: float) -> Box:
    """Enlarge ``box`` by ADDING ``added`` times its height and width, centred, clipped as AITW does.

    ``added=1.4`` is AITW's augmentation (2.4x in total); ``added=0.2`` is the Qwen/AITZ 1.2x.
    """
    dh, dw = added * box.height, added * box.width
    return Box(
        max(0.0, box.top - dh / 2), max(0.0, box.left - dw / 2), min(1.0, box.height + dh), min(1.0, box.width + dw)
    )


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
    """Token-level F1 (case-insensitive word tokens), as in SQuAD and the OS-Atlas scripts."""
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


# --- AITW ---------------------------------------------------------------------------------


def _aitw_type(action: Action, size: tuple[int, int]) -> str:
    gesture = _gesture(action, size)
    if gesture is not None:
        return "dual_point"
    if isinstance(action, Key):
        # AITW has PRESS_BACK / PRESS_HOME / PRESS_ENTER as distinct types.
        return "key:" + "+".join((*action.modifiers, action.key))
    if isinstance(action, Done):
        return "status_complete" if action.status == "success" else "status_impossible"
    return action.action


def _aitw(pred: Action, gold: Action, size: tuple[int, int], boxes: Sequence[Box]) -> StepScore:
    ptype, gtype = _aitw_type(pred, size), _aitw_type(gold, size)
    gold_text = _text(gold) if isinstance(gold, (Type, OpenApp)) else None
    pred_text = _text(pred)
    text_match = None if gold_text is None else (pred_text is not None and _same_text(pred_text, gold_text))
    pg, gg = _gesture(pred, size), _gesture(gold, size)
    if pg is None or gg is None:
        match = ptype == gtype
        grounding = False if gg is not None and _dist(*gg) <= AITW_TAP_THRESHOLD + _EPS else None
        return StepScore("aitw", match, grounding, text_match, match, "" if match else f"type {ptype} != {gtype}")
    p_tap = _dist(*pg) <= AITW_TAP_THRESHOLD + _EPS
    g_tap = _dist(*gg) <= AITW_TAP_THRESHOLD + _EPS
    if p_tap != g_tap:
        return StepScore("aitw", False, False if g_tap else None, None, False, "tap vs swipe")
    if g_tap:
        p, g = pg[0], gg[0]
        in_same_box = any(b.contains(*p) and b.contains(*g) for b in (augment_box(b, AITW_AUGMENT) for b in boxes))
        close = _dist(p, g) <= AITW_TAP_DISTANCE + _EPS
        ok = in_same_box or close
        detail = "in the same box" if in_same_box else f"distance {_dist(p, g):.3f}" + ("" if close else " > 0.14")
        return StepScore("aitw", True, ok, None, ok, detail)
    p_axis = _main_axis(pg)
    g_axis = _main_axis(gg)
    ok = p_axis == g_axis
    return StepScore("aitw", True, None, None, ok, "" if ok else "swipe on the other axis")


def _main_axis(gesture: tuple[tuple[float, float], tuple[float, float]]) -> int:
    (y0, x0), (y1, x1) = gesture
    # argmax over (|dy|, |dx|): ties go to the y axis, as numpy's argmax picks the first.
    return 0 if abs(y1 - y0) >= abs(x1 - x0) else 1


# --- AndroidControl (OS-Atlas) and Qwen ----------------------------------------------------


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
        return d <= ANDROIDCONTROL_CLICK_DISTANCE + _EPS, f"distance {d:.0f}/1000"
    p, g = _norm(*pred, size), _norm(*gold, size)
    enlarged = [augment_box(b, QWEN_BOX_FACTOR - 1.0) for b in boxes]
    # The gold element's box is the one holding the gold point; the prediction must hit it.
    if any(b.contains(*g) and b.contains(*p) for b in enlarged):
        return True, "in the gold box"
    d = _dist(p, g)
    return d <= QWEN_TAP_DISTANCE + _EPS, f"distance {d:.3f}"


def score_step(
    prediction: Action,
    gold: Action,
    size: tuple[int, int],
    *,
    boxes: Sequence[Box] = (),
    convention: Convention = "aitw",
) -> StepScore:
    """Compare ``prediction`` with ``gold`` (both in device pixels of a ``size`` = (width, height) screen).

    ``boxes`` are the annotated UI elements of the screen (AITW) or the gold element's box
    (Qwen); without them only the distance rules apply.
    """
    if size[0] <= 0 or size[1] <= 0:
        raise ValueError(f"screen size must be positive, got {size}")
    if convention == "aitw":
        return _aitw(prediction, gold, size, boxes)
    if convention in ("androidcontrol", "qwen"):
        return _point_based(convention, prediction, gold, size, boxes)
    raise ValueError(f"unknown scoring convention {convention!r}: use one of {', '.join(CONVENTIONS)}")
