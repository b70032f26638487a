"""Chords on real prefork workers and a moto server: counted in S3 (runner.runtime.chords), the
body runs once, no celery.chord_unlock is ever sent, a failed header task fails the body."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from celery import chord, signals
from celery.exceptions import ChordError

from runner.local import embedded
from runner.local.process import Child, wait_for
from tests import support

pytestmark = pytest.mark.e2e

TASKS = {"GALLEY_TASK_MODULES": "tests.e2e.chord_tasks"}


@pytest.fixture
def sent() -> Iterator[list[str]]:
    """The names of the tasks this process sends."""
    names: list[str] = []

    def seen(headers: Any = None, **_: Any) -> None:
        names.append(headers["task"])

    signals.before_task_publish.connect(seen, weak=False)
    yield names
    signals.before_task_publish.disconnect(seen)


def body_runs(stack: embedded.LocalResources, job: str) -> int:
    _, s3 = support.clients(stack)
    return int(s3.list_objects_v2(Bucket=stack.bucket, Prefix=f"runs/{job}/")["KeyCount"])


def test_the_last_header_task_fires_the_body_once_without_chord_unlock(
    attach: embedded.LocalResources, app: Any, worker: Callable[..., Child], sent: list[str]
) -> None:
    # GIVEN two workers (the header tasks end on different processes)
    workers = [worker(attach, **TASKS), worker(attach, **TASKS)]
    job = uuid.uuid4().hex
    # WHEN a 3-task chord is sent
    header = [app.signature("chords.add", (i, i)) for i in range(3)]
    result = chord(header, app.signature("chords.total", (attach.bucket, job))).apply_async()
    # THEN the body gets every header result
    assert result.get(timeout=60) == 0 + 2 + 4
    wait_for(
        lambda: support.queue_depth(attach, attach.queue_url) == 0,
        timeout=30,
        what="every message to be settled",
    )
    # AND it ran once; no celery.chord_unlock was sent, by this client or by a worker
    assert body_runs(attach, job) == 1
    assert sent == ["chords.add"] * 3
    for child in workers:
        assert child.log_path is not None
        assert "chord_unlock" not in child.log_path.read_text(errors="replace")
    # AND the chord's counter stays in S3, marked fired
    _, s3 = support.clients(attach)
    key = f"{app.galley_settings.results_prefix}chord-unlock-{result.parent.id}"
    assert b'"fired":true' in s3.get_object(Bucket=attach.bucket, Key=key)["Body"].read()


def test_a_failed_header_task_fails_the_body(
    attach: embedded.LocalResources, app: Any, worker: Callable[..., Child]
) -> None:
    worker(attach, **TASKS)
    job = uuid.uuid4().hex
    # WHEN a chord's second header task fails
    header = [
        app.signature("chords.add", (1, 1)),
        app.signature("chords.fail", ("row 7 is broken",)),
        app.signature("chords.add", (2, 2)),
    ]
    result = chord(header, app.signature("chords.total", (attach.bucket, job))).apply_async()
    # THEN the body is FAILURE with Celery's ChordError, and never ran (looked at by state:
    # result.get() raises the failed header's own error instead when it sees it first)
    wait_for(lambda: result.state == "FAILURE", timeout=60, what="the body to fail")
    assert isinstance(result.result, ChordError)
    assert "row 7 is broken" in str(result.result)
    assert body_runs(attach, job) == 0
