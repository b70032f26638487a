"""The worker's task strategy: links checked before a job runs, and early jobs sent on, not kept.

A revoked job (``worker_state.revoked``) goes straight to Celery's handling, which discards it
(REVOKED, acknowledged) whatever its eta: it is never sent on.

A job whose links Celery could not send after it ran (runner/settlement/links.py) is refused
first: its FAILURE is stored and it is dead-lettered with the reason, before its body runs.

Long delays without holding: a message that arrives before its eta is sent on, not kept.

Stock Celery keeps an early message in the worker's memory until its eta; past the visibility
timeout SQS delivers it again (celery#3270), and SQS cannot delay a message more than 900 s.
Galley's task strategy hands such a message to the settler (runner/worker/settler.py), which sends
it back to the queue it came from with the next hop's DelaySeconds (at most
``GALLEY_MAX_HOP_SECONDS``) and then deletes the original — off the event loop, retried through
faults while the heartbeat keeps the original hidden. The job runs once, not before its eta,
within one hop's accuracy.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from celery.app.task import Context
from celery.worker import state as worker_state
from celery.worker.strategy import default as default_strategy

from runner.core import delays
from runner.settlement import links
from runner.worker.custody import current

log = logging.getLogger(__name__)


def strategy(task: Any, app: Any, consumer: Any, **kwargs: Any) -> Callable[..., Any]:
    """``Task.Strategy``: Celery's default, behind a check for messages that are early."""
    handle = default_strategy(task, app, consumer, **kwargs)
    settings = app.galley_settings

    def hop_or_handle(
        message: Any, body: Any, ack: Any, reject: Any, callbacks: Any, **options: Any
    ) -> Any:
        if (message.headers or {}).get("id") in worker_state.revoked:
            # Celery's own handling discards it (REVOKED, acknowledged), eta or not: a revoked
            # job is not sent on (runner/worker/revocations.py)
            return handle(message, body, ack, reject, callbacks, **options)
        refused = _links_problem(app, message)
        if refused is not None:
            _refuse(app, task, message, refused)
            reject(log, consumer.connection_errors)  # dead-lettered with the noted reason
            return None
        try:
            eta = delays.parse_eta((message.headers or {}).get("eta"))
            hop = delays.hop_seconds(eta, datetime.now(UTC), max_hop=settings.max_hop_seconds)
        except (TypeError, ValueError, OverflowError):  # Celery's own handling rejects it
            return handle(message, body, ack, reject, callbacks, **options)
        held = current()
        if not hop or held is None:
            return handle(message, body, ack, reject, callbacks, **options)
        if not held.settle(message.delivery_tag, "forward", delay_seconds=hop):
            return handle(message, body, ack, reject, callbacks, **options)
        log.info(
            "task %s[%s] is due at %s: sent on with a %ss delay",
            task.name,
            message.headers.get("id"),
            eta,
            hop,
        )
        ack(log, consumer.connection_errors)  # frees its prefetch slot; the settler deletes it
        return None

    return hop_or_handle


def _links_problem(app: Any, message: Any) -> str | None:
    try:
        _, _, embed = message.decode()
        return links.problem(app, message.headers or {}, embed)
    except Exception as error:  # undecodable here: Celery's own handling refuses it
        log.debug("links not checked: %s", error)
        return None


def _refuse(app: Any, task: Any, message: Any, reason: str) -> None:
    """Store the job's FAILURE (what its caller sees) and note why, for the dead letter."""
    text = f"task {task.name} refused before it ran: {reason}"
    log.error("%s[%s]: %s", task.name, message.headers.get("id"), text)
    held = current()
    if held is not None:
        held.note_reason(message.delivery_tag, text)
    request = Context(
        message.headers, chord=None, chain=None, errbacks=None, callbacks=None, group=None
    )
    try:
        app.backend.mark_as_failure(message.headers["id"], ValueError(text), request=request)
    except Exception:  # the dead letter still carries the job and the reason
        log.exception("could not record the failure of %s", message.headers.get("id"))
