"""Delays carried by SQS, never held by a worker: the arithmetic of delay hops.

Celery turns ``countdown``/``eta`` into an ``eta`` header only: the message is delivered at once
and the worker holds it in memory until then (past the visibility timeout it is delivered again:
celery#3270). Galley also sets SQS ``DelaySeconds`` (up to SQS's 900 s), so the message stays
invisible until it is due. Messages that arrive before their eta — delays longer than 900 s —
are sent on again, in hops of at most 900 s, by whoever receives them (runner.worker.hops,
runner.lambdas.records). The Celery publish hook that sets the first hop is
runner.runtime.publish; the producer sets it with :func:`first_hop`.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from runner.core.limits import MAX_DELAY_SECONDS

#: The longest hop; SQS's maximum unless GALLEY_MAX_HOP_SECONDS shortens it (tests do).
_max_hop = MAX_DELAY_SECONDS


def set_max_hop(seconds: int | None) -> None:
    """Shorten the longest hop for this process (``GALLEY_MAX_HOP_SECONDS``); None keeps it."""
    global _max_hop
    if seconds:
        _max_hop = seconds


def parse_eta(value: Any) -> datetime | None:
    """An ``eta`` header (ISO 8601; naive means UTC, as Celery writes it) as aware UTC."""
    if not value:
        return None
    eta = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return eta.replace(tzinfo=UTC) if eta.tzinfo is None else eta.astimezone(UTC)


def hop_seconds(eta: datetime | None, now: datetime, *, max_hop: int | None = None) -> int | None:
    """The DelaySeconds of the next hop towards ``eta``: None when it is due."""
    if eta is None:
        return None
    remaining = math.ceil((eta - now).total_seconds())
    if remaining <= 0:
        return None
    return min(remaining, max_hop or _max_hop)


def first_hop(countdown: float) -> int:
    """The DelaySeconds a message sent with ``countdown`` seconds (> 0) starts with."""
    return min(math.ceil(countdown), MAX_DELAY_SECONDS)
