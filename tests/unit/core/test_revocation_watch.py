"""runner.core.revocations.Watch past its cap: the newest revocations apply, and a line says so.

A fake S3 client (pages of ListObjectsV2 as S3 answers them): the test needs LastModified values
in an order of its choosing, across more keys than moto lists quickly."""

from __future__ import annotations

import bisect
import logging
import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from runner.core import revocations

BUCKET = "revocations-cap"
#: What a reader keeps: Celery's worker keeps as many revoked ids (CELERY_WORKER_REVOKES_MAX).
CAP = 50_000
#: When the first record was written; record n was written n seconds later.
START = datetime(2025, 1, 1, tzinfo=UTC)


class PagedS3:
    """ListObjectsV2 over the records (by key, 1000 a page, from ``StartAfter`` or a
    continuation token, as S3 lists)
    and HeadObject of the marker; counts the pages served, each taking ``page_seconds`` of
    ``now``, the reader's clock."""

    def __init__(self, written: list[tuple[str, datetime]], page_seconds: float = 0.0) -> None:
        self.objects = sorted(
            [(revocations.MARKER, START), *((revocations.key(i), t) for i, t in written)]
        )
        self.keys = [key for key, _ in self.objects]
        self.page_seconds = page_seconds
        self.now = 0.0
        self.pages = 0

    def head_object(self, Bucket: str, Key: str) -> dict[str, Any]:  # noqa: N803
        return {"ETag": '"marker-1"'}

    def list_objects_v2(self, **options: Any) -> dict[str, Any]:
        self.pages += 1
        self.now += self.page_seconds
        after = options.get("StartAfter")
        start = 0 if after is None else bisect.bisect_right(self.keys, after)
        start = int(options.get("ContinuationToken", start))
        page = self.objects[start : start + 1000]
        more = start + 1000 < len(self.objects)
        return {
            "Contents": [{"Key": key, "LastModified": t, "Size": 80} for key, t in page],
            "IsTruncated": more,
            **({"NextContinuationToken": str(start + 1000)} if more else {}),
        }


def revoked(count: int) -> list[tuple[str, datetime]]:
    """``count`` task ids in no key order, revoked one a second from START."""
    rng = random.Random(7)  # noqa: S311 - test ids, not secrets
    ids = [str(uuid.UUID(int=rng.getrandbits(128))) for _ in range(count)]
    assert len(set(ids)) == count and sorted(ids) != ids
    return [(task_id, START + timedelta(seconds=n)) for n, task_id in enumerate(ids)]


def test_past_the_cap_the_newest_revocations_apply_and_a_line_names_the_cap(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # GIVEN ten more revocations than a reader keeps, written one a second, in no key order
    written = revoked(CAP + 10)
    ids = [task_id for task_id, _ in written]
    s3 = PagedS3(written)
    # WHEN a reader reads them
    watch = revocations.Watch(s3, BUCKET)
    with caplog.at_level(logging.WARNING, logger=revocations.__name__):
        watch.refresh()
    # THEN it keeps the newest CAP (the ten oldest do not apply)...
    assert len(watch.ids) == CAP
    assert watch.ids == frozenset(ids[10:])
    # ...and says so in one line naming the cap and how many are left out
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 1 and "50000" in said[0] and "10 oldest" in said[0], said
    # AND a second listing with nothing new says nothing more
    watch.full_list_seconds = 0
    with caplog.at_level(logging.WARNING, logger=revocations.__name__):
        watch.refresh()
    assert len(caplog.records) == 1


def test_a_long_listing_is_spread_over_refreshes_each_bounded_in_time() -> None:
    # GIVEN 25,000 revocations (26 pages), each page taking a second to list
    written = revoked(25_000)
    s3 = PagedS3(written, page_seconds=1.0)
    watch = revocations.Watch(s3, BUCKET, clock=lambda: s3.now)
    # WHEN a reader refreshes
    first = watch.refresh()
    # THEN that refresh lists for LIST_SECONDS (10 s: 10 pages), and what it found applies
    assert s3.pages == 10
    assert not watch.complete and len(first.added) == 10 * 1000 - 1  # less the marker
    assert first.added <= {task_id for task_id, _ in written}
    # AND the next refreshes go on where it stopped, until every revocation is read
    while not watch.complete:
        watch.refresh()
    assert s3.pages == 26
    assert watch.ids == {task_id for task_id, _ in written}
