"""GALLEY_LOG_FORMAT=json: a real worker writes nothing but JSON lines, task lines with fields."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest

from runner.local import embedded
from runner.local.process import Child
from tests import support

pytestmark = pytest.mark.e2e

TASKS = {"GALLEY_TASK_MODULES": "tests.e2e.reliability_tasks", "GALLEY_LOG_FORMAT": "json"}


def test_a_json_worker_writes_only_json_lines(
    stack: embedded.LocalResources,
    worker: Callable[..., Child],
    app_for: Callable[[embedded.LocalResources], Any],
) -> None:
    # GIVEN a prefork worker with JSON logs
    child = worker(stack, **TASKS)
    client = app_for(stack)
    # WHEN a job succeeds and another fails, and the worker stops
    ok = client.send_task("reliability.stamp", args=[stack.bucket, "json-logs"])
    bad = client.send_task("reliability.fail", args=["on purpose"])
    ok.get(timeout=60)
    with pytest.raises(Exception, match="on purpose"):
        bad.get(timeout=60, propagate=True)
    assert child.stop(grace=30) == 0
    # THEN every line of its stdout and stderr is a JSON object
    assert child.log_path is not None
    text = child.log_path.read_text()
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]
    assert all(isinstance(line, dict) for line in lines)
    assert all({"time", "level", "logger", "message"} <= set(line) for line in lines)
    # AND each job's lines carry its id, its state, and for the end of its run a duration and
    # the delivery's receive count
    ends = {
        line["task_id"]: line
        for line in lines
        if line.get("duration") is not None and "receive_count" in line
    }
    assert ends[ok.id]["state"] == "SUCCESS"
    assert ends[ok.id]["task"] == "reliability.stamp"
    assert ends[ok.id]["receive_count"] == 1
    assert ends[bad.id]["state"] == "FAILURE"
    failed = [line for line in lines if line.get("task_id") == bad.id and "exception" in line]
    assert failed and "on purpose" in failed[0]["exception"]
    assert any(line["message"].startswith("worker: Warm shutdown") for line in lines)


def test_a_bad_log_format_is_refused_at_start(stack: embedded.LocalResources) -> None:
    env = {**support.attached_env(stack), "GALLEY_LOG_FORMAT": "xml"}
    argv = [sys.executable, "-m", "celery", "-A", "runner.app", "worker", "--pool", "solo"]
    result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "GALLEY_LOG_FORMAT: Input should be 'text' or 'json' (got 'xml')" in result.stderr
    assert "Traceback" not in result.stderr
