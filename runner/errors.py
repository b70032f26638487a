"""Every error Galley raises, under one base: ``except GalleyError`` catches any of them.

Each class also keeps the builtin it always was (``ValueError`` for bad input, ``RuntimeError``
for a failed operation), so code that caught those still does. Entry points (the ``galley``
CLI, the Lambda handlers) catch :class:`GalleyError` and print or return its message: it names
what is wrong. The tree::

    GalleyError
    ├── SettingsError            a variable is missing or malformed (names it)
    ├── WireError                a message is not a task message Galley can run
    ├── KombuJSONError           a kombu JSON type marker Galley cannot read
    ├── PayloadError             a large-argument object in S3 is missing or unreadable
    ├── ProducerError            enqueue could not send
    │   ├── CallError            the call cannot be sent as asked; nothing was sent
    │   │   ├── InvalidTaskInput     arguments do not match the task's input model
    │   │   └── MessageTooLargeError over SQS's 1 MiB
    │   └── EnqueueError         SQS refused messages (``results`` has each outcome)
    │       └── QueueNotFoundError
    ├── JobError                 a job request (CLI) is malformed
    ├── RoutingError             a send names a queue or exchange no queue of the app receives
    ├── WaitTimeout              a job or process was not ready by the deadline
    ├── IdempotencyKeyError      a task's key function failed or gave no key
    ├── IdempotencyError         the idempotency record could not be used
    │   ├── LeaseLost
    │   └── ResultNotJSON
    ├── InProgressElsewhere      another run holds the key's lease (retry later)
    ├── DlqError                 a dead-letter operation cannot be done as asked
    ├── RemoteControlError       a Celery remote-control call that SQS cannot carry (no broadcast)
    ├── RevokeError              a revocation cannot be made as asked (not a task id, bad signal)
    ├── StatusError              `galley status` cannot find or read the stack
    ├── StackError               the template could not be translated or deployed
    ├── ProcessError             a child process did not start or became unhealthy
    │   ├── PortInUseError
    │   └── StackRunningError    a local stack already runs here
    ├── StateError               the local stack's state file cannot be read
    ├── LocalDataError           the local stack's saved data cannot be read
    ├── ScheduleExpressionError  a schedule expression Galley cannot read
    └── BeatScheduleError        a beat_schedule entry EventBridge Scheduler cannot run
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any


class GalleyError(Exception):
    """Base of every error Galley raises; its message says what is wrong."""


class SettingsError(GalleyError, ValueError):
    """A setting is missing or malformed; the message names the environment variable."""


class WireError(GalleyError, ValueError):
    """A message is not a Celery protocol-2 task message Galley can run; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class KombuJSONError(GalleyError, ValueError):
    """A ``__type__`` marker Galley does not know, or a value it cannot read."""


class PayloadError(GalleyError, RuntimeError):
    """A payload object is missing or unreadable; the message says which."""


class ProducerError(GalleyError):
    """A task could not be enqueued."""


class CallError(ProducerError, ValueError):
    """The call cannot be sent as asked (a negative countdown, a delay on a FIFO queue, a value
    the message cannot carry); nothing was sent."""


class InvalidTaskInput(CallError):
    """The arguments do not match the task's input model (tasks/schemas.py); the message names
    each field. Raised before anything is sent, and by the task before its body runs."""


class MessageTooLargeError(CallError):
    """The encoded message is larger than SQS accepts; nothing was sent."""


class EnqueueError(ProducerError):
    """SQS refused one or more messages; ``results`` holds the outcome of every call
    (``runner.producer.sender.EnqueueResult``)."""

    def __init__(self, message: str, results: Sequence[Any]) -> None:
        super().__init__(message)
        self.results = list(results)

    @property
    def failed(self) -> list[Any]:
        return [result for result in self.results if not result.ok]


class QueueNotFoundError(EnqueueError):
    """The queue URL names no queue."""


class JobError(GalleyError, ValueError):
    """The job cannot be sent; the message says which part of the request is wrong."""


class RoutingError(GalleyError, ValueError):
    """A send is routed where no queue of the app receives it (an unknown queue, or a named
    exchange: on SQS no queue is bound to one, and kombu would drop the message unsaid)."""


class WaitTimeout(GalleyError, TimeoutError):
    """A job or a process was not ready by the deadline; the message says which and how long."""


class IdempotencyKeyError(GalleyError, ValueError):
    """A task's key function raised, or a key is not a non-empty string."""


class IdempotencyError(GalleyError, RuntimeError):
    """The idempotency record could not be used (S3 refused, corrupt record, contention)."""


class LeaseLost(IdempotencyError):
    """Our record was taken over or deleted before we completed it."""


class ResultNotJSON(IdempotencyError):
    """The run's result cannot be stored as JSON."""


class InProgressElsewhere(GalleyError):
    """Another run holds a live lease on this key: do not run now, retry after ``retry_after``."""

    def __init__(
        self, task_name: str, key_hash: str, owner_task_id: str, expires_at: float, retry_after: int
    ) -> None:
        self.task_name = task_name
        self.key_hash = key_hash
        self.owner_task_id = owner_task_id
        self.expires_at = expires_at
        self.retry_after = retry_after
        until = datetime.fromtimestamp(expires_at, UTC).isoformat(timespec="seconds")
        super().__init__(
            f"{task_name} with idempotency key sha256:{key_hash[:12]} is running in task "
            f"{owner_task_id} (lease until {until}); retry in {retry_after}s"
        )


class DlqError(GalleyError, ValueError):
    """A dead-letter operation cannot be done as asked; the message says why."""


class RemoteControlError(GalleyError, NotImplementedError):
    """Celery's remote control (inspect, control, events, Flower) needs broadcast, which SQS does
    not have; the message names the Galley command that answers the same question."""


class RevokeError(GalleyError, ValueError):
    """A revocation cannot be made as asked: an argument is not a task id, or the signal is not
    one; the message names it."""


class StatusError(GalleyError, RuntimeError):
    """`galley status` cannot find the stack or read its queues; the message says which."""


class StackError(GalleyError, RuntimeError):
    """The template could not be translated or deployed; the message says why."""


class ProcessError(GalleyError, RuntimeError):
    """A child process did not start or became unhealthy."""


class PortInUseError(ProcessError):
    """The configured local port is taken by another process."""


class StackRunningError(ProcessError):
    """A `galley local up` already runs with this state file; a second one is refused."""


class StateError(GalleyError, ValueError):
    """The local stack's state file cannot be read, or is not a state Galley wrote."""


class LocalDataError(GalleyError, ValueError):
    """The local stack's saved data (queues' messages, buckets' objects) cannot be read."""


class ScheduleExpressionError(GalleyError, ValueError):
    """A schedule expression is malformed or uses a feature Galley does not support."""


class BeatScheduleError(GalleyError, ValueError):
    """A beat_schedule entry cannot become an EventBridge Scheduler schedule; the message says
    which entry and why."""
