"""Per-step time of the Qwen2-VL policy, split into its parts, against the naive seed recipe.

Both run in the same process on the same screens (simulated phone screenshots) and the
same prompt text:

  naive     the seed recipe: full-size screenshot with ``max_pixels`` in the message,
            ``qwen_vl_utils.process_vision_info`` + processor + free ``generate`` +
            lenient parse of the text
  vlagent   Qwen2VLPolicy.decide: memory-sized image (resized once), processor, generate
            under the JSON grammar (stops at the closing brace), parse
  batch N   Qwen2VLPolicy.decide_batch with N observations per call (time per step)

Columns: preprocess (image sizing, chat template, processor), vision+prefill (until the
first token's logits), decode (the remaining tokens), parse; tokens generated; decode time
per token; valid (the answer parsed into an action inside the screen). With random
weights the naive recipe writes ``--max-new-tokens`` of noise while the grammar stops at
the closing brace, so compare ms/token as well as totals.

    python tools/bench_policy.py                      # tiny random model on CPU
    python tools/bench_policy.py --model PATH --device cuda
    python tools/bench_policy.py --random-full-size --device cuda   # Qwen2-VL-2B architecture, random weights

Random weights make the answers meaningless but the work per token the same as real ones.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vlagent.actions import action_points
from vlagent.coords import IMAGE_FACTOR, codec_by_name, decode_action
from vlagent.drivers.sim import SimDriver
from vlagent.errors import InvalidModelOutput
from vlagent.memory import MemoryConfig, TrajectoryMemory
from vlagent.parsing import parse_step
from vlagent.policies.base import Decision, Observation
from vlagent.policies.prompt import build_messages, get_family
from vlagent.policies.qwen2vl import Qwen2VLPolicy, QwenPolicyConfig

PARTS = ("preprocess", "prefill", "decode", "parse")


@dataclass
class Row:
    name: str
    times: dict[str, list[float]] = field(default_factory=lambda: {p: [] for p in PARTS})
    tokens: list[int] = field(default_factory=list)
    visual: list[int] = field(default_factory=list)
    valid: int = 0
    steps: int = 0

    def add(self, parts: dict[str, float], tokens: int, visual: int, valid: int, steps: int = 1) -> None:
        """One call that made ``steps`` steps (``valid`` of them valid) in ``parts`` seconds."""
        for part in PARTS:
            self.times[part].append(parts[part] / steps)
        self.tokens.append(tokens)
        self.visual.append(visual)
        self.valid += valid
        self.steps += steps

    def ms(self, part: str) -> float:
        return statistics.median(self.times[part]) * 1000

    @property
    def total_ms(self) -> float:
        return sum(self.ms(p) for p in PARTS)


class FirstToken:
    """Logits processor recording when the first token's logits exist (vision + prefill done)."""

    def __init__(self) -> None:
        self.at: float | None = None

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        if self.at is None:
            self.at = time.perf_counter()
        return scores


def observations(count: int, screen: tuple[int, int]) -> list[Observation]:
    """Full-size screens of simulated phones with different layouts."""
    result = []
    for i in range(count):
        driver = SimDriver(sleep=lambda _s: None, seed=i, width=screen[0], height=screen[1])
        frame = driver.screenshot()
        obs = Observation("open the settings and turn on wifi", frame, driver.capabilities, step_index=0)
        result.append(obs)
    return result


def naive_step(
    policy: Qwen2VLPolicy, obs: Observation, max_pixels: int, max_new_tokens: int
) -> tuple[dict[str, float], int, int, int]:
    """The seed recipe, with vlagent's prompt text so both sides read the same words."""
    import torch
    from qwen_vl_utils import process_vision_info
    from transformers import LogitsProcessorList

    processor, model = policy.processor, policy.model
    family = get_family("qwen2vl")
    t0 = time.perf_counter()
    messages = build_messages(obs, family, with_thought=policy.config.with_thought)
    for part in messages[1]["content"]:
        if part["type"] == "image":
            part["image"] = obs.frame.image  # full size; process_vision_info resizes it
            part["max_pixels"] = max_pixels
    text = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    image_inputs, _ = process_vision_info(messages)
    inputs = processor(text=[text], images=image_inputs, padding=True, return_tensors="pt").to(policy.device)
    if "pixel_values" in inputs:
        inputs["pixel_values"] = inputs["pixel_values"].to(model.dtype)
    t1 = time.perf_counter()
    timer = FirstToken()
    with torch.inference_mode():
        out = model.generate(
            **inputs, max_new_tokens=max_new_tokens, do_sample=False, logits_processor=LogitsProcessorList([timer])
        )
    t2 = time.perf_counter()
    new = out[0, inputs["input_ids"].shape[1] :]
    answer = processor.batch_decode([new], skip_special_tokens=True)[0]
    valid = 1
    try:
        step = parse_step(answer, capabilities=obs.capabilities)
        decode_action(step.action, codec_by_name("norm1000"), obs.frame.width, obs.frame.height)
    except InvalidModelOutput:
        valid = 0
    t3 = time.perf_counter()
    first = timer.at or t2
    parts = {"preprocess": t1 - t0, "prefill": first - t1, "decode": t2 - first, "parse": t3 - t2}
    image_pad = processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    return parts, int(new.numel()), int((inputs["input_ids"] == image_pad).sum()), valid


def vlagent_steps(
    policy: Qwen2VLPolicy, batch: list[Observation], memory: TrajectoryMemory
) -> tuple[dict[str, float], int, int, int]:
    t0 = time.perf_counter()
    sized = [Observation(o.task, o.frame, o.capabilities, images=memory.select(o.frame)) for o in batch]
    sizing = time.perf_counter() - t0
    results = policy.decide_batch(sized)
    decisions = [r for r in results if isinstance(r, Decision)]
    usage = decisions[0].usage if decisions else {}
    parts = {
        "preprocess": sizing + usage.get("preprocess_s", 0.0),
        "prefill": usage.get("prefill_s", 0.0),
        "decode": usage.get("decode_s", 0.0),
        "parse": sum(d.usage.get("parse_s", 0.0) for d in decisions),
    }
    valid = sum(
        1
        for o, d in zip(sized, results, strict=True)
        if isinstance(d, Decision)
        and all(0 <= x < o.frame.width and 0 <= y < o.frame.height for x, y in action_points(d.action))
    )
    tokens = int(max((d.usage.get("output_tokens", 0) for d in decisions), default=0))
    return parts, tokens, int(usage.get("visual_tokens", 0)), valid


def load(args: argparse.Namespace, tmp: Path) -> Qwen2VLPolicy:
    from vlagent.policies.tiny import build_tiny_qwen2vl, full_size_config

    options: dict[str, Any] = {
        "device": args.device,
        "max_pixels": args.max_pixels,
        "max_new_tokens": args.max_new_tokens,
        "structured": not args.no_constrain,
        "with_thought": args.thought,
        "family": "qwen2vl",
    }
    if args.model:
        return Qwen2VLPolicy(QwenPolicyConfig(model=args.model, **options))
    path = build_tiny_qwen2vl(tmp / "tiny")
    if not args.random_full_size:
        # The random model fills strings to their cap: keep answers inside max_new_tokens.
        return Qwen2VLPolicy(QwenPolicyConfig(model=str(path), max_string_chars=12, max_thought_chars=16, **options))
    import torch
    from transformers import AutoProcessor, Qwen2VLForConditionalGeneration

    device = "cuda" if args.device in ("auto", "cuda") and torch.cuda.is_available() else args.device
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    config = full_size_config(path)
    with torch.device(device):
        model = Qwen2VLForConditionalGeneration._from_config(config, dtype=dtype, attn_implementation="sdpa")
    model.eval()
    processor = AutoProcessor.from_pretrained(str(path))
    config_options = {**options, "device": device}
    return Qwen2VLPolicy(
        QwenPolicyConfig(model=str(path), max_string_chars=12, max_thought_chars=16, **config_options),
        model=model,
        processor=processor,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description="Per-step time of the Qwen2-VL policy vs the naive recipe.")
    parser.add_argument("--model", help="model directory or hub id (default: the tiny random model)")
    parser.add_argument("--random-full-size", action="store_true", help="Qwen2-VL-2B architecture, random weights")
    parser.add_argument("--device", default="cpu", help="cpu | cuda | auto")
    parser.add_argument("--steps", type=int, default=8, help="steps measured per row (after one warm-up)")
    parser.add_argument("--batch", type=int, default=8, help="observations per decide_batch call")
    parser.add_argument("--max-pixels", type=int, default=1280 * IMAGE_FACTOR * IMAGE_FACTOR)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--screen", default="1080x2400", help="simulated screen WxH")
    parser.add_argument("--thought", action="store_true", help="ask for a thought before the action")
    parser.add_argument("--no-constrain", action="store_true", help="free text for vlagent too")
    args = parser.parse_args()
    screen = tuple(int(v) for v in args.screen.split("x"))
    assert len(screen) == 2

    with tempfile.TemporaryDirectory() as tmp:
        policy = load(args, Path(tmp))
        memory = TrajectoryMemory(MemoryConfig(max_pixels=args.max_pixels, max_tokens=4 * 16384))
        obs = observations(max(args.steps, args.batch) + 1, (screen[0], screen[1]))
        naive, single, batched = Row("naive recipe"), Row("vlagent"), Row(f"vlagent batch {args.batch}")
        # Warm-up (grammar compile, allocator, kernels) outside the measurements.
        naive_step(policy, obs[0], args.max_pixels, args.max_new_tokens)
        vlagent_steps(policy, obs[:1], memory)
        for o in obs[1 : args.steps + 1]:
            naive.add(*naive_step(policy, o, args.max_pixels, args.max_new_tokens))
            single.add(*vlagent_steps(policy, [o], memory))
        for start in range(1, args.steps + 1, args.batch):
            chunk = obs[start : start + args.batch]
            if len(chunk) < args.batch:
                break
            batched.add(*vlagent_steps(policy, chunk, memory), steps=len(chunk))

    device = str(policy.device)
    print(f"model: {args.model or ('random Qwen2-VL-2B architecture' if args.random_full_size else 'tiny random')}")
    print(f"device: {device}, screen {screen[0]}x{screen[1]}, max_pixels {args.max_pixels}, ", end="")
    print(f"constrained: {not args.no_constrain}, thought: {args.thought}")
    header = f"{'':<18}{'preproc ms':>11}{'vis+prefill':>12}{'decode ms':>10}{'parse ms':>9}"
    header += f"{'total ms':>10}{'visual':>7}{'tokens':>8}{'ms/token':>9}{'valid':>8}{'speed-up':>9}"
    print(header)
    for row in (naive, single, batched):
        if not row.steps:
            continue
        print(
            f"{row.name:<18}{row.ms('preprocess'):>11.1f}{row.ms('prefill'):>12.1f}{row.ms('decode'):>10.1f}"
            f"{row.ms('parse'):>9.2f}{row.total_ms:>10.1f}{statistics.median(row.visual):>7.0f}"
            f"{statistics.median(row.tokens):>8.0f}"
            f"{row.ms('decode') / max(1.0, statistics.median(row.tokens) - 1):>9.1f}"
            f"{row.valid:>4}/{row.steps:<3}{naive.total_ms / row.total_ms:>8.2f}x"
        )


if __name__ == "__main__":
    main()
