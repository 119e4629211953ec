"""One observe-think-act step of the Qwen2-VL policy: the naive seed recipe against vlagent's fast path.

Same process, same screens (simulated 1080x2400 phone), same prompt text, at visual
budgets 256, 512, 1024 and 1280 tokens. Rows:

  naive        the seed recipe: full screenshot + ``max_pixels`` in the message,
               ``qwen_vl_utils.process_vision_info`` + processor + eager ``generate`` of a
               fixed ``--naive-tokens`` (random weights would not stop on their own)
  plain        vlagent before this work: processor + ``generate`` under the JSON grammar
  +inputs      plain, with pixel values and token ids built directly (no processor)
  +loop        vlagent's decode loop alone (vision apart, last-position logits)
  +prefix      the loop + the system turn's KV cache reused across the episode's steps
  +forced      the loop + grammar-forced tokens fast-forwarded, stop at the JSON's end
  +static      the loop + static KV cache (+ compiled decode where --compile allows)
  ours         every lever (the policy's defaults for the device)

Each lever is measured alone on top of the previous code, then all together. Columns:
vision, prefill (text, after vision), decode ms per output token, output tokens as
sampled+forced, forward passes in decode, total ms per step, speed-up over naive and over
plain, peak GPU memory. Then batch 1 vs batch 8 throughput of ``ours`` at the largest
budget (8 concurrent episodes, one ``decide_batch`` per round).

    python tools/bench_step.py                       # CPU, tiny random Qwen2-VL (a minute or two)
    python tools/bench_step.py --device cuda         # Qwen2-VL-2B architecture, random weights, bf16
    python tools/bench_step.py --device cuda --model PATH   # real weights
    python tools/bench_step.py --full-size --budgets 256 --steps 2 --no-levers --batch 2
                                                     # the 2B architecture on CPU (slow; float32)

Random weights make answers meaningless but the work per token the same. The prefix cache
is warm in the measured steps (the first step of an episode pays for it, as the warm-up
here does); compile time (first use of a shape) is printed apart.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import logging
import resource
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from vlagent.drivers.sim import SimDriver
from vlagent.memory import MemoryConfig, TrajectoryMemory
from vlagent.policies.base import Decision, Observation
from vlagent.policies.prompt import build_messages, get_family
from vlagent.policies.qwen2vl import Qwen2VLPolicy, QwenPolicyConfig

TASK = "open the settings and turn on wifi"
TOKEN_PIXELS = 28 * 28

#: name -> QwenPolicyConfig overrides on top of the plain path.
PLAIN = {"fast": False, "fast_inputs": False, "fast_forward": False, "prefix_cache": False, "cache": "dynamic"}
LEVERS: dict[str, dict[str, Any]] = {
    "plain": {},
    "+inputs": {"fast_inputs": True},
    "+loop": {"fast": True},
    "+prefix": {"fast": True, "prefix_cache": True},
    "+forced": {"fast": True, "fast_forward": True},
    "+static": {"fast": True, "cache": "static"},
}


@dataclasses.dataclass
class Result:
    name: str
    prep: list[float] = dataclasses.field(default_factory=list)
    vision: list[float] = dataclasses.field(default_factory=list)
    prefill: list[float] = dataclasses.field(default_factory=list)
    decode: list[float] = dataclasses.field(default_factory=list)
    total: list[float] = dataclasses.field(default_factory=list)
    sampled: list[float] = dataclasses.field(default_factory=list)
    forced: list[float] = dataclasses.field(default_factory=list)
    passes: list[float] = dataclasses.field(default_factory=list)
    peak_mb: float = 0.0
    compile_s: float = 0.0

    def med(self, values: list[float]) -> float:
        return statistics.median(values) if values else 0.0

    @property
    def tokens(self) -> float:
        return self.med(self.sampled) + self.med(self.forced)


class VisionTimer:
    """Forward hooks on the vision tower: its time per call, whoever calls it."""

    def __init__(self, model: Any, sync: Any) -> None:
        self.sync = sync
        self.start = 0.0
        self.seconds = 0.0
        visual = model.model.visual
        visual.register_forward_pre_hook(self._pre)
        visual.register_forward_hook(self._post)

    def _pre(self, *_: Any) -> None:
        self.sync()
        self.start = time.perf_counter()

    def _post(self, *_: Any) -> None:
        self.sync()
        self.seconds += time.perf_counter() - self.start

    def take(self) -> float:
        seconds, self.seconds = self.seconds, 0.0
        return seconds


class FirstToken:
    def __init__(self, sync: Any) -> None:
        self.sync = sync
        self.at: float | None = None

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        if self.at is None:
            self.sync()
            self.at = time.perf_counter()
        return scores


def screens(count: int, budget: int) -> list[Observation]:
    """Steps of one episode on simulated phones (different layouts), sized by memory for ``budget``."""
    memory = TrajectoryMemory(MemoryConfig(max_pixels=budget * TOKEN_PIXELS, max_tokens=4 * budget))
    result = []
    for i in range(count):
        driver = SimDriver(sleep=lambda _s: None, seed=i, width=1080, height=2400)
        frame = driver.screenshot()
        result.append(Observation(TASK, frame, driver.capabilities, step_index=i, images=memory.select(frame)))
    return result


def naive_step(
    policy: Qwen2VLPolicy, obs: Observation, budget: int, tokens: int, timer: VisionTimer, sync: Any
) -> dict:
    import torch
    from qwen_vl_utils import process_vision_info
    from transformers import LogitsProcessorList

    processor, model = policy.processor, policy.model
    sync()
    t0 = time.perf_counter()
    messages = build_messages(obs, get_family("qwen2vl"), with_thought=policy.config.with_thought)
    for part in messages[1]["content"]:
        if part["type"] == "image":
            part["image"] = obs.frame.image  # full size; process_vision_info resizes it
            part["max_pixels"] = budget * TOKEN_PIXELS
    text = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    images, _ = process_vision_info(messages)
    inputs = processor(text=[text], images=images, padding=True, return_tensors="pt").to(policy.device)
    inputs["pixel_values"] = inputs["pixel_values"].to(model.dtype)
    sync()
    t1 = time.perf_counter()
    first = FirstToken(sync)
    with torch.inference_mode():
        out = model.generate(
            **inputs,
            max_new_tokens=tokens,
            min_new_tokens=tokens,  # a fixed length: random weights never stop by themselves
            do_sample=False,
            logits_processor=LogitsProcessorList([first]),
        )
    sync()
    t2 = time.perf_counter()
    processor.batch_decode(out[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
    t3 = time.perf_counter()
    vision = timer.take()
    new = int(out.shape[1] - inputs["input_ids"].shape[1])
    at = first.at or t2
    return {
        "prep": t1 - t0,
        "vision": vision,
        "prefill": at - t1 - vision,
        "decode": (t2 - at) / max(1, new - 1),
        "total": t3 - t0,
        "sampled": new,
        "forced": 0,
        "passes": new - 1,
    }


def policy_step(policy: Qwen2VLPolicy, batch: list[Observation], timer: VisionTimer, sync: Any) -> dict:
    sync()
    t0 = time.perf_counter()
    results = policy.decide_batch(batch)
    sync()
    total = time.perf_counter() - t0
    vision = timer.take()
    decisions = [r for r in results if isinstance(r, Decision)]
    if len(decisions) != len(batch):
        errors = [r for r in results if not isinstance(r, Decision)]
        logging.warning("%d of %d rows failed: %s", len(errors), len(batch), errors[:1])
    usage = decisions[0].usage if decisions else {}
    fast = policy.config.fast
    out_tokens = max((d.usage["output_tokens"] for d in decisions), default=0.0)
    prefill = usage.get("prefill_s", 0.0) - (0.0 if fast else vision)
    return {
        "prep": usage.get("preprocess_s", 0.0),
        "vision": vision,
        "prefill": prefill,
        "decode": usage.get("decode_s", 0.0) / max(1.0, out_tokens),
        "total": total,
        "sampled": statistics.mean(d.usage["sampled_tokens"] for d in decisions) if decisions else 0,
        "forced": statistics.mean(d.usage["forced_tokens"] for d in decisions) if decisions else 0,
        "passes": usage["forward_passes"] - 1 if fast else out_tokens,  # decode passes (generate: one per token)
        "compile": usage.get("compile_s", 0.0),
    }


def load(args: argparse.Namespace, tmp: Path) -> tuple[Any, Any, str]:
    import torch
    from transformers import AutoProcessor, Qwen2VLForConditionalGeneration

    from vlagent.policies.tiny import build_tiny_qwen2vl, full_size_config

    if args.model:
        policy = Qwen2VLPolicy(QwenPolicyConfig(model=args.model, device=args.device))
        return policy.model, policy.processor, args.model
    path = build_tiny_qwen2vl(tmp / "tiny")
    processor = AutoProcessor.from_pretrained(str(path))
    on_gpu = args.device.startswith("cuda")
    if not (on_gpu or args.full_size):
        policy = Qwen2VLPolicy(QwenPolicyConfig(model=str(path), device=args.device))
        return policy.model, policy.processor, "tiny random Qwen2-VL"
    # The full-size architecture: the policy's own choices for the device (bf16 and
    # flash-attention 2 or sdpa on CUDA, float32 and sdpa on CPU).
    attn = "flash_attention_2" if on_gpu and importlib.util.find_spec("flash_attn") else "sdpa"
    dtype = torch.bfloat16 if on_gpu else torch.float32
    t0 = time.perf_counter()
    with torch.device(args.device):
        model = Qwen2VLForConditionalGeneration._from_config(
            full_size_config(path), dtype=dtype, attn_implementation=attn
        )
    model.eval()
    params = sum(p.numel() for p in model.parameters()) / 1e9
    logging.getLogger("bench").info("built the full-size model in %.1f s", time.perf_counter() - t0)
    return model, processor, f"Qwen2-VL-2B architecture ({params:.2f} B parameters), random weights, {dtype}, {attn}"


def main() -> None:
    parser = argparse.ArgumentParser(description="Naive recipe vs vlagent's step, per lever, per visual budget.")
    parser.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")
    parser.add_argument("--model", help="model directory (real weights); default: random weights")
    parser.add_argument(
        "--full-size",
        action="store_true",
        help="Qwen2-VL-2B's architecture with random weights on any device (the default on CUDA; CPU: tiny model)",
    )
    parser.add_argument("--budgets", default="256,512,1024,1280", help="visual tokens per image")
    parser.add_argument("--steps", type=int, default=5, help="measured steps per row (after one warm-up)")
    parser.add_argument("--naive-tokens", type=int, default=40, help="fixed answer length of the naive recipe")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--compile", choices=("auto", "off", "default", "reduce-overhead"), default="auto")
    parser.add_argument("--no-levers", action="store_true", help="only naive, plain and ours")
    parser.add_argument("--thought", action="store_true", help="ask for a thought before the action")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    import torch

    on_gpu = args.device.startswith("cuda")

    def sync() -> None:
        if on_gpu:
            torch.cuda.synchronize()

    with tempfile.TemporaryDirectory() as tmp:
        model, processor, described = load(args, Path(tmp))
        timer = VisionTimer(model, sync)
        base = {
            "model": args.model or str(Path(tmp) / "tiny"),
            "device": args.device,
            "with_thought": args.thought,
            "family": "qwen2vl",
            "max_string_chars": 12,  # random weights fill strings to their cap
            "max_thought_chars": 16,
            "compile": args.compile,
            "time_parts": True,
        }
        rows = {"plain": LEVERS["plain"]} if args.no_levers else LEVERS
        table: list[tuple[int, list[Result]]] = []
        for budget in [int(b) for b in args.budgets.split(",")]:
            obs = screens(args.steps + 1, budget)
            naive_policy = _policy(model, processor, base, PLAIN, budget)
            names = ["naive", *rows, "ours"]
            policies = {name: _policy(model, processor, base, {**PLAIN, **rows[name]}, budget) for name in rows}
            policies["ours"] = _policy(model, processor, base, {}, budget)
            results = {name: Result(name) for name in names}
            # Round robin: every row runs on step i before any runs on step i+1, so a noisy
            # neighbour on the machine hits all rows alike; step 0 is the warm-up.
            for i, o in enumerate(obs):
                for name in names:
                    if on_gpu:
                        torch.cuda.reset_peak_memory_stats()
                    if name == "naive":
                        step = naive_step(naive_policy, o, budget, args.naive_tokens, timer, sync)
                    else:
                        step = policy_step(policies[name], [o], timer, sync)
                    result = results[name]
                    result.compile_s += step.get("compile", 0.0)
                    if on_gpu:
                        result.peak_mb = max(result.peak_mb, torch.cuda.max_memory_allocated() / 2**20)
                    if i:
                        _add(result, step)
            table.append((budget, list(results.values())))
            _print_budget(budget, list(results.values()))

        # Batch 1 vs batch N throughput at the largest budget: N concurrent episodes, best of 2 rounds.
        budget = table[-1][0]
        episodes = screens(args.batch * 2, budget)
        throughput: dict[str, tuple[float, float]] = {}
        for name, overrides in (("plain", PLAIN), ("ours", {})):
            policy = _policy(model, processor, base, overrides, budget)
            policy_step(policy, episodes[: args.batch], timer, sync)  # warm-up (shapes, prefix)
            single = batched = 0.0
            for _ in range(2):
                t0 = time.perf_counter()
                for o in episodes[args.batch :]:
                    policy_step(policy, [o], timer, sync)
                single = max(single, args.batch / (time.perf_counter() - t0))
                t0 = time.perf_counter()
                policy_step(policy, episodes[args.batch :], timer, sync)
                batched = max(batched, args.batch / (time.perf_counter() - t0))
            throughput[name] = (single, batched)

    print(f"\nmodel: {described}; device: {_device_name(args.device)}; torch {torch.__version__}")
    for name, (single, batched) in throughput.items():
        print(f"throughput {name:<6} (budget {budget}): batch 1 {single:.2f} steps/s, batch {args.batch} ", end="")
        print(f"{batched:.2f} steps/s ({batched / single:.1f}x)")
    if not on_gpu:
        print(f"peak RSS of the process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


def _policy(model: Any, processor: Any, base: dict[str, Any], overrides: dict[str, Any], budget: int) -> Qwen2VLPolicy:
    config = QwenPolicyConfig(**{**base, **overrides, "max_pixels": budget * TOKEN_PIXELS})
    return Qwen2VLPolicy(config, model=model, processor=processor)


def _add(result: Result, step: dict) -> None:
    result.prep.append(step["prep"])
    result.vision.append(step["vision"])
    result.prefill.append(step["prefill"])
    result.decode.append(step["decode"])
    result.total.append(step["total"])
    result.sampled.append(step["sampled"])
    result.forced.append(step["forced"])
    result.passes.append(step["passes"])


def _device_name(device: str) -> str:
    import platform

    import torch

    if device.startswith("cuda"):
        return torch.cuda.get_device_name(device)
    return f"CPU {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"


def _print_budget(budget: int, results: list[Result]) -> None:
    naive, plain = results[0], next((r for r in results if r.name == "plain"), None)
    print(f"\nvisual budget {budget} tokens (1080x2400 screen)")
    print(
        f"{'':<9}{'prep':>7}{'vision':>8}{'prefill':>9}{'ms/tok':>8}{'tokens s+f':>12}{'passes':>7}{'total ms':>10}"
        f"{'x naive':>8}{'x plain':>8}{'peak MB':>9}{'compile s':>10}"
    )
    for r in results:
        total = r.med(r.total) * 1000
        peak = f"{r.peak_mb:.0f}" if r.peak_mb else "-"
        vs_plain = f"{plain.med(plain.total) / r.med(r.total):>7.2f}x" if plain else f"{'-':>8}"
        print(
            f"{r.name:<9}{r.med(r.prep) * 1000:>7.1f}{r.med(r.vision) * 1000:>8.1f}"
            f"{r.med(r.prefill) * 1000:>9.1f}{r.med(r.decode) * 1000:>8.2f}"
            f"{f'{r.med(r.sampled):.0f}+{r.med(r.forced):.0f}':>12}{r.med(r.passes):>7.0f}{total:>10.1f}"
            f"{naive.med(naive.total) / r.med(r.total):>7.2f}x{vs_plain}{peak:>9}{r.compile_s:>10.1f}"
        )


if __name__ == "__main__":
    main()
