"""The receive loop: long-polls one SQS queue with boto3 and hands messages to the worker.

kombu's SQS transport receives with its own pycurl client: no timeout on any request (a half-open
connection hangs the worker for good), and a 5xx, a timeout or a 4xx on ReceiveMessage ends in an
"Unrecoverable error" that stops the worker. Galley receives here instead, in a thread of its own:

- every call has connect and read timeouts (the read timeout covers the 20 s long poll);
- any error — 5xx, throttling, reset, timeout, access denied, a deleted queue — is logged and
  retried with exponential backoff and jitter, so the worker rides out an outage and resumes by
  itself when the network heals;
- it asks for no more messages than the worker has room for (its prefetch limit, less what it
  already holds), in full batches of up to 10 while there is a backlog, and records each
  message in the ledger before handing it on (so the heartbeat covers it from its first second);
- when it is stopped mid-poll, the messages that poll still brings are released at once, not left
  invisible for a whole visibility timeout (celery#8875).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from botocore.exceptions import ClientError

from runner.core import aws, limits
from runner.worker.ledger import Entry, Ledger
from runner.worker.settler import backoff

log = logging.getLogger(__name__)

#: A queue whose jobs typically take longer than this (start to outcome) runs long
#: jobs: its worker holds no message no process has started (Receiver._reserve_one).
LONG_JOB_SECONDS = 1.0
#: What each received message carries besides its body.
SYSTEM_ATTRIBUTES = ["ApproximateReceiveCount", "SentTimestamp"]
#: Read timeout of the receive client (``aws.USES["receive"]``): past the longest long poll.
READ_TIMEOUT = aws.RECEIVE_READ_TIMEOUT
#: Errors that will not pass by themselves: logged as errors, naming what to fix.
CONFIG_ERRORS = {
    "AWS.SimpleQueueService.NonExistentQueue": "the queue does not exist (GALLEY_QUEUE_URL)",
    "QueueDoesNotExist": "the queue does not exist (GALLEY_QUEUE_URL)",
    "AccessDenied": "access denied: the worker's role needs sqs:ReceiveMessage on the queue",
    "AccessDeniedException": "access denied: the worker's role needs sqs:ReceiveMessage",
}


class Intake:
    """What the receivers of one queue share: the room their polls in flight have asked for, and
    whether the queue has a backlog (the last poll came back with all it asked for)."""

    def __init__(self) -> None:
        self.changed = threading.Condition()
        self.reserved = 0
        self.backlog = False


class Receiver(threading.Thread):
    """Receives from ``queue_url`` until stopped; ``deliver(entries)`` gets each batch.

    Several receivers may share one :class:`Intake`: the ``lead`` always polls (an idle queue
    costs one long poll at a time), the others only while there is a backlog, so that the next
    batch is on its way while the last one runs (a ReceiveMessage takes a round trip and more)."""

    def __init__(
        self,
        sqs: Any,
        queue_url: str,
        ledger: Ledger,
        deliver: Callable[[list[tuple[Entry, dict[str, Any]]]], None],
        release: Callable[[Entry], None],
        *,
        capacity: Callable[[], int],
        started: Callable[[], int] = lambda: 0,
        wait_time_seconds: int = limits.MAX_WAIT_TIME_SECONDS,
        intake: Intake | None = None,
        lead: bool = True,
    ) -> None:
        name = queue_url.rsplit("/", 1)[-1]
        super().__init__(name=f"galley-receiver:{name}{'' if lead else '+'}", daemon=True)
        self.sqs = sqs
        self.queue_url = queue_url
        self.ledger = ledger
        self.deliver = deliver
        self.release = release
        self.capacity = capacity
        self.started = started
        self.wait_time_seconds = wait_time_seconds
        self.intake = intake or Intake()
        self.lead = lead
        self.stopped = threading.Event()
        self.failures = 0
        self.receives = 0

    def stop(self) -> None:
        self.stopped.set()
        with self.intake.changed:
            self.intake.changed.notify_all()

    def run(self) -> None:
        while not self.stopped.is_set():
            try:
                self._poll_once()
            except Exception:  # never let the thread die: the worker would stop receiving
                log.exception("receiving from %s failed unexpectedly; going on", self.queue_url)
                self.stopped.wait(1.0)

    def _poll_once(self) -> None:
        ask = self._reserve()
        if ask <= 0:
            return
        try:
            messages = self._receive(ask)
        except Exception as error:
            self._unreserve(ask, backlog=False)
            self._failed(error)
            return
        if self.failures:
            log.warning("receiving from %s again after %d failures", self.queue_url, self.failures)
            self.failures = 0
        try:
            self._hand_over(messages)
        finally:
            self._unreserve(ask, backlog=len(messages) >= ask)

    def _reserve(self) -> int:
        """How many messages to ask for, reserved against the room the worker has; 0 after a
        short wait when this receiver is not to poll now.

        A worker with a backlog asks for whole batches (ten, or half its limit when that is
        smaller, so a small worker still has its next job at hand) once it has room for one, so a
        busy queue costs one ReceiveMessage per ten jobs, not one per job finished; a worker
        holding nothing asks at once. Messages whose outcome
        is decided (a delete waiting for its batch) take no room."""
        limit = self.capacity()
        if limit <= 0:
            limit = limits.MAX_BATCH_MESSAGES
        if self.ledger.typical_hold(self.queue_url) > LONG_JOB_SECONDS:
            return self._reserve_one(limit)
        batch = min(max(1, limit // 2), limits.MAX_BATCH_MESSAGES)
        intake = self.intake
        with intake.changed:
            if not (self.lead or intake.backlog):
                intake.changed.wait(1.0)
                return 0
            reserved = intake.reserved
            free = limit - self.ledger.held(self.queue_url) - reserved
            if free >= batch:
                ask = min(free, limits.MAX_BATCH_MESSAGES)
                intake.reserved += ask
                return ask
        # no room for a batch: wait until jobs are decided (or another poll returns)
        self.ledger.wait_below(self.queue_url, limit - batch - reserved + 1, timeout=0.25)
        return 0

    def _reserve_one(self, limit: int) -> int:
        """Jobs that run for seconds: no buffer. A message is asked for, one at a time, only
        while every message held has started (a process is free, or about to be), so a job
        never waits in this worker while another worker is idle; a ReceiveMessage per job is
        nothing beside a job that long."""
        intake = self.intake
        with intake.changed:
            held = self.ledger.held(self.queue_url) + intake.reserved
            if self.lead and held < limit and held <= self.started():
                intake.reserved += 1
                return 1
        self.stopped.wait(0.1)
        return 0

    def _unreserve(self, asked: int, *, backlog: bool) -> None:
        with self.intake.changed:
            self.intake.reserved -= asked
            self.intake.backlog = backlog
            self.intake.changed.notify_all()

    def _receive(self, count: int) -> list[dict[str, Any]]:
        self.receives += 1
        response = self.sqs.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=count,
            WaitTimeSeconds=self.wait_time_seconds,
            MessageSystemAttributeNames=SYSTEM_ATTRIBUTES,
            MessageAttributeNames=["All"],
        )
        messages = response.get("Messages") if isinstance(response, dict) else None
        return [m for m in messages or [] if isinstance(m, dict) and m.get("ReceiptHandle")]

    def _hand_over(self, messages: list[dict[str, Any]]) -> None:
        received = [(self.ledger.add(self.queue_url, m), m) for m in messages]
        if not received:
            return
        if self.stopped.is_set():  # stopped while this poll was out: give them back now
            for entry, _ in received:
                self.release(entry)
            return
        try:
            self.deliver(received)
        except Exception:
            log.exception("could not hand %d message(s) over; giving them back", len(received))
            for entry, _ in received:
                self.release(entry)

    def _failed(self, error: Exception) -> None:
        self.failures += 1
        code = error.response.get("Error", {}).get("Code") if isinstance(error, ClientError) else ""
        hint = CONFIG_ERRORS.get(str(code))
        pause = backoff(self.failures, cap=30.0 if hint else 15.0)
        if hint:
            log.error("receiving from %s failed: %s (%s)", self.queue_url, hint, error)
        elif self.failures == 1 or self.failures % 10 == 0:
            log.warning(
                "receiving from %s failed (%s; %d in a row); retrying",
                self.queue_url,
                error,
                self.failures,
            )
        self.stopped.wait(max(pause, 0.05))


def join_all(receivers: list[Receiver], timeout: float) -> list[Receiver]:
    """Wait for stopped receivers to finish their last poll; returns those still running."""
    deadline = time.monotonic() + timeout
    for receiver in receivers:
        receiver.join(max(0.0, deadline - time.monotonic()))
    return [r for r in receivers if r.is_alive()]
