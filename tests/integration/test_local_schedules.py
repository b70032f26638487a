"""The template's schedules, fired locally, put a real task message on the local queue."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from runner.local import embedded
from runner.local.sam import ScheduleSpec
from runner.local.scheduler import LocalScheduler
from runner.wire import codec
from tests import support


def test_a_due_schedule_enqueues_its_task(stack: embedded.LocalResources) -> None:
    # GIVEN a schedule as template.yaml declares it, and the local firer
    spec = ScheduleSpec(
        name="ScheduleFunction.Nightly",
        expression="cron(0 2 * * ? *)",
        input={"task": "tasks.reports.summarize_csv", "args": [stack.bucket, "inbox/a.csv"]},
    )
    start = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
    scheduler = LocalScheduler([spec], embedded.schedule_firer(stack), start=start)
    # WHEN its time comes
    assert scheduler.tick(start + timedelta(hours=14)) == ["ScheduleFunction.Nightly"]
    # THEN the jobs queue holds the Celery message for that task
    sqs, _ = support.clients(stack)
    messages = sqs.receive_message(QueueUrl=stack.queue_url, WaitTimeSeconds=1)["Messages"]
    (message,) = messages
    decoded = codec.decode(message["Body"])
    assert decoded.task == "tasks.reports.summarize_csv"
    assert decoded.args == [stack.bucket, "inbox/a.csv"]


def test_a_bad_schedule_input_enqueues_nothing(stack: embedded.LocalResources) -> None:
    spec = ScheduleSpec(name="bad", expression="rate(1 minute)", input={"tsk": "typo"})
    start = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
    scheduler = LocalScheduler([spec], embedded.schedule_firer(stack), start=start)
    assert scheduler.tick(start + timedelta(minutes=1)) == []
    assert support.queue_depth(stack, stack.queue_url) == 0
