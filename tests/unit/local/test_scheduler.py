from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest

from runner.errors import ScheduleExpressionError
from runner.local.sam import ScheduleSpec
from runner.local.scheduler import LocalScheduler

START = datetime(2026, 11, 24, 10, 0, 30, tzinfo=UTC)


def spec(expression: str, name: str = "s") -> ScheduleSpec:
    return ScheduleSpec(name=name, expression=expression, input={"task": "tasks.x"})


def test_fires_on_cadence_and_not_before() -> None:
    # GIVEN a 5-minute rate and a nightly cron
    fired: list[str] = []
    scheduler = LocalScheduler(
        [spec("rate(5 minutes)", "rate"), spec("cron(0 2 * * ? *)", "nightly")],
        lambda s: fired.append(s.name),
        start=START,
    )
    # WHEN time passes in ticks
    assert scheduler.tick(START + timedelta(minutes=4, seconds=59)) == []
    assert scheduler.tick(START + timedelta(minutes=5)) == ["rate"]
    assert scheduler.tick(START + timedelta(minutes=6)) == []
    assert scheduler.tick(START + timedelta(minutes=10, seconds=1)) == ["rate"]
    # THEN the nightly one fires once its time comes, and only then
    next_2am = datetime(2026, 11, 25, 2, 0, tzinfo=UTC)
    assert dict(scheduler.upcoming())["nightly"] == next_2am
    assert scheduler.tick(next_2am) == ["rate", "nightly"]
    assert fired == ["rate", "rate", "rate", "nightly"]


def test_missed_fire_times_are_not_replayed() -> None:
    fired: list[str] = []
    scheduler = LocalScheduler([spec("rate(1 minute)")], lambda s: fired.append(s.name), START)
    # a laptop asleep for an hour: one fire on waking, not sixty
    assert scheduler.tick(START + timedelta(hours=1)) == ["s"]
    assert fired == ["s"]
    assert dict(scheduler.upcoming())["s"] == START + timedelta(hours=1, minutes=1)


def test_failing_fire_is_logged_and_cadence_kept(caplog: pytest.LogCaptureFixture) -> None:
    def boom(_: ScheduleSpec) -> None:
        raise RuntimeError("queue is gone")

    scheduler = LocalScheduler([spec("rate(1 minute)")], boom, START)
    assert scheduler.tick(START + timedelta(minutes=1)) == []
    assert "schedule s failed to enqueue its job" in caplog.text
    assert dict(scheduler.upcoming())["s"] == START + timedelta(minutes=2)


def test_bad_expression_fails_at_start() -> None:
    with pytest.raises(ScheduleExpressionError, match="rate\\(0 minutes\\)"):
        LocalScheduler([spec("rate(0 minutes)")], lambda s: None, START)


def test_a_fired_schedule_logs_one_line_naming_it_its_task_and_task_id(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # GIVEN a schedule whose job is enqueued with a known task id
    scheduler = LocalScheduler(
        [spec("rate(1 minute)", "ScheduleFunction.Every")], lambda s: "3f1c0d9e-id", START
    )
    # WHEN it fires
    with caplog.at_level(logging.INFO, logger="runner.local.scheduler"):
        scheduler.tick(START + timedelta(minutes=1))
    # THEN one line says which schedule fired, which task, and the job's id
    assert [record.getMessage() for record in caplog.records] == [
        "schedule ScheduleFunction.Every fired: tasks.x[3f1c0d9e-id]"
    ]
