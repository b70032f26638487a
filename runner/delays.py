"""Delays carried by SQS, never held by a worker.

Celery turns ``countdown``/``eta`` into an ``eta`` header only: the message is delivered at once
and the worker holds it in memory until then (past the visibility timeout it is delivered again:
celery#3270). Galley also sets SQS ``DelaySeconds`` (up to SQS's 900 s), so the message stays
invisible until it is due. Messages that arrive before their eta — delays longer than 900 s —
are sent on again, in hops of at most 900 s, by whoever receives them.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from celery import signals

from runner.limits import MAX_DELAY_SECONDS


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


def _set_sqs_delay(
    headers: dict[str, Any] | None = None,
    properties: dict[str, Any] | None = None,
    **_: Any,
) -> None:
    """``before_task_publish``: give every message with an eta its first SQS delay hop."""
    if headers is None or properties is None or properties.get("delay_seconds") is not None:
        return
    delay = hop_seconds(parse_eta(headers.get("eta")), datetime.now(UTC))
    if delay:
        properties["delay_seconds"] = delay


#: The longest hop; SQS's maximum unless GALLEY_MAX_HOP_SECONDS shortens it (tests do).
_max_hop = MAX_DELAY_SECONDS


def install(max_hop: int | None = None) -> None:
    """Connect the publish hook (idempotent); ``max_hop`` sets the longest hop."""
    global _max_hop
    if max_hop:
        _max_hop = max_hop
    signals.before_task_publish.connect(_set_sqs_delay, weak=False, dispatch_uid="galley-delay")
