"""What working ahead saves in the agent loop: the same episodes with the policy's work ahead off and on.

Runs ``run_episode`` on the simulated phone with the Qwen2-VL policy (tiny random model by
default), memory's default schedule and the loop's default settling (the screen must stay still
for 0.3 s after each action), once with ``work_ahead=False`` and once with it on, ``--repeats``
times in alternation. The policy's answers are acted on, and with the same weights and the same
phone both runs play the same steps. With ``--jobs N``, N episodes run at once on their own
phones (seeds ``--seed`` ..), through a ``BatchingPolicy`` as ``vlagent eval -j N`` runs them:
their decisions and their work ahead go to the model in batches. Per mode: median model ms per
step (what a step waits for the model), median execute + settle ms, and wall seconds per round
of episodes; then the ratios, on over off.

    python tools/bench_ahead.py [--steps 16] [--repeats 2] [--jobs 1] [--device cpu|cuda] [--model PATH]
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import threading
import time

from vlagent.agent import Episode, run_episode
from vlagent.coords import IMAGE_FACTOR
from vlagent.drivers.sim import SimDriver
from vlagent.effects import Settle
from vlagent.memory import MemoryConfig, TrajectoryMemory
from vlagent.policies.base import Policy
from vlagent.policies.batching import BatchingPolicy
from vlagent.policies.qwen2vl import Qwen2VLPolicy, QwenPolicyConfig

TASK = "open the settings and turn on wifi"


def episodes(base: Qwen2VLPolicy, ahead: bool, args: argparse.Namespace) -> tuple[list[float], list[float], float]:
    """``--jobs`` episodes at once (one without a batcher); model and execute ms of their steps, wall s."""
    config = dataclasses.replace(base.config, work_ahead=ahead)
    inner = Qwen2VLPolicy(config, model=base.model, processor=base.processor)
    policy: Policy = BatchingPolicy(inner, max_batch=args.jobs) if args.jobs > 1 else inner
    done: list[Episode] = []

    def one(seed: int) -> None:
        memory = TrajectoryMemory(MemoryConfig(max_pixels=args.max_pixels))
        with SimDriver(seed=seed) as sim:
            done.append(run_episode(TASK, sim, policy, max_steps=args.steps, memory=memory, settle=Settle()))

    t0 = time.perf_counter()
    threads = [threading.Thread(target=one, args=(args.seed + n,)) for n in range(args.jobs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - t0
    steps = [step for ran in done for step in ran.steps[args.warmup :]]
    return [s.model_s * 1000 for s in steps], [s.execute_s * 1000 for s in steps], wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--warmup", type=int, default=4, help="steps left out of the medians (memory fills up)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--jobs", type=int, default=1, help="episodes at once, batched (as eval -j)")
    parser.add_argument("--max-pixels", type=int, default=1280 * IMAGE_FACTOR * IMAGE_FACTOR)
    parser.add_argument("--device", default="cpu", help="cpu | cuda")
    parser.add_argument("--model", default=None, help="weights directory (default: the tiny random model)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.steps <= args.warmup:
        parser.error("--steps must be larger than --warmup")
    if args.model is None:
        from vlagent.policies.tiny import create_policy

        base = create_policy(device=args.device, max_pixels=args.max_pixels)
    else:
        base = Qwen2VLPolicy(QwenPolicyConfig(model=args.model, device=args.device, max_pixels=args.max_pixels))
    model: dict[bool, list[float]] = {False: [], True: []}
    acting: dict[bool, list[float]] = {False: [], True: []}
    walls: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(args.repeats):
        for ahead in (False, True):
            model_ms, execute_ms, wall = episodes(base, ahead, args)
            model[ahead] += model_ms
            acting[ahead] += execute_ms
            walls[ahead].append(wall)
    print(
        f"work ahead: {args.jobs} episode(s) of {args.steps} steps x {args.repeats} repeat(s) per mode, "
        f"model {args.model or 'tiny'} on "
        f"{base.device}; medians over steps {args.warmup + 1}-{args.steps}"
    )
    print(f"{'work ahead':<11} {'model ms':>9} {'act+settle':>11} {'wall s':>8}")
    row = {}
    for ahead in (False, True):
        row[ahead] = (
            statistics.median(model[ahead]),
            statistics.median(acting[ahead]),
            statistics.median(walls[ahead]),
        )
        print(f"{'on' if ahead else 'off':<11} {row[ahead][0]:>9.0f} {row[ahead][1]:>11.0f} {row[ahead][2]:>8.1f}")
    print(
        f"{'on / off':<11} {row[True][0] / row[False][0]:>8.2f}x {row[True][1] / row[False][1]:>10.2f}x "
        f"{row[True][2] / row[False][2]:>7.2f}x"
    )


if __name__ == "__main__":
    main()
