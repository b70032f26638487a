"""Idempotency keys in Celery tasks: what ``GalleyTask`` calls around a body and after it.

:func:`run_once` wraps a task body in :func:`~runner.runtime.idempotency.once.once` with the
task's key, lease and results bucket; :func:`callbacks_dispatched` notes in the key's record that
its callbacks and chain went out, so duplicates drop theirs. Duck-typed over Celery's task and
request: no Celery import.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from runner.core import aws
from runner.errors import IdempotencyError
from runner.runtime.idempotency.keys import idempotency_key_for
from runner.runtime.idempotency.once import DEFAULT_RETRY_SECONDS, once
from runner.runtime.idempotency.store import (
    CALLBACKS_SENT_FIELD,
    Claim,
    Outcome,
    mark_callbacks_sent,
)

log = logging.getLogger(__name__)

#: Task attribute: the lease in seconds (default: the task's hard time limit + the margin).
LEASE_ATTRIBUTE = "idempotency_lease"
#: Task attribute: the longest wait before a duplicate looks again (default: DEFAULT_RETRY_SECONDS).
RETRY_ATTRIBUTE = "idempotency_retry_seconds"

#: Added to the time limit: the time a killed run's worker needs to be noticed, plus clock skew.
LEASE_MARGIN_SECONDS = 60
#: The lease of a task with no time limit at all (Galley always sets one).
FALLBACK_LEASE_SECONDS = 900 + LEASE_MARGIN_SECONDS
#: Request attribute: the claim whose result this execution returns (see :func:`run_once`).
CLAIM_ATTRIBUTE = "galley_idempotency_claim"


def run_once(
    task: Any,
    args: Sequence[Any],
    kwargs: Mapping[str, Any],
    run: Callable[[], Any],
    *,
    s3: Any = None,
    bucket: str | None = None,
    clock: Callable[[], float] = time.time,
) -> Any:
    """What ``GalleyTask.__call__`` wraps the task body in. Call it before the body's request is
    pushed (it reads ``task.request``: id, headers, time limit).

    No key (no header, no key function) or a direct call of the task function: ``run()``.
    Otherwise :func:`once` with the task's lease; the bucket defaults to the app's results bucket
    (``s3_bucket``) and the client to a boto3 S3 client for this process.
    """
    request = task.request
    if getattr(request, "called_directly", True):
        return run()
    key = idempotency_key_for(task, args, kwargs)
    if key is None:
        return run()
    if bucket is None:
        bucket = task.app.conf.get("s3_bucket")
        if not bucket:
            raise IdempotencyError(f"{task.name}: no results bucket configured (s3_bucket)")
    return once(
        s3 if s3 is not None else _s3(),
        bucket,
        task.name,
        key,
        str(request.id),
        run,
        lease_seconds=lease_seconds_for(task),
        retry_seconds=float(getattr(task, RETRY_ATTRIBUTE, None) or DEFAULT_RETRY_SECONDS),
        clock=clock,
        completed=functools.partial(_returning, request),
    )


def _returning(request: Any, held: Claim) -> None:
    """The execution returns ``held``'s result: remember the claim on the request (for
    :func:`callbacks_dispatched`). A duplicate whose key's callbacks and chain already went out
    drops its own: Celery's tracer dispatches ``request.callbacks`` and ``request.chain`` after
    the body returns, and stores the result (SUCCESS) either way."""
    setattr(request, CLAIM_ATTRIBUTE, held)
    sent_by = held.record.get(CALLBACKS_SENT_FIELD) if held.outcome is Outcome.DONE else None
    if not sent_by:
        return
    if getattr(request, "callbacks", None) or getattr(request, "chain", None):
        log.info(
            "%s[%s]: a duplicate; not dispatching its callbacks/chain (task %s dispatched the "
            "key's)",
            held.task_name,
            getattr(request, "id", None),
            sent_by,
        )
    request.callbacks = None
    request.chain = None


def callbacks_dispatched(task: Any, *, s3: Any = None) -> None:
    """What ``GalleyTask.on_success`` calls: Celery has dispatched the request's callbacks and
    chain (it calls ``on_success`` after that and after storing the result). A keyed execution
    that had some notes it in the key's record, so that later duplicates drop theirs. Never
    raises: if the note cannot be written, a duplicate dispatches its callbacks again."""
    request = task.request
    held = getattr(request, CLAIM_ATTRIBUTE, None)
    if held is None or not (getattr(request, "callbacks", None) or getattr(request, "chain", None)):
        return
    try:
        mark_callbacks_sent(s3 if s3 is not None else _s3(), held, str(request.id))
    except Exception:  # the task succeeded; the cost is a possible second dispatch
        log.warning(
            "%s[%s]: could not note in %s that its callbacks/chain went out; a duplicate may "
            "dispatch them again",
            held.task_name,
            getattr(request, "id", None),
            held.record_key,
            exc_info=True,
        )


def lease_seconds_for(task: Any) -> float:
    """The task's ``idempotency_lease``, else its hard time limit + :data:`LEASE_MARGIN_SECONDS`."""
    explicit = getattr(task, LEASE_ATTRIBUTE, None)
    if explicit:
        return float(explicit)
    timelimit = getattr(task.request, "timelimit", None) or (None, None)
    limit = (
        (timelimit[0] if timelimit else None)
        or getattr(task, "time_limit", None)
        or task.app.conf.get("task_time_limit")
    )
    return float(limit) + LEASE_MARGIN_SECONDS if limit else float(FALLBACK_LEASE_SECONDS)


def _s3() -> Any:
    """This process's S3 client (runner.core.aws: a forked pool child builds its own)."""
    return aws.cached("s3")
