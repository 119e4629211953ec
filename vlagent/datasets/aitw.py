"""Android in the Wild (AITW): its TFRecord files as episodes, scored by its action matching.

Schema, from google-research/google-research ``android_in_the_wild/README.md`` ("Dataset
format") and the types that ``visualization_utils.py`` and ``demo.ipynb`` beside it read:
GZIP TFRecord files, one ``tf.train.Example`` per step, the steps of an episode in
consecutive records::

    episode_id                       bytes   (demo.ipynb: bytes_list, decoded as UTF-8)
    step_id                          int64   zero-indexed step number in the episode
    episode_length                   int64
    goal_info                        bytes   the instruction
    image/encoded                    bytes   RAW uint8 pixels, height x width x channels
                                             (visualization_utils: tf.io.decode_raw + reshape)
    image/height, image/width, image/channels   int64
    image/ui_annotations_positions   float   flattened (y, x, height, width), normalised
    image/ui_annotations_text        bytes   one OCR text per annotation
    image/ui_annotations_ui_types    bytes   one type per annotation (icon or text)
    results/action_type              int64   action_type.py's ids (AitwActionType)
    results/yx_touch, results/yx_lift  float  normalised (y, x) of a dual point, else -1
    results/type_action              bytes   the typed text of a TYPE action
    device_type, current_activity    bytes;  android_api_level  int64

An encoded (PNG/JPEG) ``image/encoded`` is read too, for files re-packed that way.
Steps are scored by :func:`vlagent.scoring.aitw_match` (the reference ``check_actions_match``)
on the dataset's own fields, with every annotation of the screen; typed text is compared
apart (``text_match``), as the reference does not compare it.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from PIL import Image

from vlagent.actions import MAX_COORD, MAX_TEXT, Action, Click, Done, Key, Swipe, Type
from vlagent.datasets.base import DatasetEpisode, decode_image, pixel
from vlagent.datasets.example import ExampleError, Features, parse_example
from vlagent.datasets.tfrecord import MAX_RECORD_BYTES, DatasetError, read_records
from vlagent.frames import Frame

# ``_aitw_fields`` and ``_same_text``: the scoring package's own reading of a vlagent action in
# AITW's terms and its text rule, so a prediction is read exactly as score_step's "aitw" reads it.
from vlagent.scoring import AitwActionType, Convention, StepScore, _aitw_fields, _same_text, aitw_is_tap, aitw_match

__all__ = ["AITW_CONVENTIONS", "AitwStep", "aitw_record", "read_aitw"]

log = logging.getLogger(__name__)

AITW_CONVENTIONS: tuple[Convention, ...] = ("aitw",)

_NAMES = {
    AitwActionType.TYPE: "type",
    AitwActionType.PRESS_BACK: "press_back",
    AitwActionType.PRESS_HOME: "press_home",
    AitwActionType.PRESS_ENTER: "press_enter",
    AitwActionType.STATUS_TASK_COMPLETE: "status_task_complete",
    AitwActionType.STATUS_TASK_IMPOSSIBLE: "status_task_impossible",
}
_KEYS = {AitwActionType.PRESS_BACK: "back", AitwActionType.PRESS_HOME: "home", AitwActionType.PRESS_ENTER: "enter"}
_MODES = {1: "L", 3: "RGB", 4: "RGBA"}
_NUDGES = sorted(((dx, dy) for dx in range(-2, 3) for dy in range(-2, 3)), key=lambda d: (abs(d[0]) + abs(d[1]), d))

Yx = tuple[float, float]
Annotation = tuple[float, float, float, float]


@dataclass(frozen=True)
class AitwStep:
    """One AITW record: the screen, the gold action in the dataset's fields, the annotations."""

    episode_id: str
    index: int
    step_id: int
    goal: str
    action_type: int
    touch_yx: Yx
    lift_yx: Yx
    type_text: str
    annotations: tuple[Annotation, ...]
    """Every UI annotation of the screen: (y, x, height, width), normalised."""
    annotation_texts: tuple[str, ...]
    annotation_types: tuple[str, ...]
    size: tuple[int, int]
    channels: int
    source: str
    image_data: bytes = field(repr=False)
    episode_length: int | None = None
    device_type: str | None = None
    android_api_level: int | None = None
    current_activity: str | None = None

    @property
    def instruction(self) -> str | None:
        return None  # AITW has the goal alone

    @property
    def is_tap(self) -> bool:
        return self.action_type == AitwActionType.DUAL_POINT and aitw_is_tap(self.touch_yx, self.lift_yx)

    @property
    def kind(self) -> str:
        if self.action_type == AitwActionType.DUAL_POINT:
            return "tap" if self.is_tap else "swipe"
        return _NAMES[AitwActionType(self.action_type)]

    @cached_property
    def gold(self) -> Action:
        """The gold in pixels; a swipe keeps its AITW reading (a swipe, on the same axis) after rounding."""
        width, height = self.size
        kind = self.action_type
        if kind == AitwActionType.DUAL_POINT:
            (ty, tx), (ly, lx) = self.touch_yx, self.lift_yx
            x1, y1 = pixel(tx, width), pixel(ty, height)
            if self.is_tap:
                return Click(x=x1, y=y1)
            x2, y2 = pixel(lx, width), pixel(ly, height)
            swipes = [Swipe(x1=x1, y1=y1, x2=_keep(x2 + dx, width), y2=_keep(y2 + dy, height)) for dx, dy in _NUDGES]
            return next((s for s in swipes if self._matches(*_aitw_fields(s, self.size))), swipes[0])
        if kind == AitwActionType.TYPE:
            return Type(text=self.type_text[:MAX_TEXT] or " ")  # an empty typed text is still a TYPE
        if kind in _KEYS:
            return Key(key=_KEYS[AitwActionType(kind)])
        return Done(status="success" if kind == AitwActionType.STATUS_TASK_COMPLETE else "failure")

    def _matches(self, touch: Yx, lift: Yx, kind: int | str) -> bool:
        """``aitw_match`` of AITW fields against the gold, with every annotation of the screen."""
        if isinstance(kind, str):
            return False
        gold = (self.touch_yx, self.lift_yx, self.action_type)
        return aitw_match(touch, lift, kind, *gold, self.annotations, no_annotations="distance")

    def frame(self) -> Frame:
        width, height = self.size
        data = self.image_data
        if len(data) == width * height * self.channels:
            image = Image.frombytes(_MODES[self.channels], (width, height), data).convert("RGB")
        else:
            image = decode_image(data, self.source, expected=self.size)
        return Frame(image, image.width, image.height, device={"dataset": "aitw", "episode": self.episode_id})

    def native(self) -> dict[str, object]:
        return {
            "action_type": self.action_type,
            "action": self.kind,
            "touch_yx": list(self.touch_yx),
            "lift_yx": list(self.lift_yx),
            "type_action": self.type_text,
            "annotations": len(self.annotations),
        }

    def predicted_native(self, prediction: Action) -> dict[str, object]:
        touch, lift, kind = _aitw_fields(prediction, self.size)
        return {"aitw": {"action_type": kind, "touch_yx": list(touch), "lift_yx": list(lift)}}

    def score(self, prediction: Action | None) -> dict[Convention, StepScore]:
        return {"aitw": self._score(prediction)}

    def _score(self, prediction: Action | None) -> StepScore:
        tap = self.is_tap
        typed = self.action_type == AitwActionType.TYPE
        if prediction is None:
            return StepScore("aitw", False, False if tap else None, False if typed else None, False, "no valid answer")
        touch, lift, kind = _aitw_fields(prediction, self.size)
        text = None if not typed else isinstance(prediction, Type) and _same_text(prediction.text, self.type_text)
        if isinstance(kind, str):
            return StepScore("aitw", False, False if tap else None, text, False, f"{kind} is not an AITW action")
        if kind != self.action_type:
            return StepScore("aitw", False, False if tap else None, text, False, f"type {kind} != {self.action_type}")
        match = self._matches(touch, lift, kind)
        if kind != AitwActionType.DUAL_POINT:
            return StepScore("aitw", True, None, text, match)
        if aitw_is_tap(touch, lift) != tap:
            return StepScore("aitw", False, False if tap else None, None, False, "tap vs swipe")
        if tap:
            return StepScore("aitw", True, match, None, match, "" if match else "over 0.14 away and in no box with it")
        return StepScore("aitw", True, None, None, match, "" if match else "swipe on the other axis")


def _keep(value: int, extent: int) -> int:
    return min(extent - 1, max(0, value))


# --- reading -------------------------------------------------------------------------------


def _optional_text(features: Features, name: str) -> str | None:
    values = features.texts(name) if features.kind(name) == "bytes_list" else []
    return values[0] if values else None


def _optional_int(features: Features, name: str) -> int | None:
    values = features.ints(name) if features.kind(name) == "int64_list" else []
    return values[0] if values else None


def _pair(features: Features, name: str) -> Yx:
    values = features.floats(name)
    if len(values) != 2:
        raise ExampleError(f"feature {name!r} holds {len(values)} values, expected a (y, x) pair")
    return values[0], values[1]


def _one_blob(features: Features, name: str) -> bytes:
    values = features.bytes_list(name)
    if len(values) != 1:
        raise ExampleError(f"feature {name!r} holds {len(values)} values, expected 1")
    return values[0]


def _step(features: Features, source: str) -> AitwStep:
    width, height, channels = features.int("image/width"), features.int("image/height"), features.int("image/channels")
    if not (0 < width <= MAX_COORD and 0 < height <= MAX_COORD):
        raise ExampleError(f"the screenshot is {width}x{height} pixels")
    if channels not in _MODES:
        raise ExampleError(f"the screenshot has {channels} channels (1, 3 or 4 are read)")
    kind = features.int("results/action_type")
    if kind != AitwActionType.DUAL_POINT and kind not in _NAMES:
        raise ExampleError(f"results/action_type {kind} is not one of AITW's action types")
    touch, lift = _pair(features, "results/yx_touch"), _pair(features, "results/yx_lift")
    if kind == AitwActionType.DUAL_POINT and not all(math.isfinite(v) for v in (*touch, *lift)):
        raise ExampleError(f"a dual point at {touch} -> {lift} is not a pair of finite points")
    flat = features.floats("image/ui_annotations_positions") if features.kind("image/ui_annotations_positions") else []
    if len(flat) % 4:
        raise ExampleError(f"image/ui_annotations_positions holds {len(flat)} values, not a multiple of 4")
    boxes = tuple((flat[i], flat[i + 1], flat[i + 2], flat[i + 3]) for i in range(0, len(flat), 4))
    texts = features.texts("image/ui_annotations_text") if features.kind("image/ui_annotations_text") else []
    types = features.texts("image/ui_annotations_ui_types") if features.kind("image/ui_annotations_ui_types") else []
    typed = features.texts("results/type_action") if features.kind("results/type_action") else []
    return AitwStep(
        episode_id=features.text("episode_id"),
        index=0,
        step_id=features.int("step_id"),
        goal=features.text("goal_info"),
        action_type=kind,
        touch_yx=touch,
        lift_yx=lift,
        type_text=typed[0] if typed else "",
        annotations=boxes,
        annotation_texts=tuple(texts),
        annotation_types=tuple(types),
        size=(width, height),
        channels=channels,
        source=source,
        image_data=_one_blob(features, "image/encoded"),
        episode_length=_optional_int(features, "episode_length"),
        device_type=_optional_text(features, "device_type"),
        android_api_level=_optional_int(features, "android_api_level"),
        current_activity=_optional_text(features, "current_activity"),
    )


def _episode(steps: list[AitwStep]) -> DatasetEpisode:
    ordered = sorted(steps, key=lambda s: s.step_id)
    ids = [s.step_id for s in ordered]
    first = ordered[0]
    if len(set(ids)) != len(ids):
        raise DatasetError(f"{first.source}: episode {first.episode_id} has step_id {ids} (one repeated)")
    if ids != list(range(len(ids))) or (first.episode_length is not None and first.episode_length != len(ids)):
        log.warning(
            "%s: episode %s has step_id %s of episode_length %s: steps are missing",
            first.source, first.episode_id, ids, first.episode_length,
        )  # fmt: skip
    numbered = [dataclasses.replace(s, index=i) for i, s in enumerate(ordered)]
    return DatasetEpisode(first.episode_id, first.goal, numbered, first.source)


def read_aitw(paths: Iterable[Path | str], *, max_record_bytes: int = MAX_RECORD_BYTES) -> Iterator[DatasetEpisode]:
    """The episodes of AITW TFRecord files, in file order; an episode's records are consecutive in one file."""
    seen: set[str] = set()
    for path in paths:
        current: list[AitwStep] = []
        for index, data in read_records(path, max_record_bytes=max_record_bytes):
            source = f"{path}: record {index}"
            try:
                step = _step(parse_example(data), source)
            except ExampleError as exc:
                raise DatasetError(f"{source}: not an AITW step ({exc})") from None
            if current and step.episode_id != current[0].episode_id:
                yield _episode(current)
                current = []
            if not current:
                if step.episode_id in seen:
                    log.warning("%s: episode %s appears again, apart from its earlier steps", source, step.episode_id)
                seen.add(step.episode_id)
            current.append(step)
        if current:
            yield _episode(current)


# --- writing (tests, fixtures) ---------------------------------------------------------------


def aitw_record(
    *,
    episode_id: str,
    step_id: int,
    episode_length: int,
    goal: str,
    image: Image.Image,
    action_type: int,
    touch_yx: Yx = (-1.0, -1.0),
    lift_yx: Yx = (-1.0, -1.0),
    type_text: str = "",
    annotations: Sequence[Annotation] = (),
    annotation_texts: Sequence[str] = (),
    annotation_types: Sequence[str] = (),
    device_type: str = "",
    android_api_level: int = 0,
    current_activity: str = "",
) -> bytes:
    """One step as a serialized ``tf.train.Example`` in AITW's schema (raw RGB pixels)."""
    rgb = image.convert("RGB")
    return Features(
        bytes_lists={
            "episode_id": [episode_id.encode()],
            "goal_info": [goal.encode()],
            "image/encoded": [rgb.tobytes()],
            "image/ui_annotations_text": [t.encode() for t in annotation_texts],
            "image/ui_annotations_ui_types": [t.encode() for t in annotation_types],
            "results/type_action": [type_text.encode()],
            "device_type": [device_type.encode()],
            "current_activity": [current_activity.encode()],
        },
        float_lists={
            "image/ui_annotations_positions": [v for box in annotations for v in box],
            "results/yx_touch": list(touch_yx),
            "results/yx_lift": list(lift_yx),
        },
        int64_lists={
            "step_id": [step_id],
            "episode_length": [episode_length],
            "image/height": [rgb.height],
            "image/width": [rgb.width],
            "image/channels": [3],
            "results/action_type": [action_type],
            "android_api_level": [android_api_level],
        },
    ).encode()
