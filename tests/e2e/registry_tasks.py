"""Tasks for the worker registry and `galley top` tests, loaded through GALLEY_TASK_MODULES."""

from __future__ import annotations

import time

from celery import Task

from runner.runtime.app import app


@app.task(bind=True, name="registry.steps")
def steps(self: Task, total: int, seconds: float) -> int:
    """Reports PROGRESS ``{"done": n, "total": total}`` after each of ``total`` steps."""
    for done in range(total):
        self.update_state(state="PROGRESS", meta={"done": done, "total": total})
        time.sleep(seconds)
    return total
