"""No task lost, no surprise duplicate: kill -9, long tasks, SIGTERM. Real prefork workers."""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from runner.local import embedded
from runner.local.process import Child, wait_for
from tests import support

pytestmark = pytest.mark.e2e

TASKS = {"GALLEY_TASK_MODULES": "tests.e2e.reliability_tasks", "GALLEY_TASK_TIME_LIMIT": "60"}


def runs(stack: embedded.LocalResources, job: str, phase: str) -> int:
    _, s3 = support.clients(stack)
    listed = s3.list_objects_v2(Bucket=stack.bucket, Prefix=f"runs/{job}/{phase}/")
    return int(listed.get("KeyCount", 0))


def kill_9(worker: Child) -> None:
    """SIGKILL the worker and its pool processes at once: a crashed container."""
    os.killpg(worker.pid, signal.SIGKILL)
    worker.proc.wait(timeout=10)


def _killed_mid_task(
    make_stack: Callable[..., embedded.LocalResources],
    app_for: Callable[[embedded.LocalResources], Any],
    worker: Callable[..., Child],
    *,
    acked_first: bool = False,
    **env: str,
) -> tuple[embedded.LocalResources, Any, str]:
    """``acked_first``: the kill waits for the early ack to reach SQS. Galley's settler holds an
    ack up to 0.1 s for a batch (runner/worker/settler.py), and a task that starts within that
    window would otherwise be killed before its ack went out, and come back: not stock Celery's
    immediate ack, which this models."""
    stack = make_stack(visibility_timeout=3, max_receive_count=5)
    client = app_for(stack)
    doomed = worker(stack, **TASKS, **env)
    job = uuid.uuid4().hex
    result = client.send_task("reliability.work", args=[stack.bucket, job, 4])
    wait_for(lambda: runs(stack, job, "started") == 1, timeout=60, what="the task to start")
    if acked_first:
        empty = lambda: support.queue_depth(stack, stack.queue_url) == 0  # noqa: E731
        wait_for(empty, timeout=10, what="the early ack to delete the message")
    kill_9(doomed)
    worker(stack, **TASKS, **env)  # a healthy worker is there to pick the task up
    return stack, result, job


def test_kill_9_mid_task_loses_nothing(
    make_stack: Callable[..., embedded.LocalResources],
    app_for: Callable[[embedded.LocalResources], Any],
    worker: Callable[..., Child],
) -> None:
    # GIVEN a worker killed with SIGKILL while running a task
    stack, result, job = _killed_mid_task(make_stack, app_for, worker)
    # THEN the task comes back after the visibility timeout and completes on the other worker
    assert result.get(timeout=60) == job
    assert runs(stack, job, "finished") == 1
    assert runs(stack, job, "started") == 2  # the killed run, and the one that finished


def test_negative_control_early_ack_loses_the_task(
    make_stack: Callable[..., embedded.LocalResources],
    app_for: Callable[[embedded.LocalResources], Any],
    worker: Callable[..., Child],
) -> None:
    """The same test with stock Celery's early ack detects the loss: the test above can fail."""
    stack, result, job = _killed_mid_task(
        make_stack, app_for, worker, acked_first=True, GALLEY_TEST_EARLY_ACK="1"
    )
    # Several visibility periods pass (3 s each) with a healthy worker polling the queue...
    with pytest.raises(TimeoutError):
        wait_for(lambda: runs(stack, job, "finished") > 0, timeout=15, what="a lost task")
    # ...and the task never finishes: its message was deleted when the killed worker took it.
    assert runs(stack, job, "started") == 1
    assert support.queue_depth(stack, stack.queue_url) == 0
    assert result.state == "STARTED"


def test_task_three_times_the_visibility_timeout_runs_once(
    make_stack: Callable[..., embedded.LocalResources],
    app_for: Callable[[embedded.LocalResources], Any],
    worker: Callable[..., Child],
) -> None:
    # GIVEN a 3 s visibility timeout, two workers, and a 9 s task (time limit raised, which the
    # heartbeat allows)
    stack = make_stack(visibility_timeout=3, max_receive_count=5)
    client = app_for(stack)
    for _ in range(2):
        worker(stack, **TASKS)
    job = uuid.uuid4().hex
    # WHEN it runs
    assert client.send_task("reliability.work", args=[stack.bucket, job, 9]).get(timeout=90) == job
    # THEN it ran exactly once: the heartbeat kept its message from the other worker
    assert runs(stack, job, "started") == 1
    assert runs(stack, job, "finished") == 1
    assert support.queue_depth(stack, stack.queue_url) == 0


def test_sigterm_finishes_in_flight_and_releases_the_rest(
    make_stack: Callable[..., embedded.LocalResources],
    app_for: Callable[[embedded.LocalResources], Any],
    worker: Callable[..., Child],
) -> None:
    # GIVEN one worker process, running a task, with a second message prefetched (received,
    # not started: prefetch multiplier 2 through click's CELERY_WORKER_* variables)
    stack = make_stack(visibility_timeout=300, max_receive_count=5)
    client = app_for(stack)
    busy = worker(stack, concurrency=1, CELERY_WORKER_PREFETCH_MULTIPLIER="2", **TASKS)
    job, waiting = uuid.uuid4().hex, uuid.uuid4().hex
    running = client.send_task("reliability.work", args=[stack.bucket, job, 4])
    wait_for(lambda: runs(stack, job, "started") == 1, timeout=60, what="the first task")
    client.send_task("reliability.work", args=[stack.bucket, waiting, 0])
    sqs, _ = support.clients(stack)

    def in_flight() -> str:
        attrs = sqs.get_queue_attributes(QueueUrl=stack.queue_url, AttributeNames=["All"])
        return str(attrs["Attributes"]["ApproximateNumberOfMessagesNotVisible"])

    wait_for(lambda: in_flight() == "2", timeout=30, what="the second message to be prefetched")
    # WHEN ECS stops the task: SIGTERM to the worker's main process only
    os.kill(busy.pid, signal.SIGTERM)
    assert busy.proc.wait(timeout=60) == 0
    # THEN the other message was visible again by the time the worker exited (released, not
    # left for the 300 s visibility timeout): one look, no waiting (a timed wait measured how
    # fast a loaded moto answers, and failed under load)
    attrs = sqs.get_queue_attributes(QueueUrl=stack.queue_url, AttributeNames=["All"])
    assert attrs["Attributes"]["ApproximateNumberOfMessages"] == "1"
    # AND the running task finished and was acknowledged; the other never started
    assert running.state == "SUCCESS"
    assert runs(stack, job, "finished") == 1
    assert runs(stack, waiting, "started") == 0


def test_a_burst_of_slow_jobs_is_shared_by_idle_workers(
    make_stack: Callable[..., embedded.LocalResources],
    app_for: Callable[[embedded.LocalResources], Any],
    worker: Callable[..., Child],
) -> None:
    """Found with `galley top`: five 40 s jobs, two workers of two processes; one worker took all
    five (two running, three waiting behind them) while the other stood idle."""
    # GIVEN two idle workers of two processes each
    stack = make_stack(visibility_timeout=120)
    client = app_for(stack)
    workers = [worker(stack, concurrency=2, **TASKS) for _ in range(2)]
    # WHEN five jobs of 6 s arrive at once
    jobs = [uuid.uuid4().hex for _ in range(5)]
    for job in jobs:
        client.send_task("reliability.work", args=[stack.bucket, job, 6])
    # THEN within a few seconds four run at once, two on each worker
    _, s3 = support.clients(stack)

    def started_by() -> list[str]:
        listed = s3.list_objects_v2(Bucket=stack.bucket, Prefix="runs/").get("Contents", [])
        keys = [o["Key"] for o in listed if "/started/" in o["Key"]]
        return sorted(
            s3.get_object(Bucket=stack.bucket, Key=k)["Body"].read().decode() for k in keys
        )

    wait_for(lambda: len(started_by()) >= 4, timeout=20, what="four jobs running")
    pids = started_by()
    assert len(pids) == 4 and len(set(pids)) == 4, pids  # four processes, none idle
    assert all(w.alive() for w in workers)
