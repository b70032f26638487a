"""A worker's first read of the revocations with S3 failing (tests/faults.py): the worker takes
no job until a read succeeds, says so once, and still stops when told to."""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

import boto3
import pytest
from celery.worker import state as worker_state

from runner.core import revocations as core
from runner.local import embedded
from runner.local.process import wait_for
from runner.worker import revocations
from tests.faults import FaultProxy

JOB = "0b7e6a52-5d1c-4a57-9d43-6c1f2f8e9a10"
#: Refreshes that fail before the test lets S3 answer (each is two requests: one retry).
FAILED_READS = 3


@pytest.fixture
def failing_s3(
    moto_server: embedded.MotoServer, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[FaultProxy, Any]]:
    """A bucket holding a revocation of JOB, behind a proxy failing every HEAD (503), and a
    worker's revocation step reading it through that proxy."""
    for name, value in {**embedded.DUMMY_CREDENTIALS, "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(name, value)
    bucket = f"revocations-{uuid.uuid4().hex[:12]}"
    s3 = boto3.client("s3", endpoint_url=moto_server.url)
    s3.create_bucket(Bucket=bucket)
    core.record(s3, bucket, [core.Record(JOB, "")])
    settings = SimpleNamespace(revoke_refresh_seconds=1.0, results_bucket=bucket, region=None)
    step = revocations.RevocationWatch(
        SimpleNamespace(app=SimpleNamespace(galley_settings=settings))
    )
    with FaultProxy(moto_server.url) as proxy:
        proxy.inject("http_error", status=503, service="s3", action="HEAD")
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
        yield proxy, step
        step.shutdown(None)
    worker_state.revoked.discard(JOB)
    worker_state.should_stop = None


def after_failed_reads(proxy: FaultProxy, then: Callable[[], None]) -> threading.Thread:
    """A thread doing ``then`` once FAILED_READS reads have failed."""

    def run() -> None:
        failed = lambda: proxy.injected()["http_error"] >= 2 * FAILED_READS  # noqa: E731
        wait_for(failed, timeout=30, what=f"{FAILED_READS} failed revocation reads")
        then()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_a_worker_whose_first_read_fails_takes_no_job_until_a_read_succeeds(
    failing_s3: tuple[FaultProxy, Any], caplog: pytest.LogCaptureFixture
) -> None:
    # GIVEN a job revoked before the worker starts, and S3 failing the worker's reads
    proxy, step = failing_s3
    healer = after_failed_reads(proxy, proxy.heal)
    # WHEN the worker starts (its step returns before the worker takes its first job)
    with caplog.at_level(logging.INFO, logger=revocations.__name__):
        step.start(SimpleNamespace(hub=None, pool=None))
        revoked_at_start = JOB in worker_state.revoked
    healer.join()
    # THEN it went on only once a read succeeded: the revoked job is known before any job
    assert revoked_at_start
    assert proxy.injected()["http_error"] >= 2 * FAILED_READS
    # AND the failure was said once, at ERROR, and the recovery once
    said = [(r.levelname, r.getMessage()) for r in caplog.records]
    errors = [line for level, line in said if level == "ERROR"]
    assert len(errors) == 1 and "takes no job until they are" in errors[0], said
    assert any("revocations read after" in line for _, line in said), said


def test_a_worker_told_to_stop_while_s3_fails_stops_waiting(
    failing_s3: tuple[FaultProxy, Any],
) -> None:
    # GIVEN a worker whose revocation reads keep failing
    proxy, step = failing_s3

    def sigterm() -> None:  # what Celery's SIGTERM handler does in the main process
        worker_state.should_stop = 0

    stopper = after_failed_reads(proxy, sigterm)
    # WHEN it is told to stop while waiting
    step.start(SimpleNamespace(hub=None, pool=None))
    stopper.join()
    # THEN the step returns (the worker then shuts down) without having read the revocations
    assert JOB not in worker_state.revoked
    assert step.watch is not None and step.watch.refreshed_at is None
