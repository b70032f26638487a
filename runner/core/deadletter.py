"""Sending a message that cannot be run to its dead-letter queue, with the reason attached.

The body is kept byte for byte, so a redrive runs the original job (`galley dlq redrive` sets only
its retry count back to 0); the reason, the queue it came from and the time travel as message
attributes that `galley dlq` shows.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

#: Message attributes Galley adds to a dead-lettered message.
REASON_ATTRIBUTE = "galley-reason"
SOURCE_ATTRIBUTE = "galley-source-queue"
FAILED_AT_ATTRIBUTE = "galley-failed-at"
#: SQS attribute values count against the message size; reasons are cut to this.
MAX_REASON_CHARS = 2000


def dead_letter(
    sqs: Any,
    dlq_url: str,
    body: str,
    *,
    reason: str,
    source_queue: str,
    now: datetime | None = None,
) -> str:
    """Send ``body`` to ``dlq_url`` with ``reason``; returns the new message id."""
    moment = (now or datetime.now(UTC)).isoformat(timespec="seconds")
    text = reason if len(reason) <= MAX_REASON_CHARS else reason[: MAX_REASON_CHARS - 3] + "..."
    response = sqs.send_message(
        QueueUrl=dlq_url,
        MessageBody=body,
        MessageAttributes={
            REASON_ATTRIBUTE: {"DataType": "String", "StringValue": text},
            SOURCE_ATTRIBUTE: {"DataType": "String", "StringValue": source_queue},
            FAILED_AT_ATTRIBUTE: {"DataType": "String", "StringValue": moment},
        },
    )
    return str(response["MessageId"])
