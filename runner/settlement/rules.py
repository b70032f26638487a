"""What to do with a received SQS message before any task code runs: the settlement verdict.

Both runtimes ask :func:`judge` about every message they receive — the Lambda consumer
(runner/lambdas/records.py) and the Celery worker — so a message is refused, expired, deferred or
run by the same rules wherever it lands:

- undecodable (anything :func:`runner.wire.codec.decode` cannot read) -> ``dead-letter``;
- a task this process does not know -> ``dead-letter``;
- a message that cannot be run safely: a payload pointer (runner/wire/payloads.py) that is not the
  job's own, a malformed ``eta``/``expires``/``timelimit``/``retries`` header, a
  ``delivery_info`` that is not an object, callbacks that are not task signatures ->
  ``dead-letter``, before the body could run (a refusal after the body ran would run it again);
- ``expires`` in the past -> ``expire``;
- ``eta`` in the future -> ``defer`` by the next SQS delay hop (runner/core/delays.py);
- otherwise ``run``.

Pure: no AWS call, no clock of its own (``now`` is given), and :func:`judge` never raises
whatever the body holds (property-tested). A ``dead-letter`` or ``expire`` verdict always has a
reason, cleaned by :func:`clean_reason` so SQS accepts it as a message attribute. Imports only the
light core (wire, payloads, delays, limits, deadletter's constants); no Lambda and no AWS client.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from runner.core import delays
from runner.core.deadletter import MAX_REASON_CHARS
from runner.core.limits import MAX_DELAY_SECONDS
from runner.errors import PayloadError, WireError
from runner.wire import codec, payloads

log = logging.getLogger(__name__)

Action = Literal["run", "defer", "expire", "dead-letter"]

#: Every dead-letter reason for a body that cannot be read starts with this.
UNDECODABLE = "undecodable message: "
#: Celery's signature links a message may carry (body element 3, or headers): run after the body.
LINKS = ("callbacks", "errbacks", "chain")
#: Headers Celery's worker uses as text (names, ids, reprs in its logs).
TEXT_HEADERS = ("shadow", "root_id", "parent_id", "group", "argsrepr", "kwargsrepr", "origin")
#: ``Signature.TYPES`` in Celery 5.7: the ``subtask_type`` values a linked signature may have.
SIGNATURE_TYPES = frozenset({"chain", "chord", "group", "chunks", "xmap", "xstarmap"})
#: What SQS accepts in a message body or a string attribute (SendMessage "MessageBody").
_NOT_SQS_TEXT = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_REPR_CHARS = 200


@dataclass(frozen=True)
class Verdict:
    """What to do with one received message."""

    action: Action
    #: The decoded message; None only when the body could not be decoded.
    message: codec.TaskMessage | None
    #: Why: always set for ``dead-letter`` and ``expire``.
    reason: str | None = None
    #: For ``defer``: the ``DelaySeconds`` of the next hop (1 .. max_hop).
    delay_seconds: int | None = None


class _Refused(Exception):
    """A message that cannot be run; the text says why."""


def judge(
    body: str | bytes,
    *,
    now: datetime,
    is_known: Callable[[str], bool],
    max_hop: int,
    results_bucket: str | None = None,
) -> Verdict:
    """The verdict on an SQS ``MessageBody`` received at ``now``.

    ``is_known(task_name)`` says whether this process can run a task (it must not raise);
    ``max_hop`` is the longest SQS delay hop (clamped to 1 .. 900 s). ``results_bucket``, when
    given, is the only bucket a payload pointer may name (the key must always be the job's own,
    ``payloads/<task id>/...``).
    """
    try:
        message = codec.decode(body)
    except WireError as error:
        return _dead(None, UNDECODABLE + error.reason)
    except Exception as error:  # a number too long to read, nesting too deep, ...
        log.warning("undecodable message (%s)", describe(error), exc_info=True)
        return _dead(None, UNDECODABLE + describe(error))
    try:
        return _judge_decoded(message, _aware(now), is_known, max_hop, results_bucket)
    except _Refused as refused:
        return _dead(message, str(refused))
    except Exception as error:  # a rule above that forgot a case: refuse, never raise
        log.exception("message %r could not be judged", message.id)
        return _dead(message, f"message could not be judged: {describe(error)}")


def _judge_decoded(
    message: codec.TaskMessage,
    now: datetime,
    is_known: Callable[[str], bool],
    max_hop: int,
    results_bucket: str | None,
) -> Verdict:
    if not is_known(message.task):
        return _dead(message, f"unknown task {message.task!r}")
    _check_runnable(message, results_bucket)
    expires = _header_time(message.headers, "expires")
    if expires is not None and now > expires:
        return Verdict("expire", message, clean_reason(f"expired at {expires.isoformat()}"))
    eta = _header_time(message.headers, "eta")
    hop = delays.hop_seconds(eta, now, max_hop=min(max(int(max_hop), 1), MAX_DELAY_SECONDS))
    if hop:
        assert eta is not None
        return Verdict("defer", message, f"due at {eta.isoformat()}", delay_seconds=hop)
    return Verdict("run", message)


# --- the checks a runnable message passes ---


def _check_runnable(message: codec.TaskMessage, results_bucket: str | None) -> None:
    """Raise _Refused for what would fail outside the task body, or after it ran."""
    _check_payload(message, results_bucket)
    headers = message.headers
    retries = headers.get("retries")
    if retries is not None and (type(retries) is not int or retries < 0):
        raise _Refused(f"header 'retries' is not a count: {safe_repr(retries)}")
    _check_timelimit(headers.get("timelimit"))
    for name in TEXT_HEADERS:
        value = headers.get(name)
        if value is not None and not isinstance(value, str):
            raise _Refused(f"header {name!r} is not a string: {safe_repr(value)}")
    delivery_info = message.properties.get("delivery_info")
    if delivery_info is not None and not isinstance(delivery_info, dict):
        raise _Refused(f"property 'delivery_info' is not an object: {safe_repr(delivery_info)}")
    # The worker and the consumer build the request from the headers, then the embed on top.
    links = {**headers, **message.embed}
    for name in LINKS:
        signatures = links.get(name)
        if signatures is not None:
            if not isinstance(signatures, list):
                raise _Refused(f"{name!r} is not a list of signatures: {safe_repr(signatures)}")
            for signature in signatures:
                _check_signature(name, signature)
    if links.get("chord") is not None:
        _check_signature("chord", links["chord"])


def _check_payload(message: codec.TaskMessage, results_bucket: str | None) -> None:
    """A payload pointer must name this job's own payload, inline arguments or not: a message
    must not make a runtime read or delete any other object (runner/wire/payloads.py)."""
    value = message.headers.get(payloads.HEADER)
    if value is None:
        return
    pointer = payloads.pointer_of(message.headers)
    if pointer is None:
        raise _Refused(
            f"header {payloads.HEADER!r} is not a payload pointer ({{'bucket': ..., 'key': ...}})"
            f": {safe_repr(value)}"
        )
    bucket = pointer["bucket"] if results_bucket is None else results_bucket
    try:
        payloads.trusted_pointer(message.headers, bucket, message.id)
    except PayloadError as error:
        raise _Refused(str(error)) from None


def _check_timelimit(value: Any) -> None:
    """``[hard, soft]`` seconds, each a number or null (Celery unpacks it)."""
    if value is None:
        return
    ok = isinstance(value, list) and len(value) == 2
    ok = ok and all(v is None or (_is_number(v) and v >= 0) for v in value)
    if not ok:
        raise _Refused(f"header 'timelimit' is not [hard, soft] seconds: {safe_repr(value)}")


def _check_signature(link: str, signature: Any) -> None:
    """What Celery's ``signature(dict)`` needs to dispatch a link after the body ran."""
    if not isinstance(signature, dict):
        raise _Refused(f"{link!r} holds a {type(signature).__name__}, not a task signature")
    task = signature.get("task")
    kind = signature.get("subtask_type")
    if kind is not None and kind not in SIGNATURE_TYPES:
        raise _Refused(f"{link!r} holds a signature of unknown type {safe_repr(kind)}")
    if kind is None and (not isinstance(task, str) or not task):
        raise _Refused(f"{link!r} holds a signature without a task name: {safe_repr(task)}")
    for key, expected in (("args", list), ("kwargs", dict), ("options", dict)):
        if signature.get(key) is not None and not isinstance(signature[key], expected):
            raise _Refused(f"{link!r} holds a signature whose {key!r} is not a {expected.__name__}")


def _header_time(headers: Mapping[str, Any], name: str) -> datetime | None:
    value = headers.get(name)
    try:
        return delays.parse_eta(value)
    except (TypeError, ValueError, OverflowError) as error:
        raise _Refused(
            f"header {name!r} is not a usable ISO 8601 datetime: {safe_repr(value)} "
            f"({describe(error)})"
        ) from None


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value == value


def _aware(now: datetime) -> datetime:
    return now.replace(tzinfo=UTC) if now.tzinfo is None else now


def _dead(message: codec.TaskMessage | None, reason: str) -> Verdict:
    return Verdict("dead-letter", message, clean_reason(reason))


# --- text that is safe to log and to send as an SQS attribute ---


def clean_reason(text: str) -> str:
    """``text`` as SQS takes it in a message attribute: characters SQS refuses (controls, lone
    surrogates, U+FFFE/U+FFFF) escaped, at most ``MAX_REASON_CHARS``, never empty."""
    try:
        cleaned = _NOT_SQS_TEXT.sub(lambda m: f"\\u{ord(m.group()):04x}", str(text))
    except Exception:  # a str subclass that misbehaves
        cleaned = "reason could not be shown"
    if len(cleaned) > MAX_REASON_CHARS:
        cleaned = cleaned[: MAX_REASON_CHARS - 3] + "..."
    return cleaned or "no reason given"


def describe(error: BaseException) -> str:
    """``Type: message`` for an exception, even one whose ``str`` raises."""
    try:
        text = str(error)
    except Exception:
        text = "(its message cannot be shown)"
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def safe_repr(value: Any, limit: int = _REPR_CHARS) -> str:
    """``repr(value)``, shortened; never raises (a 5000-digit int's repr does)."""
    try:
        text = repr(value)
    except Exception:
        text = f"<{type(value).__name__} that cannot be shown>"
    return text if len(text) <= limit else text[: limit - 3] + "..."
