"""Revoking jobs on SQS: ``AsyncResult.revoke()``, ``app.control.revoke()``, `galley revoke`.

Stock Celery broadcasts a revoke to the workers running at that moment; SQS has no broadcast.
Galley records each revocation in the results bucket (runner/core/revocations.py), where every
worker reads it on an interval (runner/worker/revocations.py) and the Lambda consumer before a
batch, and writes the REVOKED state at once, so ``AsyncResult(id).state`` says REVOKED before any
worker has seen the job. The state is written as Celery's own ``_revoke`` control handler
does: only over PENDING, RECEIVED, RETRY or REJECTED — a SUCCESS is never undone (a SUCCESS job is
not even recorded: nothing will run it again), a FAILURE keeps its error (the record still stops a
redrive from the dead-letter queue), and a running job's state is its worker's. Unlike Celery's
handler, which reads and then writes blind, the write is conditional on the object read (S3
``If-Match``, or ``If-None-Match: *`` when there was none; runner.runtime.backend): a job that
starts or finishes between the read and the write keeps its worker's state, and the answer says
what it is.

Every id and the signal are checked before anything is written: a bad one is a
:class:`RevokeError` and nothing is revoked.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from celery import states

from runner.core import revocations

#: States the REVOKED state is written over (Celery's ``celery.worker.control._revoke``).
REPLACEABLE = frozenset({states.PENDING, states.RECEIVED, states.RETRY, states.REJECTED})


@dataclass(frozen=True)
class Revoked:
    """What revoking one id did; ``line`` says it to a person."""

    task_id: str
    state_before: str
    recorded: bool
    line: str


def revoke(
    app: Any, task_ids: Any, *, terminate: bool = False, signal: Any = None
) -> list[Revoked]:
    """Revoke ``task_ids`` (one id or several); see the module docstring."""
    ids = [task_ids] if isinstance(task_ids, str) or not _iterable(task_ids) else list(task_ids)
    ids = list(dict.fromkeys(revocations.check_task_id(task_id) for task_id in ids))
    signal_name = revocations.signal_name_of(signal) if terminate else None
    settings = app.galley_settings
    s3 = app.galley_s3
    before = {task_id: app.backend.get_state(task_id) for task_id in ids}
    now = datetime.now(UTC).isoformat()
    records = [
        revocations.Record(task_id, now, terminate=terminate, signal=signal_name)
        for task_id, state in before.items()
        if state != states.SUCCESS
    ]
    if records:
        revocations.record(s3, settings.results_bucket, records)
    outcomes = []
    for task_id, state in before.items():
        recorded = state != states.SUCCESS
        if state in REPLACEABLE:  # again, conditionally: it may have started or finished since
            state = app.backend.store_revoked_over(task_id, REPLACEABLE, "revoked")
        refresh = settings.revoke_refresh_seconds
        line = _line(task_id, state, terminate, signal_name, refresh)
        outcomes.append(Revoked(task_id, state, recorded, line))
    return outcomes


def _line(task_id: str, state: str, terminate: bool, signal: str | None, refresh: float) -> str:
    if state == states.SUCCESS:
        return f"{task_id}: already succeeded; nothing to revoke (its result is kept)"
    if state == states.REVOKED:
        return f"{task_id}: already revoked"
    if state == states.PENDING:
        return (
            f"revoked {task_id}: no result yet (queued, delayed, or no job has this id); "
            "it will not run"
        )
    if state in REPLACEABLE:
        return f"revoked {task_id}: it was {state}; it will not run again"
    if state == states.FAILURE:
        return (
            f"revoked {task_id}: it had failed (its FAILURE is kept); a redrive from the "
            "dead-letter queue will not run it"
        )
    if terminate:
        return (
            f"revoked {task_id}: it is {state}; a worker running it sends it {signal} within "
            f"~{refresh:g} s (a Lambda consumer cannot stop it; it will not run again)"
        )
    return (
        f"revoked {task_id}: it is {state} and will finish (terminate stops it); "
        "it will not run again"
    )


def _iterable(value: Any) -> bool:
    return isinstance(value, Iterable) and not isinstance(value, bytes | dict)
