"""``aitw_match`` gives the answer of AITW's reference ``check_actions_match`` on every case.

The reference (google-research/google-research, ``android_in_the_wild/action_matching.py``,
commit 8d8a4f1b27753c7580d16261a1468b3d6ad2c3d3) is written with ``jax.numpy``. ``_ref_*``
below port it line by line to numpy with jax's dtypes: ``jnp.asarray`` of the points is
float32, ``jnp.maximum``/``jnp.minimum`` turn a float64 array into float32, Python scalars
meet float32 arrays as float32 (numpy >= 2 treats them as weak, as jax does), and the norm is
``sqrt(sum(d * d))`` with the fused multiply-add XLA puts in it on CPU (see ``_jnp_norm``).

``test_against_the_jax_reference`` runs the original script itself when it can be imported
(``jax`` installed and the google-research checkout on ``PYTHONPATH``); elsewhere it skips.
"""

from __future__ import annotations

import functools
import math
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from vlagent.scoring import AitwActionType, aitw_match

DUAL = int(AitwActionType.DUAL_POINT)
TYPE = int(AitwActionType.TYPE)
NON_DUAL = [0, 1, 2, 3, 5, 6, 7, 8, 9, 10, 11]

# --- the reference, ported line by line ----------------------------------------------------

_TAP_DISTANCE_THRESHOLD = 0.14
ANNOTATION_WIDTH_AUGMENT_FRACTION = 1.4
ANNOTATION_HEIGHT_AUGMENT_FRACTION = 1.4
_SWIPE_DISTANCE_THRESHOLD = 0.04


def _jnp_asarray(value: Any) -> np.ndarray:
    """``jnp.asarray`` with 64-bit mode off: floating inputs become float32."""
    return np.asarray(value, dtype=np.float32)


def _nearest_float32(num: int, den: int) -> np.float32:
    """``num / den`` (exact integers, ``den > 0``) rounded to float32: nearest, ties to even."""
    near = np.float32(num / den)  # within one float32 step of the answer
    best, best_key = near, None
    for v in (near, np.nextafter(near, np.float32(np.inf)), np.nextafter(near, np.float32(-np.inf))):
        vn, vd = float(v).as_integer_ratio()
        # |v - num/den| = |vn * den - num * vd| / (vd * den); compare on a common denominator.
        dist_num, dist_den = abs(vn * den - num * vd), vd * den
        key = (dist_num, dist_den, int(v.view(np.int32)) & 1)
        if (
            best_key is None
            or dist_num * best_key[1] < best_key[0] * dist_den
            or (dist_num * best_key[1] == best_key[0] * dist_den and key[2] < best_key[2])
        ):
            best, best_key = v, key
    return best


def _jnp_norm(vector: np.ndarray) -> np.float32:
    """``jnp.linalg.norm`` of a float32 (y, x) vector as XLA on CPU computes it.

    jax compiles ``sqrt(sum(x * x))`` into one computation and XLA fuses the sum into a
    multiply-add: ``x[1]**2`` is rounded, ``x[0]**2`` is added to it exactly and the sum rounded
    once. The exact sum is taken in integers and rounded to float32 here (nearest, ties to
    even), independently of the bit tricks in vlagent.
    """
    y, x = (float(v) for v in _jnp_asarray(vector))
    x_squared = float(np.float32(x * x))
    if not (math.isfinite(y) and math.isfinite(x_squared)):
        return np.sqrt(np.float32(y * y + x_squared))
    yn, yd = y.as_integer_ratio()
    xn, xd = x_squared.as_integer_ratio()
    den = max(yd * yd, xd)  # powers of two: the larger is a multiple of the smaller
    fused = _nearest_float32(yn * yn * (den // (yd * yd)) + xn * (den // xd), den)
    return np.sqrt(fused)


def _ref_yx_in_bounding_boxes(yx: np.ndarray, bounding_boxes: np.ndarray) -> np.ndarray:
    y, x = yx
    top, left, height, width = [np.squeeze(v, axis=-1) for v in np.split(bounding_boxes, 4, axis=-1)]
    bottom, right = top + height, left + width
    return np.logical_and(y >= top, y <= bottom) & np.logical_and(x >= left, x <= right)


def _ref_resize_annotation_bounding_boxes(
    annotation_positions: np.ndarray,
    annotation_width_augment_fraction: float,
    annotation_height_augment_fraction: float,
) -> np.ndarray:
    # Plain numpy, in the array's own dtype, until jnp.maximum/minimum make it float32.
    height_change = annotation_height_augment_fraction * annotation_positions[:, 2]
    width_change = annotation_width_augment_fraction * annotation_positions[:, 3]
    return np.stack(
        [
            np.maximum(0, _jnp_asarray(annotation_positions[:, 0] - (height_change / 2))),
            np.maximum(0, _jnp_asarray(annotation_positions[:, 1] - (width_change / 2))),
            np.minimum(1, _jnp_asarray(annotation_positions[:, 2] + height_change)),
            np.minimum(1, _jnp_asarray(annotation_positions[:, 3] + width_change)),
        ],
        axis=1,
    )


def _ref_is_tap_action(normalized_start_yx: np.ndarray, normalized_end_yx: np.ndarray) -> np.bool_:
    distance = _jnp_norm(_jnp_asarray(normalized_start_yx) - _jnp_asarray(normalized_end_yx))
    return distance <= _SWIPE_DISTANCE_THRESHOLD


def _ref_is_non_dual_point_action(action_type: int) -> bool:
    return bool(np.not_equal(action_type, DUAL))


def _ref_check_tap_actions_match(
    tap_1_yx: np.ndarray,
    tap_2_yx: np.ndarray,
    annotation_positions: np.ndarray,
    matching_tap_distance_threshold_screen_percentage: float,
    annotation_width_augment_fraction: float,
    annotation_height_augment_fraction: float,
) -> np.bool_:
    resized_annotation_positions = _ref_resize_annotation_bounding_boxes(
        annotation_positions, annotation_width_augment_fraction, annotation_height_augment_fraction
    )
    tap1_in_box = _ref_yx_in_bounding_boxes(tap_1_yx, resized_annotation_positions)
    tap2_in_box = _ref_yx_in_bounding_boxes(tap_2_yx, resized_annotation_positions)
    both_in_box = np.max(tap1_in_box & tap2_in_box)
    within_threshold = (
        _jnp_norm(_jnp_asarray(tap_1_yx) - _jnp_asarray(tap_2_yx)) <= matching_tap_distance_threshold_screen_percentage
    )
    return np.logical_or(both_in_box, within_threshold)


def _ref_check_drag_actions_match(
    drag_1_touch_yx: np.ndarray, drag_1_lift_yx: np.ndarray, drag_2_touch_yx: np.ndarray, drag_2_lift_yx: np.ndarray
) -> np.bool_:
    drag_1_deltas = drag_1_lift_yx - drag_1_touch_yx
    drag_1_magnitudes = np.abs(drag_1_deltas)
    drag_1_main_axis = np.argmax(drag_1_magnitudes)
    drag_2_deltas = drag_2_lift_yx - drag_2_touch_yx
    drag_2_magnitudes = np.abs(drag_2_deltas)
    drag_2_main_axis = np.argmax(drag_2_magnitudes)
    return np.equal(drag_1_main_axis, drag_2_main_axis)


def reference_check_actions_match(
    action_1_touch_yx: Any,
    action_1_lift_yx: Any,
    action_1_action_type: int,
    action_2_touch_yx: Any,
    action_2_lift_yx: Any,
    action_2_action_type: int,
    annotation_positions: np.ndarray,
) -> bool:
    action_1_touch_yx = _jnp_asarray(action_1_touch_yx)
    action_1_lift_yx = _jnp_asarray(action_1_lift_yx)
    action_2_touch_yx = _jnp_asarray(action_2_touch_yx)
    action_2_lift_yx = _jnp_asarray(action_2_lift_yx)
    has_non_dual_point_action = np.logical_or(
        _ref_is_non_dual_point_action(action_1_action_type), _ref_is_non_dual_point_action(action_2_action_type)
    )
    different_dual_point_types = np.logical_xor(
        _ref_is_tap_action(action_1_touch_yx, action_1_lift_yx),
        _ref_is_tap_action(action_2_touch_yx, action_2_lift_yx),
    )
    is_tap = np.logical_and(
        _ref_is_tap_action(action_1_touch_yx, action_1_lift_yx),
        _ref_is_tap_action(action_2_touch_yx, action_2_lift_yx),
    )
    taps_match = _ref_check_tap_actions_match(
        action_1_touch_yx,
        action_2_touch_yx,
        annotation_positions,
        _TAP_DISTANCE_THRESHOLD,
        ANNOTATION_WIDTH_AUGMENT_FRACTION,
        ANNOTATION_HEIGHT_AUGMENT_FRACTION,
    )
    taps_match = np.logical_and(is_tap, taps_match)
    drags_match = _ref_check_drag_actions_match(
        action_1_touch_yx, action_1_lift_yx, action_2_touch_yx, action_2_lift_yx
    )
    drags_match = np.where(is_tap, False, drags_match)
    return bool(
        np.where(
            has_non_dual_point_action,
            np.equal(action_1_action_type, action_2_action_type),
            np.where(different_dual_point_types, False, np.logical_or(taps_match, drags_match)),
        )
    )


# --- boundary-biased cases in the dataset's own form ---------------------------------------


@dataclass(frozen=True)
class Case:
    touch: tuple[float, float]
    lift: tuple[float, float]
    action_type: int
    gold_touch: tuple[float, float]
    gold_lift: tuple[float, float]
    gold_action_type: int
    annotations: np.ndarray  # (N, 4) float64 or float32, as the reference is handed them


def _f32(value: float) -> float:
    return float(np.float32(value))


_BITS = struct.Struct("<f")
_INT = struct.Struct("<i")


def _nudge(value: float, rng: np.random.Generator) -> float:
    """``value`` as a float32, moved by up to three float32 steps either way (often not at all)."""
    steps = int(rng.integers(-3, 4))
    bits = _INT.unpack(_BITS.pack(value))[0]
    moved = bits + steps if bits >= 0 else bits - steps  # negative floats count down
    if (moved >= 0) != (bits >= 0):
        return 0.0
    return float(_BITS.unpack(_INT.pack(moved))[0])


def _pick(rng: np.random.Generator, options: list[Any]) -> Any:
    return options[int(rng.integers(len(options)))]


def _edges(annotations: np.ndarray) -> list[tuple[float, float, float, float]]:
    """(top, left, bottom, right) of each box after the 1.4x enlargement, in float32."""
    grown = _ref_resize_annotation_bounding_boxes(annotations, 1.4, 1.4)
    return [(float(top), float(left), _f32(top + h), _f32(left + w)) for top, left, h, w in grown]


def _point_near_box(rng: np.random.Generator, box: tuple[float, float, float, float]) -> tuple[float, float]:
    top, left, bottom, right = box
    y = _nudge(float(_pick(rng, [top, bottom, rng.uniform(top, bottom)])), rng)
    x = _nudge(float(_pick(rng, [left, right, rng.uniform(left, right)])), rng)
    return y, x


def _at_distance(rng: np.random.Generator, origin: tuple[float, float], distance: float) -> tuple[float, float]:
    angle = float(_pick(rng, [0.0, math.pi / 2, math.pi, rng.uniform(0, 2 * math.pi)]))
    return _nudge(origin[0] + distance * math.sin(angle), rng), _nudge(origin[1] + distance * math.cos(angle), rng)


def _gesture(
    rng: np.random.Generator, touch: tuple[float, float]
) -> tuple[tuple[float, float], tuple[float, float], int]:
    kind = rng.random()
    if kind < 0.08:
        return (-1.0, -1.0), (-1.0, -1.0), int(_pick(rng, NON_DUAL))  # typed, keys, status: points unused
    if kind < 0.45:
        return touch, touch, DUAL  # a plain tap
    if kind < 0.75:
        return touch, _at_distance(rng, touch, 0.04), DUAL  # on the tap/swipe threshold
    d = float(rng.uniform(0.05, 0.6))
    if rng.random() < 0.3:  # a diagonal: both axes equal, up to a step
        s = float(_pick(rng, [-1.0, 1.0]))
        return touch, (_nudge(touch[0] + d * s, rng), _nudge(touch[1] + d * s * _pick(rng, [-1.0, 1.0]), rng)), DUAL
    return touch, _at_distance(rng, touch, d), DUAL


def generate_cases(count: int, seed: int = 20240611) -> Iterator[Case]:
    """Points on the enlarged box edges, taps near 0.14 apart, gestures near the 0.04 threshold."""
    rng = np.random.default_rng(seed)
    for _ in range(count):
        n = int(_pick(rng, [0, 1, 1, 2, 3, 5, 8]))
        rows = np.column_stack(
            [rng.uniform(-0.02, 1.0, n), rng.uniform(-0.02, 1.0, n), rng.uniform(0, 0.3, n), rng.uniform(0, 0.3, n)]
        )
        if rng.random() < 0.8:
            rows = rows.astype(np.float32).astype(np.float64)  # the dataset stores float32 values
        annotations = rows.astype(np.float32) if rng.random() < 0.25 else rows
        edges = _edges(annotations) if n else []
        if edges and rng.random() < 0.8:
            box = edges[int(rng.integers(len(edges)))]
            touch = _point_near_box(rng, box)
            other = edges[int(rng.integers(len(edges)))] if rng.random() < 0.3 else box
            gold_touch = _point_near_box(rng, other) if rng.random() < 0.6 else _at_distance(rng, touch, 0.14)
        else:
            touch = (float(rng.uniform(0, 1)), float(rng.uniform(0, 1)))
            gold_touch = _at_distance(rng, touch, float(_pick(rng, [0.14, 0.14, rng.uniform(0, 0.3)])))
        touch, lift, action_type = _gesture(rng, touch)
        gold_touch, gold_lift, gold_action_type = _gesture(rng, gold_touch)
        if rng.random() < 0.1:
            action_type = gold_action_type = int(_pick(rng, [*NON_DUAL, DUAL]))
        yield Case(touch, lift, action_type, gold_touch, gold_lift, gold_action_type, annotations)


@functools.cache
def boundary_cases() -> tuple[Case, ...]:
    """The 20,000 cases of the comparison, made once per test session."""
    return tuple(generate_cases(20_000))


def _reference(case: Case) -> bool | str:
    try:
        return reference_check_actions_match(
            case.touch,
            case.lift,
            case.action_type,
            case.gold_touch,
            case.gold_lift,
            case.gold_action_type,
            case.annotations,
        )
    except ValueError:
        return "raises"


def _ours(case: Case) -> bool | str:
    try:
        return aitw_match(
            case.touch,
            case.lift,
            case.action_type,
            case.gold_touch,
            case.gold_lift,
            case.gold_action_type,
            case.annotations,  # type: ignore[arg-type]  # an (N, 4) array is read as rows
        )
    except ValueError:
        return "raises"


# --- the comparisons -------------------------------------------------------------------------


@pytest.mark.slow
def test_equal_to_the_reference_on_20000_boundary_cases() -> None:
    cases = boundary_cases()
    differ = [c for c in cases if _reference(c) != _ours(c)]
    assert not differ, f"{len(differ)} of {len(cases)} differ, first: {differ[0]}"
    # The generator really sits on the boundaries: both answers occur in every family.
    verdicts = [_reference(c) for c in cases]
    assert verdicts.count(True) > 4000 and verdicts.count(False) > 4000 and verdicts.count("raises") > 1000
    taps = [
        c for c in cases if c.action_type == DUAL == c.gold_action_type and c.touch == c.lift and len(c.annotations)
    ]
    assert sum(_ours(c) is True for c in taps) > 1000 and sum(_ours(c) is False for c in taps) > 1000


def test_the_cases_hit_the_float32_edges() -> None:
    """At least some cases sit where float64 arithmetic, or the old epsilon, answers otherwise."""
    near_004 = near_014 = 0
    for case in boundary_cases():
        for a, b, limit in ((case.touch, case.lift, 0.04), (case.touch, case.gold_touch, 0.14)):
            d64 = math.hypot(a[0] - b[0], a[1] - b[1])
            d32 = float(_jnp_norm(_jnp_asarray(a) - _jnp_asarray(b)))
            if (d64 <= limit) != (d32 <= np.float32(limit)) or (d32 <= np.float32(limit)) != (d64 <= limit + 1e-9):
                near_004 += limit == 0.04
                near_014 += limit == 0.14
    assert near_004 > 50 and near_014 > 50


def test_against_the_jax_reference() -> None:
    """Runs only where the original script imports (jax plus a google-research checkout)."""
    reference = pytest.importorskip(
        "android_in_the_wild.action_matching",
        reason="needs google-research's android_in_the_wild (with jax) on PYTHONPATH; the numpy port above runs always",
    )
    cases = list(generate_cases(3_000, seed=7))
    differ = []
    for c in cases:
        try:
            theirs: bool | str = bool(
                reference.check_actions_match(
                    c.touch, c.lift, c.action_type, c.gold_touch, c.gold_lift, c.gold_action_type, c.annotations
                )
            )
        except ValueError:
            theirs = "raises"
        if theirs != _ours(c):
            differ.append(c)
    assert not differ, f"{len(differ)} of {len(cases)} differ, first: {differ[0]}"


# --- hand-picked reference cases -----------------------------------------------------------

NO_BOXES = np.zeros((0, 4))
FAR_BOX = [[0.9, 0.9, 0.01, 0.01]]


def test_a_40_pixel_drag_on_a_1000_pixel_screen_is_not_a_tap() -> None:
    # 0.54 - 0.5 is 0.0400000215 in float32, above float32(0.04) = 0.0399999991.
    assert not aitw_match((0.54, 0.5), (0.5, 0.5), DUAL, (0.5, 0.5), (0.5, 0.5), DUAL, FAR_BOX)
    assert not reference_check_actions_match(
        (0.54, 0.5), (0.5, 0.5), DUAL, (0.5, 0.5), (0.5, 0.5), DUAL, np.array(FAR_BOX)
    )
    assert aitw_match((0.53, 0.5), (0.5, 0.5), DUAL, (0.5, 0.5), (0.5, 0.5), DUAL, FAR_BOX)


def test_taps_at_the_distance_threshold_follow_float32() -> None:
    # 0.64 - 0.5 = 0.13999999 in float32: a match; 0.1 + 0.14 - 0.1 > 0.14 in float64 but not in float32.
    assert aitw_match((0.64, 0.5), (0.64, 0.5), DUAL, (0.5, 0.5), (0.5, 0.5), DUAL, FAR_BOX)
    assert not aitw_match((0.6401, 0.5), (0.6401, 0.5), DUAL, (0.5, 0.5), (0.5, 0.5), DUAL, FAR_BOX)
    a, b = (0.2, 0.1), (0.2, 0.24)
    assert aitw_match(a, a, DUAL, b, b, DUAL, FAR_BOX) == reference_check_actions_match(
        a, a, DUAL, b, b, DUAL, np.array(FAR_BOX)
    )


def test_both_taps_in_one_enlarged_box_match_whatever_their_distance() -> None:
    boxes = [[0.4, 0.1, 0.1, 0.5], [0.0, 0.0, 0.05, 0.05]]  # the first grows to y 0.33-0.57, x 0-0.95
    assert aitw_match((0.33, 0.0), (0.33, 0.0), DUAL, (0.57, 0.95), (0.57, 0.95), DUAL, boxes)
    assert not aitw_match((0.33, 0.0), (0.33, 0.0), DUAL, (0.58, 0.95), (0.58, 0.95), DUAL, boxes)
    # One tap in each box, 0.5 apart: no match, as the reference says.
    assert not aitw_match((0.01, 0.01), (0.01, 0.01), DUAL, (0.45, 0.5), (0.45, 0.5), DUAL, boxes)


def test_clipping_keeps_the_enlarged_height() -> None:
    # top 0.05 - 0.07 clips to 0, the height stays 0.24: the box reaches 0.24, not 0.22.
    box = [[0.05, 0.5, 0.1, 0.1]]
    assert aitw_match((0.235, 0.55), (0.235, 0.55), DUAL, (0.0, 0.44), (0.0, 0.44), DUAL, box)
    assert reference_check_actions_match(
        (0.235, 0.55), (0.235, 0.55), DUAL, (0.0, 0.44), (0.0, 0.44), DUAL, np.array(box)
    )


def test_the_annotation_dtype_decides_an_edge() -> None:
    """Found by search: a box edge where float64 and float32 enlargement disagree."""
    rows = np.array([[0.1, 0.3, 0.3, 0.1]])
    for case in boundary_cases():
        if len(case.annotations) and case.annotations.dtype == np.float64:
            as32 = Case(**{**case.__dict__, "annotations": case.annotations.astype(np.float32)})
            if _reference(case) != _reference(as32) and "raises" not in (_reference(case), _reference(as32)):
                rows = case.annotations
                assert _ours(case) == _reference(case) and _ours(as32) == _reference(as32)
                assert aitw_match(
                    case.touch,
                    case.lift,
                    case.action_type,
                    case.gold_touch,
                    case.gold_lift,
                    case.gold_action_type,
                    rows.tolist(),
                    annotation_dtype="float32",
                ) == _reference(as32)
                return
    pytest.fail("no case where the annotation dtype matters")


def test_swipes_compare_their_main_axis_ties_going_to_y() -> None:
    up, down = ((0.8, 0.5), (0.2, 0.5)), ((0.2, 0.5), (0.8, 0.52))
    left = ((0.5, 0.8), (0.56, 0.2))
    diagonal = ((0.2, 0.2), (0.5, 0.5))  # |dy| == |dx|: argmax picks y
    assert aitw_match(*up, DUAL, *down, DUAL, FAR_BOX)
    assert not aitw_match(*left, DUAL, *up, DUAL, FAR_BOX)
    assert aitw_match(*diagonal, DUAL, *up, DUAL, FAR_BOX)
    assert not aitw_match(*diagonal, DUAL, *left, DUAL, FAR_BOX)
    assert not aitw_match(*up, DUAL, (0.5, 0.5), (0.5, 0.5), DUAL, FAR_BOX)  # a swipe never matches a tap


def test_other_actions_compare_their_type_only() -> None:
    none = (-1.0, -1.0)
    assert aitw_match(none, none, TYPE, none, none, TYPE, FAR_BOX)  # typed text is not compared
    assert not aitw_match(none, none, 5, none, none, 6, FAR_BOX)  # back vs home
    assert not aitw_match((0.5, 0.5), (0.5, 0.5), DUAL, none, none, 10, FAR_BOX)
    assert aitw_match((0.5, 0.5), (0.5, 0.5), 0, (0.9, 0.1), (0.1, 0.1), 0, FAR_BOX)  # unused id 0, points ignored


def test_without_annotations_the_reference_raises_for_every_pair() -> None:
    none = (-1.0, -1.0)
    for args in [((0.5, 0.5), (0.5, 0.5), DUAL, (0.5, 0.5), (0.5, 0.5), DUAL), (none, none, TYPE, none, none, TYPE)]:
        with pytest.raises(ValueError, match="zero-size"):
            reference_check_actions_match(*args, NO_BOXES)
        with pytest.raises(ValueError, match="no annotation positions"):
            aitw_match(*args, [])
    # The opt-in: as if no box held both taps, so only the 0.14 distance rule is left.
    assert aitw_match((0.5, 0.5), (0.5, 0.5), DUAL, (0.6, 0.59), (0.6, 0.59), DUAL, [], no_annotations="distance")
    assert not aitw_match((0.5, 0.5), (0.5, 0.5), DUAL, (0.6, 0.61), (0.6, 0.61), DUAL, [], no_annotations="distance")
    assert aitw_match(none, none, TYPE, none, none, TYPE, [], no_annotations="distance")


def test_nan_points_and_boxes_behave_as_in_jax() -> None:
    nan = float("nan")
    cases = [
        ((nan, 0.5), (0.5, 0.5), DUAL, (0.2, 0.2), (0.8, 0.2), DUAL, [[0.1, 0.1, 0.1, 0.1]]),
        ((0.5, 0.5), (0.5, 0.5), DUAL, (0.5, 0.5), (0.5, 0.5), DUAL, [[nan, 0.4, 0.2, 0.2]]),
        ((0.5, 0.5), (0.5, 0.5), DUAL, (0.7, 0.5), (0.7, 0.5), DUAL, [[0.4, 0.4, nan, 0.2], [0.45, 0.4, 0.2, 0.2]]),
        ((0.2, 0.2), (0.5, nan), DUAL, (0.2, 0.2), (0.2, 0.8), DUAL, [[0.1, 0.1, 0.1, 0.1]]),
    ]
    for touch, lift, t, gtouch, glift, gt, boxes in cases:
        assert aitw_match(touch, lift, t, gtouch, glift, gt, boxes) == reference_check_actions_match(
            touch, lift, t, gtouch, glift, gt, np.array(boxes)
        )


def test_bad_shapes_are_refused() -> None:
    with pytest.raises(ValueError, match="pair"):
        aitw_match((0.5,), (0.5, 0.5), DUAL, (0.5, 0.5), (0.5, 0.5), DUAL, FAR_BOX)
    with pytest.raises(ValueError, match="height, width"):
        aitw_match((0.5, 0.5), (0.5, 0.5), DUAL, (0.5, 0.5), (0.5, 0.5), DUAL, [[0.1, 0.2, 0.3]])
    with pytest.raises(ValueError, match="float16"):
        aitw_match((0.5, 0.5), (0.5, 0.5), DUAL, (0.5, 0.5), (0.5, 0.5), DUAL, np.zeros((1, 4), np.float16))  # type: ignore[arg-type]
