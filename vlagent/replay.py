"""Record and replay: turn a run into a scenario with gold steps, and re-execute it later.

Every gold step that aims at a point carries a *fingerprint* of the screen around its
target (the target's box when known, else a square around the point): a 16x16 difference
hash plus the mean brightness. Replaying a step first fingerprints the same region of the
current screen:

- same fingerprint: the recorded action is executed as it is (exact, no model involved);
- different: with a heal policy, the policy is asked to find the target again on the new
  screen; the step is *healed* (logged as such) when the region around the policy's new
  point has the recorded fingerprint. Otherwise, or without a heal policy, replay stops
  with a *divergence report* (HTML + JPEG) showing the expected and the actual frame.

This module must not decide success (the scenario's checks do, see ``evaluate``) and must
not import model libraries.
"""

from __future__ import annotations

import hashlib
import html
import json
import logging
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from PIL import Image, ImageDraw

from vlagent.actions import Action, Done, Step, describe_action, map_points, tap_point
from vlagent.errors import DeviceError, ModelError, UserError
from vlagent.frames import Frame
from vlagent.policies.base import Decision, Observation, Policy, decide_each
from vlagent.scenario import DeviceSpec, GoldStep, Scenario
from vlagent.tasks import Check
from vlagent.tasks.state import StateReader, StateUnavailable
from vlagent.tasks.uitree import NodeRef, UiNode
from vlagent.trajectory import Trajectory, load_trajectory

__all__ = [
    "FINGERPRINT_THRESHOLD",
    "HEAL_TOLERANCE",
    "ReplayOutcome",
    "ReplayPolicy",
    "ReplayResult",
    "fingerprint",
    "fingerprint_distance",
    "frame_fingerprint",
    "gold_from_trajectory",
    "heal_instruction",
    "replay_run",
    "scenario_from_run",
    "target_region",
    "write_divergence_report",
]

log = logging.getLogger(__name__)

#: Largest fingerprint distance (0-1) still counted as "the same screen": by default only an
#: equal digest. Raise it (e.g. 0.03) for devices whose pixels shimmer between captures.
FINGERPRINT_THRESHOLD = 0.0
#: Largest distance between the recorded target and the one a heal policy points at: an
#: element that moved is drawn over another background (a wallpaper gradient), so this only
#: catches answers aimed at something unlike the target (another kind of element, empty space).
HEAL_TOLERANCE = 0.25
_HASH = 16

Region = tuple[int, int, int, int]


def target_region(point: tuple[int, int], size: tuple[int, int], box: Sequence[int] | None = None) -> Region:
    """The region fingerprinted for a step: ``box`` when known, else a square around ``point``."""
    width, height = size
    if box is not None:
        x0, y0, x1, y1 = box
    else:
        half = max(24, round(0.06 * min(width, height)))
        x0, y0, x1, y1 = point[0] - half, point[1] - half, point[0] + half, point[1] + half
    x0, y0 = max(0, min(x0, width - 1)), max(0, min(y0, height - 1))
    x1, y1 = max(x0 + 1, min(x1, width)), max(y0 + 1, min(y1, height))
    return x0, y0, x1, y1


def _moved(region: Region, old: tuple[int, int], new: tuple[int, int], size: tuple[int, int]) -> Region:
    dx, dy = new[0] - old[0], new[1] - old[1]
    x0, y0, x1, y1 = region
    return target_region(new, size, (x0 + dx, y0 + dy, x1 + dx, y1 + dy))


def fingerprint(image: Image.Image, region: Region) -> str:
    """Fingerprint of ``region`` (image pixels): ``PERCEPTUAL:DIGEST``.

    PERCEPTUAL is a 16x16 difference hash plus the mean brightness (tolerant: it says how
    alike two regions look); DIGEST hashes a finer 4-bit thumbnail (strict: equal digests
    mean the region is unchanged for any practical purpose).
    """
    patch = image.crop(region).convert("L")
    small = patch.resize((_HASH + 1, _HASH), Image.Resampling.BILINEAR).tobytes()
    bits = 0
    for row in range(_HASH):
        line = small[row * (_HASH + 1) : (row + 1) * (_HASH + 1)]
        for col in range(_HASH):
            bits = (bits << 1) | (line[col] > line[col + 1])
    mean = sum(small) // len(small)
    width, height = patch.size
    cols = max(8, min(96, round(math.sqrt(1024 * width / height))))
    fine = patch.resize((cols, max(8, 1024 // cols)), Image.Resampling.BOX).tobytes()
    digest = hashlib.blake2b(bytes(v >> 4 for v in fine), digest_size=6).hexdigest()
    return f"{bits:0{_HASH * _HASH // 4}x}{mean:02x}:{digest}"


def fingerprint_distance(a: str, b: str) -> float:
    """0 when the digests are equal; else the share of differing hash bits (at least 1/256),
    or 1 when the brightness differs a lot or the fingerprints are not comparable."""
    pa, _, da = a.partition(":")
    pb, _, db = b.partition(":")
    if len(pa) != len(pb) or len(pa) != _HASH * _HASH // 4 + 2:
        return 1.0
    if da and da == db:
        return 0.0
    if abs(int(pa[-2:], 16) - int(pb[-2:], 16)) > 24:
        return 1.0
    bits = bin(int(pa[:-2], 16) ^ int(pb[:-2], 16)).count("1")
    return max(bits, 1) / (_HASH * _HASH)


def frame_fingerprint(frame: Frame, point: tuple[int, int], box: Sequence[int] | None) -> str:
    """Fingerprint of the screen around ``point`` (inside ``box`` when given) in logical coordinates,
    whatever the capture scale: what a gold step's ``fingerprint`` holds."""
    region = target_region(point, frame.size, box)
    scale = frame.scale
    return fingerprint(
        frame.image,
        (round(region[0] * scale), round(region[1] * scale), round(region[2] * scale), round(region[3] * scale)),
    )


# --- record: run -> scenario


def gold_from_trajectory(traj: Trajectory) -> list[GoldStep]:
    """The run's actions as gold steps, each click fingerprinted on the frame it was decided on."""
    gold: list[GoldStep] = []
    for step in traj.steps:
        point = tap_point(step.action)
        fp = None
        if point is not None and traj.frame_path(step).exists():
            with Image.open(traj.frame_path(step)) as image:
                frame = Frame.of(image.convert("RGB"), scale=image.width / step.frame_size[0])
                fp = frame_fingerprint(frame, point, None)
        gold.append(GoldStep(action=step.action, thought=step.thought, fingerprint=fp, node=step.target))
    return gold


def replay_run(
    run_dir: Path | str, out: Path | str, *, heal: Policy | None = None, device: str | None = None
) -> ReplayResult:
    """Re-execute a recorded run on its device (or ``device``), recording the replay into ``out``.

    Exact where the screen is unchanged; healed by ``heal`` or stopped with a divergence
    report (``out/divergence/divergence.html``) where it is not.
    """
    from vlagent.agent import run_episode
    from vlagent.drivers.registry import open_driver
    from vlagent.recorder import Recorder

    traj = load_trajectory(run_dir)
    if traj.start is None:
        raise UserError(f"{run_dir}: the trajectory has no start line")
    spec = device or traj.start.meta.get("device_spec", traj.start.device)
    out = Path(out)
    with open_driver(spec) as driver:
        ui = driver if isinstance(driver, StateReader) else None
        policy = ReplayPolicy(
            gold_from_trajectory(traj), heal=heal, report_dir=out / "divergence", expected_frames=traj.path, ui=ui
        )
        run_episode(traj.start.task, driver, policy, max_steps=len(traj.steps) + 1, hooks=[Recorder(out)])
    return policy.result


def scenario_from_run(
    run_dir: Path | str,
    *,
    name: str | None = None,
    device: DeviceSpec | None = None,
    success: Sequence[Check] = (),
    frames: str | None = None,
) -> Scenario:
    """A scenario whose gold steps are the run's actions, each fingerprinted on its recorded frame.

    ``success`` must be given (a run does not know how to judge itself); ``frames`` names a
    directory, relative to where the scenario will be saved, the caller copies frames into.
    """
    traj = load_trajectory(run_dir)
    if traj.start is None:
        raise UserError(f"{run_dir}: the trajectory has no start line")
    if not success:
        raise UserError("a recorded scenario needs at least one success check (e.g. --check toggle=wifi)")
    gold = gold_from_trajectory(traj)
    spec = device or DeviceSpec(kind=traj.start.meta.get("device_spec", traj.start.device).split(":")[0])
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", name or traj.start.task).strip("-")[:60] or "recorded"
    return Scenario(
        name=slug,
        task=traj.start.task,
        device=spec,
        max_steps=max(len(gold) + 5, 10),
        success=list(success),
        gold=gold,
        frames=frames,
    )


# --- replay ---------------------------------------------------------------------------------

OutcomeStatus = Literal["exact", "healed", "diverged"]


@dataclass(frozen=True)
class ReplayOutcome:
    """What happened to one gold step."""

    index: int
    status: OutcomeStatus
    action: Action
    """The action executed (the healed one when healed); the recorded one when diverged."""
    distance: float | None = None
    detail: str = ""


@dataclass
class ReplayResult:
    outcomes: list[ReplayOutcome] = field(default_factory=list)
    report: Path | None = None
    """The divergence report (HTML) when replay stopped."""

    @property
    def status(self) -> Literal["exact", "healed", "diverged"]:
        statuses = {o.status for o in self.outcomes}
        if "diverged" in statuses:
            return "diverged"
        return "healed" if "healed" in statuses else "exact"

    @property
    def healed(self) -> int:
        return sum(o.status == "healed" for o in self.outcomes)


def heal_instruction(step: GoldStep) -> str:
    """What the heal policy is asked to do."""
    if step.target:
        return f'Tap "{step.target}".'
    why = f" ({step.thought})" if step.thought else ""
    action = describe_action(step.action)
    return f"The screen changed since this step was recorded. Do this step again on the new screen: {action}{why}"


def _heal(
    policy: Policy, observation: Observation, step: GoldStep, point: tuple[int, int]
) -> tuple[Action | None, str]:
    frame = observation.frame
    obs = Observation(task=heal_instruction(step), frame=frame, capabilities=observation.capabilities)
    try:
        decision = policy.decide(obs)
    except ModelError as exc:
        return None, f"heal policy failed: {exc}"
    new_point = tap_point(decision.action)
    if new_point is None or decision.action.action != step.action.action:
        return None, f"heal policy answered {describe_action(decision.action)}"
    region = _moved(target_region(point, frame.size, step.box), point, new_point, frame.size)
    assert step.fingerprint is not None
    distance = fingerprint_distance(frame_fingerprint(frame, new_point, region), step.fingerprint)
    if distance > HEAL_TOLERANCE:
        return None, f"the policy's target at {new_point} does not look like the recorded one (distance {distance:.2f})"
    return _moved_to(step.action, point, new_point), f"re-located {point} -> {new_point} (distance {distance:.2f})"


def _find_node(ui: StateReader, ref: NodeRef) -> tuple[UiNode | None, str]:
    """The one node of the current view hierarchy that matches ``ref``, or None and why not."""
    try:
        node = ref.find_in(ui.state().ui_tree().value)
    except (StateUnavailable, DeviceError) as exc:
        return None, f"the view hierarchy could not be read ({exc})"
    return (node, "") if node is not None else (None, f"no single UI node matches {ref.describe()}")


def _moved_to(action: Action, old: tuple[int, int], new: tuple[int, int]) -> Action:
    return map_points(action, lambda x, y: (x + new[0] - old[0], y + new[1] - old[1]))


class ReplayPolicy:
    """Plays gold steps, checking each target's fingerprint on the screen the loop shows it.

    Unchanged target: the recorded action. Changed: a heal policy re-locates it (logged), or
    the episode ends with ``done(failure)`` and a divergence report in ``report_dir``.
    ``outcomes`` tells, step by step, what happened.
    """

    name = "replay"

    def __init__(
        self,
        gold: Sequence[GoldStep],
        *,
        heal: Policy | None = None,
        report_dir: Path | None = None,
        expected_frames: Path | None = None,
        threshold: float = FINGERPRINT_THRESHOLD,
        ui: StateReader | None = None,
    ) -> None:
        """``ui``: a device whose view hierarchy can be read; a changed target with a recorded UI
        node is then found again by that node before the heal policy is asked."""
        self.gold = list(gold)
        self.heal = heal
        self.ui = ui
        self.report_dir = report_dir
        self.expected_frames = expected_frames
        self.threshold = threshold
        self.result = ReplayResult()

    @property
    def outcomes(self) -> list[ReplayOutcome]:
        return self.result.outcomes

    def decide(self, observation: Observation) -> Decision:
        index = len(self.result.outcomes)
        if index >= len(self.gold):
            return self._answer(Done(status="failure", answer="the recorded steps ran out"))
        step = self.gold[index]
        point = tap_point(step.action)
        if point is None or step.fingerprint is None:
            self.result.outcomes.append(ReplayOutcome(index, "exact", step.action))
            return self._answer(step.action, step.thought)
        frame = observation.frame
        distance = fingerprint_distance(frame_fingerprint(frame, point, step.box), step.fingerprint)
        detail = ""
        if self.ui is not None and step.node is not None:
            # The recorded element is the better witness: a row's middle looks like every other row's.
            node, detail = _find_node(self.ui, step.node)
            if node is not None:
                x0, y0, x1, y1 = node.bounds
                if x0 <= point[0] < x1 and y0 <= point[1] < y1:
                    self.result.outcomes.append(ReplayOutcome(index, "exact", step.action, distance, detail))
                    return self._answer(step.action, step.thought)
                moved = _moved_to(step.action, point, node.center)
                detail = f"re-located {point} -> {node.center} by its UI node ({step.node.describe()})"
                log.warning("replay step %d self-healed: %s", index + 1, detail)
                self.result.outcomes.append(ReplayOutcome(index, "healed", moved, distance, detail))
                return self._answer(moved, f"self-healed: {detail}")
        if distance <= self.threshold:
            self.result.outcomes.append(ReplayOutcome(index, "exact", step.action, distance))
            return self._answer(step.action, step.thought)
        healed: Action | None = None
        if self.heal is None:
            why = "the screen around the target changed and no heal policy was given"
            detail = f"{detail}; {why}" if detail else why
        else:
            healed, detail = _heal(self.heal, observation, step, point)
        if healed is None:
            log.warning("replay diverged at step %d: %s", index + 1, detail)
            self.result.outcomes.append(ReplayOutcome(index, "diverged", step.action, distance, detail))
            if self.report_dir is not None:
                self.result.report = write_divergence_report(
                    self.report_dir, index, step, frame, distance, detail, self.expected_frames
                )
            return self._answer(Done(status="failure", answer=f"replay diverged at step {index + 1}: {detail}"))
        log.warning("replay step %d self-healed: %s", index + 1, detail)
        self.result.outcomes.append(ReplayOutcome(index, "healed", healed, distance, detail))
        return self._answer(healed, f"self-healed: {detail}")

    def decide_batch(self, observations: Sequence[Observation]) -> list[Decision | ModelError]:
        return decide_each(self, observations)

    @staticmethod
    def _answer(action: Action, thought: str | None = None) -> Decision:
        step = Step(thought=thought[:1000] if thought else None, action=action)
        return Decision(step=step, raw=step.model_dump_json(exclude_none=True))


# --- divergence report ------------------------------------------------------------------------


def _marked(image: Image.Image, region: Region, color: str, scale: float = 1.0) -> Image.Image:
    out = image.convert("RGB").copy()
    draw = ImageDraw.Draw(out)
    box = [round(v * scale) for v in region]
    width = max(3, round(out.width / 200))
    draw.rectangle(box, outline=color, width=width)
    return out


def _thumb(image: Image.Image, path: Path, max_side: int = 720) -> None:
    image = image.copy()
    image.thumbnail((max_side, max_side))
    image.save(path, format="JPEG", quality=80)


def write_divergence_report(
    out: Path,
    index: int,
    step: GoldStep,
    actual: Frame,
    distance: float,
    detail: str,
    expected_frames: Path | None = None,
) -> Path:
    """Write ``divergence.html`` + JPEGs (expected vs actual, target region outlined); return the HTML path."""
    out.mkdir(parents=True, exist_ok=True)
    point = tap_point(step.action) or (0, 0)
    region = target_region(point, actual.size, step.box)
    _thumb(_marked(actual.image, region, "#e53935", actual.scale), out / f"actual_{index:03d}.jpg")
    expected_html = "<p>No recorded frame for this step (the scenario keeps only its fingerprint).</p>"
    candidates = (
        sorted(expected_frames.glob(f"frame_{index:04d}.*")) if expected_frames and expected_frames.is_dir() else []
    )
    if candidates:
        with Image.open(candidates[0]) as image:
            scale = image.width / actual.width
            _thumb(_marked(image, region, "#43a047", scale), out / f"expected_{index:03d}.jpg")
        expected_html = f'<img src="expected_{index:03d}.jpg" alt="expected frame">'
    target = html.escape(step.target or describe_action(step.action))
    page = f"""<!doctype html><meta charset="utf-8"><title>Replay diverged at step {index + 1}</title>
<style>body{{font-family:sans-serif;margin:1.5em}} .pair{{display:flex;gap:2em}}
img{{max-height:70vh;border:1px solid #999}}</style>
<h1>Replay diverged at step {index + 1}</h1>
<p>Action: <code>{html.escape(describe_action(step.action))}</code> on <b>{target}</b>.
Fingerprint distance {distance:.2f} (threshold {FINGERPRINT_THRESHOLD}). {html.escape(detail)}</p>
<div class="pair"><figure><figcaption>expected</figcaption>{expected_html}</figure>
<figure><figcaption>actual</figcaption><img src="actual_{index:03d}.jpg" alt="actual frame"></figure></div>
"""
    path = out / "divergence.html"
    path.write_text(page, encoding="utf-8")
    (out / "divergence.json").write_text(
        json.dumps(
            {
                "step": index,
                "action": step.action.model_dump(mode="json"),
                "target": step.target,
                "distance": distance,
                "detail": detail,
            },
            indent=1,
        ),
        encoding="utf-8",
    )
    return path
