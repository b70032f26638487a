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


class _Unprintable:
    """An object whose str and repr raise, as a broken third-party type's may."""

    def __str__(self) -> str:
        raise RuntimeError("no str")

    def __repr__(self) -> str:
        raise RuntimeError("no repr")


@pytest.mark.parametrize(("message", "args"), [(_Unprintable(), ()), ("got %s", (_Unprintable(),))])
def test_a_message_or_argument_that_cannot_be_printed_is_one_json_line(
    logged: tuple[logging.Logger, io.StringIO],
    capsys: pytest.CaptureFixture[str],
    message: object,
    args: tuple[object, ...],
) -> None:
    # GIVEN JSON logs, WHEN a library logs an object whose str (and repr) raise
    logger, stream = logged
    logger.warning(message, *args)
    # THEN one JSON line names it, and logging prints no traceback of its own error
    (line,) = stream.getvalue().splitlines()
    assert "_Unprintable" in json.loads(line)["message"]
    assert capsys.readouterr().err == ""


def test_a_message_with_lone_surrogates_is_utf8_json(
    logged: tuple[logging.Logger, io.StringIO],
) -> None:
    # GIVEN JSON logs, WHEN a task logs text holding a lone surrogate (JSON input can: "\ud800")
    logger, stream = logged
    logger.warning("got %s", "a\udcffb")
    # THEN the line encodes as UTF-8 (a log file or a strict stream refuses it otherwise) and
    # reads back as the same text
    line = stream.getvalue().rstrip("\n")
    assert json.loads(line.encode("utf-8"))["message"] == "got a\udcffb"


def test_a_stack_asked_for_is_in_the_line(logged: tuple[logging.Logger, io.StringIO]) -> None:
    # GIVEN JSON logs, WHEN a library logs with stack_info=True
    logger, stream = logged
    logger.warning("where am I", stack_info=True)
    # THEN the stack is a field of the one line, not dropped
    (line,) = stream.getvalue().splitlines()
    assert "test_a_stack_asked_for_is_in_the_line" in json.loads(line)["stack"]
