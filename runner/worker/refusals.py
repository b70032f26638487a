"""Celery's worker consumer, with every refusal dead-lettered with its reason.

Celery's consumer refuses a message it cannot run in four ways: an unknown task, an invalid task
(e.g. a bad eta), a message that is not a task, and one it cannot decode. It rejects the first
three, and *acknowledges* the last (the message is deleted: lost). Here each notes its reason on
the message first, and a decode error is rejected too, so the transport dead-letters every one of
them with the reason (runner/worker/transport.py) and `galley dlq` shows why.
"""

from __future__ import annotations

import logging
from typing import Any

from celery.worker.consumer import Consumer as CeleryConsumer

from runner.worker.custody import current

log = logging.getLogger(__name__)


def note(message: Any, reason: str) -> None:
    held = current()
    tag = getattr(message, "delivery_tag", None)
    if held is not None and isinstance(tag, str):
        held.note_reason(tag, reason)


class Consumer(CeleryConsumer):
    def on_unknown_task(self, body: Any, message: Any, exc: Any) -> None:
        note(message, f"unknown task {message.headers.get('task')!r} (not registered here)")
        super().on_unknown_task(body, message, exc)

    def on_invalid_task(self, body: Any, message: Any, exc: Any) -> None:
        note(message, f"invalid task message: {exc}")
        super().on_invalid_task(body, message, exc)

    def on_unknown_message(self, body: Any, message: Any) -> None:
        note(message, "not a Celery task message")
        super().on_unknown_message(body, message)

    def on_decode_error(self, message: Any, exc: Exception) -> None:
        reason = f"undecodable message: {type(exc).__name__}: {exc}"
        log.error("%s (content-type %r): dead-lettered", reason, message.content_type)
        note(message, reason)
        message.reject()
