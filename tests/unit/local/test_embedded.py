from __future__ import annotations

import socket
import subprocess
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from click.testing import CliRunner

from runner.cli.main import main
from runner.errors import PortInUseError, ProcessError
from runner.local import embedded, sam, state
from runner.local.process import wait_for

RESOURCES = embedded.LocalResources(
    endpoint_url="http://127.0.0.1:5555",
    region="us-east-1",
    queue_url="http://127.0.0.1:5555/123456789012/galley-jobs",
    dlq_url="http://127.0.0.1:5555/123456789012/galley-jobs-dlq",
    bucket="galley-results-local",
    visibility_timeout=120,
    extra={"ODD": "it's $HOME; `x`"},
)


def test_exports_evaluate_in_a_shell_to_the_same_environment() -> None:
    # GIVEN export lines, one with shell metacharacters
    script = RESOURCES.exports() + "\nenv"
    # WHEN a shell evaluates them
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True)
    # THEN every variable arrives verbatim
    seen = dict(line.split("=", 1) for line in out.stdout.splitlines() if "=" in line)
    for name, value in RESOURCES.env().items():
        if name != "GALLEY_VISIBILITY_TIMEOUT":
            assert seen[name] == value
    assert seen["GALLEY_QUEUE_URL"] == RESOURCES.queue_url
    assert seen["AWS_ENDPOINT_URL"] == "http://127.0.0.1:5555"
    # AND no visibility timeout: each worker takes its queue's, so `celery -A runner.app worker
    # -Q long` in an attached shell starts (found by the review: refused, naming the jobs
    # queue's 120 s)
    assert "GALLEY_VISIBILITY_TIMEOUT" not in seen


def test_reading_missing_state_says_how_to_start(tmp_path: Path) -> None:
    with pytest.raises(ProcessError, match="galley local up"):
        embedded.read_state(tmp_path / "absent.json")


def test_a_state_no_local_up_holds_is_no_running_stack(tmp_path: Path) -> None:
    # GIVEN a state file that says "running", left by a `local up` that is gone
    port = embedded.free_port()
    resources = replace(RESOURCES, endpoint_url=f"http://127.0.0.1:{port}", extra={})
    path = tmp_path / "local.json"
    state.save(
        path,
        state.LocalState(
            status="running", port=port, suffix="abcd1234", pid=1, resources=resources
        ),
    )
    # WHEN a shell asks how to attach
    # THEN it is told no stack runs (nothing holds the lock), and how to start one
    with pytest.raises(ProcessError, match="no local stack is running.*galley local up"):
        embedded.read_state(path)


def test_port_in_use_is_named() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(PortInUseError, match=f"port {port} on 127.0.0.1"):
            embedded.check_port_free(port)


def test_wait_for_times_out_naming_the_condition() -> None:
    with pytest.raises(TimeoutError, match="the impossible"):
        wait_for(lambda: False, timeout=0.2, interval=0.05, what="the impossible")


class _FakeMoto:
    """Stands in for the moto server: `running_stack` only needs its URL and pid."""

    url = "http://127.0.0.1:5555"
    child = SimpleNamespace(pid=4242)

    def __init__(self, *_: Any, **__: Any) -> None:
        pass

    def __enter__(self) -> _FakeMoto:
        return self

    def __exit__(self, *_: object) -> None:
        pass


def test_local_env_attaches_to_every_queue_the_template_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a local stack whose template deployed both queues and both dead-letter queues
    base = "http://127.0.0.1:5555/123456789012/galley"
    outputs = {
        sam.OUTPUT_QUEUE_URL: f"{base}-jobs",
        sam.OUTPUT_DLQ_URL: f"{base}-jobs-dlq",
        sam.OUTPUT_LONG_QUEUE_URL: f"{base}-long-jobs",
        sam.OUTPUT_LONG_DLQ_URL: f"{base}-long-jobs-dlq",
        sam.OUTPUT_BUCKET: "galley-results",
    }
    monkeypatch.setattr(embedded, "MotoServer", _FakeMoto)
    monkeypatch.setattr(sam, "deploy", lambda *_, **__: sam.DeployedStack("galley", outputs))
    monkeypatch.setattr(embedded, "responds", lambda url: True)
    state_file = tmp_path / "local.json"
    with embedded.running_stack() as running:
        # AND `local up` recorded it, holding the stack's lock
        recorded = state.LocalState(
            status="running", port=5555, suffix="abcd1234", pid=1, resources=running.resources
        )
        state.save(state_file, recorded)
        lock = state.StackLock(state_file)
        assert lock.try_acquire()
        try:
            # WHEN `galley local env` prints the exports
            result = CliRunner().invoke(main, ["local", "env", "--state-file", str(state_file)])
        finally:
            lock.release()
    # THEN each queue has its variable, the long-jobs DLQ too
    assert result.exit_code == 0, result.output
    exports = dict(line.split("=", 1) for line in result.stdout.splitlines())
    assert exports["export GALLEY_QUEUE_URL"] == outputs[sam.OUTPUT_QUEUE_URL]
    assert exports["export GALLEY_DLQ_URL"] == outputs[sam.OUTPUT_DLQ_URL]
    assert exports["export GALLEY_LONG_QUEUE_URL"] == outputs[sam.OUTPUT_LONG_QUEUE_URL]
    assert exports["export GALLEY_LONG_DLQ_URL"] == outputs[sam.OUTPUT_LONG_DLQ_URL]


def test_a_port_whose_last_server_just_stopped_is_free() -> None:
    """Found by a flaky restart: connections the last moto closed (an attached worker's) leave
    the port in TIME_WAIT for a minute; moto's server binds through that (SO_REUSEADDR), so the
    check before it must too, or the stack could not restart on its own port."""
    # GIVEN a server that closed a connection first, and stopped
    with socket.socket() as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        client = socket.create_connection(("127.0.0.1", port))
        accepted, _ = server.accept()
        accepted.close()  # the server side closes first: its end goes to TIME_WAIT
        client.recv(1)
        client.close()
    # WHEN the port is checked for the next server
    # THEN it is free
    embedded.check_port_free(port)
