"""Galley's job metrics: what is counted and timed per task name, summed over an interval into
CloudWatch Embedded Metric Format lines (runner/core/emf.py), and what they cost.

Namespace ``Galley``; each metric has the dimension sets {Stack, Queue, Task} and {Stack, Queue}
(the rollup a dashboard and the failure-rate alarm read):

==============  ============  ======================================================================
Received        Count         a worker or the Lambda consumer took a delivery of the job to run
                              (Celery's "task received"; a delay hop towards an eta is not one)
Started         Count         its run started
Succeeded       Count         its run returned
Failed          Count         its run raised: the job failed (and is dead-lettered); a run lost
                              with its worker process and requeued is Started only
Retried         Count         its run asked for a retry (``self.retry``: a new delivery follows)
Revoked         Count         revoked or expired: not run, or stopped (terminate)
DeadLettered    Count         sent to the dead-letter queue with a reason: a failure, or a message
                              refused before it ran (undecodable, unknown task, ...)
Runtime         Milliseconds  how long a run took (succeeded, failed or retried)
QueueWait       Milliseconds  from when the job was due (sent, or its eta if later) to its start
==============  ============  ======================================================================

Cost: CloudWatch bills each combination of name and dimension values as a custom metric
($0.30 a month for the first 10,000): ``9 x (task names + queues)``, see :func:`custom_metrics`.
To keep that bounded whatever the messages say, a task name the process does not know (a message
for a task that is not registered) counts as :data:`UNKNOWN_TASK`, and past
:data:`MAX_TASK_NAMES` names a process pools the rest as :data:`OTHER_TASKS`.

A :class:`Recorder` sums an interval: counts are numbers, timings arrays of values (at most 100 a
line, the spec's limit; more go on further lines), so a line stays a few KB, far from the 16 KiB
at which a container's log driver would split it. One line per (queue, task) and interval, so a
busy worker writes a few bytes of log per job instead of a line per job (CloudWatch Logs ingests
at $0.50/GB).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable

from runner.core import emf
from runner.core.batching import batched

log = logging.getLogger(__name__)

NAMESPACE = "Galley"
STACK, QUEUE, TASK = "Stack", "Queue", "Task"
DIMENSION_SETS = ((STACK, QUEUE, TASK), (STACK, QUEUE))

RECEIVED = "Received"
STARTED = "Started"
SUCCEEDED = "Succeeded"
FAILED = "Failed"
RETRIED = "Retried"
REVOKED = "Revoked"
DEAD_LETTERED = "DeadLettered"
COUNTERS = (RECEIVED, STARTED, SUCCEEDED, FAILED, RETRIED, REVOKED, DEAD_LETTERED)
RUNTIME = "Runtime"
QUEUE_WAIT = "QueueWait"
TIMINGS = (RUNTIME, QUEUE_WAIT)
#: Every metric Galley emits, with its unit (the template's dashboard may name no other).
UNITS = {**dict.fromkeys(COUNTERS, "Count"), **dict.fromkeys(TIMINGS, "Milliseconds")}
METRIC_NAMES = tuple(UNITS)

#: GALLEY_METRICS: ``emf`` writes the lines to stdout, ``off`` (the default) nothing.
EMF, OFF = "emf", "off"
#: How often a worker writes its lines (the Lambda consumer writes at the end of each batch).
INTERVAL_SECONDS = 60.0
#: Task names a process keeps as Task values of their own; the rest are pooled.
MAX_TASK_NAMES = 100
UNKNOWN_TASK = "(unknown)"
#: The Queue of a message received from a queue that is not one of the stack's roles.
UNKNOWN_QUEUE = "(unknown)"
OTHER_TASKS = "(other)"
#: CloudWatch's price of a custom metric a month (the first 10,000), US East.
PRICE_PER_METRIC_MONTH = 0.30


def custom_metrics(task_names: int, queues: int) -> int:
    """Custom metrics of a stack whose jobs have ``task_names`` names over ``queues`` queues
    (each name on one queue): every metric per task, and per queue for the rollup."""
    return len(METRIC_NAMES) * (task_names + queues)


def monthly_cost(task_names: int, queues: int) -> float:
    return custom_metrics(task_names, queues) * PRICE_PER_METRIC_MONTH


class Recorder:
    """Counts and timings of one process's jobs, summed until :meth:`lines` takes them.

    Thread-safe; recording never raises (a metric must not fail a job): a value that cannot be a
    metric (NaN) is logged and left out.
    """

    def __init__(
        self,
        stack: str,
        *,
        known: Callable[[str], bool] | None = None,
        clock: Callable[[], float] = time.time,
        max_task_names: int = MAX_TASK_NAMES,
    ) -> None:
        self.stack = stack
        self.known = known
        self.clock = clock
        self.max_task_names = max_task_names
        self._lock = threading.Lock()
        #: Names kept as Task values of their own, for the life of the process.
        self._names: set[str] = set()
        self._counts: dict[tuple[str, str], Counter[str]] = {}
        self._timings: dict[tuple[str, str], dict[str, list[int | float]]] = {}

    def count(self, queue: str, task: str, counter: str) -> None:
        with self._lock:
            key = (queue, self._label(task))
            self._counts.setdefault(key, Counter())[counter] += 1

    def observe(self, queue: str, task: str, timing: str, milliseconds: float) -> None:
        try:
            value = emf.number(milliseconds)
        except ValueError as error:
            log.warning("metric %s of %s not recorded: %s", timing, task, error)
            return
        with self._lock:
            key = (queue, self._label(task))
            self._timings.setdefault(key, {}).setdefault(timing, []).append(value)

    def _label(self, task: str) -> str:
        if self.known is not None and not self.known(task):
            return UNKNOWN_TASK
        if task in self._names:
            return task
        if len(self._names) < self.max_task_names:
            self._names.add(task)
            return task
        return OTHER_TASKS

    def lines(self) -> list[str]:
        """The EMF lines of everything recorded since the last call, which starts a new
        interval."""
        with self._lock:
            counts, self._counts = self._counts, {}
            timings, self._timings = self._timings, {}
        now = self.clock()
        lines: list[str] = []
        for queue, task in sorted(counts.keys() | timings.keys()):
            counted = counts.get((queue, task))
            chunks = {
                name: list(batched(values, emf.MAX_EMF_VALUES))
                for name, values in timings.get((queue, task), {}).items()
            }
            rounds = max((len(parts) for parts in chunks.values()), default=1)
            for number in range(rounds):
                metrics: dict[str, tuple[str, int | float | list[int | float]]] = {}
                if number == 0 and counted:
                    metrics.update((name, (UNITS[name], counted[name])) for name in COUNTERS)
                for name, parts in chunks.items():
                    if number < len(parts):
                        metrics[name] = (UNITS[name], parts[number])
                dimensions = {STACK: self.stack, QUEUE: queue, TASK: task}
                document = emf.document(NAMESPACE, DIMENSION_SETS, dimensions, metrics, now)
                lines.append(emf.dumps(document))
        return lines
