"""`galley top`'s data: one frame after another of the queues, the workers and their jobs.

Each frame costs, besides the queues' GetQueueAttributes (one per queue and dead-letter queue):
one ListObjectsV2 of the worker registry plus one GetObject per entry (runner/ops/registry.py),
and one GetObject per running job, its result object, for the job's PROGRESS. Dead-letter
queues are never peeked (that counts as a receive of every dead letter; `galley status` does
it once), and no CloudWatch metric is read.

Jobs a second comes from the registry's totals: per worker, the jobs it finished (succeeded,
failed or retried) between the oldest entry seen in the last :data:`RATE_WINDOW` seconds and its
latest, by the entries' own timestamps; summed over the workers.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from runner.core import queues
from runner.errors import StatusError
from runner.ops import registry
from runner.ops import status as status_

#: How far back jobs a second looks.
RATE_WINDOW = 60.0
#: What a refresh is by default, and the fastest allowed.
DEFAULT_INTERVAL = 2.0
MIN_INTERVAL = 0.2
#: Celery's result key for a job (the S3 backend's, under the worker's results prefix).
RESULT_KEY = "{prefix}celery-task-meta-{id}"


@dataclass(frozen=True)
class Progress:
    done: float
    total: float

    @property
    def fraction(self) -> float:
        return min(1.0, max(0.0, self.done / self.total))


@dataclass(frozen=True)
class Job:
    worker: str
    id: str
    task: str
    #: Seconds since the pool started it (None: not known yet).
    age: float | None
    progress: Progress | None = None


@dataclass(frozen=True)
class Frame:
    source: str
    bucket: str | None
    at: datetime
    queues: list[status_.QueueStatus]
    registry: registry.Listing
    jobs: list[Job]
    #: Jobs finished a second, over the workers' latest entries (None: not two entries yet).
    rate: float | None
    #: Per task name: running, succeeded, failed, retried (over the live workers).
    tasks: dict[str, dict[str, int]] = field(default_factory=dict)


def progress_of(meta: Any) -> Progress | None:
    """A result object's PROGRESS as done/total: ``{"done": n, "total": m}`` (Galley's tasks)
    or ``{"current": n, "total": m}`` (a common Celery convention); else None."""
    if not isinstance(meta, dict) or meta.get("status") != "PROGRESS":
        return None
    info = meta.get("result")
    if not isinstance(info, dict):
        return None
    done = info.get("done", info.get("current"))
    total = info.get("total")
    numbers = (done, total)
    if not all(isinstance(n, int | float) and not isinstance(n, bool) for n in numbers):
        return None
    assert isinstance(done, int | float) and isinstance(total, int | float)
    try:
        done, total = float(done), float(total)
    except OverflowError:  # an int beyond a float's range: JSON allows it
        return None
    if not (math.isfinite(done) and math.isfinite(total)) or total <= 0:
        return None
    return Progress(done, total)


class Watch:
    """Frames of one stack; remembers what jobs a second needs between them."""

    def __init__(
        self,
        target: status_.Target,
        clients: Callable[[str], Any],
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not target.bucket:
            raise StatusError(
                "no results bucket: galley top reads the worker registry there "
                f"(set {status_.settings.RESULTS_BUCKET}, or name a stack with --stack)"
            )
        self.target, self.clients, self.clock = target, clients, clock
        self._samples: dict[str, list[tuple[float, int]]] = {}
        self._first = True

    def frame(self) -> Frame:
        """The stack now. The first frame raises StatusError (one line) if the stack cannot be
        reached at all; later ones show each problem in its place."""
        sqs, s3 = self.clients("sqs"), self.clients("s3")
        listed = status_.depths(self.target, sqs)
        listing = registry.read(s3, self.target.bucket, now=self.clock())
        if self._first:
            self._refuse_unreachable(listed, listing)
            self._first = False
        now = self.clock()
        jobs = [
            Job(
                worker.name,
                job.id,
                job.task,
                None if job.started is None else max(0.0, now - job.started),
                self._progress(s3, worker.results_prefix, job.id),
            )
            for worker in listing.workers
            for job in worker.running
        ]
        return Frame(
            source=self.target.source,
            bucket=self.target.bucket,
            at=datetime.fromtimestamp(now, UTC),
            queues=listed,
            registry=listing,
            jobs=jobs,
            rate=self._rate(listing.workers, now),
            tasks=per_task(listing.workers),
        )

    def _refuse_unreachable(
        self, listed: list[status_.QueueStatus], listing: registry.Listing
    ) -> None:
        jobs = next(q for q in listed if q.role == queues.JOBS and q.kind == "queue")
        if jobs.problem is not None:
            raise StatusError(f"the jobs queue {jobs.url or ''}: {jobs.problem}".replace("  ", " "))
        if listing.problem is not None:
            raise StatusError(f"the worker registry: {listing.problem}")

    def _progress(self, s3: Any, prefix: str, job_id: str) -> Progress | None:
        key = RESULT_KEY.format(prefix=prefix, id=job_id)
        try:
            body = s3.get_object(Bucket=self.target.bucket, Key=key)["Body"].read()
            return progress_of(json.loads(body))
        except (ClientError, BotoCoreError, ValueError, UnicodeDecodeError):
            return None  # no result yet, or not one we can read: no bar

    def _rate(self, workers: list[registry.Entry], now: float) -> float | None:
        rate, known = 0.0, False
        seen = set()
        for worker in workers:
            seen.add(worker.name)
            done = sum(worker.totals.values())
            samples = [s for s in self._samples.get(worker.name, []) if now - s[0] <= RATE_WINDOW]
            if not samples or samples[-1][0] != worker.at:
                samples.append((worker.at, done))
            self._samples[worker.name] = samples
            (first_at, first_done), (last_at, last_done) = samples[0], samples[-1]
            if last_at > first_at:
                rate += max(0, last_done - first_done) / (last_at - first_at)
                known = True
        for name in set(self._samples) - seen:
            del self._samples[name]
        return rate if known else None


def per_task(workers: list[registry.Entry]) -> dict[str, dict[str, int]]:
    """Per task name over ``workers``: how many run now, and their outcomes so far."""
    counts: dict[str, dict[str, int]] = {}
    for worker in workers:
        for job in worker.running:
            counts.setdefault(job.task, _empty())["running"] += 1
        for name, outcomes in worker.tasks.items():
            row = counts.setdefault(name, _empty())
            for outcome, value in outcomes.items():
                row[outcome] += value
    return dict(sorted(counts.items()))


def _empty() -> dict[str, int]:
    return {"running": 0, **dict.fromkeys(registry.OUTCOMES, 0)}
