"""Settling one record of the Lambda consumer: its :class:`Outcome`, and the writes behind it.

A refused job gets its FAILURE (or an expired one its REVOKED) recorded in the result backend; a
record is dead-lettered with its reason (handed back to SQS when the dead-letter queue cannot take
it), sent on with an SQS delay, or deleted from its queue once settled. Each function takes the
clients it writes with; :class:`runner.lambdas.records.Consumer` decides which one applies.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from celery import Celery
from celery.app.task import Context
from celery.exceptions import InvalidTaskError, NotRegistered

from runner.core.deadletter import dead_letter
from runner.core.settings import queue_name_from_url
from runner.settlement import rules
from runner.wire import codec

log = logging.getLogger(__name__)

Action = Literal[
    "acked", "dead-lettered", "deferred", "expired", "revoked", "retry-later", "not-started"
]


@dataclass(frozen=True)
class Run:
    """A job's run in this invocation: the state Celery's tracer left (None: stopped before it
    said, e.g. the invocation ending), how long it took, and how long the job had waited for
    it since it was due (seconds)."""

    state: str | None
    runtime: float
    wait: float


@dataclass(frozen=True)
class Outcome:
    """What happened to one record."""

    message_id: str
    action: Action
    task_id: str | None = None
    reason: str | None = None
    #: The task the message names, once it is decoded.
    task: str | None = None
    #: Set when the job ran here.
    run: Run | None = None

    @property
    def failed(self) -> bool:
        """Reported in batchItemFailures: SQS will deliver it again."""
        return self.action in ("retry-later", "not-started")


# --- the result backend ---


def store_failure(
    app: Celery, message: codec.TaskMessage, reason: str, unrun: Callable[[], Context]
) -> None:
    """The FAILURE result of a job refused before it ran (``unrun()`` gives its request)."""
    known = message.task in app.tasks
    exc = InvalidTaskError(reason) if known else NotRegistered(message.task)
    try:
        app.backend.mark_as_failure(message.id, exc, request=unrun())
    except Exception:  # the dead letter still carries the job and the reason
        log.exception("could not record the failure of %s", message.id)


def store_revoked(
    app: Celery, message: codec.TaskMessage, unrun: Callable[[], Context], reason: str = "expired"
) -> None:
    """The REVOKED result of a job that expired or was revoked before it ran (``unrun()`` gives
    its request)."""
    try:
        app.backend.mark_as_revoked(message.id, reason, request=unrun())
    except Exception:  # not run either way; only its REVOKED state is missing
        log.exception("could not record %s as %s", message.id, reason)


# --- the queues ---


def defer(sqs: Any, record: dict[str, Any], source: str, task_id: str, hop: int) -> Outcome:
    """Send the record's body on to ``source`` with an SQS delay of ``hop`` seconds."""
    try:
        sqs.send_message(QueueUrl=source, MessageBody=record["body"], DelaySeconds=hop)
    except Exception as error:  # SQS delivers the original again after its visibility
        reason = f"defer failed: {rules.describe(error)}"
        return Outcome(record["messageId"], "retry-later", task_id, reason)
    return Outcome(record["messageId"], "deferred", task_id, f"due in {hop}s or more")


def dead_letter_record(
    sqs: Any,
    dlq_url: str | None,
    record: dict[str, Any],
    source: str,
    task_id: str | None,
    reason: str,
) -> Outcome:
    """Send the record to the dead-letter queue with ``reason``; without one, or when it cannot
    take it, hand the record back to SQS (its redrive policy takes over)."""
    message_id = record["messageId"]
    reason = rules.clean_reason(reason)
    if not dlq_url:
        return Outcome(message_id, "retry-later", task_id, reason + " (no GALLEY_DLQ_URL)")
    try:
        dead_letter(sqs, dlq_url, record["body"], reason=reason, source_queue=source)
    except Exception as error:  # leave it to the queue's redrive policy
        sent = f"{reason}; DLQ send: {rules.describe(error)}"
        return Outcome(message_id, "retry-later", task_id, sent)
    return Outcome(message_id, "dead-lettered", task_id, reason)


def delete_record(sqs: Any, queue_url: str, record: dict[str, Any], outcome: Outcome) -> None:
    """Delete a settled record from its queue now, not when the batch returns.

    A delete that fails is logged and the record still counts as settled: reporting it
    would bring it back and run (or dead-letter, or hop) it a second time for sure, while
    the event source mapping deletes it anyway when this invocation returns.
    """
    receipt = record.get("receiptHandle")
    if not isinstance(receipt, str) or not receipt:
        log.warning(
            "message %s has no receiptHandle: deleted when the batch returns",
            outcome.message_id,
        )
        return
    try:
        sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=receipt)
    except Exception as error:
        log.warning(
            "message %s is %s but could not be deleted (%s); the event source mapping "
            "deletes it when the batch returns",
            outcome.message_id,
            outcome.action,
            rules.describe(error),
        )


def queue_url_from_arn(arn: Any, default: str) -> str:
    """The queue a record came from, as a URL on the same endpoint as ``default``."""
    if not isinstance(arn, str) or not arn.startswith("arn:"):
        return default
    name = arn.rsplit(":", 1)[-1]
    if not name or name == queue_name_from_url(default):
        return default
    return default.rsplit("/", 1)[0] + "/" + name
