"""`galley status` against a moto server: the counts are the queues' real depths."""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from typing import Any

import pytest

from runner.core.deadletter import dead_letter
from runner.local import embedded, sam
from runner.ops import registry
from runner.wire import codec
from tests import support

pytestmark = pytest.mark.integration


def galley_status(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        support.galley("status", *args), env=env, capture_output=True, text=True, timeout=120
    )


def by_name(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {queue["name"]: queue for queue in report["queues"]}


def fill(sqs: Any, queue_url: str, dlq_url: str) -> list[str]:
    """5 sent, 2 of them received (in flight), 1 delayed; 2 dead letters with reasons. Returns
    the dead letters' task ids."""
    for number in range(5):
        sqs.send_message(QueueUrl=queue_url, MessageBody=f"job {number}")
    received = sqs.receive_message(
        QueueUrl=queue_url, MaxNumberOfMessages=2, VisibilityTimeout=600
    )["Messages"]
    assert len(received) == 2
    sqs.send_message(QueueUrl=queue_url, MessageBody="later", DelaySeconds=600)
    ids = []
    for number in range(2):
        task_id = str(uuid.uuid4())
        body = codec.encode(
            "tasks.reports.summarize_csv", ["b", "k"], queue="jobs", task_id=task_id
        )
        dead_letter(sqs, dlq_url, body, reason=f"boom {number}", source_queue=queue_url)
        ids.append(task_id)
    return ids


def test_status_json_counts_match_the_queues(stack: embedded.LocalResources) -> None:
    # GIVEN known messages: visible, in flight, delayed, and dead letters
    sqs, _ = support.clients(stack)
    ids = fill(sqs, stack.queue_url, stack.dlq_url)
    # WHEN the status is read twice
    first = galley_status("--json", env=support.attached_env(stack))
    second = galley_status("--json", env=support.attached_env(stack))
    # THEN the counts are the queues' real depths (the first listing hid nothing for long)
    for result in (first, second):
        assert result.returncode == 0, result.stderr
        queues = by_name(json.loads(result.stdout))
        jobs = queues["jobs"]
        assert (jobs["visible"], jobs["in_flight"], jobs["delayed"]) == (3, 2, 1)
        assert jobs["oldest_age_seconds"] is None
        assert jobs["oldest_age_source"].startswith("unknown: no CloudWatch")
        dead = queues["jobs DLQ"]
        assert (dead["visible"], dead["in_flight"], dead["delayed"]) == (2, 0, 0)
        assert dead["oldest_age_source"] == "peek"
        assert 0 <= dead["oldest_age_seconds"] < 120
        assert queues["long"]["problem"] == "not set (GALLEY_LONG_QUEUE_URL)"
    report = json.loads(first.stdout)
    assert sorted(f["task_id"] for f in report["failures"]) == sorted(ids)
    assert sorted(f["reason"] for f in report["failures"]) == ["boom 0", "boom 1"]
    assert report["workers"]["registry"] == {"workers": [], "gone": 0, "notes": [], "problem": None}


def test_status_prints_a_table_and_the_failures(stack: embedded.LocalResources) -> None:
    sqs, _ = support.clients(stack)
    ids = fill(sqs, stack.queue_url, stack.dlq_url)
    result = galley_status(env=support.attached_env(stack))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[1].split() == ["QUEUE", "VISIBLE", "IN", "FLIGHT", "DELAYED", "OLDEST"]
    assert lines[2].split()[:4] == ["jobs", "3", "2", "1"]
    assert any(ids[0] in line and "boom 0" in line for line in lines)


def test_status_of_a_deployed_stack_reads_its_outputs(moto_server: embedded.MotoServer) -> None:
    # GIVEN template.yaml deployed as a stack (no GALLEY_* variable in the environment)
    name = f"status-{uuid.uuid4().hex[:8]}"
    deployed = sam.deploy(moto_server.url, stack_name=name, session=embedded.local_session())
    env = {
        **support.attached_env_plain(),
        **embedded.DUMMY_CREDENTIALS,
        "AWS_ENDPOINT_URL": moto_server.url,
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    sqs = embedded.local_session().client("sqs", endpoint_url=moto_server.url)
    for _ in range(2):
        sqs.send_message(QueueUrl=deployed.outputs["LongJobsQueueUrl"], MessageBody="x")
    # AND a worker's entry in the stack's worker registry
    s3 = embedded.local_session().client("s3", endpoint_url=moto_server.url)
    now = time.time()
    entry = registry.Entry(
        host="ip-10-0-1-5", pid=7, version="0.1.0", started=now - 60, at=now, interval=15,
        concurrency=1, queue="long", state="running", waiting=0,
        running=[registry.Running("job-1", "tasks.imports.import_records", now - 5)],
        totals=dict.fromkeys(registry.OUTCOMES, 0),
    )  # fmt: skip
    s3.put_object(
        Bucket=deployed.outputs["ResultsBucketName"],
        Key=registry.key(entry.host, entry.pid),
        Body=json.dumps(entry.as_dict()).encode(),
    )
    # WHEN its status is read by name
    result = galley_status("--stack", name, "--json", env=env)
    # THEN the queues and bucket are the stack's, and the long queue holds the two jobs
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["source"] == f"stack {name}"
    assert report["bucket"] == deployed.outputs["ResultsBucketName"]
    queues = by_name(report)
    assert queues["long"]["visible"] == 2
    assert queues["jobs"]["visible"] == 0
    assert all(queue["problem"] is None for queue in queues.values())
    # the Lambda consumer's event source (the Fargate service needs WorkerImageUri, unset here)
    consumer = report["workers"]["jobs"]
    assert consumer["kind"] == "lambda"
    assert consumer["function"] == deployed.outputs["ConsumerFunctionArn"]
    assert consumer["event_sources"] == []  # moto's CloudFormation creates no event source
    # the worker registry, read from the stack's bucket, in the status and in `galley top`
    (worker,) = report["workers"]["registry"]["workers"]
    assert (worker["host"], worker["queue"], worker["running"][0]["id"]) == (
        "ip-10-0-1-5", "long", "job-1"
    )  # fmt: skip
    top = subprocess.run(
        support.galley("top", "--stack", name, "--once"),
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert top.returncode == 0, top.stderr
    assert "ip-10-0-1-5:7  long" in top.stdout
    assert "tasks.imports.import_records  job-1" in top.stdout


@pytest.mark.parametrize(
    ("args", "env_changes", "message"),
    [
        ([], {"GALLEY_QUEUE_URL": ""}, "GALLEY_QUEUE_URL is not set"),
        (["--stack", "no-such-stack"], {}, "--stack no-such-stack: ValidationError"),
        ([], {"GALLEY_DLQ_URL": "not a url"}, "GALLEY_DLQ_URL"),
    ],
)
def test_status_errors_are_one_line(
    stack: embedded.LocalResources, args: list[str], env_changes: dict[str, str], message: str
) -> None:
    env = {**support.attached_env(stack), **env_changes}
    result = galley_status(*args, env=env)
    assert result.returncode == 1, result.stdout
    assert message in result.stderr
    assert "Traceback" not in result.stderr
