"""Chords counted in S3 (runner.runtime.chords) on in-process moto: the header task completing
the set fires the body once, no celery.chord_unlock, duplicates and failures as Celery's
counting backends handle them."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from celery import Celery, chord, signals, states
from celery.app.task import Context

from runner.runtime import chords
from tests.unit.runtime.s3_results import BUCKET, PREFIX, make_app, record_calls, stored


@pytest.fixture
def app(s3: Any) -> Celery:
    app = make_app()

    @app.task(name="unit.add", shared=False)
    def add(x: int, y: int) -> int:
        return x + y

    @app.task(name="unit.tsum", shared=False)
    def tsum(numbers: list[int]) -> int:
        return sum(numbers)

    return app


@pytest.fixture
def published() -> Iterator[list[tuple[str, str, Any, dict[str, Any]]]]:
    """(task name, task id, body, headers) of every message published meanwhile."""
    sent: list[tuple[str, str, Any, dict[str, Any]]] = []

    def seen(body: Any = None, headers: Any = None, **_: Any) -> None:
        sent.append((headers["task"], headers["id"], body, headers))

    signals.before_task_publish.connect(seen, weak=False)
    yield sent
    signals.before_task_publish.disconnect(seen)


def send_chord(app: Celery, size: int = 3) -> Any:
    add, tsum = app.tasks["unit.add"], app.tasks["unit.tsum"]
    return chord([add.s(i, i) for i in range(size)], tsum.s()).apply_async()


def header_requests(published: list[Any]) -> list[Context]:
    """The requests a worker builds for the header tasks that were sent."""
    return [
        Context({**headers, "id": task_id, "args": list(body[0]), "chord": body[2]["chord"]})
        for name, task_id, body, headers in published
        if name == "unit.add"
    ]


def finish(app: Celery, req: Context, value: Any = None) -> None:
    """What the tracer does when a header task returns."""
    app.backend.mark_as_done(req.id, value if value is not None else req.args[0] * 2, request=req)


def bodies(published: list[Any]) -> list[Any]:
    return [(task_id, list(body[0])) for name, task_id, body, _ in published if name == "unit.tsum"]


def counter(s3: Any, group_id: str) -> dict[str, Any]:
    raw = s3.get_object(Bucket=BUCKET, Key=f"{PREFIX}chord-unlock-{group_id}")["Body"].read()
    return dict(json.loads(raw))


def test_the_header_task_completing_the_chord_fires_the_body_once(
    app: Celery, s3: Any, published: list[Any]
) -> None:
    # GIVEN a 3-task chord sent through Galley's backend
    result = send_chord(app)
    # THEN no celery.chord_unlock was sent: only the header tasks
    assert [name for name, *_ in published] == ["unit.add"] * 3
    parts = header_requests(published)
    # WHEN the header tasks return, one by one
    finish(app, parts[0])
    finish(app, parts[1])
    assert bodies(published) == []  # not before the last one
    finish(app, parts[2])
    # THEN the body is sent once, with the header's results in order
    assert bodies(published) == [(result.id, [[0, 2, 4]])]
    # AND the counter is kept, marked fired
    kept = counter(s3, result.parent.id)
    assert kept["fired"] is True and sorted(kept["done"]) == sorted(p.id for p in parts)


def test_a_redelivered_header_task_is_not_counted_twice(
    app: Celery, s3: Any, published: list[Any]
) -> None:
    result = send_chord(app)
    first, second, third = header_requests(published)
    # WHEN the first header task runs three times and the second once
    for _ in range(3):
        finish(app, first)
    finish(app, second)
    # THEN the chord still waits for the third
    assert bodies(published) == []
    assert len(counter(s3, result.parent.id)["done"]) == 2
    finish(app, third)
    assert len(bodies(published)) == 1


def test_a_late_duplicate_after_the_body_fired_does_nothing(
    app: Celery, s3: Any, published: list[Any]
) -> None:
    result = send_chord(app)
    parts = header_requests(published)
    for part in parts:
        finish(app, part)
    calls = record_calls(app)
    # WHEN a header task is delivered again after the body was sent, and fails this time
    app.backend.mark_as_failure(parts[1].id, ValueError("late"), request=parts[1])
    # THEN nothing is sent or failed: its SUCCESS stays, the body is not failed
    assert calls == ["GetObject", "GetObject"]  # its result, then the counter: fired
    assert len(bodies(published)) == 1
    assert stored(s3, parts[1].id)["status"] == states.SUCCESS
    assert app.AsyncResult(result.id).state == states.PENDING  # the body is queued, not failed


def test_a_failed_header_task_fails_the_body_with_a_chord_error(
    app: Celery, s3: Any, published: list[Any]
) -> None:
    result = send_chord(app)
    first, second, third = header_requests(published)
    finish(app, first)
    # WHEN one header task fails, and the others succeed
    app.backend.mark_as_failure(second.id, KeyError("row 7"), request=second)
    finish(app, third)
    # THEN the body is not sent, and is FAILURE with Celery's ChordError (the message Celery's
    # join gives: the header task's exception)
    assert bodies(published) == []
    body = app.AsyncResult(result.id)
    assert body.state == states.FAILURE
    assert type(body.result).__name__ == "ChordError"
    assert "KeyError('row 7')" in str(body.result)
    assert counter(s3, result.parent.id)["fired"] is True


def test_a_chord_counted_by_chord_unlock_is_left_to_it(
    app: Celery, s3: Any, published: list[Any]
) -> None:
    # GIVEN a chord sent by a stock Celery client: no counter, a chord_unlock does the waiting
    result = send_chord(app)
    s3.delete_object(Bucket=BUCKET, Key=f"{PREFIX}chord-unlock-{result.parent.id}")
    # WHEN its header tasks return on a Galley worker
    for part in header_requests(published):
        finish(app, part)
    # THEN the body is neither sent nor failed here
    assert bodies(published) == []
    assert app.AsyncResult(result.id).state == states.PENDING


def test_the_firing_task_redelivered_before_it_marked_the_chord_fires_again(
    app: Celery, s3: Any, published: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    result = send_chord(app)
    first, second, third = header_requests(published)
    finish(app, first)
    finish(app, second)

    # GIVEN the task completing the chord dies after counting itself, before sending the body
    class Died(BaseException):
        pass

    def die(*_: Any, **__: Any) -> None:
        raise Died

    with monkeypatch.context() as patch:
        patch.setattr(app.amqp, "_retry_publish", die)
        with pytest.raises(Died):
            finish(app, third)
    assert bodies(published) == [] and counter(s3, result.parent.id)["firing"] == third.id
    # WHEN another header task is redelivered: it does nothing
    finish(app, first)
    assert bodies(published) == []
    # WHEN the firing task is redelivered: it fires the body, once
    finish(app, third)
    finish(app, third)
    assert bodies(published) == [(result.id, [[0, 2, 4]])]


def test_header_tasks_returning_at_once_fire_each_body_exactly_once(
    app: Celery, s3: Any, published: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN 8 chords of 4, their header tasks ending at the same moment on 32 threads
    sent = [send_chord(app, size=4) for _ in range(8)]
    parts = header_requests(published)
    fired: list[Any] = []
    lock = threading.Lock()

    def record(send: Any, ret: Any) -> None:
        with lock:
            fired.append((send.__self__.id, ret))

    monkeypatch.setattr(app.amqp, "_retry_publish", record)
    start = threading.Barrier(len(parts))
    errors: list[BaseException] = []

    def run(part: Context) -> None:
        try:
            start.wait()
            finish(app, part)
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=run, args=(p,)) for p in parts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    # THEN every chord fired its body once, with all four results
    assert errors == []
    assert sorted(body_id for body_id, _ in fired) == sorted(r.id for r in sent)
    assert all(ret == [0, 2, 4, 6] for _, ret in fired)


def test_a_counter_that_is_not_galleys_fails_the_body_with_one_line(
    app: Celery, s3: Any, published: list[Any]
) -> None:
    result = send_chord(app)
    s3.put_object(Bucket=BUCKET, Key=f"{PREFIX}chord-unlock-{result.parent.id}", Body=b"12")
    finish(app, header_requests(published)[0])
    body = app.AsyncResult(result.id)
    assert body.state == states.FAILURE
    assert "Cannot count chord part" in str(body.result) and "not a Galley chord" in str(
        body.result
    )


def test_count_part_gives_up_on_a_counter_that_keeps_changing(
    s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = "results/chord-unlock-g"
    record = {"version": 1, "group_id": "g", "group": [["g", None], []], "done": [],
              "firing": None, "fired": False}  # fmt: skip
    s3.put_object(Bucket=BUCKET, Key=key, Body=json.dumps(record).encode())
    monkeypatch.setattr(chords.conditional, "put_if", lambda *a, **k: None)
    monkeypatch.setattr(chords.conditional, "pause", lambda attempt: None)
    with pytest.raises(chords.ChordError, match="kept changing"):
        chords.count_part(s3, BUCKET, key, "t1", 3)
