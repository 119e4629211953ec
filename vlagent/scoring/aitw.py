"""Android in the Wild action matching, equal to the reference script on every input.

Reference: google-research/google-research, ``android_in_the_wild/action_matching.py``
(``check_actions_match``), commit 8d8a4f1b27753c7580d16261a1468b3d6ad2c3d3 (same logic at
1d49f2c0d5506a6e11115726164d42f6b7b7b95a), with the action ids of
``android_in_the_wild/action_type.py`` at commit 4c4299485319ed72ef782020c81784be5468924e.

The reference is written with ``jax.numpy``; this is a pure-Python port of what it computes,
down to the rounding:

- jax (64-bit mode off, its default) turns the four touch/lift points into float32 arrays,
  so every distance and comparison is float32 arithmetic, and the Python thresholds (0.04,
  0.14) are compared as float32 (0.04 becomes 0.03999999910593033). There is no epsilon.
- ``jnp.linalg.norm`` is compiled by XLA, whose CPU backend fuses the sum of squares into a
  multiply-add (dx squared and rounded, dy squared and added in one rounding). Separate
  float32 operations differ from it on about 1 in 7,000 of the boundary cases tested.
- The annotation boxes are enlarged with plain numpy *before* they reach jax: a float64 array
  (what ``np.array(example...float_list.value)`` gives, the way the dataset's own
  ``visualization_utils.py`` reads them) is enlarged in float64 and rounded to float32 once
  by ``jnp.maximum``/``jnp.minimum``; a float32 array is enlarged in float32.
- ``jnp.max`` of an empty array raises, and the reference computes the tap rule for every
  pair, so with no annotation on the screen it raises ``ValueError`` for *every* pair, typed
  actions included. :func:`aitw_match` does the same unless ``no_annotations="distance"``,
  which answers as if no box held both taps (only the 0.14 distance rule is left).

Checked against the reference itself run by jax 0.10.2 on an x86-64 CPU: 43,000
boundary-biased cases and 3,000 with NaN, infinities, subnormal and huge values, no
difference (tests/test_aitw_match.py runs it where the reference imports). Another backend
(GPU, TPU), a jax that does not compile ``norm``, or jax's 64-bit mode (everything float64)
may answer otherwise on a point within one float32 step of a threshold.
"""

from __future__ import annotations

import enum
import math
import struct
from collections.abc import Sequence
from typing import Literal

__all__ = [
    "AITW_ANNOTATION_AUGMENT",
    "AITW_SWIPE_DISTANCE",
    "AITW_TAP_DISTANCE",
    "AitwActionType",
    "aitw_is_tap",
    "aitw_match",
]

#: ``_TAP_DISTANCE_THRESHOLD``: two taps this close (fraction of the screen) match.
AITW_TAP_DISTANCE = 0.14
#: ``ANNOTATION_{WIDTH,HEIGHT}_AUGMENT_FRACTION``: fraction of a box's size ADDED to it (2.4x).
AITW_ANNOTATION_AUGMENT = 1.4
#: ``_SWIPE_DISTANCE_THRESHOLD``: a dual point whose touch and lift are this close is a tap.
AITW_SWIPE_DISTANCE = 0.04

_F32 = struct.Struct("<f")
_I32 = struct.Struct("<i")


class AitwActionType(enum.IntEnum):
    """The dataset's ``results/action_type`` ids (``action_type.py``; 0-2, 8 and 9 are unused)."""

    TYPE = 3
    DUAL_POINT = 4
    PRESS_BACK = 5
    PRESS_HOME = 6
    PRESS_ENTER = 7
    STATUS_TASK_COMPLETE = 10
    STATUS_TASK_IMPOSSIBLE = 11


def _f32(value: float) -> float:
    """``value`` rounded to the nearest float32 (out of range: infinity, as a float32 cast does).

    Rounding the exact float64 result of one +, -, *, / or sqrt of float32 operands gives the
    float32 result: 53 bits hold 2 x 24 + 2, so the double rounding is harmless.
    """
    try:
        return float(_F32.unpack(_F32.pack(value))[0])
    except OverflowError:
        return math.copysign(math.inf, value)


def _max(a: float, b: float) -> float:
    """``jnp.maximum``: NaN wins (Python's max would drop it)."""
    return b if math.isnan(b) else a if math.isnan(a) else max(a, b)


def _min(a: float, b: float) -> float:
    """``jnp.minimum``: NaN wins."""
    return b if math.isnan(b) else a if math.isnan(a) else min(a, b)


def _point(yx: Sequence[float], name: str) -> tuple[float, float]:
    if len(yx) != 2:
        raise ValueError(f"{name} must be a (y, x) pair, got {len(yx)} values")
    return _f32(float(yx[0])), _f32(float(yx[1]))


def _next32(value: float, toward: float) -> float:
    """The float32 next to the float32 ``value`` in the direction of ``toward``."""
    bits = _I32.unpack(_F32.pack(value))[0]
    if value == 0.0:
        step = 1 if toward > 0 else -1
        return float(_F32.unpack(_I32.pack(step if step > 0 else -(2**31) + 1))[0])
    up = (toward > value) == (value > 0)
    return float(_F32.unpack(_I32.pack(bits + 1 if up else bits - 1))[0])


def _fma32(a: float, b: float, c: float) -> float:
    """float32 ``a * b + c`` with one rounding (a fused multiply-add), for float32 ``a, b, c``.

    ``a * b`` is exact in float64 (24 + 24 bits); the float64 sum and its exact error (TwoSum)
    decide the float32 rounding, including a sum that lands on a float32 tie.
    """
    product = a * b
    total = product + c
    if not math.isfinite(total):
        return _f32(total)
    back = total - product
    error = (product - (total - back)) + (c - back)
    rounded = _f32(total)
    if error == 0.0 or rounded == total or math.isinf(rounded):
        return rounded
    other = _next32(rounded, total)
    if (rounded + other) / 2 != total:
        return rounded  # not a tie: the float64 sum already sits on the right side
    return max(rounded, other) if error > 0 else min(rounded, other)


def _norm(a: tuple[float, float], b: tuple[float, float]) -> float:
    """``jnp.linalg.norm(a - b)`` as XLA computes it on CPU: one fused multiply-add.

    jax compiles ``norm`` (``sqrt(sum(d * d))``) as one XLA computation, and XLA's CPU backend
    contracts the sum of squares: the x term is squared and rounded, then the y term is
    multiplied and added in one rounding, then the float32 square root.
    """
    dy, dx = _f32(a[0] - b[0]), _f32(a[1] - b[1])
    return _f32(math.sqrt(_fma32(dy, dy, _f32(dx * dx))))


def _is_tap(touch: tuple[float, float], lift: tuple[float, float]) -> bool:
    return _norm(touch, lift) <= _f32(AITW_SWIPE_DISTANCE)


def aitw_is_tap(touch_yx: Sequence[float], lift_yx: Sequence[float]) -> bool:
    """``is_tap_action``: touch and lift within 0.04 of each other, in float32."""
    return _is_tap(_point(touch_yx, "touch_yx"), _point(lift_yx, "lift_yx"))


def _main_axis(touch: tuple[float, float], lift: tuple[float, float]) -> int:
    """``np.argmax(jnp.abs(lift - touch))``: the first maximum, and a NaN counts as the maximum."""
    dy, dx = abs(_f32(lift[0] - touch[0])), abs(_f32(lift[1] - touch[1]))
    if math.isnan(dy):
        return 0
    if math.isnan(dx):
        return 1
    return 0 if dy >= dx else 1


_Box = tuple[float, float, float, float]


def _dtype_of(annotation_positions: object) -> Literal["float64", "float32"]:
    dtype = getattr(annotation_positions, "dtype", None)
    if dtype is None:
        return "float64"  # a nested list: what np.array() of Python floats gives
    name = str(dtype)
    if name == "float32":
        return "float32"
    if name == "float64" or name.startswith(("int", "uint")):
        return "float64"  # whole numbers enlarge exactly as float64 (1.4 * int -> float64)
    raise ValueError(f"annotation positions of dtype {name} are not supported: use float32 or float64")


def _resized_boxes(
    annotation_positions: Sequence[Sequence[float]],
    dtype: Literal["float64", "float32"],
    height_fraction: float,
    width_fraction: float,
) -> list[_Box]:
    """``_resize_annotation_bounding_boxes`` then the box edges ``_yx_in_bounding_boxes`` compares.

    Returns (top, left, bottom, right) in float32, as jax holds them.
    """
    f32 = dtype == "float32"
    # In a float32 array the Python fraction becomes a float32 (numpy's weak scalar).
    hf = _f32(height_fraction) if f32 else height_fraction
    wf = _f32(width_fraction) if f32 else width_fraction
    out: list[_Box] = []
    for row in annotation_positions:
        if len(row) != 4:
            raise ValueError(f"each annotation position is (y, x, height, width), got {len(row)} values")
        y, x, h, w = (_f32(float(v)) if f32 else float(v) for v in row)
        if f32:
            dh, dw = _f32(hf * h), _f32(wf * w)
            top, left = _f32(y - _f32(dh / 2)), _f32(x - _f32(dw / 2))
            height, width = _f32(h + dh), _f32(w + dw)
        else:
            dh, dw = hf * h, wf * w
            top, left = _f32(y - dh / 2), _f32(x - dw / 2)
            height, width = _f32(h + dh), _f32(w + dw)
        top, left = _max(0.0, top), _max(0.0, left)
        height, width = _min(1.0, height), _min(1.0, width)
        out.append((top, left, _f32(top + height), _f32(left + width)))
    return out


def _inside(point: tuple[float, float], box: _Box) -> bool:
    """``_yx_in_bounding_boxes`` for one box: inclusive of the edges."""
    y, x = point
    top, left, bottom, right = box
    return y >= top and y <= bottom and x >= left and x <= right


def aitw_match(
    touch_yx: Sequence[float],
    lift_yx: Sequence[float],
    action_type: int,
    gold_touch_yx: Sequence[float],
    gold_lift_yx: Sequence[float],
    gold_action_type: int,
    annotation_positions: Sequence[Sequence[float]],
    *,
    tap_distance_threshold: float = AITW_TAP_DISTANCE,
    annotation_width_augment_fraction: float = AITW_ANNOTATION_AUGMENT,
    annotation_height_augment_fraction: float = AITW_ANNOTATION_AUGMENT,
    annotation_dtype: Literal["float64", "float32"] | None = None,
    no_annotations: Literal["raise", "distance"] = "raise",
) -> bool:
    """``check_actions_match`` of AITW's ``action_matching.py``, on the dataset's own fields.

    Points are ``results/yx_touch`` / ``results/yx_lift``-style normalised ``(y, x)`` floats,
    action types the dataset's ids (:class:`AitwActionType`), and ``annotation_positions`` the
    screen's ``image/ui_annotations_positions`` reshaped to rows of ``(y, x, height, width)``
    (every annotation of the screen, not only the target's). The two actions are symmetric.

    - If either type is not ``DUAL_POINT``, the answer is whether the types are equal.
    - A dual point is a tap when touch and lift are within 0.04 (float32 Euclidean); a tap
      never matches a swipe.
    - Two taps match when both touch points lie in one and the same annotation box after
      adding 1.4 times its height and width (top/left clipped at 0, height/width at 1,
      edges inclusive), or when they are within ``tap_distance_threshold``.
    - Two swipes match when the axis of their larger |delta| is the same (ties: the y axis).

    ``annotation_dtype`` says which array the reference is handed (float64, the default for
    lists and what ``np.array`` of the dataset's float list gives; float32 for a float32 or jax
    array); by default it is read from ``annotation_positions.dtype`` when there is one.
    With no annotation at all the reference raises; so does this, with ``ValueError``, unless
    ``no_annotations="distance"``.
    """
    dtype = annotation_dtype or _dtype_of(annotation_positions)
    boxes = _resized_boxes(
        annotation_positions, dtype, annotation_height_augment_fraction, annotation_width_augment_fraction
    )
    if not boxes and no_annotations == "raise":
        raise ValueError(
            "no annotation positions: AITW's check_actions_match raises here for every pair "
            "(jnp.max of an empty array); pass no_annotations='distance' to use the distance rule alone"
        )
    touch, lift = _point(touch_yx, "touch_yx"), _point(lift_yx, "lift_yx")
    gold_touch, gold_lift = _point(gold_touch_yx, "gold_touch_yx"), _point(gold_lift_yx, "gold_lift_yx")
    if action_type != AitwActionType.DUAL_POINT or gold_action_type != AitwActionType.DUAL_POINT:
        return action_type == gold_action_type
    tap, gold_tap = _is_tap(touch, lift), _is_tap(gold_touch, gold_lift)
    if tap != gold_tap:
        return False
    if tap:
        if any(_inside(touch, box) and _inside(gold_touch, box) for box in boxes):
            return True
        return _norm(touch, gold_touch) <= _f32(tap_distance_threshold)
    return _main_axis(touch, lift) == _main_axis(gold_touch, gold_lift)
