"""Garbage on the queue never kills the worker; it ends in the dead-letter queue. JSON only."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest

from runner.local import embedded
from runner.local.process import Child, wait_for
from runner.wire import codec
from tests import support

pytestmark = pytest.mark.e2e


def _pickle_task_message(app: Any, queue: str, task_id: str) -> None:
    """A well-formed Celery task message whose body is pickle, as an attacker could send."""
    with app.producer_or_acquire() as producer:
        producer.publish(
            [[[], "bucket", "prefix"], {}, {}],
            serializer="pickle",
            routing_key=queue,
            exchange="",
            headers={"task": "tasks.imports.import_records", "id": task_id, "lang": "py"},
        )


def test_garbage_unknown_and_pickle_messages_reach_the_dlq(
    make_stack: Callable[..., embedded.LocalResources],
    app_for: Callable[[embedded.LocalResources], Any],
    worker: Callable[..., Child],
) -> None:
    # GIVEN a queue that would dead-letter after 2 receives, and a worker on it
    stack = make_stack(visibility_timeout=2, max_receive_count=2)
    sqs, _ = support.clients(stack)
    app = app_for(stack)
    running = worker(stack)
    queue = stack.queue_url.rsplit("/", 1)[1]
    # WHEN four kinds of bad message arrive
    sqs.send_message(QueueUrl=stack.queue_url, MessageBody="not base64 {{{")
    sqs.send_message(
        QueueUrl=stack.queue_url,
        MessageBody=base64.b64encode(json.dumps({"json": "but not kombu"}).encode()).decode(),
    )
    unknown = app.send_task("tasks.nope.unknown", args=[1])
    _pickle_task_message(app, "jobs", "pickled-1")  # Celery names the queue by role
    # AND a task message whose eta is not a date (Galley's delay hops read it first)
    bad_eta = codec.build("tasks.imports.import_records", [[], "b", "p"], queue=queue)
    bad_eta.headers["eta"] = "next tuesday"
    sqs.send_message(QueueUrl=stack.queue_url, MessageBody=codec.encode_message(bad_eta))
    # THEN all five end in the DLQ, and the worker is alive throughout
    wait_for(
        lambda: support.queue_depth(stack, stack.dlq_url) == 5,
        timeout=90,
        what="five messages in the DLQ",
    )
    assert running.alive()
    assert support.queue_depth(stack, stack.queue_url) == 0
    # AND the caller of the unknown task sees why; the pickled task never ran
    assert unknown.state == "FAILURE"
    assert "tasks.nope.unknown" in repr(unknown.info)
    assert app.AsyncResult("pickled-1").state == "PENDING"
    # AND each carries the reason it could not run
    assert support.dead_letter_reasons(stack) == [
        "undecodable message: JSON object is not a kombu message: no 'body' or 'properties'",
        "undecodable message: header 'eta' is not an ISO 8601 datetime: 'next tuesday'",
        "undecodable message: message body is neither base64 nor a JSON object",
        "undecodable message: unsupported content-type 'application/x-python-serialize' "
        "(pickle is refused; JSON only)",
        "unknown task 'tasks.nope.unknown' (not registered here)",
    ]
    # AND the same worker still runs good jobs
    good = app.send_task("tasks.imports.import_records", args=[[], stack.bucket, "p"])
    assert good.get(timeout=60)["total"] == 0
    assert running.alive()


def test_worker_without_queue_fails_fast_naming_the_variable(
    stack: embedded.LocalResources,
) -> None:
    env = support.attached_env(stack)
    del env["GALLEY_QUEUE_URL"]
    result = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "runner.app", "worker", "--pool", "solo"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "GALLEY_QUEUE_URL: required but not set" in result.stderr
    assert "Traceback" not in result.stderr
