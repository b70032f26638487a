"""GALLEY_METRICS=emf on a real prefork worker: the EMF lines it writes count what its jobs did."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from celery.result import AsyncResult

from runner.core import metrics
from runner.local import embedded
from runner.local.process import Child, wait_for
from tests import emf_check, support

pytestmark = pytest.mark.e2e

ENV = {
    "GALLEY_TASK_MODULES": "tests.e2e.metrics_tasks",
    "GALLEY_METRICS": "emf",
    "GALLEY_STACK_NAME": "e2e-metrics",
}


def emf_lines(worker: Child) -> list[str]:
    assert worker.log_path is not None
    text = worker.log_path.read_text(errors="replace")
    return [line for line in text.splitlines() if line.startswith("{") and '"_aws"' in line]


def test_a_worker_s_emf_lines_count_success_failure_retry_revoke_and_dead_letters(
    stack: embedded.LocalResources,
    worker: Callable[..., Child],
    app_for: Callable[[embedded.LocalResources], Any],
) -> None:
    # GIVEN a job revoked before any worker runs, then a prefork worker writing EMF metrics
    client = app_for(stack)
    revoked_id = str(uuid.uuid4())
    client.control.revoke(revoked_id)
    child = worker(stack, **ENV)
    # WHEN two jobs succeed, one fails, one retries once and succeeds, the revoked one arrives,
    # and a message names a task nobody registered
    ok = [client.send_task("metrics.ok") for _ in range(2)]
    bad = client.send_task("metrics.fail")
    flaky = client.send_task("metrics.flaky", args=[1])
    client.send_task("metrics.ok", task_id=revoked_id)
    client.send_task("metrics.not_registered")
    assert [r.get(timeout=60) for r in ok] == [1, 1] and flaky.get(timeout=60) == 1
    with pytest.raises(ValueError, match="on purpose"):
        bad.get(timeout=60, propagate=True)
    wait_for(
        lambda: (
            support.queue_depth(stack, stack.queue_url) == 0
            and support.queue_depth(stack, stack.dlq_url) == 2
        ),
        timeout=60,
        what="every message settled, two dead-lettered",
    )
    assert AsyncResult(revoked_id, app=client).state == "REVOKED"
    # AND the worker stops (its last interval is written as it stops)
    assert child.stop(grace=30) == 0
    # THEN its stdout holds valid EMF lines of the stack's jobs queue
    lines = emf_lines(child)
    assert lines
    assert all(emf_check.check(line)["Stack"] == "e2e-metrics" for line in lines)
    assert {emf_check.check(line)["Queue"] for line in lines} == {"jobs"}

    def totals(task: str) -> dict[str, int]:
        summed = emf_check.totals(lines, Task=task)
        return {name: summed[name] for name in metrics.METRIC_NAMES if summed[name]}

    # AND their counts are the jobs'
    assert totals("metrics.ok") == {
        "Received": 3, "Started": 2, "Succeeded": 2, "Revoked": 1, "Runtime": 2, "QueueWait": 2,
    }  # fmt: skip
    assert totals("metrics.fail") == {
        "Received": 1, "Started": 1, "Failed": 1, "DeadLettered": 1, "Runtime": 1, "QueueWait": 1,
    }  # fmt: skip
    assert totals("metrics.flaky") == {
        "Received": 2, "Started": 2, "Retried": 1, "Succeeded": 1, "Runtime": 2, "QueueWait": 2,
    }  # fmt: skip
    assert totals(metrics.UNKNOWN_TASK) == {"DeadLettered": 1}
    # AND the times are the runs': waits from the messages' SentTimestamp (some ms at least)
    waits = [v for line in lines for v in emf_check.check(line).get(metrics.QUEUE_WAIT, [])]
    runtimes = [v for line in lines for v in emf_check.check(line).get(metrics.RUNTIME, [])]
    assert all(0 <= v < 60_000 for v in waits + runtimes)
    assert sum(waits) > 0 and all(v > 0 for v in runtimes)


def test_a_bad_metrics_value_stops_the_worker_at_start_naming_the_variable(
    stack: embedded.LocalResources,
) -> None:
    env = {**support.attached_env(stack), "GALLEY_METRICS": "cloudwatch"}
    argv = [sys.executable, "-m", "celery", "-A", "runner.app", "worker", "--pool", "solo"]
    result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "GALLEY_METRICS: Input should be 'emf' or 'off' (got 'cloudwatch')" in result.stderr
    assert "Traceback" not in result.stderr
