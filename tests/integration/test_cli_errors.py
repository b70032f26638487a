"""`galley` refuses bad input with a clear message and sends nothing."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from runner.local import embedded
from tests import support


def run(
    *args: str, env: dict[str, str], cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        support.galley(*args), env=env, cwd=cwd, capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["tasks.nope.missing"], "unknown task 'tasks.nope.missing'; known tasks: "),
        (["tasks.reports.summarize_csv", "--args", "[1,"], "--args is not valid JSON"),
        (["tasks.reports.summarize_csv", "--args", '{"a": 1}'], "--args must be a JSON array"),
        (["tasks.reports.summarize_csv", "--kwargs", "[]"], "--kwargs must be a JSON object"),
        (["tasks.reports.summarize_csv", "--args", "[]"], "arguments do not fit"),
        # found by the adversarial review: a RecursionError traceback
        (["tasks.reports.summarize_csv", "--args", "[" * 5000 + "]" * 5000], "nested too deeply"),
        # found by the review of the restructure: a ValueError traceback (Python's digit limit)
        (
            ["tasks.reports.summarize_csv", "--args", "[" + "9" * 5000 + "]"],
            "--args cannot be read",
        ),
    ],
)
def test_bad_enqueue_is_refused_and_nothing_is_sent(
    stack: embedded.LocalResources, argv: list[str], message: str
) -> None:
    # WHEN a bad request is enqueued
    result = run("enqueue", *argv, env=support.attached_env(stack))
    # THEN it fails with the reason, and the queue stays empty
    assert result.returncode == 1, result.stdout + result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert support.queue_depth(stack, stack.queue_url) == 0


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--queue", "galley-long-jobs"], "'galley-long-jobs' is not one of 'jobs', 'long'"),
        (["--queue", "long"], "the long queue (GALLEY_LONG_QUEUE_URL is not set)"),
        (["--countdown", "-1"], "'-1' is not between 0 and 604800 seconds"),
        (["--eta", "tomorrow"], "--eta: 'tomorrow' is not an ISO 8601 date and time"),
        (["--eta", "2026-01-01T00:00:00", "--countdown", "5"], "give --countdown or --eta"),
    ],
)
def test_bad_queue_or_timing_is_refused_and_nothing_is_sent(
    stack: embedded.LocalResources, argv: list[str], message: str
) -> None:
    task = ["tasks.imports.import_records", "--args", '[[], "b", "k"]']
    result = run("enqueue", *task, *argv, env=support.attached_env(stack))
    assert result.returncode in (1, 2), result.stdout + result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert support.queue_depth(stack, stack.queue_url) == 0


def test_enqueue_to_the_long_queue_with_a_countdown(
    make_stack: Callable[..., embedded.LocalResources],
) -> None:
    # GIVEN a stack with a long-jobs queue
    stack = make_stack()
    long = make_stack(visibility_timeout=300)
    env = {**support.attached_env(stack), "GALLEY_LONG_QUEUE_URL": long.queue_url}
    # WHEN a job is enqueued to it with a countdown, and another with an eta
    task = ["tasks.imports.import_records", "--args", '[[], "b", "k"]']
    later = run("enqueue", *task, "--queue", "long", "--countdown", "30", env=env)
    at = run("enqueue", *task, "--queue", "long", "--eta", "2099-01-01T00:00:00+00:00", env=env)
    # THEN both wait, delayed, on the long queue; nothing is on the jobs queue
    assert later.returncode == at.returncode == 0, later.stderr + at.stderr
    sqs, _ = support.clients(stack)
    attributes = sqs.get_queue_attributes(QueueUrl=long.queue_url, AttributeNames=["All"])
    assert attributes["Attributes"]["ApproximateNumberOfMessagesDelayed"] == "2"
    assert support.queue_depth(stack, stack.queue_url) == 0


def test_unknown_task_error_lists_the_known_ones(stack: embedded.LocalResources) -> None:
    result = run("enqueue", "tasks.nope", env=support.attached_env(stack))
    assert "tasks.reports.summarize_csv" in result.stderr


def test_enqueue_without_queue_names_the_variable(stack: embedded.LocalResources) -> None:
    env = support.attached_env(stack)
    del env["GALLEY_QUEUE_URL"]
    result = run("enqueue", "tasks.reports.summarize_csv", env=env)
    assert result.returncode == 1
    assert "GALLEY_QUEUE_URL: required but not set" in result.stderr
    assert "Traceback" not in result.stderr


def test_local_env_without_a_stack_says_how_to_start_one(tmp_path: Path) -> None:
    result = run("local", "env", env=support.attached_env_plain(), cwd=tmp_path)
    assert result.returncode == 1
    assert "no local stack is running" in result.stderr
    assert "galley local up" in result.stderr


def test_local_up_on_a_taken_port_names_the_port(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run(
            "local", "up", "--port", str(port), env=support.attached_env_plain(), cwd=tmp_path
        )
    assert result.returncode == 1
    assert f"port {port} on 127.0.0.1 is already in use" in result.stderr
    assert not (tmp_path / ".galley" / "local.json").exists()


@pytest.mark.parametrize("timeout", ["nan", "inf", "-1", "soon"])
def test_a_wait_that_could_never_end_is_refused(
    stack: embedded.LocalResources, timeout: str
) -> None:
    """Found by the adversarial review: `--timeout nan` waited for ever."""
    result = run(
        "result", "some-id", "--wait", "--timeout", timeout, env=support.attached_env(stack)
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Invalid value for '--timeout'" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("task_id", "message"),
    [("", "the job id is empty"), ("bad-\udcff", "is not valid UTF-8 text")],
)
def test_a_job_id_no_result_can_have_is_a_clear_error(
    stack: embedded.LocalResources, task_id: str, message: str
) -> None:
    """Found by the review of the restructure: tracebacks (ValueError, UnicodeEncodeError)."""
    result = run("result", task_id, env=support.attached_env(stack))
    assert result.returncode == 1, result.stdout + result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_a_state_file_that_is_not_galleys_is_a_clear_error(tmp_path: Path) -> None:
    """Found by the review of the restructure: a JSONDecodeError traceback."""
    state = tmp_path / "state.json"
    state.write_text("{bad")
    result = run("local", "env", "--state-file", str(state), env=support.attached_env_plain())
    assert result.returncode == 1, result.stdout + result.stderr
    assert "is not a local stack's state" in result.stderr
    assert "Traceback" not in result.stderr


def test_an_aws_variable_botocore_cannot_read_is_one_line(stack: embedded.LocalResources) -> None:
    """Found by the review of the restructure: AWS_MAX_ATTEMPTS=abc gave a traceback."""
    env = {**support.attached_env(stack), "AWS_MAX_ATTEMPTS": "abc"}
    result = run("result", "some-id", env=env)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Error: ValueError: invalid literal for int()" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("what", ["missing queue", "unreachable endpoint"])
def test_enqueue_that_aws_refuses_is_one_line(stack: embedded.LocalResources, what: str) -> None:
    # found by the review: a botocore / kombu traceback
    env = support.attached_env(stack)
    if what == "missing queue":
        env["GALLEY_QUEUE_URL"] = stack.queue_url + "-nope"
    else:
        env["AWS_ENDPOINT_URL"] = "http://127.0.0.1:1"
        env["AWS_MAX_ATTEMPTS"] = "1"
    task = ["tasks.imports.import_records", "--args", '[[], "b", "k"]']
    result = run("enqueue", *task, env=env)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("Error: ") and len(result.stderr.splitlines()) == 1


@pytest.mark.parametrize("command", [["local", "up", "--no-worker"], ["local", "status"]])
def test_a_galley_dir_that_cannot_be_used_is_one_line(tmp_path: Path, command: list[str]) -> None:
    # found by the review: a FileExistsError / IsADirectoryError traceback
    (tmp_path / ".galley").mkdir()
    (tmp_path / ".galley" / "local.lock").mkdir()
    result = run(*command, env=support.attached_env_plain(), cwd=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("Error: ") and "local.lock" in result.stderr
