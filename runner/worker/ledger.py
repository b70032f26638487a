"""Every SQS message this worker process holds, from its receipt until it is settled.

One :class:`Ledger` per process, whatever happens to Celery's consumer (it restarts after errors,
its channels close): the receiver adds each message it receives, the heartbeat keeps every entry
invisible on SQS, and an entry leaves the ledger only when the settler has deleted it, released it,
or dead-lettered it — on the queue it was received from, never on one the message names.

A message is in one of three states:

- ``held``: received, not settled: buffered, reserved, rate-limited, waiting for its eta, running.
- ``settling``: its outcome is decided (delete, release, dead-letter, forward: sent back to its
  queue with a delay, then deleted) and queued for the settler.
- gone: settled on SQS (or given up: it reappears after its visibility timeout).

A message can also carry a *reason* (set before Celery rejects or acknowledges it): an
acknowledged or rejected message with a reason is dead-lettered with it instead of deleted.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Literal

Action = Literal["delete", "release", "dead-letter", "forward"]


@dataclass
class Entry:
    """One received message."""

    queue_url: str
    receipt: str
    message_id: str
    body: str
    received_at: float = field(default_factory=time.monotonic)
    #: When (monotonic) a pool process took it, if one has.
    started_at: float | None = None
    #: Why it cannot be run: an ack or reject then dead-letters it with this.
    reason: str | None = None
    #: Set once its outcome is decided: the settler owns it from then on.
    action: Action | None = None
    #: For ``forward``: the SQS delay of the copy sent back to the queue (a delay hop).
    delay_seconds: int = 0
    #: When (monotonic) its visibility runs out unless extended: from then on SQS may hand the
    #: message out again — to another worker, or to this one under a new receipt handle.
    visible_until: float = math.inf
    #: SQS's ApproximateReceiveCount when it was received (this delivery included).
    receive_count: int = 1


#: A message delivered this many times without finishing is dead-lettered when it would be given
#: back once more: without it a job that is requeued (``Reject(requeue=True)``) or kills its
#: worker process every time would loop for ever on a queue without a RedrivePolicy.
MAX_DELIVERIES = 10
#: Weight of the newest outcome in :meth:`Ledger.typical_hold`'s moving average.
HOLD_WEIGHT = 0.2


class Ledger:
    """Thread-safe map from receipt handle to :class:`Entry`.

    With ``visibility_timeout`` it also tracks when each entry's visibility runs out (from its
    receipt, pushed back by each heartbeat that extended it), so that an outcome which only makes
    sense while the message is ours (a release) is not carried out after SQS took it back.
    """

    def __init__(self, visibility_timeout: float | None = None) -> None:
        self._entries: dict[str, Entry] = {}
        #: Per queue: how long its jobs typically take, start (or receipt) to outcome (a moving
        #: average, seconds): the receiver buffers messages only for queues of short jobs.
        self._typical_hold: dict[str, float] = {}
        self._changed = threading.Condition()
        #: Per receiver waiting in :meth:`wait_below`: (queue URL, limit). Only a place freeing
        #: up below a waiter's limit wakes the waiters: not every receipt, start or deletion.
        self._waiters: list[tuple[str, int]] = []
        self.visibility_timeout = visibility_timeout
        #: How close to running out a visibility counts as run out: receipt and heartbeat times
        #: are taken after SQS's own clock started (a quarter of the timeout, at most 5 s; the
        #: heartbeat extends every third, so a working heartbeat never comes this close).
        self.lapse_margin = min(5.0, visibility_timeout / 4) if visibility_timeout else 0.0

    # --- what the receiver and the transport call ---

    def add(self, queue_url: str, sqs_message: dict[str, Any]) -> Entry:
        entry = Entry(
            queue_url=queue_url,
            receipt=sqs_message["ReceiptHandle"],
            message_id=str(sqs_message.get("MessageId", "")),
            body=str(sqs_message.get("Body", "")),
            receive_count=_receive_count(sqs_message),
        )
        if self.visibility_timeout:
            entry.visible_until = entry.received_at + self.visibility_timeout
        with self._changed:
            self._entries[entry.receipt] = entry
        return entry

    def get(self, receipt: str) -> Entry | None:
        with self._changed:
            return self._entries.get(receipt)

    def started(self, receipt: str) -> None:
        """A pool process took the message: its job's length counts from now."""
        with self._changed:
            entry = self._entries.get(receipt)
            if entry is not None and entry.started_at is None:
                entry.started_at = time.monotonic()

    def note_reason(self, receipt: str, reason: str) -> None:
        """The message cannot be run: when it is acknowledged or rejected, dead-letter it."""
        with self._changed:
            entry = self._entries.get(receipt)
            if entry is not None and entry.reason is None:
                entry.reason = reason

    def decide(
        self, receipt: str, action: Action, reason: str | None = None, delay_seconds: int = 0
    ) -> Entry | None:
        """Fix the outcome of a held message; returns it for the settler, or None when it is
        unknown or already decided (a second ack of the same message does nothing)."""
        with self._changed:
            entry = self._entries.get(receipt)
            if entry is None or entry.action is not None:
                return None
            if reason is not None and entry.reason is None:
                entry.reason = reason
            if action == "delete" and entry.reason is not None:
                action = "dead-letter"
            if action == "release" and entry.receive_count >= MAX_DELIVERIES:
                action = "dead-letter"
                entry.reason = entry.reason or (
                    f"delivered {entry.receive_count} times without finishing (requeued, or its "
                    "worker process was lost, each time)"
                )
            entry.action = action
            entry.delay_seconds = delay_seconds
            if action != "release":  # a release says nothing of how long the job runs
                # from its start: a short job that waited behind others in this worker's
                # buffer is still a short job (receipt, for one settled without running)
                began = entry.started_at if entry.started_at is not None else entry.received_at
                held_for = time.monotonic() - began
                before = self._typical_hold.get(entry.queue_url, held_for)
                self._typical_hold[entry.queue_url] = before + (held_for - before) * HOLD_WEIGHT
            self._wake_if_room(entry.queue_url)  # one fewer held: a receiver may ask for more
            return entry

    def extended(self, receipts: list[str], until: float) -> None:
        """The heartbeat extended these receipts' visibility, to at least ``until`` (monotonic).

        An entry whose visibility had already run out stays run out: SQS may have handed the
        message out again meanwhile, and an old receipt handle's extension does not make it ours.
        """
        now = time.monotonic()
        with self._changed:
            for receipt in receipts:
                entry = self._entries.get(receipt)
                if entry is not None and not self._lapsed(entry, now):
                    entry.visible_until = max(entry.visible_until, until)

    def lapsed(self, entry: Entry) -> bool:
        """True once ``entry``'s visibility has run out (or is about to): the message may be back
        on the queue, or with another consumer."""
        with self._changed:
            return self._lapsed(entry, time.monotonic())

    def _lapsed(self, entry: Entry, now: float) -> bool:
        return now >= entry.visible_until - self.lapse_margin

    def forget(self, receipt: str) -> None:
        """Settled on SQS (or given up): no longer ours."""
        with self._changed:
            entry = self._entries.pop(receipt, None)
            if entry is not None and entry.action is None:  # it was held: one fewer now
                self._wake_if_room(entry.queue_url)

    def _wake_if_room(self, queue_url: str) -> None:
        limits = [limit for queue, limit in self._waiters if queue == queue_url]
        if limits and self._held(queue_url) < max(limits):
            self._changed.notify_all()

    # --- what the heartbeat and the receiver read ---

    def by_queue(self) -> dict[str, list[str]]:
        """Queue URL -> receipt handles of every entry (held or settling)."""
        with self._changed:
            entries = list(self._entries.values())
        found: dict[str, list[str]] = {}
        for entry in entries:
            found.setdefault(entry.queue_url, []).append(entry.receipt)
        return found

    def receipts(self, queue_url: str) -> list[str]:
        """Receipt handles of the messages of ``queue_url`` held and not yet decided."""
        with self._changed:
            return [
                r for r, e in self._entries.items() if e.queue_url == queue_url and e.action is None
            ]

    def count(self, queue_url: str | None = None) -> int:
        with self._changed:
            if queue_url is None:
                return len(self._entries)
            return sum(1 for e in self._entries.values() if e.queue_url == queue_url)

    def typical_hold(self, queue_url: str) -> float:
        """How long jobs of ``queue_url`` typically take, from their start in a pool process
        (receipt, if settled without running) to their outcome; infinite
        before the first outcome (until a worker knows its jobs are short, it takes them as
        long ones)."""
        with self._changed:
            return self._typical_hold.get(queue_url, math.inf)

    def held(self, queue_url: str) -> int:
        """Messages of ``queue_url`` held and not yet decided (buffered, waiting or running):
        those settling do not take a job's place."""
        with self._changed:
            return self._held(queue_url)

    def _held(self, queue_url: str) -> int:
        return sum(
            1 for e in self._entries.values() if e.queue_url == queue_url and e.action is None
        )

    def wait_below(self, queue_url: str, limit: int, timeout: float) -> bool:
        """Wait until fewer than ``limit`` messages of ``queue_url`` are held and undecided;
        False on timeout."""
        deadline = time.monotonic() + timeout
        waiter = (queue_url, limit)
        with self._changed:
            self._waiters.append(waiter)
            try:
                while True:
                    if self._held(queue_url) < limit:
                        return True
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return False
                    self._changed.wait(remaining)
            finally:
                self._waiters.remove(waiter)

    def waiting(self) -> int:
        """How many receivers wait in :meth:`wait_below`."""
        with self._changed:
            return len(self._waiters)


def _receive_count(sqs_message: dict[str, Any]) -> int:
    try:
        return max(1, int((sqs_message.get("Attributes") or {}).get("ApproximateReceiveCount", 1)))
    except (TypeError, ValueError):
        return 1
