"""The Lambda consumer against a moto server: Celery's execution path, S3 results, the DLQ."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from celery.result import AsyncResult

from runner import local, producer, wire
from runner.consumer import Consumer
from runner.deadletter import REASON_ATTRIBUTE, SOURCE_ATTRIBUTE
from runner.process import wait_for
from runner.settings import ConsumerSettings
from tests import support

EVENTS = Path(__file__).resolve().parents[1] / "events"


# --- fixtures ---
# The example tasks are bound to the module-level `runner.app.app`, which configures itself once
# per process; so the consumer tests share one stack, configured once, isolated by task ids.


@pytest.fixture(scope="session")
def lambda_stack(moto_server: local.MotoServer) -> local.LocalResources:
    return support.provision(moto_server.url, support.unique_config(visibility_timeout=60))


@pytest.fixture(scope="session")
def galley_app(lambda_stack: local.LocalResources) -> Any:
    from runner.app import app
    from runner.settings import WorkerSettings

    assert not app.configured, "runner.app.app was configured before the consumer tests"
    app._galley_settings = WorkerSettings(  # what load(WorkerSettings) reads in Lambda
        queue_url=lambda_stack.queue_url,
        dlq_url=lambda_stack.dlq_url,
        results_bucket=lambda_stack.bucket,
        visibility_timeout=lambda_stack.visibility_timeout,
    )
    return app


@pytest.fixture
def lambda_env(
    lambda_stack: local.LocalResources, monkeypatch: pytest.MonkeyPatch
) -> local.LocalResources:
    for name, value in lambda_stack.env().items():
        monkeypatch.setenv(name, value)
    return lambda_stack


@pytest.fixture
def consumer(lambda_env: local.LocalResources, galley_app: Any) -> Iterator[Consumer]:
    sqs, _ = support.clients(lambda_env)
    _drain(lambda_env)
    yield Consumer(galley_app, ConsumerSettings(), sqs=sqs)
    _drain(lambda_env)


def _drain(stack: local.LocalResources) -> None:
    """Delete what is receivable on both queues (PurgeQueue is allowed only once a minute)."""
    sqs, _ = support.clients(stack)
    for url in (stack.queue_url, stack.dlq_url):
        while messages := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get(
            "Messages", []
        ):
            for message in messages:
                sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])


def record(body: str, stack: local.LocalResources) -> dict[str, Any]:
    """An SQS event record as the event source mapping delivers it (tests/events)."""
    template = json.loads((EVENTS / "sqs_record.json").read_text())
    queue = stack.queue_url.rsplit("/", 1)[1]
    return {
        **template,
        "messageId": str(uuid.uuid4()),
        "body": body,
        "eventSourceARN": f"arn:aws:sqs:us-east-1:123456789012:{queue}",
    }


def received_body(stack: local.LocalResources) -> str:
    sqs, _ = support.clients(stack)
    (message,) = sqs.receive_message(QueueUrl=stack.queue_url, WaitTimeSeconds=1)["Messages"]
    sqs.delete_message(QueueUrl=stack.queue_url, ReceiptHandle=message["ReceiptHandle"])
    return str(message["Body"])


def dlq_reasons(stack: local.LocalResources) -> dict[str, str]:
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
                key = wire.decode(message["Body"]).id
            except wire.WireError:
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
    task_id = producer.enqueue(
        "tasks.imports.import_records", [[], stack.bucket, "lambda/p"], queue_url=stack.queue_url
    )
    response = consumer.handle({"Records": [record(received_body(stack), stack)]})
    assert response == {"batchItemFailures": []}
    assert AsyncResult(task_id, app=galley_app).get(timeout=5)["total"] == 0


def test_handler_entry_point_cold_starts_from_the_environment(
    lambda_env: local.LocalResources, galley_app: Any
) -> None:
    from runner.lambdas import consumer as entry

    task_id = producer.enqueue(
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
        return task_id, wire.encode(
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
    # AND the retry is a new, delayed message on the queue: nobody waits for it
    attrs = sqs.get_queue_attributes(QueueUrl=stack.queue_url, AttributeNames=["All"])["Attributes"]
    assert (
        int(attrs["ApproximateNumberOfMessagesDelayed"]) + int(attrs["ApproximateNumberOfMessages"])
        == 1
    )
    retried: list[dict[str, Any]] = []

    def retry_arrived() -> bool:
        retried.extend(sqs.receive_message(QueueUrl=stack.queue_url).get("Messages", []))
        return bool(retried)

    wait_for(retry_arrived, timeout=30, what="the retry message to become visible")
    again = wire.decode(retried[0]["Body"])
    assert (again.id, again.task, again.retries) == (retry_id, "tasks.uploads.publish_upload", 1)
    sqs.delete_message(QueueUrl=stack.queue_url, ReceiptHandle=retried[0]["ReceiptHandle"])
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
    body = wire.encode(
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
    body = wire.encode(
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
    settings = ConsumerSettings(dlq_url=None)
    no_dlq = Consumer(consumer.app, settings, sqs=consumer.sqs)
    garbage = record("garbage", stack)
    # The queue's redrive policy then moves it after maxReceiveCount receives.
    assert no_dlq.handle({"Records": [garbage]}) == {
        "batchItemFailures": [{"itemIdentifier": garbage["messageId"]}]
    }


def _delayed(sqs: Any, url: str) -> int:
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    return int(attrs["ApproximateNumberOfMessagesDelayed"])


def _stack(consumer: Consumer) -> local.LocalResources:
    s = consumer.settings
    assert s.endpoint_url and s.dlq_url
    return local.LocalResources(
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
    from runner import payloads

    stack = _stack(consumer)
    # GIVEN 5 MiB of records: the producer stores them in S3, SQS carries a pointer
    records = [{"name": "n" * (1024 * 1024), "email": f"{i}@example.com"} for i in range(5)]
    task_id = producer.enqueue(
        "tasks.imports.import_records",
        [records, stack.bucket, "lambda/big"],
        queue_url=stack.queue_url,
    )
    body = received_body(stack)
    assert payloads.pointer_of(wire.decode(body).headers) is not None
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
        wire.encode(
            "tasks.imports.import_records",
            ([], stack.bucket, "p"),
            {},
            queue=queue,
            task_id=good_id,
        ),
        stack,
    )
    # an embed key clashing with the request dict once crashed the whole batch
    clash = wire.build("tasks.imports.import_records", ([], stack.bucket, "p"), {}, queue=queue)
    clash.embed["hostname"] = "elsewhere"
    clashing = record(wire.encode_message(clash), stack)
    broken = record("unused", stack)
    real_run = consumer.run_record

    def run(r: dict[str, Any]) -> Any:
        if r is broken:
            raise RuntimeError("S3 is down")
        return real_run(r)

    monkeypatch.setattr(consumer, "run_record", run)
    response = consumer.handle({"Records": [good, clashing, broken]})
    # THEN only the broken record is retried; the others ran
    assert response == {"batchItemFailures": [{"itemIdentifier": broken["messageId"]}]}
    assert AsyncResult(good_id, app=galley_app).state == "SUCCESS"
    assert AsyncResult(clash.id, app=galley_app).state == "SUCCESS"
