"""The dead-letter scenario end to end: poison messages land in the DLQ, `galley dlq list` says
why, the cause is fixed, `galley dlq redrive --all` sends them back and a real worker runs the
job that can now succeed; the ones nothing fixed come back to the DLQ."""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from celery.result import AsyncResult

from runner.core.deadletter import dead_letter
from runner.local import embedded
from runner.local.process import Child, wait_for
from runner.wire import codec
from tests import support

pytestmark = pytest.mark.e2e

UNKNOWN_REASON = "unknown task 'tasks.nope.x' (not registered here)"
GARBAGE_REASON = "undecodable message: message body is neither base64 nor a JSON object"
MISSING_CSV_REASON = (
    "task tasks.reports.summarize_csv FAILURE: NoSuchKey: An error occurred (NoSuchKey) when "
    "calling the GetObject operation: The specified key does not exist."
)


def dlq_cli(stack: embedded.LocalResources, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        support.galley("dlq", *args),
        env=support.attached_env(stack),
        capture_output=True,
        text=True,
        timeout=120,
    )


def listed(stack: embedded.LocalResources) -> list[dict[str, Any]]:
    result = dlq_cli(stack, "list", "--json")
    assert result.returncode == 0, result.stderr
    items: list[dict[str, Any]] = json.loads(result.stdout)
    return items


def test_poison_messages_are_listed_redriven_and_the_fixed_job_completes(
    make_stack: Callable[..., embedded.LocalResources],
    app_for: Callable[[embedded.LocalResources], Any],
    worker: Callable[..., Child],
) -> None:
    # GIVEN a queue that dead-letters after 2 receives, with a worker on it
    stack = make_stack(visibility_timeout=2, max_receive_count=2)
    sqs, s3 = support.clients(stack)
    app = app_for(stack)
    running = worker(stack)
    queue = stack.queue_url.rsplit("/", 1)[1]
    # AND three poison messages: an unknown task and a garbage body the worker dead-letters with
    # the reason, and a job whose input CSV is missing, dead-lettered as the Lambda consumer does
    # after the task failed
    unknown = app.send_task("tasks.nope.x", args=[1])
    sqs.send_message(QueueUrl=stack.queue_url, MessageBody="not base64 {{{")
    job_id = str(uuid.uuid4())
    job = codec.encode(
        "tasks.reports.summarize_csv", [stack.bucket, "in/late.csv"], queue=queue, task_id=job_id
    )
    dead_letter(sqs, stack.dlq_url, job, reason=MISSING_CSV_REASON, source_queue=stack.queue_url)
    wait_for(
        lambda: support.queue_depth(stack, stack.dlq_url) == 3,
        timeout=90,
        what="three messages in the DLQ",
    )
    # WHEN the operator lists the DLQ
    before = {item["task_id"]: item for item in listed(stack)}
    # THEN each message is there with the reason it failed
    assert set(before) == {unknown.id, job_id, None}
    assert before[job_id]["reason"] == MISSING_CSV_REASON
    assert before[job_id]["task"] == "tasks.reports.summarize_csv"
    assert before[unknown.id]["task"] == "tasks.nope.x"
    assert before[unknown.id]["reason"] == UNKNOWN_REASON
    assert before[None]["reason"] == GARBAGE_REASON
    assert before[None]["decode_error"] == "message body is neither base64 nor a JSON object"
    assert support.queue_depth(stack, stack.dlq_url) == 3  # listing consumed nothing

    # WHEN the cause of the job's failure is fixed and everything is redriven
    s3.put_object(Bucket=stack.bucket, Key="in/late.csv", Body=b"region,amount\neu,2.5\nus,4\n")
    redriven = dlq_cli(stack, "redrive", "--all")
    # THEN all three left the DLQ for their source queue (the worker dead-letters the two that
    # nothing fixed again at once, so the DLQ's depth proves nothing here)
    assert redriven.returncode == 0, redriven.stderr
    assert redriven.stdout.splitlines()[-1] == "3 moved, 0 not moved"
    assert f"moved tasks.reports.summarize_csv {job_id} -> {stack.queue_url}" in redriven.stdout
    # AND the worker runs the job to success
    value = AsyncResult(job_id, app=app).get(timeout=60)
    assert value["rows"] == 2
    assert value["numeric_columns"]["amount"] == {"sum": 6.5, "min": 2.5, "max": 4.0}
    assert s3.get_object(Bucket=stack.bucket, Key="in/late.csv.summary.json")

    # AND what nothing fixed comes back to the DLQ, once each
    wait_for(
        lambda: support.queue_depth(stack, stack.dlq_url) == 2,
        timeout=90,
        what="the unknown task and the garbage body back in the DLQ",
    )
    after = listed(stack)
    assert sorted(item["task_id"] or "" for item in after) == sorted(["", unknown.id])
    assert support.queue_depth(stack, stack.queue_url) == 0
    assert AsyncResult(job_id, app=app).state == "SUCCESS"
    assert running.alive()
