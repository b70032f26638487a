"""GALLEY_METRICS=emf in the Lambda consumer: each batch writes EMF lines counting what it did."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from runner.core import metrics
from runner.core.settings import ConsumerSettings
from runner.errors import SettingsError
from runner.lambdas.records import Consumer
from runner.local import embedded
from runner.wire import codec
from tests import emf_check, support
from tests.integration.test_consumer import Context, record, shared_app, shared_stack


@pytest.fixture
def attached(
    moto_server: embedded.MotoServer, monkeypatch: pytest.MonkeyPatch
) -> embedded.LocalResources:
    """The stack the session's app is attached to, in this process's environment (as Lambda's)."""
    stack = shared_stack(moto_server)
    for name, value in stack.env().items():
        monkeypatch.setenv(name, value)
    return stack


@pytest.fixture
def consumer_of(
    attached: embedded.LocalResources, make_stack: Callable[..., embedded.LocalResources]
) -> Callable[..., tuple[Consumer, embedded.LocalResources]]:
    """Factory: a consumer of a queue of its own, with ``settings`` on top."""

    def create(**settings: Any) -> tuple[Consumer, embedded.LocalResources]:
        own = make_stack(visibility_timeout=60)
        loaded = ConsumerSettings(
            queue_url=own.queue_url, dlq_url=own.dlq_url, results_bucket=attached.bucket, **settings
        )
        sqs, _ = support.clients(attached)
        return Consumer(shared_app(attached), loaded, sqs=sqs), own

    return create


def test_a_batch_writes_emf_lines_counting_success_failure_retry_revoke_and_dead_letters(
    attached: embedded.LocalResources,
    consumer_of: Callable[..., tuple[Consumer, embedded.LocalResources]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    # GIVEN a consumer writing EMF metrics, on a queue of its own
    stack, app = attached, shared_app(attached)
    consumer, own = consumer_of(metrics="emf", stack_name="lambda-metrics")
    queue = own.queue_url.rsplit("/", 1)[1]

    def body(name: str, *args: Any, task_id: str | None = None) -> str:
        return codec.encode(name, args, {}, queue=queue, task_id=task_id or str(uuid.uuid4()))

    # AND a batch: a success, a failure, a retry, a revoked job, an unknown task, and a body
    # that is no task message; each sent 1.5 s ago
    revoked_id = str(uuid.uuid4())
    app.control.revoke(revoked_id)
    bodies = [
        body("tasks.imports.import_records", [], stack.bucket, "metrics"),
        body("tasks.reports.summarize_csv", stack.bucket, "no/such.csv"),
        body("tasks.uploads.publish_upload", stack.bucket, "later.bin"),
        body("tasks.imports.import_records", [], stack.bucket, "x", task_id=revoked_id),
        body("tasks.nope.missing", 1),
        "not a task message",
    ]
    sent = str(int((time.time() - 1.5) * 1000))
    records = [record(b, own) for b in bodies]
    for item in records:
        item["attributes"] = {**item["attributes"], "SentTimestamp": sent}
    capsys.readouterr()
    # WHEN the handler runs the batch
    assert consumer.handle({"Records": records}, Context(60_000)) == {"batchItemFailures": []}
    # THEN it wrote valid EMF lines for the stack's jobs queue
    lines = [line for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    assert lines
    assert {(emf_check.check(x)["Stack"], emf_check.check(x)["Queue"]) for x in lines} == {
        ("lambda-metrics", "jobs")
    }

    def totals(task: str) -> dict[str, int]:
        summed = emf_check.totals(lines, Task=task)
        return {name: summed[name] for name in metrics.METRIC_NAMES if summed[name]}

    # AND their counts are the batch's
    ran = {"Runtime": 1, "QueueWait": 1}
    assert totals("tasks.imports.import_records") == {
        "Received": 2, "Started": 1, "Succeeded": 1, "Revoked": 1, **ran,
    }  # fmt: skip
    assert totals("tasks.reports.summarize_csv") == {
        "Received": 1, "Started": 1, "Failed": 1, "DeadLettered": 1, **ran,
    }  # fmt: skip
    assert totals("tasks.uploads.publish_upload") == {
        "Received": 1, "Started": 1, "Retried": 1, **ran,
    }  # fmt: skip
    assert totals(metrics.UNKNOWN_TASK) == {"DeadLettered": 2}
    # AND the waits run from the messages' SentTimestamp
    waits = [v for x in lines for v in emf_check.check(x).get(metrics.QUEUE_WAIT, [])]
    assert len(waits) == 3 and all(1_400 <= v < 60_000 for v in waits), waits


def test_without_metrics_a_batch_writes_no_emf_line(
    consumer_of: Callable[..., tuple[Consumer, embedded.LocalResources]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    consumer, own = consumer_of()
    body = codec.encode("tasks.nope.missing", (1,), {}, queue=own.queue_url.rsplit("/", 1)[1])
    capsys.readouterr()
    assert consumer.handle({"Records": [record(body, own)]}, Context(60_000))
    assert '"_aws"' not in capsys.readouterr().out


def test_a_bad_metrics_value_fails_the_cold_start_naming_the_variable(
    attached: embedded.LocalResources, monkeypatch: pytest.MonkeyPatch
) -> None:
    from runner.lambdas import consumer as entry

    monkeypatch.setenv("GALLEY_METRICS", "on")
    monkeypatch.setattr(entry, "_consumer", None)
    with pytest.raises(SettingsError) as error:
        entry.handler({"Records": []}, Context(60_000))
    assert "GALLEY_METRICS: Input should be 'emf' or 'off' (got 'on')" in str(error.value)
