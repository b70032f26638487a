"""Helpers for the result backend's unit tests: a Celery app storing results in an in-process
moto bucket (the ``s3`` fixture in conftest.py), and what its backend sends."""

from __future__ import annotations

import json
from typing import Any

from celery import Celery
from celery.app.task import Context

BUCKET = "results-unit"
PREFIX = "results/"
STOCK = "celery.backends.s3:S3Backend"
GALLEY = "runner.runtime.backend:S3Backend"


def make_app(result_backend: str = GALLEY, **conf: Any) -> Celery:
    """A Celery app storing results in the moto bucket, as Galley configures it."""
    app = Celery("unit", set_as_current=False)
    app.conf.update(
        broker_url="memory://",
        result_backend=result_backend,
        s3_bucket=BUCKET,
        s3_base_path=PREFIX,
        s3_region="us-east-1",
        result_extended=True,
        result_expires=None,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        **conf,
    )
    return app


def record_calls(app: Celery) -> list[str]:
    """The S3 operations ``app``'s result backend sends, in order: counted as they go on the
    wire (``before-send``), where botocore's requests and the result backend's quick uploads
    (runner.core.quickput, which skip botocore's ``before-call``) both pass."""
    calls: list[str] = []
    client = app.backend._s3_resource.meta.client

    def seen(event_name: str, **_: Any) -> None:
        calls.append(event_name.rsplit(".", 1)[-1])

    client.meta.events.register("before-send.s3", seen)
    return calls


def stored(s3: Any, task_id: str) -> dict[str, Any]:
    body = s3.get_object(Bucket=BUCKET, Key=f"{PREFIX}celery-task-meta-{task_id}")["Body"].read()
    return dict(json.loads(body))


def request(task_id: str, **fields: Any) -> Context:
    return Context(
        {"id": task_id, "task": "unit.job", "args": [1], "kwargs": {}, "hostname": "w", **fields}
    )
