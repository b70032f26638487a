"""The stack's queues the Celery way: ``task_routes``, ``queue=`` and a task's declared queue
reach the long-jobs queue, whose worker (``celery worker -Q long``) runs them with that queue's
visibility timeout and dead-letter queue; a worker refuses a queue setting it cannot serve."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from runner.local import embedded
from runner.local.process import Child, wait_for
from tests.e2e import network_tasks  # noqa: F401  (registers the tasks on every app)

pytestmark = pytest.mark.e2e

TASKS = {"GALLEY_TASK_MODULES": "tests.e2e.network_tasks"}


def two_queues(make_stack: Callable[..., embedded.LocalResources]) -> embedded.LocalResources:
    """A jobs queue (visibility 20 s) and a long-jobs queue (60 s), each with its DLQ."""
    jobs = make_stack(visibility_timeout=20)
    long = make_stack(visibility_timeout=60)
    return dataclasses.replace(jobs, long_queue_url=long.queue_url)


def ran_on(worker: Child, task_id: str) -> bool:
    return f"[{task_id}] received" in worker.log_tail(400)


def test_routes_queue_option_and_declared_queue_reach_the_long_queues_worker(
    make_stack: Callable[..., embedded.LocalResources],
    app_for: Callable[[embedded.LocalResources], Any],
    worker: Callable[..., Child],
) -> None:
    # GIVEN a worker on each queue
    stack = two_queues(make_stack)
    on_jobs = worker(stack, **TASKS)
    on_long = worker(stack, queue="long", **TASKS)
    assert "start-up checks passed: the long queue, visibility timeout 60s" in on_long.log_tail(400)
    # AND a producer whose task_routes send queues.where to the long queue
    app = app_for(stack)
    app.conf.task_routes = {"queues.where": {"queue": "long"}}
    bucket = stack.bucket
    # WHEN jobs are sent by route, by queue=, by the task's declared queue, and by default
    routed = app.send_task("queues.where", args=[bucket, uuid.uuid4().hex])
    chosen = app.send_task("soak.good", args=[bucket, uuid.uuid4().hex], queue="long")
    declared = app.tasks["queues.declared_long"].apply_async(args=[bucket, uuid.uuid4().hex])
    default = app.send_task("soak.good", args=[bucket, uuid.uuid4().hex])
    # THEN each finishes, on the worker of its queue
    for result in (routed, chosen, declared, default):
        assert result.get(timeout=60)
    for result in (routed, chosen, declared):
        assert ran_on(on_long, result.id) and not ran_on(on_jobs, result.id)
    assert ran_on(on_jobs, default.id) and not ran_on(on_long, default.id)


def refusal(stack: embedded.LocalResources, log: Path, queue: str, **env: str) -> str:
    """Start a worker that must refuse to start; its one-line reason."""
    child = embedded.start_worker(stack, log=log, queue=queue, **TASKS, **env)
    try:
        wait_for(lambda: not child.alive(), timeout=60, what="the worker to refuse to start")
    finally:
        child.stop()
    assert child.proc.returncode == 1
    errors = [line for line in child.log_tail(400).splitlines() if line.startswith("Error: ")]
    assert errors, child.log_tail(60)
    return errors[0]


def test_a_worker_refuses_a_queue_it_cannot_serve(
    make_stack: Callable[..., embedded.LocalResources], tmp_path: Path
) -> None:
    stack = two_queues(make_stack)
    # WHEN a worker for the long queue is given the jobs queue's visibility timeout
    # THEN it refuses to start, naming both values
    assert refusal(stack, tmp_path / "a.log", "long", GALLEY_VISIBILITY_TIMEOUT="20") == (
        "Error: Galley cannot start:"
    )
    assert "GALLEY_VISIBILITY_TIMEOUT: 20 differs from the long queue's VisibilityTimeout 60" in (
        (tmp_path / "a.log").read_text()
    )
    # AND a worker asked for both queues, or for a queue the stack lacks, refuses too
    assert refusal(stack, tmp_path / "b.log", "jobs,long").startswith(
        "Error: -Q jobs,long: a worker consumes one queue"
    )
    no_long = dataclasses.replace(stack, long_queue_url=None)
    assert "GALLEY_LONG_QUEUE_URL: not set, so no worker can consume the long queue" in (
        refusal(no_long, tmp_path / "c.log", "long") + (tmp_path / "c.log").read_text()
    )
