"""Tasks for the network-fault tests and the garbage soak, loaded through GALLEY_TASK_MODULES.

Every run writes ``runs/<job>/started/<uuid4>`` when it starts and ``runs/<job>/finished/<uuid4>``
when it ends, so the tests count executions from S3, not from worker logs. The S3 client makes at
most two attempts per call: an S3 fault longer than that reaches the task, which Celery retries
(autoretry, through an SQS delay), as a real task whose S3 write fails would be.
"""

from __future__ import annotations

import os
import time
import uuid
from typing import Any

from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from celery import Task
from celery.exceptions import Reject

from runner.core import aws
from runner.runtime.app import app

S3_CONFIG = Config(
    connect_timeout=3, read_timeout=5, retries={"mode": "standard", "total_max_attempts": 2}
)
_clients: dict[int, Any] = {}


def s3() -> Any:
    """This pool process's S3 client, made after the fork."""
    pid = os.getpid()
    if pid not in _clients:
        _clients[pid] = aws.client("s3", config=S3_CONFIG)
    return _clients[pid]


def mark(bucket: str, job: str, phase: str) -> None:
    s3().put_object(
        Bucket=bucket, Key=f"runs/{job}/{phase}/{uuid.uuid4().hex}", Body=str(os.getpid()).encode()
    )


def count(bucket: str, job: str, phase: str) -> int:
    listed = s3().list_objects_v2(Bucket=bucket, Prefix=f"runs/{job}/{phase}/")
    return int(listed.get("KeyCount", 0))


RETRY = {
    "autoretry_for": (ClientError, BotoCoreError),
    "retry_backoff": 1,
    "retry_backoff_max": 4,
    "retry_jitter": False,
    "max_retries": 30,
}


@app.task(bind=True, name="faults.work", **RETRY)
def work(self: Task, bucket: str, job: str, seconds: float) -> str:
    mark(bucket, job, "started")
    time.sleep(seconds)
    mark(bucket, job, "finished")
    return job


@app.task(bind=True, name="faults.requeue_once", **RETRY)
def requeue_once(self: Task, bucket: str, job: str, seconds: float = 0) -> str:
    """Gives its message back (Reject with requeue: a release) on its first run; the next run
    takes ``seconds``."""
    mark(bucket, job, "started")
    if count(bucket, job, "started") == 1:
        raise Reject("first run: give the message back", requeue=True)
    time.sleep(seconds)
    mark(bucket, job, "finished")
    return job


@app.task(bind=True, name="faults.retry_once")
def retry_once(self: Task, bucket: str, job: str) -> str:
    """Asks Celery to retry it (a new message, published by the worker) on its first run."""
    mark(bucket, job, "started")
    if count(bucket, job, "started") == 1:
        raise self.retry(countdown=1, max_retries=3)
    mark(bucket, job, "finished")
    return job


# --- the garbage soak (tests/e2e/test_garbage_soak.py) ---


@app.task(name="soak.good")
def good(bucket: str, job: str) -> str:
    """A good job: one marker per run."""
    mark(bucket, job, "started")
    return job


@app.task(bind=True, name="soak.target")
def target(self: Task, *args: Any, **kwargs: Any) -> None:
    """What garbage envelopes name: takes any arguments, and records each run under its task id
    (whatever that id is) in the results bucket."""
    mark(app.galley_settings.results_bucket, str(self.request.id), "started")


# --- the long-jobs queue (tests/e2e/test_queues.py) ---


@app.task(name="queues.where")
def where(bucket: str, job: str) -> str:
    """Records its run; the worker's log says which queue's worker ran it."""
    mark(bucket, job, "started")
    return job


@app.task(name="queues.declared_long", queue="long")
def declared_long(bucket: str, job: str) -> str:
    """A task that declares its queue, as Celery's ``@app.task(queue=...)`` does."""
    mark(bucket, job, "started")
    return job
