from __future__ import annotations

import pytest

from runner.errors import JobError
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
