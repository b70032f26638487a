"""runner.runtime.idempotency on a moto server: a task's effect runs once per key, and every
caller gets the first run's result — through Celery's tracer (eager) and from racing threads."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from celery import Task

from runner.core import aws
from runner.errors import InProgressElsewhere
from runner.local import embedded
from runner.runtime import idempotency
from tests import support

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def fresh_client() -> Iterator[None]:
    """run_once's default S3 client is cached per process: built from this test's environment."""
    aws.clear()
    yield
    aws.clear()


def effects(stack: embedded.LocalResources, job: str) -> list[str]:
    _, s3 = support.clients(stack)
    listed = s3.list_objects_v2(Bucket=stack.bucket, Prefix=f"effects/{job}/")
    return [item["Key"].rsplit("/", 1)[-1] for item in listed.get("Contents", [])]


def make_effect(bucket: str, job: str) -> dict[str, str]:
    """The effect under test: a uniquely named marker object; the result names it."""
    run = uuid.uuid4().hex
    aws.client("s3").put_object(Bucket=bucket, Key=f"effects/{job}/{run}", Body=b"")
    return {"job": job, "run": run}


def test_run_once_twice_with_the_same_key_runs_the_effect_once(
    attach: embedded.LocalResources, app: Any
) -> None:
    """Two task calls (two task ids) with one key, through Celery's tracer, default client and
    bucket (the app's results bucket): one marker, and the second call returns the first's."""

    class Once(Task):
        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            def body() -> Any:
                return super(Once, self).__call__(*args, **kwargs)

            return idempotency.run_once(self, args, kwargs, body)

    @app.task(base=Once, name="idem.integration", idempotency_key=lambda bucket, job: job)
    def effect(bucket: str, job: str) -> dict[str, str]:
        return make_effect(bucket, job)

    job = uuid.uuid4().hex
    first = effect.apply(args=[attach.bucket, job])
    second = effect.apply(args=[attach.bucket, job])
    assert first.id != second.id
    assert second.get() == first.get()
    assert effects(attach, job) == [first.get()["run"]]

    _, s3 = support.clients(attach)
    key = idempotency.record_key("idem.integration", job)
    record = json.loads(s3.get_object(Bucket=attach.bucket, Key=key)["Body"].read())
    assert record["status"] == "done"
    assert record["task_id"] == first.id
    assert record["result"] == first.get()


def test_racing_callers_see_one_effect_and_the_same_result(stack: embedded.LocalResources) -> None:
    """Eight callers at once, each retrying while another holds the lease (as a task retries)."""
    _, s3 = support.clients(stack)
    job = uuid.uuid4().hex
    results: list[Any] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def caller(i: int) -> None:
        barrier.wait()
        deadline = time.monotonic() + 30
        while True:
            try:
                results.append(
                    idempotency.once(
                        s3,
                        stack.bucket,
                        "idem.race",
                        job,
                        f"task-{i}",
                        lambda: make_effect_with(s3, stack.bucket, job),
                        lease_seconds=60,
                    )
                )
                return
            except InProgressElsewhere:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)  # a task would retry with a countdown
            except BaseException as error:
                errors.append(error)
                return

    threads = [threading.Thread(target=caller, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert len(results) == 8
    assert len({json.dumps(r, sort_keys=True) for r in results}) == 1
    assert effects(stack, job) == [results[0]["run"]]


def make_effect_with(s3: Any, bucket: str, job: str) -> dict[str, str]:
    run = uuid.uuid4().hex
    s3.put_object(Bucket=bucket, Key=f"effects/{job}/{run}", Body=b"")
    time.sleep(0.3)  # long enough that the other callers find the lease held
    return {"job": job, "run": run}


def test_a_crashed_holder_is_taken_over_after_its_lease(stack: embedded.LocalResources) -> None:
    _, s3 = support.clients(stack)
    job = uuid.uuid4().hex
    crashed = idempotency.claim(s3, stack.bucket, "idem.crash", job, "dead", 30, time.time())
    assert crashed.outcome is idempotency.Outcome.ACQUIRED

    def attempt(later: float = 0) -> Any:
        return idempotency.once(
            s3,
            stack.bucket,
            "idem.crash",
            job,
            "next",
            lambda: make_effect_with(s3, stack.bucket, job),
            lease_seconds=60,
            clock=lambda: time.time() + later,
        )

    with pytest.raises(InProgressElsewhere) as waiting:
        attempt()
    assert waiting.value.owner_task_id == "dead"
    assert effects(stack, job) == []
    # 31 s later by the clock (not by sleeping): the lease has expired, the next run takes over
    result = attempt(later=31)
    assert effects(stack, job) == [result["run"]]
    assert idempotency.release(s3, crashed) is False  # the crashed holder cannot undo it
    assert attempt(later=32) == result
