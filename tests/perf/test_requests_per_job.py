"""Requests (and dollars) per job for the Celery worker: what the bill and moto's throughput are.

A prefork worker (concurrency 4) drains N no-op jobs from one moto server. The worker talks to
moto through the test suite's counting proxy (tests/faults.py); the jobs are sent beside it, so
the counts are the worker's alone: receives, deletes, heartbeats, S3 reads and writes. Printed,
never asserted. Prices: us-east-1 list prices, SQS $0.40 per million requests, S3 PUT $5.00 and
GET/HEAD $0.40 per million; one SendMessage per job is added for the sender.
"""

from __future__ import annotations

import dataclasses
import time
from collections import Counter
from pathlib import Path

import pytest

from runner.local import embedded
from runner.local.process import wait_for
from tests import support
from tests.faults import FaultProxy
from tests.perf.bench import emit, heading

N = 300
SQS_PRICE = 0.40
S3_WRITE_PRICE = 5.00
S3_READ_PRICE = 0.40


def dollars_per_million(counts: Counter[str], jobs: int) -> float:
    sqs = sum(v for k, v in counts.items() if k.startswith("sqs:")) + jobs  # + the sends
    writes = sum(v for k, v in counts.items() if k in ("s3:PUT", "s3:POST", "s3:DELETE"))
    reads = sum(v for k, v in counts.items() if k in ("s3:GET", "s3:HEAD"))
    per_job = (sqs * SQS_PRICE + writes * S3_WRITE_PRICE + reads * S3_READ_PRICE) / jobs
    return per_job  # per job in millionths of a dollar == dollars per million jobs


@pytest.mark.e2e
def test_requests_per_job(tmp_path: Path) -> None:
    heading(f"requests per job: {N} no-op jobs through one prefork worker (concurrency 4)")
    with embedded.MotoServer(log=tmp_path / "moto.log") as server, FaultProxy(server.url) as proxy:
        stack = support.provision(server.url, support.unique_config(visibility_timeout=60))
        through_proxy = dataclasses.replace(stack, endpoint_url=proxy.url)
        worker = support.start_worker(
            through_proxy,
            tmp_path / "worker.log",
            concurrency=4,
            GALLEY_TASK_MODULES="tests.perf.noop_tasks",
        )
        try:
            sqs, _ = support.clients(stack)
            from runner.wire import codec

            queue = stack.queue_url.rsplit("/", 1)[1]
            proxy.reset_counts()
            started = time.monotonic()
            for start in range(0, N, 10):
                entries = [
                    {
                        "Id": str(i),
                        "MessageBody": codec.encode_message(codec.build("perf.noop", queue=queue)),
                    }
                    for i in range(min(10, N - start))
                ]
                sqs.send_message_batch(QueueUrl=stack.queue_url, Entries=entries)
            wait_for(
                lambda: support.queue_depth(stack, stack.queue_url) == 0,
                timeout=600,
                interval=0.5,
                what=f"{N} jobs drained",
            )
            elapsed = time.monotonic() - started
            counts = proxy.counts()
        finally:
            worker.stop(grace=30)
    sqs_total = sum(v for k, v in counts.items() if k.startswith("sqs:"))
    s3_total = sum(v for k, v in counts.items() if k.startswith("s3:"))
    emit(
        "requests_per_job",
        "galley-worker",
        jobs=N,
        jobs_per_s=N / elapsed,
        sqs_per_job=sqs_total / N,
        s3_per_job=s3_total / N,
        dollars_per_million_jobs=dollars_per_million(counts, N),
    )
    for name, count in sorted(counts.items()):
        emit("requests_per_job.by_action", name, total=count, per_job=count / N)
