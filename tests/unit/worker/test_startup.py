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


# --- the queue a worker consumes: celery worker -Q ---


@pytest.mark.parametrize(
    ("selected", "role"),
    [
        (None, "jobs"),
        ([], "jobs"),
        ("long", "long"),
        (["jobs"], "jobs"),
    ],
)
def test_the_consumed_queue_is_the_one_named_by_dash_q(selected: Any, role: str) -> None:
    assert startup.consumed_queue(selected) == role


@pytest.mark.parametrize(
    ("selected", "message"),
    [
        ("jobs,long", "-Q jobs,long: a worker consumes one queue"),
        (["long", "jobs"], "-Q long,jobs: a worker consumes one queue"),
        (
            "galley-prod-long-jobs",
            "-Q/-X: unknown queue 'galley-prod-long-jobs': the stack's queues are jobs, long",
        ),
        # found by the review: each ended in Celery's traceback (ImproperlyConfigured)
        ("", "-Q/-X: unknown queue ''"),
        (" long", "-Q/-X: unknown queue ' long'"),
        ("long,", "-Q long,: a worker consumes one queue"),
    ],
)
def test_a_worker_on_two_queues_or_an_unknown_one_is_refused(selected: Any, message: str) -> None:
    with pytest.raises(SettingsError) as refused:
        startup.consumed_queue(selected)
    assert str(refused.value).startswith(message)


class FakeApp:
    def __init__(self) -> None:
        self.galley_settings = SETTINGS
        self.reconfigured: list[tuple[WorkerSettings, str]] = []

    def galley_reconfigure(self, settings: WorkerSettings, consume: str) -> None:
        self.reconfigured.append((settings, consume))


def test_a_worker_without_dash_q_is_checked_and_consumes_the_jobs_queue(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN the checks pass, and `celery worker` was started without -Q (Celery passes None)
    answers([], monkeypatch=monkeypatch)
    monkeypatch.setattr(checks, "clients", lambda settings: (None, None))
    app = FakeApp()
    instance = type("Worker", (), {"app": app, "time_limit": None})()
    # WHEN its start-up hook runs
    startup._check_at_start(instance=instance, options={"queues": None})
    # THEN the app is reconfigured for the jobs queue, with what the checks resolved
    assert [(s.visibility_timeout, consume) for s, consume in app.reconfigured] == [(120, "jobs")]


def test_an_unexpected_error_in_the_checks_refuses_the_start(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN the checks themselves break (Celery's signal dispatch would swallow the error, and
    # the worker would start unchecked)
    def broken(*_: Any) -> Any:
        raise TypeError("'NoneType' object is not iterable")

    monkeypatch.setattr(checks, "worker_problems", broken)
    monkeypatch.setattr(checks, "clients", lambda settings: (None, None))
    instance = type("Worker", (), {"app": FakeApp(), "time_limit": None})()
    # WHEN the start-up hook runs, THEN the worker exits 1 with one line saying why
    with pytest.raises(SystemExit) as exited:
        startup._check_at_start(instance=instance, options={})
    assert exited.value.code == 1
    assert capsys.readouterr().err == (
        "Error: the start-up checks failed: TypeError: 'NoneType' object is not iterable\n"
    )


def test_excluding_the_consumed_queue_is_refused() -> None:
    # found by the review: `-X jobs` started a worker that said ready and consumed nothing
    with pytest.raises(SettingsError, match="-X jobs: excludes the jobs queue"):
        startup.consumed_queue(None, "jobs")
    assert startup.consumed_queue("long", "jobs") == "long"
