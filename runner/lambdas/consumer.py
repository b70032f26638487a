"""SQS event source -> Galley jobs. ``runner.lambdas.consumer.handler`` in template.yaml."""

from __future__ import annotations

from typing import Any

from runner.consumer import Consumer

_consumer: Consumer | None = None


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Run the batch; returns ``{"batchItemFailures": [...]}`` (ReportBatchItemFailures)."""
    global _consumer
    if _consumer is None:  # cold start: settings validated, task modules imported, once
        from runner.app import app
        from runner.settings import ConsumerSettings, load

        _consumer = Consumer(app, load(ConsumerSettings))
    return _consumer.handle(event, context)
