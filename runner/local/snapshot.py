"""The local stack's data across restarts: every queue's messages and every bucket's objects,
saved by the moto process as it stops and put back into the next one.

moto keeps its state in memory only. Of the ways to keep it, this is the one that loses nothing:

- *Reading the queues through the SQS API* (``galley local down`` dumping them) cannot: a message
  in flight (received, not yet deleted) or delayed (a countdown) cannot be received before its
  time comes, up to the visibility timeout or 15 minutes later. The moto process sees every
  message, so it saves them itself, once it has stopped taking requests.
- *moto's recorder* replays requests: the replayed receives get new receipt handles, so the
  recorded deletes miss and finished jobs come back; the recording only grows.
- *Keeping moto running between `local up`s* would not survive a reboot, and would leave a
  server running after Ctrl-C.
- *Pickling moto's objects* would tie the file to moto's classes (an upgrade could not read it)
  and loading a pickle runs code from a file; this is plain JSON of what a job relies on,
  validated as outside input before anything of it reaches moto.

What is kept, for each message: its id, body, message attributes (``galley-reason``...), sender,
sent time, receive count and first receive time, its delay (an absolute time: a job due while
the stack was down is due at once), FIFO group and deduplication ids. A message that was in
flight comes back visible: its receipt handle died with the old moto, and so did whoever held
it. For each object (latest version): its bytes, ETag (so a conditional write of a reader still
holds), metadata (content type, user metadata), storage class and last-modified time. Not kept:
queue and bucket settings (template.yaml is deployed again at every start), object versions and
tags, multipart uploads in progress.

Restoring never overwrites: a message whose id is already on the queue, or an object that exists
already (written since the new moto started), is left as it is. A queue or bucket the new
deployment does not have (template.yaml renamed it, or a script made it) is not dropped: its
data goes to a file of its own beside the data file, named in the report.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from runner.errors import LocalDataError

FORMAT: Literal["galley-local-data"] = "galley-local-data"
#: Where `galley local up` asks the moto process to put the saved data back.
RESTORE_PATH = "/_galley/restore"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Attribute(_Model):
    """A message attribute as SQS has it: a string, number or binary value (base64 here)."""

    data_type: str = Field(min_length=1, max_length=256)
    string_value: str | None = None
    binary_value: str | None = None

    @field_validator("binary_value")
    @classmethod
    def _is_base64(cls, value: str | None) -> str | None:
        if value is not None:
            _b64decode(value)
        return value


class MessageData(_Model):
    id: str = Field(min_length=1)
    body: str
    attributes: dict[str, Attribute] = Field(default_factory=dict)
    system_attributes: dict[str, Attribute] = Field(default_factory=dict)
    sender_id: str | None = None
    sent_timestamp: int | None = Field(default=None, ge=0)
    first_receive_timestamp: int | None = Field(default=None, ge=0)
    receive_count: int = Field(default=0, ge=0)
    #: Epoch milliseconds before which the message stays hidden (moto's own measure).
    delayed_until: float = Field(default=0.0, ge=0, allow_inf_nan=False)
    group_id: str | None = None
    deduplication_id: str | None = None
    sequence_number: str | None = None


class QueueData(_Model):
    account: str = Field(min_length=1)
    region: str = Field(min_length=1)
    name: str = Field(min_length=1)
    messages: list[MessageData]


class ObjectData(_Model):
    key: str = Field(min_length=1)
    body: str  # base64
    etag: str | None = None
    metadata: dict[str, str] = Field(default_factory=dict)
    storage_class: str | None = None
    last_modified: datetime | None = None

    @field_validator("body")
    @classmethod
    def _is_base64(cls, value: str) -> str:
        _b64decode(value)
        return value


class BucketData(_Model):
    name: str = Field(min_length=3, max_length=63)
    objects: list[ObjectData]


class Snapshot(_Model):
    """The data file's content."""

    format: Literal["galley-local-data"] = FORMAT
    version: Literal[1] = 1
    saved_at: datetime
    queues: list[QueueData] = Field(default_factory=list)
    buckets: list[BucketData] = Field(default_factory=list)

    def counts(self) -> tuple[int, int]:
        """(messages, objects)."""
        return (
            sum(len(q.messages) for q in self.queues),
            sum(len(b.objects) for b in self.buckets),
        )


class RestoreReport(BaseModel):
    """What :func:`restore` put back, and what it could not (kept in ``unrestored_file``)."""

    model_config = ConfigDict(extra="forbid")

    messages: dict[str, int] = Field(default_factory=dict)  # queue name -> messages
    objects: dict[str, int] = Field(default_factory=dict)  # bucket name -> objects
    skipped: int = 0  # already there
    unrestored: list[str] = Field(default_factory=list)  # "queue X (3 messages)", ...
    unrestored_file: str | None = None
    saved_at: datetime | None = None


def _b64decode(value: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("not base64") from None


# --- the file --------------------------------------------------------------------------------


def load(path: Path) -> Snapshot | None:
    """The snapshot at ``path``; None if there is none. :class:`LocalDataError` (one line) if
    it cannot be read or is not a snapshot."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as error:
        raise LocalDataError(f"cannot read {path}: {error.strerror or error}") from None
    try:
        return Snapshot.model_validate_json(raw)
    except ValidationError as error:
        first = error.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(part) for part in first.get("loc", ()))
        problem = "".join(c if " " <= c <= "~" else "?" for c in f"{where}: {first['msg']}")
        raise LocalDataError(
            f"{path} is not the local stack's saved data ({problem[:160]}); move it away to start"
            " without it, or start with `galley local up --fresh` (which discards it)"
        ) from None


def write(path: Path, snapshot: Snapshot) -> None:
    """Write atomically and durably: after a crash, ``path`` holds the old snapshot or the new."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as out:
        out.write(snapshot.model_dump_json())
        out.flush()
        os.fsync(out.fileno())
    tmp.replace(path)


# --- moto's side: only the moto process calls these --------------------------------------------


def capture(now: datetime | None = None) -> Snapshot:
    """Every message of every queue, and every object of every bucket, in this process's moto."""
    from moto.s3.models import FakeKey, s3_backends
    from moto.sqs.models import sqs_backends

    queues = []
    for account, region, backend in _backends(sqs_backends):
        for name, queue in list(backend.queues.items()):
            messages = [_message_data(m) for m in list(queue._messages)]
            if messages:
                queues.append(
                    QueueData(account=account, region=region, name=name, messages=messages)
                )
    buckets = []
    for _, _, backend in _backends(s3_backends):
        for name, bucket in list(backend.buckets.items()):
            keys = [k for k in list(bucket.keys.values()) if isinstance(k, FakeKey)]
            if keys:
                buckets.append(BucketData(name=name, objects=[_object_data(k) for k in keys]))
    return Snapshot(saved_at=now or datetime.now(UTC), queues=queues, buckets=buckets)


def _backends(backend_dict: Any) -> Iterator[tuple[str, str, Any]]:
    for account, regions in list(backend_dict.items()):
        for region, backend in list(regions.items()):
            yield account, region, backend


def _attributes(raw: dict[str, Any]) -> dict[str, Attribute]:
    found = {}
    for name, value in raw.items():
        binary = value.get("BinaryValue")
        if isinstance(binary, str):
            binary = binary.encode()
        found[name] = Attribute(
            data_type=value.get("DataType", "String"),
            string_value=value.get("StringValue"),
            binary_value=base64.b64encode(binary).decode() if binary is not None else None,
        )
    return found


def _moto_attributes(attributes: dict[str, Attribute]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for name, attribute in attributes.items():
        value: dict[str, Any] = {"DataType": attribute.data_type}
        if attribute.string_value is not None:
            value["StringValue"] = attribute.string_value
        if attribute.binary_value is not None:
            value["BinaryValue"] = _b64decode(attribute.binary_value)
        found[name] = value
    return found


def _message_data(message: Any) -> MessageData:
    return MessageData(
        id=message.id,
        body=message.body,
        attributes=_attributes(message.message_attributes or {}),
        system_attributes=_attributes(message.system_attributes or {}),
        sender_id=message.sender_id,
        sent_timestamp=message.sent_timestamp,
        first_receive_timestamp=message.approximate_first_receive_timestamp,
        receive_count=message.approximate_receive_count,
        delayed_until=float(message.delayed_until or 0),
        group_id=message.group_id,
        deduplication_id=message.deduplication_id,
        sequence_number=message.sequence_number,
    )


def _message(data: MessageData) -> Any:
    from moto.sqs.models import Message

    system = _moto_attributes(data.system_attributes)
    message = Message(data.id, data.body, system_attributes=system)
    message.message_attributes = _moto_attributes(data.attributes)
    if data.sender_id is not None:
        message.sender_id = data.sender_id
    message.sent_timestamp = data.sent_timestamp  # type: ignore[assignment]
    message.approximate_first_receive_timestamp = data.first_receive_timestamp
    message.approximate_receive_count = data.receive_count
    message.delayed_until = data.delayed_until
    message.group_id = data.group_id
    message.deduplication_id = data.deduplication_id
    message.sequence_number = data.sequence_number
    message.visible_at = 0.0  # in flight when saved: visible again
    return message


def _object_data(key: Any) -> ObjectData:
    last_modified = key.last_modified
    if isinstance(last_modified, datetime) and last_modified.tzinfo is None:
        last_modified = last_modified.replace(tzinfo=UTC)  # moto keeps naive UTC
    return ObjectData(
        key=key.name,
        body=base64.b64encode(key.value).decode(),
        etag=key.etag.strip('"'),
        metadata={str(k): str(v) for k, v in key.metadata.items()},
        storage_class=key.storage_class,
        last_modified=last_modified if isinstance(last_modified, datetime) else None,
    )


def restore(snapshot: Snapshot) -> tuple[RestoreReport, Snapshot | None]:
    """Put ``snapshot`` into this process's moto. Returns the report and what had nowhere to go
    (a snapshot of its own, or None)."""
    report = RestoreReport(saved_at=snapshot.saved_at)
    lost_queues = [q for q in snapshot.queues if not _restore_queue(q, report)]
    lost_buckets = [b for b in snapshot.buckets if not _restore_bucket(b, report)]
    report.unrestored.extend(f"queue {q.name} ({len(q.messages)} messages)" for q in lost_queues)
    report.unrestored.extend(f"bucket {b.name} ({len(b.objects)} objects)" for b in lost_buckets)
    if not (lost_queues or lost_buckets):
        return report, None
    rest = Snapshot(saved_at=snapshot.saved_at, queues=lost_queues, buckets=lost_buckets)
    return report, rest


def _restore_queue(data: QueueData, report: RestoreReport) -> bool:
    from moto.sqs.models import sqs_backends

    if data.account not in sqs_backends or data.region not in sqs_backends[data.account]:
        return False
    queue = sqs_backends[data.account][data.region].queues.get(data.name)
    if queue is None:
        return False
    present = {m.id for m in list(queue._messages)}
    for message in data.messages:
        if message.id in present:
            report.skipped += 1
            continue
        queue.add_message(_message(message))
        report.messages[data.name] = report.messages.get(data.name, 0) + 1
    return True


def _restore_bucket(data: BucketData, report: RestoreReport) -> bool:
    from moto.s3.models import s3_backends

    owner = s3_backends.bucket_accounts.get(data.name)
    if owner is None:
        return False
    partition, account = owner
    backend = s3_backends[account][partition]
    bucket = backend.buckets.get(data.name)
    if bucket is None:
        return False
    for item in data.objects:
        if item.key in bucket.keys:
            report.skipped += 1
            continue
        key = backend.put_object(
            data.name,
            item.key,
            _b64decode(item.body),
            storage=item.storage_class,
            etag=item.etag,
            disable_notification=True,
        )
        for name, value in item.metadata.items():
            key._metadata[name] = value
        if item.last_modified is not None:
            key.last_modified = item.last_modified.astimezone(UTC).replace(tzinfo=None)
        report.objects[data.name] = report.objects.get(data.name, 0) + 1
    return True


class DataFile:
    """The moto process's data file: restored on request once the stack is deployed, saved as
    the process stops.

    Saving is armed only once the file's data is back in moto (or there was no file): a moto
    that stops before the restore (a deployment that failed) must not overwrite the last data
    with an empty snapshot.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.armed = not path.exists()

    def restore(self, now: datetime | None = None) -> RestoreReport:
        snapshot = load(self.path)
        if snapshot is None:
            self.armed = True
            return RestoreReport()
        report, rest = restore(snapshot)
        if rest is not None:
            stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
            aside = self.path.with_name(f"{self.path.stem}.unrestored-{stamp}.json")
            write(aside, rest)
            report.unrestored_file = str(aside)
        self.armed = True
        return report

    def save(self, now: datetime | None = None) -> Snapshot | None:
        if not self.armed:
            return None
        snapshot = capture(now)
        write(self.path, snapshot)
        return snapshot


def discard(path: Path) -> None:
    """Remove the data file (``galley local up --fresh``)."""
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
