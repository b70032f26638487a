"""The worker's start-up checks wait out a network blip, and refuse a real problem at once."""

from __future__ import annotations

from typing import Any

import pytest

from runner.core.settings import WorkerSettings
from runner.errors import SettingsError
from runner.ops import checks
from runner.worker import startup

SETTINGS = WorkerSettings(
    queue_url="https://sqs.eu-west-1.amazonaws.com/123456789012/galley-jobs",
    results_bucket="galley-results",
    region="eu-west-1",
)
RESOLVED = checks.Resolved(visibility_timeout=120, dlq_url=None)
BLIP = checks.Problem("AWS_ENDPOINT_URL", "cannot reach http://127.0.0.1:9 (connection refused)")


def answers(*replies: list[checks.Problem], monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []

    def worker_problems(*_: Any) -> tuple[list[checks.Problem], checks.Resolved]:
        calls.append(1)
        return replies[min(len(calls), len(replies)) - 1], RESOLVED

    monkeypatch.setattr(checks, "worker_problems", worker_problems)
    monkeypatch.setattr(startup.time, "sleep", lambda seconds: None)
    return calls


def test_a_network_blip_at_start_is_waited_out(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN AWS that cannot be reached twice, then can
    calls = answers([BLIP], [BLIP], [], monkeypatch=monkeypatch)
    # WHEN the worker starts THEN it starts, with the queue's visibility timeout
    assert startup.resolve(SETTINGS, None, None).visibility_timeout == 120
    assert len(calls) == 3


def test_a_5xx_at_start_is_waited_out(monkeypatch: pytest.MonkeyPatch) -> None:
    """Seen in a chaos run: a replacement worker refused to start on one injected 500."""
    five_hundred = checks.Problem(
        "GALLEY_QUEUE_URL",
        "cannot read queue http://q: An error occurred (InternalError) when calling the "
        "GetQueueAttributes operation (reached max retries: 2): InternalError",
    )
    calls = answers([five_hundred], [], monkeypatch=monkeypatch)
    assert startup.resolve(SETTINGS, None, None).visibility_timeout == 120
    assert len(calls) == 2


def test_a_real_problem_is_refused_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    missing = checks.Problem("GALLEY_QUEUE_URL", "queue x does not exist")
    calls = answers([missing], monkeypatch=monkeypatch)
    with pytest.raises(SettingsError, match="GALLEY_QUEUE_URL: queue x does not exist"):
        startup.resolve(SETTINGS, None, None)
    assert len(calls) == 1


def test_an_endpoint_that_never_answers_is_refused_after_the_patience(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    answers([BLIP], monkeypatch=monkeypatch)
    with pytest.raises(SettingsError, match="AWS_ENDPOINT_URL: cannot reach"):
        startup.resolve(SETTINGS, None, None, patience=0.0)
