"""Periodic jobs: Celery's ``beat_schedule``, the one place they are declared.

The app loads this dict as ``app.conf.beat_schedule``. On AWS each entry is an EventBridge
Scheduler schedule in template.yaml (an event of ``ScheduleFunction``); `galley schedules` checks
the two agree and prints the YAML for any entry the template lacks. `galley local up` fires them
on their real cadence. Times are UTC.

- ``schedule``: ``crontab(...)`` or an interval (a ``timedelta`` or seconds), at least a minute
  and a whole number of minutes; EventBridge cannot keep ``solar``, nor a crontab restricting both
  ``day_of_month`` and ``day_of_week``.
- ``args`` / ``kwargs``: JSON; ``"${ResultsBucket}"`` stands for the stack's results bucket.
- ``options``: only ``{"queue": "long"}``, for the long-jobs queue. Without it the job goes where
  the app routes the task (``task_routes``, ``@app.task(queue=...)``); either way the template's
  Input must name that queue, and `galley schedules` says so.
- The entry's name becomes the template event's logical id: nightly-import-summary ->
  NightlyImportSummary.
"""

from __future__ import annotations

from typing import Any

from celery.schedules import crontab

beat_schedule: dict[str, dict[str, Any]] = {
    # Summarise yesterday's order export every night at 02:00 UTC.
    "nightly-import-summary": {
        "task": "tasks.reports.summarize_csv",
        "schedule": crontab(minute=0, hour=2),
        "args": ["${ResultsBucket}", "inbox/orders.csv"],
    },
}
