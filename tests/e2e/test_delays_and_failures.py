"""Long delays are carried by SQS in hops; failed and poison jobs end in the DLQ. Real workers."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from runner.core.deadletter import REASON_ATTRIBUTE
from runner.local import embedded
from runner.local.process import Child, wait_for
from tests import support
from tests.e2e.test_reliability import TASKS, runs

pytestmark = pytest.mark.e2e


def _attrs(stack: embedded.LocalResources, url: str) -> dict[str, str]:
    sqs, _ = support.clients(stack)
    return dict(sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"])


def test_countdown_of_2000s_is_never_held_by_a_worker(
    make_stack: Callable[..., embedded.LocalResources],
    app_for: Callable[[embedded.LocalResources], Any],
    worker: Callable[..., Child],
) -> None:
    stack = make_stack(visibility_timeout=30)
    client = app_for(stack)
    worker(stack, **TASKS)
    job = uuid.uuid4().hex
    client.send_task("reliability.stamp", args=[stack.bucket, job], countdown=2000)
    # The message waits on SQS (delayed), not in a worker (in flight), and nothing ran
    attrs = _attrs(stack, stack.queue_url)
    assert attrs["ApproximateNumberOfMessagesDelayed"] == "1"
    assert attrs["ApproximateNumberOfMessagesNotVisible"] == "0"
    assert runs(stack, job, "started") == 0


def test_hops_run_the_job_once_and_not_before_its_eta(
    make_stack: Callable[..., embedded.LocalResources],
    app_for: Callable[[embedded.LocalResources], Any],
    worker: Callable[..., Child],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN hops shortened to 2 s, so an 11 s countdown needs several (as 2000 s needs 3 of
    # 900 s; 11 s, not 7: a worker slowed by a busy machine still hops at least twice)
    stack = make_stack(visibility_timeout=30)
    monkeypatch.setenv("GALLEY_MAX_HOP_SECONDS", "2")
    client = app_for(stack)
    busy = worker(stack, GALLEY_MAX_HOP_SECONDS="2", **TASKS)
    job = uuid.uuid4().hex
    sent_at = time.time()
    result = client.send_task("reliability.stamp", args=[stack.bucket, job], countdown=11)
    # THEN it runs once, not before its eta (1 s of clock rounding allowed)
    ran_at = result.get(timeout=60)
    assert ran_at >= sent_at + 11 - 1
    assert runs(stack, job, "started") == 1
    log = busy.log_path.read_text() if busy.log_path else ""
    assert log.count(f"reliability.stamp[{result.id}] is due at") >= 2  # it really hopped


def test_failed_job_is_dead_lettered_with_its_reason(
    make_stack: Callable[..., embedded.LocalResources],
    app_for: Callable[[embedded.LocalResources], Any],
    worker: Callable[..., Child],
) -> None:
    stack = make_stack(visibility_timeout=30)
    client = app_for(stack)
    worker(stack, **TASKS)
    result = client.send_task("reliability.fail", args=["the ledger is locked"])
    with pytest.raises(ValueError, match="the ledger is locked"):
        result.get(timeout=60)
    # THEN the job is not gone: it waits in the DLQ with the reason, the queue is empty
    sqs, _ = support.clients(stack)
    found: list[dict[str, Any]] = []

    def dead_lettered() -> bool:
        found.extend(
            sqs.receive_message(QueueUrl=stack.dlq_url, MessageAttributeNames=["All"]).get(
                "Messages", []
            )
        )
        return bool(found)

    wait_for(dead_lettered, timeout=30, what="the failed job in the DLQ")
    reason = found[0]["MessageAttributes"][REASON_ATTRIBUTE]["StringValue"]
    assert reason == "task reliability.fail failed: ValueError: the ledger is locked"
    assert support.queue_depth(stack, stack.queue_url) == 0


def test_poison_job_that_kills_its_process_reaches_the_dlq(
    make_stack: Callable[..., embedded.LocalResources],
    app_for: Callable[[embedded.LocalResources], Any],
    worker: Callable[..., Child],
) -> None:
    stack = make_stack(visibility_timeout=5, max_receive_count=3)
    client = app_for(stack)
    running = worker(stack, **TASKS)
    client.send_task("reliability.crash")
    # THEN after maxReceiveCount tries SQS moves it to the DLQ; the worker stays up
    wait_for(
        lambda: support.queue_depth(stack, stack.dlq_url) == 1,
        timeout=90,
        what="the poison job in the DLQ",
    )
    assert running.alive()
    assert support.queue_depth(stack, stack.queue_url) == 0
    log = running.log_path.read_text() if running.log_path else ""
    assert "WorkerLostError" in log  # the reason, in the worker's log
    # AND the worker still runs good jobs
    job = uuid.uuid4().hex
    assert client.send_task("reliability.stamp", args=[stack.bucket, job]).get(timeout=60)


def test_failed_job_is_kept_when_the_dlq_cannot_take_it(
    make_stack: Callable[..., embedded.LocalResources],
    app_for: Callable[[embedded.LocalResources], Any],
    worker: Callable[..., Child],
) -> None:
    # GIVEN a worker whose GALLEY_DLQ_URL queue is deleted after the worker started
    stack = make_stack(visibility_timeout=2, max_receive_count=2)
    client = app_for(stack)
    sqs, _ = support.clients(stack)
    doomed = sqs.create_queue(QueueName=f"doomed-{stack.bucket}")["QueueUrl"]
    running = worker(stack, GALLEY_DLQ_URL=doomed, **TASKS)
    sqs.delete_queue(QueueUrl=doomed)
    client.send_task("reliability.fail", args=["still here"])
    # THEN the failed job is not acknowledged away: SQS's redrive policy moves it to the DLQ
    wait_for(
        lambda: support.queue_depth(stack, stack.dlq_url) == 1,
        timeout=90,
        what="the job in the queue's own DLQ",
    )
    assert running.alive()
