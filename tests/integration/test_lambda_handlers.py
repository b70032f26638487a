"""The producer and schedule Lambdas, called as Lambda calls them, against a moto server."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from runner import local, wire
from runner.lambdas import enqueue, schedule
from tests import support

EVENTS = Path(__file__).resolve().parents[1] / "events"


def event(name: str, stack: local.LocalResources) -> Any:
    return json.loads((EVENTS / name).read_text().replace("BUCKET", stack.bucket))


def queued(stack: local.LocalResources, url: str | None = None) -> list[wire.TaskMessage]:
    sqs, _ = support.clients(stack)
    response = sqs.receive_message(QueueUrl=url or stack.queue_url, MaxNumberOfMessages=10)
    return [wire.decode(m["Body"]) for m in response.get("Messages", [])]


def test_http_request_enqueues_and_returns_the_task_id(attach: local.LocalResources) -> None:
    response = enqueue.handler(event("enqueue_http.json", attach), None)
    assert response["statusCode"] == 202
    body = json.loads(response["body"])
    (message,) = queued(attach)
    assert message.id == body["task_id"]
    assert message.task == "tasks.imports.import_records"
    assert message.args[1:] == [attach.bucket, "imports/http"]


def test_base64_http_body_is_read(attach: local.LocalResources) -> None:
    http = event("enqueue_http.json", attach)
    http["body"] = base64.b64encode(http["body"].encode()).decode()
    http["isBase64Encoded"] = True
    assert enqueue.handler(http, None)["statusCode"] == 202


def test_direct_invoke_enqueues(attach: local.LocalResources) -> None:
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
    ],
)
def test_bad_requests_get_400_with_the_reason_and_send_nothing(
    attach: local.LocalResources, request_body: str, detail: str
) -> None:
    http = event("enqueue_http.json", attach)
    http["body"] = request_body
    response = enqueue.handler(http, None)
    assert response["statusCode"] == 400
    assert detail in json.loads(response["body"])["detail"]
    assert support.queue_depth(attach, attach.queue_url) == 0


def test_long_queue_needs_its_url(attach: local.LocalResources) -> None:
    response = enqueue.handler({"task": "tasks.x", "queue": "long"}, None)
    assert response["statusCode"] == 400
    assert "GALLEY_LONG_QUEUE_URL" in json.loads(response["body"])["detail"]


def test_schedule_enqueues_its_input(attach: local.LocalResources) -> None:
    result = schedule.handler(event("schedule.json", attach), None)
    (message,) = queued(attach)
    assert message.id == result["task_id"]
    assert message.args == [attach.bucket, "inbox/orders.csv"]


def test_bad_schedule_input_raises_naming_the_field(attach: local.LocalResources) -> None:
    with pytest.raises(ValidationError, match="task"):
        schedule.handler({"args": [1]}, None)
    assert support.queue_depth(attach, attach.queue_url) == 0
