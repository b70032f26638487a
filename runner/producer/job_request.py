"""A request to run a job, as an API caller or a schedule states it: validated, then enqueued.

Shared by the example producer Lambda (``runner.lambdas.enqueue``), the schedule Lambda
(``runner.lambdas.schedule``) and the local scheduler, so all three accept the same input.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from runner.core import aws, producer_config
from runner.producer import sender

if TYPE_CHECKING:
    from runner.core.producer_config import ProducerOptions


class JobRequest(BaseModel):
    """``{"task": "tasks.reports.summarize_csv", "args": [...], "kwargs": {...}}``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    task: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z_][A-Za-z0-9_.]*$")
    args: list[Any] = Field(default_factory=list)
    kwargs: dict[str, Any] = Field(default_factory=dict)
    #: "jobs": the Lambda consumer's queue; "long": the Fargate workers' queue.
    queue: Literal["jobs", "long"] = "jobs"
    countdown: float | None = Field(default=None, ge=0)
    #: Duplicate requests with the same key run the task's body once (runner.runtime.idempotency).
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=512)


def submit(
    request: JobRequest,
    *,
    settings: ProducerOptions | None = None,
    session: Any = None,
    client: Any = None,
) -> str:
    """Enqueue ``request``; returns the task id."""
    if settings is None:  # read as enqueue reads them (no pydantic-settings on a cold start)
        settings = producer_config.read()
    if client is None and session is not None:
        client = aws.client(
            "sqs", endpoint_url=settings.endpoint_url, region=settings.region, session=session
        )
    return sender.enqueue(
        request.task,
        request.args,
        request.kwargs,
        countdown=request.countdown,
        idempotency_key=request.idempotency_key,
        queue=request.queue,
        client=client,
        settings=settings,
    )
