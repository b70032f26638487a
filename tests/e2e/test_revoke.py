"""Revoke on SQS, end to end: real prefork workers on a moto server never run a revoked job's
body — queued, delayed in hops, retrying, redriven from the DLQ, or revoked while no worker ran —
and terminate stops a running one, leaving the worker healthy."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from celery.result import AsyncResult

from runner.core.deadletter import dead_letter
from runner.local import embedded
from runner.local.process import Child, wait_for
from runner.wire import codec
from tests import support
from tests.e2e.test_reliability import TASKS, runs
from tests.faults import FaultProxy

pytestmark = pytest.mark.e2e

#: Workers read the revocations every 2 s here (5 s by default): the tests wait less.
REFRESH = "2"
WORKER_ENV = {**TASKS, "GALLEY_REVOKE_REFRESH_SECONDS": REFRESH}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def galley(stack: embedded.LocalResources, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        support.galley(*args),
        env=support.attached_env(stack),
        capture_output=True,
        text=True,
        timeout=120,
    )


def settled(stack: embedded.LocalResources, *urls: str) -> Callable[[], bool]:
    return lambda: all(support.queue_depth(stack, url) == 0 for url in urls)


def discarded(worker: Child, task_id: str) -> bool:
    text = worker.log_path.read_text(errors="replace") if worker.log_path else ""
    return "Discarding revoked task: " in text and task_id in text


def test_a_job_revoked_while_no_worker_ran_is_honoured_by_a_worker_started_later(
    make_stack: Callable[..., embedded.LocalResources],
    app_for: Callable[[embedded.LocalResources], Any],
    worker: Callable[..., Child],
) -> None:
    # GIVEN a job queued while no worker runs
    stack = make_stack(visibility_timeout=30)
    client = app_for(stack)
    job = uuid.uuid4().hex
    result = client.send_task("reliability.stamp", args=[stack.bucket, job])
    # WHEN it is revoked with `galley revoke`
    revoked = galley(stack, "revoke", result.id)
    # THEN its state is REVOKED at once, before any worker saw it
    assert revoked.returncode == 0, revoked.stderr
    assert revoked.stdout.startswith(f"revoked {result.id}: no result yet")
    assert AsyncResult(result.id, app=client).state == "REVOKED"
    # AND a worker started afterwards deletes the message without running the job
    started = worker(stack, **WORKER_ENV)
    wait_for(settled(stack, stack.queue_url), timeout=60, what="the job's message settled")
    assert runs(stack, job, "started") == 0
    assert support.queue_depth(stack, stack.dlq_url) == 0  # not dead-lettered
    assert AsyncResult(result.id, app=client).state == "REVOKED"
    assert discarded(started, result.id)


def test_a_revoked_job_waiting_for_a_pool_process_never_runs(
    make_stack: Callable[..., embedded.LocalResources],
    app_for: Callable[[embedded.LocalResources], Any],
    worker: Callable[..., Child],
) -> None:
    # GIVEN a worker with one process, busy with an 8 s job
    stack = make_stack(visibility_timeout=30)
    client = app_for(stack)
    worker(stack, concurrency=1, **WORKER_ENV)
    busy = uuid.uuid4().hex
    client.send_task("reliability.work", args=[stack.bucket, busy, 8])
    wait_for(lambda: runs(stack, busy, "started") == 1, timeout=60, what="the busy job to start")
    # AND a second job the worker has taken and handed to its pool, waiting for the process
    job = uuid.uuid4().hex
    queued = client.send_task("reliability.stamp", args=[stack.bucket, job])
    sqs, _ = support.clients(stack)

    def taken() -> bool:
        attrs = sqs.get_queue_attributes(QueueUrl=stack.queue_url, AttributeNames=["All"])
        return attrs["Attributes"]["ApproximateNumberOfMessagesNotVisible"] == "2"

    wait_for(taken, timeout=30, what="the worker to take the second job")
    # WHEN the waiting job is revoked
    client.control.revoke(queued.id)
    # THEN once the busy job is done, the revoked one is settled without running
    wait_for(settled(stack, stack.queue_url), timeout=60, what="both messages settled")
    assert runs(stack, busy, "finished") == 1
    assert runs(stack, job, "started") == 0
    assert support.queue_depth(stack, stack.dlq_url) == 0
    assert AsyncResult(queued.id, app=client).state == "REVOKED"


def test_a_revoked_countdown_job_beyond_one_hop_never_runs(
    make_stack: Callable[..., embedded.LocalResources],
    app_for: Callable[[embedded.LocalResources], Any],
    worker: Callable[..., Child],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN hops shortened to 2 s and a job due in 12 s: it travels in several hops
    stack = make_stack(visibility_timeout=30)
    monkeypatch.setenv("GALLEY_MAX_HOP_SECONDS", "2")
    client = app_for(stack)
    busy = worker(stack, GALLEY_MAX_HOP_SECONDS="2", **WORKER_ENV)
    job = uuid.uuid4().hex
    result = client.send_task("reliability.stamp", args=[stack.bucket, job], countdown=12)
    log = busy.log_path.read_text if busy.log_path else str
    wait_for(
        lambda: f"reliability.stamp[{result.id}] is due at" in log(),
        timeout=30,
        what="the first hop",
    )
    # WHEN it is revoked between hops
    client.control.revoke(result.id)
    # THEN it never runs: a worker discards it at a later hop, before its eta
    wait_for(settled(stack, stack.queue_url), timeout=60, what="the job's message settled")
    assert runs(stack, job, "started") == 0
    assert support.queue_depth(stack, stack.dlq_url) == 0
    assert AsyncResult(result.id, app=client).state == "REVOKED"
    assert discarded(busy, result.id)


def test_a_revoked_retrying_job_does_not_run_again(
    make_stack: Callable[..., embedded.LocalResources],
    app_for: Callable[[embedded.LocalResources], Any],
    worker: Callable[..., Child],
) -> None:
    # GIVEN a job that ran once and waits 8 s for its retry
    stack = make_stack(visibility_timeout=30)
    client = app_for(stack)
    running = worker(stack, **WORKER_ENV)
    job = uuid.uuid4().hex
    result = client.send_task("reliability.retry_later", args=[stack.bucket, job, 8])
    wait_for(lambda: result.state == "RETRY", timeout=60, what="the job to wait for its retry")
    # WHEN it is revoked
    client.control.revoke(result.id)
    assert AsyncResult(result.id, app=client).state == "REVOKED"  # at once
    # THEN its retry arrives and is discarded: the body ran once, the first time only
    wait_for(lambda: discarded(running, result.id), timeout=60, what="the retry discarded")
    wait_for(settled(stack, stack.queue_url), timeout=30, what="the retry's message settled")
    assert runs(stack, job, "started") == 1
    assert support.queue_depth(stack, stack.dlq_url) == 0
    assert AsyncResult(result.id, app=client).state == "REVOKED"


def test_a_revoked_job_redriven_from_the_dlq_never_runs(
    make_stack: Callable[..., embedded.LocalResources],
    app_for: Callable[[embedded.LocalResources], Any],
    worker: Callable[..., Child],
) -> None:
    # GIVEN a job in the dead-letter queue, and a worker on its queue
    stack = make_stack(visibility_timeout=30)
    sqs, _ = support.clients(stack)
    client = app_for(stack)
    running = worker(stack, **WORKER_ENV)
    job, task_id = uuid.uuid4().hex, str(uuid.uuid4())
    queue = stack.queue_url.rsplit("/", 1)[1]
    body = codec.encode("reliability.stamp", [stack.bucket, job], queue=queue, task_id=task_id)
    dead_letter(sqs, stack.dlq_url, body, reason="it failed", source_queue=stack.queue_url)
    # WHEN it is revoked, and then everything is redriven
    assert galley(stack, "revoke", task_id).returncode == 0
    time.sleep(float(REFRESH) + 1)  # let the worker read it: not a wait for a condition
    redriven = galley(stack, "dlq", "redrive", "--all")
    assert redriven.returncode == 0, redriven.stderr
    # THEN the worker deletes it without running it, and it does not come back to the DLQ
    wait_for(lambda: discarded(running, task_id), timeout=60, what="the redriven job discarded")
    wait_for(settled(stack, stack.queue_url, stack.dlq_url), timeout=30, what="queues empty")
    assert runs(stack, job, "started") == 0
    assert AsyncResult(task_id, app=client).state == "REVOKED"


def test_terminate_stops_a_running_job_and_the_worker_runs_the_next(
    make_stack: Callable[..., embedded.LocalResources],
    app_for: Callable[[embedded.LocalResources], Any],
    worker: Callable[..., Child],
) -> None:
    # GIVEN a worker with one process running a 30 s job
    stack = make_stack(visibility_timeout=60)
    client = app_for(stack)
    running = worker(stack, concurrency=1, **{**TASKS})  # the default refresh (5 s)
    job = uuid.uuid4().hex
    long_job = client.send_task("reliability.work", args=[stack.bucket, job, 30])
    wait_for(lambda: runs(stack, job, "started") == 1, timeout=60, what="the 30 s job to start")
    _, s3 = support.clients(stack)
    (marker,) = s3.list_objects_v2(Bucket=stack.bucket, Prefix=f"runs/{job}/started/")["Contents"]
    pid = int(s3.get_object(Bucket=stack.bucket, Key=marker["Key"])["Body"].read())
    # WHEN it is revoked with terminate
    began = time.monotonic()
    done = galley(stack, "revoke", "--terminate", long_job.id)
    recorded = time.monotonic()  # the CLI (a Python process loading Celery) has returned
    assert done.returncode == 0, done.stderr
    assert "within ~5 s" in done.stdout
    # THEN the pool process running it is stopped within ~10 s of the revocation
    wait_for(lambda: not _alive(pid), timeout=30, what="the job's process to stop")
    stopped = time.monotonic()
    print(
        f"terminate: the job's process stopped {stopped - recorded:.1f} s after the revocation "
        f"was recorded ({stopped - began:.1f} s after `galley revoke` started)"
    )
    assert stopped - recorded < 10
    # AND the worker runs the next job on its one (new) pool process
    following = uuid.uuid4().hex
    client.send_task("reliability.stamp", args=[stack.bucket, following]).get(timeout=30)
    assert runs(stack, job, "finished") == 0
    assert AsyncResult(long_job.id, app=client).state == "REVOKED"
    assert running.alive()
    wait_for(settled(stack, stack.queue_url), timeout=30, what="both messages settled")
    assert support.queue_depth(stack, stack.dlq_url) == 0


def test_revocations_cost_a_worker_one_request_per_refresh_not_per_job(
    make_recording_stack: Callable[[], embedded.LocalResources],
    app_for: Callable[[embedded.LocalResources], Any],
    worker: Callable[..., Child],
) -> None:
    # GIVEN a moto server recording every request, and a worker with the default refresh (5 s)
    stack = make_recording_stack()
    support.recorder(stack.endpoint_url, "reset-recording")
    support.recorder(stack.endpoint_url, "start-recording")
    started = time.monotonic()
    worker(stack, **TASKS)
    client = app_for(stack)
    # WHEN it runs 20 jobs and idles, nothing being revoked, for 30 s in all
    results = [
        client.send_task("reliability.stamp", args=[stack.bucket, f"j{n}"]) for n in range(20)
    ]
    for result in results:
        result.get(timeout=60)
    wait_for(lambda: time.monotonic() - started >= 30, timeout=60, what="30 s to pass")
    elapsed = time.monotonic() - started
    actions = support.recorded_actions(stack.endpoint_url)
    # THEN its revocation requests follow the clock, not the jobs: a HEAD per refresh, one LIST
    heads = sum(n for a, n in actions.items() if a.startswith("HEAD") and "/revoked/" in a)
    lists = sum(n for a, n in actions.items() if a.startswith("GET") and "prefix=revoked" in a)
    per_hour = (heads + lists) * 3600 / elapsed
    print(
        f"revocations, nothing revoked: {heads} HEAD + {lists} LIST in {elapsed:.0f} s with 20 "
        f"jobs -> {per_hour:.0f} requests per worker-hour"
    )
    assert lists == 1  # the first read; the marker did not change after it
    assert 1 <= heads <= elapsed / 5 + 1


def test_a_hand_written_revocation_with_a_bad_signal_leaves_the_worker_running(
    make_stack: Callable[..., embedded.LocalResources],
    app_for: Callable[[embedded.LocalResources], Any],
    worker: Callable[..., Child],
) -> None:
    # GIVEN a worker running a 30 s job
    stack = make_stack(visibility_timeout=60)
    client = app_for(stack)
    running = worker(stack, concurrency=2, **WORKER_ENV)
    job = uuid.uuid4().hex
    long_job = client.send_task("reliability.work", args=[stack.bucket, job, 30])
    wait_for(lambda: runs(stack, job, "started") == 1, timeout=60, what="the 30 s job to start")
    # WHEN its revocation is written by another tool, naming a signal Celery does not take
    _, s3 = support.clients(stack)
    body = b'{"revoked_at": "", "terminate": true, "signal": "SIGNOPE"}'
    s3.put_object(Bucket=stack.bucket, Key=f"revoked/{long_job.id}", Body=body)
    s3.put_object(Bucket=stack.bucket, Key="revoked/", Body=b"now")
    # THEN the worker stops the job (SIGTERM) at its next refresh, and goes on to the next job
    wait_for(
        lambda: "SIGNOPE" in (running.log_path.read_text() if running.log_path else ""),
        timeout=30,
        what="the worker to read the revocation",
    )
    following = uuid.uuid4().hex
    client.send_task("reliability.stamp", args=[stack.bucket, following]).get(timeout=30)
    assert running.alive(), running.log_tail()
    assert runs(stack, job, "finished") == 0


@pytest.fixture
def proxy(moto_server: embedded.MotoServer) -> Iterator[FaultProxy]:
    """Requested before ``worker``, so it outlives the worker at teardown."""
    with FaultProxy(moto_server.url) as running:
        yield running


def test_a_job_revoked_before_a_worker_starts_does_not_run_while_s3_answers_slowly(
    proxy: FaultProxy,
    make_stack: Callable[..., embedded.LocalResources],
    app_for: Callable[[embedded.LocalResources], Any],
    worker: Callable[..., Child],
) -> None:
    # GIVEN a job queued and revoked while no worker runs
    stack = make_stack(visibility_timeout=30)
    client = app_for(stack)
    job = uuid.uuid4().hex
    result = client.send_task("reliability.stamp", args=[stack.bucket, job])
    assert galley(stack, "revoke", result.id).returncode == 0
    # AND S3 answers reads of the revocations 4 s late (slow, no error: within the client's
    # 5 s read timeout)
    proxy.inject("latency", service="s3", path="revoked/", seconds=4.0)
    # WHEN a worker starts, behind that S3
    started = worker(dataclasses.replace(stack, endpoint_url=proxy.url), **WORKER_ENV)
    wait_for(settled(stack, stack.queue_url), timeout=60, what="the job's message settled")
    # THEN the job, revoked long before, did not run (the window is for revocations made
    # less than a refresh before the job starts)
    assert runs(stack, job, "started") == 0, started.log_tail()
    assert AsyncResult(result.id, app=client).state == "REVOKED"


def test_a_worker_whose_revocation_reads_fail_at_start_waits_and_never_runs_a_revoked_job(
    proxy: FaultProxy,
    make_stack: Callable[..., embedded.LocalResources],
    app_for: Callable[[embedded.LocalResources], Any],
    worker: Callable[..., Child],
) -> None:
    # GIVEN a job queued and revoked while no worker runs
    stack = make_stack(visibility_timeout=30)
    client = app_for(stack)
    job = uuid.uuid4().hex
    result = client.send_task("reliability.stamp", args=[stack.bucket, job])
    assert galley(stack, "revoke", result.id).returncode == 0
    # AND S3 failing every read of the revocations (503)
    proxy.inject("http_error", status=503, service="s3", path="revoked/")

    # WHEN a worker starts behind that S3, and S3 recovers after three of its reads failed
    # (the worker is not ready before: it heals from a thread)
    def heal_after_three_failed_reads() -> None:
        failed = lambda: proxy.injected()["http_error"] >= 6  # noqa: E731 - a read: 2 requests
        wait_for(failed, timeout=60, what="three failed revocation reads")
        proxy.heal()

    healer = threading.Thread(target=heal_after_three_failed_reads, daemon=True)
    healer.start()
    started = worker(dataclasses.replace(stack, endpoint_url=proxy.url), **WORKER_ENV)
    healer.join()
    wait_for(settled(stack, stack.queue_url), timeout=60, what="the job's message settled")
    # THEN the revoked job did not run, the worker lives on, and said it once
    assert runs(stack, job, "started") == 0, started.log_tail()
    assert AsyncResult(result.id, app=client).state == "REVOKED"
    assert started.alive(), started.log_tail()
    text = started.log_path.read_text(errors="replace") if started.log_path else ""
    assert text.count("takes no job until they are") == 1, started.log_tail()
