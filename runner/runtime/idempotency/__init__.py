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
  ``STARTED``, for a task with ``track_started``) under the shared task id before ending at
  ``SUCCESS`` with the same value; a reader polling in between may see those states.
  ``AsyncResult.get()`` waits for ``SUCCESS``.
- **Callbacks and chains** (``link=``, ``chain(...)``) go out once per key, not once per
  delivery. Celery's tracer dispatches ``request.callbacks`` and ``request.chain`` after the body
  returns, then stores the result and calls ``on_success``. The run that completes the key
  dispatches its own; ``GalleyTask.on_success`` then notes it in the record
  (``callbacks_sent_by``). A duplicate that finds that note drops its request's callbacks and
  chain before the tracer reads them, and still ends at ``SUCCESS`` with the stored result.
  (Raising ``Ignore`` instead would skip the callbacks too, but also the result: a duplicate
  enqueue's task id would stay ``PENDING``, or at the ``STARTED`` that ``track_started``
  wrote.) At least once,
  like the effect: if the completing run dies, or its dispatch fails, before the note, the next
  duplicate dispatches its own and notes it; duplicates racing that note may both dispatch. A
  duplicate enqueue's own chain therefore stops after its first step: wait on that step's
  result. A chord body is fired by the header task that completes its chord
  (runner.runtime.chords counts header task ids, not deliveries), so a redelivered header task
  does not start its chord body again.

The atomicity comes from S3, not from Galley: S3 evaluates conditional ``PutObject``
(``If-None-Match``, ``If-Match``) and conditional ``DeleteObject`` (``If-Match``; general purpose
buckets since 2025-09) atomically; concurrent conditional writes may get 409
``ConditionalRequestConflict``, which :func:`claim` retries. IAM: ``s3:GetObject``,
``s3:PutObject``, ``s3:DeleteObject`` on ``idempotency/*`` (workers have them on the bucket).
moto 5.2.5 implements all three conditions (412 ``PreconditionFailed``; ``If-Match`` on a missing
key is 404 ``NoSuchKey``, as on S3) but checks them without a lock; the tests' races never
produced two winners there.

Layout: keys.py (where a key comes from, its record's S3 key), store.py (the record state machine
on S3: claim, complete, release, leases), once.py (claim, run, complete around one call),
task.py (the Celery side: ``GalleyTask`` calls :func:`run_once` and :func:`callbacks_dispatched`).
Every public name is importable from this package.
"""

from runner.runtime.idempotency.keys import (
    HEADER,
    KEY_ATTRIBUTE,
    PREFIX,
    idempotency_key_for,
    key_hash,
    record_key,
)
from runner.runtime.idempotency.once import DEFAULT_RETRY_SECONDS, once
from runner.runtime.idempotency.store import (
    CALLBACKS_SENT_FIELD,
    MAX_CLAIM_ATTEMPTS,
    Claim,
    Outcome,
    claim,
    complete,
    decode_result,
    mark_callbacks_sent,
    release,
)
from runner.runtime.idempotency.task import (
    CLAIM_ATTRIBUTE,
    FALLBACK_LEASE_SECONDS,
    LEASE_ATTRIBUTE,
    LEASE_MARGIN_SECONDS,
    RETRY_ATTRIBUTE,
    callbacks_dispatched,
    lease_seconds_for,
    run_once,
)

__all__ = [
    "CALLBACKS_SENT_FIELD",
    "CLAIM_ATTRIBUTE",
    "DEFAULT_RETRY_SECONDS",
    "FALLBACK_LEASE_SECONDS",
    "HEADER",
    "KEY_ATTRIBUTE",
    "LEASE_ATTRIBUTE",
    "LEASE_MARGIN_SECONDS",
    "MAX_CLAIM_ATTEMPTS",
    "PREFIX",
    "RETRY_ATTRIBUTE",
    "Claim",
    "Outcome",
    "callbacks_dispatched",
    "claim",
    "complete",
    "decode_result",
    "idempotency_key_for",
    "key_hash",
    "lease_seconds_for",
    "mark_callbacks_sent",
    "once",
    "record_key",
    "release",
    "run_once",
]
