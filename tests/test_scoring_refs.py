"""The OS-Atlas and Qwen AndroidControl ports give the answers of the scripts they port.

Each script's step logic is ported here a second time, statement by statement and with the
libraries it uses (numpy for the Qwen boxes), and compared with :mod:`vlagent.scoring` on
generated cases near every threshold; reference cases worked out from the scripts pin the
quirks (OS-Atlas compares the first word after the type; Qwen measures 0.04 of the longer
side in pixels, does not clip boxes, answers open_app by a click and names the finger's
direction).

- OS-Atlas: OS-Copilot/OS-Atlas ``eval/eval_scripts/android_control/evaluation_unify.py``,
  commit 38740e54f17860834caf7d708fd3aa96769139e1.
- Qwen: Reallm-Labs/InfiGUI-R1 ``eval/android_control/evaluate_android_control.py``, commit
  2c842d3b66f08a7e65c907ffd655f19c975b4951, adapted (its README says) from the Qwen team's
  code linked in QwenLM/Qwen2.5-VL issue #904.
"""

from __future__ import annotations

import copy
import math
import random
import re
from typing import Any

import numpy as np
import pytest

from vlagent.actions import Click, Done, Key, LongPress, OpenApp, Scroll, Swipe, Type, Wait
from vlagent.scoring import (
    Box,
    QwenAcAction,
    osatlas_action,
    osatlas_extract_action,
    osatlas_f1,
    osatlas_match,
    qwen_ac_direction,
    qwen_ac_match,
    score_step,
)

PHONE = (1080, 2400)

# --- OS-Atlas: the script's step, ported again -----------------------------------------------


def _script_f1(predicted_str: str, ground_truth_str: str) -> float:
    predicted_tokens = set(predicted_str.lower().split())
    ground_truth_tokens = set(ground_truth_str.lower().split())
    common_tokens = predicted_tokens.intersection(ground_truth_tokens)
    precision = 0 if len(predicted_tokens) == 0 else len(common_tokens) / len(predicted_tokens)
    recall = 0 if len(ground_truth_tokens) == 0 else len(common_tokens) / len(ground_truth_tokens)
    return 0 if precision + recall == 0 else 2 * (precision * recall) / (precision + recall)


def _script_osatlas(pred_action: str, gt_action: str) -> tuple[bool, bool]:
    """One pass of the loop in ``evaluate``: did it count ``type_match`` and ``full``?"""
    gt_action_type = gt_action.split()[0]
    pred_action_type = pred_action.split()[0]
    if gt_action_type != pred_action_type:
        return False, False
    if gt_action_type in ["CLICK", "LONG_PRESS"]:
        try:
            pred_x, pred_y = int(re.findall(r"\d+", pred_action)[0]), int(re.findall(r"\d+", pred_action)[1])
        except Exception:
            pred_x, pred_y = -100, -100
        gt_x, gt_y = int(re.findall(r"\d+", gt_action)[0]), int(re.findall(r"\d+", gt_action)[1])
        return True, math.sqrt((pred_x - gt_x) ** 2 + (pred_y - gt_y) ** 2) <= 0.14 * 1000
    if gt_action_type in ("OPEN_APP", "TYPE"):
        return True, gt_action == pred_action or _script_f1(pred_action.split()[1], gt_action.split()[1]) > 0.5
    return True, gt_action == pred_action


def _osatlas_cases(count: int, seed: int = 5) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    words = ["Gmail", "gmail", "[Gmail]", "Google", "Chrome", "hello", "Hello", "world", "[hello", "milk", "ß", "x"]
    out = []
    for _ in range(count):
        kind = rng.choice(["CLICK", "LONG_PRESS", "TYPE", "OPEN_APP", "SCROLL", "PRESS_BACK", "WAIT", "COMPLETE"])
        if kind in ("CLICK", "LONG_PRESS"):
            gx, gy = rng.randint(0, 1000), rng.randint(0, 1000)
            angle = rng.uniform(0, 2 * math.pi)
            r = rng.choice([140, 139.5, 140.5, rng.uniform(0, 300)])
            px, py = round(gx + r * math.cos(angle)), round(gy + r * math.sin(angle))
            gold = f"{kind} <point>[[{gx},{gy}]]</point>"
            pred = rng.choice([f"{kind} <point>[[{px}, {py}]]</point>", f"{kind} [[{px}.5, {py}]]", kind, "CLICK x"])
        elif kind in ("TYPE", "OPEN_APP"):
            gold = f"{kind} [{' '.join(rng.choices(words, k=rng.randint(1, 3)))}]"
            pred = f"{kind} [{' '.join(rng.choices(words, k=rng.randint(1, 3)))}]" if rng.random() < 0.9 else gold
        elif kind == "SCROLL":
            gold, pred = f"SCROLL [{rng.choice(['UP', 'DOWN'])}]", f"SCROLL [{rng.choice(['UP', 'DOWN', 'up'])}]"
        else:
            gold, pred = kind, rng.choice([kind, "WAIT", "PRESS_HOME"])
        out.append((pred, gold))
    return out


def test_osatlas_equals_the_script_on_generated_steps() -> None:
    cases = _osatlas_cases(5000)
    for pred, gold in cases:
        if pred.split()[0] == gold.split()[0] in ("TYPE", "OPEN_APP") and pred != gold and len(pred.split()) < 2:
            continue  # the script fails there; covered below
        assert tuple(osatlas_match(pred, gold)) == _script_osatlas(pred, gold), (pred, gold)
    verdicts = [osatlas_match(p, g).step_match for p, g in cases]
    assert 1000 < sum(verdicts) < 4000


def test_osatlas_clicks_within_140_on_the_grid() -> None:
    gold = "CLICK <point>[[500,500]]</point>"
    assert osatlas_match("CLICK <point>[[640, 500]]</point>", gold) == (True, True)
    assert osatlas_match("CLICK <point>[[641, 500]]</point>", gold) == (True, False)
    assert osatlas_match("CLICK <point>[[598, 598]]</point>", gold).step_match  # 138.6
    assert not osatlas_match("CLICK <point>[[600, 600]]</point>", gold).step_match  # 141.4
    assert osatlas_match("LONG_PRESS <point>[[500, 500]]</point>", gold) == (False, False)
    assert osatlas_match("CLICK", gold) == (True, False)  # no point: (-100, -100)
    # The first two runs of digits: 12.5, 300 reads as (12, 5).
    assert osatlas_match("CLICK <point>[[12.5, 300]]</point>", "CLICK <point>[[12,5]]</point>").step_match


def test_osatlas_text_is_the_first_word_with_its_bracket() -> None:
    assert osatlas_match("TYPE [Hello there]", "TYPE [hello world]").step_match  # '[hello' both
    assert not osatlas_match("TYPE [hello]", "TYPE [hello world]").step_match  # '[hello]' vs '[hello'
    assert osatlas_match("OPEN_APP [gmail]", "OPEN_APP [Gmail]").step_match
    assert osatlas_match("OPEN_APP [Google Maps]", "OPEN_APP [Google Chrome]").step_match
    assert not osatlas_match("OPEN_APP [Chrome]", "OPEN_APP [Google Chrome]").step_match
    assert osatlas_f1("[hello", "[Hello") == 1.0 and osatlas_f1("a b", "a c") == 0.5 and osatlas_f1("", "") == 0


def test_osatlas_other_actions_by_equal_strings() -> None:
    assert osatlas_match("SCROLL [UP]", "SCROLL [UP]") == (True, True)
    assert osatlas_match("SCROLL [up]", "SCROLL [UP]") == (True, False)
    assert osatlas_match("PRESS_BACK", "PRESS_HOME") == (False, False)
    assert osatlas_match("WAIT", "WAIT") == (True, True)


def test_osatlas_extraction_and_where_the_script_fails() -> None:
    answer = "thoughts:\nopen it\nactions:\nOPEN_APP [Gmail]<|im_end|>"
    assert osatlas_extract_action(answer) == "OPEN_APP [Gmail]"
    assert osatlas_extract_action("no action here") == "invalid action"
    assert osatlas_extract_action("actions:\nTYPE mind") == "TYPE "  # strip() takes characters
    with pytest.raises(ValueError, match="empty"):
        osatlas_match("", "WAIT")
    with pytest.raises(ValueError, match="no argument"):
        osatlas_match("TYPE", "TYPE [x]")
    assert osatlas_match("TYPE", "TYPE") == (True, True)  # equal strings: the F1 is never reached


def test_osatlas_convention_rounds_to_the_grid() -> None:
    assert osatlas_action(Click(x=540, y=1200), PHONE) == "CLICK <point>[[500, 500]]</point>"
    assert osatlas_action(Scroll(direction="down"), PHONE) == "SCROLL [DOWN]"
    assert osatlas_action(Swipe(x1=500, y1=2000, x2=500, y2=500), PHONE) == "SCROLL [DOWN]"
    assert osatlas_action(Key(key="back"), PHONE) == "PRESS_BACK"
    assert osatlas_action(Done(), PHONE) == "COMPLETE"
    # 150 px of 1080 is 138.9 on the grid, 151 px 139.8: both right unrounded. Rounded, the
    # gold (541 -> 501) and 692 (-> 641) are 140 apart: right; 693 (-> 642) is 141: wrong.
    gold = Click(x=541, y=1200)
    assert score_step(Click(x=692, y=1200), gold, PHONE, convention="osatlas").success
    assert not score_step(Click(x=693, y=1200), gold, PHONE, convention="osatlas").success
    # Where rounding decides: 503 px -> 465.74 -> 466 and 655 px -> 606.48 -> 606 are 140 apart
    # on the grid (right), 140.74 unrounded (wrong in the androidcontrol variant).
    assert osatlas_action(Click(x=655, y=0), PHONE) == "CLICK <point>[[606, 0]]</point>"
    assert score_step(Click(x=655, y=1200), Click(x=503, y=1200), PHONE, convention="osatlas").success
    assert not score_step(Click(x=655, y=1200), Click(x=503, y=1200), PHONE, convention="androidcontrol").success


def test_osatlas_convention_text_differs_from_the_androidcontrol_variant() -> None:
    gold = Type(text="hello world")
    assert not score_step(Type(text="hello"), gold, PHONE, convention="osatlas").success
    assert score_step(Type(text="hello"), gold, PHONE, convention="androidcontrol").success
    assert score_step(Type(text="hello there"), gold, PHONE, convention="osatlas").success
    assert not score_step(Type(text="hello there"), gold, PHONE, convention="androidcontrol").success
    score = score_step(LongPress(x=5, y=5), Click(x=5, y=5), PHONE, convention="osatlas")
    assert not score.type_match and score.grounding is False
    assert score_step(Wait(seconds=3), Wait(), PHONE, convention="osatlas").success


# --- Qwen AndroidControl: the script's step, ported again --------------------------------------


def _script_enlarge_bbox(bbox_list: list[list[float]], scale_factor: float = 1.2) -> np.ndarray:
    bbox_array = np.array(bbox_list)
    x_min, y_min, x_max, y_max = bbox_array[:, 0], bbox_array[:, 1], bbox_array[:, 2], bbox_array[:, 3]
    x_center = (x_min + x_max) / 2
    y_center = (y_min + y_max) / 2
    width = (x_max - x_min) * scale_factor
    height = (y_max - y_min) * scale_factor
    return np.vstack((x_center - width / 2, y_center - height / 2, x_center + width / 2, y_center + height / 2)).T


def _script_check_click(click: Any, candidate_bbox: Any, gt_point: Any, width: int, height: int) -> bool:
    if len(candidate_bbox):
        for bbox in _script_enlarge_bbox(candidate_bbox):
            if (bbox[0] <= click[0] <= bbox[2]) and (bbox[1] <= click[1] <= bbox[3]):
                return True
    dx = (gt_point[0] - click[0]) * width
    dy = (gt_point[1] - click[1]) * height
    return bool(np.sqrt(dx**2 + dy**2) <= 0.04 * max(width, height))


def _script_direction(start: Any, end: Any) -> str:
    delta_x, delta_y = end[0] - start[0], end[1] - start[1]
    if abs(delta_x) > abs(delta_y):
        return "right" if delta_x > 0 else "left"
    return "down" if delta_y > 0 else "up"


def _script_norm(action: dict[str, Any], width: int, height: int) -> dict[str, Any]:
    if "candidate_bbox" in action:
        action["candidate_bbox"] = [
            [b[0] / width, b[1] / height, b[2] / width, b[3] / height] for b in action["candidate_bbox"]
        ]
    for key in ("coordinate", "coordinate2"):
        if key in action:
            action[key] = [action[key][0] / width, action[key][1] / height]
    return action


def _script_qwen(
    pred: Any, gt: Any, width: int, height: int, resized_width: int, resized_height: int
) -> tuple[bool, bool]:
    pred = _script_norm(copy.deepcopy(pred), resized_width, resized_height)
    gt = _script_norm(copy.deepcopy(gt), width, height)
    if gt["action"] == "wait":
        return (True, True) if pred["action"] == "wait" else (False, False)
    if gt["action"] == "system_button":
        if pred["action"] != "system_button":
            return False, False
        return True, gt["button"].lower().strip() == pred["button"].lower().strip()
    if gt["action"] in ("type", "open") and pred["action"] == gt["action"]:
        p, g = pred["text"].lower().strip(), gt["text"].lower().strip()
        return True, p in g or g in p
    if gt["action"] == "open" and pred["action"] == "click" and len(gt.get("candidate_bbox", [])) > 0:
        first = gt["candidate_bbox"][0]
        centre = [(first[0] + first[2]) / 2, (first[1] + first[3]) / 2]
        return True, _script_check_click(
            pred["coordinate"], gt["candidate_bbox"], centre, resized_width, resized_height
        )
    if gt["action"] in ("type", "open"):
        return False, False
    if gt["action"] == "swipe":
        if pred["action"] != "swipe":
            return False, False
        return True, _script_direction(pred["coordinate"], pred["coordinate2"]) == gt["direction"]
    if gt["action"] in ("long_press", "click"):
        if pred["action"] != gt["action"]:
            return False, False
        return True, _script_check_click(
            pred["coordinate"], gt["candidate_bbox"], gt["coordinate"], resized_width, resized_height
        )
    raise NotImplementedError


def _qwen_cases(count: int, seed: int = 11) -> list[tuple[dict[str, Any], dict[str, Any], int, int, int, int]]:
    rng = random.Random(seed)
    out: list[tuple[dict[str, Any], dict[str, Any], int, int, int, int]] = []
    for _ in range(count):
        width, height = rng.choice([(1080, 2400), (1080, 1920), (720, 1280)])
        resized = rng.choice([(width, height), (1092, 2408), (728, 1288)])
        kind = rng.choice(["click", "long_press", "open", "swipe", "type", "system_button", "wait"])
        boxes = []
        for _ in range(rng.choice([0, 1, 1, 2, 3])):
            x1, y1 = rng.uniform(-20, width), rng.uniform(-20, height)
            boxes.append([x1, y1, x1 + rng.uniform(0, 300), y1 + rng.uniform(0, 300)])
        gt: dict[str, Any] = {"action": kind}
        pred: dict[str, Any] = {"action": rng.choice([kind, kind, kind, "click", "open", "wait"])}
        sx, sy = resized[0] / width, resized[1] / height
        if kind in ("click", "long_press", "open"):
            gx, gy = rng.uniform(0, width), rng.uniform(0, height)
            if kind != "open":
                gt["coordinate"] = [gx, gy]
            else:
                gt["text"] = rng.choice(["Gmail", "gmail ", "Maps"])
            gt["candidate_bbox"] = boxes
            if boxes and rng.random() < 0.6:  # on an enlarged edge of a box
                (ex1, ey1, ex2, ey2) = _script_enlarge_bbox([boxes[0]])[0]
                px, py = rng.choice([ex1, ex2, (ex1 + ex2) / 2]), rng.choice([ey1, ey2, (ey1 + ey2) / 2])
            else:  # near 0.04 * max(W, H) from the gold point
                r = 0.04 * max(resized) * rng.choice([1.0, 0.999, 1.001, rng.uniform(0, 2)])
                angle = rng.uniform(0, 2 * math.pi)
                px, py = gx * sx + r * math.cos(angle), gy * sy + r * math.sin(angle)
                px, py = px / sx, py / sy
            pred["coordinate"] = [px * sx, py * sy]
        elif kind == "swipe":
            gt["direction"] = rng.choice(["up", "down", "left", "right"])
            x, y = rng.uniform(0, resized[0]), rng.uniform(0, resized[1])
            d = rng.uniform(0, 500)
            pred["coordinate"], pred["coordinate2"] = [x, y], [x + rng.choice([d, -d, 0]), y + rng.choice([d, -d, 0])]
        else:
            words = ["Send", "send ", "milk", "Buy milk", "back", "Back", "home"]
            gt["text"] = gt["button"] = rng.choice(words)
            pred["text"] = pred["button"] = rng.choice(words)
        if pred["action"] in ("click", "long_press") and "coordinate" not in pred:
            pred["coordinate"] = [rng.uniform(0, resized[0]), rng.uniform(0, resized[1])]
        if pred["action"] in ("open", "type"):
            pred.setdefault("text", rng.choice(["milk", "Gmail", "mail"]))
        if pred["action"] == "system_button":
            pred.setdefault("button", "back")
        out.append((pred, gt, width, height, *resized))
    return out


def test_qwen_ac_equals_the_script_on_generated_steps() -> None:
    cases = _qwen_cases(6000)
    verdicts = []
    for pred, gt, width, height, rw, rh in cases:
        expected = _script_qwen(pred, gt, width, height, rw, rh)
        ours = qwen_ac_match(pred, gt, width, height, rw, rh)  # type: ignore[arg-type]
        assert tuple(ours) == expected, (pred, gt, width, height, rw, rh)
        verdicts.append(ours.exact_match)
    assert 1000 < sum(verdicts) < 5000


def test_qwen_ac_distance_is_004_of_the_longer_side_in_pixels() -> None:
    gold: QwenAcAction = {"action": "click", "coordinate": [540, 1200], "candidate_bbox": []}
    # 0.04 * 2400 = 96 px, along x too (the project's qwen variant allows 0.04 * 1080 = 43 px there).
    assert qwen_ac_match({"action": "click", "coordinate": [635, 1200]}, gold, *PHONE, *PHONE).exact_match
    # 96 px away reads 96.00000000000001 after the script's divide-and-multiply: just outside.
    assert _script_qwen({"action": "click", "coordinate": [636, 1200]}, gold, *PHONE, *PHONE) == (True, False)
    assert not qwen_ac_match({"action": "click", "coordinate": [636, 1200]}, gold, *PHONE, *PHONE).exact_match
    assert not score_step(Click(x=635, y=1200), Click(x=540, y=1200), PHONE, convention="qwen").success
    assert score_step(Click(x=635, y=1200), Click(x=540, y=1200), PHONE, convention="qwen_androidcontrol").success


def test_qwen_ac_boxes_grow_12x_without_clipping() -> None:
    gold: QwenAcAction = {"action": "click", "coordinate": [50, 50], "candidate_bbox": [[0, 0, 100, 100]]}
    square = (1000, 1000)
    # Unclipped, the box spans -10..110; the project's qwen variant clips the top at 0 and keeps the height: 0..120.
    assert qwen_ac_match({"action": "click", "coordinate": [50, 110]}, gold, *square, *square).exact_match
    assert not qwen_ac_match({"action": "click", "coordinate": [50, 115]}, gold, *square, *square).exact_match
    box = Box(0.0, 0.0, 0.1, 0.1)
    assert score_step(Click(x=50, y=115), Click(x=50, y=50), square, boxes=[box], convention="qwen").success
    assert not score_step(
        Click(x=50, y=115), Click(x=50, y=50), square, boxes=[box], convention="qwen_androidcontrol"
    ).success


def test_qwen_ac_open_app_by_a_click_on_the_icon() -> None:
    gold: QwenAcAction = {"action": "open", "text": "Gmail", "candidate_bbox": [[100, 200, 200, 300]]}
    assert qwen_ac_match({"action": "click", "coordinate": [150, 250]}, gold, *PHONE, *PHONE) == (True, True)
    assert qwen_ac_match({"action": "click", "coordinate": [900, 2000]}, gold, *PHONE, *PHONE) == (True, False)
    no_icon: QwenAcAction = {"action": "open", "text": "Gmail"}
    assert qwen_ac_match({"action": "click", "coordinate": [150, 250]}, no_icon, *PHONE, *PHONE) == (False, False)
    assert qwen_ac_match({"action": "open", "text": "gmail "}, gold, *PHONE, *PHONE) == (True, True)
    icon = Box.from_pixels(100, 200, 200, 300, *PHONE)
    assert score_step(
        Click(x=150, y=250), OpenApp(name="Gmail"), PHONE, boxes=[icon], convention="qwen_androidcontrol"
    ).success
    assert not score_step(Click(x=150, y=250), OpenApp(name="Gmail"), PHONE, boxes=[icon], convention="qwen").success


def test_qwen_ac_swipes_by_the_finger_direction() -> None:
    assert qwen_ac_direction((0.5, 0.8), (0.5, 0.2)) == "up"
    assert qwen_ac_direction((0.5, 0.5), (0.5, 0.5)) == "up"  # no motion
    assert qwen_ac_direction((0.2, 0.2), (0.5, 0.5)) == "down"  # a tie goes vertical
    up = {"action": "swipe", "coordinate": [540, 2000], "coordinate2": [540, 500]}
    assert qwen_ac_match(up, {"action": "swipe", "direction": "up"}, *PHONE, *PHONE).exact_match  # type: ignore[arg-type]
    assert not qwen_ac_match(up, {"action": "swipe", "direction": "down"}, *PHONE, *PHONE).exact_match  # type: ignore[arg-type]
    # 500 px across, 600 px down on 1080 x 2400: 0.46 of the width beats 0.25 of the height.
    slant = {"action": "swipe", "coordinate": [100, 100], "coordinate2": [600, 700]}
    assert qwen_ac_match(slant, {"action": "swipe", "direction": "right"}, *PHONE, *PHONE).exact_match  # type: ignore[arg-type]
    # On vlagent actions both sides are named by the finger, so the same gesture matches.
    assert score_step(
        Scroll(direction="down"), Scroll(direction="down"), PHONE, convention="qwen_androidcontrol"
    ).success
    assert not score_step(
        Scroll(direction="up"), Scroll(direction="down"), PHONE, convention="qwen_androidcontrol"
    ).success
    pixels_vertical = Swipe(x1=100, y1=100, x2=600, y2=700)  # vertical in pixels, horizontal in 0-1 units
    assert not score_step(
        pixels_vertical, Swipe(x1=100, y1=100, x2=100, y2=700), PHONE, convention="qwen_androidcontrol"
    ).success
    assert score_step(pixels_vertical, Swipe(x1=100, y1=100, x2=100, y2=700), PHONE, convention="qwen").success


def test_qwen_ac_text_buttons_and_what_the_script_refuses() -> None:
    assert qwen_ac_match(
        {"action": "type", "text": "milk"}, {"action": "type", "text": "Buy milk"}, *PHONE, *PHONE
    ) == (True, True)
    assert qwen_ac_match(
        {"action": "system_button", "button": "Back "}, {"action": "system_button", "button": "back"}, *PHONE, *PHONE
    ) == (True, True)
    assert qwen_ac_match({"action": "wait"}, {"action": "wait"}, *PHONE, *PHONE) == (True, True)
    assert qwen_ac_match({"action": "click", "coordinate": [1, 1]}, {"action": "wait"}, *PHONE, *PHONE) == (
        False,
        False,
    )
    with pytest.raises(ValueError, match="not one the reference"):
        qwen_ac_match({"action": "wait"}, {"action": "terminate"}, *PHONE, *PHONE)
    with pytest.raises(ValueError, match="candidate_bbox"):
        qwen_ac_match(
            {"action": "click", "coordinate": [1, 1]}, {"action": "click", "coordinate": [1, 1]}, *PHONE, *PHONE
        )
    # Outside the script's vocabulary the convention compares the type and a done's status.
    assert score_step(Done(), Done(), PHONE, convention="qwen_androidcontrol").success
    assert not score_step(Done(status="failure"), Done(), PHONE, convention="qwen_androidcontrol").success
    assert score_step(Key(key="back"), Key(key="back"), PHONE, convention="qwen_androidcontrol").success
