"""Tasks for the chord tests, loaded by workers through GALLEY_TASK_MODULES. The body writes a
marker object per run, so the tests count its runs from S3."""

from __future__ import annotations

import uuid

from runner.core import aws
from runner.runtime.app import app


@app.task(name="chords.add")
def add(x: int, y: int) -> int:
    return x + y


@app.task(name="chords.fail")
def fail(reason: str) -> None:
    raise ValueError(reason)


@app.task(name="chords.total")
def total(numbers: list[int], bucket: str, job: str) -> int:
    aws.client("s3").put_object(Bucket=bucket, Key=f"runs/{job}/{uuid.uuid4().hex}", Body=b"")
    return sum(numbers)
