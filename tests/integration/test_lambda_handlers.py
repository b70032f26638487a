"""The Lambda entry points (producer, schedule, consumer), called as Lambda calls them, on moto."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from runner.lambdas import enqueue, schedule
from runner.local import embedded
from runner.local.process import wait_for
from runner.wire import codec
from tests import support
from tests.integration.test_consumer import shared_app, shared_stack

EVENTS = Path(__file__).resolve().parents[1] / "events"


def event(name: str, stack: embedded.LocalResources) -> Any:
    return json.loads((EVENTS / name).read_text().replace("BUCKET", stack.bucket))


def queued(stack: embedded.LocalResources, url: str | None = None) -> list[codec.TaskMessage]:
    sqs, _ = support.clients(stack)
    response = sqs.receive_message(QueueUrl=url or stack.queue_url, MaxNumberOfMessages=10)
    return [codec.decode(m["Body"]) for m in response.get("Messages", [])]


def test_http_request_enqueues_and_returns_the_task_id(attach: embedded.LocalResources) -> None:
    response = enqueue.handler(event("enqueue_http.json", attach), None)
    assert response["statusCode"] == 202
    body = json.loads(response["body"])
    (message,) = queued(attach)
    assert message.id == body["task_id"]
    assert message.task == "tasks.imports.import_records"
    assert message.args[1:] == [attach.bucket, "imports/http"]


def test_base64_http_body_is_read(attach: embedded.LocalResources) -> None:
    http = event("enqueue_http.json", attach)
    http["body"] = base64.b64encode(http["body"].encode()).decode()
    http["isBase64Encoded"] = True
    assert enqueue.handler(http, None)["statusCode"] == 202


def test_direct_invoke_enqueues(attach: embedded.LocalResources) -> None:
    response = enqueue.handler(event("enqueue_direct.json", attach), None)
    assert response["statusCode"] == 202
    assert [m.task for m in queued(attach)] == ["tasks.reports.summarize_csv"]


@pytest.mark.parametrize(
    ("request_body", "detail"),
    [
        ("{not json", "Expecting property name"),
        ('{"args": []}', "task"),
        ('{"task": "tasks.x", "unexpected": 1}', "unexpected"),
        ('{"task": "tasks.x", "args": "not a list"}', "args"),
        ('{"task": "tasks.x", "countdown": -1}', "countdown"),
        # found by the review of the restructure: OverflowError instead of a 400
        ('{"task": "tasks.x", "countdown": 1e400}', "countdown"),
        ('{"task": "tasks.x", "countdown": 1e12}', "countdown"),
        ('{"task": "", "args": []}', "task"),
    ],
)
def test_bad_requests_get_400_with_the_reason_and_send_nothing(
    attach: embedded.LocalResources, request_body: str, detail: str
) -> None:
    http = event("enqueue_http.json", attach)
    http["body"] = request_body
    response = enqueue.handler(http, None)
    assert response["statusCode"] == 400
    assert detail in json.loads(response["body"])["detail"]
    assert support.queue_depth(attach, attach.queue_url) == 0


def test_long_queue_needs_its_url(attach: embedded.LocalResources) -> None:
    response = enqueue.handler({"task": "tasks.x", "queue": "long"}, None)
    assert response["statusCode"] == 400
    assert "GALLEY_LONG_QUEUE_URL" in json.loads(response["body"])["detail"]


def test_schedule_enqueues_its_input(attach: embedded.LocalResources) -> None:
    result = schedule.handler(event("schedule.json", attach), None)
    (message,) = queued(attach)
    assert message.id == result["task_id"]
    assert message.args == [attach.bucket, "inbox/orders.csv"]


def test_bad_schedule_input_raises_naming_the_field(attach: embedded.LocalResources) -> None:
    with pytest.raises(ValidationError, match="task"):
        schedule.handler({"args": [1]}, None)
    assert support.queue_depth(attach, attach.queue_url) == 0


# --- the SQS consumer: any event in, a batch response out ---


@pytest.fixture
def consumer_env(
    moto_server: embedded.MotoServer, monkeypatch: pytest.MonkeyPatch
) -> embedded.LocalResources:
    """The consumer's environment, on the stack `runner.runtime.app.app` is attached to."""
    stack = shared_stack(moto_server)
    shared_app(stack)
    for name, value in stack.env().items():
        monkeypatch.setenv(name, value)
    return stack


class _Context:
    def get_remaining_time_in_millis(self) -> int:
        return 60_000


@pytest.mark.parametrize(
    "sqs_event",
    [None, [], "text", {}, {"Records": None}, {"Records": "x"}, {"Records": {"a": 1}}],
    ids=repr,
)
def test_consumer_answers_any_event_with_a_batch_response(
    consumer_env: embedded.LocalResources, sqs_event: Any
) -> None:
    from runner.lambdas import consumer

    # WHEN the handler gets an event that is not an SQS batch
    response = consumer.handler(sqs_event, _Context())
    # THEN it answers with an empty batch response (there is no record it could report)
    assert response == {"batchItemFailures": []}


def test_consumer_reports_malformed_records_it_can_name_and_skips_the_rest(
    consumer_env: embedded.LocalResources,
) -> None:
    from runner.lambdas import consumer

    queue = consumer_env.queue_url.rsplit("/", 1)[1]
    sqs_event = json.loads(
        (EVENTS / "sqs_malformed_records.json").read_text().replace("QUEUE", queue)
    )
    # WHEN the handler gets a batch of malformed records
    response = consumer.handler(sqs_event, _Context())
    # THEN records without a usable body come back; those without an id cannot be named and
    # are skipped; garbage bodies are dead-lettered, whatever else the record lacks
    assert response == {
        "batchItemFailures": [{"itemIdentifier": "no-body"}, {"itemIdentifier": "body-not-text"}]
    }
    sqs, _ = support.clients(consumer_env)
    dead: list[str] = []

    def both_dead_lettered() -> bool:
        for message in sqs.receive_message(
            QueueUrl=consumer_env.dlq_url, MaxNumberOfMessages=10
        ).get("Messages", []):
            dead.append(message["Body"])
            sqs.delete_message(
                QueueUrl=consumer_env.dlq_url, ReceiptHandle=message["ReceiptHandle"]
            )
        return len(dead) >= 2

    wait_for(both_dead_lettered, timeout=20, what="the two garbage bodies in the DLQ")
    assert sorted(dead) == ["garbage from an odd source", "garbage without a receipt handle"]


@pytest.mark.parametrize("odd", [None, [], "text", 3])
def test_an_event_that_is_not_an_object_gets_400(attach: embedded.LocalResources, odd: Any) -> None:
    """Found by the review of the restructure: a None event raised TypeError."""
    response = enqueue.handler(odd, None)
    assert response["statusCode"] == 400
    assert support.queue_depth(attach, attach.queue_url) == 0
