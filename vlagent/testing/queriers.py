"""Queriers for the model policies: a screenshot and a question in, a pydantic object out.

``Agent.assert_``, ``query``, ``wait_until`` and ``locate`` need structured answers, not
steps. These adapters reuse a policy's loaded model or HTTP client and its family's
conventions, and constrain the answer to the pydantic schema's JSON schema the same way
the policy constrains steps: llguidance in process, ``response_format`` on a server. The
text is then validated by pydantic; anything that does not fit raises InvalidModelOutput
with feedback, which the Agent passes back on its next try.

They live here rather than in the policy modules so that the policies stay about steps;
the only policy internals used are the loaded model/processor (Qwen2-VL) and the
request helpers (OpenAI-compatible), both stable parts of those classes. torch,
transformers and httpx are imported only when a querier is used.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import TYPE_CHECKING, Any, TypeVar

from PIL import Image
from pydantic import BaseModel, ValidationError

from vlagent.coords import MAX_PIXELS, MIN_PIXELS, smart_resize
from vlagent.errors import InvalidModelOutput, PolicyBackendError
from vlagent.policies.base import Policy
from vlagent.policies.grammar import GrammarCompiler, cap_strings, make_logits_processor
from vlagent.testing.query import Querier, Query

if TYPE_CHECKING:
    from vlagent.policies.openai_compat import OpenAICompatPolicy
    from vlagent.policies.qwen2vl import Qwen2VLPolicy

__all__ = ["OpenAIQuerier", "Qwen2VLQuerier", "answer_schema", "parse_answer", "querier_for"]

log = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)

SYSTEM_PROMPT = (
    "You are a careful software tester looking at a screenshot. Answer the question about what the screen "
    "shows with one JSON object and nothing else."
)
_END_OF_TURN = "<|im_end|>"


def _closed(node: Any) -> None:
    """Forbid properties the schema does not name (else a grammar lets a model invent keys without end)."""
    if isinstance(node, dict):
        if node.get("type") == "object" and "properties" in node:
            node.setdefault("additionalProperties", False)
        for value in node.values():
            _closed(value)
    elif isinstance(node, list):
        for item in node:
            _closed(item)


def answer_schema(schema: type[BaseModel], max_string_chars: int | None = None) -> dict[str, Any]:
    """The JSON schema a model is constrained to: pydantic's, closed to unnamed properties, with
    free strings capped (when ``max_string_chars`` is given) so the object ends within the token limit."""
    raw = schema.model_json_schema()
    _closed(raw)
    return cap_strings(raw, max_string_chars) if max_string_chars else raw


def parse_answer(text: str, schema: type[M]) -> M:
    """Validate a model's text as ``schema``; InvalidModelOutput (feedback for the model) otherwise."""
    try:
        return schema.model_validate_json(text.strip())
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'answer'}: {e['msg']}" for e in exc.errors()[:5])
        raise InvalidModelOutput(
            f"your answer does not match the schema ({problems}). Answer with one JSON object with the fields "
            f"{', '.join(schema.model_fields)}.",
            text,
        ) from exc


def _messages(query: Query, image: Image.Image) -> list[dict[str, Any]]:
    prompt = query.prompt
    if query.feedback:
        prompt += f"\nYour previous answer was rejected: {query.feedback}"
    return [
        {"role": "system", "content": [{"type": "text", "text": SYSTEM_PROMPT}]},
        {"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": prompt}]},
    ]


class Qwen2VLQuerier:
    """Structured questions to an in-process Qwen2-VL policy's model, under llguidance."""

    def __init__(
        self, policy: Qwen2VLPolicy, *, max_new_tokens: int | None = None, max_string_chars: int | None = None
    ) -> None:
        self.policy = policy
        config = policy.config
        self.max_new_tokens = max_new_tokens or max(256, config.max_new_tokens)
        self.max_string_chars = max_string_chars or config.max_string_chars
        self._compiler: GrammarCompiler | None = None

    def _grammar(self) -> GrammarCompiler:
        if self._compiler is None:
            tokenizer = self.policy.tokenizer
            vocab = self.policy.model.config.get_text_config().vocab_size
            eos = tokenizer.convert_tokens_to_ids(_END_OF_TURN)
            self._compiler = GrammarCompiler(tokenizer, vocab_size=vocab, eos_token_id=eos)
        return self._compiler

    def _image(self, query: Query) -> Image.Image:
        """The screen at a size the processor keeps (multiples of 28 inside the policy's budget)."""
        image = query.frame.image
        cfg = self.policy.config
        height, width = smart_resize(image.height, image.width, min_pixels=cfg.min_pixels, max_pixels=cfg.max_pixels)
        if (width, height) != image.size:
            image = image.resize((width, height), Image.Resampling.BICUBIC)
        return image

    def ask(self, query: Query, schema: type[M]) -> M:
        import torch
        from transformers import LogitsProcessorList

        policy = self.policy
        processor, model, tokenizer = policy.processor, policy.model, policy.tokenizer
        image = self._image(query)
        text = processor.apply_chat_template(_messages(query, image), tokenize=False, add_generation_prompt=True)
        try:
            inputs = processor(
                text=[text],
                images=[image],
                padding=True,
                return_tensors="pt",
                size={"shortest_edge": MIN_PIXELS, "longest_edge": MAX_PIXELS},
            ).to(policy.device)
            if "pixel_values" in inputs:
                inputs["pixel_values"] = inputs["pixel_values"].to(model.dtype)
            compiler = self._grammar()
            row = compiler.row(answer_schema(schema, self.max_string_chars))
            prompt_length = inputs["input_ids"].shape[1]
            eos = compiler.eos_token_id
            pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
            generate: Any = getattr(model, "generate")  # noqa: B009 - transformers types it through nn.Module
            with torch.inference_mode():
                output = generate(
                    **inputs,
                    max_new_tokens=self.max_new_tokens,
                    logits_processor=LogitsProcessorList(
                        [make_logits_processor([row], prompt_length, compiler.vocab_size, eos)]
                    ),
                    pad_token_id=pad,
                    eos_token_id=sorted({eos, pad}),
                    do_sample=False,
                    temperature=None,
                    top_p=None,
                    top_k=None,
                )
        except (RuntimeError, ValueError) as exc:  # OOM, shapes, backend failures
            raise PolicyBackendError(f"model call failed while answering {query.kind} {query.text!r}: {exc}") from exc
        ids = output[0, prompt_length:].tolist()
        length = next((n for n, t in enumerate(ids) if t in (eos, pad)), len(ids))
        answer = tokenizer.decode(ids[:length], skip_special_tokens=True)
        if row.error:
            raise InvalidModelOutput(f"the answer broke the JSON grammar ({row.error})", answer)
        if length == len(ids) and not row.matcher.is_accepting():
            raise InvalidModelOutput(
                f"the answer was cut off after {length} tokens; answer with a shorter JSON object", answer
            )
        log.debug("%s %r -> %s", query.kind, query.text, answer)
        return parse_answer(answer, schema)


class OpenAIQuerier:
    """Structured questions to an OpenAI-compatible server, with the schema as ``response_format``."""

    def __init__(self, policy: OpenAICompatPolicy, *, max_tokens: int | None = None) -> None:
        self.policy = policy
        self.max_tokens = max_tokens or policy.config.max_output_tokens

    def ask(self, query: Query, schema: type[M]) -> M:
        policy, cfg = self.policy, self.policy.config
        body: dict[str, Any] = {
            "model": cfg.model,
            "messages": policy._http_messages(_messages(query, query.frame.image)),
            "temperature": cfg.temperature,
            "max_tokens": self.max_tokens,
        }
        if cfg.structured:
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": schema.__name__, "schema": answer_schema(schema), "strict": True},
            }
        body.update(cfg.extra_body)
        text, _ = policy._read_answer(policy._post("/chat/completions", body))
        try:
            return parse_answer(text, schema)
        except InvalidModelOutput:
            # Without server-side constraints models fence or decorate JSON; repair once before refusing.
            import json_repair

            repaired = json_repair.loads(text)
            if not isinstance(repaired, dict):
                raise
            return parse_answer(json.dumps(repaired), schema)


def querier_for(policy: Policy) -> Querier | None:
    """A Querier for ``policy``: the policy itself when it answers questions, a built-in
    querier for the Qwen2-VL and OpenAI-compatible policies, else None."""
    if isinstance(policy, Querier):
        return policy
    inner = getattr(policy, "inner", None)  # wrappers (cache, lazy loading) expose the real policy
    if inner is not None and inner is not policy:
        return querier_for(inner)
    # Only look for classes whose modules are already imported: a policy of that class exists then.
    qwen = sys.modules.get("vlagent.policies.qwen2vl")
    if qwen is not None and isinstance(policy, qwen.Qwen2VLPolicy):
        return Qwen2VLQuerier(policy)
    openai = sys.modules.get("vlagent.policies.openai_compat")
    if openai is not None and isinstance(policy, openai.OpenAICompatPolicy):
        return OpenAIQuerier(policy)
    return None
