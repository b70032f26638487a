"""Revoking on a Galley app: a record in S3 and the REVOKED state at once, never over SUCCESS."""

from __future__ import annotations

import json
from typing import Any

import pytest
from celery import states

from runner.core import revocations
from runner.core.settings import WorkerSettings
from runner.errors import RevokeError
from runner.runtime.app import create_app
from tests.unit.runtime.s3_results import BUCKET

SETTINGS = WorkerSettings(
    queue_url="https://sqs.us-east-1.amazonaws.com/123456789012/galley-jobs",
    results_bucket=BUCKET,
)
JOB = "6f1c0d9e-1111-4c55-9f7e-0d9a3c1b2e77"


@pytest.fixture
def app(s3: Any) -> Any:
    celery = create_app(SETTINGS)
    yield celery
    celery.close()


def revoked_ids(s3: Any) -> set[str]:
    """The ids a worker reading the bucket would find revoked."""
    return set(revocations.Watch(s3, BUCKET).refresh().added)


def test_async_result_revoke_records_it_and_says_revoked_at_once(app: Any, s3: Any) -> None:
    # GIVEN a job no worker has seen (no result yet)
    # WHEN it is revoked the Celery way
    app.AsyncResult(JOB).revoke()
    # THEN its state is REVOKED before any worker saw it, and the revocation is in S3
    assert app.AsyncResult(JOB).state == states.REVOKED
    assert revoked_ids(s3) == {JOB}
    stored = json.loads(s3.get_object(Bucket=BUCKET, Key=f"revoked/{JOB}")["Body"].read())
    assert stored["terminate"] is False


def test_control_revoke_takes_a_list_and_terminate(app: Any, s3: Any) -> None:
    other = JOB.replace("1111", "2222")
    outcomes = app.control.revoke([JOB, other], terminate=True, signal="SIGKILL")
    assert [o.task_id for o in outcomes] == [JOB, other]
    assert revoked_ids(s3) == {JOB, other}
    record = revocations.read(s3, BUCKET, other)
    assert record is not None and record.terminate and record.signal == "SIGKILL"


def test_a_success_is_never_revoked(app: Any, s3: Any) -> None:
    # GIVEN a job that succeeded
    app.backend.store_result(JOB, 42, states.SUCCESS)
    # WHEN it is revoked
    (outcome,) = app.control.revoke(JOB)
    # THEN it keeps its result, and the answer says it had finished
    assert app.AsyncResult(JOB).state == states.SUCCESS
    assert app.AsyncResult(JOB).result == 42
    assert "already succeeded" in outcome.line
    assert revoked_ids(s3) == set()


def test_a_failed_job_keeps_its_failure_and_is_revoked_for_a_redrive(app: Any, s3: Any) -> None:
    app.backend.mark_as_failure(JOB, ValueError("boom"))
    (outcome,) = app.control.revoke(JOB)
    assert app.AsyncResult(JOB).state == states.FAILURE
    assert revoked_ids(s3) == {JOB}
    assert "redrive" in outcome.line


def test_revoking_twice_says_so(app: Any) -> None:
    app.control.revoke(JOB)
    (again,) = app.control.revoke(JOB)
    assert "already revoked" in again.line


@pytest.mark.parametrize(
    "bad", ["", " ", "a b", "x" * 300, "job\n1", "\udc80", "a\u200bb", 42, None]
)
def test_a_bad_id_is_refused_before_anything_is_written(app: Any, s3: Any, bad: Any) -> None:
    with pytest.raises(RevokeError, match="not a task id"):
        app.control.revoke([JOB, bad])
    assert revoked_ids(s3) == set()
    assert app.AsyncResult(JOB).state == states.PENDING


def test_a_bad_signal_is_refused(app: Any, s3: Any) -> None:
    with pytest.raises(RevokeError, match="signal"):
        app.control.revoke(JOB, terminate=True, signal="SIGNOPE")
    assert revoked_ids(s3) == set()


@pytest.mark.parametrize(
    ("lands", "kept", "said"),
    [
        (lambda b: b.mark_as_done(JOB, 42), states.SUCCESS, "already succeeded"),
        (lambda b: b.mark_as_failure(JOB, ValueError("boom")), states.FAILURE, "had failed"),
        (lambda b: b.mark_as_started(JOB, pid=1), states.STARTED, "will finish"),
    ],
    ids=["SUCCESS", "FAILURE", "STARTED"],
)
def test_a_state_written_between_the_revokes_read_and_its_write_is_kept(
    app: Any, lands: Any, kept: str, said: str
) -> None:
    # GIVEN a queued job (nothing stored) whose worker writes its state just as it is revoked:
    # after the revoke read the state, before its REVOKED reaches S3
    worker = create_app(SETTINGS)
    landed: list[str] = []

    def worker_writes_first(params: dict[str, Any], **_: Any) -> None:
        if not landed and "celery-task-meta-" in params.get("Key", ""):
            landed.append(kept)
            lands(worker.backend)

    app.backend.client.meta.events.register(
        "before-parameter-build.s3.PutObject", worker_writes_first
    )
    # WHEN it is revoked
    (outcome,) = app.control.revoke(JOB)
    worker.close()
    # THEN the worker's state stays, and the answer says what the job is
    assert landed == [kept]
    assert app.AsyncResult(JOB).state == kept
    assert said in outcome.line, outcome.line
