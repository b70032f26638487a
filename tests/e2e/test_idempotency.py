"""Idempotency keys on real prefork workers: duplicate deliveries and duplicate enqueues of one
key run the effect once, and the next step of its chain or link once; every caller gets the
first run's result. Effects are counted from S3 (tests/e2e/idempotent_tasks.py), not from worker
logs. A duplicate that waits for a held key leaves one attempt per retry for as long as the key
is held, so the tests wait for "at least" counts, never for an exact number of attempts."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from celery import chain

from runner.local import embedded
from runner.local.process import Child, wait_for
from runner.runtime import idempotency
from tests import support

pytestmark = pytest.mark.e2e

TASKS = {"GALLEY_TASK_MODULES": "tests.e2e.idempotent_tasks", "GALLEY_TASK_TIME_LIMIT": "60"}
#: Waits while a body holds its gate: inside idempotent_tasks.GATE_TIMEOUT (45 s).
GATED = 40


def listed(stack: embedded.LocalResources, prefix: str) -> list[str]:
    _, s3 = support.clients(stack)
    found = s3.list_objects_v2(Bucket=stack.bucket, Prefix=prefix)
    return [item["Key"].rsplit("/", 1)[-1] for item in found.get("Contents", [])]


def effects(stack: embedded.LocalResources, job: str) -> list[str]:
    return listed(stack, f"effects/{job}/")


def attempts(stack: embedded.LocalResources, job: str) -> int:
    return len(listed(stack, f"attempts/{job}/"))


def next_steps(stack: embedded.LocalResources, job: str) -> list[str]:
    return listed(stack, f"next/{job}/")


def stored_state(result: Any) -> tuple[str, Any]:
    """The task's state and result as S3 holds them now (AsyncResult caches a ready result)."""
    meta = result.backend.get_task_meta(result.id, cache=False)
    return meta["status"], meta["result"]


def open_gate(stack: embedded.LocalResources, job: str) -> None:
    _, s3 = support.clients(stack)
    s3.put_object(Bucket=stack.bucket, Key=f"gates/{job}", Body=b"")


def record(stack: embedded.LocalResources, task: str, key: str) -> dict[str, Any]:
    _, s3 = support.clients(stack)
    obj = s3.get_object(Bucket=stack.bucket, Key=idempotency.record_key(task, key))
    return dict(json.loads(obj["Body"].read()))


def send_twice(client: Any, stack: embedded.LocalResources, task: str, job: str) -> Any:
    """Send one call with Celery, then the very same SQS message body once more with boto3."""
    result = client.send_task(task, args=[stack.bucket, job, True])
    sent = taken(stack)
    send_again(stack, sent)
    release(stack, sent)
    assert sqs_bodies(stack) == [sent["Body"]] * 2  # byte for byte the same message
    return result


def taken(stack: embedded.LocalResources) -> dict[str, Any]:
    """Receive the one message just sent; it stays invisible until :func:`release`."""
    sqs, _ = support.clients(stack)
    found = sqs.receive_message(
        QueueUrl=stack.queue_url, MessageAttributeNames=["All"], WaitTimeSeconds=5
    )
    return dict(found["Messages"][0])


def send_again(stack: embedded.LocalResources, sent: dict[str, Any]) -> None:
    """Put the message ``sent`` on the queue once more, byte for byte (a second delivery)."""
    sqs, _ = support.clients(stack)
    again: dict[str, Any] = {"QueueUrl": stack.queue_url, "MessageBody": sent["Body"]}
    if sent.get("MessageAttributes"):
        again["MessageAttributes"] = sent["MessageAttributes"]
    sqs.send_message(**again)


def release(stack: embedded.LocalResources, sent: dict[str, Any]) -> None:
    sqs, _ = support.clients(stack)
    sqs.change_message_visibility(
        QueueUrl=stack.queue_url, ReceiptHandle=sent["ReceiptHandle"], VisibilityTimeout=0
    )


def test_the_same_message_delivered_twice_runs_the_effect_once(
    make_stack: Callable[..., embedded.LocalResources],
    app_for: Callable[[embedded.LocalResources], Any],
    worker: Callable[..., Child],
) -> None:
    # GIVEN the exact message Celery sent, on the queue twice (as SQS may deliver it)
    stack = make_stack(max_receive_count=10)  # the test itself receives it twice
    job = uuid.uuid4().hex
    result = send_twice(app_for(stack), stack, "idem.keyed", job)

    # WHEN two workers take both copies: one runs the effect and holds the lease (its body
    # waits for the gate), the other finds the lease held and retries. A waiting duplicate
    # leaves one attempt per retry (every second or two) for as long as the gate is shut, so
    # only "at least" counts are stable: attempt 3 is the duplicate's first retry.
    worker(stack, **TASKS)
    worker(stack, **TASKS)
    wait_for(
        lambda: len(effects(stack, job)) >= 1 and attempts(stack, job) >= 3,
        timeout=GATED,
        what="the holder's effect, and the duplicate to start and retry",
    )
    assert len(effects(stack, job)) == 1  # the gate is shut: the holder's effect only
    held = record(stack, "idem.keyed", job)
    assert (held["status"], held["task_id"]) == ("running", result.id)
    assert result.state in ("STARTED", "RETRY")  # the holder started, the duplicate retries
    open_gate(stack, job)

    # THEN the retried duplicate finds the work done: one effect, one result
    wait_for(
        lambda: support.queue_depth(stack, stack.queue_url) == 0,
        timeout=GATED,
        what="both deliveries and every retry to finish",
    )
    [run] = effects(stack, job)
    assert result.get(timeout=30) == {"job": job, "run": run}
    assert stored_state(result) == ("SUCCESS", {"job": job, "run": run})
    done = record(stack, "idem.keyed", job)
    assert (done["status"], done["task_id"], done["result"]) == ("done", result.id, result.get())
    assert support.queue_depth(stack, stack.dlq_url) == 0


def test_negative_control_without_the_key_both_deliveries_run(
    make_stack: Callable[..., embedded.LocalResources],
    app_for: Callable[[embedded.LocalResources], Any],
    worker: Callable[..., Child],
) -> None:
    """The same duplicate delivery, the same body without run_once: two effects. So the test
    above would see a second run if there were one."""
    stack = make_stack(max_receive_count=10)
    job = uuid.uuid4().hex
    result = send_twice(app_for(stack), stack, "idem.unguarded", job)
    worker(stack, **TASKS)
    worker(stack, **TASKS)
    wait_for(lambda: len(effects(stack, job)) == 2, timeout=60, what="both deliveries to run")
    open_gate(stack, job)
    assert result.get(timeout=30)["run"] in effects(stack, job)


def sqs_bodies(stack: embedded.LocalResources) -> list[str]:
    """The bodies now on the queue (received and put back at once)."""
    sqs, _ = support.clients(stack)
    messages = sqs.receive_message(
        QueueUrl=stack.queue_url, MaxNumberOfMessages=10, VisibilityTimeout=0
    ).get("Messages", [])
    return [m["Body"] for m in messages]


def test_the_same_key_enqueued_twice_runs_the_effect_once(
    make_stack: Callable[..., embedded.LocalResources],
    app_for: Callable[[embedded.LocalResources], Any],
    worker: Callable[..., Child],
) -> None:
    stack = make_stack()
    client = app_for(stack)
    worker(stack, **TASKS)
    worker(stack, **TASKS)
    job = uuid.uuid4().hex
    key = f"order-{job}"
    headers = {idempotency.HEADER: key}

    # GIVEN a first call holding the key (its body waits for the gate)
    first = client.send_task("idem.plain", args=[stack.bucket, job, True], headers=headers)
    wait_for(lambda: len(effects(stack, job)) == 1, timeout=60, what="the first run's effect")
    # WHEN a second call with another task id and the same key arrives: it waits (retries)
    second = client.send_task("idem.plain", args=[stack.bucket, job, True], headers=headers)
    assert second.id != first.id
    wait_for(lambda: second.state == "RETRY", timeout=30, what="the second call to wait")
    open_gate(stack, job)

    # THEN both see the first run's result, and the effect ran once
    [run] = effects(stack, job)
    assert first.get(timeout=30) == {"job": job, "run": run}
    assert second.get(timeout=30) == first.get()
    # AND a third call after completion returns the stored result at once, without running
    third = client.send_task("idem.plain", args=[stack.bucket, job, False], headers=headers)
    assert third.get(timeout=30) == first.get()
    assert effects(stack, job) == [run]
    assert attempts(stack, job) >= 4  # first, second, second's retry(ies), third
    # AND so does a call from the boto3-only producer with the same key
    from runner.producer import sender

    fourth = sender.enqueue("idem.plain", [stack.bucket, job, False], idempotency_key=key)
    assert client.AsyncResult(fourth).get(timeout=30) == first.get()
    assert effects(stack, job) == [run]
    done = record(stack, "idem.plain", key)
    assert (done["status"], done["task_id"]) == ("done", first.id)
    # the same task without the header has no key: it simply runs
    assert client.send_task("idem.plain", args=[stack.bucket, job]).get(timeout=30)["run"] != run
    assert len(effects(stack, job)) == 2


def send_step(client: Any, stack: embedded.LocalResources, job: str, key: str, follow: str) -> Any:
    """``idem.plain`` with the key, followed by ``idem.next`` as a chain or as a link; returns the
    keyed step's result."""
    step = client.signature(
        "idem.plain", args=[stack.bucket, job], headers={idempotency.HEADER: key}
    )
    after = client.signature("idem.next", kwargs={"bucket": stack.bucket, "job": job})
    if follow == "chain":
        return chain(step, after).apply_async().parent
    return step.apply_async(link=after)


@pytest.mark.parametrize("follow", ["chain", "link"])
def test_a_duplicate_does_not_run_the_next_step_again(
    make_stack: Callable[..., embedded.LocalResources],
    app_for: Callable[[embedded.LocalResources], Any],
    worker: Callable[..., Child],
    follow: str,
) -> None:
    # GIVEN a keyed step followed by a counted next step (a chain, or a link) that has run:
    # the step's effect once, the next step once
    stack = make_stack(max_receive_count=10)
    client = app_for(stack)
    job = uuid.uuid4().hex
    key = f"order-{job}"
    step = send_step(client, stack, job, key, follow)
    sent = taken(stack)  # kept, to deliver the very same message again below
    release(stack, sent)
    worker(stack, **TASKS)
    wait_for(
        lambda: (
            len(next_steps(stack, job)) == 1 and support.queue_depth(stack, stack.queue_url) == 0
        ),
        timeout=60,
        what="the step and its next step to run",
    )
    first = step.get(timeout=30)

    # WHEN the same message is delivered again (same task id), and the same key is enqueued
    # again with a next step of its own (a new task id)
    send_again(stack, sent)
    again = send_step(client, stack, job, key, follow)
    wait_for(
        lambda: attempts(stack, job) >= 3 and support.queue_depth(stack, stack.queue_url) == 0,
        timeout=60,
        what="both duplicates, and any step they dispatched, to finish",
    )

    # THEN the next step ran once: neither duplicate dispatched it again
    assert len(next_steps(stack, job)) == 1
    assert effects(stack, job) == [first["run"]]
    # AND both task ids end at SUCCESS with the first result: the new enqueue's STARTED (written
    # before the body: idem.keyed tracks started) did not stay, and the redelivery kept the
    # stored SUCCESS (Galley's result backend never overwrites a SUCCESS)
    assert stored_state(step) == ("SUCCESS", first)
    assert stored_state(again) == ("SUCCESS", first)
    # AND the key's record says whose next steps went out
    done = record(stack, "idem.plain", key)
    assert (done["status"], done["task_id"]) == ("done", step.id)
    assert done[idempotency.CALLBACKS_SENT_FIELD] == step.id
