"""A worker process's custody of the SQS messages it received: ledger, settler and heartbeat.

One per process, built on first use and kept for the life of the process: Celery's consumer may
restart (and its channels close) while tasks keep running; their messages stay in custody, kept
invisible by the one heartbeat, until their outcome is settled on the queue they came from.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from typing import Any

from runner.core import aws
from runner.worker import heartbeat
from runner.worker.ledger import Action, Ledger
from runner.worker.settler import Settler

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Options:
    """What the transport is told by the app (``broker_transport_options["galley"]``)."""

    region: str | None = None
    visibility_timeout: int = 900
    heartbeat: bool = True
    dead_letter_url: str | None = None
    #: The only bucket a payload pointer may name.
    results_bucket: str | None = None

    @classmethod
    def from_transport_options(cls, options: dict[str, Any]) -> Options:
        galley = options.get("galley") or {}
        return cls(
            region=galley.get("region") or options.get("region"),
            visibility_timeout=int(galley.get("visibility_timeout") or 900),
            heartbeat=bool(galley.get("heartbeat", True)),
            dead_letter_url=galley.get("dead_letter_url"),
            results_bucket=galley.get("results_bucket"),
        )


class Custody:
    def __init__(self, options: Options) -> None:
        self.options = options
        # The ledger tracks when each message's visibility runs out, so that the settler does not
        # release a message SQS has already handed out again (see Settler._lapsed).
        self.ledger = Ledger(options.visibility_timeout)
        self.settler = Settler(
            self.ledger,
            aws.client("sqs", use="settle", region=options.region),
            lambda: self.options.dead_letter_url,
        )
        self.settler.start()
        self.beat: heartbeat.Beat | None = None
        if options.heartbeat:
            self.beat = heartbeat.Beat(
                aws.client("sqs", use="heartbeat", region=options.region),
                options.visibility_timeout,
                self.ledger.by_queue,
                extended=self.ledger.extended,
            )
            self.beat.start()
            log.info(
                "visibility heartbeat every %.0fs (visibility timeout %ss)",
                self.beat.interval,
                options.visibility_timeout,
            )

    def settle(
        self, receipt: str, action: Action, reason: str | None = None, delay_seconds: int = 0
    ) -> bool:
        """Decide a held message's outcome and hand it to the settler; False if it was not held
        or already decided."""
        entry = self.ledger.decide(receipt, action, reason, delay_seconds)
        if entry is None:
            return False
        self.settler.submit(entry)
        return True

    def note_reason(self, receipt: str, reason: str) -> None:
        self.ledger.note_reason(receipt, reason)

    def started(self, receipt: str) -> None:
        self.ledger.started(receipt)


_custody: dict[int, Custody] = {}
_lock = threading.Lock()


def custody(options: Options | None = None) -> Custody:
    """This process's custody, built with ``options`` the first time."""
    pid = os.getpid()
    with _lock:
        current = _custody.get(pid)
        if current is None:
            _custody.clear()  # a forked child starts with none of its parent's
            current = _custody[pid] = Custody(options or Options())
        elif options is not None and options.dead_letter_url:
            current.options = options
        return current


def current() -> Custody | None:
    """This process's custody if it has one (it has none outside a worker)."""
    return _custody.get(os.getpid())
