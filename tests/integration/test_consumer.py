"""The Lambda consumer against a moto server: Celery's execution path, S3 results, the DLQ."""

from __future__ import annotations

import base64
import json
import logging
import math
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from celery.result import AsyncResult

from runner.core.deadletter import REASON_ATTRIBUTE, SOURCE_ATTRIBUTE
from runner.core.settings import ConsumerSettings, load
from runner.errors import SettingsError
from runner.lambdas.records import Consumer
from runner.local import embedded
from runner.local.process import wait_for
from runner.producer import sender
from runner.wire import codec
from tests import support
from tests.faults import FaultProxy

EVENTS = Path(__file__).resolve().parents[1] / "events"


# --- fixtures ---
# The example tasks are bound to the module-level `runner.runtime.app.app`, which configures
# itself once per process; so the consumer tests (and test_consumer_fuzz, test_lambda_handlers,
# which import these helpers) share one stack, configured once, isolated by task ids.

_SHARED: dict[str, Any] = {}


def shared_stack(moto_server: embedded.MotoServer) -> embedded.LocalResources:
    """The one stack `runner.runtime.app.app` is attached to in this test session."""
    if "stack" not in _SHARED:
        config = support.unique_config(visibility_timeout=60)
        _SHARED["stack"] = support.provision(moto_server.url, config)
    stack: embedded.LocalResources = _SHARED["stack"]
    return stack


def shared_app(stack: embedded.LocalResources) -> Any:
    """`runner.runtime.app.app`, configured for ``stack`` (once), with the test tasks registered."""
    from runner.core.settings import WorkerSettings
    from runner.runtime.app import app

    if "app" not in _SHARED:
        assert not app.configured, "runner.runtime.app.app was configured before the consumer tests"
        app._galley_settings = WorkerSettings(  # what load(WorkerSettings) reads in Lambda
            queue_url=stack.queue_url,
            dlq_url=stack.dlq_url,
            results_bucket=stack.bucket,
            visibility_timeout=stack.visibility_timeout,
        )
        app.loader.import_default_modules()
        app.finalize(auto=True)
        _register_test_tasks(app)
        _SHARED["app"] = app
    assert app.galley_settings.queue_url == stack.queue_url, "runner.runtime.app.app: another stack"
    return app


#: A job that blocks (as on slow I/O) for ``seconds``; its start is reported to PROBES[probe].
BLOCKING_TASK = "tests.integration.blocking"
#: A job that calls sys.exit().
EXITING_TASK = "tests.integration.exiting"
#: A chord body: how many header results it got.
COUNTING_TASK = "tests.integration.counting"
PROBES: dict[str, Callable[[], None]] = {}


def _register_test_tasks(app: Any) -> None:
    @app.task(name=BLOCKING_TASK, shared=False, track_started=True)
    def blocking(seconds: float, probe: str = "") -> str:
        if probe in PROBES:
            PROBES[probe]()
        threading.Event().wait(seconds)  # stands for slow I/O; never set
        return "finished"

    @app.task(name=EXITING_TASK, shared=False)
    def exiting() -> None:
        sys.exit(3)

    @app.task(name=COUNTING_TASK, shared=False)
    def counting(results: list[Any]) -> int:
        return len(results)


@pytest.fixture(scope="session")
def lambda_stack(moto_server: embedded.MotoServer) -> embedded.LocalResources:
    return shared_stack(moto_server)


@pytest.fixture(scope="session")
def galley_app(lambda_stack: embedded.LocalResources) -> Any:
    return shared_app(lambda_stack)


@pytest.fixture
def lambda_env(
    lambda_stack: embedded.LocalResources, monkeypatch: pytest.MonkeyPatch
) -> embedded.LocalResources:
    for name, value in lambda_stack.env().items():
        monkeypatch.setenv(name, value)
    return lambda_stack


@pytest.fixture
def consumer(lambda_env: embedded.LocalResources, galley_app: Any) -> Iterator[Consumer]:
    sqs, _ = support.clients(lambda_env)
    _drain(lambda_env)
    yield Consumer(galley_app, load(ConsumerSettings), sqs=sqs)
    _drain(lambda_env)


def _drain(stack: embedded.LocalResources) -> None:
    """Delete what is receivable on both queues (PurgeQueue is allowed only once a minute)."""
    sqs, _ = support.clients(stack)
    for url in (stack.queue_url, stack.dlq_url):
        while messages := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get(
            "Messages", []
        ):
            for message in messages:
                sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])


def record(
    body: str, stack: embedded.LocalResources, receipt_handle: str | None = None
) -> dict[str, Any]:
    """An SQS event record as the event source mapping delivers it (tests/events)."""
    template = json.loads((EVENTS / "sqs_record.json").read_text())
    queue = stack.queue_url.rsplit("/", 1)[1]
    return {
        **template,
        "messageId": str(uuid.uuid4()),
        "body": body,
        "eventSourceARN": f"arn:aws:sqs:us-east-1:123456789012:{queue}",
        **({"receiptHandle": receipt_handle} if receipt_handle else {}),
    }


def received_records(stack: embedded.LocalResources, bodies: list[str]) -> list[dict[str, Any]]:
    """``bodies`` sent to the queue and received from it: records with real receipt handles,
    in the order of ``bodies`` (each body must be unique)."""
    sqs, _ = support.clients(stack)
    for body in bodies:
        sqs.send_message(QueueUrl=stack.queue_url, MessageBody=body)
    got: dict[str, dict[str, Any]] = {}

    def all_received() -> bool:
        response = sqs.receive_message(QueueUrl=stack.queue_url, MaxNumberOfMessages=10)
        for message in response.get("Messages", []):
            got[message["Body"]] = message
        return len(got) == len(bodies)

    wait_for(all_received, timeout=20, what=f"{len(bodies)} messages to be received")
    records = []
    for body in bodies:
        message = got[body]
        records.append(
            {**record(body, stack, message["ReceiptHandle"]), "messageId": message["MessageId"]}
        )
    return records


def queue_counts(stack: embedded.LocalResources) -> dict[str, int]:
    """The jobs queue's visible, in-flight and delayed message counts."""
    sqs, _ = support.clients(stack)
    attrs = sqs.get_queue_attributes(QueueUrl=stack.queue_url, AttributeNames=["All"])
    names = {
        "visible": "ApproximateNumberOfMessages",
        "in_flight": "ApproximateNumberOfMessagesNotVisible",
        "delayed": "ApproximateNumberOfMessagesDelayed",
    }
    return {key: int(attrs["Attributes"][name]) for key, name in names.items()}


def received_body(stack: embedded.LocalResources) -> str:
    sqs, _ = support.clients(stack)
    (message,) = sqs.receive_message(QueueUrl=stack.queue_url, WaitTimeSeconds=1)["Messages"]
    sqs.delete_message(QueueUrl=stack.queue_url, ReceiptHandle=message["ReceiptHandle"])
    return str(message["Body"])


def take_job(stack: embedded.LocalResources, task_id: str, what: str) -> list[dict[str, Any]]:
    """Every message of job ``task_id`` on the jobs queue, received (within 30 s) and deleted;
    other tests' messages on the shared queue are given back at once."""
    sqs, _ = support.clients(stack)
    taken: list[dict[str, Any]] = []

    def arrived() -> bool:
        for raw in sqs.receive_message(QueueUrl=stack.queue_url, MaxNumberOfMessages=10).get(
            "Messages", []
        ):
            if codec.decode(raw["Body"]).id == task_id:
                taken.append(raw)
                sqs.delete_message(QueueUrl=stack.queue_url, ReceiptHandle=raw["ReceiptHandle"])
            else:  # another test's message: give it back
                sqs.change_message_visibility(
                    QueueUrl=stack.queue_url,
                    ReceiptHandle=raw["ReceiptHandle"],
                    VisibilityTimeout=0,
                )
        return bool(taken)

    wait_for(arrived, timeout=30, what=what)
    return taken


def dlq_reasons(stack: embedded.LocalResources) -> dict[str, str]:
    """Dead-lettered task ids (or bodies) and their reasons."""
    sqs, _ = support.clients(stack)
    found: dict[str, str] = {}
    for _ in range(10):
        response = sqs.receive_message(
            QueueUrl=stack.dlq_url, MaxNumberOfMessages=10, MessageAttributeNames=["All"]
        )
        for message in response.get("Messages", []):
            attrs = message["MessageAttributes"]
            assert attrs[SOURCE_ATTRIBUTE]["StringValue"] == stack.queue_url
            try:
                key = codec.decode(message["Body"]).id
            except ValueError:  # WireError, or a number too long to read
                key = message["Body"]
            found[key] = attrs[REASON_ATTRIBUTE]["StringValue"]
            sqs.delete_message(QueueUrl=stack.dlq_url, ReceiptHandle=message["ReceiptHandle"])
        if not response.get("Messages"):
            break
    return found


class Context:
    """The part of the Lambda context the consumer reads."""

    def __init__(self, remaining_ms: int) -> None:
        self.remaining_ms = remaining_ms

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


class Deadline:
    """A Lambda context whose remaining time runs down with the clock, as Lambda's does."""

    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.end - time.monotonic()) * 1000))


# --- contract: stock Celery in, Galley consumer runs it ---


def test_celery_send_task_runs_in_the_consumer(consumer: Consumer, galley_app: Any) -> None:
    stack = consumer.settings
    # GIVEN a message sent by Celery's own send_task, as SQS hands it to Lambda
    sent = galley_app.send_task(
        "tasks.imports.import_records",
        args=[[{"name": "Ada", "email": "ada@example.com"}], stack.results_bucket, "lambda/c"],
    )
    body = received_body(_stack(consumer))
    # WHEN the consumer handles the batch
    response = consumer.handle({"Records": [record(body, _stack(consumer))]}, Context(60_000))
    # THEN nothing is left for retry, and the result is in S3 as a worker would have written it
    assert response == {"batchItemFailures": []}
    result = AsyncResult(sent.id, app=galley_app)
    assert result.state == "SUCCESS"
    assert result.get(timeout=5)["accepted"] == 1


def test_producer_message_runs_in_the_consumer(consumer: Consumer, galley_app: Any) -> None:
    stack = _stack(consumer)
    task_id = sender.enqueue(
        "tasks.imports.import_records", [[], stack.bucket, "lambda/p"], queue_url=stack.queue_url
    )
    response = consumer.handle({"Records": [record(received_body(stack), stack)]})
    assert response == {"batchItemFailures": []}
    assert AsyncResult(task_id, app=galley_app).get(timeout=5)["total"] == 0


def test_handler_entry_point_cold_starts_from_the_environment(
    lambda_env: embedded.LocalResources, galley_app: Any
) -> None:
    from runner.lambdas import consumer as entry

    task_id = sender.enqueue(
        "tasks.imports.import_records", [[], lambda_env.bucket, "p"], queue_url=lambda_env.queue_url
    )
    event = {"Records": [record(received_body(lambda_env), lambda_env)]}
    assert entry.handler(event, Context(60_000)) == {"batchItemFailures": []}
    assert AsyncResult(task_id, app=galley_app).state == "SUCCESS"


# --- a mixed batch: nothing lost ---


def test_mixed_batch_settles_every_record(consumer: Consumer, galley_app: Any) -> None:
    stack = _stack(consumer)
    sqs, _ = support.clients(stack)

    def body_of(name: str, *args: Any, **kwargs: Any) -> tuple[str, str]:
        task_id = str(uuid.uuid4())
        return task_id, codec.encode(
            name, args, kwargs, queue=stack.queue_url.rsplit("/", 1)[1], task_id=task_id
        )

    good_id, good = body_of("tasks.imports.import_records", [], stack.bucket, "mixed")
    failing_id, failing = body_of("tasks.reports.summarize_csv", stack.bucket, "no/such.csv")
    retry_id, retrying = body_of("tasks.uploads.publish_upload", stack.bucket, "later.bin")
    unknown_id, unknown = body_of("tasks.nope.missing", 1)
    wrong_id, wrong_args = body_of("tasks.reports.summarize_csv")
    garbage = "this is not a celery message"
    records = [record(b, stack) for b in (good, failing, retrying, unknown, wrong_args, garbage)]
    # WHEN the batch is handled
    outcomes = {o.message_id: o for o in consumer.run_batch(records, Context(60_000))}
    response = consumer.handle({"Records": []})
    assert response == {"batchItemFailures": []}
    # THEN every record is settled: run, re-sent for its retry, or dead-lettered with a reason
    actions = [outcomes[r["messageId"]].action for r in records]
    assert actions == [
        "acked",
        "dead-lettered",
        "acked",
        "dead-lettered",
        "dead-lettered",
        "dead-lettered",
    ]
    assert AsyncResult(good_id, app=galley_app).state == "SUCCESS"
    assert AsyncResult(failing_id, app=galley_app).state == "FAILURE"
    assert AsyncResult(retry_id, app=galley_app).state == "RETRY"
    assert AsyncResult(unknown_id, app=galley_app).state == "FAILURE"
    assert AsyncResult(wrong_id, app=galley_app).state == "FAILURE"
    # AND the retry is a new, delayed message on the queue: nobody waits for it (the queue is
    # shared with other tests: their messages are told apart by id)
    retried = take_job(stack, retry_id, "the retry message to become visible")
    assert len(retried) == 1
    again = codec.decode(retried[0]["Body"])
    assert (again.id, again.task, again.retries) == (retry_id, "tasks.uploads.publish_upload", 1)
    # AND the dead-letter queue holds the four others with their reasons
    reasons = dlq_reasons(stack)
    assert set(reasons) == {failing_id, unknown_id, wrong_id, garbage}
    assert "NoSuchKey" in reasons[failing_id]
    assert reasons[unknown_id] == "unknown task 'tasks.nope.missing'"
    assert "InvalidTaskInput" in reasons[wrong_id] and "bucket: Field required" in reasons[wrong_id]
    assert reasons[garbage].startswith("undecodable message:")


def test_records_are_not_started_when_time_is_short(consumer: Consumer, galley_app: Any) -> None:
    stack = _stack(consumer)
    task_id = str(uuid.uuid4())
    body = codec.encode(
        "tasks.imports.import_records",
        ([], stack.bucket, "t"),
        {},
        queue=stack.queue_url.rsplit("/", 1)[1],
        task_id=task_id,
    )
    records = [record(body, stack), record(body, stack)]
    # WHEN less than the reserve is left of the invocation
    response = consumer.handle({"Records": records}, Context(5_000))
    # THEN both are reported for redelivery and neither ran
    assert response == {"batchItemFailures": [{"itemIdentifier": r["messageId"]} for r in records]}
    assert AsyncResult(task_id, app=galley_app).state == "PENDING"


def test_a_future_eta_is_deferred_not_waited_for(consumer: Consumer, galley_app: Any) -> None:
    stack = _stack(consumer)
    sqs, _ = support.clients(stack)
    task_id = str(uuid.uuid4())
    # GIVEN a message due in 2000 s (more than SQS's 900 s delay), delivered now
    body = codec.encode(
        "tasks.imports.import_records",
        ([], stack.bucket, "t"),
        {},
        queue=stack.queue_url.rsplit("/", 1)[1],
        task_id=task_id,
        countdown=2000,
    )
    delayed_before = _delayed(sqs, stack.queue_url)
    response = consumer.handle({"Records": [record(body, stack)]}, Context(60_000))
    # THEN it is acknowledged, sent on with an SQS delay, and has not run
    assert response == {"batchItemFailures": []}
    assert _delayed(sqs, stack.queue_url) == delayed_before + 1
    assert AsyncResult(task_id, app=galley_app).state == "PENDING"


def test_without_a_dlq_bad_records_go_back_to_sqs(consumer: Consumer) -> None:
    stack = _stack(consumer)
    settings = load(ConsumerSettings, dlq_url=None)
    no_dlq = Consumer(consumer.app, settings, sqs=consumer.sqs)
    garbage = record("garbage", stack)
    # The queue's redrive policy then moves it after maxReceiveCount receives.
    assert no_dlq.handle({"Records": [garbage]}) == {
        "batchItemFailures": [{"itemIdentifier": garbage["messageId"]}]
    }


def _delayed(sqs: Any, url: str) -> int:
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    return int(attrs["ApproximateNumberOfMessagesDelayed"])


def _stack(consumer: Consumer) -> embedded.LocalResources:
    s = consumer.settings
    assert s.endpoint_url and s.dlq_url
    return embedded.LocalResources(
        endpoint_url=s.endpoint_url,
        region=s.region,
        queue_url=s.queue_url,
        dlq_url=s.dlq_url,
        bucket=s.results_bucket,
        visibility_timeout=s.visibility_timeout,
    )


def test_5_mib_payload_runs_in_the_consumer_and_is_deleted(
    consumer: Consumer, galley_app: Any
) -> None:
    from runner.wire import payloads

    stack = _stack(consumer)
    # GIVEN 5 MiB of records: the producer stores them in S3, SQS carries a pointer
    records = [{"name": "n" * (1024 * 1024), "email": f"{i}@example.com"} for i in range(5)]
    task_id = sender.enqueue(
        "tasks.imports.import_records",
        [records, stack.bucket, "lambda/big"],
        queue_url=stack.queue_url,
    )
    body = received_body(stack)
    assert payloads.pointer_of(codec.decode(body).headers) is not None
    _, s3 = support.clients(stack)

    def payload_count() -> int:
        listed = s3.list_objects_v2(Bucket=stack.bucket, Prefix=payloads.PREFIX)
        return int(listed.get("KeyCount", 0))

    assert payload_count() == 1
    # WHEN the consumer runs it
    assert consumer.handle({"Records": [record(body, stack)]}) == {"batchItemFailures": []}
    # THEN the task got all 5 records, and the payload is gone
    assert AsyncResult(task_id, app=galley_app).get(timeout=5)["accepted"] == 5
    assert payload_count() == 0


def test_one_records_error_does_not_fail_the_batch(
    consumer: Consumer, galley_app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack = _stack(consumer)
    queue = stack.queue_url.rsplit("/", 1)[1]
    good_id = str(uuid.uuid4())
    good = record(
        codec.encode(
            "tasks.imports.import_records",
            ([], stack.bucket, "p"),
            {},
            queue=queue,
            task_id=good_id,
        ),
        stack,
    )
    # an embed key clashing with the request dict once crashed the whole batch
    clash = codec.build("tasks.imports.import_records", ([], stack.bucket, "p"), {}, queue=queue)
    clash.embed["hostname"] = "elsewhere"
    clashing = record(codec.encode_message(clash), stack)
    broken = record("unused", stack)
    real_run = consumer.run_record

    def run(r: dict[str, Any], **options: Any) -> Any:
        if r is broken:
            raise RuntimeError("S3 is down")
        return real_run(r, **options)

    monkeypatch.setattr(consumer, "run_record", run)
    response = consumer.handle({"Records": [good, clashing, broken]})
    # THEN only the broken record is retried; the others ran
    assert response == {"batchItemFailures": [{"itemIdentifier": broken["messageId"]}]}
    assert AsyncResult(good_id, app=galley_app).state == "SUCCESS"
    assert AsyncResult(clash.id, app=galley_app).state == "SUCCESS"


# --- settling each record at once, within the invocation's time ---


def test_settled_records_leave_the_queue_as_soon_as_they_settle(
    consumer: Consumer, galley_app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack = _stack(consumer)
    sqs, _ = support.clients(stack)
    queue = stack.queue_url.rsplit("/", 1)[1]
    job = "tasks.imports.import_records"
    quick = codec.encode(job, ([], stack.bucket, "q"), {}, queue=queue)
    garbage = f"not a celery message {uuid.uuid4()}"
    later = codec.encode(job, ([], stack.bucket, "l"), {}, queue=queue, countdown=2000)
    probe = str(uuid.uuid4())
    slow = codec.encode(BLOCKING_TASK, (8, probe), {}, queue=queue)
    before = queue_counts(stack)
    # GIVEN four messages received from the queue: a quick job, a garbage body, a job due in
    # 2000 s, and a job still blocked when the invocation ends
    records = received_records(stack, [quick, garbage, later, slow])
    seen: list[dict[str, int]] = []
    monkeypatch.setitem(PROBES, probe, lambda: seen.append(_delta(queue_counts(stack), before)))
    # WHEN the batch is handled with 5 s left after the reserve
    context = Deadline(consumer.settings.lambda_reserve_seconds + 5)
    consumer.handle({"Records": records}, context)
    # THEN when the slow job started, the three settled messages were deleted already: only the
    # slow one was in flight (the hop waits on the queue as a new, delayed message)
    settled = {"visible": 0, "in_flight": 1, "delayed": 1}
    assert seen == [settled], f"queue when the slow job started (vs before the batch): {seen}"
    # AND afterwards too: they were deleted, not merely reported
    assert _delta(queue_counts(stack), before) == settled
    sqs.change_message_visibility(
        QueueUrl=stack.queue_url, ReceiptHandle=records[-1]["receiptHandle"], VisibilityTimeout=0
    )


def test_a_record_past_its_time_budget_is_stopped_and_comes_back(
    consumer: Consumer, galley_app: Any
) -> None:
    stack = _stack(consumer)
    queue = stack.queue_url.rsplit("/", 1)[1]
    quick_id, slow_id, after_id = (str(uuid.uuid4()) for _ in range(3))
    job = "tasks.imports.import_records"
    quick = codec.encode(job, ([], stack.bucket, "b"), {}, queue=queue, task_id=quick_id)
    slow = codec.encode(BLOCKING_TASK, (20,), {}, queue=queue, task_id=slow_id)
    after = codec.encode(job, ([], stack.bucket, "b"), {}, queue=queue, task_id=after_id)
    records = [record(body, stack) for body in (quick, slow, after)]
    # GIVEN an invocation with 4 s left after the reserve, and a job that blocks for 20 s
    context = Deadline(consumer.settings.lambda_reserve_seconds + 4)
    # WHEN the batch is handled
    started = time.monotonic()
    response = consumer.handle({"Records": records}, context)
    elapsed = time.monotonic() - started
    # THEN the blocked job was stopped at the budget, not run to its end
    assert elapsed < 12, f"the batch took {elapsed:.1f}s: the job was not stopped at its budget"
    # AND it, and the record after it (not started), come back; the quick one does not
    failed = [{"itemIdentifier": r["messageId"]} for r in records[1:]]
    assert response == {"batchItemFailures": failed}
    # AND the stopped job is not settled: no FAILURE, no dead letter
    assert AsyncResult(slow_id, app=galley_app).state == "STARTED"
    assert dlq_reasons(stack) == {}
    assert AsyncResult(quick_id, app=galley_app).state == "SUCCESS"
    assert AsyncResult(after_id, app=galley_app).state == "PENDING"


def test_a_body_python_cannot_read_is_dead_lettered_with_the_reason(consumer: Consumer) -> None:
    stack = _stack(consumer)
    queue = stack.queue_url.rsplit("/", 1)[1]
    # GIVEN a message whose argument is a 5000-digit integer: Python reads at most 4300 digits
    # (a ValueError, not a JSON error)
    plain = codec.encode("tasks.imports.import_records", [0], {}, queue=queue, sqs_base64=False)
    envelope = json.loads(plain)
    envelope["body"] = base64.b64encode(f"[[{'9' * 5000}], {{}}, {{}}]".encode()).decode()
    body = base64.b64encode(json.dumps(envelope).encode()).decode()
    # WHEN the consumer handles it
    (outcome,) = consumer.run_batch([record(body, stack)], Context(60_000))
    # THEN it is dead-lettered with the reason, not handed back to SQS
    assert outcome.action == "dead-lettered", f"{outcome.action}: {outcome.reason}"
    reasons = dlq_reasons(stack)
    assert list(reasons) == [body]
    assert reasons[body].startswith("undecodable message: ")
    assert "integer string conversion" in reasons[body]


def test_inline_arguments_with_a_foreign_payload_pointer_are_refused_before_running(
    consumer: Consumer, galley_app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from runner.wire import payloads

    stack = _stack(consumer)
    _, s3 = support.clients(stack)
    queue = stack.queue_url.rsplit("/", 1)[1]
    foreign = f"{payloads.PREFIX}{uuid.uuid4()}/another-jobs-arguments"
    s3.put_object(Bucket=stack.bucket, Key=foreign, Body=b"[[], {}]")
    task_id, probe = str(uuid.uuid4()), str(uuid.uuid4())
    ran: list[bool] = []
    monkeypatch.setitem(PROBES, probe, lambda: ran.append(True))
    # GIVEN a job with its arguments inline that also points at another job's payload
    pointer = {"bucket": stack.bucket, "key": foreign}
    body = codec.encode(
        BLOCKING_TASK,
        (0, probe),
        {},
        queue=queue,
        task_id=task_id,
        extra_headers={payloads.HEADER: pointer},
    )
    # WHEN the consumer handles it
    (outcome,) = consumer.run_batch([record(body, stack)], Context(60_000))
    # THEN it is refused before its body runs: dead-lettered with the reason, run never
    assert (outcome.action, len(ran)) == ("dead-lettered", 0), (
        f"{outcome.action} ({outcome.reason}) after the body ran {len(ran)} time(s)"
    )
    assert "is not this job's" in dlq_reasons(stack)[task_id]
    assert AsyncResult(task_id, app=galley_app).state == "FAILURE"
    # AND the other job's payload is untouched
    assert s3.head_object(Bucket=stack.bucket, Key=foreign)["ContentLength"] == 8


def test_inline_arguments_with_the_jobs_own_pointer_run_once(
    consumer: Consumer, galley_app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from runner.wire import payloads

    stack = _stack(consumer)
    queue = stack.queue_url.rsplit("/", 1)[1]
    task_id, probe = str(uuid.uuid4()), str(uuid.uuid4())
    ran: list[bool] = []
    monkeypatch.setitem(PROBES, probe, lambda: ran.append(True))
    # GIVEN a retry's shape: arguments inline, and the pointer to the job's own (gone) payload
    pointer = {"bucket": stack.bucket, "key": f"{payloads.PREFIX}{task_id}/first-try"}
    body = codec.encode(
        BLOCKING_TASK,
        (0, probe),
        {},
        queue=queue,
        task_id=task_id,
        extra_headers={payloads.HEADER: pointer},
    )
    # WHEN the consumer handles it
    response = consumer.handle({"Records": [record(body, stack)]}, Context(60_000))
    # THEN it runs once and is acknowledged
    assert (response, len(ran)) == ({"batchItemFailures": []}, 1)
    assert AsyncResult(task_id, app=galley_app).state == "SUCCESS"


def test_cold_start_without_a_dead_letter_queue_fails_naming_the_variable(
    lambda_env: embedded.LocalResources, galley_app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from runner.core.settings import DLQ_URL
    from runner.lambdas import consumer as entry

    # GIVEN a cold Lambda whose environment has no dead-letter queue
    monkeypatch.setattr(entry, "_consumer", None)
    monkeypatch.delenv(DLQ_URL)
    # WHEN it is invoked
    with pytest.raises(SettingsError) as refused:
        entry.handler({"Records": []}, Context(60_000))
    # THEN it refuses in one line naming the variable, and stays cold
    message = str(refused.value)
    assert DLQ_URL in message and "\n" not in message, message
    assert entry._consumer is None


def test_an_expired_message_is_revoked_and_acknowledged(
    consumer: Consumer, galley_app: Any, caplog: pytest.LogCaptureFixture
) -> None:
    from datetime import UTC, datetime, timedelta

    stack = _stack(consumer)
    queue = stack.queue_url.rsplit("/", 1)[1]
    task_id = str(uuid.uuid4())
    # GIVEN a job that expired a minute ago
    body = codec.encode(
        "tasks.imports.import_records",
        ([], stack.bucket, "x"),
        {},
        queue=queue,
        task_id=task_id,
        expires=1,
        now=datetime.now(UTC) - timedelta(seconds=61),
    )
    # WHEN the consumer handles it
    with caplog.at_level(logging.ERROR, logger="runner.lambdas.records"):
        (outcome,) = consumer.run_batch([record(body, stack)], Context(60_000))
    # THEN it is settled as expired, its result is REVOKED, and nothing failed on the way
    assert outcome.action == "expired", f"{outcome.action}: {outcome.reason}"
    assert AsyncResult(task_id, app=galley_app).state == "REVOKED"
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == []


def test_a_refused_job_gets_its_failure_recorded_without_errors(
    consumer: Consumer, galley_app: Any, caplog: pytest.LogCaptureFixture
) -> None:
    stack = _stack(consumer)
    queue = stack.queue_url.rsplit("/", 1)[1]
    task_id = str(uuid.uuid4())
    body = codec.encode("tasks.nope.missing", (1,), {}, queue=queue, task_id=task_id)
    # WHEN an unknown task is refused
    with caplog.at_level(logging.ERROR, logger="runner.lambdas.records"):
        (outcome,) = consumer.run_batch([record(body, stack)], Context(60_000))
    # THEN its FAILURE is recorded (NotRegistered), and nothing failed on the way
    assert outcome.action == "dead-lettered"
    result = AsyncResult(task_id, app=galley_app)
    assert (result.state, type(result.result).__name__) == ("FAILURE", "NotRegistered")
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == []
    assert list(dlq_reasons(stack)) == [task_id]


def _delta(now: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {key: now[key] - before[key] for key in now}


def test_a_task_that_exits_is_handed_back_and_the_batch_goes_on(
    consumer: Consumer, galley_app: Any
) -> None:
    stack = _stack(consumer)
    queue = stack.queue_url.rsplit("/", 1)[1]
    after_id = str(uuid.uuid4())
    exits = record(codec.encode(EXITING_TASK, (), {}, queue=queue), stack)
    job = "tasks.imports.import_records"
    after = record(
        codec.encode(job, ([], stack.bucket, "e"), {}, queue=queue, task_id=after_id), stack
    )
    # WHEN a task in the batch calls sys.exit()
    response = consumer.handle({"Records": [exits, after]}, Context(60_000))
    # THEN that record is handed back (as a worker's lost process is requeued), the next one runs
    assert response == {"batchItemFailures": [{"itemIdentifier": exits["messageId"]}]}
    assert AsyncResult(after_id, app=galley_app).state == "SUCCESS"


def test_the_time_limit_puts_back_an_alarm_set_before_it() -> None:
    import signal

    from runner.lambdas.budget import InvocationEnding, time_limit

    # GIVEN an alarm of someone else's (a test runner's timeout) due in 30 s
    fired: list[int] = []

    def theirs(signum: int, frame: Any) -> None:
        fired.append(signum)

    runner_alarm = signal.getitimer(signal.ITIMER_REAL)  # pytest-timeout's, if any
    previous = signal.signal(signal.SIGALRM, theirs)
    signal.setitimer(signal.ITIMER_REAL, 30)
    try:
        # WHEN a task blocks past its 0.2 s budget
        started = time.monotonic()
        with pytest.raises(InvocationEnding), time_limit(0.2):
            threading.Event().wait(5)  # stands for a task blocked on I/O
        # THEN it was stopped at its budget
        assert 0.15 < time.monotonic() - started < 2
        # AND the earlier alarm is back: its handler, and the time it had left
        left, _ = signal.getitimer(signal.ITIMER_REAL)
        assert 27 < left <= 30
        assert signal.getsignal(signal.SIGALRM) is theirs and fired == []
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        signal.setitimer(signal.ITIMER_REAL, *runner_alarm)


@pytest.mark.parametrize("remaining_ms", [math.nan, math.inf, 1e300, 10**30])
def test_a_remaining_time_that_is_not_a_finite_number_still_runs_the_job(
    consumer: Consumer, galley_app: Any, remaining_ms: float
) -> None:
    """Found by the adversarial review: NaN or an infinite remaining time dead-lettered the job
    unrun (``setitimer`` raised inside the run)."""
    stack = _stack(consumer)
    # GIVEN a Lambda context whose remaining time is not a usable number
    context = Context(0)
    context.remaining_ms = remaining_ms  # type: ignore[assignment]
    queue = stack.queue_url.rsplit("/", 1)[1]
    body = codec.encode("tasks.imports.import_records", ([], stack.bucket, "p"), {}, queue=queue)
    handler_before = signal.getsignal(signal.SIGALRM)
    # WHEN a good job arrives
    outcomes = consumer.run_batch([record(body, stack)], context)
    # THEN it runs and is acknowledged; the alarm handler is the one that was there before
    assert [o.action for o in outcomes] == ["acked"], outcomes
    assert signal.getsignal(signal.SIGALRM) == handler_before


def test_a_job_whose_links_cannot_be_sent_is_refused_before_it_runs(
    consumer: Consumer, galley_app: Any
) -> None:
    """Found by the adversarial review: the tracer sends links after the body ran; one it could
    not send made the job a FAILURE after its effect, and a redrive ran it again."""
    stack = _stack(consumer)
    queue = stack.queue_url.rsplit("/", 1)[1]
    # GIVEN a job linked to a task routed to a queue the app does not have
    message = codec.build("tasks.imports.import_records", [[], stack.bucket, "links"], queue=queue)
    message.embed["callbacks"] = [dict(galley_app.signature("tasks.x", queue="nope"))]
    # WHEN the consumer gets it
    [outcome] = consumer.run_batch([record(codec.encode_message(message), stack)], Context(60_000))
    # THEN it is dead-lettered with the reason, never run (no STARTED), its FAILURE stored
    assert outcome.action == "dead-lettered", outcome
    assert outcome.reason is not None and "refused before it ran: its callbacks" in outcome.reason
    assert AsyncResult(message.id, app=galley_app).state == "FAILURE"


@pytest.mark.parametrize("exchange", ["celery", None])
def test_a_retry_goes_back_to_its_queue_whatever_exchange_the_message_names(
    consumer: Consumer, galley_app: Any, exchange: str | None
) -> None:
    stack = _stack(consumer)
    sqs, _ = support.clients(stack)
    # GIVEN a job that will ask to be retried, its message naming another exchange (or none)
    task_id = str(uuid.uuid4())
    plain = codec.encode(
        "tasks.uploads.publish_upload",
        [stack.bucket, "never-there.bin"],
        {},
        queue="jobs",
        task_id=task_id,
        sqs_base64=False,
    )
    envelope = json.loads(plain)
    envelope["properties"]["delivery_info"] = (
        {"exchange": exchange, "routing_key": "jobs"} if exchange else {"routing_key": "long"}
    )
    body = base64.b64encode(json.dumps(envelope).encode()).decode()
    # WHEN the consumer runs it
    (outcome,) = consumer.run_batch([record(body, stack)], Context(60_000))
    # THEN its retry is a new message on the queue it came from (not dropped by an exchange no
    # queue is bound to, nor sent to another queue)
    assert outcome.action == "acked", f"{outcome.action}: {outcome.reason}"
    assert AsyncResult(task_id, app=galley_app).state == "RETRY"
    retried = take_job(stack, task_id, "the retry message on the jobs queue")
    assert codec.decode(retried[0]["Body"]).retries == 1


def test_a_record_from_the_long_queue_is_dead_lettered_to_its_dlq(
    consumer: Consumer, galley_app: Any, make_stack: Callable[..., embedded.LocalResources]
) -> None:
    # GIVEN a consumer that also knows the long-jobs queue and its DLQ
    stack = _stack(consumer)
    long = make_stack()
    settings = load(ConsumerSettings, long_queue_url=long.queue_url, long_dlq_url=long.dlq_url)
    sqs, _ = support.clients(stack)
    long_consumer = Consumer(galley_app, settings, sqs=sqs)
    # WHEN a record from the long queue cannot be run
    garbage = f"not a task message {uuid.uuid4()}"
    name = long.queue_url.rsplit("/", 1)[1]
    event = {**record(garbage, stack), "eventSourceARN": f"arn:aws:sqs:us-east-1:1:{name}"}
    (outcome,) = long_consumer.run_batch([event], Context(60_000))
    # THEN it goes to the long queue's dead-letter queue, where `galley dlq --queue long` looks
    assert outcome.action == "dead-lettered"
    assert garbage in dlq_reasons(long)
    assert garbage not in dlq_reasons(stack)


def _settle_what_is_queued(consumer: Consumer, stack: embedded.LocalResources, count: int) -> None:
    """Receive ``count`` messages from the jobs queue and hand them to the consumer."""
    sqs, _ = support.clients(stack)
    got: list[dict[str, Any]] = []

    def received() -> bool:
        response = sqs.receive_message(QueueUrl=stack.queue_url, MaxNumberOfMessages=10)
        got.extend(response.get("Messages", []))
        return len(got) >= count

    wait_for(received, timeout=20, what=f"{count} messages on the jobs queue")
    records = [record(m["Body"], stack, m["ReceiptHandle"]) for m in got]
    consumer.run_batch(records, Context(60_000))


@pytest.mark.parametrize("expired_header", [False, True])
def test_a_chord_s_last_header_task_fires_its_body_in_the_consumer(
    consumer: Consumer, galley_app: Any, expired_header: bool
) -> None:
    from datetime import UTC, datetime, timedelta

    from celery import chord

    stack = _stack(consumer)
    # GIVEN a 3-task chord (one header task already expired, in the second case)
    header = [galley_app.signature(BLOCKING_TASK, (0,)) for _ in range(3)]
    if expired_header:
        header[1].set(expires=datetime.now(UTC) - timedelta(seconds=60))
    result = chord(header, galley_app.signature(COUNTING_TASK)).apply_async()
    # WHEN the consumer runs the header tasks
    _settle_what_is_queued(consumer, stack, 3)
    if expired_header:
        # THEN the expired one counts, as Celery's worker counts a revoked task: the body fails
        body = AsyncResult(result.id, app=galley_app)
        assert body.state == "FAILURE" and type(body.result).__name__ == "ChordError"
        return
    # THEN the last one sent the body, which runs on the header's results
    _settle_what_is_queued(consumer, stack, 1)
    assert AsyncResult(result.id, app=galley_app).get(timeout=10) == 3


def test_json_logs_carry_the_task_fields(
    consumer: Consumer, lambda_env: embedded.LocalResources
) -> None:
    import io

    from runner.runtime import tasklogs

    # GIVEN the consumer logs JSON (what its cold start does with GALLEY_LOG_FORMAT=json)
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    buffer = io.StringIO()
    root.handlers[:] = [logging.StreamHandler(buffer)]
    root.setLevel(logging.INFO)
    tasklogs.use_json()
    try:
        # WHEN it runs a job
        task_id = str(uuid.uuid4())
        body = codec.encode(BLOCKING_TASK, (0,), {}, queue="jobs", task_id=task_id)
        consumer.handle({"Records": [record(body, lambda_env)]})
    finally:
        tasklogs._json = False
        logging.captureWarnings(False)
        root.handlers[:], _ = saved
        root.setLevel(saved[1])
    # THEN every line is JSON, and the run's line has its id, state, duration, receive count
    lines = [json.loads(line) for line in buffer.getvalue().splitlines()]
    ends = [line for line in lines if line.get("task_id") == task_id and "duration" in line]
    assert ends and ends[-1]["state"] == "SUCCESS"
    assert ends[-1]["receive_count"] == 1
    assert ends[-1]["task"] == BLOCKING_TASK


def test_revoked_jobs_are_not_run_and_the_revocations_are_read_once_per_batch(
    lambda_env: embedded.LocalResources, galley_app: Any, consumer: Consumer
) -> None:
    from runner.lambdas import consumer as entry

    stack = lambda_env
    queue = stack.queue_url.rsplit("/", 1)[1]
    marker = f"lambda/revoked-{uuid.uuid4().hex}"  # where it would write, were it run
    # GIVEN two jobs that would write a marker, one of them due in an hour, both revoked
    ids = [str(uuid.uuid4()), str(uuid.uuid4())]
    bodies = [
        codec.encode(
            "tasks.imports.import_records", ([], stack.bucket, marker), queue=queue, task_id=ids[0]
        ),
        codec.encode(
            "tasks.imports.import_records",
            ([], stack.bucket, marker),
            queue=queue,
            task_id=ids[1],
            countdown=3600,
        ),
    ]
    galley_app.control.revoke(ids)
    queued = support.queue_depth(stack, stack.queue_url)  # what earlier tests left there
    # WHEN the handler gets them in one batch
    entry._consumer = None
    response = entry.handler({"Records": [record(b, stack) for b in bodies]}, Context(60_000))
    # THEN neither ran nor was sent on: both are acknowledged as REVOKED
    assert response == {"batchItemFailures": []}
    assert [AsyncResult(i, app=galley_app).state for i in ids] == ["REVOKED", "REVOKED"]
    assert support.queue_depth(stack, stack.queue_url) == queued  # not deferred: nothing sent
    # AND the revocations were read once for the batch: one HEAD and one LIST
    assert entry._consumer is not None and entry._consumer.revoked is not None
    assert dict(entry._consumer.revoked.requests) == {"HeadObject": 1, "ListObjectsV2": 1}
    entry._consumer = None


def test_a_cold_start_that_cannot_read_the_revocations_hands_the_batch_back_unrun(
    lambda_env: embedded.LocalResources,
    galley_app: Any,
    consumer: Consumer,
    moto_server: embedded.MotoServer,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from runner.lambdas import consumer as entry

    stack = lambda_env
    queue = stack.queue_url.rsplit("/", 1)[1]
    marker = f"lambda/unread-{uuid.uuid4().hex}"  # where a job writes, were it run
    # GIVEN two jobs, one of them revoked, and a cold start whose S3 fails every HEAD
    ids = [str(uuid.uuid4()), str(uuid.uuid4())]
    rows = [{"email": "a@example.com", "name": "A"}]
    records = [
        record(
            codec.encode(
                "tasks.imports.import_records",
                (rows, stack.bucket, f"{marker}/{i}"),
                queue=queue,
                task_id=i,
            ),
            stack,
        )
        for i in ids
    ]
    galley_app.control.revoke(ids[0])
    _, s3 = support.clients(stack)
    with FaultProxy(moto_server.url) as proxy:
        proxy.inject("http_error", status=503, service="s3", action="HEAD")
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
        entry._consumer = None
        # WHEN the batch comes
        with caplog.at_level(logging.INFO, logger="runner.lambdas.records"):
            response = entry.handler({"Records": records}, Context(60_000))
        # THEN neither job ran: the whole batch goes back to SQS, said in one line
        handed_back = [{"itemIdentifier": r["messageId"]} for r in records]
        assert response == {"batchItemFailures": handed_back}
        assert "Contents" not in s3.list_objects_v2(Bucket=stack.bucket, Prefix=marker)
        assert [AsyncResult(i, app=galley_app).state for i in ids] == ["REVOKED", "PENDING"]
        said = [r.getMessage() for r in caplog.records if r.name == "runner.lambdas.records"]
        assert len(said) == 1 and "handed back to SQS whole" in said[0], said
        # AND once S3 answers, the next delivery runs the one not revoked, and not the other
        proxy.heal()
        again = entry.handler({"Records": records}, Context(60_000))
    assert again == {"batchItemFailures": []}
    assert [AsyncResult(i, app=galley_app).state for i in ids] == ["REVOKED", "SUCCESS"]
    written = s3.list_objects_v2(Bucket=stack.bucket, Prefix=marker).get("Contents", [])
    assert [o["Key"] for o in written] == [f"{marker}/{ids[1]}/part-0000.jsonl"]
    entry._consumer = None
