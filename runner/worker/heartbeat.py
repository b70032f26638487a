"""Visibility heartbeat: a running task's message stays invisible while the task runs.

SQS hands a message to another consumer once its visibility timeout passes, so a task that runs
longer than the timeout would run twice, concurrently. While a task is reserved or running, this
thread extends its message's visibility (ChangeMessageVisibilityBatch, per queue, up to 10 at a
time) every third of the timeout. It stops with the task, and dies with the worker: a crashed
worker's message comes back after one visibility period, not after the task's time limit.

A thread of its own, not the worker's event loop: a slow or unreachable SQS endpoint must not
stall the worker.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any

from botocore.config import Config
from celery import bootsteps
from celery.worker import state

from runner import aws, limits

log = logging.getLogger(__name__)

#: Short timeouts: a beat that cannot reach SQS gives way to the next one.
CLIENT_CONFIG = Config(connect_timeout=5, read_timeout=10, retries={"max_attempts": 2})


def receipts(requests: Iterable[Any]) -> dict[str, list[str]]:
    """Queue URL -> receipt handles of the given Celery requests' SQS messages."""
    found: dict[str, set[str]] = defaultdict(set)
    for request in requests:
        info = getattr(getattr(request, "message", None), "delivery_info", None) or {}
        message, queue = info.get("sqs_message"), info.get("sqs_queue")
        if message and queue:
            found[queue].add(message["ReceiptHandle"])
    return {queue: sorted(handles) for queue, handles in found.items()}


def extend(sqs: Any, by_queue: dict[str, list[str]], visibility_timeout: int) -> int:
    """Extend every message's visibility; returns how many SQS accepted (failures are logged:
    a message acknowledged meanwhile has a stale handle, and that is fine)."""
    extended = 0
    for queue, handles in by_queue.items():
        for start in range(0, len(handles), limits.MAX_BATCH_MESSAGES):
            chunk = handles[start : start + limits.MAX_BATCH_MESSAGES]
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
            for failure in response.get("Failed", []):
                log.debug("visibility not extended: %s", failure)
    return extended


def _current_requests() -> list[Any]:
    # The worker's main thread changes these sets; copy, retrying if one changed meanwhile.
    for _ in range(5):
        try:
            return list(state.reserved_requests) + list(state.active_requests)
        except RuntimeError:
            continue
    return []


class Beat(threading.Thread):
    """Calls ``extend`` every ``interval`` seconds until stopped."""

    def __init__(
        self,
        sqs: Any,
        visibility_timeout: int,
        *,
        interval: float | None = None,
        requests: Callable[[], list[Any]] = _current_requests,
    ) -> None:
        super().__init__(name="galley-visibility-heartbeat", daemon=True)
        self.sqs = sqs
        self.visibility_timeout = visibility_timeout
        self.interval = interval or max(1.0, visibility_timeout / 3)
        self.requests = requests
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.interval):
            by_queue = receipts(self.requests())
            if by_queue:
                extend(self.sqs, by_queue, self.visibility_timeout)

    def stop(self) -> None:
        self.stopped.set()


class VisibilityHeartbeat(bootsteps.StartStopStep):
    """Worker consumer step running :class:`Beat` while the worker consumes."""

    requires = ("celery.worker.consumer.tasks:Tasks",)

    def __init__(self, c: Any, **kwargs: Any) -> None:
        settings = c.app.galley_settings
        self.enabled = settings.visibility_heartbeat
        self.visibility_timeout = settings.visibility_timeout
        self.region = settings.region
        self.beat: Beat | None = None
        super().__init__(c, **kwargs)

    def start(self, c: Any) -> None:
        sqs = aws.client("sqs", region=self.region, config=CLIENT_CONFIG)
        self.beat = Beat(sqs, self.visibility_timeout)
        self.beat.start()
        log.info(
            "visibility heartbeat every %.0fs (visibility timeout %ss)",
            self.beat.interval,
            self.visibility_timeout,
        )

    def stop(self, c: Any) -> None:
        """Warm shutdown begins here while tasks still finish: keep their messages hidden."""

    def shutdown(self, c: Any) -> None:
        if self.beat is not None:
            self.beat.stop()
            self.beat = None
