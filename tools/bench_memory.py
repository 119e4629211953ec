"""Prompt size per step under a visual-token budget vs keeping every frame.

Runs one long episode on the simulated phone with a scripted policy (open apps, scroll
down and up, go back and home, over and over) and, every ``--every`` steps, prints:

  memory   images and visual tokens that TrajectoryMemory selected for the prompt
  naive    images and visual tokens if every frame were kept at full resolution
  with --model tiny: prompt length (input ids) and model time of a forward pass
  (prefill) on the tiny random Qwen2-VL, for both; naive prompts above --naive-cap
  visual tokens are not run (they only get slower).

    python tools/bench_memory.py [--steps 200] [--every 20] [--max-tokens 2560] [--model tiny]
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

from vlagent.actions import Action, Key, OpenApp, Scroll
from vlagent.agent import run_episode
from vlagent.coords import IMAGE_FACTOR, visual_tokens
from vlagent.drivers.sim import SimDriver
from vlagent.effects import FrameChange
from vlagent.frames import Frame
from vlagent.memory import MemoryConfig, TrajectoryMemory
from vlagent.policies.base import Decision, Observation
from vlagent.policies.scripted import ScriptedPolicy

CYCLE: list[Action] = [
    OpenApp(name="Settings"),
    Scroll(direction="down"),
    Scroll(direction="down"),
    Scroll(direction="up"),
    Key(key="back"),
    OpenApp(name="Contacts"),
    Scroll(direction="down"),
    Scroll(direction="up"),
    Key(key="home"),
    OpenApp(name="Notes"),
]


@dataclass
class Sample:
    step: int
    memory_images: int
    memory_tokens: int
    naive_images: int
    naive_tokens: int
    observation: Observation
    naive_frames: tuple[Frame, ...] = ()
    model: dict[str, Any] = field(default_factory=dict)


class WatchingPolicy(ScriptedPolicy):
    """The scripted policy, noting what each prompt would carry with and without memory."""

    def __init__(self, script: list[Action], memory: TrajectoryMemory, every: int) -> None:
        super().__init__(script)
        self.memory, self.every = memory, every
        # Early steps too: naive prompts soon get too large to run the model on.
        self.extra_steps = {1, 2, 4, 8, 12}
        self.samples: list[Sample] = []
        self.frames: list[Frame] = []

    def decide(self, observation: Observation) -> Decision:
        cfg = self.memory.config
        self.frames.append(observation.frame)
        step = observation.step_index + 1
        if step in self.extra_steps or step % self.every == 0:
            # The prompt's images, as a model policy would ask for them (selection is lazy).
            images = observation.prompt_images
            naive = sum(
                visual_tokens(f.image.width, f.image.height, min_pixels=cfg.min_pixels, max_pixels=cfg.max_pixels)
                for f in self.frames
            )
            self.samples.append(
                Sample(
                    step,
                    len(images),
                    self.memory.tokens(images),
                    len(self.frames),
                    naive,
                    observation,
                    tuple(self.frames),
                )
            )
        return super().decide(observation)


def model_cost(policy: Any, observation: Observation) -> dict[str, Any]:
    """Prompt length and the time of one forward pass (prefill) of ``policy``'s model."""
    import torch

    batch = policy.prepare([observation])
    t0 = time.perf_counter()
    with torch.inference_mode():
        policy.model(**batch.inputs)
    return {
        "ids": int(batch.inputs["input_ids"].shape[1]),
        "prep_s": batch.preprocess_s,
        "fwd_s": time.perf_counter() - t0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--every", type=int, default=20)
    parser.add_argument("--max-tokens", type=int, default=2560)
    parser.add_argument("--max-images", type=int, default=4)
    parser.add_argument("--max-pixels", type=int, default=1280 * IMAGE_FACTOR * IMAGE_FACTOR)
    parser.add_argument("--model", choices=["none", "tiny"], default="none")
    parser.add_argument("--naive-cap", type=int, default=16384, help="largest naive prompt (visual tokens) to run")
    args = parser.parse_args()

    memory = TrajectoryMemory(
        MemoryConfig(max_tokens=args.max_tokens, max_images=args.max_images, max_pixels=args.max_pixels)
    )
    script = [CYCLE[i % len(CYCLE)] for i in range(args.steps)]
    policy = WatchingPolicy(script, memory, args.every)
    effect = FrameChange()
    effect_times: list[float] = []

    def timed_effect(before: Frame, after: Frame, action: Action) -> float:
        t0 = time.perf_counter()
        change = effect(before, after, action)
        effect_times.append(time.perf_counter() - t0)
        return change

    t0 = time.perf_counter()
    episode = run_episode("bench", SimDriver(), policy, max_steps=args.steps, memory=memory, effect=timed_effect)
    loop_s = time.perf_counter() - t0
    print(
        f"episode: {len(episode.steps)} steps, end={episode.end.value if episode.end else None}, "
        f"{loop_s / max(1, len(episode.steps)) * 1000:.1f} ms/step in the loop; "
        f"effect check median {statistics.median(effect_times) * 1000:.2f} ms, max {max(effect_times) * 1000:.2f} ms"
    )
    print(f"budget: {args.max_tokens} visual tokens, {args.max_images} images, max_pixels {args.max_pixels}")

    if args.model == "tiny":
        from vlagent.policies.tiny import create_policy

        model_policy = create_policy(max_pixels=args.max_pixels)
        for sample in policy.samples:
            sample.model["memory"] = model_cost(model_policy, sample.observation)
            if sample.naive_tokens <= args.naive_cap:
                naive_obs = dataclasses.replace(sample.observation, images=sample.naive_frames)
                sample.model["naive"] = model_cost(model_policy, naive_obs)

    header = f"{'step':>5} | {'memory img':>10} {'tokens':>7} | {'naive img':>9} {'tokens':>7}"
    if args.model == "tiny":
        header += f" | {'mem ids':>7} {'mem prep':>8} {'mem fwd':>8} | {'naive ids':>9} {'nv prep':>8} {'nv fwd':>8}"
    print(header)
    for s in policy.samples:
        line = f"{s.step:>5} | {s.memory_images:>10} {s.memory_tokens:>7} | {s.naive_images:>9} {s.naive_tokens:>7}"
        if s.model:
            m = s.model["memory"]
            line += f" | {m['ids']:>7} {m['prep_s'] * 1000:>6.0f}ms {m['fwd_s'] * 1000:>6.0f}ms"
            n = s.model.get("naive")
            line += (
                f" | {n['ids']:>9} {n['prep_s'] * 1000:>6.0f}ms {n['fwd_s'] * 1000:>6.0f}ms"
                if n
                else f" | {'(over cap)':>9} {'-':>8} {'-':>8}"
            )
        print(line)
    assert all(s.memory_tokens <= args.max_tokens for s in policy.samples), "budget exceeded"


if __name__ == "__main__":
    main()
