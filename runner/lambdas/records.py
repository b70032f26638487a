"""Running SQS records through Celery's own execution path: the Lambda consumer's logic.

Each record is judged by :func:`runner.settlement.rules.judge` (the rules the worker shares), run by
Celery's tracer where it may run (the code a prefork worker runs: task signals, states and results
in the S3 backend), then settled:

- ran (SUCCESS, or RETRY: the retry was already sent, delayed by SQS) -> acknowledged;
- FAILURE, or refused by the verdict (unknown task, undecodable body, a payload pointer that is
  not the job's own, ...) -> dead-lettered with the reason, a FAILURE result recorded where there
  is a task id; if the dead-letter queue cannot take it, SQS redrives it instead;
- eta still in the future -> sent on with an SQS delay (a hop), never waited for;
- expired, or revoked (runner/core/revocations.py) -> REVOKED, acknowledged; a revoked job is
  never run nor sent on. The revocations are read at the start of a batch, at most once every
  ``GALLEY_REVOKE_REFRESH_SECONDS`` across warm invocations (one HeadObject; a ListObjectsV2
  when something was revoked since). An instance that has never read them whole (a cold start
  with S3 failing) runs nothing: the whole batch is reported as failures, with one line. A
  running job cannot be terminated here: no pool process to signal, and other invocations run
  it; the revocation stops every later run.

A settled record is deleted from its queue at once (DeleteMessage), not only by the event source
mapping when the batch returns: an invocation that times out later brings back only the records
it had not settled. Each record runs within the invocation's remaining time less
``GALLEY_LAMBDA_RESERVE_SECONDS``: it is not started without time left, and a task still running
when its budget is spent is stopped (SIGALRM raises :class:`InvocationEnding` inside it), left
unsettled and reported as a batch item failure, as is every record after it.

This module is the batch loop and the run of one record; budget.py holds the time budget,
settle.py the outcomes and the writes that settle a record (backend, dead letters, hops, deletes),
event.py reads the event's records, and measure.py counts outcomes as metrics (GALLEY_METRICS).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from celery import Celery, states
from celery.app.task import Context
from celery.app.trace import trace_task
from celery.exceptions import Reject

from runner.core import aws, metrics, queues, revocations
from runner.core.settings import ConsumerSettings
from runner.lambdas import event as sqs_event
from runner.lambdas import measure, settle
from runner.lambdas.budget import MAX_BUDGET_SECONDS, Budget, InvocationEnding, time_limit
from runner.lambdas.measure import BatchMetrics
from runner.lambdas.settle import Action, Outcome, Run
from runner.runtime import publish, tasklogs
from runner.settlement import links, rules
from runner.wire import codec, payloads

__all__ = [
    "MAX_BUDGET_SECONDS",
    "Action",
    "Budget",
    "Consumer",
    "InvocationEnding",
    "Outcome",
]

log = logging.getLogger(__name__)

#: Why a batch was handed back whole: this instance has not read the revocations yet.
UNREAD = "revocations not read"
#: Celery states after which a record is acknowledged.
_RAN = (states.SUCCESS, states.RETRY, states.IGNORED)


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
        self.sqs = sqs or aws.client("sqs", region=settings.region, use="consumer")
        self.clock = clock
        self.hostname = f"galley@{hostname}"
        self.revoked = revocations.Watch(
            aws.client("s3", region=settings.region, use="revocations"), settings.results_bucket
        )
        self.metrics: BatchMetrics | None = None
        if settings.metrics == metrics.EMF:
            recorder = metrics.Recorder(settings.stack_name, known=app.tasks.__contains__)
            self.metrics = BatchMetrics(recorder, lambda url: queues.role_of(settings, url))
        app.loader.import_default_modules()
        app.finalize(auto=True)
        publish.install(max_hop=settings.max_hop_seconds)

    # --- the batch ---

    def handle(self, event: Any, context: Any = None) -> dict[str, Any]:
        """Any event in, ``{"batchItemFailures": [...]}`` out; never raises."""
        records = sqs_event.records_of(event)
        outcomes: list[Outcome] = []
        try:
            self.run_batch(records, context, outcomes=outcomes)
        except Exception:  # a bug here must not fail (or ack) the whole batch
            log.exception("the batch stopped; records not yet settled will be delivered again")
            done = {o.message_id for o in outcomes}
            for record in records:
                message_id = sqs_event.message_id(record)
                if message_id is not None and message_id not in done:
                    outcomes.append(Outcome(message_id, "not-started", reason="consumer error"))
        if self.metrics is not None:
            self.metrics.write()
        failed = dict.fromkeys(o.message_id for o in outcomes if o.failed)
        return {"batchItemFailures": [{"itemIdentifier": m} for m in failed]}

    def run_batch(
        self,
        records: Iterable[Any],
        context: Any = None,
        *,
        outcomes: list[Outcome] | None = None,
    ) -> list[Outcome]:
        """Settle each record in turn; a record without a ``messageId`` is logged and skipped
        (it cannot be reported)."""
        outcomes = [] if outcomes is None else outcomes
        budget = Budget(context, self.settings.lambda_reserve_seconds)
        if not self._refresh_revoked():  # any job might be revoked: none is run
            for record in records:
                message_id = sqs_event.message_id(record)
                if message_id is not None:
                    outcomes.append(Outcome(message_id, "not-started", reason=UNREAD))
            return outcomes
        for record in records:
            message_id = sqs_event.message_id(record)
            if message_id is None:
                log.error(
                    "record skipped, it has no messageId to report: %s", sqs_event.sketch(record)
                )
                continue
            outcome = self._settle(record, message_id, budget)
            self._log(outcome)
            outcomes.append(outcome)
        return outcomes

    def _settle(self, record: dict[str, Any], message_id: str, budget: Budget) -> Outcome:
        """One record's failure is that record's: SQS delivers it again, the batch goes on."""
        remaining = budget.remaining()
        if budget.spent or (remaining is not None and remaining <= 0):
            return Outcome(message_id, "not-started", reason="invocation ending")
        try:
            outcome = self.run_record(record, budget=budget)
        except InvocationEnding:  # defensive: the alarm is armed only around the task
            budget.spent = True
            return Outcome(message_id, "retry-later", reason="invocation ending")
        except Exception as error:
            log.exception("message %s could not be handled", message_id)
            reason = f"consumer error: {rules.describe(error)}"
            return Outcome(message_id, "retry-later", reason=reason)
        if not outcome.failed:
            self._delete(record, outcome)
        if self.metrics is not None:
            self.metrics.settled(self._source(record), outcome)
        return outcome

    # --- one record ---

    def run_record(self, record: dict[str, Any], *, budget: Budget | None = None) -> Outcome:
        message_id = record["messageId"]
        body = record.get("body")
        if not isinstance(body, str):
            return Outcome(message_id, "retry-later", reason="record has no text body")
        verdict = rules.judge(
            body,
            now=self.clock(),
            is_known=self.app.tasks.__contains__,
            max_hop=self.settings.max_hop_seconds,
            results_bucket=self.settings.results_bucket,
        )
        outcome = self._follow(record, verdict, budget)
        if verdict.message is None:
            return outcome
        return dataclasses.replace(outcome, task=verdict.message.task)

    def _follow(
        self, record: dict[str, Any], verdict: rules.Verdict, budget: Budget | None
    ) -> Outcome:
        """Carry out the verdict on a record."""
        message_id = record["messageId"]
        source = self._source(record)
        message = verdict.message
        if verdict.action == "dead-letter":
            assert verdict.reason is not None
            if message is not None:
                self._store_failure(message, verdict.reason)
            task_id = message.id if message else None
            return self._dead_letter(record, source, task_id, verdict.reason)
        assert message is not None
        if message.id in self.revoked.ids:
            self._store_revoked(message, "revoked")
            return Outcome(message_id, "revoked", message.id, "revoked")
        if verdict.action == "expire":
            self._store_revoked(message)
            return Outcome(message_id, "expired", message.id, verdict.reason)
        if verdict.action == "defer":
            assert verdict.delay_seconds is not None
            return self._defer(record, source, message, verdict.delay_seconds)
        unsendable = links.problem(self.app, message.headers, message.embed)
        if unsendable is not None:  # Celery would fail it after its body ran
            reason = f"task {message.task} refused before it ran: {unsendable}"
            self._store_failure(message, reason)
            return self._dead_letter(record, source, message.id, reason)
        return self._run(record, source, message, budget)

    def _run(
        self,
        record: dict[str, Any],
        source: str,
        message: codec.TaskMessage,
        budget: Budget | None,
    ) -> Outcome:
        """Run the job through Celery's tracer; its outcome notes the run (its final state, how
        long it took, how long it waited since it was due: runner/lambdas/measure.py)."""
        due = measure.due(record, message)
        began, clock = self.clock().timestamp(), time.monotonic()
        outcome, state = self._trace(record, source, message, budget)
        run = Run(state, time.monotonic() - clock, began - due if due is not None else 0.0)
        return dataclasses.replace(outcome, run=run)

    def _trace(
        self,
        record: dict[str, Any],
        source: str,
        message: codec.TaskMessage,
        budget: Budget | None,
    ) -> tuple[Outcome, str | None]:
        message_id = record["messageId"]
        seconds = budget.remaining() if budget is not None else None
        traced: tuple[Any, ...] | None = None
        try:
            with time_limit(seconds):
                traced = trace_task(
                    self.app.tasks[message.task],
                    message.id,
                    message.args,
                    message.kwargs,
                    self._request(message, source, sqs_event.receive_count(record)),
                    hostname=self.hostname,
                    loader=self.app.loader,
                    app=self.app,
                    eager=False,
                )
        except InvocationEnding:
            if budget is not None:
                budget.spent = True
            if traced is None:  # stopped inside the task (not just after it returned)
                reason = f"stopped after its budget of {seconds or 0:.1f}s: invocation ending"
                return Outcome(message_id, "retry-later", message.id, reason), None
        except SystemExit as exited:  # a worker's pool process would be lost: requeued
            code = rules.safe_repr(exited.code)
            reason = f"task {message.task} exited (SystemExit {code}): requeued"
            return Outcome(message_id, "retry-later", message.id, reason), None
        except Reject as rejected:  # raised by the tracer's own result handling
            if rejected.requeue:
                return Outcome(message_id, "retry-later", message.id, "rejected, requeue"), None
            reason = f"task {message.task} rejected: {rejected.reason}"
            return self._dead_letter(record, source, message.id, reason), None
        except Exception as error:  # the tracer itself failed: the job cannot be run here
            reason = f"task {message.task} could not be traced: {rules.describe(error)}"
            return self._dead_letter(record, source, message.id, reason), None
        assert traced is not None
        retval, info, runtime, _ = traced
        state, retval = _final_state(retval, info, runtime)
        return self._settle_trace(record, source, message, state, retval), state

    def _settle_trace(
        self,
        record: dict[str, Any],
        source: str,
        message: codec.TaskMessage,
        state: str,
        retval: Any,
    ) -> Outcome:
        """Settle the run's final state (and its return value or exception)."""
        if state in _RAN:
            self._delete_payload(message)
            return Outcome(record["messageId"], "acked", message.id)
        if state == states.REJECTED and getattr(retval, "requeue", False):
            return Outcome(record["messageId"], "retry-later", message.id, "rejected, requeue")
        reason = f"task {message.task} {state}: {_describe_value(retval)}"
        return self._dead_letter(record, source, message.id, reason)

    def _delete_payload(self, message: codec.TaskMessage) -> None:
        """The job is done with its S3 payload (a retry carries a payload of its own). Nothing
        here may turn a run that succeeded into a failure: every error is logged."""
        try:
            pointer = payloads.trusted_pointer(
                message.headers, self.settings.results_bucket, message.id
            )
            if pointer is not None:
                payloads.delete(self.app.galley_s3, pointer)
        except Exception as error:  # the lifecycle rule removes it later
            log.warning("payload of %s not deleted: %s", message.id, rules.describe(error))

    def _request(
        self,
        message: codec.TaskMessage,
        source: str | None = None,
        receive_count: int | None = None,
    ) -> dict[str, Any]:
        """The request dict Celery's worker builds for the tracer (celery.worker.request).

        Delivered on the role of ``source`` (runner.core.queues), whatever the message says, as
        the worker's transport does: a retry goes back to the queue the job came from, and a
        routing key naming no queue of the app (an older producer's SQS name) cannot fail it."""
        properties = message.properties
        routing_key = (source and queues.role_of(self.settings, source)) or queues.JOBS
        request = dict(message.headers)
        request.update(
            properties=properties,
            reply_to=properties.get("reply_to"),
            correlation_id=properties.get("correlation_id"),
            hostname=self.hostname,
            delivery_info={
                "exchange": "",  # as the worker's transport: a retry goes back to its queue
                "routing_key": routing_key,
                "priority": properties.get("priority"),
                "redelivered": False,
            },
            args=message.args,
            kwargs=message.kwargs,
            is_eager=False,
        )
        if receive_count is not None:
            request[tasklogs.RECEIVE_COUNT] = receive_count
        request.update(message.embed or {})  # callbacks, errbacks, chain, chord (as Celery)
        return request

    # --- settling (runner.lambdas.settle) ---

    def _store_failure(self, message: codec.TaskMessage, reason: str) -> None:
        settle.store_failure(self.app, message, reason, lambda: self._unrun(message))

    def _store_revoked(self, message: codec.TaskMessage, reason: str = "expired") -> None:
        settle.store_revoked(self.app, message, lambda: self._unrun(message), reason)

    def _refresh_revoked(self) -> bool:
        """Read the revocations unless a warm invocation read them less than
        ``GALLEY_REVOKE_REFRESH_SECONDS`` ago; S3 failing keeps the last ones read. False while
        this instance has never read them whole (a cold start with S3 failing, or a listing
        longer than one refresh may take): the batch is then handed back, with one line."""
        watch = self.revoked
        last = watch.refreshed_at
        now = watch.clock()
        fresh = last is not None and now - last < self.settings.revoke_refresh_seconds
        if fresh and not watch.listing:
            return True
        try:
            watch.refresh()
        except Exception as error:
            if not watch.complete:
                self._hand_back(f"not read ({rules.describe(error)})")
                return False
            log.warning(
                "revocations not read (the last ones read apply): %s", rules.describe(error)
            )
        if not watch.complete:
            self._hand_back(f"not all read yet ({len(watch.ids)} so far; the rest next batch)")
            return False
        return True

    def _hand_back(self, why: str) -> None:
        log.error(
            "revocations in s3://%s/%s %s: the batch is handed back to SQS whole, not run (any "
            "job in it might be revoked); it is delivered again after its visibility timeout",
            self.settings.results_bucket,
            revocations.PREFIX,
            why,
        )

    def _unrun(self, message: codec.TaskMessage) -> Context:
        """The request of a job that did not run, for the result backend: Celery's backend reads
        it by attribute (``request.chord``); its chain and errbacks are not followed, as Celery's
        worker does for an unknown task (``Consumer.on_unknown_task``). Its chord is kept: the
        chord is counted in S3 (runner.runtime.chords), so a header task refused or expired
        here still counts, and its body fails with a ChordError instead of waiting forever (as
        Celery's worker counts a revoked one, ``Request.revoked``)."""
        return Context({**self._request(message), "chain": None, "errbacks": None})

    def _defer(
        self, record: dict[str, Any], source: str, message: codec.TaskMessage, hop: int
    ) -> Outcome:
        return settle.defer(self.sqs, record, source, message.id, hop)

    def _dead_letter(
        self, record: dict[str, Any], source: str, task_id: str | None, reason: str
    ) -> Outcome:
        # a record from the long-jobs queue goes to that queue's DLQ when it is known
        from_long = queues.role_of(self.settings, source) == queues.LONG
        dlq_url = (from_long and self.settings.long_dlq_url) or self.settings.dlq_url
        return settle.dead_letter_record(self.sqs, dlq_url, record, source, task_id, reason)

    def _delete(self, record: dict[str, Any], outcome: Outcome) -> None:
        settle.delete_record(self.sqs, self._source(record), record, outcome)

    def _source(self, record: dict[str, Any]) -> str:
        return settle.queue_url_from_arn(record.get("eventSourceARN"), self.settings.queue_url)

    def _log(self, outcome: Outcome) -> None:
        level = (
            logging.INFO if outcome.action in ("acked", "deferred", "revoked") else logging.WARNING
        )
        log.log(
            level,
            "message %s (task %s): %s%s",
            outcome.message_id,
            outcome.task_id,
            outcome.action,
            f" - {outcome.reason}" if outcome.reason else "",
        )


def _final_state(retval: Any, info: Any, runtime: Any) -> tuple[str, Any]:
    """What the tracer reports, ``(retval, TraceInfo or None, runtime)``, as the run's state
    and its return value or exception."""
    if info is not None:
        return info.state, info.retval
    if runtime is not None:  # no TraceInfo and a runtime: the body returned
        return states.SUCCESS, retval
    # no TraceInfo, no runtime: the tracer failed before the body (an ExceptionInfo)
    return states.FAILURE, getattr(retval, "exception", retval)


def _describe_value(value: Any) -> str:
    if isinstance(value, BaseException):
        return rules.describe(value)
    return f"{type(value).__name__}: {rules.safe_repr(value, 1000)}"
