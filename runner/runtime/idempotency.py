"""Idempotency keys: duplicate deliveries and duplicate enqueues of one piece of work run it once.

A task declares a key as a function of its arguments, or a caller gives one at enqueue::

    @app.task(name="thumbs.make", idempotency_key=lambda bucket, key, **_: f"{bucket}/{key}")
    def make(bucket: str, key: str) -> dict: ...

    # an explicit key wins over the function:
    make.apply_async(args, headers={"galley_idempotency_key": "order-1234"})

The explicit key travels as a custom protocol-2 message header. Celery merges ``apply_async``'s
``headers`` into the message's own headers (``AMQP.send_task_message``:
``headers2.update(headers)``); the worker builds the task's request from those headers
(``Request._request_dict``), so the task sees ``self.request.galley_idempotency_key``. Celery
also gathers such unknown headers into ``self.request.headers``, which ``self.retry()`` sends
again: the key survives retries. An eager ``task.apply(headers=...)`` fills only
``self.request.headers``; both places are read.

How it works — one S3 object per key, in the results bucket, no new server:
``idempotency/<task name>/<sha256 of the key>``, JSON ``{"status": "running"|"done", "token",
"task_id", "started_at", "expires_at"[, "finished_at", "result"[, "callbacks_sent_by"]]}``.

1. **claim**: ``PutObject`` with ``If-None-Match: *`` writes a ``running`` record with a lease
   (``expires_at``). S3 lets exactly one writer create the object; the others get 412 and read it:
   ``done`` -> they return its stored result without running; ``running`` with a live lease ->
   :class:`InProgressElsewhere` (the task retries later); ``running`` with an expired lease (its
   holder crashed) -> take it over with ``PutObject If-Match: <the ETag read>``, so of several
   takers exactly one wins. Every record carries a fresh random ``token``: it makes each record's
   ETag unique (S3 ETags are content hashes; two identical bodies would share one) and lets a
   claimant recognise its own write when boto3 retried a PUT whose first response was lost.
2. **complete**: ``PutObject If-Match: <our ETag>`` turns our record into ``done`` with the result
   (kombu's JSON, as Celery stores results). If our lease was taken over meanwhile, S3 refuses
   (412) and the result stays the taker's; we log it.
3. **release**: a run that raises (including ``self.retry()``) ``DeleteObject If-Match: <our ETag>``
   deletes our record — only if it is still ours — so a retry or a duplicate can run again.

Guarantee, precisely (for one task name + key, while its record exists and leases are honoured):

- **Exactly once — the result.** One run's result becomes the key's result, and every caller gets
  that value: each delivery of the same message (SQS is at-least-once) and each enqueue with the
  key, whenever it arrives. No two runs of the key are in progress at once, and no run starts
  after one has completed: a later delivery returns the stored result without running the body;
  one that arrives during a run waits (``InProgressElsewhere`` -> retry) and then returns it.
- **At least once — the body's effect.** The body runs again only when an earlier run did not
  complete. If no run fails or dies, the effect happens exactly once.
- **Failures are not remembered**: a run that raises releases the key, and the next delivery,
  retry or duplicate runs the body again. Effects a failed run already made are not undone.
- **The crash window is at-least-once**: if a worker dies (``kill -9``, OOM, hard time limit, lost
  container) after the body's effect but before ``complete`` writes ``done``, the record stays
  ``running`` until its lease expires; then the next delivery takes the lease over and runs the
  body **again**. Likewise if ``complete`` itself cannot reach S3 (logged; the task still returns
  its result). Make the effect itself idempotent for that window: write to a deterministic
  destination (the same S3 key, ``If-None-Match: *`` on it, a database upsert or unique
  constraint keyed by the idempotency key), or pass the key on to the downstream API's own
  idempotency token.
- **A run longer than its lease** loses it: a duplicate may then take over and run concurrently,
  and the late run's caller keeps its own result (the key's result is the taker's). The lease is
  the task's hard time limit plus :data:`LEASE_MARGIN_SECONDS`, and the time limit kills a run
  before its lease ends, so this needs a clock or a limit that is wrong. (A task may outlive the
  queue's visibility timeout thanks to the visibility heartbeat; the lease follows the time
  limit, not the visibility timeout.)
- **Clocks**: leases compare the claimant's wall clock with the holder's ``expires_at``. Workers'
  clocks must agree to well within the margin (60 s); NTP / the Amazon Time Sync Service keep
  EC2, Fargate and Lambda within milliseconds.
- **Records expire** only by the bucket's lifecycle rule on ``idempotency/`` (the ``done`` record is
  what deduplicates, so a duplicate arriving after it is deleted runs the body again). Keep the
  rule longer than any duplicate can arrive: SQS retention (up to 14 days) plus the longest
  enqueue retry or redrive you allow.
- **Scope**: keys are per task name (the same key in two tasks is two records). A direct call of the
  task function (``task(...)``, no message) runs plainly, as any function.
- **Same task id, two deliveries**: the duplicate that waits stores ``RETRY`` (and later
  ``STARTED``) under the shared task id before ending at ``SUCCESS`` with the same value; a reader
  polling in between may see those states. ``AsyncResult.get()`` waits for ``SUCCESS``.
- **Callbacks and chains** (``link=``, ``chain(...)``) go out once per key, not once per
  delivery. Celery's tracer dispatches ``request.callbacks`` and ``request.chain`` after the body
  returns, then stores the result and calls ``on_success``. The run that completes the key
  dispatches its own; ``GalleyTask.on_success`` then notes it in the record
  (``callbacks_sent_by``). A duplicate that finds that note drops its request's callbacks and
  chain before the tracer reads them, and still ends at ``SUCCESS`` with the stored result.
  (Raising ``Ignore`` instead would skip the callbacks too, but also the result: a duplicate
  enqueue's task id would stay at the ``STARTED`` that ``task_track_started`` wrote.) At least once,
  like the effect: if the completing run dies, or its dispatch fails, before the note, the next
  duplicate dispatches its own and notes it; duplicates racing that note may both dispatch. A
  duplicate enqueue's own chain therefore stops after its first step: wait on that step's
  result. Chord bodies are started by ``celery.chord_unlock`` once per chord (the S3 backend
  counts no chord parts), so a redelivered header task does not start its chord body again.

The atomicity comes from S3, not from Galley: S3 evaluates conditional ``PutObject``
(``If-None-Match``, ``If-Match``) and conditional ``DeleteObject`` (``If-Match``; general purpose
buckets since 2025-09) atomically; concurrent conditional writes may get 409
``ConditionalRequestConflict``, which :func:`claim` retries. IAM: ``s3:GetObject``,
``s3:PutObject``, ``s3:DeleteObject`` on ``idempotency/*`` (workers have them on the bucket).
moto 5.2.5 implements all three conditions (412 ``PreconditionFailed``; ``If-Match`` on a missing
key is 404 ``NoSuchKey``, as on S3) but checks them without a lock; the tests' races never
produced two winners there.
"""

from __future__ import annotations

import contextlib
import contextvars
import enum
import functools
import hashlib
import inspect
import json
import logging
import math
import os
import random
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from runner.errors import (
    IdempotencyError,
    IdempotencyKeyError,
    InProgressElsewhere,
    LeaseLost,
    ResultNotJSON,
)
from runner.wire import kombu_json

log = logging.getLogger(__name__)

#: Where the records live in the results bucket (its lifecycle rule expires them).
PREFIX = "idempotency/"
#: The message header carrying an explicit key (``apply_async(headers={HEADER: key})``).
HEADER = "galley_idempotency_key"
#: Task attribute: a callable receiving the task's ``*args, **kwargs`` and returning the key.
KEY_ATTRIBUTE = "idempotency_key"
#: Task attribute: the lease in seconds (default: the task's hard time limit + the margin).
LEASE_ATTRIBUTE = "idempotency_lease"
#: Task attribute: the longest wait before a duplicate looks again (default below).
RETRY_ATTRIBUTE = "idempotency_retry_seconds"

#: Added to the time limit: the time a killed run's worker needs to be noticed, plus clock skew.
LEASE_MARGIN_SECONDS = 60
#: The lease of a task with no time limit at all (Galley always sets one).
FALLBACK_LEASE_SECONDS = 900 + LEASE_MARGIN_SECONDS
#: A duplicate waiting on a live lease looks again after at most this many seconds.
DEFAULT_RETRY_SECONDS = 10
#: Conditional-write conflicts (409, or a record changing under us) retried before giving up.
MAX_CLAIM_ATTEMPTS = 8
#: Record field of a ``done`` record: the task id whose callbacks and chain went out after it.
CALLBACKS_SENT_FIELD = "callbacks_sent_by"
#: Request attribute: the claim whose result this execution returns (see :func:`run_once`).
CLAIM_ATTRIBUTE = "galley_idempotency_claim"

_RECORD_VERSION = 1
#: The record keys this process is running under (guards a task wrapped twice).
_active: contextvars.ContextVar[frozenset[str]] = contextvars.ContextVar(
    "galley_idempotency_active", default=frozenset()
)


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


def key_hash(key: str) -> str:
    """sha256 hex of the key's UTF-8 bytes: stable across processes and Python versions."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def record_key(task_name: str, key: str, prefix: str = PREFIX) -> str:
    """The S3 key of ``key``'s record for ``task_name``."""
    return f"{prefix}{task_name}/{key_hash(key)}"


# --- the state machine on S3 ------------------------------------------------------------------


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
            _pause(attempt)
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
        if _code(error) in ("PreconditionFailed", "NoSuchKey", "404", "412"):
            return False  # taken over or gone: not ours to delete
        raise
    return True


def mark_callbacks_sent(s3: Any, done: Claim, task_id: str) -> bool:
    """Note in the key's ``done`` record that ``task_id`` dispatched its callbacks and chain, so
    duplicates do not dispatch theirs. False if the record already says so, is gone or is not
    ``done`` (a later run of an expired record owns it)."""
    for attempt in range(MAX_CLAIM_ATTEMPTS):
        if attempt:
            _pause(attempt)
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
        if _code(error) in (
            "PreconditionFailed",
            "412",
            "ConditionalRequestConflict",
            "409",
            "NoSuchKey",
            "404",
        ):
            return None
        raise IdempotencyError(f"cannot write s3://{bucket}/{name}: {error}") from error
    return str(response["ETag"])


def _get(s3: Any, bucket: str, name: str) -> tuple[dict[str, Any], str] | None:
    try:
        response = s3.get_object(Bucket=bucket, Key=name)
    except ClientError as error:
        if _code(error) in ("NoSuchKey", "404"):
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


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def _pause(attempt: int) -> None:
    """A short jittered pause between conflicting conditional writes."""
    time.sleep(random.uniform(0, 0.05 * 2**attempt))  # noqa: S311 - jitter, not crypto


# --- running a task once ------------------------------------------------------------------------


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


# --- the Celery side (duck-typed: no Celery import) -------------------------------------------


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
        s3 if s3 is not None else _s3_client(os.getpid()),
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
        mark_callbacks_sent(
            s3 if s3 is not None else _s3_client(os.getpid()), held, str(request.id)
        )
    except Exception:  # the task succeeded; the cost is a possible second dispatch
        log.warning(
            "%s[%s]: could not note in %s that its callbacks/chain went out; a duplicate may "
            "dispatch them again",
            held.task_name,
            getattr(request, "id", None),
            held.record_key,
            exc_info=True,
        )


def idempotency_key_for(task: Any, args: Sequence[Any], kwargs: Mapping[str, Any]) -> str | None:
    """The explicit header's key, else the task's key function's, else None."""
    request = task.request
    explicit = getattr(request, HEADER, None)
    if explicit is None:
        explicit = (getattr(request, "headers", None) or {}).get(HEADER)
    if explicit is not None:
        return _checked(task.name, explicit, f"the {HEADER} header")
    function = _key_function(task)
    if function is None:
        return None
    try:
        key = function(*args, **kwargs)
    except Exception as error:
        raise IdempotencyKeyError(
            f"{task.name}: its idempotency_key function raised {type(error).__name__}: {error}"
        ) from error
    return _checked(task.name, key, "its idempotency_key function")


def _key_function(task: Any) -> Callable[..., Any] | None:
    # A function given as a task option becomes a class attribute: read it unbound, or it
    # would receive the task as its first argument.
    function = inspect.getattr_static(task, KEY_ATTRIBUTE, None)
    if isinstance(function, staticmethod | classmethod):
        function = getattr(task, KEY_ATTRIBUTE)
    if function is None:
        return None
    if not callable(function):
        raise IdempotencyKeyError(
            f"{task.name}: idempotency_key must be a callable taking the task's arguments, "
            f"got {type(function).__name__}"
        )
    return function


def _checked(task_name: str, key: Any, source: str) -> str:
    if not isinstance(key, str):
        raise IdempotencyKeyError(
            f"{task_name}: {source} gave {type(key).__name__} {key!r}; a key must be a str"
        )
    if not key:
        raise IdempotencyKeyError(f"{task_name}: {source} gave an empty key")
    return key


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


@functools.cache
def _s3_client(pid: int) -> Any:
    """One S3 client per process (keyed by pid: a forked pool child builds its own)."""
    from runner.core import aws

    return aws.client("s3")
