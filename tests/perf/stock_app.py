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

app = Celery("stock")
app.conf.update(
    broker_url="sqs://",
    broker_transport_options={
        "region": os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
        "predefined_queues": {QUEUE: {"url": os.environ.get("STOCK_QUEUE_URL", "")}},
    },
    result_backend="s3",
    s3_bucket=os.environ.get("STOCK_BUCKET", ""),
    s3_endpoint_url=os.environ.get("AWS_ENDPOINT_URL"),
    s3_region=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    worker_enable_remote_control=False,  # SQS has no broadcast: pidbox queues cannot be created
    worker_send_task_events=False,
)


@app.task(name="perf.noop")
def noop() -> None:
    """Nothing, result kept."""


@app.task(name="perf.noop_ignored", ignore_result=True)
def noop_ignored() -> None:
    """Nothing, fire-and-forget."""
