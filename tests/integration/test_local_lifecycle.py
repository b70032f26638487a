"""`galley local up` as a user runs it, in a directory of its own: what it prints, how it stops,
what it keeps across restarts. Each test starts the real command and stops what it started by pid.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from runner.core import settings
from runner.local import embedded, process
from runner.local.process import Child, wait_for
from tests import support

READY_LINE = "attach a shell with"


def _user_env() -> dict[str, str]:
    """A user's shell: no Galley variables, the project's `galley` on PATH; and long polls of
    1 s, as every test worker has (tests/support.py): each stop of a stack, and these tests stop
    one or more each, first waits for its workers' polls in flight (5 s by default locally)."""
    env = support.attached_env_plain()
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env[settings.RECEIVE_WAIT_SECONDS] = support.RECEIVE_WAIT_SECONDS
    return env


def _recorded_pids(value: Any) -> set[int]:
    """Every pid a state file names, whatever its layout (``*pid*`` keys, at any depth)."""
    found: set[int] = set()
    if isinstance(value, dict):
        for key, item in value.items():
            if "pid" in str(key) and isinstance(item, int) and item > 0:
                found.add(item)
            else:
                found |= _recorded_pids(item)
    elif isinstance(value, list):
        for item in value:
            found |= _recorded_pids(item)
    return found


def _alive(pid: int) -> bool:
    return process.alive(pid)


def _stop_leftovers(directory: Path) -> None:
    """What a `local up` under test could not stop itself, stopped by the pids it recorded."""
    for state in (directory / ".galley").glob("*.json"):
        try:
            pids = _recorded_pids(json.loads(state.read_text()))
        except ValueError:
            continue
        for pid in pids:
            if pid != os.getpid() and _alive(pid):
                with_group = os.getpgid(pid) == pid
                (os.killpg if with_group else os.kill)(pid, signal.SIGKILL)


class LocalUp:
    """Factory of `galley local up` processes in ``directory`` (its cwd, so its .galley/)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.started: list[Child] = []

    def __call__(self, *args: str, ready: bool = True) -> Child:
        log = self.directory / f"up-{len(self.started)}.log"
        child = Child(
            support.galley("local", "up", *args), env=_user_env(), cwd=self.directory, log=log
        )
        self.started.append(child)
        if ready:
            wait_for(lambda: self._ready(child), timeout=60, what="`galley local up` to be ready")
        return child

    @staticmethod
    def _ready(child: Child) -> bool:
        assert child.log_path is not None
        text = child.log_path.read_text(errors="replace") if child.log_path.exists() else ""
        if not child.alive():
            raise AssertionError(f"galley local up exited early:\n{text}")
        return READY_LINE in text

    def close(self) -> None:
        for child in self.started:
            child.stop(grace=60)
        _stop_leftovers(self.directory)


@pytest.fixture
def local_up(tmp_path: Path) -> Iterator[Callable[..., Child]]:
    factory = LocalUp(tmp_path)
    yield factory
    factory.close()


def _output(child: Child) -> str:
    assert child.log_path is not None
    return child.log_path.read_text(errors="replace")


def test_what_moto_cannot_emulate_is_one_summary_line(local_up: Callable[..., Child]) -> None:
    # GIVEN / WHEN the local stack starts
    up = local_up("--no-worker")
    # THEN one line says what the template has that moto cannot emulate, and how to see details
    lines = [line for line in _output(up).splitlines() if "not deployed locally" in line]
    assert len(lines) == 1, lines
    assert "AWS::CloudWatch::Alarm" in lines[0]
    assert "--verbose" in lines[0]


def test_verbose_lists_each_resource_moto_cannot_emulate(local_up: Callable[..., Child]) -> None:
    up = local_up("--no-worker", "--verbose")
    out = _output(up)
    assert "AWS::Lambda::EventSourceMapping (ConsumerFunctionJobs): Lambda needs Docker" in out
    assert "AWS::CloudWatch::Alarm (JobsDeadLetterAlarm)" in out


def _state_pids(directory: Path) -> set[int]:
    return _recorded_pids(json.loads((directory / ".galley" / "local.json").read_text()))


def _all_gone(pids: set[int]) -> bool:
    return not any(_alive(pid) for pid in pids)


@pytest.mark.parametrize("signum", [signal.SIGHUP, signal.SIGTERM, signal.SIGINT])
def test_a_signal_that_ends_local_up_stops_everything_it_started(
    local_up: Callable[..., Child], tmp_path: Path, signum: signal.Signals
) -> None:
    # GIVEN a local stack with its worker
    up = local_up("--concurrency", "1")
    started = _state_pids(tmp_path) - {up.pid}
    assert len(started) >= 2, started  # moto and the worker
    # WHEN `local up` gets the signal (SIGHUP: its terminal was closed)
    os.kill(up.pid, signum)
    # THEN it exits, and moto and the worker are gone with it
    assert up.proc.wait(timeout=60) == 0, _output(up)
    wait_for(lambda: _all_gone(started), timeout=30, what=f"{sorted(started)} to exit")
    assert "local stack stopped" in _output(up)
    # AND the state file says so
    assert _state(tmp_path)["status"] == "stopped"


def _endpoint(up: Child) -> str:
    """The endpoint `local up` announced."""
    found = re.search(r"moto at (http://127\.0\.0\.1:\d+)", _output(up))
    assert found, _output(up)
    return found.group(1)


def _state(directory: Path) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((directory / ".galley" / "local.json").read_text())
    return document


def test_a_second_local_up_is_refused_naming_the_running_one(
    local_up: Callable[..., Child], tmp_path: Path
) -> None:
    # GIVEN a running local stack
    first = local_up("--no-worker")
    endpoint = _endpoint(first)
    # WHEN a second `local up` starts in the same directory
    second = local_up("--no-worker", ready=False)
    # THEN it is refused at once, in one line naming the first and how to stop it
    assert second.proc.wait(timeout=30) == 1
    out = _output(second).strip()
    assert len(out.splitlines()) == 1, out
    assert "already running" in out
    assert f"pid {first.pid}" in out
    assert endpoint in out
    assert "galley local down" in out
    # AND the first runs on, its state file untouched
    assert first.alive()
    assert _state(tmp_path)["pid"] == first.pid
    assert _state(tmp_path)["status"] == "running"


def _dead_pid() -> int:
    child = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    return int(child.stdout)


def test_a_stale_state_file_does_not_block_a_start(
    local_up: Callable[..., Child], tmp_path: Path
) -> None:
    # GIVEN a state file saying "running", by a `local up` (and moto) long gone
    dead = _dead_pid()
    stale = {
        "version": 1,
        "status": "running",
        "port": 9,
        "suffix": "abcd1234",
        "pid": dead,
        "processes": [{"kind": "moto", "name": "moto", "pid": dead}],
    }
    (tmp_path / ".galley").mkdir()
    (tmp_path / ".galley" / "local.json").write_text(json.dumps(stale))
    # WHEN the user starts the stack
    up = local_up("--no-worker")
    # THEN it starts, and records itself
    assert _state(tmp_path)["pid"] == up.pid
    assert "left running" not in _output(up)


def test_what_a_killed_local_up_left_running_is_stopped_by_the_next(
    local_up: Callable[..., Child], tmp_path: Path
) -> None:
    # GIVEN a `local up` killed with SIGKILL: no cleanup, its moto keeps running
    killed = local_up("--no-worker")
    (moto_pid,) = _state_pids(tmp_path) - {killed.pid}
    resources = _state(tmp_path)["resources"]
    _, s3 = _clients(resources)
    s3.put_object(Bucket=resources["bucket"], Key="results/r1", Body=b"kept")
    killed.proc.kill()
    killed.proc.wait()
    assert _alive(moto_pid)
    # WHEN the user starts the stack again
    up = local_up("--no-worker")
    # THEN the leftover moto was stopped first, and the user told so
    assert not _alive(moto_pid)
    assert f"moto (pid {moto_pid})" in _output(up)
    assert f"pid {killed.pid}" in _output(up)
    # AND stopped cleanly: what it held was saved, and is back
    assert s3.get_object(Bucket=resources["bucket"], Key="results/r1")["Body"].read() == b"kept"


def galley(directory: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """A `galley` command in ``directory``, as a user runs it in another terminal."""
    return subprocess.run(
        support.galley(*args),
        env=_user_env(),
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_local_down_stops_a_running_stack_and_says_what_it_stopped(
    local_up: Callable[..., Child], tmp_path: Path
) -> None:
    # GIVEN a local stack with its worker
    up = local_up("--concurrency", "1")
    started = _state_pids(tmp_path)
    # WHEN another terminal runs `galley local down`
    down = galley(tmp_path, "local", "down")
    # THEN it exits 0 naming each process it stopped and the endpoint
    assert down.returncode == 0, down.stdout + down.stderr
    for pid in started | {up.pid}:
        assert f"pid {pid}" in down.stdout
    assert _endpoint(up) in down.stdout
    # AND all of them are gone; `local up` ended cleanly and its state file says "stopped"
    wait_for(lambda: _all_gone(started | {up.pid}), timeout=30, what="the stack to be gone")
    assert up.proc.wait(timeout=10) == 0, _output(up)
    assert _state(tmp_path)["status"] == "stopped"
    assert "saved in .galley/local-data.json" in _output(up)


def test_local_down_without_a_stack_says_so_and_succeeds(tmp_path: Path) -> None:
    down = galley(tmp_path, "local", "down")
    assert down.returncode == 0, down.stdout + down.stderr
    assert down.stdout.strip() == "no local stack running"


def test_local_status_shows_the_running_stack_and_exits_0(
    local_up: Callable[..., Child], tmp_path: Path
) -> None:
    # GIVEN a running stack with one job waiting on its queue
    up = local_up("--no-worker")
    recorded = _state(tmp_path)
    resources = recorded["resources"]
    sqs = boto3.client(
        "sqs",
        endpoint_url=resources["endpoint_url"],
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    sqs.send_message(QueueUrl=resources["queue_url"], MessageBody="job")
    # WHEN the user asks for its status
    status = galley(tmp_path, "local", "status")
    # THEN it is running (exit 0), with its pids, endpoint, bucket, queues and their depths
    assert status.returncode == 0, status.stdout + status.stderr
    out = status.stdout
    assert "running" in out.splitlines()[0]
    assert f"pid {up.pid}" in out
    assert all(f"pid {pid}" in out for pid in _state_pids(tmp_path))
    assert resources["endpoint_url"] in out
    assert resources["bucket"] in out
    assert re.search(re.escape(resources["queue_url"]) + r".*1 visible", out), out
    assert resources["dlq_url"] in out
    assert re.search(r"up \d+s|up \d+m", out), out


def test_local_status_without_a_stack_exits_3(
    local_up: Callable[..., Child], tmp_path: Path
) -> None:
    # GIVEN no stack ever started here
    status = galley(tmp_path, "local", "status")
    assert status.returncode == 3, status.stdout + status.stderr
    assert "no local stack running" in status.stdout
    # AND after one stopped: still 3, and it says where it was
    up = local_up("--no-worker")
    endpoint = _endpoint(up)
    up.stop(grace=30)
    status = galley(tmp_path, "local", "status")
    assert status.returncode == 3, status.stdout + status.stderr
    assert "no local stack running" in status.stdout
    assert endpoint in status.stdout


def _restart(local_up: Callable[..., Child], directory: Path, *args: str) -> Child:
    down = galley(directory, "local", "down")
    assert down.returncode == 0, down.stdout + down.stderr
    return local_up("--no-worker", *args)


def test_a_restart_keeps_the_endpoint_queue_urls_and_bucket(
    local_up: Callable[..., Child], tmp_path: Path
) -> None:
    # GIVEN a local stack that was started once, and a client attached to it (a worker in
    # another shell keeps its connections open)
    local_up("--no-worker")
    before = _state(tmp_path)["resources"]
    attached = socket.create_connection(("127.0.0.1", _state(tmp_path)["port"]))
    # WHEN it is stopped (moto closes that connection: its port stays in TIME_WAIT a minute)
    # and started again
    down = galley(tmp_path, "local", "down")
    assert down.returncode == 0, down.stdout + down.stderr
    attached.close()
    local_up("--no-worker")
    # THEN an attached shell's exports still hold: same endpoint, queue URLs and bucket
    assert _state(tmp_path)["resources"] == before


def test_fresh_starts_with_new_names(local_up: Callable[..., Child], tmp_path: Path) -> None:
    local_up("--no-worker")
    before = _state(tmp_path)["resources"]
    _restart(local_up, tmp_path, "--fresh")
    after = _state(tmp_path)["resources"]
    assert after["bucket"] != before["bucket"]  # and a port of its own (a free one: it may
    # happen to be the last one, so that is not asserted)


def test_a_port_given_once_is_kept(local_up: Callable[..., Child], tmp_path: Path) -> None:
    port = embedded.free_port()
    local_up("--no-worker", "--port", str(port))
    up = _restart(local_up, tmp_path)
    assert _endpoint(up) == f"http://127.0.0.1:{port}"


def _clients(resources: dict[str, Any]) -> tuple[Any, Any]:
    session = boto3.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
    )
    endpoint = resources["endpoint_url"]
    return (
        session.client("sqs", endpoint_url=endpoint),
        session.client("s3", endpoint_url=endpoint),
    )


def test_results_dead_letters_and_jobs_in_flight_survive_a_restart(
    local_up: Callable[..., Child], tmp_path: Path
) -> None:
    # GIVEN a stack holding a result, a dead letter with its reason, a job in flight (received,
    # not deleted: its worker was stopped mid-job) and a job delayed for ten minutes
    local_up("--no-worker")
    resources = _state(tmp_path)["resources"]
    sqs, s3 = _clients(resources)
    bucket, queue, dlq = resources["bucket"], resources["queue_url"], resources["dlq_url"]
    result_key = "results/celery-task-meta-3f1c0d9e"
    s3.put_object(
        Bucket=bucket, Key=result_key, Body=b'{"status": "SUCCESS"}', ContentType="application/json"
    )
    etag = s3.head_object(Bucket=bucket, Key=result_key)["ETag"]
    reason = {"galley-reason": {"DataType": "String", "StringValue": "unknown task"}}
    dead_id = sqs.send_message(QueueUrl=dlq, MessageBody="dead", MessageAttributes=reason)[
        "MessageId"
    ]
    sqs.send_message(QueueUrl=queue, MessageBody="in flight")
    (held,) = sqs.receive_message(QueueUrl=queue, VisibilityTimeout=600)["Messages"]
    sqs.send_message(QueueUrl=queue, MessageBody="later", DelaySeconds=600)
    # WHEN the stack is stopped and started again
    up = _restart(local_up, tmp_path)
    # THEN the result is there, byte for byte, with its ETag and content type
    stored = s3.get_object(Bucket=bucket, Key=result_key)
    assert stored["Body"].read() == b'{"status": "SUCCESS"}'
    assert stored["ETag"] == etag and stored["ContentType"] == "application/json"
    # AND the dead letter, with its id and reason
    (dead,) = sqs.receive_message(QueueUrl=dlq, MessageAttributeNames=["All"])["Messages"]
    assert dead["MessageId"] == dead_id and dead["MessageAttributes"] == {
        "galley-reason": {"DataType": "String", "StringValue": "unknown task"}
    }
    # AND the job that was in flight is visible again, its receive counted
    (back,) = sqs.receive_message(QueueUrl=queue, AttributeNames=["All"])["Messages"]
    assert back["MessageId"] == held["MessageId"] and back["Body"] == "in flight"
    assert back["Attributes"]["ApproximateReceiveCount"] == "2"
    # AND the delayed job is still delayed
    attrs = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["All"])["Attributes"]
    assert attrs["ApproximateNumberOfMessagesDelayed"] == "1"
    assert "data of the last run restored" in _output(up)


def test_fresh_discards_the_data_of_the_last_run(
    local_up: Callable[..., Child], tmp_path: Path
) -> None:
    # GIVEN a stack with a dead letter, saved as it stops (and restored by name: the queues of
    # a fresh stack have the same names)
    local_up("--no-worker")
    sqs, _ = _clients(_state(tmp_path)["resources"])
    sqs.send_message(QueueUrl=_state(tmp_path)["resources"]["dlq_url"], MessageBody="dead")
    # WHEN it is started again with --fresh
    up = _restart(local_up, tmp_path, "--fresh")
    # THEN nothing was restored: its dead-letter queue is empty
    assert "restored" not in _output(up)
    resources = _state(tmp_path)["resources"]
    sqs, _ = _clients(resources)
    attrs = sqs.get_queue_attributes(QueueUrl=resources["dlq_url"], AttributeNames=["All"])
    assert attrs["Attributes"]["ApproximateNumberOfMessages"] == "0"


def test_saved_data_that_cannot_be_read_is_one_line_and_kept(
    local_up: Callable[..., Child], tmp_path: Path
) -> None:
    # GIVEN a stack that was stopped, and its saved data damaged since
    local_up("--no-worker")
    assert galley(tmp_path, "local", "down").returncode == 0
    data = tmp_path / ".galley" / "local-data.json"
    data.write_text('{"format": "galley-local-data", "version": 1, "queues": 7}')
    # WHEN it is started again
    up = local_up("--no-worker", ready=False)
    # THEN it refuses in one line naming the file and the way out, and leaves the file alone
    assert up.proc.wait(timeout=60) == 1
    (line,) = _output(up).strip().splitlines()
    assert str(Path(".galley") / "local-data.json") in line and "--fresh" in line
    assert data.read_text().endswith('"queues": 7}')


TASK_MODULE = """from runner import app


@app.task(name="tasks.hello.greet")
def greet() -> str:
    return "hello"
"""
NEW_TASK = """

@app.task(name="tasks.hello.greet_again")
def greet_again() -> str:
    return "hello again"
"""


def _worker_pid(directory: Path) -> int | None:
    recorded = _state(directory)
    pids = [p["pid"] for p in recorded.get("processes", []) if p["kind"] == "worker"]
    return pids[0] if pids else None


def test_a_changed_task_module_restarts_the_worker_with_the_new_code(
    local_up: Callable[..., Child], tmp_path: Path
) -> None:
    # GIVEN a project whose tasks/ the worker loads, and the stack running with its worker
    package = tmp_path / "tasks"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "hello.py").write_text(TASK_MODULE)
    up = local_up("--concurrency", "1")
    # (a worker per queue: jobs and long)
    wait_for(lambda: _output(up).count(" ready.") == 2, timeout=30, what="the workers")
    first = _worker_pid(tmp_path)
    assert first is not None and "tasks.hello.greet_again" not in _output(up)
    # WHEN a task module changes (a task is added)
    (package / "hello.py").write_text(TASK_MODULE + NEW_TASK)
    # THEN the worker is restarted: the old one gone, a new one recorded that has the new task
    wait_for(lambda: _output(up).count(" ready.") == 4, timeout=40, what="the new workers")
    assert "tasks/hello.py changed: restarting the workers" in _output(up)
    assert "tasks.hello.greet_again" in _output(up)
    assert _worker_pid(tmp_path) not in (None, first)
    assert first is not None and not _alive(first)


def test_moto_of_a_local_up_killed_while_deploying_is_found_by_the_next(
    local_up: Callable[..., Child], tmp_path: Path
) -> None:
    # GIVEN a `local up` killed with SIGKILL as soon as its moto runs, before the deployment
    # is done
    killed = local_up("--no-worker", ready=False)
    state_file = tmp_path / ".galley" / "local.json"

    def moto_recorded() -> dict[str, Any] | None:
        try:
            recorded = json.loads(state_file.read_text())
        except (OSError, ValueError):
            return None
        return recorded if recorded.get("processes") else None

    wait_for(lambda: moto_recorded() is not None, timeout=30, interval=0.02, what="moto's pid")
    killed.proc.kill()
    killed.proc.wait()
    recorded = moto_recorded()
    assert recorded is not None and recorded["status"] == "starting"
    (moto_pid,) = _recorded_pids(recorded["processes"])
    # WHEN the stack is started again
    up = local_up("--no-worker")
    # THEN that moto was stopped first
    assert not _alive(moto_pid)
    assert f"moto (pid {moto_pid})" in _output(up)
