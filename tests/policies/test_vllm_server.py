"""OpenAICompatPolicy end to end against a real vLLM server (CPU build, tiny random Qwen2-VL).

The server is started once per session by ``tools/vllm_cpu_server.py`` (about 30 s, ~3 GB
RSS) and stopped by its PID at the end. Without the prepared virtualenv these tests skip
and say how to prepare it; with ``VLAGENT_REQUIRE_VLLM=1`` (set by CI after preparing it)
they fail instead, so a broken install cannot pass unnoticed.

What only a real server can show is tested here: its structured-output backend keeps a
random model inside our step schema, and inside each non-JSON family's Lark grammar (sent
in vLLM's ``structured_outputs`` field), its 400 for a grammar it cannot take, its
``--limit-mm-per-prompt`` and ``--max-model-len`` rejections, its 404 for an unknown model.
Malformed replies and timeouts stay with the fake server in ``test_openai_compat.py``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import json
import os
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from PIL import Image

from vlagent.actions import Step, action_points
from vlagent.agent import EndReason, run_episode
from vlagent.drivers.base import PHONE_CAPABILITIES
from vlagent.drivers.sim import SimDriver
from vlagent.errors import InvalidModelOutput, PolicyBackendError
from vlagent.frames import Frame
from vlagent.memory import MemoryConfig, TrajectoryMemory
from vlagent.policies.base import Observation
from vlagent.policies.openai_compat import OpenAICompatPolicy
from vlagent.tasks import BUILTIN_TASKS

pytest.importorskip("httpx", reason="the openai extra provides httpx")


def _vllm(test: Callable[..., None]) -> Callable[..., None]:
    """Mark a test that needs the real server (it skips or fails through the fixture)."""
    return pytest.mark.slow(pytest.mark.vllm(test))


ROOT = Path(__file__).resolve().parents[2]
MAX_IMAGES = 2  # the server's --limit-mm-per-prompt
MAX_MODEL_LEN = 4096
GRID = (1000, 1000)  # qwen2vl family: 0-1000 on both axes
THOUGHT_CHARS = 40
STRING_CHARS = 24


def _tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location("vllm_cpu_server", ROOT / "tools" / "vllm_cpu_server.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def vllm_server() -> Iterator[Any]:
    """A vLLM server on 127.0.0.1 serving the tiny model; stopped (process group, by PID) at the end."""
    tool = _tool()
    venv = Path(os.environ.get("VLAGENT_VLLM_VENV") or tool.DEFAULT_VENV)
    if not tool.is_prepared(venv):
        reason = f"needs the vLLM CPU virtualenv in {venv.name}: run python tools/vllm_cpu_server.py --prepare-only"
        if os.environ.get("VLAGENT_REQUIRE_VLLM") == "1":
            pytest.fail(f"VLAGENT_REQUIRE_VLLM=1 but it is missing: {reason}")
        pytest.skip(reason)
    try:
        server = tool.start(venv, tool.ServerOptions(max_images=MAX_IMAGES, max_model_len=MAX_MODEL_LEN))
    except tool.SetupError as exc:
        pytest.fail(f"the vLLM server did not start: {exc}")
    try:
        yield server
    finally:
        server.stop()
        assert not server.alive(), f"vLLM server {server.pid} still running"


def _policy(server: Any, *, url: str | None = None, **options: Any) -> OpenAICompatPolicy:
    options.setdefault("max_images", MAX_IMAGES)
    options.setdefault("max_output_tokens", 300)
    # a random model fills every string to its limit: short caps keep answers ~40 tokens
    options.setdefault("max_thought_chars", THOUGHT_CHARS)
    options.setdefault("max_string_chars", STRING_CHARS)
    options.setdefault("temperature", 1.0)  # sampled, so episodes see many kinds of action
    options.setdefault("backoff_s", 0.05)
    return OpenAICompatPolicy(base_url=url or server.url, model=server.model, **options)


def _schema_valid(raw: str) -> bool:
    """Strict check of a raw answer: plain JSON (no repair), a Step, coordinates on the grid, a phone action."""
    try:
        step = Step.model_validate(json.loads(raw))
    except ValueError:
        return False
    on_grid = all(0 <= x <= GRID[0] and 0 <= y <= GRID[1] for x, y in action_points(step.action))
    strings = [getattr(step.action, name, None) for name in ("text", "name", "answer")]
    capped = all(len(s) <= STRING_CHARS for s in strings if s is not None)
    thought_ok = step.thought is not None and len(step.thought) <= THOUGHT_CHARS
    return thought_ok and capped and on_grid and PHONE_CAPABILITIES.refusal(step.action) is None


def _screens(count: int) -> tuple[Frame, ...]:
    colours = ["white", "red", "green", "blue"]
    return tuple(Frame(Image.new("RGB", (252, 560), colours[i % 4]), width=1080, height=2400) for i in range(count))


# --- schema-constrained episodes -----------------------------------------------------------------


@_vllm
def test_episodes_on_the_simulated_phone_get_only_schema_valid_actions(
    vllm_server: Any, record_property: Callable[[str, object], None]
) -> None:
    memory_config = MemoryConfig(max_tokens=600, max_pixels=400 * 28 * 28, max_images=MAX_IMAGES)
    raws: list[str] = []
    episodes = []
    with _policy(vllm_server) as policy:
        tasks = list(BUILTIN_TASKS.values())
        while len(raws) < 100:
            task = tasks[len(episodes) % len(tasks)]
            driver = SimDriver(sleep=lambda seconds: None)
            driver.prepare(task.start)
            memory = TrajectoryMemory(memory_config)
            episode = run_episode(task.instruction, driver, policy, max_steps=15, memory=memory, max_invalid=0)
            assert episode.end is not EndReason.ERROR, episode.detail
            episodes.append(episode)
            raws += [step.decision.raw for step in episode.steps]
            assert len(episodes) < 60, "episodes end too early to collect 100 actions"
    valid = [raw for raw in raws if _schema_valid(raw)]
    record_property("schema_valid_actions", f"{len(valid)}/{len(raws)} in {len(episodes)} episodes")
    assert len(valid) == len(raws), f"{len(raws) - len(valid)} of {len(raws)} answers break the schema"
    assert sum(ep.invalid_outputs for ep in episodes) == 0
    # several images went out once an episode had history
    sent = [step.decision.usage["images"] for ep in episodes for step in ep.steps]
    assert max(sent) == MAX_IMAGES and min(sent) == 1
    # a random model picks many kinds of action; the sim phone executed them all
    kinds = {step.action.action for ep in episodes for step in ep.steps}
    assert len(kinds) >= 4, kinds


@_vllm
def test_concurrent_requests_all_answer_valid_steps(vllm_server: Any) -> None:
    driver = SimDriver()
    observation = Observation("Turn on Wi-Fi.", driver.screenshot(), PHONE_CAPABILITIES, images=_screens(2))
    with _policy(vllm_server, concurrency=4) as policy:
        decisions = policy.decide_batch([observation] * 8)
    for decision in decisions:
        assert not isinstance(decision, Exception), decision
        assert _schema_valid(decision.raw), decision.raw
        assert decision.usage["images"] == 2 and decision.usage["prompt_tokens"] > 0


# --- non-JSON families under their grammar ------------------------------------------------------

#: How each non-JSON family's answer starts; a random model never writes these unconstrained.
NATIVE_OPENINGS = {
    "uitars": "Thought: ",
    "uitars15": "Thought: ",
    "qwen25vl": '<tool_call>\n{"name": "mobile_use", "arguments": {"action": ',
    "qwen3vl": "Thought: ",
    "showui": "{'action': '",
}


@_vllm
@pytest.mark.parametrize("family", sorted(NATIVE_OPENINGS))
def test_non_json_families_under_their_grammar_act_validly_on_every_step(
    vllm_server: Any, family: str, record_property: Callable[[str, object], None]
) -> None:
    memory_config = MemoryConfig(max_tokens=600, max_pixels=400 * 28 * 28, max_images=MAX_IMAGES)
    raws: list[str] = []
    names = ["wifi", "note"] * 5  # a toggle and a typing task; random models often end early
    with _policy(vllm_server, family=family) as policy:
        while len(raws) < 10 and names:
            task = BUILTIN_TASKS[names.pop()]
            driver = SimDriver(sleep=lambda seconds: None)
            driver.prepare(task.start)
            memory = TrajectoryMemory(memory_config)
            episode = run_episode(task.instruction, driver, policy, max_steps=4, memory=memory, max_invalid=0)
            assert episode.end is not EndReason.ERROR, episode.detail
            assert episode.invalid_outputs == 0, [step.decision.raw for step in episode.steps]
            raws += [step.decision.raw for step in episode.steps]
    record_property(f"{family}_valid_actions", len(raws))
    assert len(raws) >= 4 and all(raw.startswith(NATIVE_OPENINGS[family]) for raw in raws), raws


@_vllm
def test_without_the_grammar_the_random_model_answers_garbage(vllm_server: Any) -> None:
    observation = Observation("Turn on Wi-Fi.", SimDriver().screenshot(), PHONE_CAPABILITIES)
    policy = _policy(vllm_server, family="uitars15", grammar="off", temperature=0.0, max_output_tokens=64)
    with policy, pytest.raises(InvalidModelOutput):
        policy.decide(observation)


@_vllm
def test_a_grammar_the_server_rejects_warns_once_and_answers_are_parsed_leniently(
    vllm_server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    observation = Observation("Turn on Wi-Fi.", SimDriver().screenshot(), PHONE_CAPABILITIES)
    with _policy(vllm_server, family="uitars15", temperature=0.0, max_output_tokens=128) as policy:
        policy.family = dataclasses.replace(policy.family, grammar=lambda caps, grid, limits: 'start: "a" missing\n')
        for _ in range(2):
            with pytest.raises(InvalidModelOutput):  # the step is asked again unconstrained: garbage
                policy.decide(observation)
    rejected = [r.getMessage() for r in caplog.records if "rejected the uitars15 grammar" in r.getMessage()]
    assert len(rejected) == 1 and "HTTP 400" in rejected[0], rejected


# --- the server's limits ---------------------------------------------------------------------


@_vllm
def test_images_beyond_the_servers_limit_are_dropped_oldest_first(vllm_server: Any) -> None:
    observation = Observation("Turn on Wi-Fi.", _screens(1)[0], PHONE_CAPABILITIES, images=_screens(4))
    with _policy(vllm_server, max_images=MAX_IMAGES) as policy:
        two = policy.decide(observation)
    with _policy(vllm_server, max_images=1) as policy:
        one = policy.decide(observation)
    assert two.usage["images"] == 2 and one.usage["images"] == 1
    # each 252x560 image is 9x20 = 180 visual tokens for Qwen2-VL
    assert two.usage["prompt_tokens"] - one.usage["prompt_tokens"] >= 180


@_vllm
def test_too_many_images_is_a_clear_error_naming_the_limit(vllm_server: Any) -> None:
    observation = Observation("Turn on Wi-Fi.", _screens(1)[0], PHONE_CAPABILITIES, images=_screens(3))
    with _policy(vllm_server, max_images=None) as policy, pytest.raises(PolicyBackendError) as info:
        policy.decide(observation)
    message = str(info.value)
    assert "HTTP 400" in message and "--max-images" in message, message


@_vllm
def test_a_prompt_beyond_max_model_len_is_rejected_without_retrying(vllm_server: Any) -> None:
    observation = Observation("Turn on Wi-Fi.", _screens(1)[0], PHONE_CAPABILITIES)
    proxy = _Proxy(vllm_server.port, plan=[])
    try:
        policy = OpenAICompatPolicy(base_url=proxy.url, model=vllm_server.model, max_output_tokens=MAX_MODEL_LEN + 1)
        with policy, pytest.raises(PolicyBackendError) as info:
            policy.decide(observation)
    finally:
        proxy.close()
    assert "HTTP 400" in str(info.value) and "rejected the request" in str(info.value)
    assert proxy.connections == 1  # a client error is not retried


@_vllm
def test_wrong_model_name_lists_the_served_model(vllm_server: Any) -> None:
    observation = Observation("Turn on Wi-Fi.", _screens(1)[0], PHONE_CAPABILITIES)
    policy = OpenAICompatPolicy(base_url=vllm_server.url, model="Qwen/Qwen2-VL-2B-Instruct")
    with policy, pytest.raises(PolicyBackendError) as info:
        policy.decide(observation)
    message = str(info.value)
    assert "no model named 'Qwen/Qwen2-VL-2B-Instruct'" in message
    assert f"it serves: {vllm_server.model}" in message


# --- a flaky network in front of the server ----------------------------------------------------------


class _Proxy:
    """A loopback TCP proxy to the server; ``plan`` says what each new connection gets first.

    "drop": closed after the request arrived (no answer); "503": an HTTP 503 answer;
    connections beyond the plan are forwarded byte for byte.
    """

    def __init__(self, target_port: int, plan: list[str]) -> None:
        self.plan = list(plan)
        self.connections = 0
        self._target = target_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}/v1"
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            self.connections += 1
            what = self.plan.pop(0) if self.plan else "forward"
            threading.Thread(target=self._serve, args=(client, what), daemon=True).start()

    def _serve(self, client: socket.socket, what: str) -> None:
        with client:
            if what != "forward":
                client.recv(65536)
                if what == "503":
                    body = b'{"error": {"message": "engine overloaded", "code": 503}}'
                    head = "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                    head += f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
                    client.sendall(head.encode() + body)
                return
            with socket.create_connection(("127.0.0.1", self._target)) as upstream:
                pump = threading.Thread(target=self._pump, args=(upstream, client), daemon=True)
                pump.start()
                self._pump(client, upstream)
                pump.join(timeout=30)

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
            sink.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def close(self) -> None:
        # shutdown wakes the thread blocked in accept(); close alone would leave it accepting
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        self._thread.join(timeout=5)


@_vllm
def test_a_dropped_connection_and_a_503_are_retried(vllm_server: Any, caplog: pytest.LogCaptureFixture) -> None:
    proxy = _Proxy(vllm_server.port, plan=["drop", "503"])
    observation = Observation("Turn on Wi-Fi.", SimDriver().screenshot(), PHONE_CAPABILITIES)
    try:
        with _policy(vllm_server, url=proxy.url) as policy:
            decision = policy.decide(observation)
    finally:
        proxy.close()
    assert _schema_valid(decision.raw), decision.raw
    assert proxy.connections == 3
    retries = [r.getMessage() for r in caplog.records if "retrying" in r.getMessage()]
    assert len(retries) == 2 and "HTTP 503" in retries[1], retries


@_vllm
def test_server_down_is_a_clear_error(vllm_server: Any) -> None:
    proxy = _Proxy(vllm_server.port, plan=[])
    proxy.close()  # the address the policy knows no longer answers
    observation = Observation("Turn on Wi-Fi.", _screens(1)[0], PHONE_CAPABILITIES)
    policy = OpenAICompatPolicy(base_url=proxy.url, model=vllm_server.model, attempts=2, backoff_s=0.05)
    with policy, pytest.raises(PolicyBackendError) as info:
        policy.decide(observation)
    assert "cannot reach the model server" in str(info.value) and "Check that the server is running" in str(info.value)


def test_string_caps_shorten_the_schema_sent() -> None:
    import httpx

    bodies: list[dict[str, Any]] = []

    def answer(request: httpx.Request) -> httpx.Response:
        bodies.append(json.loads(request.content))
        content = json.dumps({"thought": "t", "action": {"action": "type", "text": "hi"}})
        return httpx.Response(200, json={"choices": [{"message": {"content": content}, "finish_reason": "stop"}]})

    observation = Observation("Turn on Wi-Fi.", _screens(1)[0], PHONE_CAPABILITIES)
    options = {"base_url": "http://127.0.0.1:1/v1", "model": "m", "transport": httpx.MockTransport(answer)}
    with OpenAICompatPolicy(max_thought_chars=40, max_string_chars=24, **options) as policy:
        assert policy.decide(observation).action.action == "type"
    with OpenAICompatPolicy(**options) as policy:
        policy.decide(observation)
    capped, plain = (body["response_format"]["json_schema"]["schema"] for body in bodies)
    assert capped["properties"]["thought"]["maxLength"] == 40
    assert capped["$defs"]["Type"]["properties"]["text"]["maxLength"] == 24
    assert plain["properties"]["thought"]["maxLength"] == 200  # the in-process caps, which fit 512 tokens
    assert plain["$defs"]["Type"]["properties"]["text"]["maxLength"] > 24
