"""The fast decode loop of the Qwen2-VL policy: what ``generate`` does, minus its waste.

Same model, same inputs, same greedy choices as ``model.generate`` under the step
grammar (the tests compare both), with four savings:

- prefix reuse: the system turn (instructions with the task and the action schema) is
  the same at every step of an episode; its keys and
  values are computed once and copied into each step's cache. Exact, because causal
  attention makes a prefix's keys and values independent of what follows, and text
  before the first image has plain 1-D positions 0..P-1 under M-RoPE.
- step reuse: with ``step_cache``, the keys and values of each row's whole prompt are kept
  after its prefill, and a later prompt that starts the same way (same tokens, and the very
  same image objects in its image slots) takes the longest common start from there and
  computes only the rest. Exact for the same reason: a causal prefix's keys and values, and
  its M-RoPE positions (text after an image continues from the image's largest position),
  depend only on the prefix. Memory's stable sizes and block dropping keep the start of
  an episode's prompt unchanged from one step to the next most of the time.
- forced tokens: where the grammar leaves no choice (keys, quotes, the closing braces)
  the tokens are appended without sampling, several per forward pass, and the loop ends
  as soon as the JSON is complete (no forward pass for the end-of-turn token).
- vision apart from prefill, and logits only for the last position (``generate`` does
  that too); the timings of each part are reported.
- optionally a static KV cache whose length comes from a few fixed buckets, and a
  ``torch.compile``d decode step per (batch, chunk, bucket) shape, so a new screen size
  does not recompile. Chunks of forced tokens are padded to a few fixed lengths; the
  padding's cache slots are given back and overwritten by the next real token.

Batches: rows share the prefix cache when they share the prefix (same task, device and
screenshot size); the prompt after it is left-padded per row (padding between prefix and
suffix, masked out, positions computed without it).

Static caches and compiled steps are shared by all decoders of one model (compiled once);
such decoders must not run at the same time.

This module must not build prompts, parse answers or know about actions.
"""

from __future__ import annotations

import logging
import time
import weakref
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from vlagent.policies.grammar import RowConstraint, unpack_bitmask

__all__ = ["CACHE_BUCKETS", "CHUNK_BUCKETS", "DecodeResult", "FastDecoder", "image_spans"]

log = logging.getLogger(__name__)

#: Static cache lengths: prompt + answer is rounded up to one of these (one compile each).
CACHE_BUCKETS = (1024, 2048, 3072, 4096, 6144, 8192, 12288, 16384, 24576, 32768)
#: Lengths of compiled decode chunks (1 sampled token + forced tokens, padded up).
CHUNK_BUCKETS = (1, 4, 16)
#: Compiled decode shapes allowed per process (batch sizes x chunk buckets x cache buckets in use).
_MAX_SHAPES = 64
#: Prefixes shorter than this are not worth a cache entry.
_MIN_PREFIX = 16
#: model -> (static caches by (batch, bucket), compiled steps by (batch, chunk, bucket, mode)).
_SHARED: weakref.WeakKeyDictionary[Any, tuple[dict[Any, Any], dict[Any, Any]]] = weakref.WeakKeyDictionary()


@dataclass
class DecodeResult:
    """New tokens per row (end-of-turn appended where the answer ended) and where time went."""

    tokens: list[list[int]]
    vision_s: float = 0.0
    prefill_s: float = 0.0
    decode_s: float = 0.0
    forward_passes: int = 0
    prefix_tokens: int = 0
    """Prompt tokens whose keys and values came from a cache (the largest over rows)."""
    prefix_hit: bool = False
    """Every row's prefix came from a cache (none was computed for this call)."""
    reused: list[int] = field(default_factory=list)
    """Per row: prompt tokens whose keys and values came from an earlier step's prompt."""
    compile_s: float = 0.0
    """Time spent compiling decode shapes during this call (first use of a shape)."""
    cache: str = "dynamic"
    timings: dict[str, float] = field(default_factory=dict)
    first_logits: Any = None
    """(rows, vocabulary) float32 logits after the prompt, before any grammar mask (for checks)."""


@dataclass
class _StepEntry:
    """One earlier prompt: its tokens, its images (held weakly) and its keys and values."""

    tokens: list[int]
    images: list[weakref.ref[Any]]
    kv: list[tuple[Any, Any]]
    """Per layer, (1, heads, len(tokens), dim) keys and values."""
    nbytes: int


def image_spans(row: Sequence[int], image_token_id: int) -> list[tuple[int, int]]:
    """(start, end) of each run of image tokens in ``row``, in order (one per image)."""
    spans: list[tuple[int, int]] = []
    start = -1
    for n, token in enumerate(row):
        if token == image_token_id:
            if start < 0:
                start = n
        elif start >= 0:
            spans.append((start, n))
            start = -1
    if start >= 0:
        spans.append((start, len(row)))
    return spans


def _common_length(a: Sequence[int], b: Sequence[int]) -> int:
    """Length of the common start of two token lists (slice comparisons run in C: bisect on them)."""
    low, high = 0, min(len(a), len(b))
    if a[:high] == b[:high]:
        return high
    while low < high:  # a[:low] == b[:low] and a[:high] != b[:high]
        mid = (low + high + 1) // 2
        if a[:mid] == b[:mid]:
            low = mid
        else:
            high = mid - 1
    return low


class FastDecoder:
    """Greedy/sampled decoding of a Qwen2-VL model with prefix reuse and forced-token fast-forward."""

    def __init__(
        self,
        model: Any,
        *,
        image_token_id: int,
        vision_start_id: int,
        turn_start_id: int,
        eos_id: int,
        pad_id: int,
        prefix_cache: bool = True,
        cache: Literal["dynamic", "static"] = "dynamic",
        compile_mode: str | None = None,
        max_prefixes: int = 8,
        synchronize: bool = False,
        step_cache: bool = False,
        max_step_entries: int = 32,
        max_step_bytes: int = 1 << 30,
    ) -> None:
        import torch

        self._torch = torch
        self.model = model
        self.lm = model.model.language_model
        self.device = next(model.parameters()).device
        self.image_token_id = image_token_id
        self.vision_start_id = vision_start_id
        self.turn_start_id = turn_start_id
        self.eos_id = eos_id
        self.pad_id = pad_id
        self.prefix_cache = prefix_cache
        self.cache_kind = cache
        self.compile_mode = compile_mode
        self.max_prefixes = max_prefixes
        # Timings of parts need the device to finish its queue (costs a little on GPU).
        self.synchronize = synchronize
        self._prefixes: OrderedDict[tuple[int, ...], list[tuple[Any, Any]]] = OrderedDict()
        self.step_cache = step_cache
        self.max_step_entries = max_step_entries
        self.max_step_bytes = max_step_bytes
        self._steps: OrderedDict[int, _StepEntry] = OrderedDict()
        self._step_bytes = 0
        self._step_serial = 0
        self.last: DecodeResult | None = None
        """The latest call's result (timings, first logits)."""
        # Static caches and compiled steps belong to the model: every decoder on it shares them,
        # so a second policy on the same weights does not compile again.
        shared = _SHARED.setdefault(model, ({}, {}))
        self._static: dict[tuple[int, int], Any] = shared[0]
        self._compiled: dict[tuple[int, int, int, str], Any] = shared[1]

    # ------------------------------------------------------------------ helpers

    def _sync(self) -> None:
        if self.synchronize and self.device.type == "cuda":
            self._torch.cuda.synchronize(self.device)

    def _prefix_length(self, rows: Sequence[Sequence[int]]) -> int:
        """Length of the reusable prefix shared by all rows (0: no reuse).

        The prefix ends before the last turn start that precedes the first image, and at
        most two turns in: the system turn (instructions, task, actions), or a default system
        turn plus the instructions as the first user turn (the UI-TARS conversation layout,
        whose later turns change as screenshots leave the window), is the same at every step
        of an episode, while what follows names the step and carries the screens.
        """
        if not self.prefix_cache:
            return 0
        first = list(rows[0])
        try:
            end = first.index(self.vision_start_id)
        except ValueError:
            return 0
        starts = [n for n in range(end) if first[n] == self.turn_start_id]
        length = starts[min(len(starts) - 1, 2)] if starts else end
        if length < _MIN_PREFIX:
            return 0
        head = first[:length]
        if any(list(row[:length]) != head for row in rows[1:]):
            return 0
        return length

    def _prefix_kv(self, ids: tuple[int, ...]) -> tuple[list[tuple[Any, Any]], bool]:
        """Keys and values of the prefix, computed on first use (batch of 1)."""
        cached = self._prefixes.get(ids)
        if cached is not None:
            self._prefixes.move_to_end(ids)
            return cached, True
        torch = self._torch
        from transformers import DynamicCache

        cache: Any = DynamicCache()
        tokens = torch.tensor([ids], device=self.device)
        positions = torch.arange(len(ids), device=self.device).view(1, 1, -1).expand(3, 1, -1)
        self.lm(input_ids=tokens, position_ids=positions, cache=cache, use_cache=True)
        kv = [(layer.keys, layer.values) for layer in cache.layers]
        self._prefixes[ids] = kv
        while len(self._prefixes) > self.max_prefixes:
            self._prefixes.popitem(last=False)
        return kv, False

    def _new_cache(self, batch: int, length: int) -> tuple[Any, int]:
        """An empty cache for ``batch`` rows and ``length`` tokens; static caches are reused per shape."""
        from transformers import DynamicCache, StaticCache

        if self.cache_kind == "dynamic":
            return DynamicCache(), length
        bucket = next((b for b in CACHE_BUCKETS if b >= length), None)
        if bucket is None:
            raise ValueError(f"prompt + answer of {length} tokens exceeds the largest cache bucket {CACHE_BUCKETS[-1]}")
        cache = self._static.get((batch, bucket))
        if cache is None:
            cache = StaticCache(config=self.model.config, max_cache_len=bucket)
            self._static[(batch, bucket)] = cache
        else:
            filled = int(cache.get_seq_length())
            if filled:
                cache.crop(-filled)  # forget the last step; stale slots are masked, then overwritten
        return cache, bucket

    def _forward(
        self, ids: Any, positions: Any, mask: Any, cache: Any, length: int, real: int, result: DecodeResult
    ) -> Any:
        """Run a chunk of ``real`` tokens (all rows) after ``length`` cached ones; float32 logits of its last."""
        result.forward_passes += 1
        if self.cache_kind == "static" and self.compile_mode:
            try:
                return self._forward_compiled(ids, positions, mask, cache, real, result)
            except Exception as exc:  # any compiler failure: keep decoding, uncompiled
                log.warning("compiled decode failed (%s: %s); decoding without compile", type(exc).__name__, exc)
                self.compile_mode = None
                filled = int(cache.get_seq_length())
                if filled > length:
                    cache.crop(-(filled - length))
        out = self.lm(input_ids=ids, position_ids=positions, attention_mask=mask, cache=cache, use_cache=True)
        return self.model.lm_head(out.last_hidden_state[:, real - 1]).float()

    def _forward_compiled(
        self, ids: Any, positions: Any, mask: Any, cache: Any, real: int, result: DecodeResult
    ) -> Any:
        torch = self._torch
        padded = next((c for c in CHUNK_BUCKETS if c >= real), real)
        if padded > real:  # pad the chunk to a compiled length; its cache slots are handed back below
            extra = padded - real
            ids = torch.cat([ids, ids[:, -1:].expand(-1, extra)], dim=1)
            positions = torch.cat([positions, positions[:, :, -1:].expand(-1, -1, extra)], dim=2)
        hidden = self._compiled_step(ids.shape[0], padded, mask.shape[1], cache, result)(ids, positions, mask)
        hidden = hidden[:, real - 1].clone()  # cudagraph outputs are overwritten by the next replay
        if padded > real:
            cache.crop(-(padded - real))
        return self.model.lm_head(hidden).float()

    def _compiled_step(self, batch: int, chunk: int, bucket: int, cache: Any, result: DecodeResult) -> Any:
        key = (batch, chunk, bucket, str(self.compile_mode))
        step = self._compiled.get(key)
        if step is None:
            torch = self._torch
            lm = self.lm

            def decode(ids: Any, positions: Any, mask: Any) -> Any:
                out = lm(input_ids=ids, position_ids=positions, attention_mask=mask, cache=cache, use_cache=True)
                return out.last_hidden_state

            # Every (batch, chunk, bucket) shape is one more compiled entry of the same function;
            # the buckets bound their number, dynamo's default limit (8) would fall back to eager.
            torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, _MAX_SHAPES)
            compiled = torch.compile(decode, mode=self.compile_mode, fullgraph=False, dynamic=False)
            first = True

            def run(ids: Any, positions: Any, mask: Any) -> Any:
                nonlocal first
                if self.compile_mode == "reduce-overhead":
                    torch.compiler.cudagraph_mark_step_begin()
                if not first:
                    return compiled(ids, positions, mask)
                t0 = time.perf_counter()
                out = compiled(ids, positions, mask)
                self._sync()
                result.compile_s += time.perf_counter() - t0
                log.info("compiled decode for batch %d, chunk %d, cache %d", batch, chunk, bucket)
                first = False
                return out

            step = self._compiled[key] = run
        return step

    def _choose(
        self,
        logits: Any,
        rows: list[int],
        constraints: list[RowConstraint] | None,
        temperature: float,
        generators: Sequence[Any] = (),
    ) -> Any:
        """Next token for each listed row, under its grammar mask (sampled from the row's own
        generator when it has one, so a seeded row draws the same tokens whatever its batch)."""
        torch = self._torch
        scores = logits[rows]
        if constraints is not None:
            from llguidance.torch import allocate_token_bitmask, fill_next_token_bitmask

            mask = allocate_token_bitmask(len(rows), scores.shape[1])
            for n, i in enumerate(rows):
                fill_next_token_bitmask(constraints[i].matcher, mask, n)
            allowed = unpack_bitmask(mask, scores.shape[1], scores.device)
            scores = scores.masked_fill(~allowed, float("-inf"))
        if temperature > 0:
            probs = torch.softmax(scores.float() / temperature, dim=-1)
            if not generators:
                return torch.multinomial(probs, 1).squeeze(1).tolist()
            return [int(torch.multinomial(probs[n], 1, generator=generators[i]).item()) for n, i in enumerate(rows)]
        return scores.argmax(dim=-1).tolist()

    def _fill_prefix(
        self, cache: Any, sources: list[list[tuple[Any, Any]] | None], lengths: list[int], prefix: int
    ) -> None:
        """Put each row's cached keys and values right-aligned in the first ``prefix`` slots."""
        torch = self._torch
        template = next(kv for kv in sources if kv is not None)
        for layer, (k0, v0) in enumerate(template):
            shape = (len(sources), k0.shape[1], prefix, k0.shape[3])
            keys = torch.zeros(shape, dtype=k0.dtype, device=k0.device)
            values = torch.zeros((*shape[:3], v0.shape[3]), dtype=v0.dtype, device=v0.device)
            for i, (kv, n) in enumerate(zip(sources, lengths, strict=True)):
                if kv is not None and n:
                    keys[i, :, prefix - n :] = kv[layer][0][0, :, :n]
                    values[i, :, prefix - n :] = kv[layer][1][0, :, :n]
            cache.update(keys, values, layer)

    def _lookup(self, row: Sequence[int], images: Sequence[Any], spans: list[tuple[int, int]]) -> tuple[Any, int]:
        """The earlier prompt sharing the longest start with ``row`` (tokens and image objects), and its length."""
        best: _StepEntry | None = None
        best_length, best_key = 0, -1
        head = list(row[:_MIN_PREFIX])
        for key, entry in self._steps.items():
            if entry.tokens[:_MIN_PREFIX] != head:
                continue
            length = min(_common_length(entry.tokens, row), len(row) - 1)
            for k, (start, end) in enumerate(spans):
                if start >= length:
                    break
                same = k < len(entry.images) and k < len(images) and entry.images[k]() is images[k]
                if not same or end > length:  # another image, or cut inside one: stop before it
                    length = start
                    break
            if length > best_length:
                best, best_length, best_key = entry, length, key
        if best is None or best_length < _MIN_PREFIX:
            return None, 0
        self._steps.move_to_end(best_key)
        return best.kv, best_length

    def _remember(
        self,
        rows: Sequence[Sequence[int]],
        images: Sequence[Sequence[Any]],
        spans: list[list[tuple[int, int]]],
        cache: Any,
        lengths: list[int],
        suffixes: list[list[int]],
        prefix: int,
        prompt: int,
        *,
        whole: bool = False,
    ) -> None:
        """Keep each row's prompt keys and values for later steps (bounded in entries and bytes);
        ``whole``: the whole row (the start of a prompt to come), else up to its current screen."""
        torch = self._torch
        for i, row in enumerate(rows):
            if len(spans[i]) < (1 if whole else 2):
                continue  # the start of a one-image prompt is the system turn, cached apart
            # Up to the current screen, the last image: a later prompt shows it at another size, if at all.
            keep = len(row) if whole else spans[i][-1][0]
            slots = torch.cat(
                [
                    torch.arange(prefix - lengths[i], prefix, device=self.device),
                    torch.arange(prompt - len(suffixes[i]), prompt, device=self.device),
                ]
            )[:keep]
            kv = [
                (layer.keys[i : i + 1].index_select(2, slots), layer.values[i : i + 1].index_select(2, slots))
                for layer in cache.layers
            ]
            nbytes = sum(int(k.numel() * k.element_size() + v.numel() * v.element_size()) for k, v in kv)
            if nbytes > self.max_step_bytes:
                continue
            refs = [weakref.ref(image) for image in (images[i] if whole else images[i][:-1])]
            self._step_serial += 1
            self._steps[self._step_serial] = _StepEntry(list(row[:keep]), refs, kv, nbytes)
            self._step_bytes += nbytes
        # Out go entries whose first image is gone (their episode moved on), then the least recently used.
        for key in [k for k, e in self._steps.items() if e.images and e.images[0]() is None]:
            self._step_bytes -= self._steps.pop(key).nbytes
        limit = max(self.max_step_entries, 2 * len(rows))  # a large batch keeps every row's last prompt
        while self._steps and (len(self._steps) > limit or self._step_bytes > self.max_step_bytes):
            _, dropped = self._steps.popitem(last=False)
            self._step_bytes -= dropped.nbytes

    # ------------------------------------------------------------------ the loop

    def _prefill(
        self,
        rows: Sequence[Sequence[int]],
        pixel_values: Any,
        image_grid_thw: Any,
        image_embeds: Sequence[Any] | None,
        images: Sequence[Sequence[Any]],
        result: DecodeResult,
        *,
        max_new_tokens: int,
        whole: bool,
    ) -> tuple[Any, Any, int, Any, Any]:
        """The prompts' keys and values in a new cache (each row's cached start taken from the prefix
        or step cache, the rest computed); ``whole``: keep each row whole in the step cache (the start
        of a prompt still to come), else up to its last image (the current screen).

        Returns the cache, the attention mask (sized for the cache), the prompt length, the next
        M-RoPE position per row, and the float32 logits after the prompt.
        """
        torch = self._torch
        device = self.device
        batch = len(rows)
        spans = [image_spans(row, self.image_token_id) for row in rows]
        reuse = self.step_cache and image_embeds is not None and len(images) == batch
        sources: list[list[tuple[Any, Any]] | None] = []
        lengths: list[int] = []
        result.reused = [0] * batch
        computed = False
        for i, row in enumerate(rows):
            kv, length = None, 0
            if reuse:
                kv, length = self._lookup(row, images[i], spans[i])
                result.reused[i] = length
            base = self._prefix_length([row])
            if base > length:  # the system turn alone is longer than what an earlier step offers
                kv, hit = self._prefix_kv(tuple(row[:base]))
                length, computed, result.reused[i] = base, computed or not hit, 0
            sources.append(kv)
            lengths.append(length)
        prefix = max(lengths)
        suffixes = [list(row[n:]) for row, n in zip(rows, lengths, strict=True)]
        width = max(len(s) for s in suffixes)
        # Each row: its cached start right-aligned before ``prefix``, the rest right-aligned at the end.
        layout = [
            [self.pad_id] * (prefix - n) + list(row[:n]) + [self.pad_id] * (width - len(sfx)) + sfx
            for row, n, sfx in zip(rows, lengths, suffixes, strict=True)
        ]
        full = torch.tensor(layout, device=device)
        prompt = prefix + width
        capacity = prompt + max_new_tokens + CHUNK_BUCKETS[-1]
        cache, mask_length = self._new_cache(batch, capacity)
        attention = torch.zeros(batch, max(mask_length, capacity), dtype=torch.long, device=device)
        for i, (n, sfx) in enumerate(zip(lengths, suffixes, strict=True)):
            attention[i, prefix - n : prefix] = 1
            attention[i, prompt - len(sfx) : prompt] = 1
        mm_types = (full == self.image_token_id).int()
        grid = image_grid_thw.to(device) if image_grid_thw is not None else None
        positions, _ = self.model.model.get_rope_index(
            full, mm_types, image_grid_thw=grid, attention_mask=attention[:, :prompt]
        )
        next_position = positions[0, :, -1] + 1  # the prompt ends with text: all three axes agree

        # Vision tower, then the text embeddings with the image features in place.
        ids = full[:, prefix:]
        embeds = self.lm.get_input_embeddings()(ids)
        if image_embeds is not None:
            # Only the images after each row's cached start are in the part computed now.
            shown: list[Any] = []
            first = 0
            for n, row_spans in zip(lengths, spans, strict=True):
                shown.extend(image_embeds[first + k] for k, (start, _) in enumerate(row_spans) if start >= n)
                first += len(row_spans)
            if shown:
                slots = (ids == self.image_token_id).unsqueeze(-1).expand_as(embeds)
                embeds = embeds.masked_scatter(slots, torch.cat(shown).to(embeds.dtype))
        elif pixel_values is not None:
            self._sync()
            tv = time.perf_counter()
            features = self.model.model.get_image_features(pixel_values.to(device), grid, return_dict=True)
            vision = torch.cat(list(features.pooler_output), dim=0).to(embeds.dtype)
            slots = (ids == self.image_token_id).unsqueeze(-1).expand_as(embeds)
            embeds = embeds.masked_scatter(slots, vision)
            self._sync()
            result.vision_s = time.perf_counter() - tv

        tp = time.perf_counter()
        if prefix:
            self._fill_prefix(cache, sources, lengths, prefix)
            result.prefix_tokens, result.prefix_hit = prefix, not computed
        mask = attention if self.cache_kind == "static" else attention[:, :prompt]
        out = self.lm(
            inputs_embeds=embeds,
            position_ids=positions[:, :, prefix:],
            attention_mask=mask,
            cache=cache,
            use_cache=True,
        )
        if reuse:
            self._remember(rows, images, spans, cache, lengths, suffixes, prefix, prompt, whole=whole)
        logits = self.model.lm_head(out.last_hidden_state[:, -1]).float()
        result.forward_passes += 1
        self._sync()
        result.prefill_s = time.perf_counter() - tp
        return cache, attention, prompt, next_position, logits

    def warm(
        self,
        rows: Sequence[Sequence[int]],
        image_grid_thw: Any,
        image_embeds: Sequence[Any],
        images: Sequence[Sequence[Any]],
    ) -> list[int]:
        """Compute and keep the keys and values of each row of ``rows``, the start of a prompt still to
        come (for the next step: the instructions and the earlier screens, up to where its current
        screen goes), so that the prompt's ``run`` takes them from the step cache and computes only
        what follows. One batched prefill serves every row that needs one.

        ``image_grid_thw`` and ``image_embeds``: one row and one tensor per image of the rows, in
        order; ``images``: per row, the objects of its images. Returns per row the tokens computed
        now (0: the step cache is off, or it already holds the row).
        """
        computed = [0] * len(rows)
        if not self.step_cache:
            return computed
        todo: list[int] = []
        firsts: list[int] = []  # each row's first image among all
        first = 0
        for i, row in enumerate(rows):
            spans = image_spans(row, self.image_token_id)
            firsts.append(first)
            first += len(images[i])
            if spans and len(spans) == len(images[i]) and self._lookup(row, images[i], spans)[1] < len(row) - 1:
                todo.append(i)
        if not todo:
            return computed
        picked = [firsts[i] + k for i in todo for k in range(len(images[i]))]
        result = DecodeResult(tokens=[[] for _ in todo], cache=self.cache_kind)
        self._prefill(
            [rows[i] for i in todo],
            None,
            image_grid_thw[picked],
            [image_embeds[n] for n in picked],
            [images[i] for i in todo],
            result,
            max_new_tokens=0,
            whole=True,
        )
        for n, i in enumerate(todo):
            computed[i] = len(rows[i]) - result.reused[n]
        return computed

    def run(
        self,
        rows: Sequence[Sequence[int]],
        pixel_values: Any,
        image_grid_thw: Any,
        constraints: list[RowConstraint] | None,
        *,
        max_new_tokens: int,
        temperature: float = 0.0,
        seeds: Sequence[int | None] = (),
        image_embeds: Sequence[Any] | None = None,
        images: Sequence[Sequence[Any]] = (),
    ) -> DecodeResult:
        """Decode the answer of each prompt in ``rows`` (token ids without padding).

        ``seeds``: each row's sampling seed (used when ``temperature`` > 0; an unseeded row draws
        from a fresh random seed). ``image_embeds``: the vision embeddings of every image (all rows,
        in prompt order, one tensor each) already computed, instead of running the vision tower on
        ``pixel_values``. ``images``: per row, an object standing for each of its images (the sized
        PIL image); with ``step_cache`` and ``image_embeds``, a row whose start matches an earlier
        prompt's tokens and image objects reuses that prompt's keys and values.
        """
        torch = self._torch
        device = self.device
        batch = len(rows)
        generators: list[Any] = []
        if temperature > 0 and any(s is not None for s in seeds):
            for row_seed in seeds:
                generator = torch.Generator(device=device)
                if row_seed is None:
                    generator.seed()
                else:
                    generator.manual_seed(row_seed)
                generators.append(generator)
        t0 = time.perf_counter()
        result = DecodeResult(tokens=[[] for _ in rows], cache=self.cache_kind)
        cache, attention, prompt, next_position, logits = self._prefill(
            rows, pixel_values, image_grid_thw, image_embeds, images, result, max_new_tokens=max_new_tokens, whole=False
        )
        result.first_logits = logits

        td = time.perf_counter()
        length = prompt
        done = [False] * batch
        generated = 0
        while generated < max_new_tokens:
            chunk: list[list[int]] = [[] for _ in rows]
            # The first token of the chunk: forced by the grammar, else chosen from the logits.
            choose = []
            for i in range(batch):
                if done[i]:
                    chunk[i].append(self.pad_id)
                    continue
                forced = constraints[i].forced_token() if constraints else None
                if forced is None:
                    choose.append(i)
                else:
                    chunk[i].append(forced)
            if choose:
                tokens = self._choose(logits, choose, constraints, temperature, generators)
                for i, token in zip(choose, tokens, strict=True):
                    chunk[i].append(int(token))
            self._take(chunk, 0, constraints, done, result)
            # More tokens in the same pass while every unfinished row has a forced one.
            while generated + len(chunk[0]) < max_new_tokens and not all(done):
                extra = [
                    None if done[i] else constraints[i].forced_token() if constraints else None for i in range(batch)
                ]
                if any(e is None for i, e in enumerate(extra) if not done[i]):
                    break
                for i in range(batch):
                    chunk[i].append(self.pad_id if done[i] else int(extra[i] or 0))
                self._take(chunk, len(chunk[0]) - 1, constraints, done, result)
            generated += len(chunk[0])
            if all(done) or generated >= max_new_tokens:
                break
            size = len(chunk[0])
            ids = torch.tensor(chunk, device=device)
            offsets = torch.arange(size, device=device)
            chunk_positions = (next_position.unsqueeze(1) + offsets).unsqueeze(0).expand(3, -1, -1)
            attention[:, length : length + size] = 1
            mask = attention if self.cache_kind == "static" else attention[:, : length + size]
            logits = self._forward(ids, chunk_positions, mask, cache, length, size, result)
            next_position = next_position + size
            length += size
        self._sync()
        result.decode_s = time.perf_counter() - td
        for i in range(batch):
            if done[i] and len(result.tokens[i]) < max_new_tokens:
                result.tokens[i].append(self.eos_id)  # what generate would have sampled next
        result.timings["total_s"] = time.perf_counter() - t0
        self.last = result
        return result

    def _take(
        self,
        chunk: list[list[int]],
        index: int,
        constraints: list[RowConstraint] | None,
        done: list[bool],
        result: DecodeResult,
    ) -> None:
        """Commit token ``index`` of each unfinished row: grammar state, output, end of answer."""
        for i, tokens in enumerate(chunk):
            if done[i]:
                continue
            token = tokens[index]
            if constraints is None:
                if token in (self.eos_id, self.pad_id):
                    done[i] = True
                    tokens[index] = self.pad_id
                    continue
                result.tokens[i].append(token)
                continue
            row = constraints[i]
            if token == self.eos_id and row.matcher.is_accepting():
                done[i] = True
                continue
            row.consume(token)
            result.tokens[i].append(token)
            if row.stopped:
                done[i] = True
