"""SQS event source -> Galley jobs. ``runner.lambdas.consumer.handler`` in template.yaml."""

from __future__ import annotations

from typing import Any

from runner.errors import SettingsError
from runner.lambdas.records import Consumer

_consumer: Consumer | None = None


def handler(event: Any, context: Any) -> dict[str, Any]:
    """Run the batch; returns ``{"batchItemFailures": [...]}`` (ReportBatchItemFailures) for any
    event. Only a misconfigured cold start raises, with a one-line message naming the variable."""
    global _consumer
    if _consumer is None:  # cold start: settings validated, task modules imported, once
        _consumer = _cold_start()
    return _consumer.handle(event, context)


def _cold_start() -> Consumer:
    from runner.core.settings import DLQ_URL, ConsumerSettings, load

    settings = load(ConsumerSettings)
    if not settings.dlq_url:
        # Without it a job that fails for good would be handed back to SQS again and again.
        raise SettingsError(
            f"{DLQ_URL} is not set: the Lambda consumer sends jobs that fail for good to this "
            "dead-letter queue (template.yaml sets it to the jobs queue's DLQ)"
        )
    from runner.runtime import tasklogs
    from runner.runtime.app import app

    if settings.log_format == "json":
        tasklogs.use_json()
    return Consumer(app, settings)
