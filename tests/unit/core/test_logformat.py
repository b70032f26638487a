"""GALLEY_LOG_FORMAT=json: whatever a task logs is one JSON object on one line."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from runner.core import logformat


@pytest.fixture
def logged() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logformat.JsonFormatter())
    logger = logging.Logger("tests.logformat")  # no parent: only this handler sees its lines
    logger.addHandler(handler)
    yield logger, stream


@pytest.mark.parametrize("text", ["a\u2028b", "a\u2029b", "a\x85b", "a\nb\r\x1cc"])
def test_a_message_with_a_line_break_of_any_kind_is_one_line(
    logged: tuple[logging.Logger, io.StringIO], text: str
) -> None:
    # GIVEN JSON logs, WHEN a task logs text holding a line break (Unicode has several)
    logger, stream = logged
    logger.warning("got %s", text)
    # THEN it is one JSON line, however lines are split (str.splitlines splits on all of them)
    (line,) = stream.getvalue().splitlines()
    assert json.loads(line)["message"] == f"got {text}"


def test_a_log_call_whose_arguments_do_not_fit_its_format_is_one_json_line(
    logged: tuple[logging.Logger, io.StringIO], capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN JSON logs, WHEN a task's log call has fewer arguments than its format asks for
    logger, stream = logged
    logger.warning("copied %s of %s", 3)
    # THEN one JSON line says so, and nothing else is written (logging's own handler of the
    # error prints a traceback of many lines to stderr)
    (line,) = stream.getvalue().splitlines()
    message = json.loads(line)["message"]
    assert message.startswith("copied %s of %s") and "3" in message
    assert capsys.readouterr().err == ""
