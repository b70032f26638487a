"""What a worker checks before it takes any job: refuse a misconfiguration at start, clearly.

`celery -A runner.app worker` runs runner.ops.checks against AWS as it starts (Celery's
``celeryd_init`` signal, before the pool and the consumer exist). Each problem is one line naming
the variable to fix, and the worker exits 1: a worker on a wrong queue URL, a queue without any
dead-letter queue, a missing bucket or a visibility timeout that disagrees with the queue's never
reports "ready". What the checks learn is used: an unset GALLEY_VISIBILITY_TIMEOUT becomes the
queue's own, and without GALLEY_DLQ_URL the queue's RedrivePolicy target receives dead letters.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

from celery import signals
from celery.utils.text import str_to_list

from runner.core import queues
from runner.core.settings import WorkerSettings, load
from runner.errors import SettingsError
from runner.ops import checks
from runner.worker.settler import backoff

log = logging.getLogger(__name__)


#: How long the checks try again while AWS cannot be reached (a network blip at a deploy must
#: not fail the worker's start), before the worker refuses to start.
REACH_PATIENCE_SECONDS = 30.0


#: What a check's message says when AWS failed for the moment rather than refused.
PASSING = (
    "cannot reach",
    "InternalError",
    "ServiceUnavailable",
    "SlowDown",
    "Throttl",
    "500",
    "503",
)


def _unreachable(problems: list[checks.Problem]) -> bool:
    """Every problem is a passing fault (unreachable, 5xx, throttled): worth another try."""
    return bool(problems) and all(any(m in p.message for m in PASSING) for p in problems)


def consumed_queue(selected: Any, excluded: Any = None) -> str:
    """The role of the one queue a worker consumes, from ``celery worker -Q`` (``jobs`` when
    not given) and ``-X``; SettingsError when they name more than one queue, a queue the stack
    lacks (an empty or spaced name too: Celery would stop on it with a traceback), or exclude
    the one queue consumed."""
    names = str_to_list(selected) if selected is not None else []
    if len(names) > 1:
        raise SettingsError(
            f"-Q {','.join(names)}: a worker consumes one queue (each has its own visibility "
            "timeout and dead-letter queue); start one worker per queue, e.g. "
            "`celery -A runner.app worker -Q long`"
        )
    consume = names[0] if names else queues.JOBS
    try:
        queues.check_role(consume)
        for name in str_to_list(excluded) if excluded is not None else []:
            queues.check_role(name)
    except SettingsError as error:
        raise SettingsError(f"-Q/-X: {error}") from None
    if excluded is not None and consume in str_to_list(excluded):
        raise SettingsError(
            f"-X {excluded}: excludes the {consume} queue, the one this worker consumes; "
            "choose the worker's queue with -Q"
        )
    return consume


def resolve(
    settings: WorkerSettings,
    sqs: Any,
    s3: Any,
    *,
    consume: str = queues.JOBS,
    patience: float = REACH_PATIENCE_SECONDS,
) -> WorkerSettings:
    """``settings`` completed from AWS for a worker consuming the queue with role ``consume``;
    raises SettingsError listing every problem."""
    deadline = time.monotonic() + patience
    attempt = 0
    while True:
        problems, resolved = checks.worker_problems(settings, sqs, s3, consume)
        if not _unreachable(problems) or time.monotonic() >= deadline:
            break
        attempt += 1
        time.sleep(min(backoff(attempt, cap=5.0) + 0.5, max(0.0, deadline - time.monotonic())))
    if problems:
        raise SettingsError(
            "Galley cannot start:\n" + "\n".join(f"  {problem}" for problem in problems)
        )
    overrides: dict[str, Any] = {"visibility_timeout": resolved.visibility_timeout}
    dlq_field = "long_dlq_url" if consume == queues.LONG else "dlq_url"
    if resolved.dlq_url and not getattr(settings, dlq_field):
        overrides[dlq_field] = resolved.dlq_url
    explicit = {name: getattr(settings, name) for name in settings.model_fields_set}
    return load(WorkerSettings, **{**explicit, **overrides})


def _check_at_start(
    sender: Any = None, instance: Any = None, options: Any = None, **_: Any
) -> None:
    app = getattr(instance, "app", None)
    reconfigure = getattr(app, "galley_reconfigure", None)
    if app is None or reconfigure is None:
        return
    try:
        given = options or {}
        consume = consumed_queue(given.get("queues"), given.get("exclude_queues"))
        settings = app.galley_settings
        sqs, s3 = checks.clients(settings)
        resolved = resolve(settings, sqs, s3, consume=consume)
    except SettingsError as error:
        print(f"Error: {error}", file=sys.stderr)
        # Celery's signal dispatch logs and swallows exceptions; SystemExit is not one
        raise SystemExit(1) from None
    except Exception as error:  # swallowed by Celery, the worker would start unchecked
        print(
            f"Error: the start-up checks failed: {type(error).__name__}: {error}", file=sys.stderr
        )
        raise SystemExit(1) from None
    reconfigure(resolved, consume)
    # Celery read the time limit from the configuration before this signal could change it
    instance.time_limit = resolved.effective_time_limit
    dead_letters = resolved.long_dlq_url if consume == queues.LONG else resolved.dlq_url
    _passed.append(
        f"start-up checks passed: the {consume} queue, visibility timeout "
        f"{resolved.visibility_timeout}s, dead letters to {dead_letters}"
    )


#: Said once logging is set up (it is not yet when the checks run).
_passed: list[str] = []


def _report(**_: Any) -> None:
    while _passed:
        log.info(_passed.pop(0))


def install() -> None:
    signals.celeryd_init.connect(_check_at_start, weak=False, dispatch_uid="galley-startup")
    signals.celeryd_after_setup.connect(_report, weak=False, dispatch_uid="galley-startup-report")
