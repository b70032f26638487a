"""A web app holding only the template's ProducerPolicy enqueues and reads results.

The template is deployed into a moto server of its own that then enforces IAM (as in
tests/integration/test_checks.py). The "web app" is a fresh interpreter with nothing but that
policy's user and the settings docs/web-apps.md lists, calling what the docs call; a second user
allowed everything plays the worker.

Not exercised here: ``enqueue_many``. AWS authorises SendMessageBatch with ``sqs:SendMessage``
(the policy's one SQS action), but moto asks for ``sqs:SendMessageBatch`` by name.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from runner.core import aws, settings
from runner.local import embedded
from runner.local import sam as templates
from runner.wire import codec, payloads
from tests.infra.conftest import ROOT, TEMPLATE

EVERYTHING = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
}


@dataclass(frozen=True)
class IamStack:
    endpoint_url: str
    outputs: dict[str, str]
    #: Only ProducerPolicy (the stack's output ProducerPolicyArn) is attached to this user.
    web_app: boto3.Session
    #: Allowed everything: stands in for the worker and for the operator.
    worker: boto3.Session

    def client(self, service: str, session: boto3.Session) -> Any:
        return aws.client(service, endpoint_url=self.endpoint_url, session=session)


def _user(iam: Any, name: str, policy_arn: str) -> boto3.Session:
    iam.create_user(UserName=name)
    iam.attach_user_policy(UserName=name, PolicyArn=policy_arn)
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return boto3.Session(
        aws_access_key_id=key["AccessKeyId"],
        aws_secret_access_key=key["SecretAccessKey"],
        region_name="us-east-1",
    )


@pytest.fixture(scope="module")
def iam_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IamStack]:
    log = tmp_path_factory.mktemp("moto-producer-iam") / "moto.log"
    with embedded.MotoServer(log=log) as server:
        admin = embedded.local_session()
        deployed = templates.deploy(
            server.url, template_path=TEMPLATE, stack_name="galley-iam", session=admin
        )
        iam = aws.client("iam", endpoint_url=server.url, session=admin)
        everything = iam.create_policy(
            PolicyName="everything", PolicyDocument=json.dumps(EVERYTHING)
        )["Policy"]["Arn"]
        web_app = _user(iam, "web-app", deployed.outputs["ProducerPolicyArn"])
        worker = _user(iam, "worker", everything)
        # From here on moto authenticates every request and applies IAM policies.
        request = urllib.request.Request(
            f"{server.url}/moto-api/reset-auth",
            data=b"0",
            method="POST",
            headers={"Content-Type": "text/plain"},
        )
        with urllib.request.urlopen(request):
            pass
        yield IamStack(server.url, deployed.outputs, web_app, worker)


def _python(stack: IamStack, session: boto3.Session, code: str, *args: str, **extra: str) -> Any:
    """Run ``code`` in a fresh interpreter as ``session``'s user, with the settings a web app is
    given (docs/web-apps.md) and nothing else from this process's environment; its last line of
    output is JSON."""
    credentials = session.get_credentials()
    assert credentials is not None
    outputs = stack.outputs
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "GALLEY_"))},
        settings.AWS_ENDPOINT_URL: stack.endpoint_url,
        settings.AWS_REGION: "us-east-1",
        "AWS_ACCESS_KEY_ID": credentials.access_key,
        "AWS_SECRET_ACCESS_KEY": credentials.secret_key,
        settings.QUEUE_URL: outputs[templates.OUTPUT_QUEUE_URL],
        settings.LONG_QUEUE_URL: outputs[templates.OUTPUT_LONG_QUEUE_URL],
        settings.RESULTS_BUCKET: outputs[templates.OUTPUT_BUCKET],
        **extra,
    }
    done = subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


ENQUEUE = """
import json, os
from runner import enqueue

small = enqueue("tasks.reports.summarize_csv", ["some-bucket", "inbox/orders.csv"])
large = enqueue(
    "tasks.imports.import_records",
    [[{"name": "Ada", "email": "ada@example.com"}] * 200, "some-bucket", "imports/web"],
    queue_url=os.environ["GALLEY_LONG_QUEUE_URL"],
)
print(json.dumps({"small": small, "large": large}))
"""

STATUS = """
import json, sys
from runner import app as galley
from runner.runtime.results import status

print(json.dumps([status(galley, task_id).as_dict() for task_id in sys.argv[1:]]))
"""

STORE_RESULT = """
import json, sys
from runner import app

app.backend.store_result(sys.argv[1], json.loads(sys.argv[2]), "SUCCESS")
print("{}")
"""


def _received(stack: IamStack, queue_url: str) -> dict[str, codec.TaskMessage]:
    sqs = stack.client("sqs", stack.worker)
    messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
    decoded = [codec.decode(m["Body"]) for m in messages.get("Messages", [])]
    return {m.id: m for m in decoded}


def test_web_app_with_only_the_producer_policy_enqueues_and_reads_results(
    iam_stack: IamStack,
) -> None:
    outputs = iam_stack.outputs
    bucket = outputs[templates.OUTPUT_BUCKET]
    # GIVEN a web app holding only ProducerPolicy, with messages over 8 KiB sent through S3
    # WHEN it enqueues a job on each queue
    sent = _python(
        iam_stack,
        iam_stack.web_app,
        ENQUEUE,
        **{settings.PAYLOAD_THRESHOLD_BYTES: "8192"},
    )
    # THEN each job is on its queue, and the large one's arguments are under payloads/
    jobs = _received(iam_stack, outputs[templates.OUTPUT_QUEUE_URL])
    long_jobs = _received(iam_stack, outputs[templates.OUTPUT_LONG_QUEUE_URL])
    assert jobs[sent["small"]].args == ["some-bucket", "inbox/orders.csv"]
    pointer = payloads.pointer_of(long_jobs[sent["large"]].headers)
    assert pointer is not None and pointer["bucket"] == bucket
    assert pointer["key"].startswith(f"{payloads.PREFIX}{sent['large']}/")
    s3 = iam_stack.client("s3", iam_stack.worker)
    s3.head_object(Bucket=bucket, Key=pointer["key"])

    # WHEN the worker stores the small job's result, and the web app reads both jobs
    _python(iam_stack, iam_stack.worker, STORE_RESULT, sent["small"], '{"rows": 2}')
    read = _python(iam_stack, iam_stack.web_app, STATUS, sent["small"], sent["large"])
    # THEN the first is SUCCESS with its result, the second (no result yet) PENDING
    assert read == [
        {"id": sent["small"], "state": "SUCCESS", "result": {"rows": 2}},
        {"id": sent["large"], "state": "PENDING"},
    ]


def _refusal(call: Any) -> tuple[int, str]:
    with pytest.raises(ClientError) as caught:
        call()
    response = caught.value.response
    return response["ResponseMetadata"]["HTTPStatusCode"], response["Error"]["Message"]


def test_the_producer_policy_allows_nothing_else(iam_stack: IamStack) -> None:
    outputs = iam_stack.outputs
    bucket = outputs[templates.OUTPUT_BUCKET]
    sqs = iam_stack.client("sqs", iam_stack.web_app)
    s3 = iam_stack.client("s3", iam_stack.web_app)
    key = f"{payloads.PREFIX}{uuid.uuid4()}/x"
    iam_stack.client("s3", iam_stack.worker).put_object(Bucket=bucket, Key=key, Body=b"[]")
    # GIVEN the web app's user; WHEN it does what only a worker or an operator may; THEN denied
    forbidden = {
        "receive jobs": lambda: sqs.receive_message(
            QueueUrl=outputs[templates.OUTPUT_QUEUE_URL], WaitTimeSeconds=0
        ),
        "send to a dead-letter queue": lambda: sqs.send_message(
            QueueUrl=outputs[templates.OUTPUT_DLQ_URL], MessageBody="x"
        ),
        "write a result": lambda: s3.put_object(
            Bucket=bucket, Key="results/celery-task-meta-forged", Body=b"{}"
        ),
        "read another job's arguments": lambda: s3.get_object(Bucket=bucket, Key=key),
        "delete a payload": lambda: s3.delete_object(Bucket=bucket, Key=key),
        "write an idempotency record": lambda: s3.put_object(
            Bucket=bucket, Key="idempotency/k", Body=b"{}"
        ),
    }
    refused = {what: _refusal(call) for what, call in forbidden.items()}
    assert {status for status, _ in refused.values()} == {403}, refused
    # (moto words it "AccessDenied" for SQS, "Access Denied" for S3)
    denied = {what for what, (_, message) in refused.items() if "Denied" in message}
    assert denied == set(forbidden), refused
