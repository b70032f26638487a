"""The S3 record state machine of an idempotency key: claim, complete, release, with leases.

One JSON object per key (see :mod:`runner.runtime.idempotency` for the record and the guarantee).
:func:`claim` writes a ``running`` record with ``If-None-Match: *`` or takes over an expired
lease with ``If-Match``; :func:`complete` turns our record into ``done`` with the result and
:func:`release` deletes it, both ``If-Match`` our ETag; :func:`mark_callbacks_sent` notes on a
``done`` record that its callbacks went out. Plain boto3 calls on the client the caller passes.
"""

from __future__ import annotations

import enum
import functools
import json
import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from runner.errors import IdempotencyError, LeaseLost, ResultNotJSON
from runner.runtime import conditional
from runner.runtime.idempotency.keys import PREFIX, key_hash, record_key
from runner.wire import kombu_json

log = logging.getLogger(__name__)

#: Conditional-write conflicts (409, or a record changing under us) retried before giving up.
MAX_CLAIM_ATTEMPTS = 8
#: Record field of a ``done`` record: the task id whose callbacks and chain went out after it.
CALLBACKS_SENT_FIELD = "callbacks_sent_by"

_RECORD_VERSION = 1


class Outcome(enum.Enum):
    ACQUIRED = "acquired"  # we hold the lease: run
    DONE = "done"  # a run finished: ``result`` is its result, do not run
    RUNNING = "running"  # another run holds a live lease: do not run now


@dataclass(frozen=True)
class Claim:
    """What :func:`claim` found. ``etag``/``token`` are ours when ``outcome`` is ACQUIRED."""

    outcome: Outcome
    bucket: str
    record_key: str
    task_name: str
    key_hash: str
    token: str
    etag: str
    owner_task_id: str
    expires_at: float
    took_over: bool = False
    result: Any = None
    record: Mapping[str, Any] = field(default_factory=dict)


def claim(
    s3: Any,
    bucket: str,
    task_name: str,
    key: str,
    task_id: str,
    lease_seconds: float,
    now: float,
    *,
    prefix: str = PREFIX,
) -> Claim:
    """Try to become the one run of ``key``; see :class:`Outcome` for what comes back."""
    if lease_seconds <= 0:
        raise ValueError(f"lease_seconds must be > 0, got {lease_seconds!r}")
    name = record_key(task_name, key, prefix)
    token = uuid.uuid4().hex
    body = {
        "version": _RECORD_VERSION,
        "status": "running",
        "task": task_name,
        "token": token,
        "task_id": task_id,
        "started_at": now,
        "expires_at": now + lease_seconds,
    }
    # What every outcome of this claim shares; ours adds our lease, a found one its record's.
    claim_of = functools.partial(
        Claim,
        bucket=bucket,
        record_key=name,
        task_name=task_name,
        key_hash=key_hash(key),
        token=token,
    )
    mine = functools.partial(
        claim_of, owner_task_id=task_id, expires_at=now + lease_seconds, record=body
    )
    for attempt in range(MAX_CLAIM_ATTEMPTS):
        if attempt:
            conditional.pause(attempt)
        etag = _put(s3, bucket, name, body, IfNoneMatch="*")
        if etag is not None:
            return mine(Outcome.ACQUIRED, etag=etag)
        found = _get(s3, bucket, name)
        if found is None:  # released or expired between our PUT and GET: try again
            continue
        record, etag = found
        if record.get("token") == token:  # our own PUT, retried by boto3 after a lost response
            return mine(Outcome.ACQUIRED, etag=etag)
        status = record.get("status")
        seen = functools.partial(
            claim_of,
            etag=etag,
            owner_task_id=str(record.get("task_id")),
            expires_at=float(record.get("expires_at") or 0),
            record=record,
        )
        if status == "done":
            return seen(Outcome.DONE, result=record.get("result"))
        if float(record.get("expires_at") or 0) > now:
            return seen(Outcome.RUNNING)
        # The holder's lease expired (it crashed or was killed): take over, ETag-guarded.
        taken = _put(s3, bucket, name, body, IfMatch=etag)
        if taken is not None:
            log.warning(
                "%s: took over idempotency record %s from task %s (lease expired at %s)",
                task_name,
                name,
                record.get("task_id"),
                record.get("expires_at"),
            )
            return mine(Outcome.ACQUIRED, etag=taken, took_over=True)
    raise IdempotencyError(
        f"{task_name}: could not claim {name} after {MAX_CLAIM_ATTEMPTS} attempts "
        "(it kept changing under us)"
    )


def complete(s3: Any, held: Claim, result: Any, now: float) -> str:
    """Record ``result`` as the key's result; returns the new ETag. Raises :class:`LeaseLost` if
    the record is no longer ours, :class:`ResultNotJSON` if the result is not JSON."""
    _check_held(held)
    try:
        encoded = json.loads(kombu_json.dumps(result))
    except (TypeError, ValueError) as error:
        raise ResultNotJSON(
            f"{held.task_name}: the result cannot be stored as JSON ({error}); "
            "a task's result must be JSON (Celery could not store it either)"
        ) from None
    body = {**held.record, "status": "done", "finished_at": now, "result": encoded}
    etag = _put(s3, held.bucket, held.record_key, body, IfMatch=held.etag)
    if etag is None:
        raise LeaseLost(
            f"{held.task_name}: idempotency record {held.record_key} was taken over or removed "
            f"before task {held.owner_task_id} completed it (its lease expired)"
        )
    return etag


def release(s3: Any, held: Claim) -> bool:
    """Delete our record if it is still ours, so a later run may claim the key again."""
    _check_held(held)
    try:
        s3.delete_object(Bucket=held.bucket, Key=held.record_key, IfMatch=held.etag)
    except ClientError as error:
        if conditional.code(error) in ("PreconditionFailed", "NoSuchKey", "404", "412"):
            return False  # taken over or gone: not ours to delete
        raise
    return True


def mark_callbacks_sent(s3: Any, done: Claim, task_id: str) -> bool:
    """Note in the key's ``done`` record that ``task_id`` dispatched its callbacks and chain, so
    duplicates do not dispatch theirs. False if the record already says so, is gone or is not
    ``done`` (a later run of an expired record owns it)."""
    for attempt in range(MAX_CLAIM_ATTEMPTS):
        if attempt:
            conditional.pause(attempt)
        found = _get(s3, done.bucket, done.record_key)
        if found is None:
            return False
        record, etag = found
        if record.get("status") != "done" or record.get(CALLBACKS_SENT_FIELD):
            return False
        marked = {**record, CALLBACKS_SENT_FIELD: task_id}
        if _put(s3, done.bucket, done.record_key, marked, IfMatch=etag) is not None:
            return True
    raise IdempotencyError(
        f"{done.task_name}: could not mark {done.record_key} after {MAX_CLAIM_ATTEMPTS} attempts "
        "(it kept changing under us)"
    )


def decode_result(value: Any) -> Any:
    """A stored result as the caller gets it (kombu's JSON type markers decoded)."""
    return json.loads(json.dumps(value), object_hook=kombu_json.object_hook)


def _check_held(held: Claim) -> None:
    if held.outcome is not Outcome.ACQUIRED:
        raise ValueError(f"{held.record_key}: not held by us ({held.outcome.value})")


def _put(s3: Any, bucket: str, name: str, body: Mapping[str, Any], **condition: str) -> str | None:
    """A conditional PutObject: the new ETag, or None when the condition did not hold."""
    try:
        response = s3.put_object(
            Bucket=bucket,
            Key=name,
            Body=json.dumps(body, separators=(",", ":")).encode("utf-8"),
            ContentType="application/json",
            **condition,
        )
    except ClientError as error:
        if conditional.code(error) in conditional.CONDITION_FAILED:
            return None
        raise IdempotencyError(f"cannot write s3://{bucket}/{name}: {error}") from error
    return str(response["ETag"])


def _get(s3: Any, bucket: str, name: str) -> tuple[dict[str, Any], str] | None:
    try:
        response = s3.get_object(Bucket=bucket, Key=name)
    except ClientError as error:
        if conditional.code(error) in conditional.MISSING:
            return None
        raise IdempotencyError(f"cannot read s3://{bucket}/{name}: {error}") from error
    raw = response["Body"].read()
    try:
        record = json.loads(raw)
    except ValueError:
        record = None
    if not isinstance(record, dict) or record.get("status") not in ("running", "done"):
        raise IdempotencyError(
            f"s3://{bucket}/{name} is not an idempotency record ({raw[:80]!r}); "
            "delete it to let the task run"
        )
    return record, str(response["ETag"])
