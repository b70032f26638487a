"""The Celery worker's job metrics (runner/core/metrics.py), with ``GALLEY_METRICS=emf``.

All of it happens in the worker's main process, so nothing crosses from the pool children: each
job's delivery, start and outcome pass through the main process's Request
(runner/worker/request.py calls :func:`received` and :func:`event` where Celery would send a task
event, whether events are on or not), and every dead letter through the settler
(:func:`dead_lettered`, once SQS took it). A thread writes the interval's lines every
:data:`~runner.core.metrics.INTERVAL_SECONDS`, and the last ones as the worker stops, after its
pool has finished its jobs.

The lines go to the process's own stdout (``sys.__stdout__``): in a worker Celery points
``sys.stdout`` at its logger, which would prefix them. On Fargate the ``awslogs`` log driver sends
stdout to the worker's log group, where CloudWatch extracts the metrics (runner/core/emf.py).

Times: a run's runtime is the pool's (Celery's ``runtime`` of a success; from the start Celery
recorded for a failure or a retry); the queue wait runs from the message's SQS ``SentTimestamp``,
or its eta if later, to that start (clocks of SQS and the worker may differ: below 0 is 0).
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from typing import Any

from celery import bootsteps, signals

from runner.core import emf, queues
from runner.core import metrics as spec
from runner.wire import codec

log = logging.getLogger(__name__)

#: Celery's task events, and the counter each adds to.
_EVENTS = {
    "task-started": spec.STARTED,
    "task-succeeded": spec.SUCCEEDED,
    "task-failed": spec.FAILED,
    "task-retried": spec.RETRIED,
    "task-revoked": spec.REVOKED,
}
#: Events whose run has a runtime.
_RAN = ("task-succeeded", "task-failed", "task-retried")

_recorder: spec.Recorder | None = None
#: The stack's queue URLs and their roles (the Queue dimension).
_roles: dict[str, str] = {}


def received(request: Any) -> None:
    """Celery's worker took a delivery of the job to run (its Request is being made)."""
    if _recorder is not None:
        _recorder.count(_queue(request), request.name, spec.RECEIVED)


def event(request: Any, type_: str, fields: dict[str, Any]) -> None:
    """What Celery's task event ``type_`` of ``request`` reports."""
    recorder = _recorder
    counter = _EVENTS.get(type_)
    if recorder is None or counter is None:
        return
    queue, name = _queue(request), request.name
    recorder.count(queue, name, counter)
    started = request.time_start
    if type_ == "task-started" and started:
        due = max(_sent_at(request) or started, _eta(request) or 0.0)
        recorder.observe(queue, name, spec.QUEUE_WAIT, max(0.0, started - due) * 1000)
    elif type_ in _RAN:
        runtime = fields.get("runtime")
        if runtime is None and started:
            runtime = time.time() - started
        if runtime is not None:
            recorder.observe(queue, name, spec.RUNTIME, max(0.0, runtime) * 1000)


def revoked(request: Any) -> None:
    """A job found revoked in its pool process, just before its body (runner/worker/
    revocations.py): no task event says so."""
    if _recorder is not None:
        _recorder.count(_queue(request), request.name, spec.REVOKED)


def dead_lettered(queue_url: str, body: str) -> None:
    """The settler sent a message received from ``queue_url`` to the dead-letter queue."""
    if _recorder is None:
        return
    try:
        name = str(codec.envelope(body)["headers"]["task"])
    except Exception:  # not a task message: the Task dimension says so
        name = spec.UNKNOWN_TASK
    _recorder.count(_roles.get(queue_url, spec.UNKNOWN_QUEUE), name, spec.DEAD_LETTERED)


def _queue(request: Any) -> str:
    return str((request.delivery_info or {}).get("routing_key") or spec.UNKNOWN_QUEUE)


def _sent_at(request: Any) -> float | None:
    """The message's SQS SentTimestamp, in seconds (the transport keeps the SQS message in the
    kombu message's delivery_info; Celery's Request copies only some of its keys)."""
    sqs_message = (getattr(request.message, "delivery_info", None) or {}).get("sqs_message") or {}
    try:
        return int((sqs_message.get("Attributes") or {})["SentTimestamp"]) / 1000
    except (KeyError, TypeError, ValueError):
        return None


def _eta(request: Any) -> float | None:
    eta = request.eta
    return eta.timestamp() if eta is not None and eta.tzinfo is not None else None


class Writer:
    """Writes the recorder's lines every ``interval`` seconds from a thread of its own, and once
    more at :meth:`stop`; a stdout that cannot be written is logged, never raised."""

    def __init__(self, recorder: spec.Recorder, interval: float, stream: Any) -> None:
        self.recorder, self.interval, self.stream = recorder, interval, stream
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="galley-metrics", daemon=True)
        self.failing = False

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stopped.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        self.write()

    def write(self) -> None:
        with self._lock:
            lines = self.recorder.lines()
            if not lines:
                return
            try:
                emf.write(lines, self.stream)
            except (OSError, ValueError, AttributeError) as error:  # closed or missing stdout
                if not self.failing:
                    log.warning("metrics: %d line(s) not written to stdout: %s", len(lines), error)
                self.failing = True
                return
            self.failing = False

    def _loop(self) -> None:
        while not self._stopped.wait(self.interval):
            self.write()


_writer: Writer | None = None


class Metrics(bootsteps.StartStopStep):
    """Worker step: records and writes the job metrics (main process only; pool children fork
    from it before it starts)."""

    requires = ("celery.worker.components:Pool",)

    def __init__(self, w: Any, **kwargs: Any) -> None:
        self.enabled = w.app.galley_settings.metrics == spec.EMF
        super().__init__(w, **kwargs)

    def include_if(self, w: Any) -> bool:
        return self.enabled

    def start(self, w: Any) -> None:
        global _recorder, _roles, _writer
        settings = w.app.galley_settings
        _recorder = spec.Recorder(settings.stack_name, known=w.app.tasks.__contains__)
        _roles = {url: role for role, url in queues.urls(settings).items()}
        _writer = Writer(_recorder, spec.INTERVAL_SECONDS, sys.__stdout__)
        _writer.start()
        log.info(
            "metrics: EMF lines on stdout every %ss (stack %s)",
            f"{spec.INTERVAL_SECONDS:g}",
            settings.stack_name,
        )


def _shutdown(**_: Any) -> None:
    """After the pool finished its jobs and the settler its outcomes: the last lines."""
    global _writer
    if _writer is not None:
        _writer.stop()
        _writer = None


def install() -> None:
    signals.worker_shutdown.connect(_shutdown, weak=False, dispatch_uid="galley-metrics-stopped")
