"""A dead-letter queue, for `galley dlq`: list and show its messages, redrive them, purge it.

Redrive is Galley's own (receive, send to the source queue, delete), not SQS's
StartMessageMoveTask, so that it works the same against moto and AWS, and so that a job goes
back with its retries: Celery's ``retries`` header is set back to 0 (SQS's move task would send
the body as it is, and a job that had spent them would fail again at once).

SQS has no true peek: reading a message means receiving it (runner/ops/sqs_sweep.py). :func:`peek`
receives each message with a short visibility timeout, holds it until the listing ends (so every
receive returns messages not seen yet) and then makes them all visible again. The cost: each
listing adds one to every message's ``ApproximateReceiveCount``, and for a few seconds (at most
:data:`PEEK_VISIBILITY_SECONDS` if this process dies) the messages are invisible to anyone else;
a DLQ has no consumer, so nothing waits on them. For a message Galley dead-lettered itself the
first receive in the DLQ is a peek: its ``first_seen`` is when someone first looked. When the job
failed is ``failed_at``: the ``galley-failed-at`` attribute Galley records as it dead-letters. A
message SQS moved by the queue's redrive policy has none; its ``SentTimestamp`` stands in, and
SQS keeps that from the original send when it moves a message, so it is when the job was sent,
a bound on when it failed (``failed_at_source`` says which).
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from runner.core import delays, settings
from runner.core.batching import batched_by_size
from runner.core.deadletter import FAILED_AT_ATTRIBUTE, REASON_ATTRIBUTE, SOURCE_ATTRIBUTE
from runner.errors import DlqError, SettingsError, WireError
from runner.ops.sqs_sweep import Sweep
from runner.wire import codec

#: How long a listing holds the messages it has read (released as soon as it ends).
PEEK_VISIBILITY_SECONDS = 30
#: How long a redrive holds a message between receiving it and deleting it from the DLQ.
REDRIVE_VISIBILITY_SECONDS = 120
DEFAULT_LIMIT = 100
#: ``DeadLetter.failed_at_source`` of a message without ``galley-failed-at``.
SENT_TIMESTAMP = "SentTimestamp"
#: What ``failed_at`` means when it comes from :data:`SENT_TIMESTAMP`.
SENT_AT_NOTE = "no failure time recorded; this is when it was sent to its queue"
#: Marks a reason shortened for a table (one character: a cut reason keeps more of itself).
ELLIPSIS = "\u2026"
#: Message attributes Galley adds when it dead-letters; a redrive leaves them behind.
GALLEY_ATTRIBUTES = frozenset({REASON_ATTRIBUTE, SOURCE_ATTRIBUTE, FAILED_AT_ATTRIBUTE})


@dataclass(frozen=True)
class Role:
    """A dead-letter queue of the stack, as `--queue` names it."""

    #: The DlqSettings field holding its URL, and the variable that is read from.
    setting: str
    variable: str
    #: What it is, and the stack output holding its URL (template.yaml).
    what: str
    output: str


#: `--queue` names the stack's dead-letter queues by role; anything else must be a queue URL.
ROLES = {
    "jobs": Role(
        "dlq_url", settings.DLQ_URL, "the jobs dead-letter queue", "JobsDeadLetterQueueUrl"
    ),
    "long": Role(
        "long_dlq_url",
        settings.LONG_DLQ_URL,
        "the long-jobs dead-letter queue",
        "LongJobsDeadLetterQueueUrl",
    ),
}
DEFAULT_ROLE = "jobs"


@dataclass(frozen=True, kw_only=True)
class DeadLetter:
    """One message in a dead-letter queue."""

    message_id: str
    #: Internal: valid only inside the sweep that received it.
    receipt_handle: str = field(repr=False, compare=False)
    body: str = field(repr=False)
    task: str | None
    #: None when the body is not a Celery message (``decode_error`` says why).
    task_id: str | None
    decode_error: str | None
    receive_count: int
    #: ApproximateFirstReceiveTimestamp, else SentTimestamp.
    first_seen: datetime | None
    #: SentTimestamp: the original send for a message SQS moved, the failure for Galley's.
    sent_at: datetime | None
    #: When the job failed (UTC): ``galley-failed-at``, else ``sent_at``.
    failed_at: datetime | None
    #: Where ``failed_at`` comes from: ``galley-failed-at`` or :data:`SENT_TIMESTAMP`.
    failed_at_source: str | None
    reason: str
    source_queue: str | None
    message_attributes: dict[str, Any] = field(repr=False, compare=False)

    def selected_by(self, selectors: Collection[str]) -> bool:
        """True if ``selectors`` name this message by its task id or SQS message id."""
        return self.message_id in selectors or (
            self.task_id is not None and self.task_id in selectors
        )

    def decoded(self) -> codec.TaskMessage:
        """The Celery task message; raises :class:`WireError` for an undecodable body."""
        return codec.decode(self.body)

    def as_dict(self) -> dict[str, Any]:
        return {
            "message_id": self.message_id,
            "task": self.task,
            "task_id": self.task_id,
            "receive_count": self.receive_count,
            "first_seen": _iso(self.first_seen),
            "sent_at": _iso(self.sent_at),
            "failed_at": _iso(self.failed_at),
            "failed_at_source": self.failed_at_source,
            "reason": self.reason,
            "source_queue": self.source_queue,
            "decode_error": self.decode_error,
        }


@dataclass(frozen=True)
class Moved:
    message_id: str
    task_id: str | None
    task: str | None
    queue: str
    new_message_id: str
    #: The retry count the job had spent, set back to 0 for this run (0: nothing changed).
    spent_retries: int = 0


@dataclass(frozen=True)
class NotMoved:
    #: The DLQ message id, or the id asked for when no message matched it.
    message_id: str
    task_id: str | None
    reason: str


@dataclass
class RedriveResult:
    moved: list[Moved] = field(default_factory=list)
    failed: list[NotMoved] = field(default_factory=list)


def queue_url(config: settings.DlqSettings, queue: str | None = None) -> str:
    """The dead-letter queue ``queue`` names: a role of :data:`ROLES` (default
    :data:`DEFAULT_ROLE`), read from its variable, or a queue URL.

    Raises :class:`SettingsError` naming the variable when the role's is not set, and
    :class:`DlqError` for anything else that is not a standard queue's URL.
    """
    name = DEFAULT_ROLE if queue is None else queue
    role = ROLES.get(name)
    if role is not None:
        url: str | None = getattr(config, role.setting)
        if url is None:
            default = " (the default)" if name == DEFAULT_ROLE else ""
            raise SettingsError(
                f"{role.variable}: required for --queue {name}{default} but not set "
                f"({role.what}'s URL: the stack's output {role.output})"
            )
        return url
    if "://" not in name:
        raise DlqError(f"--queue {name!r} is neither {', '.join(ROLES)} nor a queue URL")
    try:
        return settings.check_standard_queue_url(name)
    except ValueError as error:
        raise DlqError(f"--queue: {error}") from None


def peek(
    sqs: Any, dlq_url: str, limit: int = DEFAULT_LIMIT, *, source_queue: str | None = None
) -> list[DeadLetter]:
    """Up to ``limit`` messages of ``dlq_url``, left in the queue (see the module docstring).

    ``source_queue`` is where messages without a ``galley-source-queue`` attribute came from;
    by default the DLQ's only source queue (ListDeadLetterSourceQueues), if it has one.
    """
    if limit < 1:
        raise DlqError(f"limit must be at least 1, got {limit}")
    sources = _Sources(sqs, dlq_url, source_queue)
    with Sweep(sqs, dlq_url, PEEK_VISIBILITY_SECONDS) as sweep:
        return [_letter(raw, sources) for batch in sweep.batches(limit) for raw in batch]


def find(sqs: Any, dlq_url: str, selector: str, *, limit: int = 1000) -> list[DeadLetter]:
    """The messages whose task id or message id is ``selector``; DlqError if there is none."""
    found = [letter for letter in peek(sqs, dlq_url, limit) if letter.selected_by({selector})]
    if not found:
        raise DlqError(f"no message with task id or message id {selector!r} in {dlq_url}")
    return found


def redrive(
    sqs: Any, dlq_url: str, *, to: str | None = None, ids: Collection[str] | None = None
) -> RedriveResult:
    """Move the messages ``ids`` names (task or message ids; all when None) back to their source
    queue, or to ``to`` when given.

    Each message is sent (same body, its own message attributes minus Galley's) and deleted from
    the DLQ only after the send succeeded, so none is lost. The body is the job's own with one
    change: a task message's ``retries`` header is set back to 0, so the job has all its retries
    again (arguments, task id, idempotency key and payload pointer stay as they are). The one
    window: if this process dies between the send and the delete, the message is in both queues
    — with the same task id — and the DLQ copy reappears after
    :data:`REDRIVE_VISIBILITY_SECONDS`. Only messages sent before the redrive started are moved:
    a job that fails again at once and comes back meanwhile stays in the DLQ instead of going
    round in a loop. A job whose ``expires`` has passed stays too (reported in ``failed``): its
    queue would revoke it without running it, and the DLQ copy would be gone.
    """
    if to is not None and to.rstrip("/") == dlq_url.rstrip("/"):
        raise DlqError("--to is the dead-letter queue itself")
    wanted = None if ids is None else set(ids)
    matched: set[str | None] = set()
    result = RedriveResult()
    sources, started = _Sources(sqs, dlq_url, None), datetime.now(UTC)
    with Sweep(sqs, dlq_url, REDRIVE_VISIBILITY_SECONDS) as sweep:
        for batch in sweep.batches(None):
            targets: dict[str, list[_Outgoing]] = {}
            for letter in (_letter(raw, sources) for raw in batch):
                if (letter.sent_at and letter.sent_at >= started) or (
                    wanted is not None and not letter.selected_by(wanted)
                ):
                    continue  # not asked for, or back in the DLQ since this redrive started
                matched.update({letter.message_id, letter.task_id})
                target = to or letter.source_queue
                if why := _stays(letter, target, started):
                    result.failed.append(NotMoved(letter.message_id, letter.task_id, why))
                else:
                    assert target is not None
                    targets.setdefault(target, []).append(_outgoing(letter))
            for target, outgoing in targets.items():
                for chunk in batched_by_size(outgoing, _entry_bytes):
                    _move(sqs, sweep, target, chunk, result)
    for missing in sorted((wanted or set()) - matched):
        result.failed.append(NotMoved(missing, None, f"not in the dead-letter queue {dlq_url}"))
    return result


def shorten_reason(reason: str, width: int) -> str:
    """``reason`` on one line (every run of whitespace a single space) and at most ``width``
    characters: whole if it fits, else cut at the last word boundary that leaves room for
    :data:`ELLIPSIS` — before a space, or at the end of a run of word characters (so an ARN
    wider than the column still shows its start: ``arn:aws:iam…``). Never mid-word: a single
    word wider than the column leaves only the ellipsis.
    """
    if width < 1:
        raise ValueError(f"width must be at least 1, got {width}")
    line = " ".join(reason.split())
    if len(line) <= width:
        return line
    room = width - len(ELLIPSIS)
    before_space = line.rfind(" ", 0, room + 1)
    word_ends = [m.end() for m in _WORD.finditer(line, 0, room + 1) if m.end() <= room]
    return line[: max(before_space, *word_ends, 0)] + ELLIPSIS


def count(sqs: Any, dlq_url: str) -> int:
    """Visible + in-flight + delayed messages (SQS's approximate numbers)."""
    names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    names.append("ApproximateNumberOfMessagesDelayed")
    attrs = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=names)["Attributes"]
    return sum(int(attrs.get(name, 0)) for name in names)


def purge(sqs: Any, dlq_url: str) -> None:
    """Delete every message in ``dlq_url`` (PurgeQueue: at most once a minute on AWS)."""
    sqs.purge_queue(QueueUrl=dlq_url)


# --- internals ---

#: A run of word characters: a reason may be cut where one ends.
_WORD = re.compile(r"\w+")


class _Sources:
    """Where messages without a ``galley-source-queue`` attribute came from, looked up once."""

    def __init__(self, sqs: Any, dlq_url: str, given: str | None) -> None:
        self.sqs, self.dlq_url, self.given = sqs, dlq_url, given
        self._max_receives: dict[str, int | None] = {}

    @cached_property
    def default(self) -> str | None:
        """``given``, else the DLQ's one source queue (None if it has several or none)."""
        if self.given:
            return self.given
        try:
            urls = self.sqs.list_dead_letter_source_queues(QueueUrl=self.dlq_url)["queueUrls"]
        except (ClientError, BotoCoreError):  # e.g. no sqs:ListDeadLetterSourceQueues permission
            return None
        return str(urls[0]) if len(urls) == 1 else None

    def max_receives(self, source: str | None) -> int | None:
        """maxReceiveCount of ``source``'s redrive policy, if it can be read."""
        if source is not None and source not in self._max_receives:
            try:
                attrs = self.sqs.get_queue_attributes(
                    QueueUrl=source, AttributeNames=["RedrivePolicy"]
                )["Attributes"]
                policy = json.loads(attrs.get("RedrivePolicy", "{}"))
                self._max_receives[source] = int(policy["maxReceiveCount"])
            except (ClientError, BotoCoreError, KeyError, ValueError, TypeError):
                self._max_receives[source] = None
        return None if source is None else self._max_receives[source]


def _letter(raw: dict[str, Any], sources: _Sources) -> DeadLetter:
    attributes = raw.get("MessageAttributes") or {}
    system = raw.get("Attributes") or {}
    body = raw["Body"]
    try:
        message = codec.decode(body)
        task, task_id, error = message.task, message.id, None
    except WireError as failure:
        task, task_id, error = None, None, failure.reason
    source = _string(attributes, SOURCE_ATTRIBUTE) or sources.default
    reason = _string(attributes, REASON_ATTRIBUTE)
    if reason is None:
        receives = sources.max_receives(source)
        reason = (
            f"moved by the queue's redrive policy after {receives or 'maxReceiveCount'} receives"
            " (no reason recorded; see the worker logs)"
        )
    sent_at = _millis(system.get(SENT_TIMESTAMP))
    failed_at, failed_at_source = _moment(_string(attributes, FAILED_AT_ATTRIBUTE)), None
    if failed_at is not None:
        failed_at_source = FAILED_AT_ATTRIBUTE
    elif sent_at is not None:
        failed_at, failed_at_source = sent_at, SENT_TIMESTAMP
    return DeadLetter(
        message_id=raw["MessageId"],
        receipt_handle=raw["ReceiptHandle"],
        body=body,
        task=task,
        task_id=task_id,
        decode_error=error,
        receive_count=int(system.get("ApproximateReceiveCount", 0)),
        first_seen=_millis(system.get("ApproximateFirstReceiveTimestamp")) or sent_at,
        sent_at=sent_at,
        failed_at=failed_at,
        failed_at_source=failed_at_source,
        reason=reason,
        source_queue=source,
        message_attributes=attributes,
    )


@dataclass(frozen=True)
class _Outgoing:
    """A dead letter as a redrive sends it."""

    letter: DeadLetter
    body: str
    spent_retries: int


def _outgoing(letter: DeadLetter) -> _Outgoing:
    """``letter`` with its retry count set back to 0 if it is a task message that spent some."""
    if letter.task_id is not None:
        retries = letter.decoded().headers.get("retries")
        if type(retries) is int and retries > 0:
            return _Outgoing(letter, codec.with_headers(letter.body, retries=0), retries)
    return _Outgoing(letter, letter.body, 0)


def _stays(letter: DeadLetter, target: str | None, now: datetime) -> str | None:
    """Why a redrive leaves ``letter`` in the DLQ, or None to send it to ``target``."""
    if target is None:
        return "its source queue is not known; give the queue with --to"
    expires = _expires(letter)
    if expires is not None and now > expires:
        return (
            f"expired at {_iso(expires)}: its queue would revoke it without running it; "
            "left in the dead-letter queue"
        )
    return None


def _expires(letter: DeadLetter) -> datetime | None:
    """A task message's ``expires`` (aware UTC), or None (none, or not a task message)."""
    if letter.task_id is None:
        return None
    try:
        return delays.parse_eta(letter.decoded().headers.get("expires"))
    except (WireError, TypeError, ValueError, OverflowError):
        return None  # not a time the worker could read either: it dead-letters such a job


def _move(
    sqs: Any, sweep: Sweep, target: str, outgoing: list[_Outgoing], result: RedriveResult
) -> None:
    """Send ``outgoing`` to ``target``; delete from the DLQ exactly those that were sent."""
    letters = [out.letter for out in outgoing]
    entries = [_send_entry(str(i), out) for i, out in enumerate(outgoing)]
    try:
        response = sqs.send_message_batch(QueueUrl=target, Entries=entries)
    except (ClientError, BotoCoreError) as error:
        for letter in letters:
            result.failed.append(NotMoved(letter.message_id, letter.task_id, f"send: {error}"))
        return
    for failure in response.get("Failed", []):
        letter = letters[int(failure["Id"])]
        why = f"send to {target}: {failure.get('Code')}: {failure.get('Message', '')}"
        result.failed.append(NotMoved(letter.message_id, letter.task_id, why))
    sent = {int(ok["Id"]): str(ok["MessageId"]) for ok in response.get("Successful", [])}
    if not sent:
        return
    deletes = [{"Id": str(i), "ReceiptHandle": letters[i].receipt_handle} for i in sent]
    try:
        response = sqs.delete_message_batch(QueueUrl=sweep.url, Entries=deletes)
        undeleted = {
            int(f["Id"]): f"{f.get('Code')}: {f.get('Message', '')}"
            for f in response.get("Failed", [])
        }
    except (ClientError, BotoCoreError) as error:
        undeleted = dict.fromkeys(sent, str(error))
    for i, new_id in sent.items():
        letter = letters[i]
        if i in undeleted:
            why = (
                f"sent to {target} as {new_id} but not deleted from the DLQ ({undeleted[i]}): "
                "it is now in both queues, with the same task id"
            )
            result.failed.append(NotMoved(letter.message_id, letter.task_id, why))
            continue
        sweep.forget(letter.message_id)
        spent = outgoing[i].spent_retries
        result.moved.append(
            Moved(letter.message_id, letter.task_id, letter.task, target, new_id, spent)
        )


def _send_entry(entry_id: str, out: _Outgoing) -> dict[str, Any]:
    entry: dict[str, Any] = {"Id": entry_id, "MessageBody": out.body}
    if kept := _kept(out.letter.message_attributes):
        entry["MessageAttributes"] = kept
    return entry


def _kept(attributes: dict[str, Any]) -> dict[str, Any]:
    """The message's own attributes, as SendMessage takes them; Galley's are left behind."""
    fields = ("DataType", "StringValue", "BinaryValue")
    return {
        name: {k: value[k] for k in fields if k in value}
        for name, value in attributes.items()
        if name not in GALLEY_ATTRIBUTES
    }


def _entry_bytes(out: _Outgoing) -> int:
    """What one SendMessageBatch entry counts towards the 1 MiB: its body and attributes."""
    return len(out.body.encode()) + _attributes_bytes(_kept(out.letter.message_attributes))


def _attributes_bytes(attributes: dict[str, Any]) -> int:
    """What SQS counts of message attributes: name, type and value of each."""
    total = 0
    for name, value in attributes.items():
        data = value.get("StringValue", value.get("BinaryValue", b""))
        total += len(name) + len(value.get("DataType", "")) + len(data)
    return total


def _string(attributes: dict[str, Any], name: str) -> str | None:
    value = (attributes.get(name) or {}).get("StringValue")
    return str(value) if value is not None else None


def _millis(value: str | None) -> datetime | None:
    return None if value in (None, "") else datetime.fromtimestamp(int(value) / 1000, UTC)


def _moment(text: str | None) -> datetime | None:
    """An ISO 8601 time as aware UTC (naive means UTC); None if absent or unreadable."""
    try:
        return delays.parse_eta(text)
    except (TypeError, ValueError, OverflowError):
        return None


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat(timespec="seconds")
