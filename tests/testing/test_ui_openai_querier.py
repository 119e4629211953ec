"""assert_/query through the OpenAI-compatible policy, against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from vlagent.drivers.sim import SimDriver
from vlagent.testing import Agent, AssertionFailed

pytest.importorskip("httpx", reason="the openai extra provides httpx")

from vlagent.policies.openai_compat import OpenAICompatPolicy


class Server:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.answers: list[str] = []


@pytest.fixture
def server() -> Iterator[tuple[Server, str]]:
    state = Server()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            state.requests.append(body)
            content = state.answers.pop(0)
            reply = json.dumps({"choices": [{"message": {"content": content}, "finish_reason": "stop"}]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield state, f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_assert_sends_the_schema_and_reports_the_reason(server: tuple[Server, str], tmp_path: Path) -> None:
    state, url = server
    state.answers = [
        "not json at all",  # fed back, asked again
        '```json\n{"verdict": false, "reason": "the Wi-Fi switch is grey"}\n```',  # fenced: repaired
    ]
    with OpenAICompatPolicy(base_url=url, model="m", attempts=1) as policy:
        agent = Agent(SimDriver(), policy, out_dir=tmp_path)
        with pytest.raises(AssertionFailed, match="reason given: the Wi-Fi switch is grey"):
            agent.assert_("Wi-Fi is on")
    first, second = state.requests
    schema = first["response_format"]["json_schema"]["schema"]
    assert schema["required"] == ["verdict", "reason"] and schema["additionalProperties"] is False
    parts = first["messages"][1]["content"]
    assert parts[0]["image_url"]["url"].startswith("data:image/png;base64,")
    assert "Is this statement true: Wi-Fi is on" in parts[1]["text"]
    assert "Your previous answer was rejected" in second["messages"][1]["content"][1]["text"]
