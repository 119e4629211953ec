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
    """Whether ``prefetch`` can save the policy anything (fast path, history reuse, images, plain layout)."""
    cfg = policy.config
    family = policy.family
    return (
        cfg.fast
        and policy.vision_cache is not None
        and cfg.history == "images"
        and family.user_turn is None
        and family.history_turns is None
    )


def prefetch(policy: Qwen2VLPolicy, observation: Observation) -> int:
    """Encode the earlier screens of ``observation`` (the next step's, its current screen a
    stand-in) that the vision cache lacks, and keep the keys and values of its prompt up to the
    current screen in the decoder's step cache. Returns the prompt tokens computed (0: none)."""
    if not applies(policy):
        return 0
    torch: Any = policy._torch
    t0 = time.perf_counter()
    with policy.lock:
        rows = policy._rows([observation])
        row = rows[0]
        if len(row.images) < 2 or row.videos:
            return 0  # one screen: its start is the system turn, which the decoder caches apart
        cache = policy.vision_cache
        assert cache is not None
        earlier = row.images[:-1]
        found = [cache.get(image) for image in earlier]
        inputs = policy._direct_inputs(rows, [*found, _NOT_NEEDED])  # no pixels for the stand-in
        ids = inputs["input_ids"][0][inputs["attention_mask"][0].bool()].tolist()
        start = image_spans(ids, policy._image_pad_id)[-1][0]
        grid = inputs["image_grid_thw"][:-1]
        with torch.inference_mode():
            embeds = cache.encode(
                earlier, found, inputs.get("pixel_values"), grid, policy._tower, pixels_of_missing_only=True
            ).embeds
            computed = policy.fast_decoder().warm(ids[:start], grid, embeds, earlier)
    log.debug(
        "computed ahead: %d prompt tokens, %d of %d earlier screens encoded, in %.0f ms",
        computed,
        sum(e is None for e in found),
        len(earlier),
        (time.perf_counter() - t0) * 1000,
    )
    return computed
