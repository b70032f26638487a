"""EventBridge Scheduler target: enqueues the task named in the schedule's input."""

from __future__ import annotations

from typing import Any

from runner.producer import job_request


def handler(event: dict[str, Any], context: Any) -> dict[str, str]:
    """``{"task": ..., "args": [...], "kwargs": {...}}`` -> the task id. A bad input raises, so
    Scheduler retries and then dead-letters it; the error names what is wrong."""
    request = job_request.JobRequest.model_validate(event)
    return {"task_id": job_request.submit(request), "task": request.task}
