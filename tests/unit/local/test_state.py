"""runner.local.state: the state file as outside input, and the lock that says a stack runs."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from runner.errors import StateError
from runner.local import state
from runner.local.resources import LocalResources

PORT = 41327
RESOURCES = LocalResources(
    endpoint_url=f"http://127.0.0.1:{PORT}",
    region="us-east-1",
    queue_url=f"http://127.0.0.1:{PORT}/123456789012/galley-local-jobs",
    dlq_url=f"http://127.0.0.1:{PORT}/123456789012/galley-local-jobs-dlq",
    bucket="galley-local-results",
    visibility_timeout=120,
)
RUNNING = state.LocalState(
    status="running",
    port=PORT,
    suffix="k3j9x2a1",
    pid=4242,
    processes=(
        state.ProcessRecord(kind="moto", name="moto", pid=4243),
        state.ProcessRecord(kind="worker", name="worker", pid=4244),
    ),
    started_at=datetime(2026, 11, 30, 12, 0, tzinfo=UTC),
    resources=RESOURCES,
)
# Each example overwrites the one file it reads: the shared tmp_path is on purpose.
FUZZ = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner),
    max_leaves=20,
)


def _valid_document() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(RUNNING.model_dump_json())
    return document


def _read_is_a_state_or_one_line_error(path: Path, raw: bytes) -> None:
    path.write_bytes(raw)
    try:
        read = state.read(path)
    except StateError as error:
        message = str(error)
        assert "\n" not in message and "\r" not in message
        assert str(path) in message
        assert len(message) < 600
    else:
        assert isinstance(read, state.LocalState)


def test_a_state_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "local.json"
    state.save(path, RUNNING)
    assert state.read(path) == RUNNING
    assert list(path.parent.iterdir()) == [path]  # no temporary file left


def test_no_file_is_no_state(tmp_path: Path) -> None:
    assert state.read(tmp_path / "absent.json") is None


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"{bad", "Invalid JSON"),
        (b"", "Invalid JSON"),
        (b"[]", "Input should be an object"),
        (b'{"endpoint_url": "http://127.0.0.1:1"}', "status: Field required"),
        (b'{"version": 1, "status": "stopped", "port": 1, "suffix": "abcdefgh", "x": 1}', "Extra"),
        (b'{"version": 1, "status": "stopped", "port": 1, "suffix": "../../x"}', "suffix"),
        (b'{"version": 2, "status": "running", "port": 1}', "version"),
        (b'{"version": 1, "status": "running", "port": "41327", "suffix": "abcd1234"}', "port"),
        (b'{"version": 1, "status": "running", "port": 70000, "suffix": "abcd1234"}', "port"),
        (b'{"version": 1, "status": "up", "port": 1, "suffix": "abcd1234"}', "status"),
        (b'{"version": 1, "status": "running", "port": 1, "suffix": "abcd1234", "pid": -3}', "pid"),
        (b"\xff\xfe\x00", "Invalid JSON"),
    ],
)
def test_a_file_that_is_not_a_state_is_one_clear_line(
    tmp_path: Path, content: bytes, problem: str
) -> None:
    path = tmp_path / "local.json"
    path.write_bytes(content)
    with pytest.raises(StateError, match="is not a local stack's state") as caught:
        state.read(path)
    assert problem in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_state_pointing_anywhere_but_its_local_port_is_refused(tmp_path: Path) -> None:
    # GIVEN a state whose endpoint (exported by `galley local env`) is not the local one
    document = _valid_document()
    document["resources"]["endpoint_url"] = "https://sqs.us-east-1.amazonaws.com"
    path = tmp_path / "local.json"
    path.write_text(json.dumps(document))
    with pytest.raises(StateError, match="its endpoint is not http://127.0.0.1:41327"):
        state.read(path)


def test_extra_variables_must_be_names_a_shell_takes(tmp_path: Path) -> None:
    document = _valid_document()
    document["resources"]["extra"] = {"X; rm -rf ~": "1"}
    path = tmp_path / "local.json"
    path.write_text(json.dumps(document))
    with pytest.raises(StateError, match="is not an environment variable name"):
        state.read(path)


def test_an_unreadable_path_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(StateError, match="cannot read"):
        state.read(tmp_path)  # a directory


@FUZZ
@given(st.binary(max_size=300))
@example(b"\x00")
@example(b'{"version": 1, "status": "running", "port": 1, "started_at": "2026-13-40"}')
def test_any_bytes_are_a_state_or_one_clear_line(tmp_path: Path, raw: bytes) -> None:
    _read_is_a_state_or_one_line_error(tmp_path / "fuzz.json", raw)


@FUZZ
@given(json_values)
def test_any_json_is_a_state_or_one_clear_line(tmp_path: Path, value: Any) -> None:
    _read_is_a_state_or_one_line_error(tmp_path / "fuzz.json", json.dumps(value).encode())


@FUZZ
@given(st.data())
def test_a_state_damaged_anywhere_is_a_state_or_one_clear_line(
    tmp_path: Path, data: st.DataObject
) -> None:
    # GIVEN a valid state with one field removed, replaced, or the file cut short
    document = _valid_document()
    container: Any = document
    while isinstance(container, dict | list) and container and data.draw(st.booleans()):
        keys = list(container) if isinstance(container, dict) else list(range(len(container)))
        key = data.draw(st.sampled_from(keys))
        if not isinstance(container[key], dict | list):
            break
        container = container[key]
    if isinstance(container, dict) and container:
        key = data.draw(st.sampled_from(sorted(container)))
        if data.draw(st.booleans()):
            del container[key]
        else:
            container[key] = data.draw(json_values)
    raw = json.dumps(document).encode()
    if data.draw(st.booleans()):
        raw = raw[: data.draw(st.integers(0, len(raw)))]
    _read_is_a_state_or_one_line_error(tmp_path / "fuzz.json", raw)


def _lock_holder(path: Path) -> subprocess.Popen[str]:
    """Another process holding the stack's lock for ``path`` (a stand-in for `local up`); it
    holds it until killed or its stdin closes."""
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, pathlib; from runner.local import state;"
            f"lock = state.StackLock(pathlib.Path({str(path)!r})); assert lock.try_acquire();"
            "print('held', flush=True); sys.stdin.read()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    return holder


def test_the_lock_is_held_by_one_holder_and_released_at_exit(tmp_path: Path) -> None:
    # GIVEN no stack: the lock is free
    path = tmp_path / ".galley" / "local.json"
    assert not state.held_elsewhere(path)
    # WHEN another process takes it
    holder = _lock_holder(path)
    try:
        # THEN it is held, and no one else can take it
        assert state.held_elsewhere(path)
        assert not state.StackLock(path).try_acquire()
    finally:
        holder.kill()  # as kill -9 would: no cleanup of its own
        holder.communicate()
    # AND the kernel released it with the process
    assert not state.held_elsewhere(path)


def test_the_running_stack_is_described_by_pid_and_endpoint(tmp_path: Path) -> None:
    path = tmp_path / "local.json"
    state.save(path, RUNNING)
    assert state.describe_running(path) == f"pid 4242, http://127.0.0.1:{PORT}"
    path.write_text("{bad")
    assert "cannot be read" in state.describe_running(path)


def test_a_new_suffix_makes_a_valid_bucket_name() -> None:
    suffixes = {state.new_suffix() for _ in range(50)}
    assert len(suffixes) == 50
    for suffix in suffixes:
        name = state.bucket_name(suffix, "galley-local")
        assert re.fullmatch(r"galley-local-results-[a-z0-9]{8}", name)


def test_down_signals_the_lock_holder_never_a_stale_pid(tmp_path: Path) -> None:
    # GIVEN a `local up` holding the lock (a stand-in that exits on SIGTERM), and a state file
    # still naming the pid of a predecessor killed with kill -9, now reused by another program
    # (found by the review: `local down` killed that program, and left the stack running)
    from runner.local import control

    path = tmp_path / ".galley" / "local.json"
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    holder = _lock_holder(path)
    try:
        state.save(path, RUNNING.model_copy(update={"pid": bystander.pid, "processes": ()}))
        # THEN the running stack is named by the lock's holder
        assert state.describe_running(path).startswith(f"pid {holder.pid}")
        # WHEN `local down` runs
        lines = control.down(path, timeout=10)
        # THEN the holder was stopped, and the bystander was left alone
        assert holder.wait(timeout=10) is not None
        assert bystander.poll() is None, "local down signalled a pid that is not local up"
        assert f"galley local up (pid {holder.pid})" in lines[0]
    finally:
        bystander.kill()
        bystander.wait()
        holder.kill()
        holder.communicate()
