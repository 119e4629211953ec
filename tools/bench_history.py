"""What history costs per step: four earlier screens against one, with and without reuse.

Runs the Qwen2-VL policy (tiny random model by default) on simulated phones, one lane per
schedule, in lockstep: every lane plays the same scripted actions on its own phone (same
seed), so all lanes see the same screens, and at each step every lane's model call runs
back to back (in a rotating order), so a busy machine slows all lanes alike. Lanes:

  single     --max-images 1: the current screen alone (the reference)
  shrink     four images, each older screen half the pixels of the next newer one (the
             schedule before stable sizes), every image encoded at every step
  stable     four images at stable sizes by age, the oldest dropped first, every image
             encoded and the whole prompt prefilled at every step
  reuse      stable sizes with the previous screen at half size (``half_steps=1``), the
             smallest screens dropped in blocks, the vision-embedding cache, and the keys and
             values of the prompt's unchanged start taken from the step before
  quarter    memory's and the policy's defaults: reuse with every earlier screen at the
             smallest size (``half_steps=0``): each screen is encoded twice in its life, at
             full size and at a quarter, and each step prefills one new small screen and the
             current one
  ahead      quarter, and after each answer the next prompt's start is computed ahead (the
             policy's ``prefetch``, which the agent loop runs while the device acts): the new
             small screen is encoded and the instructions and earlier screens prefilled, so the
             next step computes its own screen and what follows. Its "ahead ms" is that work,
             timed apart; "x work" counts it in
  video      quarter with history as video (``--history video``): the earlier screens in
             pairs at the smallest size, each pair a two-frame video costing one image
  video+2    video with two more screens per prompt (one more pair)

The model's answers are not acted on (random weights); the script drives the phone, so
prompts differ between lanes only in their images. Per lane: screens and visual tokens per
prompt, visual tokens the vision tower encoded per step, prompt tokens prefilled per step
(not taken from a cache), median model ms per step (steps
after the first ``--warmup``, once memory holds four screens) with its vision / prefill
parts, the ratio to ``single`` at the same step (median over steps: "x single") and the
ratio of the medians ("x median"; on a busy machine the two differ). ``--repeats``
runs the whole episode again with fresh lanes and reports the median of each figure.

    python tools/bench_history.py [--steps 30] [--repeats 3] [--device cpu|cuda] [--model PATH] [--lanes a,b]
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
from dataclasses import dataclass, field

from vlagent.actions import Action, Key, OpenApp, Scroll
from vlagent.coords import IMAGE_FACTOR
from vlagent.drivers.sim import SimDriver
from vlagent.memory import MemoryConfig, TrajectoryMemory
from vlagent.policies.base import HistoryEntry, Observation
from vlagent.policies.qwen2vl import Qwen2VLPolicy, QwenPolicyConfig

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

LANES = ("single", "shrink", "stable", "reuse", "quarter", "ahead", "video", "video+2")


@dataclass
class Lane:
    name: str
    policy: Qwen2VLPolicy
    memory: TrajectoryMemory
    driver: SimDriver
    model_ms: list[float] = field(default_factory=list)
    ahead_ms: list[float] = field(default_factory=list)
    """Per step, the time of the work done ahead for the next step (``ahead`` lane; else 0)."""
    usage: list[dict[str, float]] = field(default_factory=list)
    screens: list[tuple[int | None, ...]] = field(default_factory=list)
    """Per step, the steps of the screens the prompt showed (None: the current one)."""


def lanes(base: Qwen2VLPolicy, args: argparse.Namespace) -> list[Lane]:
    made = []
    for name in args.lanes:
        video = name.startswith("video")
        config = MemoryConfig(
            max_tokens=args.max_tokens,
            max_pixels=args.max_pixels,
            max_images=1 if name == "single" else args.max_images + (2 if name == "video+2" else 0),
            sizes="shrink" if name == "shrink" else "stable",
            half_steps=0 if name in ("quarter", "ahead") or video else 1,
            drop="oldest" if name == "stable" else "blocks",
            history="video" if video else "images",
        )
        policy_config = dataclasses.replace(
            base.config,
            history_reuse=name in ("reuse", "quarter", "ahead") or video,
            history="video" if video else "images",
        )
        policy = Qwen2VLPolicy(policy_config, model=base.model, processor=base.processor)
        made.append(Lane(name, policy, TrajectoryMemory(config), SimDriver(seed=args.seed)))
    return made


def episode(base: Qwen2VLPolicy, args: argparse.Namespace) -> list[Lane]:
    run = lanes(base, args)
    for step in range(args.steps):
        action = CYCLE[step % len(CYCLE)]
        order = run[step % len(run) :] + run[: step % len(run)]
        for lane in order:
            frame = lane.driver.screenshot()
            obs = Observation(
                "open the settings and turn on wifi",
                frame,
                lane.driver.capabilities,
                step,
                lane.memory.history,
                choice=lane.memory.lazy_choice(frame),
            )
            t0 = time.perf_counter()
            decision = lane.policy.decide(obs)
            lane.model_ms.append((time.perf_counter() - t0) * 1000)
            lane.usage.append(dict(decision.usage))
            selection = obs.choice.selection if obs.choice is not None else None
            lane.screens.append(tuple(i.step for i in selection.images) if selection else (None,))
            entry = HistoryEntry(step, action)
            t0 = time.perf_counter()
            if lane.name == "ahead":  # what the agent loop does while the driver acts
                upcoming = lane.memory.preview(entry, frame)
                choice = upcoming.lazy_choice(frame, stand_in=True)
                lane.policy.prefetch(
                    dataclasses.replace(obs, step_index=step + 1, history=upcoming.history, choice=choice)
                )
            lane.ahead_ms.append((time.perf_counter() - t0) * 1000)
            lane.driver.execute(action)
            lane.memory.add(entry, frame)
    return run


def figures(run: list[Lane], warmup: int) -> dict[str, dict[str, float]]:
    single = run[0]
    out: dict[str, dict[str, float]] = {}
    for lane in run:
        steps = range(warmup, len(lane.model_ms))

        def med(key: str, lane: Lane = lane, steps: range = steps) -> float:
            return statistics.median(lane.usage[i].get(key, 0.0) for i in steps)

        out[lane.name] = {
            "screens": statistics.median(len(lane.screens[i]) for i in steps),
            "visual": med("visual_tokens"),
            "encoded": med("encoded_visual_tokens"),
            "prefilled": statistics.median(
                lane.usage[i].get("prompt_tokens", 0.0) - lane.usage[i].get("prefix_tokens", 0.0) for i in steps
            ),
            "model_ms": statistics.median(lane.model_ms[i] for i in steps),
            "vision_ms": med("vision_s") * 1000,
            "prefill_ms": med("prefill_s") * 1000,
            "pre_ms": med("preprocess_s") * 1000,
            "decode_ms": med("decode_s") * 1000,
            "out": med("output_tokens"),
            "ahead_ms": statistics.median(lane.ahead_ms[i - 1] for i in steps),
            "ratio": statistics.median(lane.model_ms[i] / single.model_ms[i] for i in steps),
            "work": statistics.median((lane.model_ms[i] + lane.ahead_ms[i - 1]) / single.model_ms[i] for i in steps),
            "ratio_of_medians": statistics.median(lane.model_ms[i] for i in steps)
            / statistics.median(single.model_ms[i] for i in steps),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=4, help="steps left out of the medians (memory fills up)")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--max-images", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=2560)
    parser.add_argument("--max-pixels", type=int, default=1280 * IMAGE_FACTOR * IMAGE_FACTOR)
    parser.add_argument("--device", default="cpu", help="cpu | cuda")
    parser.add_argument("--model", default=None, help="weights directory (default: the tiny random model)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lanes", default=",".join(LANES), help=f"comma-separated, from {', '.join(LANES)}")
    args = parser.parse_args()
    if args.steps <= args.warmup:
        parser.error("--steps must be larger than --warmup")
    args.lanes = [name.strip() for name in args.lanes.split(",") if name.strip()]
    if not set(args.lanes) <= set(LANES) or "single" not in args.lanes:
        parser.error(f"--lanes must name lanes of {', '.join(LANES)}, single included (the reference)")
    args.lanes = sorted(args.lanes, key=LANES.index)  # single first

    if args.model is None:
        from vlagent.policies.tiny import create_policy

        base = create_policy(device=args.device, max_pixels=args.max_pixels)
    else:
        base = Qwen2VLPolicy(QwenPolicyConfig(model=args.model, device=args.device, max_pixels=args.max_pixels))
    device = str(base.device)
    if base.device.type == "cuda":
        import torch

        device = torch.cuda.get_device_name(base.device)
    results = [figures(episode(base, args), args.warmup) for _ in range(args.repeats)]

    print(
        f"history bench: {args.steps} steps x {args.repeats} repeat(s), model {args.model or 'tiny'} on {device}, "
        f"budget {args.max_tokens} visual tokens, max {args.max_images} images; medians over steps "
        f"{args.warmup + 1}-{args.steps}"
    )
    columns = [
        ("visual tok", "visual", "{:>11.0f}"),
        ("encoded tok", "encoded", "{:>11.0f}"),
        ("prefill tok", "prefilled", "{:>11.0f}"),
        ("model ms", "model_ms", "{:>11.0f}"),
        ("vision", "vision_ms", "{:>11.0f}"),
        ("prefill", "prefill_ms", "{:>11.0f}"),
        ("prep", "pre_ms", "{:>11.0f}"),
        ("decode", "decode_ms", "{:>11.0f}"),
        ("out tok", "out", "{:>11.0f}"),
        ("ahead ms", "ahead_ms", "{:>11.0f}"),
        ("x single", "ratio", "{:>10.2f}x"),
        ("x work", "work", "{:>10.2f}x"),
        ("x median", "ratio_of_medians", "{:>10.2f}x"),
        ("screens", "screens", "{:>11.0f}"),
    ]
    print(f"{'lane':<8} " + " ".join(f"{title:>11}" for title, _, _ in columns))
    for name in args.lanes:
        row = {key: statistics.median(r[name][key] for r in results) for key in results[0][name]}
        print(f"{name:<8} " + " ".join(form.format(row[key]) for _, key, form in columns))


if __name__ == "__main__":
    main()
