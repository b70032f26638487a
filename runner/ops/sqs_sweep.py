"""Reading every message of an SQS queue once without consuming it: receive and hold, then release.

SQS has no true peek. A :class:`Sweep` receives with a short visibility timeout and holds each
message invisible until the sweep ends, so every further receive returns messages not seen yet;
leaving the ``with`` block makes the held ones visible again at once (ChangeMessageVisibility 0).
A sweep that lasts longer than a third of its visibility timeout (a big queue, a slow endpoint)
extends what it holds before receiving again, so no message comes back mid-sweep to end it early
with part of the queue unread. Each sweep adds one to every message's ``ApproximateReceiveCount``.
If the process dies mid-sweep the messages reappear by themselves when their visibility timeout
ends.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from runner.core import limits
from runner.core.batching import batched

#: Long polling asks every SQS server; a short poll may answer "empty" on a small queue.
RECEIVE_WAIT_SECONDS = 1
#: Receives in a row that bring only messages already seen (one came back: an extension
#: failed) before the sweep ends anyway.
MAX_RECEIVES_WITHOUT_NEWS = 3


class Sweep:
    """Receives every message of ``url`` once, holding each invisible until the sweep ends."""

    def __init__(
        self, sqs: Any, url: str, visibility: int, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.sqs, self.url, self.visibility, self.clock = sqs, url, visibility, clock
        self.held: dict[str, str] = {}  # message id -> latest receipt handle
        #: When what is held was last made invisible for a whole visibility timeout.
        self._hidden_at: float | None = None

    def batches(self, limit: int | None = None) -> Iterator[list[dict[str, Any]]]:
        """Batches of messages not seen before (with all system and message attributes);
        stops at ``limit`` messages or when the queue has nothing more to give."""
        seen: set[str] = set()
        without_news = 0
        while limit is None or len(seen) < limit:
            want = limits.MAX_BATCH_MESSAGES
            if limit is not None:
                want = min(want, limit - len(seen))
            self._keep_hidden()
            if self._hidden_at is None:
                self._hidden_at = self.clock()
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
            if not received:
                return
            if not new:
                without_news += 1
                if without_news >= MAX_RECEIVES_WITHOUT_NEWS:
                    return
                continue
            without_news = 0
            seen.update(raw["MessageId"] for raw in new)
            yield new

    def _keep_hidden(self) -> None:
        """Extend what is held once a third of its visibility has passed (best effort: a message
        not extended comes back, is seen again and skipped)."""
        if not self.held or self._hidden_at is None:
            return
        if self.clock() - self._hidden_at < self.visibility / 3:
            return
        self._hidden_at = self.clock()
        self._change_visibility(self.visibility)

    def _change_visibility(self, seconds: int) -> None:
        for chunk in batched(list(self.held.values())):
            entries = [
                {"Id": str(i), "ReceiptHandle": handle, "VisibilityTimeout": seconds}
                for i, handle in enumerate(chunk)
            ]
            with contextlib.suppress(ClientError, BotoCoreError):
                self.sqs.change_message_visibility_batch(QueueUrl=self.url, Entries=entries)

    def forget(self, message_id: str) -> None:
        """``message_id`` was deleted: nothing to release."""
        self.held.pop(message_id, None)

    def release(self) -> None:
        """Make every held message visible again. Best effort: one not released reappears by
        itself when its visibility timeout ends."""
        self._change_visibility(0)
        self.held.clear()
        self._hidden_at = None

    def __enter__(self) -> Sweep:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.release()
