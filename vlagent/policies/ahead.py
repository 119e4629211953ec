"""Work done ahead: the next prompt's start, computed while the device acts.

Once a step has its answer, the start of the next step's prompt is known. It holds the
instructions and the earlier screens memory will show, including the screen just acted on
at its smaller size, up to where the next screen goes. Only the next screen and the text
after it (the step history, notes) are still to come. ``prefetch`` encodes the newly shown
earlier screen and prefills that start into the fast decoder's step cache. The agent loop
calls it on a thread while the driver acts, the screen settles and the next screenshot is
taken. The next ``decide`` then finds the start in the step cache, and computes only its own
screen and what follows, as a one-screen step does.

It is exact for the same reason step reuse is: a causal prefix's keys, values and M-RoPE
positions depend only on the prefix. It matches only the very prompt it was made for: the
same tokens and the same image objects. Memory's ``preview`` makes the images the next
prompt will hold, and a next screen of another size, say after a rotation, changes the
instructions and so simply misses. It never changes an answer; at worst the work is wasted.

It applies to the fast path with history reuse on, to earlier screens sent as images, and to
the plain prompt layout, where the earlier screens come before the step history. Families
whose prompt opens with the step history (UI-TARS turns, native user turns) change their
start at every step, so there is nothing to compute ahead.

This module must not decide actions or touch devices.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from vlagent.policies.fastdecode import image_spans

if TYPE_CHECKING:
    from vlagent.policies.base import Observation
    from vlagent.policies.qwen2vl import Qwen2VLPolicy

__all__ = ["applies", "prefetch"]

log = logging.getLogger(__name__)

#: Stands in for the current screen's embeddings in a lookup: it is never encoded ahead.
_NOT_NEEDED = object()


def applies(policy: Qwen2VLPolicy) -> bool:
    """Whether ``prefetch`` can save the policy anything (fast path and inputs, history reuse and work
    ahead on, images, plain layout)."""
    cfg = policy.config
    family = policy.family
    return (
        cfg.fast
        and cfg.work_ahead
        and policy._layout is not None  # pixels and token ids built directly (``fast_inputs``)
        and policy.vision_cache is not None
        and cfg.history == "images"
        and family.user_turn is None
        and family.history_turns is None
    )


def prefetch(policy: Qwen2VLPolicy, observations: Sequence[Observation]) -> list[int]:
    """For each of ``observations`` (next steps' observations, their current screens stand-ins):
    encode the earlier screens the vision cache lacks, in one call of the tower, and keep the keys
    and values of the prompt up to the current screen in the decoder's step cache, in one batched
    prefill. Returns per observation the prompt tokens computed (0: none)."""
    computed = [0] * len(observations)
    if not applies(policy) or not observations:
        return computed
    torch: Any = policy._torch
    t0 = time.perf_counter()
    with policy.lock:
        rows = policy._rows(observations)
        # One screen: its start is the system turn, which the decoder caches apart.
        todo = [i for i, row in enumerate(rows) if len(row.images) >= 2 and not row.videos]
        if not todo:
            return computed
        rows = [rows[i] for i in todo]
        cache = policy.vision_cache
        assert cache is not None
        earlier = [image for row in rows for image in row.images[:-1]]
        found = [cache.get(image) for image in earlier]
        marks: list[Any] = []  # the lookup the inputs are built for: no pixels for the stand-ins
        at = 0
        for row in rows:
            marks += [*found[at : at + len(row.images) - 1], _NOT_NEEDED]
            at += len(row.images) - 1
        inputs = policy._direct_inputs(rows, marks)
        starts: list[list[int]] = []
        for ids, mask in zip(inputs["input_ids"], inputs["attention_mask"], strict=True):
            row_ids = ids[mask.bool()].tolist()
            starts.append(row_ids[: image_spans(row_ids, policy._image_pad_id)[-1][0]])
        keep = [mark is not _NOT_NEEDED for mark in marks]
        grid = inputs["image_grid_thw"][torch.tensor(keep, device=inputs["image_grid_thw"].device)]
        with torch.inference_mode():
            embeds = cache.encode(
                earlier, found, inputs.get("pixel_values"), grid, policy._tower, pixels_of_missing_only=True
            ).embeds
            done = policy.fast_decoder().warm(starts, grid, embeds, [row.images[:-1] for row in rows])
    for i, n in zip(todo, done, strict=True):
        computed[i] = n
    log.debug(
        "computed ahead for %d prompt(s): %d prompt tokens, %d of %d earlier screens encoded, in %.0f ms",
        len(rows),
        sum(done),
        sum(e is None for e in found),
        len(earlier),
        (time.perf_counter() - t0) * 1000,
    )
    return computed
