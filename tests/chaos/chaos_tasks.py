"""Tasks for the chaos suite, loaded by workers through GALLEY_TASK_MODULES.

Every execution writes one marker object, ``markers/<job_id>/<uuid4>``, so the harness counts
executions from S3 alone: a job with no marker did not run, a job with two ran twice.

Injected S3 PUT errors: with probability ``GALLEY_CHAOS_PUT_ERROR_RATE`` (worker environment) an
attempt fails with :class:`InjectedS3Error` *instead of* writing its marker -- the realistic
"PutObject answered 500" case: nothing was written, and Celery's autoretry runs the job again
later (as an SQS delay: runner/core/delays.py), which writes the marker. So an injected error never
shows as a duplicate; it shows as one ``injected/<job_id>/<uuid4>`` record, written so the
harness can count the errors without reading worker logs.
"""

from __future__ import annotations

import json
import os
import random
import socket
import time
import uuid
from typing import Any

from botocore.config import Config
from celery import Task

from runner.core import aws
from runner.runtime.app import app

#: Probability that one attempt's marker PUT fails (worker environment; 0 turns it off).
PUT_ERROR_RATE = "GALLEY_CHAOS_PUT_ERROR_RATE"
MARKERS = "markers/"
INJECTED = "injected/"
FINISHED = "finished/"
#: Garbage that turned out runnable (an envelope naming chaos.target) records each run here, in
#: the results bucket: ``garbage-ran/<task id>/<uuid4>``.
GARBAGE_RAN = "garbage-ran/"

_s3: Any = None


class InjectedS3Error(Exception):
    """A simulated S3 5xx on the marker PUT; nothing was written."""


def s3() -> Any:
    """This pool process's S3 client, made after the fork (boto3 clients are not fork-safe).

    It retries passing S3 faults (the bursts hit S3 too) for about ten seconds, as a real task's
    client should: a write that still fails is the job's failure, and dead-lettered."""
    global _s3
    if _s3 is None:
        _s3 = aws.client("s3", config=Config(retries={"mode": "standard", "max_attempts": 10}))
    return _s3


def _record(task: Task, kind: str) -> bytes:
    """Who ran an execution: ``worker_pid`` is the Celery main process (the prefork parent)."""
    return json.dumps(
        {
            "kind": kind,
            "task_id": task.request.id,
            "retries": task.request.retries,
            "worker_pid": os.getppid(),
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "at": time.time(),
        }
    ).encode()


def mark(task: Task, bucket: str, job_id: str, kind: str) -> None:
    s3().put_object(
        Bucket=bucket, Key=f"{MARKERS}{job_id}/{uuid.uuid4().hex}", Body=_record(task, kind)
    )


@app.task(
    bind=True,
    name="chaos.job",
    autoretry_for=(InjectedS3Error,),
    retry_backoff=1,
    retry_backoff_max=8,
    retry_jitter=True,
    max_retries=25,
)
def job(self: Task, bucket: str, job_id: str, seconds: float = 0.005) -> str:
    """One unit of work: a marker PUT (which may fail, injected), then a short sleep so that
    work overlaps the faults."""
    rate = float(os.environ.get(PUT_ERROR_RATE) or 0)
    if rate and random.random() < rate:  # noqa: S311 - fault injection, not cryptography
        s3().put_object(
            Bucket=bucket, Key=f"{INJECTED}{job_id}/{uuid.uuid4().hex}", Body=_record(self, "job")
        )
        raise InjectedS3Error(f"simulated S3 500 InternalError on PutObject markers/{job_id}/")
    mark(self, bucket, job_id, "job")
    time.sleep(seconds)
    return job_id


@app.task(bind=True, name="chaos.long")
def long_task(self: Task, bucket: str, job_id: str, seconds: float) -> str:
    """The task longer than the visibility timeout: a marker when it starts, then ``seconds``
    of work, then ``finished/<job_id>/<uuid4>``. Ran once = one marker and one finish."""
    mark(self, bucket, job_id, "long")
    time.sleep(seconds)
    s3().put_object(
        Bucket=bucket, Key=f"{FINISHED}{job_id}/{uuid.uuid4().hex}", Body=_record(self, "long")
    )
    return job_id


@app.task(bind=True, name="chaos.target")
def target(self: Task, *args: Any, **kwargs: Any) -> None:
    """What garbage envelopes name (tests/garbage.py): takes any arguments, records the run."""
    s3().put_object(
        Bucket=app.galley_settings.results_bucket,
        Key=f"{GARBAGE_RAN}{self.request.id}/{uuid.uuid4().hex}",
        Body=_record(self, "garbage"),
    )
