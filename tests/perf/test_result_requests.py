"""S3 requests per kept-result job on a real worker, and requests + seconds per 3-task chord,
Galley's way beside stock Celery's (a client with stock Celery's S3 backend, whose chords send
celery.chord_unlock to poll the header every second). Printed, never asserted.

Every request of the worker (and, for chords, of the client that sends and awaits them) goes
through the test suite's counting proxy (tests/faults.py). The worker is Galley's in both chord
runs (a worker's backend cannot be swapped reliably once its pool has forked); the stock side's
per-job figures come from the Lambda consumer benchmark (test_consumer_overhead.py), where the
backend is swapped in-process. Prices: us-east-1 list prices, S3 PUT $5.00 and GET/HEAD $0.40
per million; SQS $0.40 per million requests.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from celery import chord

from runner.local import embedded
from runner.local.process import Child, wait_for
from runner.wire import codec
from tests import support
from tests.faults import FaultProxy
from tests.perf.bench import emit, heading
from tests.perf.stock import use_stock_results

pytestmark = pytest.mark.e2e

JOBS = 200
CHORDS = 5
TASK_MODULES = "tests.perf.noop_tasks,tests.perf.chord_tasks"
PRICES = {"s3:PUT": 5.00, "s3:GET": 0.40, "s3:HEAD": 0.40, "s3:DELETE": 0.0}


@dataclasses.dataclass
class Bench:
    stack: embedded.LocalResources
    proxy: FaultProxy
    worker: Child


@pytest.fixture
def bench(tmp_path: Path) -> Iterator[Bench]:
    with embedded.MotoServer(log=tmp_path / "moto.log") as server, FaultProxy(server.url) as proxy:
        stack = support.provision(server.url, support.unique_config(visibility_timeout=60))
        through_proxy = dataclasses.replace(stack, endpoint_url=proxy.url)
        worker = support.start_worker(
            through_proxy,
            tmp_path / "worker.log",
            concurrency=4,
            GALLEY_TASK_MODULES=TASK_MODULES,
        )
        try:
            yield Bench(stack, proxy, worker)
        finally:
            worker.stop(grace=30)


def s3_counts(counts: Counter[str]) -> Counter[str]:
    return Counter({k: v for k, v in counts.items() if k.startswith("s3:")})


def dollars_per_million(s3: Counter[str], units: int) -> float:
    return sum(PRICES.get(k, 0.0) * v for k, v in s3.items()) / units


def test_s3_requests_per_kept_result_job(bench: Bench) -> None:
    b, variant = bench, "galley"
    heading(f"S3 requests per kept-result job, Galley worker, {JOBS} no-op jobs, c=4")
    sqs, _ = support.clients(b.stack)
    queue = b.stack.queue_url.rsplit("/", 1)[1]
    b.proxy.reset_counts()
    for start in range(0, JOBS, 10):
        body = codec.encode_message(codec.build("perf.noop", queue=queue))
        entries = [{"Id": str(i), "MessageBody": body} for i in range(min(10, JOBS - start))]
        sqs.send_message_batch(QueueUrl=b.stack.queue_url, Entries=entries)
    wait_for(
        lambda: b.proxy.counts()["s3:PUT"] >= JOBS,
        timeout=600,
        interval=0.5,
        what=f"{JOBS} results stored",
    )
    wait_for(
        lambda: support.queue_depth(b.stack, b.stack.queue_url) == 0,
        timeout=120,
        interval=0.5,
        what="every job settled",
    )
    s3 = s3_counts(b.proxy.counts())
    emit(
        "result_requests.job",
        variant,
        jobs=JOBS,
        s3_per_job=sum(s3.values()) / JOBS,
        **{k.replace("s3:", "").lower(): v / JOBS for k, v in sorted(s3.items())},
        s3_dollars_per_million_jobs=dollars_per_million(s3, JOBS),
    )


@pytest.mark.parametrize("variant", ["galley", "today"])
def test_requests_and_seconds_per_chord(bench: Bench, monkeypatch: Any, variant: str) -> None:
    b = bench
    heading(f"requests and seconds per 3-task chord ({variant}), worker + client, {CHORDS} chords")
    through_proxy = dataclasses.replace(b.stack, endpoint_url=b.proxy.url)
    for name, value in through_proxy.env().items():
        monkeypatch.setenv(name, value)
    from runner.runtime.app import create_app

    app = create_app()
    if variant == "today":
        use_stock_results(app)
    seconds: list[float] = []
    b.proxy.reset_counts()
    try:
        for _ in range(CHORDS):
            started = time.monotonic()
            header = [app.signature("perf.one") for _ in range(3)]
            result = chord(header, app.signature("perf.total")).apply_async()
            assert result.get(timeout=60) == 3
            seconds.append(time.monotonic() - started)
        wait_for(
            lambda: support.queue_depth(b.stack, b.stack.queue_url) == 0,
            timeout=60,
            interval=0.5,
            what="every message settled",
        )
        counts = b.proxy.counts()
    finally:
        app.close()
    s3 = s3_counts(counts)
    sqs = Counter({k: v for k, v in counts.items() if k.startswith("sqs:")})
    unlocks = b.worker.log_tail(100000).count("celery.chord_unlock[")
    emit(
        "result_requests.chord",
        variant,
        chords=CHORDS,
        seconds_median=statistics.median(seconds),
        s3_per_chord=sum(s3.values()) / CHORDS,
        **{k.replace("s3:", "").lower(): v / CHORDS for k, v in sorted(s3.items())},
        sqs_sends_per_chord=(sqs["sqs:SendMessage"] + sqs["sqs:SendMessageBatch"]) / CHORDS,
        sqs_per_chord=sum(sqs.values()) / CHORDS,
        chord_unlock_log_lines=unlocks,
        s3_dollars_per_million_chords=dollars_per_million(s3, CHORDS),
    )
