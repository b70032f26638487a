from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runner.errors import JobError
from runner.runtime import jobs
from runner.runtime.jobs import parse_json_args


def test_args_and_kwargs_parse() -> None:
    assert parse_json_args('["a", 1]', '{"n": 2}') == (["a", 1], {"n": 2})
    assert parse_json_args(None, None) == ([], {})


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        ("[1,", None, "--args is not valid JSON"),
        ('{"a": 1}', None, "--args must be a JSON array"),
        (None, "[1]", "--kwargs must be a JSON object"),
        (None, "{'single': 'quotes'}", "--kwargs is not valid JSON"),
    ],
)
def test_bad_json_names_the_option(args: str | None, kwargs: str | None, message: str) -> None:
    with pytest.raises(JobError, match=message):
        parse_json_args(args, kwargs)


# --- --countdown / --eta ---


@given(st.none() | st.floats(0, 604800), st.none() | st.text(max_size=40))
def test_timing_is_an_option_or_a_clear_error(countdown: float | None, eta: str | None) -> None:
    try:
        timing = jobs.parse_timing(countdown, eta)
    except JobError as error:
        assert str(error).startswith(("give --countdown or --eta", "--eta: "))
        return
    if eta is not None:
        assert timing["eta"].tzinfo is not None
    else:
        assert timing == ({} if countdown is None else {"countdown": countdown})


def test_an_eta_without_offset_is_utc() -> None:
    assert jobs.parse_timing(None, "2026-12-01T09:00:00") == {
        "eta": datetime(2026, 12, 1, 9, tzinfo=UTC)
    }
    with pytest.raises(JobError, match="--eta: 'tomorrow' is not an ISO 8601 date and time"):
        jobs.parse_timing(None, "tomorrow")


def test_submit_leaves_a_task_its_own_queue_unless_told() -> None:
    # GIVEN a task declared on the long queue, and what apply_async is given
    from runner.core.settings import WorkerSettings
    from runner.runtime.app import create_app

    app = create_app(
        WorkerSettings(queue_url="https://sqs.us-east-1.amazonaws.com/1/jobs", results_bucket="bkt")
    )

    @app.task(name="tests.jobs.declared_long", queue="long", shared=False)
    def declared_long() -> None: ...

    given: list[dict[str, Any]] = []
    declared_long.apply_async = lambda **options: given.append(options) or SimpleNamespace(id="i")
    # WHEN `galley enqueue` sends it without --queue, and with --queue jobs
    jobs.submit(app, "tests.jobs.declared_long", [], {}, queue=None, countdown=None)
    jobs.submit(app, "tests.jobs.declared_long", [], {}, queue="jobs")
    # THEN an option not given is not passed (queue=None would override the task's own queue)
    assert given == [{"args": [], "kwargs": {}}, {"args": [], "kwargs": {}, "queue": "jobs"}]


@pytest.mark.parametrize("eta", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"])
def test_an_eta_utc_cannot_hold_is_refused(eta: str) -> None:
    # found by the review: accepted, then dead-lettered by the worker (OverflowError)
    with pytest.raises(JobError, match="--eta: .* is out of range"):
        jobs.parse_timing(None, eta)
