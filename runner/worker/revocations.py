"""The worker's side of revoking: S3's revocations fed to Celery's ``worker_state.revoked``.

One thread of the worker's main process refreshes the revoked ids every
``GALLEY_REVOKE_REFRESH_SECONDS`` (runner/core/revocations.py: one HeadObject when nothing
changed, a ListObjectsV2 when something did) and hands what changed to the event loop
(``hub.call_soon``), which adds the ids to ``worker_state.revoked``. From there Celery's own
revoked handling applies wherever a message is judged: its task strategy discards a revoked
job's message as it arrives (REVOKED stored, message acknowledged, never dead-lettered), which
covers queued jobs, retries (a retry is a new message with the same id), jobs redriven from the
DLQ, and delayed jobs, since Galley's hop strategy (runner/worker/hops.py) lets Celery see a
revoked job before it would send it on. Celery checks again just before handing a job to the pool.

Two gaps are closed here:

- **Jobs already handed to the pool.** A prefork worker passes every job it has taken to the
  pool at once; a job waiting there for a free process is written to a child later without any
  check, and the child's copy of ``worker_state.revoked`` is the one it forked with. So the
  refresh also writes the ids to a file of the main process (:func:`shared_file`), and
  :func:`revoked_in_child` — called by the task just before its body
  (runner.runtime.app.GalleyTask) — reads it: one ``stat`` per job, a read only when it changed.
  A job found revoked there stores REVOKED and raises ``Ignore`` (acknowledged, not
  dead-lettered).
- **Terminate.** A new revocation with ``terminate`` of a job this worker runs is carried out as
  Celery's ``revoke(terminate=True)`` is: ``Request.terminate`` signals the pool process running
  it (the pool starts a new one).

A worker reads the revocations once as it starts, before it takes its first job. A slow S3
delays its start by at most the client's timeouts; an S3 that fails delays it until a read
succeeds (logged once, tried again backing off to one refresh interval): a worker that cannot
read the revocations takes no job, since any job it took might be revoked.

The window that stays: a job that starts less than one refresh interval after its revocation
was written may run (no worker has read it yet); with terminate, it is stopped at the next
refresh. Costs, measured by tests/e2e/test_revoke.py: one HEAD per refresh per worker.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import threading
import time
from typing import Any

from celery import bootsteps, signals
from celery.worker import state as worker_state

from runner.core import aws, revocations
from runner.settlement.rules import describe

log = logging.getLogger(__name__)

#: The first pause before reading the revocations again when a worker's first read failed; it
#: doubles up to one refresh interval.
FIRST_READ_RETRY_SECONDS = 0.5

#: The main process's revoked-ids file, set as the worker initialises (before its pool forks,
#: so every pool process knows it); None outside a worker.
_shared: str | None = None
#: A pool process's last read of the file: ((inode, mtime, size), ids).
_seen: tuple[tuple[int, int, int], frozenset[str]] | None = None


def shared_file(pid: int) -> str:
    return os.path.join(tempfile.gettempdir(), f"galley-revoked-{pid}.json")


def install() -> None:
    signals.worker_init.connect(_on_worker_init, weak=False, dispatch_uid="galley-revocations")


def _on_worker_init(**kwargs: Any) -> None:
    global _shared
    _shared = shared_file(os.getpid())
    with contextlib.suppress(OSError):
        os.unlink(_shared)  # a file left by an earlier process with this pid


def revoked_in_child(task_id: Any) -> bool:
    """Whether the main process had ``task_id`` revoked at its last refresh (see the module
    docstring); False outside a worker, and when the file cannot be read."""
    global _seen
    if _shared is None or not isinstance(task_id, str):
        return False
    try:
        stat = os.stat(_shared)
        version = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        if _seen is None or _seen[0] != version:
            with open(_shared, encoding="utf-8") as file:
                _seen = (version, frozenset(json.load(file)))
    except (OSError, ValueError, TypeError):
        return False
    return task_id in _seen[1]


class RevocationWatch(bootsteps.StartStopStep):
    """Worker consumer step: the refresh thread (see the module docstring)."""

    requires = ("celery.worker.consumer.tasks:Tasks",)

    def __init__(self, c: Any, **kwargs: Any) -> None:
        settings = c.app.galley_settings
        self.interval = float(settings.revoke_refresh_seconds)
        self.bucket = settings.results_bucket
        self.region = settings.region
        self.stopped = threading.Event()
        self.thread: threading.Thread | None = None
        self.watch: revocations.Watch | None = None
        super().__init__(c, **kwargs)

    def start(self, c: Any) -> None:
        if self.thread is not None and self.thread.is_alive():  # the consumer restarted
            return
        s3 = aws.client("s3", use="revocations", region=self.region)
        self.watch = revocations.Watch(s3, self.bucket)
        self._read_before_first_job(c)
        self.thread = threading.Thread(
            target=self._loop, args=(c,), name="galley-revocations", daemon=True
        )
        self.thread.start()

    def shutdown(self, c: Any) -> None:
        self.stopped.set()
        if _shared is not None:
            with contextlib.suppress(OSError):
                os.unlink(_shared)

    def _read_before_first_job(self, c: Any) -> None:
        """Read the revocations before the worker takes its first job: a job revoked before
        this worker started is not one it may run. While S3 fails, no job is taken: the read is
        tried again (backing off to one refresh interval), logged once, and a worker told to
        stop meanwhile (SIGTERM, SIGINT) stops waiting and shuts down without taking a job."""
        started, failures, pause = time.monotonic(), 0, FIRST_READ_RETRY_SECONDS
        while not self._stopping():
            try:
                self.refresh(c, on_loop=False)
                if self.watch is not None and not self.watch.complete:  # a long listing goes on
                    continue
            except Exception as error:
                failures += 1
                if failures == 1:
                    log.error(
                        "revocations in s3://%s/%s not read (%s): this worker takes no job "
                        "until they are; trying again every %g s at most",
                        self.bucket,
                        revocations.PREFIX,
                        describe(error),
                        self.interval,
                    )
                self._wait(pause)
                pause = min(pause * 2, self.interval)
                continue
            if failures:
                log.warning(
                    "revocations read after %d failed attempts (%.1f s); taking jobs",
                    failures,
                    time.monotonic() - started,
                )
            return

    def _stopping(self) -> bool:
        """This step or the worker was told to stop (Celery's signal handlers only set flags)."""
        told = (worker_state.should_stop, worker_state.should_terminate)  # an exit code: 0 too
        return self.stopped.is_set() or any(flag is not None and flag is not False for flag in told)

    def _wait(self, seconds: float) -> None:
        """Wait ``seconds``, looking for a stop request every tenth of a second."""
        deadline = time.monotonic() + seconds
        while not self._stopping() and (left := deadline - time.monotonic()) > 0:
            self.stopped.wait(min(left, 0.1))

    def _loop(self, c: Any) -> None:
        pause = self.interval
        while not self.stopped.wait(pause):
            done = self._refresh(c)
            # a listing longer than one refresh may take goes on at once
            pause = 0.0 if done and self.watch and self.watch.listing else self.interval

    def _refresh(self, c: Any, on_loop: bool = True) -> bool:
        try:
            self.refresh(c, on_loop=on_loop)
        except Exception as error:  # S3 unreachable: keep what we have, try again
            log.warning("revocations not refreshed: %s", error)
            return False
        return True

    def refresh(self, c: Any, on_loop: bool = True) -> None:
        """Read the revocations; what changed is applied on the event loop, or at once when
        ``on_loop`` is false (the worker is starting: its loop does not run yet)."""
        assert self.watch is not None
        change = self.watch.refresh()
        if not change.added and not change.removed and not change.rewritten:
            return
        ids = self.watch.ids
        _write_shared(ids)
        stops = self._terminations(change.added | change.rewritten)
        hub = getattr(c, "hub", None) if on_loop else None
        if hub is not None:
            hub.call_soon(_apply, ids, change.removed, stops, c.pool)
        else:  # no event loop (solo pool): the sets are only read between jobs
            _apply(ids, change.removed, stops, c.pool)

    def _terminations(self, changed: frozenset[str]) -> dict[str, str]:
        """Of the ids just revoked (or revoked again), those running here whose revocation says
        terminate: their signal. One GetObject per such job running here, none otherwise."""
        assert self.watch is not None
        running = {r.id for r in _active_requests()} & changed
        stops = {}
        for task_id in running:
            record = revocations.read(self.watch.s3, self.bucket, task_id)
            if record is not None and record.terminate:
                stops[task_id] = record.signal or revocations.TERM
        return stops


def _apply(ids: frozenset[str], removed: frozenset[str], stops: dict[str, str], pool: Any) -> None:
    """On the event loop: Celery's revoked set holds ``ids``; running jobs in ``stops`` are
    terminated as Celery's ``revoke(terminate=True)`` does."""
    revoked = worker_state.revoked
    for task_id in removed:  # their records expired
        revoked.discard(task_id)
    for task_id in ids:
        if task_id not in revoked:
            revoked.add(task_id)
    for request in _active_requests():
        signal = stops.get(request.id)
        if signal is not None:
            log.info("terminating %s[%s] (%s): revoked", request.name, request.id, signal)
            try:  # an exception here would leave the event loop: the worker would stop
                request.terminate(pool, signal=signal)
            except Exception as error:  # e.g. `-P threads`: its pool cannot signal a job
                log.warning(
                    "%s[%s] not stopped (%s: %s); it is revoked and will not run again",
                    request.name,
                    request.id,
                    type(error).__name__,
                    error,
                )


def _write_shared(ids: frozenset[str]) -> None:
    if _shared is None:
        return
    temporary = f"{_shared}.{threading.get_ident()}.tmp"
    try:
        with open(temporary, "w", encoding="utf-8") as file:
            json.dump(sorted(ids), file)
        os.replace(temporary, _shared)
    except OSError as error:
        log.warning("revoked ids not shared with the pool processes: %s", error)


def _active_requests() -> list[Any]:
    for _ in range(5):  # the event loop changes the set; copy, retrying if it changed meanwhile
        try:
            return list(worker_state.active_requests)
        except RuntimeError:
            continue
    return []
