"""The Lambda consumer's own cost per message, for a task that does nothing.

``Consumer.handle({"Records": batch})`` over batches of 10 SQS records (Lambda's default batch
size), with a no-op task, an in-memory result backend and a stub SQS client: no AWS call is made,
so what is left is Galley's and Celery's work per message. It is split into

- ``decode``: ``runner.wire.codec.decode`` of the record body alone;
- ``trace``: ``celery.app.trace.trace_task`` alone (decoded message, request built beforehand):
  Celery's tracer with signals, the SUCCESS stored in the memory backend;
- ``handle``: the whole ``Consumer.handle`` (decode, checks, request, trace, outcome, log).

Then ``handle`` again with S3 results on a moto server, labelled "including AWS calls", its S3
requests counted at the test suite's proxy (tests/faults.py): Galley's result backend (one
PutObject per message) beside what it replaced, "today" (stock Celery's S3 backend with
task_track_started: a HEAD before each of the STARTED and SUCCESS PutObjects).
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest
from celery import Celery, states
from celery.app.trace import trace_task

from runner.core.settings import ConsumerSettings, load
from runner.lambdas.records import Consumer
from runner.local import embedded
from runner.runtime.app import create_app
from runner.wire import codec
from tests.faults import FaultProxy
from tests.perf.bench import emit, heading, summary
from tests.perf.stock import use_stock_results

N = 2000
N_WITH_AWS = 100
BATCH = 10
REGION = "us-east-1"
ACCOUNT = "123456789012"
QUEUE = "galley-bench"
QUEUE_URL = f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/{QUEUE}"
DLQ_URL = f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/{QUEUE}-dlq"
TASK = "bench.noop"
ARGS: list[Any] = [[], "b", "p"]
TARGET_US = 2000.0

T = TypeVar("T")


class StubSQS:
    """Records what would have been sent; the success path sends nothing."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def send_message(self, **params: Any) -> dict[str, Any]:
        self.sent.append(params)
        return {"MessageId": str(uuid.uuid4())}

    def delete_message(self, **params: Any) -> dict[str, Any]:
        """Each settled record is deleted at once (the consumer's early delete)."""
        return {}


def sqs_record(body: str, *, now_ms: int) -> dict[str, Any]:
    """One record of a Lambda SQS event, shaped as AWS delivers it."""
    return {
        "messageId": str(uuid.uuid4()),
        "receiptHandle": "AQEB" + uuid.uuid4().hex * 4,
        "body": body,
        "attributes": {
            "ApproximateReceiveCount": "1",
            "SentTimestamp": str(now_ms),
            "SenderId": "AIDAIENQZJOLO23YVJ4VO",
            "ApproximateFirstReceiveTimestamp": str(now_ms + 3),
        },
        "messageAttributes": {},
        "md5OfBody": hashlib.md5(body.encode(), usedforsecurity=False).hexdigest(),
        "eventSource": "aws:sqs",
        "eventSourceARN": f"arn:aws:sqs:{REGION}:{ACCOUNT}:{QUEUE}",
        "awsRegion": REGION,
    }


def make_records(count: int) -> list[dict[str, Any]]:
    now_ms = int(time.time() * 1000)
    return [sqs_record(codec.encode(TASK, ARGS, queue=QUEUE), now_ms=now_ms) for _ in range(count)]


def batches(items: list[Any]) -> Iterator[list[Any]]:
    for start in range(0, len(items), BATCH):
        yield items[start : start + BATCH]


def per_message_us(batch_ns: list[tuple[int, int]]) -> dict[str, float]:
    """Per-message microseconds of each (elapsed_ns, size) batch, summarised over batches."""
    return summary([elapsed / size / 1000 for elapsed, size in batch_ns])


def timed(work: Callable[[list[T]], object], batch: list[T]) -> tuple[int, int]:
    """``work(batch)``: elapsed nanoseconds and batch size."""
    started = time.perf_counter_ns()
    work(batch)
    return time.perf_counter_ns() - started, len(batch)


@pytest.fixture
def settings(monkeypatch: pytest.MonkeyPatch) -> ConsumerSettings:
    """Consumer settings given in full, whatever this process's environment holds."""
    for name in ("AWS_ENDPOINT_URL", "GALLEY_RESULTS_PREFIX", "GALLEY_TASK_TIME_LIMIT"):
        monkeypatch.delenv(name, raising=False)
    for name, value in embedded.DUMMY_CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    return load(
        ConsumerSettings,
        queue_url=QUEUE_URL,
        dlq_url=DLQ_URL,
        results_bucket="galley-bench-results",
        region=REGION,
    )


def bench_app(settings: ConsumerSettings, *, memory_backend: bool) -> tuple[Celery, list[int]]:
    """A Galley app with ``bench.noop`` registered; its calls are counted in the list."""
    app = create_app(settings)
    if memory_backend:
        # Read first: GalleyCelery fills its configuration on first access, and a value set
        # before that would be overwritten by it.
        assert app.conf.result_backend == "s3"
        app.conf.result_backend = "cache+memory://"
    calls: list[int] = []

    @app.task(name=TASK, shared=False)
    def noop(*args: Any, **kwargs: Any) -> None:
        calls.append(1)

    return app, calls


def emit_us(benchmark: str, subject: str, stats: dict[str, float], count: int) -> None:
    emit(
        benchmark,
        subject,
        median_us=stats["median"],
        p95_us=stats["p95"],
        min_us=stats["min"],
        max_us=stats["max"],
        messages=count,
        batch=BATCH,
    )


def test_consumer_overhead_per_message(settings: ConsumerSettings) -> None:
    # GIVEN a consumer on a Galley app with a no-op task, memory results and a stub SQS client
    app, calls = bench_app(settings, memory_backend=True)
    sqs = StubSQS()
    consumer = Consumer(app, settings, sqs=sqs, hostname="bench")
    task = app.tasks[TASK]
    first, second = make_records(N), make_records(N)

    # WHEN decode alone, the tracer alone, then the whole handle run over batches of 10
    def decode(batch: list[dict[str, Any]]) -> None:
        for record in batch:
            codec.decode(record["body"])

    decode_ns = [timed(decode, b) for b in batches(first)]
    messages = [codec.decode(r["body"]) for r in first]
    requests = [consumer._request(m) for m in messages]
    traced: list[Any] = []

    def trace(chunk: list[tuple[codec.TaskMessage, dict[str, Any]]]) -> None:
        for message, request in chunk:
            traced.append(
                trace_task(
                    task,
                    message.id,
                    message.args,
                    message.kwargs,
                    request,
                    hostname=consumer.hostname,
                    loader=app.loader,
                    app=app,
                    eager=False,
                )
            )

    pairs = list(zip(messages, requests, strict=True))
    trace_ns = [timed(trace, b) for b in batches(pairs)]
    assert len(calls) == N and all(t.info is None for t in traced)

    responses: list[dict[str, Any]] = []

    def handle(batch: list[dict[str, Any]]) -> None:
        responses.append(consumer.handle({"Records": batch}))

    handle_ns = [timed(handle, b) for b in batches(second)]

    # THEN every record ran once and was acked: no batch item failure, nothing dead-lettered
    assert all(response == {"batchItemFailures": []} for response in responses)
    assert sqs.sent == []
    assert len(calls) == 2 * N
    ids = [codec.decode(r["body"]).id for r in second]
    assert all(app.AsyncResult(task_id).state == states.SUCCESS for task_id in ids)

    heading(f"consumer overhead per message, no-op task, excluding AWS calls (N={N})")
    emit_us("consumer.decode", "codec.decode", per_message_us(decode_ns), N)
    emit_us("consumer.trace", "trace_task", per_message_us(trace_ns), N)
    full = per_message_us(handle_ns)
    emit_us("consumer.handle", "excluding_aws", full, N)
    emit(
        "consumer.target",
        "excluding_aws",
        median_us=full["median"],
        target_us=f"<={TARGET_US:g}",
        fraction_of_target=full["median"] / TARGET_US,
    )


@pytest.mark.parametrize("variant", ["galley", "today"])
def test_consumer_per_message_with_s3_results(
    settings: ConsumerSettings,
    moto_server: embedded.MotoServer,
    monkeypatch: pytest.MonkeyPatch,
    variant: str,
) -> None:
    # GIVEN the same consumer with S3 results on a moto server, through the counting proxy:
    # Galley's result backend, or what it replaced ("today": stock Celery's S3 backend, STARTED)
    proxy = FaultProxy(moto_server.url).start()
    monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
    bucket = f"bench-results-{uuid.uuid4().hex[:10]}"
    s3 = embedded.local_session(REGION).client("s3", endpoint_url=moto_server.url)
    s3.create_bucket(Bucket=bucket)
    settings = load(ConsumerSettings, **{**settings.model_dump(), "results_bucket": bucket})
    app, calls = bench_app(settings, memory_backend=False)
    if variant == "today":
        use_stock_results(app)
    sqs = StubSQS()
    consumer = Consumer(app, settings, sqs=sqs, hostname="bench")
    records = make_records(N_WITH_AWS)

    # WHEN the whole handle runs over batches of 10
    responses: list[dict[str, Any]] = []

    def handle(batch: list[dict[str, Any]]) -> None:
        responses.append(consumer.handle({"Records": batch}))

    try:
        proxy.reset_counts()
        handle_ns = [timed(handle, b) for b in batches(records)]
        during = Counter({k: v for k, v in proxy.counts().items() if k.startswith("s3:")})
    finally:
        proxy.stop()

    # THEN every record ran and its result is in S3
    assert all(response == {"batchItemFailures": []} for response in responses)
    assert sqs.sent == [] and len(calls) == N_WITH_AWS
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=settings.results_prefix)
    assert listed["KeyCount"] == N_WITH_AWS
    sample = codec.decode(records[-1]["body"]).id
    key = f"{settings.results_prefix}celery-task-meta-{sample}"
    assert b'"status": "SUCCESS"' in s3.get_object(Bucket=bucket, Key=key)["Body"].read()

    heading(
        f"consumer per message, no-op task, INCLUDING AWS calls ({variant}: S3 results, moto, "
        f"N={N_WITH_AWS}, S3 requests counted at a proxy)"
    )
    emit_us(
        "consumer.handle", f"including_aws_s3_moto_{variant}", per_message_us(handle_ns), N_WITH_AWS
    )
    emit(
        "consumer.s3_requests",
        f"per_message_{variant}",
        **{op.replace("s3:", "").lower(): n / N_WITH_AWS for op, n in sorted(during.items())},
        total=sum(during.values()) / N_WITH_AWS,
    )
