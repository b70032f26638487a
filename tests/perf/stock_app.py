"""Stock Celery on SQS with S3 results, configured as Celery's documentation says: the baseline
the side-by-side benchmark (test_side_by_side.py) runs Galley against. No Galley import.

``celery -A tests.perf.stock_app worker`` reads its queue and bucket from the environment
(``STOCK_QUEUE_URL``, ``STOCK_BUCKET``; ``AWS_ENDPOINT_URL`` points boto3 and kombu at moto).
Everything else is Celery's default: early ack, prefetch multiplier 4, S3 backend as shipped.
"""

from __future__ import annotations

import os

from celery import Celery

#: The queue's name in kombu's predefined_queues (Celery's default queue).
QUEUE = "celery"


def configure(celery: Celery, queue_url: str, bucket: str, endpoint_url: str | None) -> Celery:
    """``celery`` configured as Celery's documentation configures SQS and S3."""
    region = os.environ.get("AWS_DEFAULT_REGION", "us-east-1")
    celery.conf.update(
        broker_url="sqs://",
        broker_transport_options={
            "region": region,
            "predefined_queues": {QUEUE: {"url": queue_url}},
        },
        result_backend="s3",
        s3_bucket=bucket,
        s3_endpoint_url=endpoint_url,
        s3_region=region,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        worker_enable_remote_control=False,  # SQS has no broadcast: no pidbox queues
        worker_send_task_events=False,
    )
    return celery


app = configure(
    Celery("stock"),
    os.environ.get("STOCK_QUEUE_URL", ""),
    os.environ.get("STOCK_BUCKET", ""),
    os.environ.get("AWS_ENDPOINT_URL"),
)


@app.task(name="perf.noop")
def noop() -> None:
    """Nothing, result kept."""


@app.task(name="perf.noop_ignored", ignore_result=True)
def noop_ignored() -> None:
    """Nothing, fire-and-forget."""


@app.task(name="perf.one")
def one() -> int:
    """A chord's header task."""
    return 1


@app.task(name="perf.total")
def total(numbers: list[int]) -> int:
    """A chord's body."""
    return sum(numbers)
