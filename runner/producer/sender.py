"""Enqueue Celery tasks with boto3 only (no Celery, no kombu): what Lambdas and scripts use.

``enqueue(name, args, kwargs, countdown=c, task_id=t)`` sends exactly the SendMessage request a
Galley Celery app sends for ``app.send_task(name, args, kwargs, task_id=t, countdown=c,
delay_seconds=ceil(c))``: same ``QueueUrl``, same ``DelaySeconds``, and a ``MessageBody``
identical but for the ids and clock readings each sender makes up (see :mod:`runner.wire.codec`).

Delays: a countdown becomes ``DelaySeconds`` (rounded up, so the message is never visible before
its ``eta`` and no worker holds it; at most SQS's 900 s) plus the ``eta`` header Celery sets. A
longer countdown travels in hops: whoever receives it early sends it on with the next delay
(runner.worker.hops, runner.lambdas.records). FIFO queues take no per-message delay.

Batches: :func:`enqueue_many` sends ``SendMessageBatch`` requests of at most 10 entries and at
most 1 MiB of message bodies. Nothing is lost silently: every call gets an :class:`EnqueueResult`
(task id, and SQS message id or error), in call order; by default any failure raises
:class:`EnqueueError` *after* every batch was tried, carrying all results, so the caller knows
which task ids were sent and which to send again (with the same ids).
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from runner.core import aws, batching, contracts, delays, limits, producer_config, queues
from runner.core.variables import QUEUE_URL, RESULTS_BUCKET, queue_name_from_url
from runner.errors import (
    CallError,
    EnqueueError,
    MessageTooLargeError,
    QueueNotFoundError,
    SettingsError,
)
from runner.wire import codec, payloads
from runner.wire.saferepr import saferepr

if TYPE_CHECKING:
    from runner.core.producer_config import ProducerOptions

IDEMPOTENCY_HEADER = codec.IDEMPOTENCY_HEADER

#: Stores a call's arguments and returns the pointer the message carries instead.
Offload = Callable[[str, Sequence[Any], Mapping[str, Any] | None], dict[str, str]]

_MISSING_QUEUE_CODES = frozenset({"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"})


@dataclass(frozen=True)
class Call:
    """One task call for :func:`enqueue_many`."""

    task_name: str
    args: Sequence[Any] = ()
    kwargs: Mapping[str, Any] | None = None
    countdown: float | None = None
    task_id: str | None = None
    #: Runs the task's body once per key (runner.runtime.idempotency); sent as a message header.
    idempotency_key: str | None = None


@dataclass(frozen=True)
class EnqueueResult:
    """What happened to one call: sent (``message_id``) or not (``error``)."""

    task_id: str
    message_id: str | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def enqueue(
    task_name: str,
    args: Sequence[Any] = (),
    kwargs: Mapping[str, Any] | None = None,
    *,
    countdown: float | None = None,
    queue: str | None = None,
    queue_url: str | None = None,
    task_id: str | None = None,
    idempotency_key: str | None = None,
    client: Any = None,
    settings: ProducerOptions | None = None,
) -> str:
    """Send one task call; return its task id (``AsyncResult(task_id)`` reads its result).

    ``queue`` is a queue's role, as Celery's ``queue=`` (``"jobs"``, the default, or ``"long"``:
    runner.core.queues); ``queue_url`` names any other queue. Raises :class:`InvalidTaskInput`
    or :class:`MessageTooLargeError` before sending, :class:`QueueNotFoundError` or
    :class:`EnqueueError` when SQS refuses the message.
    """
    config, role = _settings(queue, queue_url, settings)
    call = Call(task_name, args, kwargs, countdown, task_id, idempotency_key)
    task_id, request = message_request(
        call, config.queue_url, routing_key=role, **_payload_options(config)
    )
    client = client or _sqs(config)
    try:
        client.send_message(**request)
    except (ClientError, BotoCoreError) as error:
        reason = _describe(error, config.queue_url)
        failed = [EnqueueResult(task_id, error=reason)]
        raise _error_type(error)(f"task {task_name!r} was not sent: {reason}", failed) from error
    return task_id


def enqueue_many(
    calls: Iterable[Call],
    *,
    queue: str | None = None,
    queue_url: str | None = None,
    client: Any = None,
    settings: ProducerOptions | None = None,
    raise_on_error: bool = True,
) -> list[EnqueueResult]:
    """Send many task calls in SendMessageBatch requests; one result per call, in call order.

    Every call is encoded and checked before anything is sent (a bad call raises, naming its
    index). SQS may refuse single entries: the other entries and batches are still sent. If a
    whole request fails (after boto3's retries), later batches are not tried. Then, with
    ``raise_on_error`` (the default), any unsent call raises :class:`EnqueueError` whose
    ``results`` tell sent from unsent; with ``raise_on_error=False`` the caller must check
    ``result.ok``.
    """
    config, role = _settings(queue, queue_url, settings)
    options = {"routing_key": role, **_payload_options(config)}
    requests = []
    for index, call in enumerate(calls):
        try:
            requests.append(message_request(call, config.queue_url, **options))
        except (ValueError, TypeError) as error:
            raise type(error)(f"call {index}: {error}") from None
    if not requests:
        return []
    client = client or _sqs(config)
    results: dict[int, EnqueueResult] = {}
    failure: ClientError | BotoCoreError | None = None
    sizes = [len(request["MessageBody"].encode()) for _, request in requests]
    for chunk in batching.batched_by_size(range(len(requests)), sizes.__getitem__):
        if failure is None:
            try:
                results.update(_send_batch(client, config.queue_url, chunk, requests))
                continue
            except (ClientError, BotoCoreError) as error:
                failure = error
        reason = f"not sent: {_describe(failure, config.queue_url)}"
        results.update({index: EnqueueResult(requests[index][0], error=reason) for index in chunk})
    ordered = [results[index] for index in range(len(requests))]
    failed = [result for result in ordered if not result.ok]
    if failed and raise_on_error:
        first = failed[0].error
        error_type = _error_type(failure) if failure is not None else EnqueueError
        raise error_type(
            f"{len(failed)} of {len(ordered)} task calls were not sent (first: {first}); "
            "see .results",
            ordered,
        ) from failure
    return ordered


def message_request(
    call: Call,
    queue_url: str,
    *,
    routing_key: str = queues.JOBS,
    threshold: int = limits.MAX_MESSAGE_BYTES,
    offload: Offload | None = None,
) -> tuple[str, dict[str, Any]]:
    """The task id and the SendMessage parameters for ``call``; checked, nothing is sent.

    ``routing_key`` is the queue's role, as Celery names it in the message. A message larger
    than ``threshold`` bytes has its arguments stored by ``offload`` (an S3 upload, see
    runner.wire.payloads) and carries a pointer instead.
    """
    try:
        return _message_request(
            call, queue_url, routing_key=routing_key, threshold=threshold, offload=offload
        )
    except CallError:
        raise
    except (ValueError, TypeError, OverflowError) as error:
        # what the message cannot carry: an empty name, a NaN countdown, a lone surrogate...
        raise CallError(f"task {call.task_name!r}: {error}") from None


def _message_request(
    call: Call,
    queue_url: str,
    *,
    routing_key: str,
    threshold: int = limits.MAX_MESSAGE_BYTES,
    offload: Offload | None = None,
) -> tuple[str, dict[str, Any]]:
    contracts.check(call.task_name, call.args, call.kwargs)  # InvalidTaskInput: nothing sent
    for what, text in (("task name", call.task_name), ("task id", call.task_id)):
        if text is not None and not _is_utf8(text):
            # a lone surrogate: JSON carries it, but no worker could name the task or its result
            raise CallError(f"task {call.task_name!r}: the {what} {text!r} is not UTF-8 text")
    fifo = queue_name_from_url(queue_url).endswith(".fifo")
    delay = _delay_seconds(call, fifo)
    task_id = call.task_id or str(uuid.uuid4())
    headers = {IDEMPOTENCY_HEADER: call.idempotency_key} if call.idempotency_key else {}
    options: dict[str, Any] = {
        "queue": routing_key,
        "task_id": task_id,
        "countdown": call.countdown,
        "delay_seconds": delay,
    }
    body = codec.encode(call.task_name, call.args, call.kwargs, extra_headers=headers, **options)
    size = len(body.encode())
    if size > threshold and offload is not None:
        pointer = offload(task_id, call.args, call.kwargs)
        body = codec.encode(
            call.task_name,
            (),
            {},
            argsrepr=saferepr(call.args, codec.REPR_MAXSIZE, codec.REPR_MAXLEVELS),
            kwargsrepr=saferepr(call.kwargs or {}, codec.REPR_MAXSIZE, codec.REPR_MAXLEVELS),
            extra_headers={**headers, payloads.HEADER: pointer},
            **options,
        )
        size = len(body.encode())
    if size > limits.MAX_MESSAGE_BYTES:
        raise MessageTooLargeError(
            f"task {call.task_name!r}: the encoded message is {size} bytes, over SQS's limit of "
            f"{limits.MAX_MESSAGE_BYTES} bytes (arguments are base64-encoded twice, so about "
            f"{limits.MAX_MESSAGE_BYTES * 55 // 100} bytes of JSON fit); set "
            f"{RESULTS_BUCKET} so large arguments go through S3"
        )
    request: dict[str, Any] = {"QueueUrl": queue_url, "MessageBody": body}
    if delay is not None:
        request["DelaySeconds"] = delay
    if fifo:  # what kombu's SQS transport sends to a FIFO queue
        request["MessageGroupId"] = "default"
        request["MessageDeduplicationId"] = str(uuid.uuid4())
    return task_id, request


def _delay_seconds(call: Call, fifo: bool) -> int | None:
    countdown = call.countdown
    if not countdown:
        return None
    if not math.isfinite(countdown):
        raise CallError(f"task {call.task_name!r}: countdown must be a finite number of seconds")
    if countdown < 0:
        raise CallError(f"task {call.task_name!r}: countdown must be >= 0, got {countdown!r}")
    try:
        datetime.now(UTC) + timedelta(seconds=countdown)
    except OverflowError:
        raise CallError(
            f"task {call.task_name!r}: countdown {countdown!r} s ends past the last date there is"
        ) from None
    if fifo:
        raise CallError(f"task {call.task_name!r}: FIFO queues take no per-message delay")
    return delays.first_hop(countdown)  # whoever receives it early sends it on


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _send_batch(
    client: Any, queue_url: str, chunk: list[int], requests: Sequence[tuple[str, dict[str, Any]]]
) -> dict[int, EnqueueResult]:
    entries = []
    for index in chunk:
        entry = {k: v for k, v in requests[index][1].items() if k != "QueueUrl"}
        entries.append({"Id": str(index), **entry})
    response = client.send_message_batch(QueueUrl=queue_url, Entries=entries)
    outcome: dict[int, EnqueueResult] = {}
    for item in response.get("Successful", []):
        index = int(item["Id"])
        outcome[index] = EnqueueResult(requests[index][0], message_id=item["MessageId"])
    for item in response.get("Failed", []):
        index = int(item["Id"])
        fault = "sender" if item.get("SenderFault") else "SQS"
        reason = f"{item.get('Code')}: {item.get('Message', '')} ({fault} fault)"
        outcome[index] = EnqueueResult(requests[index][0], error=reason)
    for index in chunk:  # an entry SQS did not answer for is not known to be sent
        outcome.setdefault(index, EnqueueResult(requests[index][0], error="SQS returned no result"))
    return outcome


def _describe(error: ClientError | BotoCoreError | None, queue_url: str) -> str:
    if isinstance(error, ClientError):
        code = error.response.get("Error", {}).get("Code", "")
        if code in _MISSING_QUEUE_CODES:
            return f"queue {queue_url} does not exist (check {QUEUE_URL} or queue_url)"
        return f"{code}: {error.response.get('Error', {}).get('Message', '')}"
    return str(error)


def _error_type(error: ClientError | BotoCoreError | None) -> type[EnqueueError]:
    code = error.response.get("Error", {}).get("Code") if isinstance(error, ClientError) else None
    return QueueNotFoundError if code in _MISSING_QUEUE_CODES else EnqueueError


def _settings(
    queue: str | None, queue_url: str | None, settings: ProducerOptions | None
) -> tuple[ProducerOptions, str]:
    """The settings to send with (their ``queue_url`` the queue to send to), and the routing
    key Celery would write: the queue's role (runner.core.queues), or the SQS name of a queue
    given by ``queue_url``, as an app that predefines it under that name would.

    Read from the environment without pydantic when they are plain (runner.core.producer_config);
    any doubt goes to ProducerSettings, whose SettingsError names the variable."""
    if queue is not None and queue_url:
        raise SettingsError("give queue (a role: jobs, long) or queue_url, not both")
    # a queue_url alone is enough: GALLEY_QUEUE_URL may be unset
    options = settings if settings is not None else producer_config.read(queue_url or None)
    if queue_url:
        if queue_url != options.queue_url:
            options = producer_config.with_queue(options, queue_url)
        return options, queue_name_from_url(queue_url)
    if queue is None or queue == queues.JOBS:
        return options, queues.check_role(queue or queues.JOBS)
    target = queues.url_for(options, queue)
    return producer_config.with_queue(options, target), queue


def _payload_options(settings: ProducerOptions) -> dict[str, Any]:
    """The threshold, and an S3 offloader when a bucket is configured."""
    options: dict[str, Any] = {"threshold": settings.payload_threshold_bytes}
    bucket = settings.results_bucket
    if bucket:

        def offload(task_id: str, args: Sequence[Any], kwargs: Mapping[str, Any] | None) -> Any:
            s3 = aws.cached("s3", region=settings.region, endpoint_url=settings.endpoint_url)
            return payloads.store(s3, bucket, task_id, args, kwargs)

        options["offload"] = offload
    return options


def _sqs(settings: ProducerOptions) -> Any:
    """This process's SQS client for the settings' region and endpoint: clients are
    thread-safe, and slow to build (a Lambda reuses it across invocations)."""
    return aws.cached("sqs", region=settings.region, endpoint_url=settings.endpoint_url)
