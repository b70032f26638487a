"""The Lambda consumer's job metrics (runner/core/metrics.py), with ``GALLEY_METRICS=emf``.

Each settled record's :class:`~runner.lambdas.settle.Outcome` says what the batch did with the
job (its task, whether and how it ran); :meth:`BatchMetrics.settled` counts it, and
:meth:`BatchMetrics.write` prints the batch's EMF lines to stdout as the invocation returns: the
Lambda runtime sends stdout to the function's log group, where CloudWatch extracts the metrics.
One flush per invocation, because a Lambda is frozen between invocations (a timer thread would
not run) and may never be thawed again. An invocation killed by its timeout writes nothing; the
consumer's time budget (budget.py) returns before that.

The counts mean what the worker's do (runner/worker/metrics.py): Received is a delivery taken to
run (not a refused message, not a delay hop), Revoked counts expired jobs too, as Celery does.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Any

from celery import states

from runner.core import emf
from runner.core import metrics as spec
from runner.lambdas.settle import Outcome
from runner.wire import codec

log = logging.getLogger(__name__)

#: A run's final state, and the counter it adds to.
_STATES = {states.SUCCESS: spec.SUCCEEDED, states.FAILURE: spec.FAILED, states.RETRY: spec.RETRIED}


class BatchMetrics:
    """Counts the outcomes of records; ``role_of(queue_url)`` names a record's queue."""

    def __init__(
        self, recorder: spec.Recorder, role_of: Callable[[str], str | None], stream: Any = None
    ) -> None:
        self.recorder = recorder
        self.role_of = role_of
        #: None: ``sys.stdout`` at the time of writing (the Lambda runtime's, or a test's).
        self.stream = stream

    def settled(self, queue_url: str, outcome: Outcome) -> None:
        queue = self.role_of(queue_url) or spec.UNKNOWN_QUEUE
        task = outcome.task or spec.UNKNOWN_TASK
        count = self.recorder.count
        if outcome.action in ("revoked", "expired"):
            count(queue, task, spec.RECEIVED)
            count(queue, task, spec.REVOKED)
        run = outcome.run
        if run is not None:
            count(queue, task, spec.RECEIVED)
            count(queue, task, spec.STARTED)
            self.recorder.observe(queue, task, spec.QUEUE_WAIT, max(0.0, run.wait) * 1000)
            counter = _STATES.get(run.state or "")
            if counter is not None:
                count(queue, task, counter)
                self.recorder.observe(queue, task, spec.RUNTIME, max(0.0, run.runtime) * 1000)
        if outcome.action == "dead-lettered":
            count(queue, task, spec.DEAD_LETTERED)

    def write(self) -> None:
        """The batch's lines to stdout; a stdout that fails is logged, never raised."""
        lines = self.recorder.lines()
        if not lines:
            return
        try:
            emf.write(lines, self.stream or sys.stdout)
        except (OSError, ValueError) as error:
            log.warning("metrics: %d line(s) not written to stdout: %s", len(lines), error)


def due(record: dict[str, Any], message: codec.TaskMessage) -> float | None:
    """When the job was due (epoch seconds): SQS's SentTimestamp, or its eta if later."""
    try:
        sent: float | None = int((record.get("attributes") or {})["SentTimestamp"]) / 1000
    except (KeyError, TypeError, ValueError, AttributeError):
        sent = None
    try:
        eta = message.eta
    except (TypeError, ValueError, OverflowError):  # judged runnable: not expected
        eta = None
    times = [t for t in (sent, eta.timestamp() if eta and eta.tzinfo else None) if t is not None]
    return max(times) if times else None
