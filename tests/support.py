"""Helpers shared by the integration and e2e suites: real moto servers, real worker processes."""

from __future__ import annotations

import functools
import json
import os
import re
import sys
import urllib.request
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.core import aws, settings
from runner.local import embedded
from runner.local.process import Child, wait_for

READY = re.compile(r"celery@\S+ ready\.")
#: Test workers long-poll for 1 s, not the local stack's 5 s: a stopping worker first waits for
#: its poll in flight, and every test stops its workers. A test about the long poll sets its own.
RECEIVE_WAIT_SECONDS = "1"


@dataclass(frozen=True)
class StackConfig:
    """Names and limits of a directly provisioned test stack."""

    queue_name: str = "galley-jobs"
    dlq_name: str = "galley-jobs-dlq"
    bucket: str = "galley-results-local"
    region: str = "us-east-1"
    visibility_timeout: int = 120
    max_receive_count: int = 3
    dlq_retention_seconds: int = 14 * 24 * 3600


def provision(endpoint_url: str, config: StackConfig | None = None) -> embedded.LocalResources:
    """Create a DLQ, a queue redriving to it and a bucket directly — for tests that need odd
    settings (2 s visibility) or many isolated stacks; `galley local up` deploys template.yaml."""
    config = config or StackConfig()
    session = embedded.local_session(config.region)
    sqs = aws.client("sqs", endpoint_url=endpoint_url, session=session)
    s3 = aws.client("s3", endpoint_url=endpoint_url, session=session)
    dlq_url = sqs.create_queue(
        QueueName=config.dlq_name,
        Attributes={"MessageRetentionPeriod": str(config.dlq_retention_seconds)},
    )["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    redrive = {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": config.max_receive_count}
    queue_url = sqs.create_queue(
        QueueName=config.queue_name,
        Attributes={
            "VisibilityTimeout": str(config.visibility_timeout),
            "RedrivePolicy": json.dumps(redrive),
        },
    )["QueueUrl"]
    create: dict[str, object] = {"Bucket": config.bucket}
    if config.region != "us-east-1":
        create["CreateBucketConfiguration"] = {"LocationConstraint": config.region}
    s3.create_bucket(**create)
    return embedded.LocalResources(
        endpoint_url=endpoint_url,
        region=config.region,
        queue_url=queue_url,
        dlq_url=dlq_url,
        bucket=config.bucket,
        visibility_timeout=config.visibility_timeout,
    )


def unique_config(**overrides: Any) -> StackConfig:
    """Stack names no other test uses, so tests share one moto server safely."""
    suffix = uuid.uuid4().hex[:10]
    defaults: dict[str, Any] = {
        "queue_name": f"jobs-{suffix}",
        "dlq_name": f"jobs-{suffix}-dlq",
        "bucket": f"results-{suffix}",
    }
    return StackConfig(**{**defaults, **overrides})


def clients(stack: embedded.LocalResources) -> tuple[Any, Any]:
    session = embedded.local_session(stack.region)
    return (
        aws.client("sqs", endpoint_url=stack.endpoint_url, session=session),
        aws.client("s3", endpoint_url=stack.endpoint_url, session=session),
    )


@functools.lru_cache(maxsize=64)
def _watching_sqs(endpoint_url: str, region: str) -> Any:
    """One SQS client per server for the helpers that poll it: building a client loads botocore's
    service model (~0.1 s of CPU), and a poll every 0.25 s that built one took CPU from what the
    test measures. Kept to read-only calls, so no test changes it under another."""
    session = embedded.local_session(region)
    return aws.client("sqs", endpoint_url=endpoint_url, session=session)


def queue_depth(stack: embedded.LocalResources, url: str) -> int:
    """Visible + in-flight + delayed messages on ``url``."""
    sqs = _watching_sqs(stack.endpoint_url, stack.region)
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    return sum(
        int(attrs[name])
        for name in (
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed",
        )
    )


def start_worker(
    stack: embedded.LocalResources,
    log: Path,
    *,
    concurrency: int = 2,
    queue: str = "jobs",
    **env: str,
) -> Child:
    """A real prefork ``celery -A runner.app worker`` on the queue with role ``queue``; returns
    once it reports ready."""
    env = {settings.RECEIVE_WAIT_SECONDS: RECEIVE_WAIT_SECONDS, **env}
    worker = embedded.start_worker(stack, log=log, concurrency=concurrency, queue=queue, **env)

    def ready() -> bool:
        if not worker.alive():
            raise AssertionError(f"worker exited early:\n{worker.log_tail(60)}")
        return bool(log.exists() and READY.search(log.read_text(errors="replace")))

    try:
        wait_for(ready, timeout=60, what="the celery worker to be ready")
    except BaseException:
        worker.stop()
        raise
    return worker


def galley(*args: str) -> list[str]:
    """argv for the ``galley`` command of this interpreter's environment."""
    return [sys.executable, "-m", "runner.cli.main", *args]


def attached_env(stack: embedded.LocalResources, **extra: str) -> dict[str, str]:
    return {**os.environ, **stack.env(), **extra}


def recorded_actions(endpoint_url: str) -> Counter[str]:
    """SQS actions (X-Amz-Target) and S3 methods moto's recorder saw since it was started."""
    with urllib.request.urlopen(f"{endpoint_url}/moto-api/recorder/download-recording") as r:  # noqa: S310
        lines = r.read().decode().splitlines()
    seen: Counter[str] = Counter()
    for line in lines:
        entry = json.loads(line)
        headers = {k.lower(): v for k, v in (entry.get("headers") or {}).items()}
        target = headers.get("x-amz-target")
        seen[target.split(".")[-1] if target else f"{entry.get('method')} {entry.get('url')}"] += 1
    return seen


def recorder(endpoint_url: str, action: str) -> None:
    req = urllib.request.Request(f"{endpoint_url}/moto-api/recorder/{action}", method="POST")
    with urllib.request.urlopen(req):  # noqa: S310
        pass


def attached_env_plain() -> dict[str, str]:
    """This process's environment without any Galley or endpoint variable."""
    return {k: v for k, v in os.environ.items() if k not in settings.ALL_VARIABLES}


def dead_letter_reasons(stack: embedded.LocalResources, url: str | None = None) -> list[str]:
    """The ``galley-reason`` of every message on the DLQ (read with a sweep: each is received
    once and released again, so the queue keeps them)."""
    from runner.core.deadletter import REASON_ATTRIBUTE
    from runner.ops.sqs_sweep import Sweep

    sqs, _ = clients(stack)
    reasons: list[str] = []
    with Sweep(sqs, url or stack.dlq_url, visibility=30) as sweep:
        for batch in sweep.batches():
            for raw in batch:
                attribute = raw.get("MessageAttributes", {}).get(REASON_ATTRIBUTE, {})
                reasons.append(attribute.get("StringValue", "(no reason)"))
    return sorted(reasons)
