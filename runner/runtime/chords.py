"""Chords counted in S3: the header task that completes the chord fires its body.

Celery's S3 backend cannot count (``implements_incr = False``), so every chord sent through it
also sends ``celery.chord_unlock``, a task that polls the header's results every second, through
SQS and S3, until they are all ready. Here the chord is counted instead, as Celery's counting
backends (Redis, DynamoDB) do in ``BaseKeyValueStoreBackend.on_chord_part_return``, with one S3
object per chord, next to the results (``<s3_base_path>chord-unlock-<group id>``)::

    {"version": 1, "group_id": ..., "group": <the header GroupResult as a tuple>,
     "done": [<header task ids counted>], "firing": <task id> | null, "fired": false}

- :func:`start` (``apply_chord``, before the header is sent) creates it with ``If-None-Match: *``;
  a chord sent again with the same ids (a duplicate of the chain step that sends it) keeps the
  counter it has.
- :func:`part_returned` (each header task's SUCCESS, FAILURE or REVOKED) adds the task's id to
  ``done`` with ``If-Match`` the ETag read, retrying on 412/409. ``done`` is a set of ids, not a
  number: a redelivered header task is not counted twice. The write that completes the set also
  names its writer ``firing``; that task joins the header results as Celery does (a failed
  header task fails the body with a ChordError, ``chord_error_from_stack``), sends the body and
  marks the counter ``fired``. The counter stays: a late duplicate finds it fired and does
  nothing (Celery's counting backends delete it, and a late duplicate then fails the body with
  "GroupResult ... no longer exists").
- If the firing task dies after completing the set and before marking it fired, its redelivery
  (same task id) fires again: the body is sent at least once, never lost. Any other duplicate of
  a counted task does nothing.
- No counter (a chord sent by a stock Celery client: its ``chord_unlock`` fires the body; or a
  counter removed by the bucket's lifecycle rule): nothing is done.

Requests for a chord of N: 1 PUT to start; per header task 1 GET + 1 PUT (more under
contention); the firing task then reads the N results (N GETs) and marks the counter (1 PUT).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

from celery.backends.base import _create_chord_error_with_cause
from celery.canvas import maybe_signature
from celery.exceptions import ChordError
from celery.result import GroupResult, allow_join_result, result_from_tuple

from runner.runtime import conditional

log = logging.getLogger(__name__)

_VERSION = 1


@dataclass(frozen=True)
class Count:
    """What counting one header task found: ``outcome`` is ``fire`` (this task fires the body),
    ``counted``, ``duplicate`` (already counted), ``late`` (already fired) or ``unknown`` (no
    counter)."""

    outcome: str
    record: dict[str, Any] = field(default_factory=dict)
    etag: str = ""


def start(backend: Any, header: GroupResult) -> None:
    """Create the chord's counter before its header is sent."""
    record = {
        "version": _VERSION,
        "group_id": header.id,
        "group": header.as_tuple(),
        "done": [],
        "firing": None,
        "fired": False,
    }
    created = backend._ensure_retryable(
        conditional.put_if, backend.client, backend.bucket_name, _key(backend, header.id),
        _encode(record), None,
    )  # fmt: skip
    if created is None:
        log.warning("chord %s is counted already (sent again with the same ids): kept", header.id)


def part_returned(backend: Any, request: Any, state: str) -> None:
    """Count a header task that ended (``state``); the one completing the chord fires its body."""
    group_id = getattr(request, "group", None)
    chord = getattr(request, "chord", None)
    if not group_id or not chord:
        return
    app = backend.app
    try:
        count = backend._ensure_retryable(
            count_part, backend.client, backend.bucket_name, _key(backend, group_id),
            request.id, chord.get("chord_size"),
        )  # fmt: skip
    except Exception as exc:
        log.exception("chord %s: header task %s (%s) not counted", group_id, request.id, state)
        callback = maybe_signature(chord, app=app)
        backend.chord_error_from_stack(callback, ChordError(f"Cannot count chord part: {exc!r}"))
        return
    if count.outcome == "unknown":
        log.debug("chord %s has no counter: its chord_unlock fires the body", group_id)
    elif count.outcome == "fire":
        _fire(backend, group_id, chord, count)


def count_part(s3: Any, bucket: str, key: str, task_id: str, size: int | None) -> Count:
    """Add ``task_id`` to the counter's ``done`` set (compare-and-swap on its ETag)."""
    for attempt in range(conditional.MAX_ATTEMPTS):
        if attempt:
            conditional.pause(attempt)
        found = conditional.read(s3, bucket, key)
        if found is None:
            return Count("unknown")
        record, etag = _decode(found[0], key), found[1]
        if record["fired"]:
            return Count("late", record, etag)
        if task_id in record["done"]:
            if record["firing"] == task_id:  # the firing task again: it may have died unsent
                return Count("fire", record, etag)
            return Count("duplicate", record, etag)
        done = [*record["done"], task_id]
        needed = size if size is not None else len(record["group"][1])
        if len(done) > needed:
            log.warning("chord %s: more header tasks returned than it has", record["group_id"])
        completes = record["firing"] is None and len(done) >= needed
        updated = {**record, "done": done, "firing": task_id if completes else record["firing"]}
        written = conditional.put_if(s3, bucket, key, _encode(updated), etag)
        if written is not None:
            return Count("fire" if completes else "counted", updated, written)
    raise ChordError(f"{key} kept changing under {conditional.MAX_ATTEMPTS} conditional writes")


def mark_fired(s3: Any, bucket: str, key: str, count: Count) -> None:
    """Mark the counter fired, so no duplicate fires the body again."""
    record, etag = count.record, count.etag
    for attempt in range(conditional.MAX_ATTEMPTS):
        if attempt:
            conditional.pause(attempt)
            found = conditional.read(s3, bucket, key)
            if found is None:
                return
            record, etag = _decode(found[0], key), found[1]
        if record["fired"]:
            return
        if conditional.put_if(s3, bucket, key, _encode({**record, "fired": True}), etag):
            return
    raise ChordError(f"{key} kept changing under {conditional.MAX_ATTEMPTS} conditional writes")


def _fire(backend: Any, group_id: str, chord: Any, count: Count) -> None:
    """Join the header's results and send the body with them, as Celery's counting backends do;
    a header task that failed (or a send that failed) fails the body with a ChordError."""
    app = backend.app
    callback = maybe_signature(chord, app=app)
    deps = result_from_tuple(count.record["group"], app)
    join = deps.join_native if deps.supports_native_join else deps.join
    try:
        with allow_join_result():
            ret = join(timeout=app.conf.result_chord_join_timeout, propagate=True)
    except Exception as exc:
        try:
            culprit = next(deps._failed_join_report())
            reason = f"Dependency {culprit.id} raised {exc!r}"
        except StopIteration:
            reason = repr(exc)
        log.exception("Chord %r raised: %r", group_id, reason)
        error = _create_chord_error_with_cause(message=reason, original_exc=exc)
        backend.chord_error_from_stack(callback=callback, exc=error)
    else:
        try:
            app.amqp._retry_publish(callback.delay, ret)
        except Exception as exc:
            log.exception("Chord %r raised: %r", group_id, exc)
            error = _create_chord_error_with_cause(
                message=f"Callback error: {exc!r}", original_exc=exc
            )
            backend.chord_error_from_stack(callback=callback, exc=error)
    backend._ensure_retryable(
        mark_fired, backend.client, backend.bucket_name, _key(backend, group_id), count
    )


def _key(backend: Any, group_id: str) -> str:
    return str(backend.object_key(backend.get_key_for_chord(group_id)))


def _encode(record: dict[str, Any]) -> bytes:
    return json.dumps(record, separators=(",", ":")).encode("utf-8")


def _decode(raw: bytes, key: str) -> dict[str, Any]:
    try:
        record = json.loads(raw)
    except ValueError:
        record = None
    if not isinstance(record, dict) or record.get("version") != _VERSION:
        raise ChordError(f"{key} is not a Galley chord counter ({raw[:80]!r})")
    return record
