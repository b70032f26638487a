"""runner.runtime.idempotency on in-process moto (S3 only): the claim/complete/release state
machine, lease takeover, races between threads, key functions and headers, and a real Celery
task."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from runner.errors import (
    IdempotencyError,
    IdempotencyKeyError,
    InProgressElsewhere,
    LeaseLost,
    ResultNotJSON,
)
from runner.local import motoserver
from runner.runtime import idempotency
from runner.runtime.idempotency import Outcome

BUCKET = "idem-unit"
TASK = "tests.idem"
LEASE = 30.0
T0 = 1_000_000.0


@pytest.fixture
def s3(moto_in_process: None) -> Any:
    motoserver.serialize_s3_objects()  # conditional writes atomic, as S3's are
    client = boto3.client("s3", region_name="us-east-1", config=Config(max_pool_connections=32))
    client.create_bucket(Bucket=BUCKET)
    return client


def claim(s3: Any, task_id: str, now: float = T0, key: str = "k1") -> idempotency.Claim:
    return idempotency.claim(s3, BUCKET, TASK, key, task_id, LEASE, now)


def stored(s3: Any, key: str = "k1") -> dict[str, Any]:
    obj = s3.get_object(Bucket=BUCKET, Key=idempotency.record_key(TASK, key))
    return dict(json.loads(obj["Body"].read()))


def exists(s3: Any, key: str = "k1") -> bool:
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix=idempotency.record_key(TASK, key))
    return int(listed.get("KeyCount", 0)) > 0


# --- keys -----------------------------------------------------------------------------------


def test_key_hash_is_sha256_of_utf8_and_stable() -> None:
    assert (
        idempotency.key_hash("order-1234")
        == "71983129e5088fcbbb2be5a2e186253aa3ee915c173f42553285baf7100b0059"
    )
    assert (
        idempotency.key_hash("größe/ключ")
        == "5099a8fe6f4b5296f19aab6e67e13ac08c8672132ddc56d1a60a8a9fd50da0cd"
    )
    assert idempotency.record_key("thumbs.make", "order-1234") == (
        "idempotency/thumbs.make/71983129e5088fcbbb2be5a2e186253aa3ee915c173f42553285baf7100b0059"
    )


# --- the state machine ------------------------------------------------------------------------


def test_first_claim_acquires_and_writes_a_running_record(s3: Any) -> None:
    held = claim(s3, "task-a")
    assert held.outcome is Outcome.ACQUIRED and not held.took_over
    record = stored(s3)
    assert record["status"] == "running"
    assert record["task_id"] == "task-a"
    assert record["token"] == held.token
    assert (record["started_at"], record["expires_at"]) == (T0, T0 + LEASE)


def test_a_live_lease_makes_the_next_claim_wait(s3: Any) -> None:
    claim(s3, "task-a")
    other = claim(s3, "task-b", now=T0 + LEASE - 1)
    assert other.outcome is Outcome.RUNNING
    assert (other.owner_task_id, other.expires_at) == ("task-a", T0 + LEASE)
    assert stored(s3)["task_id"] == "task-a"


def test_complete_stores_the_result_and_later_claims_get_it(s3: Any) -> None:
    held = claim(s3, "task-a")
    result = {"n": 3, "at": datetime(2026, 1, 2, tzinfo=UTC), "price": Decimal("1.10")}
    idempotency.complete(s3, held, result, now=T0 + 5)
    assert stored(s3)["status"] == "done"
    # even long after the lease: a done record never expires (only the lifecycle rule removes it)
    later = claim(s3, "task-b", now=T0 + 10 * LEASE)
    assert later.outcome is Outcome.DONE
    assert later.owner_task_id == "task-a"
    assert idempotency.decode_result(later.result) == result


def test_release_lets_the_next_claim_acquire(s3: Any) -> None:
    held = claim(s3, "task-a")
    assert idempotency.release(s3, held) is True
    assert not exists(s3)
    assert claim(s3, "task-b", now=T0 + 1).outcome is Outcome.ACQUIRED


def test_an_expired_lease_is_taken_over_and_the_old_holder_cannot_touch_it(s3: Any) -> None:
    crashed = claim(s3, "task-a")
    taker = claim(s3, "task-b", now=T0 + LEASE + 0.5)
    assert taker.outcome is Outcome.ACQUIRED and taker.took_over
    assert stored(s3)["task_id"] == "task-b"
    # the old holder comes back: it can neither complete nor release the taker's record
    with pytest.raises(LeaseLost, match="taken over or removed"):
        idempotency.complete(s3, crashed, "late", now=T0 + LEASE + 1)
    assert idempotency.release(s3, crashed) is False
    assert stored(s3)["token"] == taker.token
    idempotency.complete(s3, taker, "mine", now=T0 + LEASE + 2)
    assert idempotency.decode_result(claim(s3, "task-c", now=T0 + 99).result) == "mine"


class StaleFirstRead:
    """An S3 client whose first GetObject returns what was there before ``meanwhile`` ran:
    a taker that read the expired record just before another taker replaced it."""

    def __init__(self, s3: Any, meanwhile: Callable[[], None]) -> None:
        self._s3 = s3
        self._meanwhile: Callable[[], None] | None = meanwhile
        self.guarded_puts: list[str] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._s3, name)

    def put_object(self, **kwargs: Any) -> Any:
        if "IfMatch" in kwargs:
            self.guarded_puts.append(kwargs["IfMatch"])
        return self._s3.put_object(**kwargs)

    def get_object(self, **kwargs: Any) -> Any:
        response = self._s3.get_object(**kwargs)
        if self._meanwhile is not None:
            meanwhile, self._meanwhile = self._meanwhile, None
            body = response["Body"].read()
            meanwhile()
            response["Body"] = SimpleNamespace(read=lambda: body)
        return response


def test_of_two_takers_reading_the_same_expired_record_only_one_wins(s3: Any) -> None:
    crashed = claim(s3, "crashed")
    now = T0 + LEASE + 1
    first: list[idempotency.Claim] = []
    slow = StaleFirstRead(s3, lambda: first.append(claim(s3, "taker-1", now=now)))
    second = idempotency.claim(slow, BUCKET, TASK, "k1", "taker-2", LEASE, now)
    assert first[0].outcome is Outcome.ACQUIRED and first[0].took_over
    # taker-2 saw the expired record too, but its If-Match on the old ETag failed
    assert slow.guarded_puts == [crashed.etag]
    assert second.outcome is Outcome.RUNNING
    assert second.owner_task_id == "taker-1"


def race(n: int, attempt: Callable[[int], idempotency.Claim]) -> list[idempotency.Claim]:
    barrier = threading.Barrier(n)
    claims: list[idempotency.Claim] = []
    errors: list[BaseException] = []

    def go(i: int) -> None:
        barrier.wait()
        try:
            claims.append(attempt(i))
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=go, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    return claims


def test_concurrent_claims_exactly_one_acquires(s3: Any) -> None:
    claims = race(12, lambda i: claim(s3, f"task-{i}", key="hot"))
    winners = [c for c in claims if c.outcome is Outcome.ACQUIRED]
    assert len(winners) == 1
    losers = [c for c in claims if c.outcome is Outcome.RUNNING]
    assert len(losers) == 11
    assert {c.owner_task_id for c in losers} == {winners[0].owner_task_id}


def test_concurrent_takeovers_of_an_expired_lease_exactly_one_wins(s3: Any) -> None:
    claim(s3, "crashed", key="hot")
    after = T0 + LEASE + 1
    claims = race(12, lambda i: claim(s3, f"task-{i}", now=after, key="hot"))
    winners = [c for c in claims if c.outcome is Outcome.ACQUIRED]
    assert len(winners) == 1 and winners[0].took_over
    assert sum(c.outcome is Outcome.RUNNING for c in claims) == 11
    assert stored(s3, "hot")["token"] == winners[0].token


class FailingPut:
    """An S3 client whose next PutObject misbehaves once, as ``fail`` says."""

    def __init__(self, s3: Any, fail: Callable[[Any, dict[str, Any]], None]) -> None:
        self._s3 = s3
        self._fail: Callable[[Any, dict[str, Any]], None] | None = fail
        self.puts = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._s3, name)

    def put_object(self, **kwargs: Any) -> Any:
        self.puts += 1
        if self._fail is not None:
            fail, self._fail = self._fail, None
            fail(self._s3, kwargs)
        return self._s3.put_object(**kwargs)


def client_error(code: str, status: int) -> ClientError:
    response: Any = {"Error": {"Code": code, "Message": code}, "ResponseMetadata": {}}
    response["ResponseMetadata"]["HTTPStatusCode"] = status
    return ClientError(response, "PutObject")


def test_our_own_write_is_recognised_when_its_response_was_lost(s3: Any) -> None:
    """boto3 retried a PUT that had succeeded: the retry gets 412 on our own record."""

    def succeed_then_412(real: Any, kwargs: dict[str, Any]) -> None:
        real.put_object(**kwargs)
        raise client_error("PreconditionFailed", 412)

    held = idempotency.claim(FailingPut(s3, succeed_then_412), BUCKET, TASK, "k1", "a", LEASE, T0)
    assert held.outcome is Outcome.ACQUIRED
    assert stored(s3)["token"] == held.token
    idempotency.complete(s3, held, 1, now=T0 + 1)  # the ETag it holds is the record's


def test_a_conditional_write_conflict_is_retried(s3: Any) -> None:
    def conflict(real: Any, kwargs: dict[str, Any]) -> None:
        raise client_error("ConditionalRequestConflict", 409)

    flaky = FailingPut(s3, conflict)
    held = idempotency.claim(flaky, BUCKET, TASK, "k1", "a", LEASE, T0)
    assert held.outcome is Outcome.ACQUIRED
    assert flaky.puts == 2


def test_a_foreign_object_at_the_record_key_is_a_clear_error(s3: Any) -> None:
    s3.put_object(Bucket=BUCKET, Key=idempotency.record_key(TASK, "k1"), Body=b"not json")
    with pytest.raises(IdempotencyError, match="not an idempotency record.*delete it"):
        claim(s3, "task-a")


def test_only_a_held_claim_can_be_completed_or_released(s3: Any) -> None:
    claim(s3, "task-a")
    waiting = claim(s3, "task-b")
    with pytest.raises(ValueError, match="not held by us"):
        idempotency.complete(s3, waiting, 1, now=T0)
    with pytest.raises(ValueError, match="not held by us"):
        idempotency.release(s3, waiting)


# --- once() -----------------------------------------------------------------------------------


class Effect:
    """A task body: counts its runs and returns something unique to each run."""

    def __init__(self) -> None:
        self.runs = 0

    def __call__(self) -> dict[str, int]:
        self.runs += 1
        return {"run": self.runs}


def once(s3: Any, run: Callable[[], Any], task_id: str, clock: float = T0, **kw: Any) -> Any:
    return idempotency.once(
        s3, BUCKET, TASK, "k1", task_id, run, lease_seconds=LEASE, clock=lambda: clock, **kw
    )


def test_once_runs_the_body_once_and_the_second_caller_gets_the_first_result(s3: Any) -> None:
    effect = Effect()
    assert once(s3, effect, "task-a") == {"run": 1}
    assert once(s3, effect, "task-b", clock=T0 + 1) == {"run": 1}
    assert effect.runs == 1


def test_once_while_another_run_holds_the_lease_says_when_to_retry(s3: Any) -> None:
    claim(s3, "task-a")  # another worker is running it
    effect = Effect()
    with pytest.raises(InProgressElsewhere) as raised:
        once(s3, effect, "task-b", clock=T0 + 25, retry_seconds=10)
    assert effect.runs == 0
    assert raised.value.owner_task_id == "task-a"
    assert raised.value.retry_after == 5  # the lease ends sooner than the retry cap
    with pytest.raises(InProgressElsewhere) as raised:
        once(s3, effect, "task-b", clock=T0 + 1, retry_seconds=10)
    assert raised.value.retry_after == 10
    assert "running in task task-a" in str(raised.value)


def test_a_failed_run_releases_the_key_and_the_next_one_runs(s3: Any) -> None:
    def boom() -> None:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        once(s3, boom, "task-a")
    assert not exists(s3)
    effect = Effect()
    assert once(s3, effect, "task-a", clock=T0 + 1) == {"run": 1}
    assert effect.runs == 1


def test_a_result_that_is_not_json_fails_and_releases(s3: Any) -> None:
    with pytest.raises(ResultNotJSON, match="must be JSON"):
        once(s3, object, "task-a")
    assert not exists(s3)


def test_a_crashed_run_is_retried_after_its_lease(s3: Any) -> None:
    claim(s3, "crashed")  # took the lease, never completed
    effect = Effect()
    assert once(s3, effect, "task-b", clock=T0 + LEASE + 1) == {"run": 1}
    assert stored(s3)["status"] == "done"


def test_a_run_wrapped_twice_does_not_wait_on_itself(s3: Any) -> None:
    effect = Effect()
    assert once(s3, lambda: once(s3, effect, "task-a"), "task-a") == {"run": 1}
    assert effect.runs == 1


# --- run_once(): keys from the task, with fake and real Celery tasks ---------------------------


class FakeTask:
    name = TASK
    idempotency_key: Any = None

    def __init__(self, **request: Any) -> None:
        defaults = {"id": "tid-1", "called_directly": False, "headers": None, "timelimit": None}
        self.request = SimpleNamespace(**{**defaults, **request})
        self.app = SimpleNamespace(conf={"s3_bucket": BUCKET, "task_time_limit": 30})
        self.time_limit = None


class KeyedTask(FakeTask):
    idempotency_key = lambda bucket, key, **_: f"{bucket}/{key}"  # noqa: E731 - as users write it


def run_once(s3: Any, task: Any, args: list[Any], kwargs: dict[str, Any], run: Any) -> Any:
    return idempotency.run_once(task, args, kwargs, run, s3=s3)


def test_a_key_function_declared_as_a_lambda_gets_the_task_arguments(s3: Any) -> None:
    effect = Effect()
    args = ["b1", "photo.jpg"]
    assert run_once(s3, KeyedTask(id="t1"), args, {"size": 3}, effect) == {"run": 1}
    assert run_once(s3, KeyedTask(id="t2"), args, {"size": 4}, effect) == {"run": 1}
    assert effect.runs == 1
    assert exists(s3, "b1/photo.jpg")


def test_an_explicit_header_wins_over_the_key_function(s3: Any) -> None:
    task = KeyedTask(galley_idempotency_key="order-9")
    assert idempotency.idempotency_key_for(task, ["b1", "x"], {}) == "order-9"
    eager = KeyedTask(headers={"galley_idempotency_key": "order-10"})  # task.apply(headers=...)
    assert idempotency.idempotency_key_for(eager, ["b1", "x"], {}) == "order-10"


def test_without_a_key_or_when_called_directly_the_body_just_runs(s3: Any) -> None:
    effect = Effect()
    run_once(s3, FakeTask(), [1], {}, effect)
    run_once(s3, FakeTask(), [1], {}, effect)
    run_once(s3, KeyedTask(called_directly=True), ["b", "k"], {}, effect)
    assert effect.runs == 3
    assert s3.list_objects_v2(Bucket=BUCKET).get("KeyCount", 0) == 0


class RaisingKey(FakeTask):
    idempotency_key = lambda order: {"a": 1}[order]  # noqa: E731


class IntKey(FakeTask):
    idempotency_key = lambda order: 5  # noqa: E731


class EmptyKey(FakeTask):
    idempotency_key = lambda order: ""  # noqa: E731


class NotCallable(FakeTask):
    idempotency_key = "order"


@pytest.mark.parametrize(
    ("task", "message"),
    [
        (RaisingKey(), f"{TASK}: its idempotency_key function raised KeyError: 'zz'"),
        (IntKey(), f"{TASK}: its idempotency_key function gave int 5; a key must be a str"),
        (EmptyKey(), f"{TASK}: its idempotency_key function gave an empty key"),
        (NotCallable(), "idempotency_key must be a callable taking the task's arguments, got str"),
        (FakeTask(galley_idempotency_key=7), "the galley_idempotency_key header gave int 7"),
    ],
)
def test_bad_keys_are_clear_errors(s3: Any, task: Any, message: str) -> None:
    effect = Effect()
    with pytest.raises(IdempotencyKeyError) as raised:
        run_once(s3, task, ["zz"], {}, effect)
    assert message in str(raised.value)
    assert effect.runs == 0


@pytest.mark.parametrize(
    ("request_limit", "task_limit", "lease", "expected"),
    [
        ([20, None], None, None, 80.0),  # the message's own time limit
        (None, 40, None, 100.0),  # the task's time_limit
        (None, None, None, 90.0),  # the app's task_time_limit (30) + 60
        (None, None, 7, 7.0),  # idempotency_lease set on the task
    ],
)
def test_the_lease_is_the_time_limit_plus_a_margin(
    request_limit: Any, task_limit: Any, lease: Any, expected: float
) -> None:
    task = FakeTask(timelimit=request_limit)
    task.time_limit = task_limit
    task.idempotency_lease = lease  # type: ignore[attr-defined]
    assert idempotency.lease_seconds_for(task) == expected
    task.app.conf = {}
    if request_limit is None and task_limit is None and lease is None:
        assert idempotency.lease_seconds_for(task) == idempotency.FALLBACK_LEASE_SECONDS


def test_a_real_celery_task_with_a_key_option_and_an_eager_header(s3: Any) -> None:
    """Celery turns the task option into a class attribute and ``apply(headers=...)`` into
    ``request.headers``: run_once reads both as a worker would."""
    from celery import Celery, Task

    celery = Celery("idem-unit", set_as_current=False)
    celery.conf.s3_bucket = BUCKET

    class Once(Task):
        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            def body() -> Any:
                return super(Once, self).__call__(*args, **kwargs)

            return idempotency.run_once(self, args, kwargs, body, s3=s3)

    runs: list[str] = []

    @celery.task(base=Once, name="idem.unit", idempotency_key=lambda order, **_: f"o-{order}")
    def handle(order: int, note: str = "") -> str:
        runs.append(note)
        return f"handled {order} ({note})"

    assert handle.apply(args=[1], kwargs={"note": "first"}).get() == "handled 1 (first)"
    assert handle.apply(args=[1], kwargs={"note": "again"}).get() == "handled 1 (first)"
    headers = {"galley_idempotency_key": "o-1"}  # same key as the function gives for order 1
    assert handle.apply(args=[2], headers=headers).get() == "handled 1 (first)"
    assert handle.apply(args=[2]).get() == "handled 2 ()"
    assert handle(3) == "handled 3 ()"  # a direct call runs plainly
    assert runs == ["first", "", ""]
    assert exists_for("idem.unit", "o-1", s3) and exists_for("idem.unit", "o-2", s3)
    assert not exists_for("idem.unit", "o-3", s3)


def exists_for(task_name: str, key: str, s3: Any) -> bool:
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix=idempotency.record_key(task_name, key))
    return int(listed.get("KeyCount", 0)) > 0


# --- callbacks and chains: a duplicate does not dispatch them again ---------------------------


def test_marking_callbacks_sent_happens_once_and_only_on_a_done_record(s3: Any) -> None:
    # GIVEN a running record
    held = claim(s3, "task-a")
    # WHEN / THEN it cannot be marked until done; once done, the first mark wins
    assert idempotency.mark_callbacks_sent(s3, held, "task-a") is False
    idempotency.complete(s3, held, {"n": 1}, now=T0 + 1)
    assert idempotency.mark_callbacks_sent(s3, held, "task-a") is True
    assert idempotency.mark_callbacks_sent(s3, held, "task-b") is False
    record = stored(s3)
    assert (record["status"], record[idempotency.CALLBACKS_SENT_FIELD]) == ("done", "task-a")
    # AND the marked record still deduplicates, with the same result
    later = claim(s3, "task-c", now=T0 + 2)
    assert (later.outcome, later.result) == (Outcome.DONE, {"n": 1})
    assert later.record[idempotency.CALLBACKS_SENT_FIELD] == "task-a"


def test_marking_a_record_that_is_gone_does_nothing(s3: Any) -> None:
    held = claim(s3, "task-a")
    idempotency.release(s3, held)
    assert idempotency.mark_callbacks_sent(s3, held, "task-a") is False
    assert not exists(s3)


@pytest.fixture
def eager(s3: Any, monkeypatch: pytest.MonkeyPatch) -> SimpleNamespace:
    """A Celery app running Galley's task class eagerly: ``apply(link=...)`` goes through
    Celery's tracer, which dispatches the link (eagerly) after the body, as a worker does.
    ``runs`` lists the keyed body's runs, ``followups`` the link's."""
    from celery import Celery

    from runner.runtime.app import GalleyTask

    monkeypatch.setattr(idempotency.task, "_s3", lambda: s3)
    celery = Celery("idem-callbacks", set_as_current=False)
    celery.conf.update(s3_bucket=BUCKET, task_always_eager=True, task_time_limit=30)
    runs: list[str] = []
    followups: list[str] = []
    keyed = {
        "base": GalleyTask,
        "shared": False,
        "idempotency_key": lambda order, **_: f"o-{order}",
    }

    @celery.task(name=TASK, **keyed)
    def charge(order: int, note: str = "") -> str:
        runs.append(note)
        return f"charged {order} ({note})"

    @celery.task(base=GalleyTask, shared=False, name="tests.receipt")
    def receipt(charged: str) -> None:
        followups.append(charged)

    return SimpleNamespace(tasks=celery.tasks, runs=runs, followups=followups)


def test_only_the_first_run_dispatches_its_link(eager: Any, s3: Any) -> None:
    charge, receipt = eager.tasks[TASK], eager.tasks["tests.receipt"]
    # GIVEN a keyed run with a link: the link runs after it
    first = charge.apply(args=[1], kwargs={"note": "first"}, link=receipt.s())
    assert first.get() == "charged 1 (first)"
    assert eager.followups == ["charged 1 (first)"]
    assert stored(s3, "o-1")[idempotency.CALLBACKS_SENT_FIELD] == first.id
    # WHEN the same message comes again (same task id) and the same key is enqueued again
    again = charge.apply(args=[1], kwargs={"note": "again"}, link=receipt.s(), task_id=first.id)
    other = charge.apply(args=[1], kwargs={"note": "other"}, link=receipt.s())
    # THEN both get the first result; neither ran the body nor dispatched its link
    assert (again.get(), other.get()) == ("charged 1 (first)", "charged 1 (first)")
    assert (again.state, other.state) == ("SUCCESS", "SUCCESS")
    assert eager.runs == ["first"]
    assert eager.followups == ["charged 1 (first)"]
    # AND a task without a key runs its link every time, writing no record
    receipt.apply(args=["x"], link=receipt.s())
    receipt.apply(args=["x"], link=receipt.s())
    assert eager.followups.count("x") == 2 and eager.followups.count(None) == 2
    assert not exists_for("tests.receipt", "x", s3)


def test_a_duplicate_dispatches_callbacks_that_never_went_out(eager: Any, s3: Any) -> None:
    charge, receipt = eager.tasks[TASK], eager.tasks["tests.receipt"]
    # GIVEN a run that recorded its result and died before Celery dispatched its callbacks
    crashed = idempotency.claim(s3, BUCKET, TASK, "o-7", "crashed", LEASE, T0)
    idempotency.complete(s3, crashed, "charged 7 (crashed)", now=T0 + 1)
    # WHEN a duplicate with a link arrives
    duplicate = charge.apply(args=[7], link=receipt.s())
    # THEN it returns the stored result without running, and dispatches its link: once
    assert duplicate.get() == "charged 7 (crashed)"
    assert eager.runs == []
    assert eager.followups == ["charged 7 (crashed)"]
    assert stored(s3, "o-7")[idempotency.CALLBACKS_SENT_FIELD] == duplicate.id
    charge.apply(args=[7], link=receipt.s())
    assert eager.followups == ["charged 7 (crashed)"]


def test_a_record_that_cannot_be_marked_costs_a_second_dispatch_not_the_task(
    eager: Any, s3: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    charge, receipt = eager.tasks[TASK], eager.tasks["tests.receipt"]

    def unreachable(*_: Any, **__: Any) -> bool:
        raise IdempotencyError("cannot write s3://...: 503")

    # GIVEN S3 refuses the note that the callbacks went out
    monkeypatch.setattr(idempotency.task, "mark_callbacks_sent", unreachable)
    # WHEN the first run and a duplicate run with links
    first = charge.apply(args=[2], link=receipt.s())
    again = charge.apply(args=[2], link=receipt.s())
    # THEN both succeed with the first result, the body ran once, and the link ran twice
    # (at least once, never lost), with a warning saying so
    assert (first.state, again.get()) == ("SUCCESS", first.get())
    assert eager.runs == [""]
    assert eager.followups == [first.get(), first.get()]
    assert "a duplicate may dispatch them again" in caplog.text
