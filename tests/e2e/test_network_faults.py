"""A real prefork worker behind a fault-injecting proxy (tests/faults.py): it rides out network
faults on SQS and S3, finishes what it had started exactly once, and loses nothing.

The worker reaches moto only through the proxy (its AWS_ENDPOINT_URL); the test itself talks to
moto directly, so its sends, reads and S3 markers never meet a fault. Executions are counted
from S3 markers (tests/e2e/network_tasks.py), not from worker logs.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from runner.core.deadletter import REASON_ATTRIBUTE
from runner.local import embedded
from runner.local.process import Child, wait_for
from runner.ops.sqs_sweep import Sweep
from runner.wire import codec
from tests import support
from tests.faults import FaultProxy

pytestmark = pytest.mark.e2e

SEED = 20260102
TASKS = {"GALLEY_TASK_MODULES": "tests.e2e.network_tasks", "GALLEY_TASK_TIME_LIMIT": "60"}


@pytest.fixture
def proxy(moto_server: embedded.MotoServer) -> Iterator[FaultProxy]:
    """Requested before ``worker`` by every test, so it outlives the worker at teardown."""
    with FaultProxy(moto_server.url, seed=SEED) as running:
        yield running


def behind(proxy: FaultProxy, stack: embedded.LocalResources) -> embedded.LocalResources:
    """``stack`` as a worker behind the proxy sees it (queue URLs keep moto's port: boto3 sends
    every call to the endpoint)."""
    return dataclasses.replace(stack, endpoint_url=proxy.url)


def runs(stack: embedded.LocalResources, job: str, phase: str) -> int:
    _, s3 = support.clients(stack)
    listed = s3.list_objects_v2(Bucket=stack.bucket, Prefix=f"runs/{job}/{phase}/")
    return int(listed.get("KeyCount", 0))


def dead_letters(stack: embedded.LocalResources) -> dict[str, str]:
    """Task id -> ``galley-reason`` of every message on the DLQ."""
    sqs, _ = support.clients(stack)
    found: dict[str, str] = {}
    with Sweep(sqs, stack.dlq_url, visibility=30) as sweep:
        for batch in sweep.batches():
            for raw in batch:
                reason = raw.get("MessageAttributes", {}).get(REASON_ATTRIBUTE, {})
                found[codec.decode(raw["Body"]).id] = reason.get("StringValue", "")
    return found


class Jobs:
    """Sends ``faults.*`` jobs from the test (straight to moto) and reads their markers; every
    wait fails at once if the worker exits."""

    def __init__(self, stack: embedded.LocalResources, client: Any, child: Child) -> None:
        self.stack, self.client, self.child = stack, client, child

    def send(self, task: str, *args: Any) -> tuple[str, Any]:
        job = uuid.uuid4().hex
        return job, self.client.send_task(task, args=[self.stack.bucket, job, *args])

    def wait(self, condition: Callable[[], bool], what: str, timeout: float = 60) -> None:
        def check() -> bool:
            assert self.child.alive(), f"the worker exited:\n{self.child.log_tail(60)}"
            return condition()

        wait_for(check, timeout=timeout, interval=0.2, what=what)

    def hold(self, seconds: float) -> None:
        """Let ``seconds`` pass (a fault lasting), checking that the worker stays up meanwhile."""
        until = time.monotonic() + seconds
        self.wait(lambda: time.monotonic() >= until, f"{seconds:g} s to pass", seconds + 5)

    def started(self, job: str, count: int = 1) -> None:
        self.wait(lambda: runs(self.stack, job, "started") >= count, f"run {count} of {job}")

    def finished(self, job: str) -> None:
        self.wait(lambda: runs(self.stack, job, "finished") >= 1, f"job {job} to finish")

    def ran(self, job: str) -> tuple[int, int]:
        """(runs started, runs finished) of ``job``."""
        return runs(self.stack, job, "started"), runs(self.stack, job, "finished")

    def drained(self, timeout: float = 60) -> None:
        """Every message settled: the queue is empty (visible + in flight + delayed)."""
        empty = lambda: support.queue_depth(self.stack, self.stack.queue_url) == 0  # noqa: E731
        self.wait(empty, "an empty queue", timeout)


# --- SQS: faults on the receive path (and on everything else SQS), one after the other ---

SQS_FAULTS = [
    # (what, inject(kind, service="sqs", **options))
    ("a 5xx burst on ReceiveMessage", "http_error", {"action": "ReceiveMessage", "status": 500}),
    ("throttling of every SQS call", "throttle", {}),
    ("connection resets on every SQS call", "reset", {}),
    ("a black hole: no SQS call is answered", "blackhole", {}),
    ("3 s of latency on every SQS call", "latency", {"seconds": 3.0}),
]
#: How long each fault lasts: shorter than the visibility timeout, since the heartbeat cannot
#: reach SQS during most of them (a fault longer than that lets SQS hand a running job's message
#: out again: at-least-once delivery, by design).
FAULT_SECONDS = 6.0
SQS_VISIBILITY = 15


def test_worker_rides_out_sqs_faults_and_runs_each_job_once(
    proxy: FaultProxy,
    make_stack: Callable[..., embedded.LocalResources],
    app_for: Callable[[embedded.LocalResources], Any],
    worker: Callable[..., Child],
) -> None:
    # GIVEN a prefork worker reaching SQS and S3 only through the proxy
    stack = make_stack(visibility_timeout=SQS_VISIBILITY, max_receive_count=5)
    jobs = Jobs(stack, app_for(stack), worker(behind(proxy, stack), **TASKS))
    for what, kind, options in SQS_FAULTS:
        # AND a 3 s job running when the fault hits
        running, running_result = jobs.send("faults.work", 3)
        jobs.started(running)
        proxy.reset_counts()
        # WHEN the fault is on, for longer than the job takes to finish (its ack meets the fault)
        proxy.inject(kind, service="sqs", **options)
        fault_ends = time.monotonic() + FAULT_SECONDS
        # AND a job is sent meanwhile: the long poll already out returns it and the next receive
        # meets the fault (a black hole swallows it: in flight, unseen, until its visibility
        # timeout)
        during, during_result = jobs.send("faults.work", 0)
        jobs.finished(running)
        jobs.hold(fault_ends - time.monotonic())
        assert proxy.injected()[kind] >= 1, what  # the fault did hit the worker's calls
        proxy.heal()
        # THEN a job sent after the heal completes within 60 s
        after, after_result = jobs.send("faults.work", 0)
        assert after_result.get(timeout=60) == after, what
        # AND the jobs sent before complete too, each exactly once, and nothing is left over
        assert running_result.get(timeout=60) == running, what
        assert during_result.get(timeout=SQS_VISIBILITY + 60) == during, what
        jobs.drained()
        assert support.queue_depth(stack, stack.dlq_url) == 0, what
        assert [jobs.ran(job) for job in (running, during, after)] == [(1, 1)] * 3, what
    # AND the worker process never exited (each wait above checked it too)
    assert jobs.child.alive()


# --- SQS: faults on the settle path ---

SETTLE_VISIBILITY = 4


def test_settle_faults_delay_outcomes_but_never_change_them(
    proxy: FaultProxy,
    make_stack: Callable[..., embedded.LocalResources],
    app_for: Callable[[embedded.LocalResources], Any],
    worker: Callable[..., Child],
) -> None:
    # GIVEN a worker behind the proxy on a queue with a 4 s visibility timeout
    stack = make_stack(visibility_timeout=SETTLE_VISIBILITY, max_receive_count=10)
    jobs = Jobs(stack, app_for(stack), worker(behind(proxy, stack), **TASKS))
    # WHEN DeleteMessageBatch fails (503) from before a job is sent until well past the
    # visibility timeout after it ends (injected first: nothing else deletes before the job
    # ends, and a job that ends before a slow test injects would never meet the fault)
    proxy.inject("http_error", service="sqs", action="DeleteMessageBatch", status=503)
    running, running_result = jobs.send("faults.work", 1)
    jobs.started(running)
    jobs.finished(running)
    jobs.hold(2.5 * SETTLE_VISIBILITY)
    assert proxy.injected()["http_error"] >= 2  # its delete was tried, and tried again
    proxy.heal()
    # THEN once it heals the message is deleted, and the job ran once: the heartbeat kept its
    # message hidden while the delete kept failing
    assert running_result.get(timeout=30) == running
    jobs.drained(timeout=30)
    assert jobs.ran(running) == (1, 1)

    # WHEN ChangeMessageVisibilityBatch fails (heartbeats and releases), and a job gives its
    # message back on its first run (Reject with requeue: a release that cannot happen)
    proxy.reset_counts()
    proxy.inject("http_error", service="sqs", action="ChangeMessageVisibilityBatch", status=500)
    requeued, requeued_result = jobs.send("faults.requeue_once", 12)
    # THEN its message comes back by itself after the visibility timeout, and runs again
    jobs.started(requeued, 2)
    assert proxy.injected()["http_error"] >= 2
    # AND when the fault heals during that second run, the release still pending from the first
    # is not carried out: it would hand the running job out a third time (the old receipt
    # handle still works)
    proxy.heal()
    assert requeued_result.get(timeout=60) == requeued
    jobs.drained(timeout=30)
    assert jobs.ran(requeued) == (2, 1)
    assert support.queue_depth(stack, stack.dlq_url) == 0
    assert jobs.child.alive()


def test_a_retry_that_cannot_be_published_is_retried_later_not_dead_lettered(
    proxy: FaultProxy,
    make_stack: Callable[..., embedded.LocalResources],
    app_for: Callable[[embedded.LocalResources], Any],
    worker: Callable[..., Child],
) -> None:
    # GIVEN a worker behind the proxy, and SendMessage failing (500) for a while
    stack = make_stack(visibility_timeout=10, max_receive_count=10)
    jobs = Jobs(stack, app_for(stack), worker(behind(proxy, stack), **TASKS))
    proxy.inject("http_error", service="sqs", action="SendMessage", status=500)
    # WHEN a job asks Celery to retry it, and the retry's publish keeps failing (kombu's client
    # makes 5 attempts)
    job, result = jobs.send("faults.retry_once")
    jobs.started(job)
    jobs.wait(lambda: proxy.injected()["http_error"] >= 5, "the retry's publish to fail 5 times")
    jobs.hold(2)
    proxy.heal()
    # THEN the worker lives, every message is settled, and the job is not lost: it succeeded or
    # it is in the DLQ with a reason
    jobs.drained(timeout=90)
    dlq = dead_letters(stack)
    assert result.state == "SUCCESS" or (result.id in dlq and dlq[result.id]), (result.state, dlq)
    assert jobs.child.alive()
    # AND the job ran again and completed: a failed publish is a passing fault, not the job's
    # (Celery raises Reject(publish error, requeue=False); it was dead-lettered before the fix)
    assert result.id not in dlq, f"dead-lettered: {dlq[result.id]}; runs {jobs.ran(job)}"
    assert result.get(timeout=60) == job
    assert jobs.ran(job) == (2, 1)


# --- S3 ---


def test_s3_put_errors_while_jobs_run_lose_nothing_and_every_job_completes(
    proxy: FaultProxy,
    make_stack: Callable[..., embedded.LocalResources],
    app_for: Callable[[embedded.LocalResources], Any],
    worker: Callable[..., Child],
) -> None:
    # GIVEN a worker behind the proxy, and six 1 s jobs, one running, the others queued
    stack = make_stack(visibility_timeout=20, max_receive_count=5)
    jobs = Jobs(stack, app_for(stack), worker(behind(proxy, stack), **TASKS))
    sent = dict(jobs.send("faults.work", 1) for _ in range(6))
    jobs.started(next(iter(sent)))
    # WHEN every S3 PUT fails with a 500 for 5 s (the jobs' own writes and the result backend's)
    proxy.inject("http_error", service="s3", action="PUT", status=500)
    jobs.hold(5)
    assert proxy.injected()["http_error"] >= 1
    proxy.heal()
    # THEN the worker lives and settles every message
    jobs.drained(timeout=90)
    # AND nothing is lost: each job succeeded or is in the DLQ with a reason, and none finished
    # twice
    states = {job: result.state for job, result in sent.items()}
    ids = {result.id: job for job, result in sent.items()}
    dlq = {ids[task_id]: reason for task_id, reason in dead_letters(stack).items()}
    assert set(dlq) <= set(sent)
    assert all(dlq.values()), dlq
    assert all(states[job] == "SUCCESS" or job in dlq for job in sent), (states, dlq)
    assert all(jobs.ran(job)[1] <= 1 for job in sent)
    assert jobs.child.alive()
    # AND every job completed, once, and none is in the DLQ
    # (a result write failing outside the body was the job's final failure before the fix)
    assert not dlq and all(state == "SUCCESS" for state in states.values()), (states, dlq)
    assert [jobs.ran(job)[1] for job in sent] == [1] * len(sent)
