"""Carrying out decided outcomes on SQS, off the worker's event loop, in batches, with retries.

Celery acknowledges and rejects on its main thread; a slow or failing SQS must not stall it, and
an outcome must not be lost to a passing fault. Each decided :class:`~runner.worker.ledger.Entry`
is queued here and a thread of its own carries it out on the queue it was received from:

- ``delete``: DeleteMessageBatch (up to 10 a call, grouped by queue). Acks that arrive one by one
  (a pool finishes its jobs one at a time) wait up to :data:`DELETE_WINDOW_SECONDS` for others, so
  a busy worker pays one call per ten jobs, not one per job. The price: a worker killed outright
  (SIGKILL, the machine lost) within that window leaves jobs that finished undeleted; they run
  again after their visibility timeout, as any at-least-once delivery may. A stopping worker
  (SIGTERM) flushes them first;
- ``release``: ChangeMessageVisibilityBatch to 0, so another worker takes it now;
- ``dead-letter``: SendMessage to the dead-letter queue with the reason, then delete;
- ``forward``: SendMessage of the same body back to its queue with a delay (a hop towards its
  eta), then delete.

A failed call is retried with backoff and jitter while the heartbeat keeps the message hidden, so
a network fault delays an outcome but never changes it. Two exceptions: a receipt handle SQS calls
invalid is dropped (the message is gone or came back to someone else), and a message that cannot be
dead-lettered after :data:`DEAD_LETTER_ATTEMPTS` tries is let go: it reappears after its visibility
timeout and the queue's redrive policy moves it to the DLQ in the end.
"""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from runner.core.batching import batched
from runner.core.deadletter import dead_letter
from runner.worker import metrics
from runner.worker.ledger import Entry, Ledger

log = logging.getLogger(__name__)

#: SQS errors that mean the receipt handle will never work again: nothing to retry.
GONE_CODES = frozenset(
    {
        "ReceiptHandleIsInvalid",
        "InvalidParameterValue",
        "MessageNotInflight",
        "InvalidReceiptHandle",
    }
)
DEAD_LETTER_ATTEMPTS = 5
MAX_BACKOFF_SECONDS = 10.0
#: How long the first ack of a batch waits for others before its DeleteMessageBatch goes out
#: (a full batch of ten on one queue goes at once; any other outcome does not wait).
DELETE_WINDOW_SECONDS = 0.1


def backoff(attempt: int, cap: float = MAX_BACKOFF_SECONDS) -> float:
    """Exponential backoff with full jitter: a crowd of workers does not retry in step."""
    return random.uniform(0, min(cap, 0.2 * 2**attempt))  # noqa: S311 - jitter, not crypto


class Settler(threading.Thread):
    """The thread that settles decided entries; :meth:`submit` never blocks."""

    def __init__(
        self,
        ledger: Ledger,
        sqs: Any,
        dead_letter_url: Callable[[], str | None],
        *,
        window: float = DELETE_WINDOW_SECONDS,
    ) -> None:
        super().__init__(name="galley-settler", daemon=True)
        self.window = window
        self.ledger = ledger
        self.sqs = sqs
        self.dead_letter_url = dead_letter_url
        self._queue: queue.Queue[Entry] = queue.Queue()
        self._attempts: dict[str, int] = defaultdict(int)
        #: Entries submitted and not yet settled or given up.
        self._outstanding = 0
        self._done = threading.Condition()

    def submit(self, entry: Entry) -> None:
        with self._done:
            self._outstanding += 1
        self._queue.put(entry)

    def flush(self, timeout: float) -> bool:
        """Wait until everything submitted is settled (or given up); False at the deadline."""
        with self._done:
            return self._done.wait_for(lambda: self._outstanding == 0, timeout)

    def pending(self) -> int:
        with self._done:
            return self._outstanding

    # --- the thread ---

    def run(self) -> None:
        while True:
            batch = self._collect()
            try:
                retry = self.settle(batch)
            except Exception:  # never let the thread die: retry the lot
                log.exception("settling %d message(s) failed", len(batch))
                retry = batch
            with self._done:
                self._outstanding -= len(batch) - len(retry)
                self._done.notify_all()
            if retry:
                time.sleep(backoff(max(self._attempts[e.receipt] for e in retry)))
                for entry in retry:
                    self._queue.put(entry)

    def _collect(self) -> list[Entry]:
        """The next entries to settle: what is queued now, and while they are all deletes short
        of a full batch on any queue, what arrives within the window of the first."""
        batch = [self._queue.get()]
        deadline = time.monotonic() + self.window
        deletes: dict[str, int] = defaultdict(int)
        while len(batch) < 100:
            last = batch[-1]
            if last.action != "delete":
                deadline = 0.0  # only deletes wait: drain what is queued and go
            else:
                deletes[last.queue_url] += 1
                if deletes[last.queue_url] >= 10:
                    deadline = 0.0
            try:
                remaining = deadline - time.monotonic()
                batch.append(
                    self._queue.get(timeout=remaining)
                    if remaining > 0
                    else self._queue.get_nowait()
                )
            except queue.Empty:
                break
        return batch

    def settle(self, batch: list[Entry]) -> list[Entry]:
        """Carry out ``batch``; returns the entries to try again."""
        retry: list[Entry] = []
        deletes: dict[str, list[Entry]] = defaultdict(list)
        releases: dict[str, list[Entry]] = defaultdict(list)
        for entry in batch:
            if entry.action == "dead-letter":
                if self._send_to_dead_letter_queue(entry):
                    deletes[entry.queue_url].append(entry)
                elif entry.action == "dead-letter":  # not given up: try again
                    retry.append(entry)
            elif entry.action == "forward":
                if self._forward(entry):
                    deletes[entry.queue_url].append(entry)
                else:
                    retry.append(entry)
            elif entry.action == "release":
                releases[entry.queue_url].append(entry)
            else:
                deletes[entry.queue_url].append(entry)
        for queue_url, entries in deletes.items():
            retry += self._batched(queue_url, entries, self._delete_chunk)
        for queue_url, entries in releases.items():
            entries = [entry for entry in entries if not self._lapsed(entry)]
            retry += self._batched(queue_url, entries, self._release_chunk)
        return retry

    def _lapsed(self, entry: Entry) -> bool:
        """A release whose message's visibility ran out while it kept failing (the heartbeat
        could not reach SQS either) is dropped: the message is back on the queue already, and
        may be running again under a newer receipt handle. SQS (moto at least) still honours the
        old handle, so releasing now would hand that running job out once more."""
        if not self.ledger.lapsed(entry):
            return False
        log.info(
            "message %s not released: its visibility ran out first (it is back on the queue)",
            entry.message_id,
        )
        self._attempts.pop(entry.receipt, None)
        self.ledger.forget(entry.receipt)
        return True

    def _send_to_dead_letter_queue(self, entry: Entry) -> bool:
        url = self.dead_letter_url()
        reason = entry.reason or "rejected by the worker"
        if url is None:
            log.error(
                "message %s cannot run (%s) and there is no dead-letter queue: left to the "
                "queue's redrive policy",
                entry.message_id,
                reason,
            )
            self._give_up(entry)
            return False
        try:
            dead_letter(self.sqs, url, entry.body, reason=reason, source_queue=entry.queue_url)
        except Exception as error:
            self._attempts[entry.receipt] += 1
            if self._attempts[entry.receipt] >= DEAD_LETTER_ATTEMPTS:
                log.error(
                    "message %s (%s) could not be dead-lettered to %s after %d tries (%s): left to "
                    "the queue's redrive policy",
                    entry.message_id,
                    reason,
                    url,
                    DEAD_LETTER_ATTEMPTS,
                    error,
                )
                self._give_up(entry)
            else:
                log.warning(
                    "dead-lettering message %s failed (%s); retrying", entry.message_id, error
                )
            return False
        log.warning("message %s dead-lettered: %s", entry.message_id, reason)
        metrics.dead_lettered(entry.queue_url, entry.body)
        entry.action = "delete"  # sent: what is left is deleting the original
        self._attempts.pop(entry.receipt, None)
        return True

    def _forward(self, entry: Entry) -> bool:
        try:
            self.sqs.send_message(
                QueueUrl=entry.queue_url, MessageBody=entry.body, DelaySeconds=entry.delay_seconds
            )
        except Exception as error:
            self._attempts[entry.receipt] += 1
            log.warning("delay hop of %s failed (%s); retrying", entry.message_id, error)
            return False
        entry.action = "delete"  # the copy is on its way: what is left is deleting the original
        self._attempts.pop(entry.receipt, None)
        return True

    def _give_up(self, entry: Entry) -> None:
        entry.action = None
        self._attempts.pop(entry.receipt, None)
        self.ledger.forget(entry.receipt)

    def _batched(
        self, queue_url: str, entries: list[Entry], call: Callable[[str, list[Entry]], Any]
    ) -> list[Entry]:
        retry: list[Entry] = []
        for chunk in batched(entries):
            try:
                response = call(queue_url, chunk)
            except Exception as error:
                log.warning("%s on %s failed (%s); retrying", call.__name__, queue_url, error)
                for entry in chunk:
                    self._attempts[entry.receipt] += 1
                retry += chunk
                continue
            retry += self._outcomes(chunk, response)
        return retry

    def _outcomes(self, chunk: list[Entry], response: dict[str, Any]) -> list[Entry]:
        failed = {f.get("Id"): f for f in response.get("Failed", [])}
        retry: list[Entry] = []
        for index, entry in enumerate(chunk):
            failure = failed.get(str(index))
            if failure is None or failure.get("Code") in GONE_CODES:
                if failure is not None:
                    log.info("message %s already gone: %s", entry.message_id, failure.get("Code"))
                self._attempts.pop(entry.receipt, None)
                self.ledger.forget(entry.receipt)
            else:
                self._attempts[entry.receipt] += 1
                retry.append(entry)
        return retry

    def _delete_chunk(self, queue_url: str, chunk: list[Entry]) -> Any:
        entries = [{"Id": str(i), "ReceiptHandle": e.receipt} for i, e in enumerate(chunk)]
        return self.sqs.delete_message_batch(QueueUrl=queue_url, Entries=entries)

    def _release_chunk(self, queue_url: str, chunk: list[Entry]) -> Any:
        entries = [
            {"Id": str(i), "ReceiptHandle": e.receipt, "VisibilityTimeout": 0}
            for i, e in enumerate(chunk)
        ]
        return self.sqs.change_message_visibility_batch(QueueUrl=queue_url, Entries=entries)
