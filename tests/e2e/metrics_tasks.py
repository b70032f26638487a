"""Tasks of the metrics tests: one that succeeds, one that fails, one that retries first."""

from __future__ import annotations

from celery import Task

from runner.runtime.app import app


@app.task(name="metrics.ok")
def ok() -> int:
    return 1


@app.task(name="metrics.fail")
def fail() -> None:
    raise ValueError("on purpose")


@app.task(bind=True, name="metrics.flaky")
def flaky(self: Task, retries: int) -> int:
    """Asks for ``retries`` retries, then succeeds."""
    if self.request.retries < retries:
        raise self.retry(countdown=0)
    return int(self.request.retries)
