"""Scale-in protection against a stub of the ECS agent endpoint on 127.0.0.1."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from runner.worker.protection import AgentClient, Protector


class StubAgent(ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.calls: list[tuple[str, str, dict[str, Any]]] = []
        self.fail = False

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/api/task-id"


class _Handler(BaseHTTPRequestHandler):
    server: StubAgent

    def do_PUT(self) -> None:  # noqa: N802 - http.server's naming
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.calls.append(("PUT", self.path, body))
        answer: dict[str, Any] = (
            {"failure": {"Reason": "TASK_NOT_VALID"}}
            if self.server.fail
            else {"protection": {"ProtectionEnabled": body["ProtectionEnabled"]}}
        )
        data = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def agent() -> Iterator[StubAgent]:
    server = StubAgent()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_protects_while_busy_renews_and_releases_when_idle(agent: StubAgent) -> None:
    now = [0.0]
    protector = Protector(AgentClient(agent.uri), clock=lambda: now[0], minutes=60)
    # GIVEN idle: nothing is asked
    protector.observe(False)
    assert agent.calls == []
    # WHEN a job starts, THEN protection is asked for once
    protector.observe(True)
    protector.observe(True)
    assert agent.calls == [
        (
            "PUT",
            "/api/task-id/task-protection/v1/state",
            {"ProtectionEnabled": True, "ExpiresInMinutes": 60},
        ),
    ]
    # WHEN still busy at half its life, THEN it is renewed
    now[0] = 30 * 60
    protector.observe(True)
    assert len(agent.calls) == 2 and agent.calls[1][2]["ProtectionEnabled"] is True
    # WHEN idle again, THEN it is dropped
    protector.observe(False)
    assert agent.calls[-1][2] == {"ProtectionEnabled": False}
    assert protector.protected is False


def test_a_refusal_is_logged_and_tried_again(
    agent: StubAgent, caplog: pytest.LogCaptureFixture
) -> None:
    agent.fail = True
    protector = Protector(AgentClient(agent.uri))
    protector.observe(True)
    assert protector.protected is False
    assert "scale-in protection on failed" in caplog.text
    agent.fail = False
    protector.observe(True)
    assert protector.protected is True
    assert len(agent.calls) == 2
