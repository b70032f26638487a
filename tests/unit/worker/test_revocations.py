"""The worker's revocation refresh: what it hands the event loop never raises there.

An exception in a callback of kombu's hub leaves the event loop: the worker stops with
"Unrecoverable error" and every job it holds is delivered again. A refresh must therefore turn
anything it finds in the bucket (a record written by hand or another tool) or any pool into
terminations it can carry out, or a logged line.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

import boto3
import pytest
from celery.worker import state as worker_state
from celery.worker.request import Request

from runner.core import revocations as core
from runner.worker import revocations

BUCKET = "revocations-unit"


class Pool:
    """A pool that signals processes (prefork) or cannot (``threads``, ``solo``)."""

    def __init__(self, can_signal: bool = True) -> None:
        self.can_signal = can_signal
        self.signalled: list[tuple[int, int]] = []

    def terminate_job(self, pid: int, signal: int) -> None:
        if not self.can_signal:  # celery.concurrency.base.BasePool.terminate_job
            raise NotImplementedError(f"{type(self)} does not implement kill_job")
        self.signalled.append((pid, signal))


class Running:
    """A request the pool runs, terminated by Celery's own ``Request.terminate``."""

    name = "tasks.slow"
    time_start = 1.0
    _apply_result = None

    def __init__(self, task_id: str, pid: int) -> None:
        self.id, self.worker_pid = task_id, pid

    def _announce_revoked(self, *args: Any) -> None:
        pass

    def terminate(self, pool: Pool, signal: Any = None) -> None:
        Request.terminate(self, pool, signal)  # type: ignore[arg-type]


@pytest.fixture
def refresh(moto_in_process: None) -> Iterator[Callable[[list[Any], Pool], list[Any]]]:
    """``refresh(requests, pool)``: one refresh of one worker with ``requests`` running;
    returns the hub's callbacks (run them to apply it)."""
    boto3.client("s3", region_name="us-east-1").create_bucket(Bucket=BUCKET)
    active = worker_state.active_requests
    step = revocations.RevocationWatch.__new__(revocations.RevocationWatch)
    step.bucket = BUCKET
    step.watch = core.Watch(boto3.client("s3", region_name="us-east-1"), BUCKET)

    def run(requests: list[Any], pool: Pool) -> list[Any]:
        callbacks: list[Any] = []
        hub = SimpleNamespace(call_soon=lambda fn, *args: callbacks.append(lambda: fn(*args)))
        active.clear()
        active.update(requests)
        step.refresh(SimpleNamespace(hub=hub, pool=pool))
        return callbacks

    yield run
    active.clear()
    for task_id in ("job-a", "job-b"):
        worker_state.revoked.discard(task_id)


def put(task_id: str, record: Any) -> None:
    s3 = boto3.client("s3", region_name="us-east-1")
    body = record if isinstance(record, bytes) else json.dumps(record).encode()
    s3.put_object(Bucket=BUCKET, Key=core.key(task_id), Body=body)
    s3.put_object(Bucket=BUCKET, Key=core.MARKER, Body=b"now")


@pytest.mark.parametrize(
    ("signal", "sent"),
    [("kill", 9), ("SIGNOPE", 15), ("", 15), (["SIGKILL"], 15)],  # as `galley revoke` reads them
)
def test_a_record_with_a_signal_celery_does_not_take_does_not_stop_the_event_loop(
    refresh: Callable[[list[Any], Pool], list[Any]], signal: Any, sent: int
) -> None:
    # GIVEN two running jobs: one revoked by a hand-written record whose signal is no signal
    # name Celery takes, one revoked by `galley revoke --terminate`
    put("job-a", {"revoked_at": "", "terminate": True, "signal": signal})
    put("job-b", core.Record("job-b", "", terminate=True, signal="SIGTERM").body())
    pool, jobs = Pool(), [Running("job-a", 101), Running("job-b", 102)]
    # WHEN the worker refreshes and its event loop applies what it found
    for callback in refresh(jobs, pool):
        callback()  # on main: TypeError/AttributeError from celery.platforms.signum
    # THEN both are revoked, and each running job is stopped (a signal that is none as SIGTERM)
    assert {"job-a", "job-b"} <= set(worker_state.revoked)
    assert sorted(pool.signalled) == [(101, sent), (102, 15)]


def test_terminate_on_a_pool_that_cannot_signal_does_not_stop_the_event_loop(
    refresh: Callable[[list[Any], Pool], list[Any]], caplog: pytest.LogCaptureFixture
) -> None:
    # GIVEN a worker whose pool cannot signal a job (`-P threads`) running a job revoked
    # with terminate
    put("job-a", core.Record("job-a", "", terminate=True, signal="SIGTERM").body())
    # WHEN the worker refreshes and its event loop applies what it found
    jobs = [Running("job-a", 101)]
    with caplog.at_level(logging.WARNING):
        for callback in refresh(jobs, Pool(can_signal=False)):
            callback()  # on main: NotImplementedError out of the event loop
    # THEN the job is revoked (it will not run again), and the log says it was not stopped
    assert "job-a" in worker_state.revoked
    said = [r.getMessage() for r in caplog.records]
    assert any("job-a" in line and "not stopped" in line for line in said), said


def test_terminate_after_a_plain_revoke_of_a_running_job_stops_it(
    refresh: Callable[[list[Any], Pool], list[Any]],
) -> None:
    # GIVEN a running job revoked without terminate, which a refresh of its worker has read
    # (`galley revoke ID`: "it is STARTED and will finish (terminate stops it)")
    s3 = boto3.client("s3", region_name="us-east-1")
    core.record(s3, BUCKET, [core.Record("job-a", "1", terminate=False)])
    pool, jobs = Pool(), [Running("job-a", 101)]
    for callback in refresh(jobs, pool):
        callback()
    assert "job-a" in worker_state.revoked and pool.signalled == []
    # WHEN it is revoked again, with terminate (`galley revoke --terminate ID`), and the
    # worker refreshes
    core.record(s3, BUCKET, [core.Record("job-a", "2", terminate=True, signal="SIGKILL")])
    for callback in refresh(jobs, pool):
        callback()
    # THEN its process gets the signal (on main: nothing; the id was no new revocation)
    assert pool.signalled == [(101, 9)]
