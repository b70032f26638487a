"""The stack's queues by role, the names Celery routes by: ``jobs`` and ``long``.

``jobs`` (GALLEY_QUEUE_URL) is the default queue, run by the Lambda consumer; ``long``
(GALLEY_LONG_QUEUE_URL) is the long-jobs queue, run by Fargate Celery workers. The roles, not the
SQS names, are what ``task_routes``, ``apply_async(queue=...)``, ``@app.task(queue=...)``,
``celery worker -Q`` and ``galley enqueue --queue`` take: they are the same in every stack, where
the SQS names carry the stack's name. Each queue has its own visibility timeout and dead-letter
queue, so a worker serves one of them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from runner.core.variables import DLQ_URL, LONG_DLQ_URL, LONG_QUEUE_URL, QUEUE_URL
from runner.errors import SettingsError

if TYPE_CHECKING:
    from runner.core.producer_config import ProducerOptions

JOBS = "jobs"
LONG = "long"
ROLES = (JOBS, LONG)

#: The variable naming each role's queue, and its dead-letter queue.
QUEUE_VARIABLE = {JOBS: QUEUE_URL, LONG: LONG_QUEUE_URL}
DLQ_VARIABLE = {JOBS: DLQ_URL, LONG: LONG_DLQ_URL}


def urls(settings: ProducerOptions) -> dict[str, str]:
    """Role -> URL of every queue ``settings`` name (``jobs`` always, ``long`` when set)."""
    found = {JOBS: settings.queue_url}
    if settings.long_queue_url:
        found[LONG] = settings.long_queue_url
    return found


def url_for(settings: ProducerOptions, role: str) -> str:
    """The URL of the queue with ``role``; a SettingsError names what is missing."""
    check_role(role)
    found = urls(settings).get(role)
    if found is None:
        raise SettingsError(
            f"{QUEUE_VARIABLE[role]} is not set, so jobs cannot go to the {role} queue"
        )
    return found


def check_role(role: str) -> str:
    if role not in ROLES:
        raise SettingsError(f"unknown queue {role!r}: the stack's queues are {', '.join(ROLES)}")
    return role


def role_of(settings: ProducerOptions, url: str) -> str | None:
    """The role of the queue at ``url``, or None when it is not one of the stack's."""
    for role, known in urls(settings).items():
        if known == url:
            return role
    return None
