"""Tasks for the reliability tests, loaded by workers through GALLEY_TASK_MODULES.

Each run writes a marker object to S3 *when it starts and when it ends*, named by a fresh uuid, so
the tests count executions from S3 — not from the workers' own logs.
"""

from __future__ import annotations

import os
import time
import uuid

from celery import Task

from runner.core import aws
from runner.runtime.app import app

if os.environ.get("GALLEY_TEST_EARLY_ACK"):  # the negative control: stock Celery's early ack
    app.conf.task_acks_late = False
    app.conf.task_reject_on_worker_lost = False


@app.task(bind=True, name="reliability.work", track_started=True)
def work(self: Task, bucket: str, job: str, seconds: float) -> str:
    s3 = aws.client("s3")
    run = uuid.uuid4().hex
    s3.put_object(Bucket=bucket, Key=f"runs/{job}/started/{run}", Body=str(os.getpid()).encode())
    time.sleep(seconds)
    s3.put_object(Bucket=bucket, Key=f"runs/{job}/finished/{run}", Body=b"")
    return job


@app.task(name="reliability.stamp")
def stamp(bucket: str, job: str) -> float:
    """Records when it ran (epoch seconds), to check it ran once and not before its eta."""
    now = time.time()
    aws.client("s3").put_object(
        Bucket=bucket, Key=f"runs/{job}/started/{uuid.uuid4().hex}", Body=str(now).encode()
    )
    return now


@app.task(name="reliability.fail")
def fail(reason: str) -> None:
    raise ValueError(reason)


@app.task(name="reliability.crash")
def crash() -> None:
    """Poison: kills the process that runs it, every time."""
    os._exit(13)


@app.task(name="reliability.measure")
def measure(blob: str, label: str = "") -> dict[str, object]:
    """Takes a large argument; returns its size and a digest."""
    import hashlib

    return {"size": len(blob), "sha256": hashlib.sha256(blob.encode()).hexdigest(), "label": label}


@app.task(name="reliability.throttled", rate_limit="12/m")
def throttled(bucket: str, job: str) -> str:
    """At most one run every 5 s per worker: the rest wait in Celery's rate-limit buckets."""
    aws.client("s3").put_object(
        Bucket=bucket, Key=f"runs/{job}/started/{uuid.uuid4().hex}", Body=b""
    )
    return job


@app.task(name="reliability.requeue_forever")
def requeue_forever(bucket: str, job: str) -> None:
    """Gives its message back every time it runs."""
    from celery.exceptions import Reject

    aws.client("s3").put_object(
        Bucket=bucket, Key=f"runs/{job}/started/{uuid.uuid4().hex}", Body=b""
    )
    raise Reject("not now", requeue=True)


@app.task(bind=True, name="reliability.retry_later", max_retries=5)
def retry_later(self: Task, bucket: str, job: str, countdown: float) -> str:
    """Records each run, then asks to be retried after ``countdown`` seconds."""
    aws.client("s3").put_object(
        Bucket=bucket, Key=f"runs/{job}/started/{uuid.uuid4().hex}", Body=b""
    )
    raise self.retry(countdown=countdown)
