"""runner.runtime.backend on in-process moto (S3 only): requests per result write and read,
the SUCCESS guard, polling with backoff, and objects a stock Celery S3 backend reads."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import botocore
import pytest
from celery import Celery, states
from celery.exceptions import TimeoutError as CeleryTimeoutError
from kombu.utils.encoding import bytes_to_str

from runner.core import aws
from runner.runtime import backend as galley_backend
from tests.unit.runtime.s3_results import (
    BUCKET,
    GALLEY,
    PREFIX,
    STOCK,
    make_app,
    record_calls,
    request,
    stored,
)

# --- writes ---------------------------------------------------------------------------------


def test_a_success_is_one_put_and_no_read(s3: Any) -> None:
    # GIVEN Galley's backend
    app = make_app()
    calls = record_calls(app)
    # WHEN a task's SUCCESS is stored
    app.backend.mark_as_done("t-ok", {"n": 1}, request=request("t-ok"))
    # THEN one PutObject, nothing read before it
    assert calls == ["PutObject"]
    assert stored(s3, "t-ok")["status"] == states.SUCCESS


@pytest.mark.parametrize(
    "store",
    [
        lambda b, i: b.mark_as_started(i, pid=1),
        lambda b, i: b.mark_as_retry(i, ValueError("again"), request=request(i)),
        lambda b, i: b.mark_as_failure(i, ValueError("late"), request=request(i)),
        lambda b, i: b.mark_as_revoked(i, "expired", request=request(i)),
        lambda b, i: b.store_result(i, {"done": 2}, "PROGRESS"),
    ],
    ids=["STARTED", "RETRY", "FAILURE", "REVOKED", "PROGRESS"],
)
def test_no_other_state_overwrites_a_stored_success(
    s3: Any, store: Callable[[Any, str], None]
) -> None:
    # GIVEN a job whose SUCCESS is stored (a duplicate delivery still runs)
    app = make_app()
    app.backend.mark_as_done("t-dup", 42, request=request("t-dup"))
    calls = record_calls(app)
    # WHEN the duplicate stores another state
    store(app.backend, "t-dup")
    # THEN the SUCCESS stays, found with one GetObject (no HEAD)
    assert stored(s3, "t-dup")["status"] == states.SUCCESS
    assert stored(s3, "t-dup")["result"] == 42
    assert calls == ["GetObject"]


def test_other_states_are_one_read_and_one_write(s3: Any) -> None:
    # GIVEN a job with nothing stored
    app = make_app()
    calls = record_calls(app)
    # WHEN it reports progress twice
    app.backend.store_result("t-prog", {"done": 1}, "PROGRESS")
    app.backend.store_result("t-prog", {"done": 2}, "PROGRESS")
    # THEN each write is one GetObject and one PutObject, and the last one wins
    assert calls == ["GetObject", "PutObject"] * 2
    assert stored(s3, "t-prog")["result"] == {"done": 2}


@pytest.mark.parametrize(
    "store",
    [
        lambda b: b.mark_as_failure("t-race", ValueError("dup"), request=request("t-race")),
        # a worker settling a revoked duplicate (Celery's Request.revoked, GalleyTask's check)
        lambda b: b.mark_as_revoked("t-race", "revoked", request=request("t-race")),
    ],
    ids=["FAILURE", "REVOKED"],
)
def test_a_success_written_between_the_read_and_the_write_is_kept(
    s3: Any, store: Callable[[Any], None]
) -> None:
    # GIVEN a duplicate's late write whose read finds nothing stored...
    app = make_app()
    other = make_app()
    client = app.backend._s3_resource.meta.client
    raced: list[str] = []

    def success_lands_first(**_: Any) -> None:
        if not raced:  # ...and the first run's SUCCESS lands just before its PUT
            raced.append("success")
            other.backend.mark_as_done("t-race", "first", request=request("t-race"))

    client.meta.events.register("before-call.s3.PutObject", success_lands_first)
    # WHEN the duplicate's state is written
    store(app.backend)
    # THEN the conditional PUT lost, and the SUCCESS stays
    assert raced == ["success"]
    assert stored(s3, "t-race")["status"] == states.SUCCESS
    assert stored(s3, "t-race")["result"] == "first"


# --- reads ----------------------------------------------------------------------------------


def test_a_read_is_one_get_and_a_missing_result_is_pending(s3: Any) -> None:
    app = make_app()
    app.backend.mark_as_done("t-read", [1, 2], request=request("t-read"))
    calls = record_calls(app)
    # WHEN a stored and a missing result are read
    assert app.AsyncResult("t-read").result == [1, 2]
    assert app.AsyncResult("t-none").state == states.PENDING
    # THEN each read is one GetObject (stock Celery: HeadObject + GetObject)
    assert calls == ["GetObject", "GetObject"]


def test_waiting_polls_with_backoff_in_the_calling_thread(
    s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a job that finishes after the 7th poll, and a clock that only moves when slept
    app = make_app()
    calls = record_calls(app)
    naps: list[float] = []
    clock = [0.0]
    threads_before = threading.active_count()

    def sleep(seconds: float) -> None:
        naps.append(round(seconds, 4))
        clock[0] += seconds
        assert threading.active_count() == threads_before  # no poller thread
        if len(naps) == 6:
            app.backend.mark_as_done("t-wait", "ok", request=request("t-wait"))

    monkeypatch.setattr(time, "sleep", sleep)
    monkeypatch.setattr(time, "monotonic", lambda: clock[0])
    # WHEN a client waits with Celery's default interval (0.5 s)
    assert app.AsyncResult("t-wait").get(timeout=60) == "ok"
    # THEN the pauses grow x1.5 up to 2 s, and each poll is one GetObject
    assert naps == [0.5, 0.75, 1.125, 1.6875, 2.0, 2.0]
    assert calls.count("GetObject") == 7 and calls.count("PutObject") == 1  # the job finishing
    assert "HeadObject" not in calls


def test_waiting_never_sleeps_past_the_timeout(s3: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    app = make_app()
    naps: list[float] = []
    clock = [0.0]

    def sleep(seconds: float) -> None:
        naps.append(round(seconds, 4))
        clock[0] += seconds

    monkeypatch.setattr(time, "sleep", sleep)
    monkeypatch.setattr(time, "monotonic", lambda: clock[0])
    with pytest.raises(CeleryTimeoutError):
        app.AsyncResult("t-never").get(timeout=2.0, interval=0.5)
    assert naps == [0.5, 0.75, 0.75]
    assert sum(naps) == pytest.approx(2.0)


def test_a_slower_interval_than_the_cap_is_kept(s3: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    naps: list[float] = []
    monkeypatch.setattr(time, "sleep", naps.append)
    monkeypatch.setattr(time, "monotonic", lambda: sum(naps))
    with pytest.raises(CeleryTimeoutError):
        make_app().AsyncResult("t-slow").get(timeout=15, interval=5)
    assert naps == [5, 5, 5]


# --- stock Celery reads what Galley writes, and the other way round --------------------------


@pytest.fixture
def both(s3: Any) -> Iterator[tuple[Celery, Celery]]:
    yield make_app(GALLEY), make_app(STOCK)


@pytest.mark.parametrize("writer", ["galley", "stock"])
def test_results_are_the_same_objects_for_stock_celery(
    both: tuple[Celery, Celery], s3: Any, writer: str
) -> None:
    galley, stock = both
    write, read = (galley, stock) if writer == "galley" else (stock, galley)
    # GIVEN a SUCCESS, a FAILURE and a PROGRESS written by one backend
    write.backend.mark_as_done("c-ok", {"rows": 3}, request=request("c-ok", group="g1"))
    write.backend.mark_as_failure("c-bad", KeyError("row"), request=request("c-bad"))
    write.backend.store_result("c-prog", {"done": 1}, "PROGRESS")
    # THEN the other reads each as Celery's AsyncResult does
    ok = read.AsyncResult("c-ok")
    assert (ok.state, ok.result, ok.name, ok.args) == (states.SUCCESS, {"rows": 3}, "unit.job", [1])
    assert read.AsyncResult("c-ok").get(timeout=1) == {"rows": 3}
    bad = read.AsyncResult("c-bad")
    assert bad.state == states.FAILURE and isinstance(bad.result, KeyError)
    assert read.AsyncResult("c-prog").info == {"done": 1}
    # AND the objects are under the same key with the same fields
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"]}
    assert keys == {f"{PREFIX}celery-task-meta-{i}" for i in ("c-ok", "c-bad", "c-prog")}
    assert set(stored(s3, "c-ok")) == {
        "status", "result", "traceback", "children", "date_done", "group_id", "task_id",
        "name", "args", "kwargs", "worker", "retries", "queue",
    }  # fmt: skip


def test_the_json_written_is_byte_for_byte_stock_celerys(
    both: tuple[Celery, Celery], s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    galley, stock = both
    for app in (galley, stock):  # the same date_done in both
        monkeypatch.setattr(app, "now", lambda: __import__("datetime").datetime(2025, 1, 2))
    galley.backend.mark_as_done("b-1", {"x": [1, "é"]}, request=request("b-1"))
    ours = s3.get_object(Bucket=BUCKET, Key=f"{PREFIX}celery-task-meta-b-1")["Body"].read()
    stock.backend.mark_as_done("b-2", {"x": [1, "é"]}, request=request("b-1"))
    theirs = s3.get_object(Bucket=BUCKET, Key=f"{PREFIX}celery-task-meta-b-2")["Body"].read()
    assert ours == theirs.replace(b'"b-2"', b'"b-1"')


def test_the_transient_fault_policy_is_kept() -> None:
    from botocore.exceptions import ClientError

    slow = ClientError({"Error": {"Code": "SlowDown"}}, "PutObject")
    denied = ClientError({"Error": {"Code": "AccessDenied"}}, "PutObject")
    assert galley_backend.is_transient(slow) and not galley_backend.is_transient(denied)


def test_a_result_write_does_not_wait_for_100_continue(s3: Any) -> None:
    # a job's result is a few hundred bytes: botocore's Expect: 100-continue cost every kept job
    # one more round trip to S3 before its body went out
    app = make_app()
    sent: list[dict[str, Any]] = []
    app.backend.client.meta.events.register(
        "before-send.s3.PutObject", lambda request, **_: sent.append(dict(request.headers))
    )
    app.backend.mark_as_done("t-fast", {"n": 1}, request=request("t-fast"))
    assert len(sent) == 1
    assert "Expect" not in sent[0]
    assert stored(s3, "t-fast")["status"] == states.SUCCESS


def test_a_result_write_sends_galleys_user_agent(s3: Any) -> None:
    # built once (runner.core.aws.USER_AGENT), not twice per PutObject by botocore
    app = make_app()
    sent: list[str] = []
    app.backend.client.meta.events.register(
        "before-send.s3.PutObject", lambda request, **_: sent.append(request.headers["User-Agent"])
    )
    app.backend.mark_as_done("t-agent", {"n": 1}, request=request("t-agent"))
    assert [bytes_to_str(agent) for agent in sent] == [
        f"{aws.USER_AGENT} Botocore/{botocore.__version__} Resource"
    ]


def test_result_writes_after_the_first_skip_botocores_pipeline(s3: Any) -> None:
    # a PutObject through botocore costs ~2 ms of CPU, half of it the same for every result
    # (runner.core.quickput); the second and later results are sent as the first was
    app = make_app()
    signed: list[str] = []
    app.backend.client.meta.events.register(
        "before-sign.s3.PutObject", lambda operation_name, **_: signed.append(operation_name)
    )
    for n in range(3):
        app.backend.mark_as_done(f"t-quick-{n}", {"n": n}, request=request(f"t-quick-{n}"))
    assert len(signed) == 1
    assert [stored(s3, f"t-quick-{n}")["result"] for n in range(3)] == [
        {"n": 0},
        {"n": 1},
        {"n": 2},
    ]


def test_results_written_quick_are_read_by_stock_celery(
    both: tuple[Celery, Celery], s3: Any
) -> None:
    # GIVEN results Galley wrote after its first, without botocore's pipeline
    galley, stock = both
    signed: list[str] = []
    galley.backend.client.meta.events.register(
        "before-sign.s3.PutObject", lambda operation_name, **_: signed.append(operation_name)
    )
    for n in range(3):
        galley.backend.mark_as_done(f"q-{n}", {"rows": n, "name": "é"}, request=request(f"q-{n}"))
    assert len(signed) == 1
    # THEN stock Celery's AsyncResult reads each as any other
    for n in range(3):
        found = stock.AsyncResult(f"q-{n}")
        assert (found.state, found.get(timeout=1)) == (states.SUCCESS, {"rows": n, "name": "é"})
