"""The worker's entry in the worker registry (runner/ops/registry.py): published, never waited on.

The main process of ``celery worker`` writes its entry at start, every
``GALLEY_REGISTRY_INTERVAL`` seconds (15 by default; 0 turns the registry off), at once when a
SIGTERM starts a warm shutdown (``stopping``), and a last time after its pool has finished its
jobs (``stopped``). Pool children run the tasks, but the main process sees every job: Celery's
``state.active_requests`` holds the requests its pool runs (with their start times), and each
outcome passes through the main process's Request, which counts it here (:func:`count`, called by
runner/worker/request.py where Celery would send a task event, whether events are on or not).

A thread of its own does the writing, so S3 being slow or down never holds a job: a failed write
is logged once per outage (and once more when writes succeed again), and the next interval tries
again. One PUT an interval: at 15 s, 172,800 PUTs a month, $0.86 per worker at $5 per million.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from importlib import metadata
from typing import Any

from celery import bootsteps, signals
from celery.worker import state

from runner.core import aws
from runner.ops import registry

log = logging.getLogger(__name__)

#: Celery's task event types, and the outcome each is counted as.
_EVENTS = {"task-succeeded": "succeeded", "task-failed": "failed", "task-retried": "retried"}

_counts: Counter[tuple[str, str]] = Counter()
_counts_lock = threading.Lock()


def count(event_type: str, task_name: str) -> None:
    """Count a job's outcome, as Celery's task event ``event_type`` would report it."""
    outcome = _EVENTS.get(event_type)
    if outcome is not None:
        with _counts_lock:
            _counts[(task_name, outcome)] += 1


def totals() -> tuple[dict[str, int], dict[str, dict[str, int]]]:
    """(counts by outcome, counts by task name and outcome) since this process started."""
    with _counts_lock:
        counted = dict(_counts)
    overall = dict.fromkeys(registry.OUTCOMES, 0)
    by_task: dict[str, dict[str, int]] = {}
    per_name: Counter[str] = Counter()
    for (name, _), value in counted.items():
        per_name[name] += value
    kept = {name for name, _ in per_name.most_common(registry.MAX_TASK_NAMES)}
    for (name, outcome), value in counted.items():
        overall[outcome] += value
        shown = name if name in kept else registry.OTHER_TASKS
        by_task.setdefault(shown, dict.fromkeys(registry.OUTCOMES, 0))[outcome] += value
    return overall, by_task


def _version() -> str:
    try:
        return metadata.version("galley")
    except metadata.PackageNotFoundError:
        return "unknown"


def running_jobs() -> tuple[list[registry.Running], int]:
    """The jobs the pool runs now, and how many more wait in the worker for a process."""
    for _ in range(3):  # the sets change while read: read again
        try:
            active = list(state.active_requests)
            reserved = len(state.reserved_requests)
            break
        except RuntimeError:
            continue
    else:
        return [], 0
    jobs = [registry.Running(id=str(r.id), task=str(r.name), started=r.time_start) for r in active]
    jobs.sort(key=lambda job: (job.started or 0.0, job.id))
    return jobs, max(0, reserved - len(active))


class Publisher:
    """Writes one worker's entry on an interval from a thread of its own."""

    def __init__(
        self,
        s3: Any,
        bucket: str,
        describe: Callable[[str], registry.Entry],
        interval: float,
        key: str,
    ) -> None:
        self.s3, self.bucket, self.describe = s3, bucket, describe
        self.interval, self.key = interval, key
        self.state = registry.RUNNING
        self.failing = False
        self._wake = threading.Event()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="galley-registry", daemon=True)
        self._thread.start()

    def stopping(self) -> None:
        """A warm shutdown began: say so at once (safe in a signal handler: only wakes)."""
        self.state = registry.STOPPING
        self._wake.set()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the thread and write the last entry, marked stopped."""
        self._stopped.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self.state = registry.STOPPED
        self.publish()

    def publish(self) -> bool:
        try:
            body = json.dumps(self.describe(self.state).as_dict(), separators=(",", ":"))
            self.s3.put_object(
                Bucket=self.bucket, Key=self.key, Body=body.encode(), ContentType="application/json"
            )
        except Exception as error:  # the registry must never stop the worker
            if not self.failing:
                log.warning(
                    "worker registry: cannot write s3://%s/%s (%s); the worker goes on, "
                    "and tries again every %ss (said once until a write succeeds)",
                    self.bucket,
                    self.key,
                    registry.reason(error),
                    f"{self.interval:g}",
                )
            self.failing = True
            return False
        if self.failing:
            log.warning("worker registry: writing s3://%s/%s again", self.bucket, self.key)
            self.failing = False
        return True

    def _loop(self) -> None:
        while not self._stopped.is_set():
            self.publish()
            self._wake.wait(self.interval)
            self._wake.clear()


_publisher: Publisher | None = None


class Registry(bootsteps.StartStopStep):
    """Worker step: publishes this worker's entry (main process only; pool children fork from
    it before it starts)."""

    requires = ("celery.worker.components:Pool",)

    def __init__(self, w: Any, **kwargs: Any) -> None:
        settings = w.app.galley_settings
        self.interval = float(settings.registry_interval)
        super().__init__(w, **kwargs)

    def include_if(self, w: Any) -> bool:
        return bool(self.interval)

    def start(self, w: Any) -> None:
        global _publisher
        settings = w.app.galley_settings
        host, pid = socket.gethostname(), os.getpid()
        started = time.time()
        queue = ",".join(sorted(w.app.amqp.queues.consume_from or {})) or "-"
        version = _version()

        def describe(state_: str) -> registry.Entry:
            jobs, waiting = running_jobs()
            overall, by_task = totals()
            return registry.Entry(
                host=host,
                pid=pid,
                version=version,
                started=started,
                at=time.time(),
                interval=self.interval,
                concurrency=int(w.concurrency or 0),
                queue=queue,
                state=state_,
                running=jobs if state_ != registry.STOPPED else [],
                waiting=waiting,
                totals=overall,
                tasks=by_task,
                results_prefix=settings.results_prefix,
            )

        _publisher = Publisher(
            aws.client("s3", use="registry", region=settings.region),
            settings.results_bucket,
            describe,
            self.interval,
            registry.key(host, pid),
        )
        _publisher.start()
        log.info(
            "worker registry: s3://%s/%s every %ss",
            settings.results_bucket,
            _publisher.key,
            f"{self.interval:g}",
        )


def _shutting_down(**_: Any) -> None:
    if _publisher is not None:
        _publisher.stopping()


def _shutdown(**_: Any) -> None:
    """After the pool finished its jobs (Celery sends this in the main process only)."""
    global _publisher
    if _publisher is not None:
        _publisher.stop()
        _publisher = None


def install() -> None:
    signals.worker_shutting_down.connect(
        _shutting_down, weak=False, dispatch_uid="galley-registry-stopping"
    )
    signals.worker_shutdown.connect(_shutdown, weak=False, dispatch_uid="galley-registry-stopped")
