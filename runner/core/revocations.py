"""Revocations kept in S3: what `galley revoke` writes and every worker and Lambda consumer reads.

Stock Celery revokes by broadcast, and SQS has none; a broadcast would also reach only the
workers running at that moment. Here a revocation is an object in the results bucket,
``revoked/<task id>`` (JSON: when, and whether to terminate a running job), so it survives
worker restarts, reaches workers started later, and expires with the bucket's lifecycle rule for
the prefix (template.yaml: ExpireRevocations, 15 days, longer than a message can live in a DLQ).

Readers keep the set of revoked ids in memory and refresh it on an interval (:class:`Watch`).
A refresh costs one HeadObject of the marker ``revoked/`` (the prefix itself, an object every
revocation rewrites after writing its record: its ETag changes with each one); only when the
ETag changed — or every :data:`FULL_LIST_SECONDS` in case a revoker died between its two PUTs —
does it list the prefix (ListObjectsV2, 1000 keys a page, keeping the newest :data:`MAX_IDS`
ids and no more while it pages). With nothing revoked, a reader spends
one HEAD a refresh, never a request per job. S3 is strongly consistent (read-after-write, and
list-after-write), so a record written before the marker is listed by a reader that saw it.

boto3 only (the light core): producers, the Lambda consumer and the worker all use it.
"""

from __future__ import annotations

import heapq
import json
import logging
import signal as signals
import time
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from runner.errors import RevokeError

log = logging.getLogger(__name__)

#: Key prefix of revocation records in the results bucket; ``revoked/<task id>``.
PREFIX = "revoked/"
#: The marker rewritten by every revocation: its ETag says whether anything changed.
MARKER = PREFIX
#: A reader lists the prefix at least this often even if the marker did not change (a revoker
#: that died between its record and the marker is seen within this time).
FULL_LIST_SECONDS = 300.0
#: Most revocations a reader applies: the newest, by when their record was written (S3's
#: LastModified, to the second; ties by key). The same as Celery's worker keeps in its revoked
#: set (``CELERY_WORKER_REVOKES_MAX``), and it bounds what a refresh holds and shares with the
#: pool processes (about 2 MB of ids). Past it the oldest do not apply, and each listing that
#: finds a different number over it says so in one line (README: Revoke).
MAX_IDS = 50_000
#: Longest a refresh lists the prefix (1000 keys a page; 0.8 to 1.3 s a page on moto here):
#: a longer listing goes on at the next refresh, so no refresh (a Lambda batch's start, a
#: worker's first read) waits on all of it at once.
LIST_SECONDS = 10.0
#: The signal a terminate sends when its revocation names none.
TERM = "SIGTERM"
#: Longest task id accepted (S3 keys are 1024 bytes; Celery's ids are 36-character UUIDs).
MAX_TASK_ID_CHARS = 255


def check_task_id(value: Any) -> str:
    """``value`` if it can be a task id (any Celery id: printable text, no spaces, at most
    :data:`MAX_TASK_ID_CHARS`); else :class:`RevokeError` naming what is wrong."""
    if not isinstance(value, str) or not value:
        raise RevokeError(f"not a task id: {value!r} (expected a job's id, as enqueue prints it)")
    shown = ascii(value) if len(value) <= 80 else ascii(value[:80]) + "..."
    if len(value) > MAX_TASK_ID_CHARS:
        raise RevokeError(f"not a task id: {shown} is longer than {MAX_TASK_ID_CHARS} characters")
    for char in value:
        if char.isspace() or unicodedata.category(char) in ("Cc", "Cf", "Cs", "Co", "Cn"):
            raise RevokeError(
                f"not a task id: {shown} holds {ascii(char)} (spaces and control or unassigned "
                "characters are not in task ids)"
            )
    return value


def signal_name_of(value: Any) -> str:
    """``SIGTERM`` for None; else the signal's name (``KILL``, ``SIGKILL`` or 9 -> ``SIGKILL``),
    or :class:`RevokeError`."""
    if value is None:
        return TERM
    try:
        if isinstance(value, int) and not isinstance(value, bool):
            return signals.Signals(value).name
        if isinstance(value, str):
            name = value.upper() if value.upper().startswith("SIG") else "SIG" + value.upper()
            return signals.Signals[name].name
    except (KeyError, ValueError):
        pass
    raise RevokeError(f"not a signal: {value!r} (expected a name such as SIGTERM or SIGKILL)")


def key(task_id: str) -> str:
    return PREFIX + task_id


@dataclass(frozen=True)
class Record:
    """One revocation as stored."""

    task_id: str
    revoked_at: str
    terminate: bool = False
    signal: str | None = None

    def body(self) -> bytes:
        return json.dumps(self.__dict__, sort_keys=True).encode()


def record(s3: Any, bucket: str, records: Iterable[Record]) -> None:
    """Write each revocation, then the marker once (readers list the prefix when it changes)."""
    for item in records:
        s3.put_object(
            Bucket=bucket, Key=key(item.task_id), Body=item.body(), ContentType="application/json"
        )
    s3.put_object(
        Bucket=bucket,
        Key=MARKER,
        Body=datetime.now(UTC).isoformat().encode(),
        ContentType="text/plain",
    )


def read(s3: Any, bucket: str, task_id: str) -> Record | None:
    """The revocation of ``task_id``, or None. A record that is not Galley's JSON still revokes
    (it is listed), without terminating."""
    try:
        body = s3.get_object(Bucket=bucket, Key=key(task_id))["Body"].read()
    except ClientError as error:
        if _status(error) == 404:
            return None
        raise
    try:
        data = json.loads(body)
        found = Record(
            task_id=task_id,
            revoked_at=str(data.get("revoked_at", "")),
            terminate=data.get("terminate") is True,
        )
    except (ValueError, AttributeError):
        log.warning("revocation %s is not JSON: it revokes, without terminating", key(task_id))
        return Record(task_id=task_id, revoked_at="")
    try:  # Celery's terminate raises, on the worker's event loop, for a name it does not take
        name = signal_name_of(data.get("signal"))
    except RevokeError as error:
        log.warning("revocation %s: %s; %s is sent instead", key(task_id), error, TERM)
        name = TERM
    return Record(
        found.task_id, found.revoked_at, found.terminate, name if found.terminate else None
    )


@dataclass(frozen=True)
class Change:
    """What one refresh found: ids revoked since the last one, ids no longer listed (their
    records expired), and ids revoked before whose record was written again since (a revoke,
    then a revoke with terminate: the second must still stop the running job)."""

    added: frozenset[str]
    removed: frozenset[str]
    rewritten: frozenset[str] = frozenset()


@dataclass
class _Pass:
    """One listing of the prefix, possibly spread over several refreshes: where it stands."""

    etag: str | None  # the marker's ETag when it began
    after: str | None = None  # the last key listed (the next page starts after it)
    newest: list[tuple[datetime, str]] = field(default_factory=list)  # a min-heap, oldest first
    tags: dict[str, str] = field(default_factory=dict)  # the ETag of each id in ``newest``
    listed: int = 0  # records listed so far, kept or not


class Watch:
    """The revoked ids of one bucket, refreshed on demand; counts the requests it makes
    (``requests``: HeadObject, ListObjectsV2).

    A listing is bounded: it keeps at most :data:`MAX_IDS` ids, and one refresh lists for at most
    ``list_seconds`` (:data:`LIST_SECONDS`); a longer listing goes on at the next refresh from
    the last key it listed. Ids it found so far apply at once; ids are removed (their records
    expired) only when a listing is complete. ``complete`` says whether one ever was."""

    _UNSEEN = object()

    def __init__(
        self,
        s3: Any,
        bucket: str,
        *,
        full_list_seconds: float = FULL_LIST_SECONDS,
        list_seconds: float = LIST_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.s3 = s3
        self.bucket = bucket
        self.full_list_seconds = full_list_seconds
        self.list_seconds = list_seconds
        self.clock = clock
        self.ids: frozenset[str] = frozenset()
        self.requests: Counter[str] = Counter()
        #: When the last refresh that found everything ended (nothing changed, or a listing
        #: completed); None before one did.
        self.refreshed_at: float | None = None
        self._etag: object = self._UNSEEN
        self._listed_at: float | None = None
        self._pass: _Pass | None = None
        self._over = 0  # revocations left out at the last listing (past MAX_IDS)
        self._tags: dict[str, str] = {}  # each id's record's ETag, as last listed

    @property
    def complete(self) -> bool:
        """Whether a listing ever completed: ``ids`` holds every revocation up to its start."""
        return self._listed_at is not None

    @property
    def listing(self) -> bool:
        """Whether a listing is under way (the next refresh goes on with it)."""
        return self._pass is not None

    def refresh(self) -> Change:
        """Read the marker; list the prefix if it changed (or a full list is due, or a listing
        is under way), for at most ``list_seconds``. Raises what S3 raises: the caller keeps
        the ids it had and tries again later."""
        now = self.clock()
        etag = self._marker_etag()
        if self._pass is None:
            due = self._listed_at is None or now - self._listed_at >= self.full_list_seconds
            if etag == self._etag and not due:
                self.refreshed_at = now
                return Change(frozenset(), frozenset())
            self._pass = _Pass(etag)
        listing = self._pass
        found = self._list(listing, deadline=now + self.list_seconds)
        rewritten = frozenset(
            task_id
            for task_id, tag in listing.tags.items()
            if self._tags.get(task_id, tag) != tag and task_id in self.ids
        )
        if self._pass is None:  # complete: what it found is the whole set
            ids = found
            self._tags = dict(listing.tags)
            self._say_if_over(listing.listed)
            self._etag, self._listed_at, self.refreshed_at = listing.etag, now, now
        else:  # under way: nothing is removed before it completes
            ids = self.ids | found
            self._tags.update(listing.tags)
        change = Change(frozenset(ids - self.ids), frozenset(self.ids - ids), rewritten)
        self.ids = ids
        return change

    def _marker_etag(self) -> str | None:
        self.requests["HeadObject"] += 1
        try:
            return str(self.s3.head_object(Bucket=self.bucket, Key=MARKER)["ETag"])
        except ClientError as error:
            if _status(error) == 404:
                return None  # nothing revoked yet, or everything expired
            raise

    def _list(self, listing: _Pass, deadline: float) -> frozenset[str]:
        """Go on with ``listing`` a page (1000 keys) at a time until it ends (then
        ``self._pass`` is None) or ``deadline`` passes; the ids kept so far (past
        :data:`MAX_IDS`, the newest, no more kept in memory)."""
        options: dict[str, Any] = {"Bucket": self.bucket, "Prefix": PREFIX}
        while True:
            if listing.after is not None:
                options["StartAfter"] = listing.after
            self.requests["ListObjectsV2"] += 1
            page = self.s3.list_objects_v2(**options)
            contents = page.get("Contents") or ()
            for item in contents:
                task_id = item["Key"][len(PREFIX) :]
                if not task_id:  # the marker itself
                    continue
                listing.listed += 1
                entry = (_written(item), task_id)
                if len(listing.newest) < MAX_IDS:
                    heapq.heappush(listing.newest, entry)
                elif entry > listing.newest[0]:
                    listing.tags.pop(heapq.heapreplace(listing.newest, entry)[1], None)
                else:
                    continue
                listing.tags[task_id] = str(item.get("ETag", ""))
            if not page.get("IsTruncated") or not contents:
                self._pass = None
                break
            listing.after = contents[-1]["Key"]
            if self.clock() >= deadline:
                log.info(
                    "revocations: %d listed in %g s, the rest at the next refresh",
                    listing.listed,
                    self.list_seconds,
                )
                break
        return frozenset(task_id for _, task_id in listing.newest)

    def _say_if_over(self, listed: int) -> None:
        over = max(listed - MAX_IDS, 0)
        if over and over != self._over:
            log.warning(
                "%d revocations under s3://%s/%s, over the %d a reader applies (MAX_IDS): the "
                "newest %d apply; the %d oldest do not, and their jobs run if delivered",
                listed,
                self.bucket,
                PREFIX,
                MAX_IDS,
                MAX_IDS,
                over,
            )
        self._over = over


def _written(item: dict[str, Any]) -> datetime:
    """When a listed record was written; the oldest possible time if S3 did not say."""
    written = item.get("LastModified")
    if not isinstance(written, datetime):
        return datetime.min.replace(tzinfo=UTC)
    return written if written.tzinfo is not None else written.replace(tzinfo=UTC)


def _status(error: ClientError) -> int:
    meta = error.response.get("ResponseMetadata", {})
    code = error.response.get("Error", {}).get("Code")
    if code in ("404", "NoSuchKey", "NotFound"):
        return 404
    return int(meta.get("HTTPStatusCode") or 0)
