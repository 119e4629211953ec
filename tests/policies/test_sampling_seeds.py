"""Sampling seeds: a model decoding with a temperature repeats its draws on the same seed.

The tiny random Qwen2-VL samples almost uniformly at temperature 1, so two unseeded draws
nearly always differ, while two draws on one seed must be identical, on the plain path
(transformers' ``generate``) and on the fast path (one generator per row).
"""

from __future__ import annotations

import dataclasses

import pytest
from PIL import Image
from policy_helpers import PolicyFactory

from vlagent.drivers.base import PHONE_CAPABILITIES
from vlagent.frames import Frame
from vlagent.policies.base import Decision, Observation, step_seed

pytest.importorskip("transformers", reason="needs the qwen extra (transformers)")
pytest.importorskip("llguidance", reason="needs the qwen extra (llguidance)")

from vlagent.policies.qwen2vl import Qwen2VLPolicy

pytestmark = pytest.mark.model


def _policy(tiny_policy: PolicyFactory, *, fast: bool) -> Qwen2VLPolicy:
    """A policy sampling at temperature 1 with a thought, on the plain or the fast path."""
    return tiny_policy(
        max_pixels=64 * 28 * 28,
        with_thought=True,
        max_thought_chars=24,
        temperature=1.0,
        fast=fast,
        fast_inputs=fast,
    )


def _observation(seed: int | None, step: int = 0, color: str = "white") -> Observation:
    frame = Frame.of(Image.new("RGB", (360, 800), color))
    return Observation("turn on wifi", frame, PHONE_CAPABILITIES, step, seed=seed)


def _answer(decision: Decision | Exception) -> str:
    return decision.raw if isinstance(decision, Decision) else f"error: {decision}"


def test_step_seeds_are_stable_distinct_and_31_bit() -> None:
    seeds = {step_seed(s, i) for s in range(50) for i in range(50)}
    assert len(seeds) == 2500
    assert all(0 <= s < 2**31 for s in seeds)
    assert step_seed(7, 3) == step_seed(7, 3)
    assert _observation(None).sampling_seed is None
    assert _observation(7, step=3).sampling_seed == step_seed(7, 3)


@pytest.mark.parametrize("fast", [False, True], ids=["plain", "fast"])
def test_one_seed_repeats_its_draws_and_other_seeds_differ(tiny_policy: PolicyFactory, fast: bool) -> None:
    policy = _policy(tiny_policy, fast=fast)
    first = [_answer(policy.decide_batch([_observation(11, step)])[0]) for step in range(3)]
    again = [_answer(policy.decide_batch([_observation(11, step)])[0]) for step in range(3)]
    assert first == again
    others = {_answer(policy.decide_batch([_observation(seed)])[0]) for seed in range(12, 18)}
    assert len(others | {first[0]}) > 1, "six other seeds all drew the same answer"


@pytest.mark.parametrize("fast", [False, True], ids=["plain", "fast"])
def test_a_seeded_batch_repeats(tiny_policy: PolicyFactory, fast: bool) -> None:
    policy = _policy(tiny_policy, fast=fast)
    batch = [_observation(5, color="white"), _observation(6, color="black"), _observation(7, color="gray")]
    first = [_answer(d) for d in policy.decide_batch(batch)]
    again = [_answer(d) for d in policy.decide_batch(batch)]
    assert first == again


def test_fast_path_rows_draw_from_their_own_seed_whatever_the_batch(tiny_policy: PolicyFactory) -> None:
    """Row generators: the same row samples the same tokens alone or next to another row, as
    long as its logits are the same (identical prompts make the padding identical)."""
    policy = _policy(tiny_policy, fast=True)
    alone = _answer(policy.decide_batch([_observation(21)])[0])
    row = _observation(21)
    pair = policy.decide_batch([row, dataclasses.replace(row, seed=22)])
    assert _answer(pair[0]) == alone
