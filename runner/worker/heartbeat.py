"""Visibility heartbeat: a message this worker holds stays invisible until it is settled.

SQS hands a message to another consumer once its visibility timeout passes, so a task that runs
longer than the timeout would run twice, concurrently. Every third of the timeout this thread
extends the visibility of every message in the process's ledger (runner/worker/ledger.py) with
ChangeMessageVisibilityBatch, per queue, up to 10 at a time: buffered, reserved, rate-limited,
waiting for an eta, running, or waiting for its delete. There is one per process; it outlives
restarts of Celery's consumer, and dies with the worker: a crashed worker's messages come back
after one visibility period, not after the task's time limit.

A thread of its own, not the worker's event loop: a slow or unreachable SQS endpoint must not
stall the worker.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from runner.core.batching import batched

log = logging.getLogger(__name__)


def extend(
    sqs: Any,
    by_queue: dict[str, list[str]],
    visibility_timeout: int,
    accepted: Callable[[list[str]], None] | None = None,
) -> int:
    """Extend every message's visibility; returns how many SQS accepted (failures are logged:
    a message settled meanwhile has a stale handle, and that is fine). ``accepted`` is told the
    receipt handles SQS extended, chunk by chunk."""
    extended = 0
    for queue, handles in by_queue.items():
        for chunk in batched(handles):
            entries = [
                {"Id": str(i), "ReceiptHandle": h, "VisibilityTimeout": visibility_timeout}
                for i, h in enumerate(chunk)
            ]
            try:
                response = sqs.change_message_visibility_batch(QueueUrl=queue, Entries=entries)
            except Exception as error:
                log.warning("visibility heartbeat failed for %s: %s", queue, error)
                continue
            extended += len(response.get("Successful", []))
            if accepted is not None:
                ids = {str(ok.get("Id")) for ok in response.get("Successful", [])}
                accepted([h for i, h in enumerate(chunk) if str(i) in ids])
            for failure in response.get("Failed", []):
                log.debug("visibility not extended: %s", failure)
    return extended


class Beat(threading.Thread):
    """Calls ``extend`` on what ``held()`` returns every ``interval`` seconds until stopped."""

    def __init__(
        self,
        sqs: Any,
        visibility_timeout: int,
        held: Callable[[], dict[str, list[str]]],
        *,
        interval: float | None = None,
        extended: Callable[[list[str], float], None] | None = None,
    ) -> None:
        super().__init__(name="galley-visibility-heartbeat", daemon=True)
        self.sqs = sqs
        self.visibility_timeout = visibility_timeout
        self.interval = interval or max(1.0, visibility_timeout / 3)
        self.held = held
        #: Told which receipts each beat extended, and until when at least (monotonic).
        self.extended = extended
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.interval):
            try:
                by_queue = self.held()
                if by_queue:
                    extend(self.sqs, by_queue, self.visibility_timeout, self._reporter())
            except Exception:  # never die: the next beat tries again
                log.exception("visibility heartbeat failed")

    def _reporter(self) -> Callable[[list[str]], None] | None:
        """What ``extend`` tells of each accepted chunk: the receipts, and a deadline taken
        before the call (SQS counts the new timeout from when it handles the call)."""
        report = self.extended
        if report is None:
            return None
        until = time.monotonic() + self.visibility_timeout
        return lambda receipts: report(receipts, until)

    def stop(self) -> None:
        self.stopped.set()
