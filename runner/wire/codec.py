"""The message Celery 5.7 + kombu 5.7 put on an SQS queue for a task call: encode and decode.

No Celery or kombu import: the boto3-only producer and the Lambda consumer both use this module.
A task call travels in three layers, each reproduced exactly:

1. Celery protocol 2 (``celery.app.amqp.AMQP.as_task_v2``): ``headers`` (task name, id, eta, ...,
   in Celery's order) and ``body = [args, kwargs, embed]`` serialised with kombu's JSON encoder.
2. kombu's envelope (``Producer.publish`` -> ``Channel.prepare_message`` ->
   ``_inplace_augment_message``): ``{"body": base64(body JSON), "content-encoding",
   "content-type", "headers", "properties"}``, properties holding ``correlation_id``,
   ``reply_to``, ``delivery_mode``, ``delivery_info``, ``priority``, ``body_encoding`` and
   ``delivery_tag``.
3. The SQS transport (``kombu.transport.SQS.Channel._put``): the envelope as JSON, base64-encoded
   again as the ``MessageBody`` (``sqs_base64_encoding``, default on); raw JSON when it is off.

:func:`build` mirrors ``app.send_task(...)``; :func:`encode_message` gives the ``MessageBody``;
:func:`decode` reads one back (kombu's or Galley's, base64 or plain) or raises :class:`WireError`.

This module is layer 1 (the task message: :class:`TaskMessage`, :func:`build`) and the public
face; layers 2 and 3 (kombu's envelope, the SQS base64) are in :mod:`runner.wire.kombu_envelope`.
"""

from __future__ import annotations

import os
import socket
import threading
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from runner.errors import WireError
from runner.wire import kombu_envelope, kombu_json
from runner.wire.kombu_envelope import (
    BODY_ENCODING,
    CONTENT_ENCODING,
    JSON_CONTENT_TYPE,
    PICKLE_CONTENT_TYPE,
)
from runner.wire.saferepr import saferepr

__all__ = [
    "BODY_ENCODING",
    "CONTENT_ENCODING",
    "JSON_CONTENT_TYPE",
    "IDEMPOTENCY_HEADER",
    "PERSISTENT_DELIVERY_MODE",
    "PICKLE_CONTENT_TYPE",
    "REPR_MAXLEVELS",
    "REPR_MAXSIZE",
    "TaskMessage",
    "build",
    "decode",
    "encode",
    "encode_message",
    "envelope",
    "saferepr",
    "with_headers",
]

#: ``kombu.entity.PERSISTENT_DELIVERY_MODE``, Celery's ``task_default_delivery_mode``.
PERSISTENT_DELIVERY_MODE = 2
#: ``celery.app.amqp.AMQP.argsrepr_maxsize`` / ``kwargsrepr_maxsize`` and the default of
#: ``task_repr_maxlevels``: how Celery shortens ``argsrepr``/``kwargsrepr``.
REPR_MAXSIZE = 1024
REPR_MAXLEVELS = 3
#: Galley's header for an explicit idempotency key (runner.runtime.idempotency reads it; the
#: producer and ``apply_async(headers=...)`` set it).
IDEMPOTENCY_HEADER = "galley_idempotency_key"

_NODE_ID = uuid.uuid4().int


def _empty_embed() -> dict[str, Any]:
    return {"callbacks": None, "errbacks": None, "chain": None, "chord": None}


@dataclass(frozen=True)
class TaskMessage:
    """One task message: what :func:`build` makes and :func:`decode` returns."""

    task: str
    id: str
    #: As JSON (and Celery's worker) gives them: a list, whatever sequence was sent.
    args: list[Any]
    kwargs: dict[str, Any]
    #: Celery's protocol-2 headers, all of them, in Celery's order.
    headers: dict[str, Any]
    #: kombu's message properties as sent (``delivery_info``, ``delivery_tag``, ...).
    properties: dict[str, Any]
    #: Third body element: ``callbacks``, ``errbacks``, ``chain``, ``chord``.
    embed: dict[str, Any] = field(default_factory=_empty_embed)
    content_type: str = JSON_CONTENT_TYPE
    content_encoding: str = CONTENT_ENCODING

    @property
    def eta(self) -> datetime | None:
        return _parse_time(self.headers, "eta")

    @property
    def expires(self) -> datetime | None:
        return _parse_time(self.headers, "expires")

    @property
    def retries(self) -> int:
        return int(self.headers.get("retries") or 0)

    @property
    def root_id(self) -> str | None:
        return self.headers.get("root_id")

    @property
    def parent_id(self) -> str | None:
        return self.headers.get("parent_id")

    @property
    def delivery_info(self) -> dict[str, Any]:
        return dict(self.properties.get("delivery_info") or {})

    @property
    def routing_key(self) -> str | None:
        return self.delivery_info.get("routing_key")

    @property
    def delay_seconds(self) -> int | None:
        """The SQS ``DelaySeconds`` kombu derives from the ``delay_seconds`` property."""
        value = self.properties.get("delay_seconds")
        return None if value is None else int(value)


# --- building (celery.app.amqp.AMQP.as_task_v2 + celery.app.base.Celery.send_task) ---


def build(
    task: str,
    args: Sequence[Any] = (),
    kwargs: Mapping[str, Any] | None = None,
    *,
    queue: str,
    task_id: str | None = None,
    countdown: float | None = None,
    eta: datetime | None = None,
    expires: float | None = None,
    delay_seconds: int | None = None,
    root_id: str | None = None,
    parent_id: str | None = None,
    retries: int = 0,
    ignore_result: bool | None = None,
    reply_to: str | None = None,
    origin: str | None = None,
    delivery_tag: str | None = None,
    now: datetime | None = None,
    argsrepr: str | None = None,
    kwargsrepr: str | None = None,
    extra_headers: Mapping[str, Any] | None = None,
) -> TaskMessage:
    """The message ``app.send_task(task, args, kwargs, ...)`` sends to queue ``queue``.

    The keyword arguments mean what they mean to ``send_task``; ``queue`` is the routing key
    (Galley's default queue name). ``delay_seconds`` is kombu 5.7's SQS publish property
    (``send_task(..., delay_seconds=n)``): it becomes the ``DelaySeconds`` of the SendMessage.
    ``expires`` is in seconds. ``now`` (aware) fixes the clock ``eta``/``expires`` count from.
    ``argsrepr``/``kwargsrepr`` and ``extra_headers`` are ``send_task``'s too (extra headers go
    last, as Celery merges them).
    """
    kwargs = {} if kwargs is None else kwargs
    _check_call(task, args, kwargs, queue)
    if countdown is not None and eta is not None:
        raise ValueError("give countdown or eta, not both")
    if expires is not None and expires < 0:
        raise ValueError(f"expires must be >= 0 seconds, got {expires!r}")
    task_id = task_id or str(uuid.uuid4())
    if countdown or expires is not None:
        now = now or datetime.now(UTC)
        if now.tzinfo is None:
            raise ValueError("now must be timezone-aware")
    eta_text = _later(now, countdown) if countdown else (eta.isoformat() if eta else None)
    expires_text = _later(now, expires) if expires is not None else None
    headers: dict[str, Any] = {
        "lang": "py",
        "task": task,
        "id": task_id,
        "shadow": None,
        "eta": eta_text,
        "expires": expires_text,
        "group": None,
        "group_index": None,
        "retries": retries,
        "timelimit": [None, None],
        "root_id": root_id or task_id,
        "parent_id": parent_id,
        "argsrepr": argsrepr
        if argsrepr is not None
        else saferepr(args, REPR_MAXSIZE, REPR_MAXLEVELS),
        "kwargsrepr": kwargsrepr
        if kwargsrepr is not None
        else saferepr(kwargs, REPR_MAXSIZE, REPR_MAXLEVELS),
        "origin": origin or f"gen{os.getpid()}@{socket.gethostname()}",
        "ignore_result": ignore_result,
        "replaced_task_nesting": 0,
        "stamped_headers": None,
        "stamps": {},
        **(extra_headers or {}),
    }
    # Property order is the order kombu fills them in; it shows in the JSON text.
    properties: dict[str, Any] = {"correlation_id": task_id, "reply_to": reply_to or _oid()}
    if delay_seconds is not None:
        properties["delay_seconds"] = delay_seconds
    properties["delivery_mode"] = PERSISTENT_DELIVERY_MODE
    if expires is not None:
        properties["expiration"] = str(int(expires * 1000))
    properties["delivery_info"] = {"exchange": "", "routing_key": queue}
    properties["priority"] = 0
    properties["body_encoding"] = BODY_ENCODING
    properties["delivery_tag"] = delivery_tag or str(uuid.uuid4())
    return TaskMessage(task, task_id, list(args), dict(kwargs), headers, properties)


def _check_call(task: str, args: Any, kwargs: Any, queue: str) -> None:
    if not isinstance(task, str) or not task:
        raise ValueError(f"task name must be a non-empty string, got {task!r}")
    if not queue:
        raise ValueError("queue (the routing key) must be a non-empty string")
    if not isinstance(args, list | tuple):
        raise TypeError(f"task args must be a list or tuple, got {type(args).__name__}")
    if not isinstance(kwargs, Mapping):
        raise TypeError(f"task kwargs must be a mapping, got {type(kwargs).__name__}")


def _later(now: datetime | None, seconds: float) -> str:
    assert now is not None
    later = (now.astimezone(UTC) + timedelta(seconds=seconds)).astimezone(now.tzinfo)
    return later.isoformat()


def _oid() -> str:
    """A per-thread id like Celery's ``app.thread_oid``, Celery's default ``reply_to``."""
    ent = f"{_NODE_ID:x}-{os.getpid():x}-{threading.get_ident():x}-{id(_NODE_ID):x}"
    return str(uuid.uuid3(uuid.NAMESPACE_OID, ent))


# --- encoding ---


def encode_message(message: TaskMessage, *, sqs_base64: bool = True) -> str:
    """The SQS ``MessageBody`` kombu's SQS transport would send for ``message``."""
    try:
        body_text = kombu_json.dumps([message.args, message.kwargs, message.embed])
    except (TypeError, ValueError) as error:
        raise TypeError(
            f"task {message.task!r}: arguments are not JSON-serialisable: {error}"
        ) from None
    return kombu_envelope.wrap(
        body_text,
        headers=message.headers,
        properties=message.properties,
        content_type=message.content_type,
        content_encoding=message.content_encoding,
        sqs_base64=sqs_base64,
    )


def encode(
    task: str,
    args: Sequence[Any] = (),
    kwargs: Mapping[str, Any] | None = None,
    *,
    queue: str,
    sqs_base64: bool = True,
    **options: Any,
) -> str:
    """``encode_message(build(...))``: the ``MessageBody`` for one task call."""
    return encode_message(build(task, args, kwargs, queue=queue, **options), sqs_base64=sqs_base64)


# --- decoding (kombu.transport.SQS.Channel._message_to_python, then Celery's checks) ---


def decode(message_body: str | bytes) -> TaskMessage:
    """Read an SQS ``MessageBody`` (base64 or plain JSON) into a :class:`TaskMessage`."""
    envelope = kombu_envelope.read(message_body)
    headers, properties = envelope["headers"], envelope["properties"]
    body = kombu_envelope.loads(kombu_envelope.body_text(envelope), "message body")
    task, task_id = _task_and_id(headers, body)
    args, kwargs, embed = _split_body(body)
    for name in ("eta", "expires"):
        _parse_time(headers, name)
    return TaskMessage(
        task,
        task_id,
        args,
        kwargs,
        headers,
        properties,
        embed,
        envelope["content-type"],
        envelope["content-encoding"],
    )


def envelope(message_body: str | bytes) -> dict[str, Any]:
    """The kombu envelope of a message :func:`decode` reads, as a dict of its own: what kombu's
    transport hands to its consumers."""
    return kombu_envelope.read(message_body)


def with_headers(message_body: str, **headers: Any) -> str:
    """The same ``MessageBody`` with ``headers`` set (``retries=0``): the arguments byte for
    byte, everything else as it was. Raises :class:`WireError` for a body that is not kombu's
    envelope; give it one :func:`decode` reads."""
    return kombu_envelope.with_headers(message_body, headers)


def _task_and_id(headers: dict[str, Any], body: Any) -> tuple[str, str]:
    if "task" not in headers:
        if isinstance(body, dict) and "task" in body:
            raise WireError(
                "Celery protocol 1 message (task name in the body, no 'task' header); "
                "only protocol 2 is supported"
            )
        raise WireError("missing header 'task'")
    for name in ("task", "id"):
        value = headers.get(name)
        if not isinstance(value, str) or not value:
            raise WireError(f"missing header {name!r}" if value is None else f"bad header {name!r}")
    return headers["task"], headers["id"]


def _split_body(body: Any) -> tuple[list[Any], dict[str, Any], dict[str, Any]]:
    if not isinstance(body, list) or len(body) != 3:
        raise WireError("task body is not a protocol-2 [args, kwargs, embed] array")
    args, kwargs, embed = body
    if not isinstance(args, list):
        raise WireError(f"task args are a JSON {type(args).__name__}, not an array")
    if not isinstance(kwargs, dict):
        raise WireError(f"task kwargs are a JSON {type(kwargs).__name__}, not an object")
    if not isinstance(embed, dict | None):
        raise WireError(f"task embed is a JSON {type(embed).__name__}, not an object")
    return args, kwargs, embed or {}


def _parse_time(headers: Mapping[str, Any], name: str) -> datetime | None:
    value = headers.get(name)
    if value is None:
        return None
    try:
        return datetime.fromisoformat(value)
    except (TypeError, ValueError):
        raise WireError(f"header {name!r} is not an ISO 8601 datetime: {value!r}") from None
