"""A misconfigured worker refuses to start with one line naming the variable; never "ready"."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from runner.local import embedded
from runner.local.process import Child, wait_for
from tests import support
from tests.e2e.test_reliability import TASKS

pytestmark = pytest.mark.e2e


def start(stack: embedded.LocalResources, **env: str) -> subprocess.CompletedProcess[str]:
    """A real ``celery worker`` that is expected to refuse to start."""
    return subprocess.run(
        embedded.worker_argv(concurrency=1),
        env=support.attached_env(stack, **env),
        capture_output=True,
        text=True,
        timeout=120,
    )


def refused(result: subprocess.CompletedProcess[str], variable: str) -> str:
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "Traceback" not in output, output
    assert "ready." not in output, output
    lines = [
        line.strip().removeprefix("Error: ")
        for line in output.splitlines()
        if line.strip().removeprefix("Error: ").startswith(variable)
    ]
    assert lines, f"no line names {variable}:\n{output}"
    return lines[0]


def test_wrong_queue_url(stack: embedded.LocalResources) -> None:
    # GIVEN a queue URL naming no queue WHEN a worker starts THEN it refuses, naming the variable
    wrong = stack.queue_url.rsplit("/", 1)[0] + "/no-such-queue"
    line = refused(start(stack, GALLEY_QUEUE_URL=wrong), "GALLEY_QUEUE_URL")
    assert "does not exist" in line


def test_queue_without_any_dead_letter_queue(
    stack: embedded.LocalResources, make_stack: Callable[..., embedded.LocalResources]
) -> None:
    # GIVEN a queue with no RedrivePolicy, and no GALLEY_DLQ_URL (a failing job would run forever)
    sqs, _ = support.clients(stack)
    bare = sqs.create_queue(
        QueueName=f"bare-{stack.bucket}", Attributes={"VisibilityTimeout": "120"}
    )
    line = refused(
        start(stack, GALLEY_QUEUE_URL=bare["QueueUrl"], GALLEY_DLQ_URL=""), "GALLEY_DLQ_URL"
    )
    assert "no dead-letter queue" in line


def test_missing_bucket(stack: embedded.LocalResources) -> None:
    line = refused(start(stack, GALLEY_RESULTS_BUCKET="no-such-bucket-x1"), "GALLEY_RESULTS_BUCKET")
    assert "does not exist" in line


def test_visibility_timeout_that_disagrees_with_the_queue(stack: embedded.LocalResources) -> None:
    line = refused(start(stack, GALLEY_VISIBILITY_TIMEOUT="30"), "GALLEY_VISIBILITY_TIMEOUT")
    assert "30" in line and str(stack.visibility_timeout) in line


def test_fifo_queue(stack: embedded.LocalResources) -> None:
    fifo = stack.queue_url + ".fifo"
    line = refused(start(stack, GALLEY_QUEUE_URL=fifo), "GALLEY_QUEUE_URL")
    assert "FIFO" in line


def test_unset_settings_are_read_from_the_queue(
    make_stack: Callable[..., embedded.LocalResources],
    app_for: Callable[[embedded.LocalResources], Any],
    worker: Callable[..., Child],
    tmp_path: Path,
) -> None:
    # GIVEN a worker told neither its visibility timeout nor its DLQ: only the queue knows them
    stack = make_stack(visibility_timeout=45)
    app = app_for(stack)
    running = worker(stack, GALLEY_VISIBILITY_TIMEOUT="", GALLEY_DLQ_URL="", **TASKS)
    log = running.log_path.read_text() if running.log_path else ""
    assert f"visibility timeout 45s, dead letters to {stack.dlq_url}" in log
    # WHEN a job fails for good
    app.send_task("reliability.fail", args=["why not"])
    # THEN it reaches the DLQ the queue's RedrivePolicy names, with its reason, at once
    wait_for(
        lambda: support.queue_depth(stack, stack.dlq_url) == 1,
        timeout=60,
        what="the failed job in the RedrivePolicy's DLQ",
    )
    assert support.dead_letter_reasons(stack) == [
        "task reliability.fail failed: ValueError: why not"
    ]
    assert running.alive()


def test_a_task_module_that_does_not_exist(stack: embedded.LocalResources) -> None:
    """Found by the adversarial review: a typo in GALLEY_TASK_MODULES gave a 63-line traceback
    naming no variable."""
    line = refused(start(stack, GALLEY_TASK_MODULES="tasks_typo.nope"), "GALLEY_TASK_MODULES")
    assert "'tasks_typo.nope' not found" in line
