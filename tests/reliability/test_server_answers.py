"""OpenAICompatPolicy against a real HTTP server on 127.0.0.1 that answers garbage, too much, or nothing.

Every broken answer must end ``decide`` with a ModelError (PolicyBackendError for the server's
fault, InvalidModelOutput for the model's, which the loop feeds back) carrying a one-line
message, within the configured timeout: a non-JSON body, an HTML error page, JSON without
``choices``, an empty ``choices``, null or non-text content, a reset connection, a body cut
short, 50 MB of body, a gzip bomb, a server that never answers and one that trickles bytes.
An answer the server stopped at ``max_tokens`` (``finish_reason: length``) is refused, never
parsed. The schema or grammar sent bounds every string so that the longest constrained
answer fits ``max_output_tokens``; caps that cannot fit are a ConfigError before any request.
"""

from __future__ import annotations

import gzip
import json
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from PIL import Image

from vlagent.actions import Click
from vlagent.drivers.base import DESKTOP_CAPABILITIES, PHONE_CAPABILITIES
from vlagent.errors import ConfigError, InvalidModelOutput, ModelError, PolicyBackendError
from vlagent.frames import Frame
from vlagent.policies.base import Decision, Observation
from vlagent.policies.budget import json_max_chars, lark_max_chars
from vlagent.policies.openai_compat import MAX_RESPONSE_BYTES, OpenAICompatPolicy

pytest.importorskip("httpx", reason="the openai extra provides httpx")

MODEL = "tiny"
Behaviour = Callable[[BaseHTTPRequestHandler], None]
STEP = json.dumps({"thought": "tap it", "action": {"action": "click", "x": 500, "y": 250}})


def completion(content: object, finish_reason: str = "stop", **extra: Any) -> dict[str, Any]:
    choice = {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": finish_reason}
    return {"id": "x", "object": "chat.completion", "choices": [choice], **extra}


def send(handler: BaseHTTPRequestHandler, status: int, body: bytes, content_type: str, **headers: str) -> None:
    handler.send_response(status)
    handler.send_header("Content-Type", content_type)
    handler.send_header("Content-Length", str(len(body)))
    for name, value in headers.items():
        handler.send_header(name.replace("_", "-"), value)
    handler.end_headers()
    handler.wfile.write(body)


def json_reply(payload: object, status: int = 200) -> Behaviour:
    return lambda h: send(h, status, json.dumps(payload).encode(), "application/json")


def raw_reply(body: bytes, content_type: str, status: int = 200) -> Behaviour:
    return lambda h: send(h, status, body, content_type)


class GarbageServer:
    """A real HTTP server whose chat-completions answer is whatever ``behaviour`` writes."""

    def __init__(self) -> None:
        self.behaviour: Behaviour = json_reply(completion(STEP))
        self.bodies: list[dict[str, Any]] = []
        self.posts = 0
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                send(self, 404, b'{"detail": "Not Found"}', "application/json")

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with server.lock:
                    server.posts += 1
                    server.bodies.append(json.loads(raw))
                try:
                    server.behaviour(self)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up reading: as it should
                    self.close_connection = True

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # a reset or abandoned connection is what these tests are about

        self.httpd = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> GarbageServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server() -> Iterator[GarbageServer]:
    with GarbageServer() as running:
        yield running


def _observation(capabilities: Any = PHONE_CAPABILITIES) -> Observation:
    frame = Frame(Image.new("RGB", (108, 240), "white"), width=1080, height=2400)
    return Observation("Turn on Wi-Fi.", frame, capabilities)


def _policy(server: GarbageServer, **options: Any) -> OpenAICompatPolicy:
    options.setdefault("backoff_s", 0.01)
    options.setdefault("attempts", 2)
    options.setdefault("timeout_s", 2.0)
    return OpenAICompatPolicy(base_url=server.url, model=MODEL, **options)


def _decide(server: GarbageServer, **options: Any) -> tuple[Decision | ModelError, float]:
    """(what decide gave: a Decision or the ModelError it raised, seconds taken); other exceptions fail."""
    started = time.monotonic()
    with _policy(server, **options) as policy:
        try:
            result: Decision | ModelError = policy.decide(_observation())
        except ModelError as exc:
            result = exc
    return result, time.monotonic() - started


def _error(server: GarbageServer, kind: type[ModelError], *words: str, **options: Any) -> ModelError:
    result, elapsed = _decide(server, **options)
    assert isinstance(result, kind), result
    message = str(result)
    assert "\n" not in message and len(message) < 700, message
    for word in words:
        assert word in message, message
    assert elapsed < 5, f"took {elapsed:.1f} s"
    return result


# --- what the server says --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "behaviour", "words"),
    [
        ("plain text", raw_reply(b"hello, I am not a model server", "text/plain"), ("not JSON",)),
        (
            "html page",
            raw_reply(
                b"<html><head><title>Welcome to nginx!</title></head>\n<body>\n<h1>hi</h1></body></html>", "text/html"
            ),
            ("not JSON", "text/html"),
        ),
        ("json list", json_reply([1, 2, 3]), ("unexpected JSON",)),
        ("no choices", json_reply({"object": "chat.completion", "usage": {}}), ("no choices[0].message",)),
        ("empty choices", json_reply({"choices": []}), ("no choices[0].message",)),
        ("choice is text", json_reply({"choices": ["hello"]}), ("no choices[0].message",)),
        ("no message", json_reply({"choices": [{"finish_reason": "stop"}]}), ("no choices[0].message",)),
        ("content is a number", json_reply(completion(42)), ("not text",)),
        ("content is an object", json_reply(completion({"action": "click"})), ("not text",)),
        ("truncated json", raw_reply(b'{"choices": [{"message": {"content": "hel', "application/json"), ("not JSON",)),
    ],
)
def test_a_garbage_body_is_a_one_line_backend_error(
    server: GarbageServer, name: str, behaviour: Behaviour, words: tuple[str, ...]
) -> None:
    server.behaviour = behaviour
    _error(server, PolicyBackendError, *words)
    assert server.posts == 1  # an answer, however wrong, is not retried


def test_an_html_error_page_is_retried_then_named_by_its_title(server: GarbageServer) -> None:
    page = b"<html>\n<head><title>502 Bad Gateway</title></head>\n<body><center>nginx</center></body>\n</html>\n"
    server.behaviour = raw_reply(page, "text/html", status=502)
    _error(server, PolicyBackendError, "HTTP 502", "502 Bad Gateway", attempts=3)
    assert server.posts == 3


@pytest.mark.parametrize("content", [None, "", "   \n"])
def test_empty_content_is_fed_back(server: GarbageServer, content: str | None) -> None:
    server.behaviour = json_reply(completion(content))
    _error(server, InvalidModelOutput, "empty")


@pytest.mark.parametrize(
    "content",
    [
        '{"thought": "I will tap the Wi-Fi toggle which is located at the top of the',
        '{"thought": "t", "action": {"action": "type", "text": "hel',
        STEP,  # even a complete-looking answer: the server says it stopped at the limit
        None,
    ],
)
def test_an_answer_stopped_at_max_tokens_is_fed_back_not_parsed(server: GarbageServer, content: str | None) -> None:
    server.behaviour = json_reply(completion(content, finish_reason="length"))
    error = _error(server, InvalidModelOutput, "cut off", "512 tokens")
    assert isinstance(error, InvalidModelOutput) and error.raw == (content or "")


def test_content_parts_and_garbage_usage_still_give_a_decision(server: GarbageServer) -> None:
    parts = [{"type": "text", "text": STEP[:20]}, {"type": "text", "text": STEP[20:]}]
    server.behaviour = json_reply(completion(parts, usage={"prompt_tokens": "many", "completion_tokens": None}))
    result, _ = _decide(server)
    assert isinstance(result, Decision), result
    assert result.action == Click(x=540, y=600)
    assert result.usage["prompt_tokens"] == 0.0


def test_a_wrong_content_type_with_a_valid_completion_is_read(server: GarbageServer) -> None:
    server.behaviour = raw_reply(json.dumps(completion(STEP)).encode(), "text/html; charset=utf-8")
    result, _ = _decide(server)
    assert isinstance(result, Decision) and result.action == Click(x=540, y=600)


# --- how much the server sends ------------------------------------------------------------------------


def _fifty_megabytes(handler: BaseHTTPRequestHandler) -> None:
    size = 50 * 1024 * 1024
    head = b'{"choices": [{"message": {"content": "'
    handler.send_response(200)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(size))
    handler.end_headers()
    handler.wfile.write(head)
    chunk = b"a" * (1024 * 1024)
    for _ in range(50):
        handler.wfile.write(chunk)


def _gzip_bomb(handler: BaseHTTPRequestHandler) -> None:
    bomb = gzip.compress(b'{"choices": [{"message": {"content": "' + b" " * (64 * 1024 * 1024), compresslevel=9)
    send(handler, 200, bomb, "application/json", Content_Encoding="gzip")


@pytest.mark.parametrize("behaviour", [_fifty_megabytes, _gzip_bomb], ids=["50 MB", "gzip bomb"])
def test_a_huge_body_is_refused_after_the_cap(server: GarbageServer, behaviour: Behaviour) -> None:
    server.behaviour = behaviour
    _error(server, PolicyBackendError, f"more than {MAX_RESPONSE_BYTES // (1024 * 1024)} MB")


def test_a_huge_answer_inside_the_cap_is_fed_back(server: GarbageServer) -> None:
    server.behaviour = json_reply(completion("a" * (4 * 1024 * 1024)))
    _error(server, InvalidModelOutput, "characters long")


# --- the connection -----------------------------------------------------------------------------------


def _reset(handler: BaseHTTPRequestHandler) -> None:
    handler.request.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    handler.request.close()  # RST, no answer at all
    handler.close_connection = True


def _cut_short(handler: BaseHTTPRequestHandler) -> None:
    handler.send_response(200)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", "5000")
    handler.end_headers()
    handler.wfile.write(b'{"choices": [')
    handler.wfile.flush()
    _reset(handler)


@pytest.mark.parametrize("behaviour", [_reset, _cut_short], ids=["reset", "body cut short"])
def test_a_broken_connection_is_retried_then_a_backend_error(server: GarbageServer, behaviour: Behaviour) -> None:
    server.behaviour = behaviour
    _error(server, PolicyBackendError, "cannot reach the model server", attempts=3)
    assert server.posts == 3


def test_a_server_that_never_answers_is_given_up_on_within_the_timeout(server: GarbageServer) -> None:
    server.behaviour = lambda handler: time.sleep(30)
    result, elapsed = _decide(server, timeout_s=0.5, attempts=2)
    assert isinstance(result, PolicyBackendError) and "did not answer in time" in str(result), result
    assert elapsed < 2 * 0.5 + 1.5, f"took {elapsed:.1f} s for 2 attempts of 0.5 s"


def test_a_server_that_trickles_bytes_is_given_up_on_within_the_timeout(server: GarbageServer) -> None:
    def trickle(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", "100000")
        handler.end_headers()
        for _ in range(300):  # one byte every 0.1 s: each read is quick, the whole never ends
            handler.wfile.write(b" ")
            handler.wfile.flush()
            time.sleep(0.1)

    server.behaviour = trickle
    result, elapsed = _decide(server, timeout_s=0.5, attempts=1)
    assert isinstance(result, PolicyBackendError) and "did not answer in time" in str(result), result
    assert elapsed < 0.5 + 1.5, f"took {elapsed:.1f} s with a 0.5 s timeout"


# --- what is sent: every string bounded, the longest answer within max_tokens -----------------------------


def _free_strings(node: Any, path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    if isinstance(node, dict):
        if node.get("type") == "string" and "enum" not in node and "const" not in node:
            yield path, node
        for key, value in node.items():
            yield from _free_strings(value, f"{path}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _free_strings(value, f"{path}/{i}")


@pytest.mark.parametrize("capabilities", [PHONE_CAPABILITIES, DESKTOP_CAPABILITIES], ids=["phone", "desktop"])
@pytest.mark.parametrize("max_tokens", [160, 256, 512, 2048])
def test_the_schema_sent_bounds_every_string_and_fits_max_tokens(
    server: GarbageServer, capabilities: Any, max_tokens: int
) -> None:
    with _policy(server, max_output_tokens=max_tokens) as policy:
        policy.decide(_observation(capabilities))
    (body,) = server.bodies
    assert body["max_tokens"] == max_tokens
    schema = body["response_format"]["json_schema"]["schema"]
    strings = dict(_free_strings(schema))
    assert {"/properties/thought", "/$defs/Type/properties/text"} <= set(strings), sorted(strings)
    for path, node in strings.items():
        assert isinstance(node.get("maxLength"), int), f"{path} has no maxLength"
        limit = 200 if path.endswith("thought") else 120  # never above the in-process policy's caps
        assert node["maxLength"] <= limit, (path, node)
    assert json_max_chars(schema) <= max_tokens


def test_a_small_max_tokens_shortens_the_strings_rather_than_losing_answers(server: GarbageServer) -> None:
    with _policy(server, max_output_tokens=200) as policy:
        policy.decide(_observation())
    schema = server.bodies[0]["response_format"]["json_schema"]["schema"]
    assert 16 <= schema["properties"]["thought"]["maxLength"] < 200


@pytest.mark.parametrize("family", ["uitars", "uitars15", "qwen25vl", "qwen3vl", "showui"])
def test_the_grammar_sent_fits_max_tokens(server: GarbageServer, family: str) -> None:
    server.behaviour = json_reply(completion("not an answer"))
    with (
        _policy(server, family=family, grammar="vllm", max_output_tokens=300) as policy,
        pytest.raises(InvalidModelOutput),
    ):
        policy.decide(_observation())
    grammar = server.bodies[0]["structured_outputs"]["grammar"]
    assert lark_max_chars(grammar) <= 300, grammar


def test_caps_that_cannot_fit_are_a_config_error_before_any_request(server: GarbageServer) -> None:
    with pytest.raises(ConfigError, match="max_output_tokens=128"):
        _policy(server, max_output_tokens=128, max_thought_chars=200, max_string_chars=120)
    with pytest.raises(ConfigError, match="even with the shortest strings"):
        _policy(server, max_output_tokens=40)
    assert server.posts == 0
    # without a constraint nothing has to fit (the answer is parsed leniently, cut-offs fed back)
    _policy(server, max_output_tokens=40, structured=False).close()


# --- the budget itself: its longest answer is at least any real answer ---------------------------------


def test_the_longest_answer_is_counted_exactly_for_simple_grammars() -> None:
    assert lark_max_chars('start: "ab" X?\nX: /[a-c]{1,5}/\n') == 7
    assert lark_max_chars('start: a | b\na: "xyz"\nb: ("q" | "rs"){0,3} <|box_start|>\n') == 7
    assert lark_max_chars('start: "ab" x\nx: "c" x\n') == float("inf")  # recursion: unbounded
    assert lark_max_chars('start: "<" c ">"\nc: %json {"type": "string", "maxLength": 4}\n') == 8
    schema = {"type": "object", "properties": {"a": {"type": "integer", "minimum": -5, "maximum": 100}}}
    assert json_max_chars(schema) == len('{"a": 100}')
    assert json_max_chars({"type": "array", "items": {"type": "boolean"}}) == float("inf")  # no maxItems


def test_the_longest_real_answers_are_within_the_count() -> None:
    from vlagent.policies.budget import bounded_schema
    from vlagent.policies.families.base import GrammarLimits
    from vlagent.policies.prompt import get_family

    limits = GrammarLimits(50, 30)
    thought, text = "t" * 50, "\\n" * 30  # every character of the text escaped
    step = {"thought": thought, "action": {"action": "type", "text": "x" * 30, "submit": False}}
    schema = bounded_schema(PHONE_CAPABILITIES, (1000, 1000), limits)
    assert len(json.dumps(step)) <= json_max_chars(schema) < 400
    tars = f"Thought: {thought}\nAction: finished(content='{text}')"
    grammar = get_family("uitars").lark_grammar(PHONE_CAPABILITIES, (1000, 1000), limits)
    assert grammar is not None and len(tars) <= lark_max_chars(grammar) < 400
    call = {"name": "mobile_use", "arguments": {"action": "swipe", "coordinate": [999, 999], "coordinate2": [999, 999]}}
    qwen3 = f'Thought: {thought}\nAction: "{"s" * 50}"\n<tool_call>\n{json.dumps(call)}\n</tool_call>'
    grammar = get_family("qwen3vl").lark_grammar(PHONE_CAPABILITIES, (999, 999), limits)
    assert grammar is not None and len(qwen3) <= lark_max_chars(grammar) < 400
