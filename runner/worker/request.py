"""Celery's worker Request, plus: a job that failed for good goes to the dead-letter queue.

With late acks Celery acknowledges a failed task's message (its FAILURE result is stored), so the
job itself is gone. Galley first sends the message, byte for byte, to ``GALLEY_DLQ_URL`` with the
reason attached (runner/deadletter.py), where `galley dlq` shows it and can redrive it. Retries,
requeues (a lost worker process) and revocations are Celery's as before.
"""

from __future__ import annotations

import logging
from typing import Any

from billiard.einfo import ExceptionWithTraceback
from billiard.exceptions import WorkerLostError
from celery.exceptions import Ignore, Reject, Retry, Terminated
from celery.worker.request import Request as CeleryRequest

from runner import payloads
from runner.deadletter import dead_letter
from runner.worker.hops import sqs_client

log = logging.getLogger(__name__)

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


def is_final_failure(exc: BaseException) -> bool:
    if isinstance(exc, ExceptionWithTraceback):
        exc = exc.exc
    if isinstance(exc, Reject):
        return not exc.requeue
    return not isinstance(exc, _NOT_FINAL)


class Request(CeleryRequest):
    #: The job's final failure is safely in the dead-letter queue.
    _galley_dead_lettered = False
    #: The job failed for good but could not be dead-lettered: give it back to SQS instead of
    #: acknowledging it (its redrive policy moves it to the DLQ after maxReceiveCount).
    _galley_keep = False

    def acknowledge(self) -> None:
        """Ack (unless the job must be kept), then delete the job's S3 payload: nothing reads it
        again, unless the job went to the DLQ, whose copy still points at it."""
        if self._galley_keep:
            super().reject(requeue=True)
            return
        acked_before = self.acknowledged
        super().acknowledge()
        if acked_before or self._galley_dead_lettered:
            return
        try:
            pointer = payloads.trusted_pointer(
                self.request_dict, self.task.app.galley_settings.results_bucket, self.id
            )
        except payloads.PayloadError as error:
            log.warning("%s; not deleted", error)
            return
        if pointer:
            try:
                payloads.delete(self.task.app.galley_s3, pointer)
            except Exception as error:  # the bucket's lifecycle rule removes it later
                log.warning("payload %s not deleted: %s", pointer["key"], error)

    def reject(self, requeue: bool = False) -> None:
        if not requeue and self._galley_dead_lettered:
            # kombu keeps a rejected message on a queue with a redrive policy, so it would run
            # again; it is in the DLQ already: delete it.
            self.acknowledge()
            return
        if not requeue and self._galley_keep:
            requeue = True
        super().reject(requeue=requeue)

    def on_failure(
        self, exc_info: Any, send_failed_event: bool = True, return_ok: bool = False
    ) -> Any:
        if is_final_failure(exc_info.exception):
            self._galley_keep = not self._dead_letter(exc_info.exception)
        return super().on_failure(exc_info, send_failed_event, return_ok)

    def _dead_letter(self, exc: BaseException) -> bool:
        """Send the job to GALLEY_DLQ_URL with the reason; False if it could not be."""
        if isinstance(exc, ExceptionWithTraceback):
            exc = exc.exc
        reason = f"task {self.name} failed: {type(exc).__name__}: {exc}"
        settings = self.task.app.galley_settings
        info = self.message.delivery_info or {}
        sqs_message, queue_url = info.get("sqs_message"), info.get("sqs_queue")
        if not settings.dlq_url or not sqs_message:
            log.error("%s (no GALLEY_DLQ_URL: left to the queue's redrive policy)", reason)
            return False
        try:
            dead_letter(
                sqs_client(settings.region),
                settings.dlq_url,
                sqs_message["Body"],
                reason=reason,
                source_queue=queue_url or settings.queue_url,
            )
            self._galley_dead_lettered = True
            return True
        except Exception:
            log.exception(
                "%s; could not send it to %s: left to the queue's redrive policy",
                reason,
                settings.dlq_url,
            )
            return False
