"""Each scoring rule, checked on both sides of its threshold as the conventions define it."""

from __future__ import annotations

import pytest

from vlagent.actions import Click, Done, Key, LongPress, OpenApp, Scroll, Swipe, Type, Wait
from vlagent.scoring import Box, augment_box, score_step, summarize, text_f1

SQUARE = (1000, 1000)  # 1 px == 0.001 of the screen on both axes
PHONE = (1080, 2400)


# --- AITW -----------------------------------------------------------------------------


def test_aitw_a_short_swipe_is_a_tap() -> None:
    near = Swipe(x1=500, y1=500, x2=500, y2=539)
    # 0.54 - 0.5 is 0.0400000215 in float32, above float32(0.04): AITW's reference says swipe.
    far = Swipe(x1=500, y1=500, x2=500, y2=540)
    assert score_step(near, Click(x=500, y=500), SQUARE).success
    far_score = score_step(far, Click(x=500, y=500), SQUARE)
    assert not far_score.success and far_score.grounding is False


def test_aitw_taps_within_014_match_without_boxes() -> None:
    gold = Click(x=500, y=500)
    assert score_step(Click(x=640, y=500), gold, SQUARE).success  # 0.14 exactly
    assert not score_step(Click(x=641, y=500), gold, SQUARE).success
    assert score_step(Click(x=598, y=598), gold, SQUARE).success  # Euclidean 0.1386
    assert not score_step(Click(x=600, y=600), gold, SQUARE).success  # 0.141


def test_aitw_box_augmentation_adds_14_times_the_size() -> None:
    box = Box(top=0.4, left=0.4, height=0.1, width=0.1)
    grown = augment_box(box, 1.4)
    assert grown == pytest.approx((0.33, 0.33, 0.24, 0.24))  # 2.4x, centred
    gold, pred = Click(x=340, y=340), Click(x=560, y=560)  # 0.31 apart, both in the 2.4x box
    assert score_step(pred, gold, SQUARE, boxes=[box]).success
    assert not score_step(pred, gold, SQUARE).success
    # A 1.4x-in-total reading would stop at 0.52; 2.4x stops at 0.57 (inclusive).
    assert not score_step(Click(x=580, y=580), gold, SQUARE, boxes=[box]).success


def test_aitw_both_taps_must_share_one_box() -> None:
    a = Box(0.0, 0.0, 0.1, 0.1)
    b = Box(0.0, 0.8, 0.1, 0.1)
    assert not score_step(Click(x=850, y=50), Click(x=50, y=50), SQUARE, boxes=[a, b]).success


def test_aitw_box_clipping_follows_the_original_code() -> None:
    # top - 0.07 clips to 0 and the height (0.24) is kept: the box reaches 0.24, not 0.22.
    assert augment_box(Box(0.05, 0.5, 0.1, 0.1), 1.4) == pytest.approx((0.0, 0.43, 0.24, 0.24))
    assert augment_box(Box(0.0, 0.0, 0.6, 0.6), 1.4) == pytest.approx((0.0, 0.0, 1.0, 1.0))


def test_box_containment_includes_edges() -> None:
    box = Box(0.25, 0.25, 0.25, 0.25)
    assert box.contains(0.25, 0.25) and box.contains(0.5, 0.5)
    assert not box.contains(0.5001, 0.5)
    assert Box.from_pixels(100, 200, 300, 600, 1000, 2000) == pytest.approx((0.1, 0.1, 0.2, 0.2))


def test_aitw_swipes_match_by_main_axis_only() -> None:
    up = Swipe(x1=500, y1=800, x2=500, y2=200)
    down = Swipe(x1=500, y1=200, x2=520, y2=800)
    left = Swipe(x1=800, y1=500, x2=200, y2=560)
    assert score_step(down, up, SQUARE).success  # same axis, opposite directions: AITW says match
    assert not score_step(left, up, SQUARE).success
    assert score_step(Scroll(direction="down"), up, SQUARE).success
    assert not score_step(Click(x=500, y=500), up, SQUARE).success


def test_aitw_compares_types_and_reports_text_apart() -> None:
    score = score_step(Type(text="hello"), Type(text="goodbye"), SQUARE)
    assert score.success and score.text_match is False
    assert score_step(Type(text="Hello  world"), Type(text="hello world"), SQUARE).text_match
    assert not score_step(Key(key="back"), Key(key="home"), SQUARE).success
    assert score_step(LongPress(x=100, y=100), Click(x=110, y=100), SQUARE).success  # both taps in AITW
    assert not score_step(Done(status="failure"), Done(), SQUARE).success
    key_vs_tap = score_step(Key(key="back"), Click(x=1, y=1), SQUARE)
    assert not key_vs_tap.type_match and key_vs_tap.grounding is False


# --- AndroidControl, OS-Atlas style -----------------------------------------------------


def test_androidcontrol_click_within_140_on_the_1000_grid() -> None:
    gold = Click(x=540, y=1200)
    # 151 px of 1080 = 139.8 on the grid; 153 px = 141.7
    assert score_step(Click(x=691, y=1200), gold, PHONE, convention="androidcontrol").success
    assert not score_step(Click(x=693, y=1200), gold, PHONE, convention="androidcontrol").success
    # y uses the screen height: 336 px of 2400 = 140.0
    assert score_step(Click(x=540, y=1536), gold, PHONE, convention="androidcontrol").success
    assert not score_step(Click(x=540, y=1537), gold, PHONE, convention="androidcontrol").success


def test_androidcontrol_text_needs_f1_above_half() -> None:
    gold = Type(text="hello world")
    assert score_step(Type(text="hello"), gold, PHONE, convention="androidcontrol").success  # F1 0.67
    exactly_half = score_step(Type(text="hello there"), gold, PHONE, convention="androidcontrol")
    assert not exactly_half.success and exactly_half.text_match is False
    assert score_step(
        OpenApp(name="Settings app"), OpenApp(name="settings"), PHONE, convention="androidcontrol"
    ).success
    assert text_f1("a b c", "a b c") == 1.0 and text_f1("x", "y") == 0.0
    assert text_f1("hello there", "hello world") == pytest.approx(0.5)


def test_androidcontrol_types_and_scroll_directions() -> None:
    assert not score_step(LongPress(x=5, y=5), Click(x=5, y=5), PHONE, convention="androidcontrol").type_match
    assert score_step(
        Swipe(x1=500, y1=2000, x2=500, y2=500), Scroll(direction="down"), PHONE, convention="androidcontrol"
    ).success
    assert not score_step(Scroll(direction="up"), Scroll(direction="down"), PHONE, convention="androidcontrol").success
    assert score_step(Key(key="home"), Key(key="home"), PHONE, convention="androidcontrol").success
    assert not score_step(Key(key="back"), Key(key="home"), PHONE, convention="androidcontrol").success
    assert score_step(Wait(seconds=2), Wait(), PHONE, convention="androidcontrol").success


# --- Qwen style ----------------------------------------------------------------------------


def test_qwen_box_is_enlarged_to_12x_in_total() -> None:
    box = Box(0.4, 0.4, 0.1, 0.1)  # enlarged: 0.39 .. 0.51
    gold = Click(x=450, y=450)
    assert score_step(Click(x=505, y=505), gold, SQUARE, boxes=[box], convention="qwen").success
    assert not score_step(Click(x=505, y=505), gold, SQUARE, convention="qwen").success  # 0.078 away
    assert not score_step(Click(x=520, y=450), gold, SQUARE, boxes=[box], convention="qwen").success


def test_qwen_click_within_004() -> None:
    gold = Click(x=500, y=500)
    assert score_step(Click(x=540, y=500), gold, SQUARE, convention="qwen").success
    assert not score_step(Click(x=541, y=500), gold, SQUARE, convention="qwen").success


def test_qwen_text_by_substring() -> None:
    gold = Type(text="Buy milk")
    assert score_step(Type(text="buy milk today"), gold, SQUARE, convention="qwen").success
    assert score_step(Type(text="milk"), gold, SQUARE, convention="qwen").success
    assert not score_step(Type(text="bread"), gold, SQUARE, convention="qwen").success


def test_unknown_convention_and_bad_size() -> None:
    with pytest.raises(ValueError, match="convention"):
        score_step(Wait(), Wait(), SQUARE, convention="nope")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="size"):
        score_step(Wait(), Wait(), (0, 10))


def test_summary_reports_type_grounding_and_step_success() -> None:
    gold = [Click(x=500, y=500), Type(text="hi"), Click(x=100, y=100), Key(key="back")]
    pred = [Click(x=510, y=500), Type(text="hi"), Click(x=900, y=900), Key(key="home")]
    summary = summarize(score_step(p, g, SQUARE, convention="qwen") for p, g in zip(pred, gold, strict=True))
    assert summary.steps == 4
    assert summary.type_accuracy == 0.75  # key back vs home differ in type
    assert summary.grounded_steps == 2 and summary.grounding_accuracy == 0.5
    assert summary.step_success_rate == 0.5
    assert summary.text_accuracy == 1.0
    assert summarize([]).steps == 0 and summarize([]).grounding_accuracy is None
