"""Running SQS records through Celery's own execution path: the Lambda consumer's logic.

Each record is decoded with :mod:`runner.wire` and run by Celery's tracer (the code a prefork
worker runs: task signals, states and results in the S3 backend), then settled:

- ran (SUCCESS, or RETRY: the retry was already sent, delayed by SQS) -> acknowledged;
- FAILURE, unknown task, undecodable body -> dead-lettered with the reason, result recorded
  where there is a task id; if the dead-letter queue cannot take it, SQS redrives it instead;
- eta still in the future -> sent on with an SQS delay (a hop), never waited for;
- expired -> REVOKED, acknowledged;
- not started because the invocation is nearly out of time -> reported as a batch item
  failure, so SQS delivers it again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from celery import Celery, states
from celery.app.trace import trace_task
from celery.exceptions import NotRegistered

from runner import aws, delays, payloads, wire
from runner.deadletter import dead_letter
from runner.settings import ConsumerSettings, queue_name_from_url

log = logging.getLogger(__name__)

Action = Literal["acked", "dead-lettered", "deferred", "retry-later", "not-started"]


@dataclass(frozen=True)
class Outcome:
    """What happened to one record."""

    message_id: str
    action: Action
    task_id: str | None = None
    reason: str | None = None

    @property
    def failed(self) -> bool:
        """Reported in batchItemFailures: SQS will deliver it again."""
        return self.action in ("retry-later", "not-started")


class Consumer:
    """Runs a batch of SQS records with a configured Celery app."""

    def __init__(
        self,
        app: Celery,
        settings: ConsumerSettings,
        *,
        sqs: Any = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        hostname: str = "lambda",
    ) -> None:
        self.app = app
        self.settings = settings
        self.sqs = sqs or aws.client("sqs", region=settings.region)
        self.clock = clock
        self.hostname = f"galley@{hostname}"
        app.loader.import_default_modules()
        app.finalize(auto=True)
        delays.install(max_hop=settings.max_hop_seconds)

    # --- the batch ---

    def handle(self, event: dict[str, Any], context: Any = None) -> dict[str, Any]:
        """An SQS event in, ``{"batchItemFailures": [...]}`` out."""
        outcomes = self.run_batch(event.get("Records", []), context)
        return {
            "batchItemFailures": [{"itemIdentifier": o.message_id} for o in outcomes if o.failed]
        }

    def run_batch(self, records: list[dict[str, Any]], context: Any = None) -> list[Outcome]:
        outcomes = []
        for record in records:
            if self._out_of_time(context):
                outcome = Outcome(record["messageId"], "not-started", reason="invocation ending")
            else:
                outcome = self._run_safely(record)
            self._log(outcome)
            outcomes.append(outcome)
        return outcomes

    def _out_of_time(self, context: Any) -> bool:
        remaining = getattr(context, "get_remaining_time_in_millis", None)
        return remaining is not None and remaining() / 1000 <= self.settings.lambda_reserve_seconds

    # --- one record ---

    def _run_safely(self, record: dict[str, Any]) -> Outcome:
        """One record's failure is that record's: SQS delivers it again, the batch goes on."""
        try:
            return self.run_record(record)
        except Exception as error:
            log.exception("message %s could not be handled", record.get("messageId"))
            reason = f"consumer error: {type(error).__name__}: {error}"
            return Outcome(record["messageId"], "retry-later", reason=reason)

    def run_record(self, record: dict[str, Any]) -> Outcome:
        message_id = record["messageId"]
        source = _queue_url_from_arn(record.get("eventSourceARN"), self.settings.queue_url)
        try:
            message = wire.decode(record["body"])
        except wire.WireError as error:
            return self._dead_letter(record, source, None, f"undecodable message: {error.reason}")
        task = self.app.tasks.get(message.task)
        if task is None:
            self._store_failure(message, NotRegistered(message.task))
            return self._dead_letter(record, source, message.id, f"unknown task {message.task!r}")
        now = self.clock()
        expires = delays.parse_eta(message.headers.get("expires"))
        if expires and now > expires:
            self.app.backend.mark_as_revoked(message.id, "expired", request=self._request(message))
            return Outcome(message_id, "acked", message.id, "expired before it ran")
        eta = delays.parse_eta(message.headers.get("eta"))
        hop = delays.hop_seconds(eta, now, max_hop=self.settings.max_hop_seconds)
        if hop:
            return self._defer(record, source, message, hop)
        return self._run(record, source, message, task)

    def _run(
        self, record: dict[str, Any], source: str, message: wire.TaskMessage, task: Any
    ) -> Outcome:
        _, info, _, _ = trace_task(
            task,
            message.id,
            message.args,
            message.kwargs,
            self._request(message),
            hostname=self.hostname,
            loader=self.app.loader,
            app=self.app,
            eager=False,
        )
        if info is None or info.state in (states.SUCCESS, states.RETRY, states.IGNORED):
            self._delete_payload(message)
            return Outcome(record["messageId"], "acked", message.id)
        if info.state == states.REJECTED and getattr(info.retval, "requeue", False):
            return Outcome(record["messageId"], "retry-later", message.id, "rejected, requeue")
        reason = f"task {message.task} {info.state}: {type(info.retval).__name__}: {info.retval}"
        return self._dead_letter(record, source, message.id, reason)

    def _delete_payload(self, message: wire.TaskMessage) -> None:
        """The job is done with its S3 payload (a retry carries a payload of its own)."""
        pointer = payloads.trusted_pointer(
            message.headers, self.settings.results_bucket, message.id
        )
        if pointer is not None:
            try:
                payloads.delete(self.app.galley_s3, pointer)
            except Exception as error:  # the lifecycle rule removes it later
                log.warning("payload %s not deleted: %s", pointer["key"], error)

    def _request(self, message: wire.TaskMessage) -> dict[str, Any]:
        """The request dict Celery's worker builds for the tracer (celery.worker.request)."""
        properties = message.properties
        request = dict(message.headers)
        request.update(
            properties=properties,
            reply_to=properties.get("reply_to"),
            correlation_id=properties.get("correlation_id"),
            hostname=self.hostname,
            delivery_info={
                "exchange": message.delivery_info.get("exchange"),
                "routing_key": message.delivery_info.get("routing_key"),
                "priority": properties.get("priority"),
                "redelivered": False,
            },
            args=message.args,
            kwargs=message.kwargs,
            is_eager=False,
        )
        request.update(message.embed or {})  # callbacks, errbacks, chain, chord (as Celery)
        return request

    def _store_failure(self, message: wire.TaskMessage, exc: Exception) -> None:
        try:
            self.app.backend.mark_as_failure(message.id, exc, request=self._request(message))
        except Exception:  # the dead letter still carries the job and the reason
            log.exception("could not record the failure of %s", message.id)

    def _defer(
        self, record: dict[str, Any], source: str, message: wire.TaskMessage, hop: int
    ) -> Outcome:
        try:
            self.sqs.send_message(QueueUrl=source, MessageBody=record["body"], DelaySeconds=hop)
        except Exception as error:  # SQS delivers the original again after its visibility
            return Outcome(record["messageId"], "retry-later", message.id, f"defer failed: {error}")
        return Outcome(record["messageId"], "deferred", message.id, f"due in {hop}s or more")

    def _dead_letter(
        self, record: dict[str, Any], source: str, task_id: str | None, reason: str
    ) -> Outcome:
        message_id = record["messageId"]
        if not self.settings.dlq_url:
            return Outcome(message_id, "retry-later", task_id, reason + " (no GALLEY_DLQ_URL)")
        try:
            dead_letter(
                self.sqs, self.settings.dlq_url, record["body"], reason=reason, source_queue=source
            )
        except Exception as error:  # leave it to the queue's redrive policy
            return Outcome(message_id, "retry-later", task_id, f"{reason}; DLQ send: {error}")
        return Outcome(message_id, "dead-lettered", task_id, reason)

    def _log(self, outcome: Outcome) -> None:
        level = logging.INFO if outcome.action in ("acked", "deferred") else logging.WARNING
        log.log(
            level,
            "message %s (task %s): %s%s",
            outcome.message_id,
            outcome.task_id,
            outcome.action,
            f" - {outcome.reason}" if outcome.reason else "",
        )


def _queue_url_from_arn(arn: str | None, default: str) -> str:
    """The queue a record came from, as a URL on the same endpoint as ``default``."""
    if not arn:
        return default
    name = arn.rsplit(":", 1)[-1]
    if name == queue_name_from_url(default):
        return default
    return default.rsplit("/", 1)[0] + "/" + name
