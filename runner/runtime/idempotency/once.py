"""Running a body once per idempotency key: claim, run, then complete (or release on error).

:func:`once` is the whole protocol around one call, over an S3 client and a bucket the caller
gives; it knows nothing of Celery (:mod:`runner.runtime.idempotency.task` feeds it a task).
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import math
import time
from collections.abc import Callable, Iterator
from typing import Any

from runner.errors import IdempotencyError, InProgressElsewhere, LeaseLost, ResultNotJSON
from runner.runtime.idempotency.keys import PREFIX, record_key
from runner.runtime.idempotency.store import (
    Claim,
    Outcome,
    claim,
    complete,
    decode_result,
    release,
)

log = logging.getLogger(__name__)

#: A duplicate waiting on a live lease looks again after at most this many seconds.
DEFAULT_RETRY_SECONDS = 10
#: The record keys this process is running under (guards a task wrapped twice).
_active: contextvars.ContextVar[frozenset[str]] = contextvars.ContextVar(
    "galley_idempotency_active", default=frozenset()
)


def once(
    s3: Any,
    bucket: str,
    task_name: str,
    key: str,
    task_id: str,
    run: Callable[[], Any],
    *,
    lease_seconds: float,
    retry_seconds: float = DEFAULT_RETRY_SECONDS,
    clock: Callable[[], float] = time.time,
    prefix: str = PREFIX,
    completed: Callable[[Claim], None] = lambda _: None,
) -> Any:
    """Run ``run()`` unless ``key`` already ran: claim, run, complete (or release on error).

    Returns ``run()``'s result, or the stored result of the run that completed first. Raises
    :class:`InProgressElsewhere` while another run holds a live lease. ``completed`` is called
    with the claim of the run whose result is returned, once that result is recorded: the
    ``DONE`` claim found (a duplicate), or ours (``ACQUIRED``) after :func:`complete`.
    """
    name = record_key(task_name, key, prefix)
    if name in _active.get():  # already inside this key's run (a task wrapped twice)
        return run()
    now = clock()
    held = claim(s3, bucket, task_name, key, task_id, lease_seconds, now, prefix=prefix)
    if held.outcome is Outcome.DONE:
        log.info(
            "%s[%s]: idempotency key sha256:%s already done by task %s; returning its result",
            task_name,
            task_id,
            held.key_hash[:12],
            held.owner_task_id,
        )
        completed(held)
        return decode_result(held.result)
    if held.outcome is Outcome.RUNNING:
        wait = max(1, min(math.ceil(held.expires_at - now), math.ceil(retry_seconds)))
        raise InProgressElsewhere(
            task_name, held.key_hash, held.owner_task_id, held.expires_at, wait
        )
    with _running(name):
        try:
            result = run()
        except BaseException:
            _release_quietly(s3, held)
            raise
    try:
        complete(s3, held, result, clock())
    except LeaseLost as error:
        log.warning("%s; the body may have run twice", error)
    except ResultNotJSON:
        _release_quietly(s3, held)
        raise
    except IdempotencyError as error:
        log.error("%s; a duplicate will run again once the lease expires", error)
    else:
        completed(held)
    return result


@contextlib.contextmanager
def _running(name: str) -> Iterator[None]:
    reset = _active.set(_active.get() | {name})
    try:
        yield
    finally:
        _active.reset(reset)


def _release_quietly(s3: Any, held: Claim) -> None:
    try:
        release(s3, held)
    except Exception:  # the run's own error matters more; the lease expires anyway
        log.exception("%s: could not release %s", held.task_name, held.record_key)
