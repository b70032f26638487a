"""The worker's own receive path: the queue a message came from, rate-limited waits, shutdown.

Each test is a regression test for a defect of the receive path kombu's SQS transport gave us
(issue "Hardening"): it failed on the earlier main, as its docstring says.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import signal
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from runner.local import embedded
from runner.local.process import Child, wait_for
from runner.wire import codec
from tests import support
from tests.e2e.test_reliability import TASKS, runs

pytestmark = pytest.mark.e2e


def test_a_message_naming_another_queue_runs_once_on_the_queue_it_came_from(
    make_stack: Callable[..., embedded.LocalResources],
    app_for: Callable[[embedded.LocalResources], Any],
    worker: Callable[..., Child],
) -> None:
    """Defect 1: kombu acked on the queue the message's routing_key names; a redriven job
    (`galley dlq redrive --to URL`) named another queue, the worker died and the job ran twice."""
    # GIVEN a job whose routing key names a queue this worker does not know
    stack = make_stack(visibility_timeout=5)
    app = app_for(stack)
    running = worker(stack, **TASKS)
    job = uuid.uuid4().hex
    message = codec.build("reliability.stamp", [stack.bucket, job], queue="galley-somewhere-else")
    assert message.routing_key == "galley-somewhere-else"
    sqs, _ = support.clients(stack)
    # WHEN it arrives on this worker's queue
    sqs.send_message(QueueUrl=stack.queue_url, MessageBody=codec.encode_message(message))
    # THEN it runs, is deleted from this queue, and runs once; the worker lives
    assert app.AsyncResult(message.id).get(timeout=60) > 0
    wait_for(
        lambda: support.queue_depth(stack, stack.queue_url) == 0,
        timeout=30,
        what="the job deleted from the queue it came from",
    )
    with pytest.raises(TimeoutError):
        wait_for(lambda: runs(stack, job, "started") > 1, timeout=8, what="a second run")
    assert runs(stack, job, "started") == 1
    assert running.alive()


def test_headers_celery_chokes_on_are_dead_lettered_not_fatal(
    make_stack: Callable[..., embedded.LocalResources],
    app_for: Callable[[embedded.LocalResources], Any],
    worker: Callable[..., Child],
) -> None:
    """Defect 1 (crafted headers): `timelimit: ["abc", null]` and a 2-element body raised inside
    Celery's Request and stopped the worker."""
    stack = make_stack(visibility_timeout=5)
    app = app_for(stack)
    running = worker(stack, **TASKS)
    sqs, _ = support.clients(stack)
    queue = stack.queue_url.rsplit("/", 1)[1]
    # GIVEN a job with a time limit that is not a number, and one whose body has two elements
    bad_limit = codec.build("reliability.stamp", [stack.bucket, "x"], queue=queue)
    bad_limit.headers["timelimit"] = ["abc", None]
    two = codec.build("reliability.stamp", [stack.bucket, "y"], queue=queue)
    envelope = json.loads(base64.b64decode(codec.encode_message(two)))
    envelope["body"] = base64.b64encode(json.dumps([[stack.bucket, "y"], {}]).encode()).decode()
    two_element_body = base64.b64encode(json.dumps(envelope).encode()).decode()
    # WHEN both arrive
    sqs.send_message(QueueUrl=stack.queue_url, MessageBody=codec.encode_message(bad_limit))
    sqs.send_message(QueueUrl=stack.queue_url, MessageBody=two_element_body)
    # THEN both are in the DLQ with their reasons, and the worker still runs good jobs
    wait_for(
        lambda: support.queue_depth(stack, stack.dlq_url) == 2, timeout=60, what="two dead letters"
    )
    assert support.dead_letter_reasons(stack) == [
        "header 'timelimit' is not [hard, soft] seconds: ['abc', None]",
        "undecodable message: task body is not a protocol-2 [args, kwargs, embed] array",
    ]
    good = uuid.uuid4().hex
    assert app.send_task("reliability.stamp", args=[stack.bucket, good]).get(timeout=60) > 0
    assert running.alive()


def test_rate_limited_jobs_waiting_past_the_visibility_timeout_run_once(
    make_stack: Callable[..., embedded.LocalResources],
    app_for: Callable[[embedded.LocalResources], Any],
    worker: Callable[..., Child],
) -> None:
    """Defect 3: jobs waiting in Celery's rate-limit buckets were not covered by the heartbeat;
    past the visibility timeout SQS handed them out again and they ran twice."""
    # GIVEN a 3 s visibility timeout and a task allowed once every 5 s
    stack = make_stack(visibility_timeout=3, max_receive_count=10)
    app = app_for(stack)
    worker(stack, concurrency=2, **TASKS)
    worker(stack, concurrency=2, **TASKS)
    jobs = [uuid.uuid4().hex for _ in range(4)]
    # WHEN four such jobs arrive at once (some wait ~10 s, over three visibility timeouts)
    results = [app.send_task("reliability.throttled", args=[stack.bucket, job]) for job in jobs]
    for result in results:
        result.get(timeout=90)
    # THEN each ran exactly once, even after waiting well past a whole visibility timeout more
    with pytest.raises(TimeoutError):
        wait_for(
            lambda: any(runs(stack, job, "started") > 1 for job in jobs),
            timeout=7,
            what="a second run of a rate-limited job",
        )
    assert [runs(stack, job, "started") for job in jobs] == [1, 1, 1, 1]


def test_a_receive_in_flight_at_shutdown_gives_its_messages_back_at_once(
    make_stack: Callable[..., embedded.LocalResources],
    app_for: Callable[[embedded.LocalResources], Any],
    worker: Callable[..., Child],
) -> None:
    """Defect 12 (celery#8875): a message received by the long poll in flight while the worker
    stopped was delivered to nobody and stayed invisible for a whole visibility timeout."""
    # GIVEN an idle worker long-polling a queue with a 120 s visibility timeout
    stack = make_stack(visibility_timeout=120)
    app = app_for(stack)
    stopping = worker(stack, GALLEY_RECEIVE_WAIT_SECONDS="20", **TASKS)
    # WHEN it is told to stop, and a job arrives while its last poll is still out
    stopping.signal(signal.SIGTERM)
    job = uuid.uuid4().hex
    result = app.send_task("reliability.stamp", args=[stack.bucket, job])
    stopping.proc.wait(timeout=60)
    assert stopping.proc.returncode == 0
    # THEN the next worker runs it within seconds, not after the 120 s visibility timeout
    started = time.monotonic()
    worker(stack, **TASKS)
    assert result.get(timeout=45) > 0
    assert time.monotonic() - started < 45
    assert runs(stack, job, "started") == 1


def test_a_job_whose_chain_cannot_be_sent_is_refused_before_it_runs(
    make_stack: Callable[..., embedded.LocalResources],
    app_for: Callable[[embedded.LocalResources], Any],
    worker: Callable[..., Child],
) -> None:
    """Found by the adversarial review: a chain whose next step is routed to a queue the app
    does not have ran its first step, then failed sending the next (QueueNotFound); dead-lettered
    as failed and redriven, the first step ran twice."""
    # GIVEN a chain whose second step names a queue this worker's app does not have
    stack = make_stack(visibility_timeout=5)
    app = app_for(stack)
    running = worker(stack, **TASKS)
    job = uuid.uuid4().hex
    queue = stack.queue_url.rsplit("/", 1)[1]
    message = codec.build("reliability.stamp", [stack.bucket, job], queue=queue)
    message.embed["chain"] = [dict(app.signature("reliability.stamp", queue="galley-elsewhere"))]
    sqs, _ = support.clients(stack)
    # WHEN it arrives
    sqs.send_message(QueueUrl=stack.queue_url, MessageBody=codec.encode_message(message))
    # THEN it is dead-lettered with the reason, its FAILURE stored, and its body never ran
    wait_for(
        lambda: support.queue_depth(stack, stack.dlq_url) == 1, timeout=60, what="a dead letter"
    )
    [reason] = support.dead_letter_reasons(stack)
    assert reason.startswith("task reliability.stamp refused before it ran: its chain cannot")
    assert "galley-elsewhere" in reason
    assert app.AsyncResult(message.id).state == "FAILURE"
    assert runs(stack, job, "started") == 0
    assert running.alive()


def test_a_job_requeued_for_ever_ends_in_the_dlq_without_a_redrive_policy(
    make_stack: Callable[..., embedded.LocalResources],
    app_for: Callable[[embedded.LocalResources], Any],
    worker: Callable[..., Child],
) -> None:
    """Found by the adversarial review: on a queue without a RedrivePolicy (GALLEY_DLQ_URL set),
    a task raising Reject(requeue=True) ran 77 times in 25 s, for ever."""
    # GIVEN a queue with no RedrivePolicy, dead letters going to GALLEY_DLQ_URL
    stack = make_stack(visibility_timeout=30)
    sqs, _ = support.clients(stack)
    bare = sqs.create_queue(
        QueueName=f"bare-{stack.bucket}", Attributes={"VisibilityTimeout": "30"}
    )
    on_bare = dataclasses.replace(stack, queue_url=bare["QueueUrl"])
    app = app_for(on_bare)
    running = worker(on_bare, **TASKS)
    job = uuid.uuid4().hex
    # WHEN a job gives its message back every time it runs
    app.send_task("reliability.requeue_forever", args=[stack.bucket, job])
    # THEN after 10 deliveries it is in the DLQ, with the reason, and runs no more
    wait_for(
        lambda: support.queue_depth(stack, stack.dlq_url) == 1, timeout=90, what="a dead letter"
    )
    assert support.dead_letter_reasons(stack) == [
        "delivered 10 times without finishing (requeued, or its worker process was lost, each time)"
    ]
    assert runs(stack, job, "started") == 10
    assert support.queue_depth(on_bare, on_bare.queue_url) == 0
    assert running.alive()
