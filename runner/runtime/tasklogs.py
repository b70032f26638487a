"""``GALLEY_LOG_FORMAT=json`` in the Celery worker (main process and pool children) and the
Lambda consumer: Celery's logging, written as JSON lines (runner/core/logformat.py).

- Celery sets up its handlers as usual (stderr or ``--logfile``, the task logger, print() in a
  task redirected to a logger); ``after_setup_logger`` / ``after_setup_task_logger`` give them
  the JSON formatter. Pool children fork with those handlers.
- Before that, at ``celeryd_init``, the root logger already writes JSON and Python warnings are
  logged (Celery warns as the worker starts, e.g. when it runs as root).
- ``task_prerun`` sets the running task (name, id, receive count: the worker's Request and the
  Lambda consumer put SQS's ApproximateReceiveCount in the request as
  :data:`RECEIVE_COUNT`); ``task_postrun`` logs one line with the run's ``state`` and
  ``duration``. Celery's own task lines (received, succeeded, failed, retry) carry ``task``,
  ``task_id`` and ``state`` too (:class:`TaskFields`).
- The worker program's banner and its shutdown line are written to the terminal, not logged:
  :class:`Worker` logs them instead (one JSON line each).

Text stays the default, and then nothing here changes Celery's output.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from celery import signals
from celery.app import trace
from celery.apps.worker import Worker as CeleryWorker
from celery.apps.worker import (
    install_worker_term_handler,
    install_worker_term_hard_handler,
)

from runner.core import logformat
from runner.worker import request

log = logging.getLogger(__name__)

#: The request field holding SQS's ApproximateReceiveCount of the delivery.
RECEIVE_COUNT = request.RECEIVE_COUNT

_STATES = {
    trace.LOG_RECEIVED.strip(): "RECEIVED",
    trace.LOG_SUCCESS.strip(): "SUCCESS",
    trace.LOG_RETRY.strip(): "RETRY",
    trace.LOG_IGNORED.strip(): "IGNORED",
    trace.LOG_REJECTED.strip(): "REJECTED",
}
_started: dict[str, float] = {}
_json = False


def enabled() -> bool:
    """True once this process (or the one it forked from) writes JSON lines."""
    return _json


def use_json() -> None:
    """From now on this process logs JSON lines: the root logger, Python's warnings, and
    Celery's task lines carry their fields."""
    global _json
    _json = True
    logging.captureWarnings(True)
    root = logging.getLogger()
    logformat.use_json(root)
    for handler in root.handlers:
        if not any(isinstance(f, TaskFields) for f in handler.filters):
            handler.addFilter(TaskFields())


class TaskFields(logging.Filter):
    """Celery's trace lines (``extra={"data": {...}}``) get ``task``, ``task_id``, ``state``
    and, for a success, ``duration``."""

    def filter(self, record: logging.LogRecord) -> bool:
        data = getattr(record, "data", None)
        if isinstance(data, dict) and "id" in data and "name" in data:
            fields: dict[str, Any] = {"task": data["name"], "task_id": data["id"]}
            state = _STATES.get(str(record.msg).strip())
            fields["state"] = state or ("FAILURE" if "exc" in data else None)
            if "runtime" in data:
                fields["duration"] = data["runtime"]
            setattr(record, logformat.FIELDS, fields)
        return True


def install(settings_of: Any) -> None:
    """Connect the signals; ``settings_of()`` gives the process's settings (read once Celery
    sets up logging, when they are loaded)."""

    def wanted() -> bool:
        try:
            return bool(settings_of().log_format == logformat.JSON)
        except Exception:  # settings errors are reported by the start-up checks
            return False

    def on_init(**_: Any) -> None:
        if wanted():
            use_json()

    def on_logger(logger: logging.Logger, **_: Any) -> None:
        if wanted():
            for handler in logger.handlers:
                handler.setFormatter(logformat.JsonFormatter())
                handler.addFilter(TaskFields())
            if logger is logging.getLogger():
                use_json()

    signals.celeryd_init.connect(on_init, weak=False, dispatch_uid="galley-json-init")
    signals.after_setup_logger.connect(on_logger, weak=False, dispatch_uid="galley-json-root")
    signals.after_setup_task_logger.connect(on_logger, weak=False, dispatch_uid="galley-json-task")
    signals.task_prerun.connect(_prerun, weak=False, dispatch_uid="galley-json-prerun")
    signals.task_postrun.connect(_postrun, weak=False, dispatch_uid="galley-json-postrun")
    signals.worker_shutting_down.connect(
        _shutting_down, weak=False, dispatch_uid="galley-json-shutdown"
    )


def _prerun(task_id: str, task: Any, **_: Any) -> None:
    if not _json:
        return
    count = getattr(task.request, RECEIVE_COUNT, None)
    logformat.current_task.set({"task": task.name, "task_id": task_id, "receive_count": count})
    _started[task_id] = time.monotonic()


def _postrun(task_id: str, task: Any, state: str | None = None, **_: Any) -> None:
    if not _json:
        return
    started = _started.pop(task_id, None)
    duration = round(time.monotonic() - started, 6) if started is not None else None
    log.info(
        "task %s[%s] %s in %ss",
        task.name,
        task_id,
        state,
        duration,
        extra={logformat.FIELDS: {"state": state, "duration": duration}},
    )
    logformat.current_task.set(None)


def _shutting_down(sig: str, how: str, **_: Any) -> None:
    if _json:
        log.info("worker: %s shutdown (%s)", how, sig)


class Worker(CeleryWorker):
    """``celery worker``: with JSON logs, the banner is one log line and the shutdown line is
    logged (Celery writes both straight to the terminal)."""

    def emit_banner(self) -> None:
        if not _json:
            return super().emit_banner()
        log.info(
            "celery worker starting",
            extra={logformat.FIELDS: {"banner": self.startup_info(artlines=False)}},
        )
        return None

    def install_platform_tweaks(self, worker: Any) -> None:
        super().install_platform_tweaks(worker)
        if _json:  # the same handlers, without their line to the terminal (logged instead)
            install_worker_term_handler(worker, verbose=False)
            install_worker_term_hard_handler(worker, verbose=False)
