"""Pauses between polls of a result: from the caller's interval, growing x1.5 up to 2 s.

Each poll of an S3 result is a GetObject; a job that runs a minute polled every 0.5 s costs 120
reads, with this backoff about 32, and a finished job is still seen within 2 s. The caller's own
interval is never shortened, and no pause runs past the caller's deadline. Polls run in the
calling thread: no poller thread per call.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

#: Each pause is the previous one times this.
FACTOR = 1.5
#: Pauses grow to this, unless the caller asked for a longer interval.
CAP_SECONDS = 2.0
#: A caller's interval of 0 still grows from here, so a long wait is no busy loop.
FLOOR_SECONDS = 0.05


def pauses(interval: float) -> Iterator[float]:
    """Endless pauses: ``interval``, then x1.5 each time up to ``max(CAP_SECONDS, interval)``."""
    nap = max(float(interval), 0.0)
    ceiling = max(CAP_SECONDS, nap)
    while True:
        yield nap
        nap = min(max(nap * FACTOR, FLOOR_SECONDS), ceiling)


def naps(interval: float, timeout: float | None) -> Iterator[float]:
    """:func:`pauses`, cut to end at ``timeout`` seconds from now (None: never). The iterator is
    exhausted once the deadline has passed: the caller then gives up."""
    deadline = None if timeout is None else time.monotonic() + timeout
    return _until(pauses(interval), deadline)


def _until(schedule: Iterator[float], deadline: float | None) -> Iterator[float]:
    for nap in schedule:
        if deadline is None:
            yield nap
            continue
        left = deadline - time.monotonic()
        if left <= 0:
            return
        yield min(nap, left)
