from __future__ import annotations

from datetime import UTC, datetime

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
