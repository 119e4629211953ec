"""A policy backed by an OpenAI-compatible chat-completions server (vLLM, SGLang, others).

The prompt comes from :mod:`vlagent.policies.prompt` (shared with the in-process Qwen2-VL
policy); this module only turns it into HTTP: images become base64 data URLs (oldest
first, the current screen last, at most ``max_images`` of the newest), and the answer is
parsed by the model family's parser and converted from the model's grid to device pixels.

Constrained decoding happens on the server when ``structured`` is on. Families whose
answers are vlagent JSON send the step schema restricted to the driver as
``response_format`` (json_schema), which any OpenAI-compatible server understands. The
other families (UI-TARS, Qwen2.5-VL/Qwen3-VL tool calls, ShowUI) have a Lark grammar in
llguidance's dialect; no standard field carries one, so it goes in vLLM's own request
field ``structured_outputs: {"grammar": ...}`` (vLLM 0.10 and later; older vLLM called it
``guided_grammar``), and only to a server known to be vLLM (``grammar="auto"`` asks
``/v1/models`` once: vLLM lists its models as ``owned_by: "vllm"``), so other servers never
see an unknown field. The grammar is sent with an ``%llguidance`` directive: vLLM's
``auto`` backend then hands it to llguidance (xgrammar refuses the directive) instead of
xgrammar, whose reading of the embedded JSON lets a weak model emit runs of whitespace. If
the server rejects the grammar (HTTP 400 naming it, e.g. a server pinned to xgrammar), the
step is asked again without it and the rest of the policy's life parses answers leniently,
after one warning.

Failures are translated at this boundary: connection errors, timeouts and 5xx answers are
retried with backoff (tenacity) and then raised as ``PolicyBackendError`` naming the URL
and what to check; a wrong model name lists the models the server does serve; an answer
that is not a valid step raises ``InvalidModelOutput`` so the episode loop can feed the
problem back. Several servers of one model (``base_urls``, vLLM replicas): each request goes
to the least busy (:mod:`vlagent.policies.servers`), and one that cannot be reached is skipped
for ``server_pause_s`` while the request is retried at once on another. httpx is imported
lazily (extra ``openai``); this module must not import torch or transformers.
"""

from __future__ import annotations

import base64
import dataclasses
import io
import logging
import math
import os
import re
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from types import MappingProxyType, TracebackType
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from PIL import Image
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt, wait_exponential

from vlagent.actions import Step
from vlagent.coords import codec_by_name, decode_action
from vlagent.errors import ConfigError, InvalidModelOutput, MissingExtraError, ModelError, PolicyBackendError
from vlagent.policies.base import Decision, Observation
from vlagent.policies.budget import bounded_schema, fit_limits
from vlagent.policies.prompt import GrammarLimits, Message, ModelFamily, build_messages, get_family
from vlagent.policies.servers import ServerSet
from vlagent.schema import JSONObject
from vlagent.secrets import scrub_url

if TYPE_CHECKING:
    import httpx

__all__ = ["OpenAICompatPolicy", "OpenAIConfig", "create_policy"]

log = logging.getLogger(__name__)

API_KEY_ENV = ("VLAGENT_API_KEY", "OPENAI_API_KEY")
#: Options the CLI hands every policy that this one has no use for (memory owns them).
_SHARED_OPTIONS = frozenset(
    {"max_pixels", "min_pixels", "max_tokens", "script", "no_history_reuse", "no_work_ahead", "history"}
)
#: Makes vLLM's ``auto`` structured-output backend pass the grammar to llguidance, its dialect.
_LLGUIDANCE_DIRECTIVE = "%llguidance {}\n"
#: Largest response body read: a chat completion is a few kilobytes; more is a broken server or proxy.
MAX_RESPONSE_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True)
class OpenAIConfig:
    """Settings of an OpenAI-compatible backend."""

    base_url: str
    """Server URL; ``http://host:8000`` and ``http://host:8000/v1`` both work."""
    model: str
    """The served model name (vLLM: ``--served-model-name``, default the path it loaded)."""
    base_urls: tuple[str, ...] = ()
    """More servers of the same model (vLLM replicas), besides ``base_url``: each request goes to the
    least busy one (fewest requests in flight; ties in turn)."""
    server_pause_s: float = 30.0
    """With several servers: seconds one that cannot be reached (refused, connect timeout) is skipped."""
    api_key: str | None = None
    """Bearer token; default from VLAGENT_API_KEY, then OPENAI_API_KEY."""
    family: str = "qwen2vl"
    """Model family (prompt wording, coordinate grid, parser): see ``vlagent.policies.prompt``."""
    coords: str | None = None
    """Override the family's coordinate convention: norm1000 | norm999 | abs_resized | pixels."""
    structured: bool = True
    """Constrain decoding on the server: the step schema as ``response_format`` for JSON families,
    the family's grammar (see ``grammar``) for the others. Off: answers are parsed leniently."""
    grammar: Literal["auto", "vllm", "off"] = "auto"
    """Where a non-JSON family's Lark grammar goes. ``vllm``: in vLLM's ``structured_outputs``
    field; ``auto``: the same, when ``/v1/models`` says the server is vLLM (asked once; any
    doubt sends nothing); ``off``: never sent, answers are parsed leniently."""
    with_thought: bool = True
    max_thought_chars: int | None = None
    """Cap on the thought's length in the schema or grammar sent. None: the in-process policy's
    cap (``GrammarLimits``' default, 200), lowered as far as needed to fit ``max_output_tokens``."""
    max_string_chars: int | None = None
    """Cap on every other free string (typed text, app names, answers) in the schema or grammar
    sent. None: ``GrammarLimits``' default (120), lowered with the thought to fit. Small or
    fine-tuned models under constrained decoding may fill a string to its limit; the caps keep
    the longest answer the constraint allows within ``max_output_tokens`` (see
    :mod:`vlagent.policies.budget`), and caps given that cannot fit are a ConfigError."""
    max_images: int | None = None
    """Send at most this many images (the newest), e.g. vLLM's ``--limit-mm-per-prompt``."""
    image_format: Literal["png", "jpeg"] = "png"
    jpeg_quality: int = 90
    temperature: float = 0.0
    max_output_tokens: int = 512
    """Tokens the server may generate (its ``max_tokens``); the visual budget is memory's ``max_tokens``.
    An answer the server cut off at this limit (``finish_reason: length``) is fed back, not parsed."""
    timeout_s: float = 120.0
    """Longest wait for one attempt's answer, body included (a server that trickles bytes too)."""
    connect_timeout_s: float = 10.0
    attempts: int = 4
    """Tries per request for connection errors, timeouts, 429 and 5xx answers."""
    backoff_s: float = 0.5
    """First retry delay; doubles each time, at most 10 s."""
    concurrency: int = 8
    """Parallel requests in ``decide_batch``."""
    extra_body: Mapping[str, object] = field(default_factory=lambda: MappingProxyType({}))
    """Merged into every request body (e.g. ``{"top_k": 1}`` or server-specific options)."""

    def __post_init__(self) -> None:
        for url in (self.base_url, *self.base_urls):
            if not url or not isinstance(url, str) or not urlsplit(url).scheme.startswith("http"):
                raise ConfigError(f"base URL must start with http:// or https://, got {scrub_url(str(url))!r}")
        if not self.server_pause_s >= 0:
            raise ConfigError(f"server_pause_s must be >= 0 seconds, got {self.server_pause_s!r}")
        if not self.model:
            raise ConfigError("the served model name is empty: pass --model NAME (as the server lists it)")
        if self.max_images is not None and self.max_images < 1:
            raise ConfigError(f"max_images must be at least 1, got {self.max_images}")
        if not self.temperature >= 0 or self.temperature == float("inf"):  # NaN fails both ways
            raise ConfigError(f"temperature must be a finite number >= 0, got {self.temperature!r}")
        if self.attempts < 1 or self.concurrency < 1:
            raise ConfigError("attempts and concurrency must be at least 1")
        if self.grammar not in ("auto", "vllm", "off"):
            raise ConfigError(f"grammar must be auto, vllm or off, got {self.grammar!r}")
        if self.max_output_tokens < 1 or self.timeout_s <= 0 or self.connect_timeout_s <= 0:
            raise ConfigError("max_output_tokens, timeout_s and connect_timeout_s must be positive")
        for name in ("max_thought_chars", "max_string_chars"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"{name} must be at least 1, got {value}")

    @property
    def api_url(self) -> str:
        """The base URL with ``/v1`` added when it has no path at all."""
        return _api_url(self.base_url)

    @property
    def api_urls(self) -> tuple[str, ...]:
        """Every server's API URL (``base_url`` first), each once."""
        return tuple(dict.fromkeys(_api_url(u) for u in (self.base_url, *self.base_urls)))


def _api_url(base_url: str) -> str:
    url = base_url.rstrip("/")
    return url + "/v1" if urlsplit(url).path in ("", "/") else url


class _GrammarRejected(Exception):
    """The server refused the grammar sent (HTTP 400 naming it); ``detail`` is what it said."""

    def __init__(self, detail: str) -> None:
        self.detail = detail
        super().__init__(detail)


class _Transient(Exception):
    """A retryable answer (429, 5xx); ``detail`` is what the server said."""

    def __init__(self, status: int, detail: str) -> None:
        self.status = status
        self.detail = detail
        super().__init__(f"HTTP {status}: {detail}")


class _TimedOut(Exception):
    """Every server of the request took longer than ``timeout_s``: asking again would only wait as
    long again, so the request ends here (the worst case is one timeout per server, not per attempt)."""


def _import_httpx() -> Any:
    try:
        import httpx
    except ImportError as exc:
        raise MissingExtraError("openai", "httpx", "The OpenAI-compatible policy") from exc
    return httpx


def _data_url(image: Image.Image, fmt: Literal["png", "jpeg"], quality: int) -> str:
    buffer = io.BytesIO()
    if fmt == "jpeg":
        image.convert("RGB").save(buffer, format="JPEG", quality=quality)
    else:
        image.save(buffer, format="PNG")
    return f"data:image/{fmt};base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _one_line(text: str, limit: int = 300) -> str:
    """``text`` on one line (whitespace runs -> one space), at most ``limit`` characters."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def _shown(value: object) -> str:
    """A JSON value from a server, on one line and short (however large it is)."""
    try:
        text = str(value)[:1000]
    except (ValueError, RecursionError):  # an integer beyond Python's digit limit, deep nesting
        text = f"a {type(value).__name__}"
    return _one_line(text, 200)


def _server_detail(response: httpx.Response) -> str:
    """What a server said in an error answer, on one line (a JSON error's message, an HTML page's title)."""
    try:
        body = response.json()
    except ValueError:
        text = response.text
        title = re.search(r"<title[^>]*>(.*?)</title>", text[:10_000], re.IGNORECASE | re.DOTALL)
        return _one_line(title.group(1) if title else text)
    error = body.get("error", body) if isinstance(body, dict) else body
    if isinstance(error, dict):
        return _one_line(str(error.get("message") or error.get("detail") or error))
    if isinstance(body, dict) and "detail" in body:
        return _one_line(str(body["detail"]))
    return _one_line(str(error))


class OpenAICompatPolicy:
    """Asks a chat-completions server for each step. Thread-safe; close it when done."""

    name = "openai"

    def __init__(self, config: OpenAIConfig | None = None, /, *, transport: Any = None, **options: Any) -> None:
        """``OpenAICompatPolicy(base_url=..., model=...)`` or ``OpenAICompatPolicy(OpenAIConfig(...))``.

        ``options`` are OpenAIConfig fields (overriding ``config``'s); ``transport`` is an
        optional httpx transport.
        """
        try:
            config = dataclasses.replace(config, **options) if config is not None else OpenAIConfig(**options)
        except TypeError as exc:
            raise ConfigError(f"invalid option for the openai policy: {exc}") from exc
        self.config = config
        family = get_family(config.family)
        if config.coords is not None:
            codec_by_name(config.coords)  # raises on unknown names
            family = dataclasses.replace(family, coords=config.coords)
        self.family: ModelFamily = family
        hx = _import_httpx()
        api_key = config.api_key or next((os.environ[k] for k in API_KEY_ENV if os.environ.get(k)), None)
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        timeout = hx.Timeout(config.timeout_s, connect=config.connect_timeout_s)
        self._client: httpx.Client = hx.Client(
            headers=headers,
            timeout=timeout,
            transport=transport,
            limits=hx.Limits(max_connections=config.concurrency * len(config.api_urls)),
        )
        self._servers = ServerSet(config.api_urls, pause_s=config.server_pause_s)
        self._backoff = wait_exponential(multiplier=config.backoff_s, max=10.0)
        self._retrying = Retrying(
            # each server may be found unreachable once on top of the attempts
            stop=stop_after_attempt(config.attempts + len(self._servers) - 1),
            wait=self._wait,
            retry=retry_if_exception(self._is_transient),
            before_sleep=self._log_retry,
            reraise=True,
        )
        self._transport_errors: tuple[type[BaseException], ...] = (hx.TransportError,)
        self._unreachable_errors: tuple[type[BaseException], ...] = (hx.ConnectError, hx.ConnectTimeout)
        self._probe_timeout = hx.Timeout(min(config.timeout_s, 10.0), connect=min(config.connect_timeout_s, 5.0))
        self._limits = self._fit_limits()
        self._grammar_lock = threading.Lock()
        self._server_is_vllm: bool | None = None  # asked once, when a grammar is first wanted
        self._grammar_rejected = False

    def _fit_limits(self) -> GrammarLimits:
        """String caps for what is sent; checked against max_output_tokens when a constraint is sent."""
        cfg = self.config
        constrained = cfg.structured and (
            self.family.json_actions or (self.family.grammar is not None and cfg.grammar != "off")
        )
        if not constrained:  # nothing bounds the answer: only the server's max_tokens does
            defaults = GrammarLimits()
            return GrammarLimits(
                cfg.max_thought_chars or defaults.thought_chars,
                cfg.max_string_chars or defaults.string_chars,
                cfg.with_thought,
            )
        budget = fit_limits(
            self.family,
            cfg.max_output_tokens,
            thought_chars=cfg.max_thought_chars,
            string_chars=cfg.max_string_chars,
            with_thought=cfg.with_thought,
        )
        if budget.limits != GrammarLimits(with_thought=cfg.with_thought) and (
            cfg.max_thought_chars is None or cfg.max_string_chars is None
        ):
            log.info(
                "max_output_tokens=%d: the %s thought is capped at %d characters and typed text at %d, so that "
                "a constrained answer always fits (raise max_output_tokens for longer ones)",
                cfg.max_output_tokens,
                self.family.name,
                budget.limits.thought_chars,
                budget.limits.string_chars,
            )
        return budget.limits

    # --- Policy -----------------------------------------------------------------------------

    def decide(self, observation: Observation) -> Decision:
        cfg = self.config
        images = observation.prompt_images
        if cfg.max_images is not None and len(images) > cfg.max_images:
            images = images[-cfg.max_images :]
            observation = dataclasses.replace(observation, images=images)
        shown = images[-1].image.size
        grid = self.family.grid(shown)
        body: dict[str, object] = {
            "model": cfg.model,
            "messages": self._http_messages(build_messages(observation, self.family, with_thought=cfg.with_thought)),
            "temperature": cfg.temperature,
            "max_tokens": cfg.max_output_tokens,
        }
        if cfg.temperature > 0 and observation.sampling_seed is not None:
            body["seed"] = observation.sampling_seed  # OpenAI's and vLLM's per-request sampling seed
        if cfg.structured and self.family.json_actions:
            schema: JSONObject = bounded_schema(observation.capabilities, grid, self._limits)
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "step", "schema": schema, "strict": True},
            }
        elif cfg.structured and self.family.grammar is not None and self._grammar_wanted():
            grammar = self.family.lark_grammar(observation.capabilities, grid, self._limits)
            if grammar is not None:
                body["structured_outputs"] = {"grammar": _LLGUIDANCE_DIRECTIVE + grammar}
        grammar_sent = "structured_outputs" in body and "structured_outputs" not in cfg.extra_body
        body.update(cfg.extra_body)
        started = time.perf_counter()
        try:
            answer = self._post("/chat/completions", body, grammar=grammar_sent)
        except _GrammarRejected as exc:
            self._reject_grammar(exc.detail)
            body.pop("structured_outputs")
            answer = self._post("/chat/completions", body)
        latency = time.perf_counter() - started
        text, usage = self._read_answer(answer)
        usage.update({"latency_s": latency, "images": float(len(images))})
        step = self.family.read(text, grid, observation.capabilities)
        frame = observation.frame
        action = decode_action(step.action, self.family.codec(shown), frame.width, frame.height)
        log.debug("%s answered in %.2fs: %s", cfg.model, latency, text)
        return Decision(step=Step(thought=step.thought, action=action), raw=text, usage=MappingProxyType(usage))

    def decide_batch(self, observations: Sequence[Observation]) -> list[Decision | ModelError]:
        if not observations:
            return []

        def one(obs: Observation) -> Decision | ModelError:
            try:
                return self.decide(obs)
            except ModelError as exc:
                return exc

        workers = min(self.config.concurrency, len(observations))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="vlagent-openai") as pool:
            return list(pool.map(one, observations))

    @property
    def servers(self) -> list[dict[str, object]]:
        """Per server (credentials blanked): requests sent, times unreachable, requests in flight."""
        return self._servers.report()

    def close(self) -> None:
        if len(self._servers) > 1:
            log.info("requests per model server: %s", self._servers.report())
        self._client.close()

    def __enter__(self) -> OpenAICompatPolicy:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # --- grammar ------------------------------------------------------------------------------

    def _grammar_wanted(self) -> bool:
        """Whether to send the family's grammar in vLLM's field (the server is asked at most once)."""
        mode = self.config.grammar
        if mode == "off" or self._grammar_rejected:
            return False
        if mode == "vllm":
            return True
        with self._grammar_lock:  # concurrent first steps wait for one answer instead of asking each
            if self._server_is_vllm is None:
                self._server_is_vllm = self._is_vllm()
            return self._server_is_vllm

    def _is_vllm(self) -> bool:
        # Any doubt (no answer, no list) means "not vLLM": an unknown field must not reach other servers.
        found = any(m.get("owned_by") == "vllm" for m in self._model_entries(timeout=self._probe_timeout))
        if found:
            log.info("%s is vLLM: the %s grammar constrains its answers", self.config.api_url, self.family.name)
        else:
            log.info("%s is not vLLM: %s answers are parsed leniently", self.config.api_url, self.family.name)
        return found

    def _reject_grammar(self, detail: str) -> None:
        with self._grammar_lock:
            if self._grammar_rejected:
                return
            self._grammar_rejected = True
        log.warning(
            "the server at %s rejected the %s grammar (HTTP 400: %s); answers are parsed leniently from now on. "
            'vLLM takes it with --structured-outputs-config \'{"backend":"guidance"}\' (or "auto")',
            self.config.api_url,
            self.family.name,
            detail,
        )

    # --- HTTP ---------------------------------------------------------------------------------

    def _http_messages(self, messages: list[Message]) -> list[Message]:
        """Image parts -> data-URL parts; text-only content lists -> plain strings."""
        cfg = self.config
        out: list[Message] = []
        for message in messages:
            content = message.get("content")
            if isinstance(content, list):
                parts = []
                for part in content:
                    if part.get("type") == "image":
                        url = _data_url(part["image"], cfg.image_format, cfg.jpeg_quality)
                        parts.append({"type": "image_url", "image_url": {"url": url}})
                    else:
                        parts.append(part)
                if all(p.get("type") == "text" for p in parts):
                    # Some servers' templates accept only a string as system content.
                    out.append({**message, "content": "\n".join(str(p["text"]) for p in parts)})
                    continue
                content = parts
            out.append({**message, "content": content})
        return out

    def _is_transient(self, exc: BaseException) -> bool:
        return isinstance(exc, (_Transient, *self._transport_errors))

    def _wait(self, state: RetryCallState) -> float:
        """No wait after an unreachable server while another answers; else back off."""
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, self._unreachable_errors) and len(self._servers) > 1 and self._servers.any_up():
            return 0.0
        return float(self._backoff(state))

    def _log_retry(self, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        log.warning("model server request failed (attempt %d), retrying: %s", state.attempt_number, exc)

    def _post(self, path: str, body: Mapping[str, object], *, grammar: bool = False) -> dict[str, Any]:
        """POST with retries; ``grammar``: the body carries our grammar, and a 400 naming it is _GrammarRejected."""
        tried: list[str] = []
        slow: set[str] = set()
        try:
            response: httpx.Response = self._retrying(self._post_somewhere, path, body, tried, slow)
        except _TimedOut as exc:
            raise PolicyBackendError(self._unreachable(_named(tried), exc.__cause__ or exc, len(tried))) from exc
        except _Transient as exc:
            raise PolicyBackendError(
                f"the model server at {_named(tried)} kept failing (HTTP {exc.status}: {exc.detail}) after "
                f"{len(tried)} attempts; check the server's log"
            ) from exc
        except self._transport_errors as exc:
            raise PolicyBackendError(self._unreachable(_named(tried), exc, len(tried))) from exc
        url = tried[-1]
        if response.status_code == 400 and grammar:
            detail = _server_detail(response)
            if "grammar" in detail.lower() or "structured output" in detail.lower():
                raise _GrammarRejected(detail)
        if response.status_code >= 400:
            raise self._client_error(url, response)
        try:
            answer = response.json()
        except ValueError as exc:  # an HTML page, a truncated body, text from a proxy
            kind = response.headers.get("content-type", "no content type")
            raise PolicyBackendError(
                f"the server at {url} answered HTTP {response.status_code} with something that is not JSON "
                f"({kind}: {_one_line(response.text, 120)!r}); is --base-url an OpenAI-compatible server?"
            ) from exc
        if not isinstance(answer, dict):
            raise PolicyBackendError(f"the server at {url} answered with unexpected JSON: {_shown(answer)}")
        return answer

    def _post_somewhere(
        self, path: str, body: Mapping[str, object], tried: list[str], slow: set[str]
    ) -> httpx.Response:
        """One attempt on the least busy server (noted in ``tried``); one that cannot be reached is
        paused; once every server has been too slow (``slow``) the request gives up (_TimedOut)."""
        server = self._servers.acquire()
        tried.append(server.url + path)
        unreachable = False
        try:
            return self._post_once(server.url + path, body)
        except self._unreachable_errors:
            unreachable = True
            raise
        except _import_httpx().ReadTimeout as exc:
            slow.add(server.url)
            if len(slow) >= len(self._servers):
                raise _TimedOut() from exc
            raise
        finally:
            self._servers.release(server, unreachable=unreachable)

    def _post_once(self, url: str, body: Mapping[str, object]) -> httpx.Response:
        """One attempt: the whole answer within ``timeout_s`` and ``MAX_RESPONSE_BYTES``, or an error."""
        hx = _import_httpx()
        deadline = time.monotonic() + self.config.timeout_s
        with self._client.stream("POST", url, json=body) as streamed:
            chunks: list[bytes] = []
            size = 0
            for chunk in streamed.iter_bytes():
                size += len(chunk)
                if size > MAX_RESPONSE_BYTES:
                    raise PolicyBackendError(
                        f"the server at {url} sent more than {MAX_RESPONSE_BYTES // (1024 * 1024)} MB for one "
                        "answer; a chat completion is a few kilobytes: is --base-url right?"
                    )
                chunks.append(chunk)
                if time.monotonic() > deadline:  # a server that trickles bytes never trips the read timeout
                    raise hx.ReadTimeout(f"the answer took more than {self.config.timeout_s:g}s")
            # The body as read (decoded): headers that describe the encoded stream no longer apply.
            headers = [
                (k, v)
                for k, v in streamed.headers.items()
                if k.lower() not in ("content-encoding", "content-length", "transfer-encoding")
            ]
            response = hx.Response(
                streamed.status_code, headers=headers, content=b"".join(chunks), request=streamed.request
            )
        if response.status_code == 429 or response.status_code >= 500:
            raise _Transient(response.status_code, _server_detail(response))
        return response

    def _unreachable(self, url: str, exc: BaseException, attempts: int) -> str:
        kind = type(exc).__name__
        if "Timeout" in kind:
            return (
                f"the model server at {url} did not answer in time ({kind}, limit {self.config.timeout_s:g}s, "
                f"{attempts} attempt{'s' if attempts != 1 else ''}); is it overloaded or still loading the model? "
                "Raise the timeout or lower the image budget"
            )
        return (
            f"cannot reach the model server at {url} ({kind}: {_one_line(str(exc), 200)}). Check that the server "
            "is running and that --base-url is right (host, port, and usually a path ending in /v1)"
        )

    def _client_error(self, url: str, response: httpx.Response) -> PolicyBackendError:
        status = response.status_code
        detail = _server_detail(response)
        model = self.config.model
        if status == 404 and ("model" in detail.lower() or "does not exist" in detail.lower()):
            served = self._served_models()
            listed = f"; it serves: {', '.join(served)}" if served else ""
            return PolicyBackendError(f"the server at {url.rsplit('/', 2)[0]} has no model named '{model}'{listed}")
        if status == 404:
            return PolicyBackendError(f"{url} does not exist (HTTP 404: {detail}); the base URL usually ends in /v1")
        if status in (401, 403):
            return PolicyBackendError(
                f"the server at {url} refused the request (HTTP {status}: {detail}); "
                f"set the API key with --api-key or {API_KEY_ENV[0]}"
            )
        hint = ""
        if "image" in detail.lower() and ("at most" in detail.lower() or "limit" in detail.lower()):
            hint = "; the server limits images per prompt: pass --max-images (vLLM: --limit-mm-per-prompt)"
        return PolicyBackendError(f"the server at {url} rejected the request (HTTP {status}: {detail}){hint}")

    def _served_models(self) -> list[str]:
        return [str(m.get("id")) for m in self._model_entries()]

    def _model_entries(self, timeout: Any = None) -> list[dict[str, Any]]:
        """The entries of ``/v1/models`` (best effort: [] when the server does not answer with a list)."""
        url = self._servers.preferred().url + "/models"
        try:
            response = self._client.get(url, **({"timeout": timeout} if timeout is not None else {}))
            data = response.json().get("data") if response.status_code == 200 else None
        except Exception as exc:  # it only informs a choice or an error message
            log.info("could not list the models served at %s: %s", url, exc)
            return []
        return [m for m in data if isinstance(m, dict)] if isinstance(data, list) else []

    def _read_answer(self, answer: Mapping[str, Any]) -> tuple[str, dict[str, float]]:
        """(the answer's text, token usage) of a chat completion; raises ModelError subclasses only.

        An answer the server stopped at ``max_tokens`` (``finish_reason: length``) is refused with
        feedback, never parsed: repaired, half an answer could be executed.
        """
        choices = answer.get("choices")
        choice = choices[0] if isinstance(choices, list) and choices else None
        message = choice.get("message") if isinstance(choice, dict) else None
        if not isinstance(message, dict):
            raise PolicyBackendError(f"the server's answer has no choices[0].message: {_shown(answer)}")
        content = message.get("content")
        if isinstance(content, list):  # content parts: their text, in order
            content = "".join(str(p.get("text") or "") for p in content if isinstance(p, dict))
        if content is not None and not isinstance(content, str):
            raise PolicyBackendError(f"the server's answer content is not text: {_shown(content)}")
        text = content or ""
        usage = _usage(answer.get("usage"))
        if choice.get("finish_reason") == "length":  # type: ignore[union-attr]
            log.info("the model hit max_output_tokens=%d; its answer is refused", self.config.max_output_tokens)
            raise InvalidModelOutput(
                f"your answer was cut off at the limit of {self.config.max_output_tokens} tokens before it was "
                "complete. Answer again, shorter: a one-sentence thought and one action.",
                text,
            )
        if not text.strip():
            raise InvalidModelOutput("your answer was empty. Answer with one action in the format asked for.", text)
        return text, usage


def _named(tried: Sequence[str]) -> str:
    """The URL tried, or each of the URLs tried (in the order first tried), credentials blanked."""
    return ", ".join(dict.fromkeys(scrub_url(url) for url in tried))


def _usage(raw: object) -> dict[str, float]:
    """Token counts from a completion's ``usage`` (0 for anything missing or not a number)."""
    fields = raw if isinstance(raw, dict) else {}

    def count(name: str) -> float:
        value = fields.get(name)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            return float(value)
        return 0.0

    return {"prompt_tokens": count("prompt_tokens"), "completion_tokens": count("completion_tokens")}


def create_policy(**options: Any) -> OpenAICompatPolicy:
    """Registry factory: ``open_policy("openai", base_url=..., model=..., api_key=..., max_images=...)``."""
    if options.get("history") == "video":
        raise ConfigError("--history video needs the in-process qwen2vl policy; a served model is sent images")
    ignored = sorted(k for k in options if k in _SHARED_OPTIONS)
    if ignored:
        log.debug("openai policy ignores options %s (the memory uses them)", ignored)
    kept = {k: v for k, v in options.items() if k not in _SHARED_OPTIONS and v is not None}
    urls = kept.get("base_url")
    if isinstance(urls, (list, tuple)):  # the CLI's --base-url given several times, or a config file's list
        kept.pop("base_url")
        if urls:
            kept["base_url"], more = str(urls[0]), tuple(str(u) for u in urls[1:])
            kept["base_urls"] = (*more, *kept.get("base_urls", ()))
    if "no_constrain" in kept:  # the CLI's --no-constrain: no schema, no grammar
        kept["structured"] = not kept.pop("no_constrain")
    if "base_url" not in kept:
        raise ConfigError("the openai policy needs --base-url (e.g. http://127.0.0.1:8000/v1) and --model NAME")
    if "model" not in kept:
        raise ConfigError("the openai policy needs --model: the model name the server serves (see its /v1/models)")
    return OpenAICompatPolicy(**kept)
