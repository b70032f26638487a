"""Celery publish hooks: every message with an eta leaves with its first SQS delay hop."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from celery import signals

from runner.core import delays


def _set_sqs_delay(
    headers: dict[str, Any] | None = None,
    properties: dict[str, Any] | None = None,
    **_: Any,
) -> None:
    """``before_task_publish``: give every message with an eta its first SQS delay hop."""
    if headers is None or properties is None or properties.get("delay_seconds") is not None:
        return
    delay = delays.hop_seconds(delays.parse_eta(headers.get("eta")), datetime.now(UTC))
    if delay:
        properties["delay_seconds"] = delay


def install(max_hop: int | None = None) -> None:
    """Connect the publish hook (idempotent); ``max_hop`` sets the longest hop."""
    delays.set_max_hop(max_hop)
    signals.before_task_publish.connect(_set_sqs_delay, weak=False, dispatch_uid="galley-delay")
