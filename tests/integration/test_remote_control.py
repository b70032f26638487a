"""Celery's remote-control commands on a Galley app: one line naming what answers instead.

Each command is run as a user runs it, the ``celery`` CLI in a process of its own with the
settings of a stack on the moto server.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from runner.local import embedded
from tests import support

NO_BROADCAST = "SQS has no broadcast"


def celery(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "celery", "-A", "runner.app", *args]
    return subprocess.run(
        argv, env=env, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL
    )


def assert_one_line(result: subprocess.CompletedProcess[str], *expected: str) -> str:
    """The command failed with exactly one line on stderr holding every ``expected`` text, and
    said nothing of Celery's internals."""
    output = result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode != 0, output
    assert len(lines) == 1, output
    for text in expected:
        assert text in lines[0], output
    assert "Traceback" not in output
    assert "pidbox" not in output
    return lines[0]


@pytest.mark.parametrize(
    ("argv", "answer"),
    [
        (["inspect", "active"], "galley status"),
        (["inspect", "stats"], "galley status"),
        (["inspect", "reserved"], "galley status"),
        (["inspect", "query_task", "abc"], "galley result ID"),
        (["status"], "galley status"),
        (["control", "shutdown"], "SIGTERM"),
        (["control", "add_consumer", "long"], "-Q long"),
        (["control", "rate_limit", "tasks.reports.summarize_csv", "1/s"], "@app.task"),
    ],
)
def test_remote_control_says_sqs_has_no_broadcast(
    stack: embedded.LocalResources, argv: list[str], answer: str
) -> None:
    # WHEN a remote-control command is run against a Galley app
    result = celery(*argv, env=support.attached_env(stack))
    # THEN one line says why it cannot work and what answers the same question
    line = assert_one_line(result, NO_BROADCAST, answer)
    assert line.startswith(f"Error: celery {argv[0]}")


def test_control_revoke_revokes_through_s3(stack: embedded.LocalResources) -> None:
    # WHEN `celery control revoke` names a job no worker has seen
    result = celery("control", "revoke", "job-abc", env=support.attached_env(stack))
    # THEN it is revoked (no broadcast: the bucket answers) and its state says so
    assert result.returncode == 0, result.stdout + result.stderr
    assert "revoked job-abc" in result.stdout
    assert "Traceback" not in result.stderr
    status = subprocess.run(
        support.galley("result", "job-abc"),
        env=support.attached_env(stack),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert '"state": "REVOKED"' in status.stdout, status.stdout + status.stderr


def test_control_revoke_of_a_bad_id_is_one_line(stack: embedded.LocalResources) -> None:
    result = celery("control", "terminate", "NOPE", "job-abc", env=support.attached_env(stack))
    line = assert_one_line(result, "not a signal: 'NOPE'")
    assert result.returncode == 2, line


@pytest.mark.parametrize("argv", [["events"], ["events", "--dump"]])
def test_events_says_workers_send_none(stack: embedded.LocalResources, argv: list[str]) -> None:
    # WHEN the event monitor (curses) or the event dump is started
    result = celery(*argv, env=support.attached_env(stack))
    # THEN one line says there are no events, and what to use (no curses screen was set up)
    assert_one_line(result, "no events", "galley status", "GALLEY_LOG_FORMAT=json")
    assert "\x1b[" not in result.stdout


def test_flower_says_what_answers_instead(stack: embedded.LocalResources) -> None:
    result = celery("flower", env=support.attached_env(stack))
    assert_one_line(result, "Flower", NO_BROADCAST, "galley status")


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["purge", "-f", "-Q", "other"], ["'other'", "jobs", "galley dlq purge"]),
        (["purge", "-f", "-X", "lnog"], ["'lnog'", "jobs"]),
        (["purge", "-f", "-Q", "long"], ["GALLEY_LONG_QUEUE_URL"]),
    ],
)
def test_purge_of_a_queue_the_stack_lacks_is_one_line(
    stack: embedded.LocalResources, argv: list[str], expected: list[str]
) -> None:
    # GIVEN a job waits on the jobs queue
    sqs, _ = support.clients(stack)
    sqs.send_message(QueueUrl=stack.queue_url, MessageBody="{}")
    # WHEN a queue the app does not have is purged (or excluded: a typo would purge the rest)
    result = celery(*argv, env=support.attached_env(stack))
    # THEN one line names it and the stack's queues, and nothing was purged
    assert_one_line(result, *expected)
    assert support.queue_depth(stack, stack.queue_url) == 1


def test_purge_of_the_stack_queue_still_purges(stack: embedded.LocalResources) -> None:
    sqs, _ = support.clients(stack)
    sqs.send_message(QueueUrl=stack.queue_url, MessageBody="{}")
    result = celery("purge", "-f", "-Q", "jobs", env=support.attached_env(stack))
    assert result.returncode == 0, result.stdout + result.stderr
    assert support.queue_depth(stack, stack.queue_url) == 0
