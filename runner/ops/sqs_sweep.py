"""Reading every message of an SQS queue once without consuming it: receive and hold, then release.

SQS has no true peek. A :class:`Sweep` receives with a short visibility timeout and holds each
message invisible until the sweep ends, so every further receive returns messages not seen yet;
leaving the ``with`` block makes the held ones visible again at once (ChangeMessageVisibility 0).
Each sweep adds one to every message's ``ApproximateReceiveCount``. If the process dies mid-sweep
the messages reappear by themselves when their visibility timeout ends.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from types import TracebackType
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from runner.core import limits
from runner.core.batching import batched

#: Long polling asks every SQS server; a short poll may answer "empty" on a small queue.
RECEIVE_WAIT_SECONDS = 1


class Sweep:
    """Receives every message of ``url`` once, holding each invisible until the sweep ends."""

    def __init__(self, sqs: Any, url: str, visibility: int) -> None:
        self.sqs, self.url, self.visibility = sqs, url, visibility
        self.held: dict[str, str] = {}  # message id -> latest receipt handle

    def batches(self, limit: int | None = None) -> Iterator[list[dict[str, Any]]]:
        """Batches of messages not seen before (with all system and message attributes);
        stops at ``limit`` messages or when a receive brings nothing new."""
        seen: set[str] = set()
        while limit is None or len(seen) < limit:
            want = limits.MAX_BATCH_MESSAGES
            if limit is not None:
                want = min(want, limit - len(seen))
            received = self.sqs.receive_message(
                QueueUrl=self.url,
                MaxNumberOfMessages=want,
                VisibilityTimeout=self.visibility,
                WaitTimeSeconds=RECEIVE_WAIT_SECONDS,
                MessageSystemAttributeNames=["All"],
                MessageAttributeNames=["All"],
            ).get("Messages", [])
            for raw in received:
                self.held[raw["MessageId"]] = raw["ReceiptHandle"]
            new = [raw for raw in received if raw["MessageId"] not in seen]
            if not new:
                return
            seen.update(raw["MessageId"] for raw in new)
            yield new

    def forget(self, message_id: str) -> None:
        """``message_id`` was deleted: nothing to release."""
        self.held.pop(message_id, None)

    def release(self) -> None:
        """Make every held message visible again. Best effort: one not released reappears by
        itself when its visibility timeout ends."""
        handles = list(self.held.values())
        for chunk in batched(handles):
            entries = [
                {"Id": str(i), "ReceiptHandle": handle, "VisibilityTimeout": 0}
                for i, handle in enumerate(chunk)
            ]
            with contextlib.suppress(ClientError, BotoCoreError):
                self.sqs.change_message_visibility_batch(QueueUrl=self.url, Entries=entries)
        self.held.clear()

    def __enter__(self) -> Sweep:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.release()
