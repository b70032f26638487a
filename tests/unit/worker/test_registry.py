"""The worker's registry publisher: S3 faults are logged once per outage, never raised."""

from __future__ import annotations

import json
import logging
import threading
from typing import Any

import pytest

from runner.local.process import wait_for
from runner.ops import registry as format_
from runner.worker import registry


class FlakyS3:
    """put_object fails while ``down`` is set; records what was written."""

    def __init__(self) -> None:
        self.down = False
        self.written: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    def put_object(self, **kwargs: Any) -> None:
        if self.down:
            raise ConnectionError("S3 is down")
        with self.lock:
            self.written.append(json.loads(kwargs["Body"]))


def describe(state: str) -> format_.Entry:
    return format_.Entry(
        host="h", pid=1, version="v", started=0.0, at=1.0, interval=1.0, concurrency=1,
        queue="jobs", state=state, running=[], waiting=0,
        totals=dict.fromkeys(format_.OUTCOMES, 0),
    )  # fmt: skip


def test_an_outage_is_logged_once_and_the_recovery_once(caplog: pytest.LogCaptureFixture) -> None:
    # GIVEN a publisher whose S3 is down
    s3 = FlakyS3()
    publisher = registry.Publisher(s3, "b", describe, 1.0, "workers/h-1.json")
    s3.down = True
    # WHEN it publishes five times, S3 comes back, and it publishes twice more
    with caplog.at_level(logging.WARNING, logger=registry.__name__):
        results = [publisher.publish() for _ in range(5)]
        s3.down = False
        results += [publisher.publish() for _ in range(2)]
    # THEN nothing was raised, the outage was said once and the recovery once
    assert results == [False] * 5 + [True] * 2
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2, messages
    assert "cannot write s3://b/workers/h-1.json" in messages[0]
    assert "S3 is down" in messages[0]
    assert "writing s3://b/workers/h-1.json again" in messages[1]


def test_stop_writes_a_last_entry_marked_stopped() -> None:
    # GIVEN a started publisher
    s3 = FlakyS3()
    publisher = registry.Publisher(s3, "b", describe, 60.0, "workers/h-1.json")
    publisher.start()
    # WHEN a warm shutdown starts
    publisher.stopping()
    # THEN it says so at once, not after its 60 s interval
    wait_for(
        lambda: [w["state"] for w in s3.written] == ["running", "stopping"],
        timeout=5,
        what="running, then stopping",
    )
    # WHEN the worker stops, THEN the last entry says stopped
    publisher.stop()
    assert [w["state"] for w in s3.written] == ["running", "stopping", "stopped"]


def test_outcomes_are_counted_per_task_as_celerys_events_name_them() -> None:
    before, _ = registry.totals()
    registry.count("task-succeeded", "tasks.count_me")
    registry.count("task-failed", "tasks.count_me")
    registry.count("task-retried", "tasks.count_me")
    registry.count("task-received", "tasks.count_me")  # not an outcome
    after, by_task = registry.totals()
    assert {k: after[k] - before[k] for k in after} == {"succeeded": 1, "failed": 1, "retried": 1}
    assert by_task["tasks.count_me"] == {"succeeded": 1, "failed": 1, "retried": 1}
