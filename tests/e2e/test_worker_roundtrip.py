"""Real `celery -A runner.app worker` (prefork) on a moto server; results read with AsyncResult."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from celery.result import AsyncResult

from runner.local import embedded
from runner.local.process import Child, wait_for
from tests import support

pytestmark = pytest.mark.e2e


def test_summarize_csv_reads_and_writes_s3(
    attach: embedded.LocalResources, app: Any, worker: Callable[..., Child]
) -> None:
    # GIVEN a CSV in the bucket and a worker
    _, s3 = support.clients(attach)
    s3.put_object(Bucket=attach.bucket, Key="in/sales.csv", Body=b"region,amount\neu,2.5\nus,4\n")
    worker(attach)
    # WHEN the task is sent and awaited
    result = app.send_task("tasks.reports.summarize_csv", args=[attach.bucket, "in/sales.csv"])
    value = AsyncResult(result.id, app=app).get(timeout=60)
    # THEN the result and the written object agree
    assert value["rows"] == 2
    assert value["numeric_columns"]["amount"] == {"sum": 6.5, "min": 2.5, "max": 4.0}
    body = s3.get_object(Bucket=attach.bucket, Key=value["output_key"])["Body"].read()
    assert json.loads(body)["rows"] == 2
    # AND the result object lives under the results prefix, and the message is gone
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=attach.bucket)["Contents"]]
    assert f"results/celery-task-meta-{result.id}" in keys
    assert support.queue_depth(attach, attach.queue_url) == 0


def test_import_records_writes_chunks_and_reports_rejections(
    attach: embedded.LocalResources, app: Any, worker: Callable[..., Child]
) -> None:
    worker(attach)
    records = [{"name": f"n{i}", "email": f"{i}@example.com"} for i in range(60)]
    records[7] = {"name": "x", "email": "broken"}
    result = app.send_task(
        "tasks.imports.import_records", args=[records, attach.bucket, "imports/batch"]
    )
    value = result.get(timeout=60)
    assert value["accepted"] == 59
    assert value["rejected"] == [{"index": 7, "reason": "email missing or malformed"}]
    _, s3 = support.clients(attach)
    lines = []
    for key in value["keys"]:
        lines += s3.get_object(Bucket=attach.bucket, Key=key)["Body"].read().splitlines()
    assert len(value["keys"]) == 3
    assert len(lines) == 59


def test_publish_upload_retries_until_the_object_exists(
    attach: embedded.LocalResources, app: Any, worker: Callable[..., Child]
) -> None:
    worker(attach)
    # GIVEN the upload is not there yet
    result = app.send_task("tasks.uploads.publish_upload", args=[attach.bucket, "up/a.bin"])
    # WHEN the task has failed once and is retrying with backoff
    wait_for(lambda: result.state == "RETRY", timeout=60, what="a RETRY state")
    assert "does not exist yet" in str(result.info)
    _, s3 = support.clients(attach)
    s3.put_object(Bucket=attach.bucket, Key="up/a.bin", Body=b"12345")
    # THEN a later try publishes it
    assert result.get(timeout=60) == {"published_key": "published/up/a.bin", "size": 5}
    assert s3.get_object(Bucket=attach.bucket, Key="published/up/a.bin")["Body"].read() == b"12345"


def test_failure_is_recorded_and_raised_by_get(
    attach: embedded.LocalResources, app: Any, worker: Callable[..., Child]
) -> None:
    worker(attach)
    result = app.send_task("tasks.reports.summarize_csv", args=[attach.bucket, "no/such.csv"])
    with pytest.raises(Exception, match="NoSuchKey"):
        result.get(timeout=60)
    assert result.state == "FAILURE"
    # A task that ran and failed is acknowledged: it is not redelivered.
    wait_for(
        lambda: support.queue_depth(attach, attach.queue_url) == 0,
        timeout=30,
        what="the failed task's message to be acknowledged",
    )


def test_worker_uses_only_predefined_queues(
    make_recording_stack: Callable[[], embedded.LocalResources],
    app_for: Callable[[embedded.LocalResources], Any],
    worker: Callable[..., Child],
) -> None:
    # GIVEN a moto server that records every request, and proof that it records CreateQueue
    stack = make_recording_stack()
    assert support.recorded_actions(stack.endpoint_url)["CreateQueue"] == 2
    support.recorder(stack.endpoint_url, "reset-recording")
    support.recorder(stack.endpoint_url, "start-recording")
    # WHEN a worker starts and a job round-trips
    worker(stack)
    client = app_for(stack)
    assert (
        client.send_task("tasks.imports.import_records", args=[[], stack.bucket, "p"]).get(
            timeout=60
        )["total"]
        == 0
    )
    # THEN the job really went through SQS, and no queue was listed, created or looked up
    actions = support.recorded_actions(stack.endpoint_url)
    assert actions["SendMessage"] >= 1 and actions["ReceiveMessage"] >= 1
    assert actions["DeleteMessageBatch"] >= 1  # Galley's settler deletes in batches
    for forbidden in ("ListQueues", "CreateQueue", "GetQueueUrl"):
        assert actions[forbidden] == 0, f"{forbidden} called: {actions}"
