"""The SQS event the Lambda consumer is handed, read without trusting its shape: the event
source mapping's records, each record's id and receive count."""

from __future__ import annotations

import logging
from typing import Any

from runner.settlement import rules

log = logging.getLogger(__name__)


def records_of(event: Any) -> list[Any]:
    records = event.get("Records") if isinstance(event, dict) else None
    if not isinstance(records, list):
        log.error("not an SQS event (no Records list): %s", sketch(event))
        return []
    return records


def receive_count(record: dict[str, Any]) -> int | None:
    """SQS's ApproximateReceiveCount of the record, if the event has it."""
    try:
        return int((record.get("attributes") or {})["ApproximateReceiveCount"])
    except (KeyError, TypeError, ValueError, AttributeError):
        return None


def message_id(record: Any) -> str | None:
    found = record.get("messageId") if isinstance(record, dict) else None
    return found if isinstance(found, str) and found else None


def sketch(value: Any) -> str:
    return rules.safe_repr(value, 300)
