"""The Lambda consumer's time budget: how long a record may run, and stopping it when spent.

Each record runs within the invocation's remaining time less ``GALLEY_LAMBDA_RESERVE_SECONDS``
(:class:`Budget`); :func:`time_limit` arms SIGALRM around the task so that a task still running
when its budget is spent gets :class:`InvocationEnding` raised inside it.
"""

from __future__ import annotations

import contextlib
import logging
import math
import signal
import threading
import time
from collections.abc import Iterator
from types import FrameType
from typing import Any

log = logging.getLogger(__name__)

#: Longest budget a record gets: a Lambda invocation lasts at most 15 minutes.
MAX_BUDGET_SECONDS = 15 * 60


class InvocationEnding(BaseException):
    """Raised inside a running task when its record's time budget is spent.

    A BaseException, so neither the task's ``except Exception`` nor Celery's tracer records it
    as the task's failure: the tracer re-raises it, the job keeps its state (PENDING, or STARTED
    for a task with ``track_started``), and the record is reported for redelivery.
    """


class Budget:
    """The invocation's time, less the reserve kept for settling and answering."""

    def __init__(self, context: Any, reserve_seconds: float) -> None:
        self.context = context
        self.reserve_seconds = reserve_seconds
        #: Set once a task was stopped at the budget: no further record starts.
        self.spent = False

    def remaining(self) -> float | None:
        """Seconds a record may still run; None without a Lambda context (no limit)."""
        getter = getattr(self.context, "get_remaining_time_in_millis", None)
        if getter is None:
            return None
        try:
            seconds = float(getter()) / 1000 - self.reserve_seconds
        except Exception:
            log.exception("could not read the invocation's remaining time")
            return None
        if not math.isfinite(seconds):  # NaN or infinite: no budget we can keep to
            log.error("the invocation's remaining time is %r: not enforced", seconds)
            return None
        return min(seconds, MAX_BUDGET_SECONDS)


@contextlib.contextmanager
def time_limit(seconds: float | None) -> Iterator[None]:
    """Raise :class:`InvocationEnding` in this (the main) thread after ``seconds``.

    SIGALRM reaches only the main thread, where Lambda runs the handler; elsewhere, or without a
    budget, nothing is enforced. An alarm already set (a test runner's timeout) is put back.
    """
    if seconds is None or threading.current_thread() is not threading.main_thread():
        yield
        return

    armed = True

    def expire(signum: int, frame: FrameType | None) -> None:
        nonlocal armed
        if armed:  # once, and never while leaving
            armed = False
            raise InvocationEnding(f"time budget of {seconds:.1f}s spent")

    previous = signal.signal(signal.SIGALRM, expire)
    before, interval = signal.getitimer(signal.ITIMER_REAL)
    started = time.monotonic()
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 0.001))
    try:
        yield
    finally:
        armed = False
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous if previous is not None else signal.SIG_DFL)
        if before:
            left = max(before - (time.monotonic() - started), 0.001)
            signal.setitimer(signal.ITIMER_REAL, left, interval)
