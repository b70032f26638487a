"""Celery's worker Request, plus: a job that failed for good goes to the dead-letter queue.

With late acks Celery acknowledges a failed task's message (its FAILURE result is stored), so the
job itself would be gone. Galley notes the reason on the message first; the transport then
dead-letters it, byte for byte, with the reason attached (runner/worker/settler.py), where
`galley dlq` shows it and can redrive it. Retries, requeues (a lost worker process) and
revocations are Celery's as before.
"""

from __future__ import annotations

import logging
from typing import Any

from billiard.einfo import ExceptionWithTraceback
from billiard.exceptions import WorkerLostError
from botocore.exceptions import BotoCoreError, ClientError
from celery.exceptions import Ignore, Reject, Retry, Terminated
from celery.worker import state as worker_state
from celery.worker.request import Request as CeleryRequest
from kombu.exceptions import OperationalError

from runner.errors import PayloadError
from runner.wire import payloads
from runner.worker import metrics, registry
from runner.worker.custody import current

log = logging.getLogger(__name__)

#: runner.runtime.tasklogs.RECEIVE_COUNT (the worker tier cannot import the runtime's).
RECEIVE_COUNT = "galley_receive_count"

#: Outcomes that are not a final failure of the job.
_NOT_FINAL = (
    Terminated,
    SystemExit,
    KeyboardInterrupt,
    Ignore,
    Retry,
    WorkerLostError,
    MemoryError,
)


#: What a publish that failed for the moment raises (SQS unreachable, throttled, 5xx).
_PASSING_FAULTS: tuple[type[BaseException], ...] = (
    BotoCoreError,
    ClientError,
    OperationalError,
    OSError,
)


def is_unpublished_retry(exc: BaseException) -> bool:
    """Celery raises ``Reject(publish error, requeue=False)`` when a task's ``self.retry()``
    cannot send the retry: a passing fault of SQS, not the job's failure."""
    if isinstance(exc, ExceptionWithTraceback):
        exc = exc.exc
    return isinstance(exc, Reject) and isinstance(exc.reason, _PASSING_FAULTS)


def _is_ignore(exc: BaseException) -> bool:
    return isinstance(exc.exc if isinstance(exc, ExceptionWithTraceback) else exc, Ignore)


def is_final_failure(exc: BaseException) -> bool:
    if isinstance(exc, ExceptionWithTraceback):
        exc = exc.exc
    if isinstance(exc, Reject):
        return not exc.requeue
    return not isinstance(exc, _NOT_FINAL)


class Request(CeleryRequest):
    #: The job failed for good: its message goes to the dead-letter queue, not away.
    _galley_dead_letter = False

    def __init__(self, message: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(message, *args, **kwargs)
        # SQS's receive count reaches the task's request (task.request.galley_receive_count),
        # in the pool child too: JSON log lines carry it (runner/runtime/tasklogs.py)
        sqs_message = (message.delivery_info or {}).get("sqs_message") or {}
        count = (sqs_message.get("Attributes") or {}).get("ApproximateReceiveCount")
        if count is not None:
            self._request_dict[RECEIVE_COUNT] = int(count)
        metrics.received(self)

    def send_event(self, type: str, **fields: Any) -> None:  # noqa: A002 (Celery's name)
        """Where Celery reports an outcome as a task event: the worker registry counts it too
        (runner/worker/registry.py), and the job metrics (runner/worker/metrics.py), whether
        events are on or not (on SQS they are off)."""
        registry.count(type, self.name)
        metrics.event(self, type, fields)
        super().send_event(type, **fields)

    def on_accepted(self, pid: int, time_accepted: float) -> None:
        """A pool process took the job: the ledger times its length from here, not from its
        receipt (runner/worker/receiver.py buffers messages only for queues of short jobs)."""
        super().on_accepted(pid, time_accepted)
        held = current()
        if held is not None:
            held.started(self.message.delivery_tag)

    def acknowledge(self) -> None:
        """Ack, then delete the job's S3 payload: nothing reads it again, unless the job went
        to the DLQ, whose copy still points at it."""
        acked_before = self.acknowledged
        super().acknowledge()
        if acked_before or self._galley_dead_letter:
            return
        try:
            pointer = payloads.trusted_pointer(
                self.request_dict, self.task.app.galley_settings.results_bucket, self.id
            )
        except PayloadError as error:
            log.warning("%s; not deleted", error)
            return
        if pointer:
            try:
                payloads.delete(self.task.app.galley_s3, pointer)
            except Exception as error:  # the bucket's lifecycle rule removes it later
                log.warning("payload %s not deleted: %s", pointer["key"], error)

    def on_failure(
        self, exc_info: Any, send_failed_event: bool = True, return_ok: bool = False
    ) -> Any:
        if is_unpublished_retry(exc_info.exception):
            # give the message back: it runs again (the retry it asked for), nothing is lost
            exc = exc_info.exception
            exc = exc.exc if isinstance(exc, ExceptionWithTraceback) else exc
            log.warning(
                "%s[%s]: its retry could not be sent (%s); requeued", self.name, self.id, exc.reason
            )
            exc.requeue = True
        if is_final_failure(exc_info.exception):
            self._note_dead_letter(exc_info.exception)
        elif _is_ignore(exc_info.exception) and self.id in worker_state.revoked:
            metrics.revoked(self)  # found revoked in its pool process (runner/runtime/app.py)
        return super().on_failure(exc_info, send_failed_event, return_ok)

    def _note_dead_letter(self, exc: BaseException) -> None:
        """The ack or reject that follows dead-letters the message with this reason."""
        if isinstance(exc, ExceptionWithTraceback):
            exc = exc.exc
        reason = f"task {self.name} failed: {type(exc).__name__}: {exc}"
        held = current()
        if held is None:  # not received through Galley's transport (a test's fake message)
            log.error("%s (not dead-lettered: no Galley transport)", reason)
            return
        held.note_reason(self.message.delivery_tag, reason)
        self._galley_dead_letter = True
