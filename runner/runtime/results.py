"""Reading a job's state, progress and result back from the S3 result backend."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from celery import Celery, states

from runner.errors import JobError, WaitTimeout
from runner.runtime import polling


@dataclass(frozen=True)
class JobStatus:
    """One snapshot of a job as a Celery client sees it."""

    id: str
    state: str
    #: The return value (SUCCESS), progress meta (custom states), or None.
    result: Any = None
    #: "ExceptionType: message" when the job failed or is retrying.
    error: str | None = None

    @property
    def ready(self) -> bool:
        return self.state in states.READY_STATES

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"id": self.id, "state": self.state}
        if self.result is not None:
            data["result"] = self.result
        if self.error is not None:
            data["error"] = self.error
        return data


def check_task_id(task_id: str) -> None:
    """A job id must be text an S3 key can hold: JobError says what is wrong with it."""
    if not task_id:
        raise JobError("the job id is empty")
    try:
        task_id.encode("utf-8")
    except UnicodeEncodeError:
        raise JobError(f"job id {task_id!r} is not valid UTF-8 text") from None


def status(app: Celery, task_id: str) -> JobStatus:
    """The job's current state; an unknown id is PENDING, as in Celery."""
    check_task_id(task_id)
    # One read: AsyncResult.state and .info would each fetch the object, and a job finishing in
    # between pairs one state with another state's result.
    meta = app.backend.get_task_meta(task_id)
    state, info = meta["status"], meta.get("result")
    if isinstance(info, BaseException):
        return JobStatus(task_id, state, error=f"{type(info).__name__}: {info}")
    return JobStatus(task_id, state, result=info)


def wait(
    app: Celery,
    task_id: str,
    *,
    timeout: float,
    interval: float = 0.5,
    on_change: Callable[[JobStatus], None] | None = None,
) -> JobStatus:
    """Poll until the job is ready; ``on_change`` sees every new state or progress value.

    One GetObject a poll, the pauses growing from ``interval`` x1.5 up to 2 s
    (runner.runtime.polling), in this thread."""
    schedule = polling.naps(interval, timeout)
    last: JobStatus | None = None
    while True:
        current = status(app, task_id)
        if on_change and current != last:
            on_change(current)
        last = current
        if current.ready:
            return current
        nap = next(schedule, None)
        if nap is None:
            raise WaitTimeout(f"job {task_id} is still {current.state} after {timeout:g}s")
        time.sleep(nap)
