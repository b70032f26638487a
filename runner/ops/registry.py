"""The worker registry: what each Celery worker says about itself, in the results bucket.

SQS has no broadcast, so no worker can be asked what it runs (runner/runtime/remote.py). Instead
each worker's main process writes one small JSON object, ``workers/<host>-<pid>.json``, at start,
every :data:`DEFAULT_INTERVAL` seconds and once more at shutdown, marked stopped
(runner/worker/registry.py). Readers (`galley status`, `galley top`) list the prefix and read
the objects; an entry not rewritten for :data:`STALE_INTERVALS` of its own intervals is a worker
that died without saying so (``kill -9``, a lost Fargate task), and reads as gone, as a stopped
one does. The bucket's lifecycle rule for :data:`PREFIX` (template.yaml) deletes them a day later.

This module is the format both sides share and the reading side; it imports no Celery.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from runner.core.variables import DEFAULT_REGISTRY_INTERVAL, MAX_REGISTRY_INTERVAL

#: Where the entries live in the results bucket (template.yaml expires this prefix).
PREFIX = "workers/"
#: How often a worker rewrites its entry by default (GALLEY_REGISTRY_INTERVAL), and at most.
DEFAULT_INTERVAL = DEFAULT_REGISTRY_INTERVAL
MAX_INTERVAL = MAX_REGISTRY_INTERVAL
#: An entry not rewritten for this many of its intervals reads as gone.
STALE_INTERVALS = 3
#: An entry is a few KiB (at most :data:`MAX_TASK_NAMES` task names and a worker's running
#: jobs); a larger object is not one, and is not downloaded on every refresh of `galley top`.
MAX_ENTRY_BYTES = 1 << 20
#: Objects older than this are not read at all (no worker's entry can be that late and live).
_NEVER_LIVE_AFTER = STALE_INTERVALS * MAX_INTERVAL
#: ``state`` of an entry: taking jobs, finishing its jobs after a SIGTERM, gone.
RUNNING, STOPPING, STOPPED = "running", "stopping", "stopped"
STATES = (RUNNING, STOPPING, STOPPED)
#: The outcomes a worker counts (as Celery's task events name them, without ``task-``).
OUTCOMES = ("succeeded", "failed", "retried")
#: At most this many task names get counts of their own in an entry (the rest are summed).
MAX_TASK_NAMES = 50
OTHER_TASKS = "(other tasks)"

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def key(host: str, pid: int) -> str:
    """The entry's key: one per worker process, whatever its host name holds."""
    return f"{PREFIX}{_UNSAFE.sub('_', host)[:200]}-{pid}.json"


@dataclass(frozen=True)
class Running:
    """A job the worker's pool runs now."""

    id: str
    task: str
    #: When the pool started it (epoch seconds), None if not yet known.
    started: float | None


@dataclass(frozen=True)
class Entry:
    host: str
    pid: int
    version: str
    #: Epoch seconds: when the worker started, when this entry was written.
    started: float
    at: float
    interval: float
    concurrency: int
    #: The role of the queue it consumes (``jobs``, ``long``).
    queue: str
    state: str
    running: list[Running]
    #: Jobs received and waiting in the worker for a free process.
    waiting: int
    totals: dict[str, int]
    #: Per task name, its counts by outcome.
    tasks: dict[str, dict[str, int]] = field(default_factory=dict)
    #: Where its jobs' results are (a reader finds a running job's PROGRESS there).
    results_prefix: str = "results/"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def name(self) -> str:
        return f"{self.host}:{self.pid}"

    def stale(self, now: float) -> bool:
        return now - self.at > STALE_INTERVALS * self.interval


@dataclass(frozen=True)
class Listing:
    """The registry as read: live workers; how many entries read as gone; notes on entries that
    could not be read (garbage, refused), each naming its key."""

    workers: list[Entry]
    gone: int = 0
    notes: list[str] = field(default_factory=list)
    #: Why the registry could not be listed at all (no bucket, bucket not found, refused).
    problem: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "workers": [worker.as_dict() for worker in self.workers],
            "gone": self.gone,
            "notes": self.notes,
            "problem": self.problem,
        }


def parse(raw: bytes) -> Entry:
    """An entry from its object's bytes; ValueError saying what is wrong with it."""
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as error:
        raise ValueError(f"not JSON ({type(error).__name__})") from None
    if not isinstance(data, dict):
        raise ValueError(f"not a JSON object but {type(data).__name__}")
    try:
        return Entry(
            host=_text(data, "host"),
            pid=_count(data, "pid"),
            version=_text(data, "version"),
            started=_number(data, "started"),
            at=_number(data, "at"),
            interval=_interval(data),
            concurrency=_count(data, "concurrency"),
            queue=_text(data, "queue"),
            state=_state(data),
            running=[_running(item) for item in _list(data, "running")],
            waiting=_count(data, "waiting"),
            totals=_counts(data.get("totals"), "totals"),
            tasks={
                str(name): _counts(counts, f"tasks[{name!r}]")
                for name, counts in _mapping(data, "tasks").items()
            },
            results_prefix=_text(data, "results_prefix", default="results/"),
        )
    except (TypeError, ValueError, KeyError) as error:
        raise ValueError(str(error).strip("'\"")) from None


def read(s3: Any, bucket: str | None, now: float | None = None) -> Listing:
    """Every live worker's entry in ``bucket``; never raises for what is in the bucket."""
    if not bucket:
        return Listing([], problem="no results bucket (GALLEY_RESULTS_BUCKET) to read it from")
    moment = datetime.now(UTC).timestamp() if now is None else now
    try:
        objects = _list_objects(s3, bucket)
    except (ClientError, BotoCoreError) as error:
        return Listing([], problem=f"s3://{bucket}/{PREFIX}: {reason(error)}")
    workers: list[Entry] = []
    notes: list[str] = []
    gone = 0
    for item in objects:
        if moment - item["LastModified"].timestamp() > _NEVER_LIVE_AFTER:
            gone += 1
            continue
        if int(item.get("Size") or 0) > MAX_ENTRY_BYTES:
            notes.append(f"{item['Key']}: skipped, {item['Size']} bytes is not a worker entry")
            continue
        try:
            body = s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
        except (ClientError, BotoCoreError) as error:
            if isinstance(error, ClientError) and _code(error) in ("NoSuchKey", "404"):
                gone += 1  # deleted since it was listed
            else:
                notes.append(f"{item['Key']}: not read: {reason(error)}")
            continue
        try:
            entry = parse(body)
        except ValueError as error:
            notes.append(f"{item['Key']}: skipped, not a worker entry: {error}")
            continue
        if entry.state == STOPPED or entry.stale(moment):
            gone += 1
        else:
            workers.append(entry)
    workers.sort(key=lambda entry: (entry.queue, entry.host, entry.pid))
    return Listing(workers, gone, notes)


def _list_objects(s3: Any, bucket: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    token: str | None = None
    while True:
        page = s3.list_objects_v2(
            Bucket=bucket, Prefix=PREFIX, **({"ContinuationToken": token} if token else {})
        )
        found.extend(page.get("Contents") or [])
        token = page.get("NextContinuationToken")
        if not page.get("IsTruncated") or not token:
            return found


def reason(error: Exception) -> str:
    """An AWS error as one short line."""
    if isinstance(error, ClientError):
        info = error.response.get("Error", {})
        return f"{info.get('Code', 'error')}: {info.get('Message', '')}".rstrip(": ")
    return f"{type(error).__name__}: {' '.join(str(error).split())}"


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


# --- field checks: each raises ValueError naming the field ---


def _text(data: Mapping[str, Any], name: str, default: str | None = None) -> str:
    value = data.get(name, default)
    if not isinstance(value, str):
        raise ValueError(f"{name}: expected text, got {type(value).__name__}")
    return value


def _number(data: Mapping[str, Any], name: str) -> float:
    value = data.get(name)
    number = math.nan
    if isinstance(value, int | float) and not isinstance(value, bool):
        with contextlib.suppress(OverflowError):  # an integer of hundreds of digits
            number = float(value)
    if not math.isfinite(number):  # Infinity is JSON to json.loads, and breaks every duration
        raise ValueError(f"{name}: expected a number, got {value!r:.40}")
    return number


def _count(data: Mapping[str, Any], name: str) -> int:
    value = data.get(name)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name}: expected a count, got {value!r:.40}")
    return value


def _interval(data: Mapping[str, Any]) -> float:
    value = _number(data, "interval")
    if not 0 < value <= MAX_INTERVAL:
        raise ValueError(f"interval: expected 0 < seconds <= {MAX_INTERVAL}, got {value}")
    return value


def _state(data: Mapping[str, Any]) -> str:
    value = data.get("state")
    if value not in STATES:
        raise ValueError(f"state: expected one of {', '.join(STATES)}, got {value!r:.40}")
    return str(value)


def _list(data: Mapping[str, Any], name: str) -> list[Any]:
    value = data.get(name)
    if not isinstance(value, list):
        raise ValueError(f"{name}: expected a list, got {type(value).__name__}")
    return value


def _mapping(data: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    value = data.get(name, {})
    if not isinstance(value, dict):
        raise ValueError(f"{name}: expected an object, got {type(value).__name__}")
    return value


def _counts(value: Any, name: str) -> dict[str, int]:
    if not isinstance(value, dict):
        raise ValueError(f"{name}: expected an object, got {type(value).__name__}")
    return {outcome: _count(value, outcome) if outcome in value else 0 for outcome in OUTCOMES}


def _running(item: Any) -> Running:
    if not isinstance(item, dict):
        raise ValueError(f"running: expected objects, got {type(item).__name__}")
    started = item.get("started")
    if started is not None:
        started = _number(item, "started")
    return Running(id=_text(item, "id"), task=_text(item, "task"), started=started)
