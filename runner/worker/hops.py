"""Long delays without holding: a message that arrives before its eta is sent on, not kept.

Stock Celery keeps an early message in the worker's memory until its eta; past the visibility
timeout SQS delivers it again (celery#3270), and SQS cannot delay a message more than 900 s.
Galley's task strategy sends such a message back to its queue with the next hop's DelaySeconds
(at most ``GALLEY_MAX_HOP_SECONDS``) and acknowledges the original: the job runs once, not before
its eta, within one hop's accuracy.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from botocore.config import Config
from celery.worker.strategy import default as default_strategy

from runner import aws, delays

log = logging.getLogger(__name__)

CLIENT_CONFIG = Config(connect_timeout=5, read_timeout=10, retries={"max_attempts": 3})
_clients: dict[str, Any] = {}


def sqs_client(region: str) -> Any:
    if region not in _clients:
        _clients[region] = aws.client("sqs", region=region, config=CLIENT_CONFIG)
    return _clients[region]


def strategy(task: Any, app: Any, consumer: Any, **kwargs: Any) -> Callable[..., Any]:
    """``Task.Strategy``: Celery's default, behind a check for messages that are early."""
    handle = default_strategy(task, app, consumer, **kwargs)
    settings = app.galley_settings

    def hop_or_handle(
        message: Any, body: Any, ack: Any, reject: Any, callbacks: Any, **options: Any
    ) -> Any:
        try:
            eta = delays.parse_eta((message.headers or {}).get("eta"))
            hop = delays.hop_seconds(eta, datetime.now(UTC), max_hop=settings.max_hop_seconds)
        except (TypeError, ValueError, OverflowError):  # Celery's own handling rejects it
            return handle(message, body, ack, reject, callbacks, **options)
        info = message.delivery_info or {}
        sqs_message, queue_url = info.get("sqs_message"), info.get("sqs_queue")
        if not hop or not sqs_message or not queue_url:
            return handle(message, body, ack, reject, callbacks, **options)
        try:
            sqs_client(settings.region).send_message(
                QueueUrl=queue_url, MessageBody=sqs_message["Body"], DelaySeconds=hop
            )
        except Exception as error:  # keep it the stock way rather than lose it
            log.warning(
                "could not send %s on its next delay hop (%s); holding it", task.name, error
            )
            return handle(message, body, ack, reject, callbacks, **options)
        log.info(
            "task %s[%s] is due at %s: sent on with a %ss delay",
            task.name,
            message.headers.get("id"),
            eta,
            hop,
        )
        ack(log, consumer.connection_errors)  # what Request.acknowledge() passes
        return None

    return hop_or_handle
