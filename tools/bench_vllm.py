"""Steps per second of eval-like episodes through a vLLM server vs the in-process tiny model.

    python tools/bench_vllm.py [--episodes 8] [--max-steps 8] [--concurrency 1 4 8]

Each episode is the sim phone's ``wifi`` task with a step budget, run by ``run_episode``
with the same memory settings for every backend. "vllm cN" runs N episodes at a time
against one server (started by ``tools/vllm_cpu_server.py``, or ``--base-url``/``--model``
for a running one); "in-process" runs them one after another with the qwen2vl policy on
the same model directory. Both decode under the step schema with the same string caps,
greedily, so they produce answers of the same length. The numbers depend on the machine:
on a 2-core CPU the server and the episodes share the cores.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vlagent.agent import Episode, run_episode
from vlagent.drivers.sim import SimDriver
from vlagent.memory import MemoryConfig, TrajectoryMemory
from vlagent.policies.base import Policy
from vlagent.tasks import get_task

HERE = Path(__file__).resolve().parent
THOUGHT_CHARS = 40
STRING_CHARS = 24


def _server_tool() -> Any:
    spec = importlib.util.spec_from_file_location("vllm_cpu_server", HERE / "vllm_cpu_server.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@dataclass
class Row:
    backend: str
    concurrency: int
    episodes: int
    steps: int
    seconds: float
    invalid: int
    errors: int
    load: float
    """The machine's 1-minute load average after the run: other work skews the numbers."""

    @property
    def steps_per_s(self) -> float:
        return self.steps / self.seconds if self.seconds else 0.0


def _episode(policy: Policy, memory_config: MemoryConfig, max_steps: int) -> Episode:
    task = get_task("wifi")
    driver: Any = SimDriver(sleep=lambda seconds: None)  # "wait" actions must not measure sleeping
    driver.prepare(task.start)
    return run_episode(task.instruction, driver, policy, max_steps=max_steps, memory=TrajectoryMemory(memory_config))


def run(
    name: str, policy: Policy, memory_config: MemoryConfig, *, episodes: int, max_steps: int, concurrency: int
) -> Row:
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        done = list(pool.map(lambda _: _episode(policy, memory_config, max_steps), range(episodes)))
    seconds = time.perf_counter() - started
    return Row(
        name,
        concurrency,
        episodes,
        sum(len(ep.steps) for ep in done),
        seconds,
        sum(ep.invalid_outputs for ep in done),
        sum(ep.end == "error" for ep in done),
        os.getloadavg()[0],
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--episodes", type=int, default=8, help="episodes per configuration")
    parser.add_argument("--max-steps", type=int, default=8, help="step budget per episode")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--max-pixels", type=int, default=640 * 28 * 28, help="pixels per screenshot")
    parser.add_argument("--base-url", help="use a running server instead of starting one")
    parser.add_argument("--model", help="served model name (with --base-url)")
    parser.add_argument("--venv", type=Path, help="vLLM virtualenv (default: .venv-vllm)")
    parser.add_argument("--skip-in-process", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    from vlagent.policies.openai_compat import OpenAICompatPolicy
    from vlagent.policies.qwen2vl import create_policy as qwen_policy

    tool = _server_tool()
    venv = args.venv or tool.DEFAULT_VENV
    # Two images per prompt (the server's --limit-mm-per-prompt), the newest at max_pixels.
    memory_config = MemoryConfig(max_pixels=args.max_pixels, max_tokens=2 * args.max_pixels // 784, max_images=2)
    server = None
    rows: list[Row] = []
    try:
        if args.base_url:
            url, model = args.base_url, args.model or tool.SERVED_NAME
        else:
            tool.prepare(venv)
            t0 = time.perf_counter()
            server = tool.start(venv, tool.ServerOptions(max_images=2))
            print(f"vLLM server ready in {time.perf_counter() - t0:.0f} s at {server.url}")
            url, model = server.url, server.model
        for concurrency in args.concurrency:
            options = dict(max_images=2, max_output_tokens=300, concurrency=concurrency)
            options.update(max_thought_chars=THOUGHT_CHARS, max_string_chars=STRING_CHARS)
            with OpenAICompatPolicy(base_url=url, model=model, **options) as remote:
                run("vllm", remote, memory_config, episodes=1, max_steps=2, concurrency=1)  # warm-up
                episodes = max(args.episodes, concurrency)
                rows.append(
                    run(
                        "vllm",
                        remote,
                        memory_config,
                        episodes=episodes,
                        max_steps=args.max_steps,
                        concurrency=concurrency,
                    )
                )
    finally:
        if server is not None:
            server.stop()
    if not args.skip_in_process:
        local = qwen_policy(
            model=str(venv / tool.MODEL_DIR),
            device="cpu",
            max_pixels=args.max_pixels,
            max_new_tokens=128,
            max_thought_chars=THOUGHT_CHARS,
            max_string_chars=STRING_CHARS,
            family="qwen2vl",
        )
        run("in-process", local, memory_config, episodes=1, max_steps=2, concurrency=1)  # warm-up
        rows.append(
            run("in-process", local, memory_config, episodes=args.episodes, max_steps=args.max_steps, concurrency=1)
        )

    base = next((r.steps_per_s for r in rows if r.backend == "in-process"), None)
    print(
        f"\nwifi task on the sim phone, <= {args.max_steps} steps per episode, {args.max_pixels // 784} visual tokens"
    )
    head = ("backend", "conc.", "episodes", "steps", "seconds", "steps/s", "vs in-proc", "invalid", "load")
    print(f"{head[0]:<12}" + "".join(f"{h:>{w}}" for h, w in zip(head[1:], (6, 9, 7, 9, 9, 11, 8, 6), strict=True)))
    for r in rows:
        ratio = f"{r.steps_per_s / base:.2f}x" if base else "-"
        print(
            f"{r.backend:<12}{r.concurrency:>6}{r.episodes:>9}{r.steps:>7}{r.seconds:>9.1f}"
            f"{r.steps_per_s:>9.2f}{ratio:>11}{r.invalid:>8}{r.load:>6.1f}"
        )
    return 1 if any(r.errors for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
