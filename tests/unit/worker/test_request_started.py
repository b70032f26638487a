"""The worker times a job from when a pool process takes it (runner/worker/request.py -> ledger)."""

from __future__ import annotations

from typing import Any

from celery.contrib.testing.mocks import TaskMessage

from runner.core.settings import WorkerSettings
from runner.runtime.app import create_app
from runner.worker.ledger import Ledger
from runner.worker.request import Request

APP = create_app(
    WorkerSettings(
        queue_url="https://sqs.eu-west-1.amazonaws.com/123456789012/jobs",
        results_bucket="galley-results",
        region="eu-west-1",
    )
)


@APP.task(name="started.noop")
def noop() -> None:
    """Never run: the request is only accepted."""


class Held:
    """The part of the worker's custody a request tells of a start."""

    def __init__(self) -> None:
        self.ledger = Ledger()

    def started(self, receipt: str) -> None:
        self.ledger.started(receipt)


def test_a_job_taken_by_a_pool_process_is_timed_from_then(monkeypatch: Any) -> None:
    """Without it the ledger timed jobs from their receipt (see test_receiver's buffer test)."""
    held = Held()
    monkeypatch.setattr("runner.worker.request.current", lambda: held)
    message = TaskMessage("started.noop", id="j1")
    message.delivery_tag = "receipt-1"
    message.delivery_info = {}  # no SQS attributes
    entry = held.ledger.add("q", {"ReceiptHandle": "receipt-1", "Body": "b"})
    request = Request(message, app=APP, task=noop)
    request.on_accepted(pid=123, time_accepted=0.0)
    assert entry.started_at is not None
