"""OpenAICompatPolicy against a real HTTP server on 127.0.0.1 that answers the way vLLM does.

The server (stdlib http.server in a thread) records every request so the tests can check
its shape, and answers from a queue of responders: functions of the request body that
return (status, JSON body) or sleep first to play a slow server.
"""

from __future__ import annotations

import base64
import io
import json
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from PIL import Image

from vlagent.actions import Click, Key
from vlagent.agent import EndReason, run_episode
from vlagent.drivers.base import PHONE_CAPABILITIES
from vlagent.drivers.sim import SimDriver
from vlagent.errors import InvalidModelOutput, MissingExtraError, PolicyBackendError
from vlagent.frames import Frame
from vlagent.policies.base import Observation, step_seed
from vlagent.policies.budget import bounded_schema
from vlagent.policies.families.base import GrammarLimits
from vlagent.policies.openai_compat import OpenAICompatPolicy, create_policy
from vlagent.policies.registry import open_policy
from vlagent.tasks import get_task

pytest.importorskip("httpx", reason="the openai extra provides httpx")

MODEL = "tiny-qwen2-vl"
Reply = tuple[int, dict[str, Any]]
Responder = Callable[[dict[str, Any]], Reply]


def completion(content: str, *, prompt_tokens: int = 321, completion_tokens: int = 17) -> Reply:
    """A chat completion as vLLM returns it."""
    return 200, {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 0,
        "model": MODEL,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


def vllm_error(status: int, message: str, kind: str) -> Reply:
    return status, {"object": "error", "message": message, "type": kind, "param": None, "code": status}


def step_json(action: dict[str, Any], thought: str = "next") -> str:
    return json.dumps({"thought": thought, "action": action})


@dataclass
class FakeVLLM:
    """Records requests; answers from ``responders`` in order, then from ``default``."""

    url: str = ""
    requests: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    responders: list[Responder] = field(default_factory=list)
    default: Responder | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    owned_by: str | None = "vllm"
    """What ``/v1/models`` says owns the model (vLLM: "vllm"); None: the endpoint is missing (404)."""
    model_lists: int = 0

    def answer(self, body: dict[str, Any]) -> Reply:
        if body.get("model") != MODEL:
            return vllm_error(404, f"The model `{body.get('model')}` does not exist.", "NotFoundError")
        with self.lock:
            responder = self.responders.pop(0) if self.responders else self.default
        assert responder is not None, "the test server has no answer left"
        return responder(body)


@pytest.fixture
def server() -> Iterator[FakeVLLM]:
    fake = FakeVLLM()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:  # keep pytest output clean
            pass

        def _send(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path == "/v1/models" and fake.owned_by is not None:
                with fake.lock:
                    fake.model_lists += 1
                self._send(
                    200, {"object": "list", "data": [{"id": MODEL, "object": "model", "owned_by": fake.owned_by}]}
                )
            else:
                self._send(404, {"detail": "Not Found"})

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if self.path != "/v1/chat/completions":
                self._send(404, {"detail": "Not Found"})
                return
            with fake.lock:
                fake.requests.append(body)
                fake.headers.append(dict(self.headers))
            self._send(*fake.answer(body))

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    fake.url = f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    try:
        yield fake
    finally:
        httpd.shutdown()
        httpd.server_close()


def _frame(color: str, size: tuple[int, int] = (108, 240)) -> Frame:
    return Frame(Image.new("RGB", size, color), width=size[0] * 10, height=size[1] * 10)


def _observation(images: tuple[Frame, ...] = (), **kw: Any) -> Observation:
    current = images[-1] if images else _frame("white")
    return Observation("Turn on Wi-Fi.", current, PHONE_CAPABILITIES, images=images, **kw)


def _policy(server: FakeVLLM, **options: Any) -> OpenAICompatPolicy:
    options.setdefault("backoff_s", 0.01)
    return OpenAICompatPolicy(base_url=server.url, model=MODEL, **options)


def _images_sent(request: dict[str, Any]) -> list[Image.Image]:
    found = []
    for message in request["messages"]:
        if not isinstance(message["content"], list):
            continue
        for part in message["content"]:
            if part["type"] == "image_url":
                prefix, _, data = part["image_url"]["url"].partition(",")
                assert prefix == "data:image/png;base64"
                found.append(Image.open(io.BytesIO(base64.b64decode(data))))
    return found


# --- one request -------------------------------------------------------------------------


def test_request_has_the_vllm_shape_and_the_answer_lands_in_device_pixels(
    server: FakeVLLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VLAGENT_API_KEY", "sekret")
    server.responders.append(lambda body: completion(step_json({"action": "click", "x": 500, "y": 250})))
    with _policy(server) as policy:
        decision = policy.decide(_observation(feedback="x must be 0..1000", hint="the screen did not change"))

    # 1080x2400 logical screen: 0-1000 grid -> pixels
    assert decision.action == Click(x=540, y=600)
    assert decision.step.thought == "next"
    assert decision.usage["prompt_tokens"] == 321 and decision.usage["completion_tokens"] == 17
    assert decision.usage["latency_s"] > 0
    (request,) = server.requests
    assert server.headers[0]["Authorization"] == "Bearer sekret"
    assert request["model"] == MODEL
    assert request["temperature"] == 0.0
    system, user = request["messages"]
    assert system["role"] == "system" and "Turn on Wi-Fi." in system["content"]
    assert user["role"] == "user"
    texts = " ".join(p["text"] for p in user["content"] if p["type"] == "text")
    assert "x must be 0..1000" in texts and "the screen did not change" in texts
    (image,) = _images_sent(request)
    assert image.size == (108, 240)
    fmt = request["response_format"]
    assert fmt["type"] == "json_schema"
    assert fmt["json_schema"]["name"] == "step" and fmt["json_schema"]["strict"] is True
    # every free string capped (thought 200, others 120) so that the longest answer fits max_tokens
    assert fmt["json_schema"]["schema"] == bounded_schema(PHONE_CAPABILITIES, (1000, 1000), GrammarLimits())


def test_a_sampling_request_carries_the_steps_seed(server: FakeVLLM) -> None:
    answer = completion(step_json({"action": "click", "x": 500, "y": 250}))
    server.responders.extend([lambda body: answer] * 3)
    with _policy(server, temperature=0.7) as policy:
        policy.decide(_observation(seed=9, step_index=2))
        policy.decide(_observation())
    with _policy(server) as greedy:
        greedy.decide(_observation(seed=9, step_index=2))
    seeded, unseeded, greedy_request = server.requests
    assert seeded["seed"] == step_seed(9, 2) and seeded["temperature"] == 0.7
    assert "seed" not in unseeded and "seed" not in greedy_request  # greedy decoding draws nothing


def test_only_the_newest_images_are_sent_oldest_first(server: FakeVLLM) -> None:
    server.default = lambda body: completion(step_json({"action": "wait"}))
    frames = (_frame("red"), _frame("green"), _frame("blue"))
    with _policy(server, max_images=2) as policy:
        decision = policy.decide(_observation(frames))
    sent = _images_sent(server.requests[0])
    assert [im.convert("RGB").getpixel((0, 0)) for im in sent] == [(0, 128, 0), (0, 0, 255)]
    assert decision.usage["images"] == 2


def test_free_text_mode_parses_a_fenced_answer_without_response_format(server: FakeVLLM) -> None:
    fenced = '```json\n{"thought": "home", "action": {"action": "key", "key": "home"}}\n```<|im_end|>'
    server.responders.append(lambda body: completion(fenced))
    with _policy(server, structured=False) as policy:
        decision = policy.decide(_observation())
    assert decision.action == Key(key="home")
    assert decision.raw == fenced
    assert "response_format" not in server.requests[0]


def test_invalid_answer_raises_feedback_for_the_model(server: FakeVLLM) -> None:
    server.responders.append(lambda body: completion('{"action": "click", "x": 1500, "y": 10}'))
    with _policy(server) as policy, pytest.raises(InvalidModelOutput) as info:
        policy.decide(_observation())
    assert "outside the screen" in info.value.feedback
    assert info.value.raw == '{"action": "click", "x": 1500, "y": 10}'


# --- the server misbehaves -----------------------------------------------------------------


def test_a_500_is_retried(server: FakeVLLM) -> None:
    server.responders += [
        lambda body: vllm_error(500, "CUDA error: an illegal memory access", "InternalServerError"),
        lambda body: completion(step_json({"action": "done"})),
    ]
    with _policy(server) as policy:
        decision = policy.decide(_observation())
    assert decision.action.action == "done"
    assert len(server.requests) == 2


def test_a_server_that_keeps_failing_is_a_backend_error(server: FakeVLLM) -> None:
    server.default = lambda body: vllm_error(503, "engine is sleeping", "ServiceUnavailableError")
    with _policy(server, attempts=3) as policy, pytest.raises(PolicyBackendError) as info:
        policy.decide(_observation())
    assert len(server.requests) == 3
    assert "HTTP 503" in str(info.value) and "engine is sleeping" in str(info.value)


def test_wrong_model_name_lists_the_served_models(server: FakeVLLM) -> None:
    policy = OpenAICompatPolicy(base_url=server.url, model="Qwen/Qwen2-VL-7B")
    with policy, pytest.raises(PolicyBackendError) as info:
        policy.decide(_observation())
    message = str(info.value)
    assert "no model named 'Qwen/Qwen2-VL-7B'" in message and MODEL in message
    assert len(server.requests) == 1  # a 404 is not retried


def test_server_down_names_the_url_and_what_to_check() -> None:
    with socket.socket() as sock:  # a port that nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    started = time.perf_counter()
    policy = OpenAICompatPolicy(base_url=f"http://127.0.0.1:{port}", model=MODEL, attempts=2, backoff_s=0.01)
    with policy, pytest.raises(PolicyBackendError) as info:
        policy.decide(_observation())
    message = str(info.value)
    assert f"http://127.0.0.1:{port}/v1/chat/completions" in message
    assert "Check that the server is running" in message
    assert time.perf_counter() - started < 5


def test_a_slow_server_times_out(server: FakeVLLM) -> None:
    def slow(body: dict[str, Any]) -> Reply:
        time.sleep(1.0)
        return completion(step_json({"action": "wait"}))

    server.default = slow
    with _policy(server, timeout_s=0.2, attempts=1) as policy, pytest.raises(PolicyBackendError) as info:
        policy.decide(_observation())
    assert "did not answer in time" in str(info.value)


def test_a_server_too_slow_is_not_asked_again_and_again(server: FakeVLLM) -> None:
    """A timeout is not retried on the server that timed out: asking again would wait as long
    again, so the worst case is one timeout (per server), not ``attempts`` of them."""

    def slow(body: dict[str, Any]) -> Reply:
        time.sleep(1.0)
        return completion(step_json({"action": "wait"}))

    server.default = slow
    started = time.perf_counter()
    with _policy(server, timeout_s=0.3, attempts=4) as policy, pytest.raises(PolicyBackendError) as info:
        policy.decide(_observation())
    assert time.perf_counter() - started < 0.9
    assert len(server.requests) == 1
    assert "did not answer in time" in str(info.value) and "1 attempt)" in str(info.value)


def test_decide_batch_runs_requests_concurrently(server: FakeVLLM) -> None:
    def slow(body: dict[str, Any]) -> Reply:
        time.sleep(0.3)
        task = body["messages"][0]["content"]
        return completion(step_json({"action": "type", "text": task.split("Task: ")[1].split("\n")[0]}))

    server.default = slow
    observations = [Observation(f"task {i}", _frame("white"), PHONE_CAPABILITIES) for i in range(4)]
    with _policy(server, concurrency=4) as policy:
        started = time.perf_counter()
        results = policy.decide_batch(observations)
        elapsed = time.perf_counter() - started
    assert [getattr(r.action, "text", None) for r in results] == ["task 0", "task 1", "task 2", "task 3"]  # type: ignore[union-attr]
    assert elapsed < 0.9, f"4 requests of 0.3 s took {elapsed:.2f} s: not concurrent"


def test_decide_batch_returns_model_errors_in_place(server: FakeVLLM) -> None:
    server.responders += [
        lambda body: completion("I cannot see the screen."),
        lambda body: completion(step_json({"action": "done"})),
    ]
    with _policy(server, concurrency=1) as policy:
        first, second = policy.decide_batch([_observation(), _observation()])
    assert isinstance(first, InvalidModelOutput) and "no JSON object" in first.feedback
    assert not isinstance(second, Exception) and second.action.action == "done"


# --- configuration -------------------------------------------------------------------------


def test_registry_factory_and_base_url_without_v1(server: FakeVLLM) -> None:
    server.responders.append(lambda body: completion(step_json({"action": "wait"})))
    root = server.url.removesuffix("/v1")
    # the CLI passes memory options too; the policy ignores them
    policy = open_policy("openai", base_url=root, model=MODEL, max_pixels=200_000, api_key="k")
    try:
        assert policy.decide(_observation()).action.action == "wait"
    finally:
        policy.close()  # type: ignore[attr-defined]
    assert server.headers[0]["Authorization"] == "Bearer k"


def test_missing_options_are_config_errors() -> None:
    from vlagent.errors import ConfigError

    with pytest.raises(ConfigError, match="--base-url"):
        create_policy(model=MODEL)
    with pytest.raises(ConfigError, match="--model"):
        create_policy(base_url="http://127.0.0.1:1/v1")
    with pytest.raises(ConfigError, match="invalid option"):
        create_policy(base_url="http://127.0.0.1:1/v1", model=MODEL, temprature=0.5)


def test_without_httpx_the_install_hint_is_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "httpx", None)
    with pytest.raises(MissingExtraError, match=r"vlagent\[openai\]"):
        OpenAICompatPolicy(base_url="http://127.0.0.1:1/v1", model=MODEL)


# --- a whole episode on the simulated phone --------------------------------------------------


def test_episode_on_the_simulated_phone_with_feedback_after_a_garbage_answer(server: FakeVLLM) -> None:
    driver = SimDriver()
    phone = driver.phone
    task = get_task("wifi")

    def tap(label: str) -> Responder:
        def respond(body: dict[str, Any]) -> Reply:
            # the server plays a model that finds the label on the current screen, in 0-1000
            point = phone.locate(label)
            assert point is not None, f"{label} is not on screen"
            x, y = round(point[0] / phone.width * 1000), round(point[1] / phone.height * 1000)
            return completion(step_json({"action": "click", "x": x, "y": y}, f"tap {label}"))

        return respond

    def reveal_then_tap(label: str) -> Responder:
        def respond(body: dict[str, Any]) -> Reply:
            if phone.locate(label) is None:
                server.responders.insert(0, respond)  # ask again after scrolling
                return completion(step_json({"action": "scroll", "direction": "down"}))
            return tap(label)(body)

        return respond

    server.responders += [
        lambda body: completion("Sure, I will open the settings app now."),  # no JSON: fed back
        tap("Settings"),
        reveal_then_tap("Wi-Fi"),
        lambda body: completion(step_json({"action": "done", "status": "success"}, "Wi-Fi is on")),
    ]
    with _policy(server) as policy:
        episode = run_episode(task.instruction, driver, policy, max_steps=10)

    assert episode.end is EndReason.DONE_SUCCESS, episode.detail
    assert task.passed(driver.state()), "the phone's Wi-Fi toggle must really be on"
    assert episode.invalid_outputs == 1
    retry = server.requests[1]["messages"][1]["content"][-1]["text"]
    assert "Your previous answer was rejected" in retry and "no JSON object found" in retry
    assert episode.steps[0].decision.step.thought == "tap Settings"
    first_tap = episode.steps[0].action
    assert isinstance(first_tap, Click)
    settings_point = SimDriver().phone.locate("Settings")
    assert settings_point is not None
    # the 0-1000 round trip lands within one grid cell of the label's centre
    assert abs(first_tap.x - settings_point[0]) <= phone.width / 1000 + 1
    assert abs(first_tap.y - settings_point[1]) <= phone.height / 1000 + 1


# --- a real vLLM server, when one is running --------------------------------------------------


# --- grammars of non-JSON families in vLLM's field ------------------------------------------------

TARS_CLICK = "Thought: tap it\nAction: click(point='<point>54 120</point>')"


def _tars_policy(server: FakeVLLM, **options: Any) -> OpenAICompatPolicy:
    return OpenAICompatPolicy(base_url=server.url, model=MODEL, family="uitars15", backoff_s=0.01, **options)


def test_a_vllm_server_gets_the_familys_grammar_with_the_string_caps(server: FakeVLLM) -> None:
    server.default = lambda body: completion(TARS_CLICK)
    with _tars_policy(server, max_thought_chars=40, max_string_chars=24) as policy:
        decisions = [policy.decide(_observation()) for _ in range(3)]
    # the screenshot is 108x240 (device 1080x2400): the point lands in device pixels
    assert decisions[0].action == Click(x=540, y=1200)
    assert server.model_lists == 1  # asked once, not per step
    for body in server.requests:
        assert "response_format" not in body
        grammar = body["structured_outputs"]["grammar"]
        assert grammar.startswith("%llguidance {}\n")  # so vLLM's "auto" backend picks llguidance
        assert 'start: thought "Action: " call' in grammar and "/[^\\n]{1,40}/" in grammar
        assert "{1,24}/" in grammar
        assert "Y: /" in grammar and "|240)/" in grammar  # coordinates bounded by the image shown


def test_grammar_vllm_sends_it_without_asking_the_server(server: FakeVLLM) -> None:
    server.owned_by = None  # no /v1/models at all
    server.default = lambda body: completion(TARS_CLICK)
    with _tars_policy(server, grammar="vllm") as policy:
        policy.decide(_observation())
    assert "grammar" in server.requests[0]["structured_outputs"]
    assert server.model_lists == 0


@pytest.mark.parametrize(
    ("owned_by", "options"),
    [("openai", {}), (None, {}), ("vllm", {"grammar": "off"}), ("vllm", {"structured": False})],
    ids=["other-server", "no-models-endpoint", "grammar-off", "structured-off"],
)
def test_no_grammar_field_for_other_servers_or_when_off(
    server: FakeVLLM, owned_by: str | None, options: dict[str, Any]
) -> None:
    server.owned_by = owned_by
    server.default = lambda body: completion("Thought: ok\nAction: press_back()")
    with _tars_policy(server, **options) as policy:
        decision = policy.decide(_observation())
        policy.decide(_observation())
    assert decision.action == Key(key="back")  # parsed leniently from the family's own format
    assert all("structured_outputs" not in body and "response_format" not in body for body in server.requests)
    assert server.model_lists <= 1


def test_json_families_keep_response_format_and_never_ask_what_the_server_is(server: FakeVLLM) -> None:
    server.default = lambda body: completion(step_json({"action": "key", "key": "back"}))
    with OpenAICompatPolicy(base_url=server.url, model=MODEL) as policy:
        policy.decide(_observation())
    assert "response_format" in server.requests[0] and "structured_outputs" not in server.requests[0]
    assert server.model_lists == 0


def test_a_rejected_grammar_warns_once_and_later_steps_are_parsed_leniently(
    server: FakeVLLM, caplog: pytest.LogCaptureFixture
) -> None:
    def answer(body: dict[str, Any]) -> Reply:
        if "structured_outputs" in body:
            return vllm_error(400, "Invalid grammar specification.", "BadRequestError")
        return completion("```\nThought: fine\nAction: click(point='<point>54 120</point>')\n```")

    server.default = answer
    with _tars_policy(server) as policy:
        decisions = policy.decide_batch([_observation()] * 3)
        decisions.append(policy.decide(_observation()))
    assert all(not isinstance(d, Exception) and d.action == Click(x=540, y=1200) for d in decisions), decisions
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "rejected the uitars15 grammar" in warnings[0], warnings
    assert "Invalid grammar specification" in warnings[0] and '"backend":"guidance"' in warnings[0]
    with_grammar = [body for body in server.requests if "structured_outputs" in body]
    # the concurrent first steps may each have sent it once; nothing after the warning does
    assert 1 <= len(with_grammar) <= 3 and "structured_outputs" not in server.requests[-1]
    assert len(server.requests) == 4 + len(with_grammar)


def test_a_400_that_is_not_about_the_grammar_is_still_an_error(server: FakeVLLM) -> None:
    server.default = lambda body: vllm_error(400, "At most 2 image(s) may be provided in one prompt.", "BadRequest")
    with _tars_policy(server) as policy, pytest.raises(PolicyBackendError, match="--max-images"):
        policy.decide(_observation())
    assert len(server.requests) == 1 and "structured_outputs" in server.requests[0]


def test_no_constrain_from_the_cli_turns_the_grammar_off(server: FakeVLLM) -> None:
    server.default = lambda body: completion(TARS_CLICK)
    with create_policy(base_url=server.url, model=MODEL, family="uitars15", no_constrain=True) as policy:
        assert policy.config.structured is False
        policy.decide(_observation())
    assert "structured_outputs" not in server.requests[0]


@pytest.mark.parametrize("temperature", [float("nan"), float("inf"), -0.5])
def test_a_temperature_that_is_not_a_finite_number_is_refused(temperature: float) -> None:
    from vlagent.errors import ConfigError
    from vlagent.policies.openai_compat import OpenAIConfig

    with pytest.raises(ConfigError, match="temperature must be a finite number"):
        OpenAIConfig(base_url="http://127.0.0.1:9/v1", model=MODEL, temperature=temperature)
