"""Fires the template's schedules on the local stack, on their real cadence.

In AWS, EventBridge Scheduler invokes the schedule Lambda; locally `galley local up` calls the same
code when a schedule comes due. Missed fire times (a suspended laptop) are not replayed, as
EventBridge Scheduler does not replay them either.

It reads template.yaml, not beat_schedule: locally fires what AWS would, inputs resolved against
the deployed stack. The two agree because `galley schedules` (runner/local/schedule_check.py)
checks it, in the tests and in CI, and `galley local up` names any difference as it starts.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

from runner.local.cadence import Schedule, parse
from runner.local.sam import ScheduleSpec

log = logging.getLogger(__name__)


@dataclass
class _Entry:
    spec: ScheduleSpec
    schedule: Schedule
    next_at: datetime | None


class LocalScheduler:
    """Call ``fire(spec)`` for every schedule whose time has come; driven by ``tick(now)``.

    ``fire`` returns the task id of the job it enqueued.
    """

    def __init__(
        self, specs: Iterable[ScheduleSpec], fire: Callable[[ScheduleSpec], object], start: datetime
    ) -> None:
        self._fire = fire
        # Parsing validates every expression now: a bad template fails at start, not at 2 a.m.
        self._entries = [_Entry(s, parse(s.expression), None) for s in specs]
        for entry in self._entries:
            entry.next_at = entry.schedule.next_after(start)

    def upcoming(self) -> list[tuple[str, datetime | None]]:
        """Each schedule's name and next fire time (None: it will not fire again)."""
        return [(e.spec.name, e.next_at) for e in self._entries]

    def tick(self, now: datetime) -> list[str]:
        """Fire what is due at ``now``; returns the names fired. Each fire is logged (INFO: the
        schedule, its task and the job's task id); a failing fire is logged, and the schedule
        keeps its cadence (EventBridge retries are the Lambda's business)."""
        fired = []
        for entry in self._entries:
            if entry.next_at is None or entry.next_at > now:
                continue
            try:
                task_id = self._fire(entry.spec)
            except Exception:
                log.exception("schedule %s failed to enqueue its job", entry.spec.name)
            else:
                fired.append(entry.spec.name)
                # task[id], as the worker's own lines name a job
                task = entry.spec.input.get("task")
                log.info("schedule %s fired: %s[%s]", entry.spec.name, task, task_id)
            entry.next_at = entry.schedule.next_after(now)
        return fired
