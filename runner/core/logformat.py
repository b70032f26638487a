"""``GALLEY_LOG_FORMAT=json``: one JSON object per log line, what CloudWatch Logs Insights reads.

Every line has ``time`` (UTC, ISO 8601), ``level``, ``logger``, ``message`` and ``pid``; an
exception's traceback is the ``exception`` field of the same line, never lines of its own. A line
logged while a task runs, or about a task, also has ``task``, ``task_id``, ``receive_count``
(SQS's ApproximateReceiveCount of the delivery) and, where they are known, ``state`` and
``duration`` (seconds): runner.runtime.tasklogs sets them from Celery's task signals and trace
lines. Plain text (Celery's own format) stays the default. No Celery import: the Lambda consumer
and the worker share it.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

TEXT = "text"
JSON = "json"

#: The task the current thread runs: ``task``, ``task_id``, ``receive_count``.
current_task: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "galley_current_task", default=None
)
#: Set on a record (``extra={FIELDS: {...}}``): fields that go into its JSON object.
FIELDS = "galley_fields"


class JsonFormatter(logging.Formatter):
    """A record as one line of JSON; values JSON cannot hold are written as their repr."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": _message(record),
            "pid": record.process,
        }
        running = current_task.get()
        if running:
            line.update(running)
        line.update(getattr(record, FIELDS, None) or {})
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exception"] = record.exc_text
        if record.stack_info:  # stack_info=True: logging's own format appends it
            line["stack"] = record.stack_info
        text = json.dumps(line, default=_repr, ensure_ascii=False)
        # json escapes the ASCII controls; these line breaks too, or a reader splitting lines
        # as Python does (str.splitlines) gets pieces that are not JSON; and lone surrogates
        # (text from JSON input may hold them), which no UTF-8 stream or log file can write
        return _SURROGATES.sub(_escape, text.translate(_LINE_BREAKS))


#: Line breaks beyond ASCII's, as JSON escapes (they can only be inside strings).
_LINE_BREAKS = {ord(c): f"\\u{ord(c):04x}" for c in "\x85\u2028\u2029"}
_SURROGATES = re.compile("[\ud800-\udfff]")


def _escape(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


def _repr(value: Any) -> str:
    """``repr(value)``, or its type's name when that raises (logging would print a traceback)."""
    try:
        return repr(value)
    except Exception as error:
        return f"<{type(value).__name__}: repr failed: {type(error).__name__}>"


def _message(record: logging.LogRecord) -> str:
    """The record's message; a format its arguments do not fit is said in the line (logging
    would print a traceback of many lines instead)."""
    try:
        return record.getMessage()
    except Exception as error:
        return (
            f"{_text(record.msg)} (arguments {_arguments(record.args)}: {type(error).__name__}: "
            f"{_text(error)})"
        )


def _arguments(args: Any) -> str:
    if isinstance(args, tuple):
        return "(" + ", ".join(_repr(arg) for arg in args) + ")"
    return _repr(args)


def _text(value: Any) -> str:
    """``str(value)``, or its repr (or type) when that raises."""
    try:
        return str(value)
    except Exception:
        return _repr(value)


def use_json(logger: logging.Logger) -> None:
    """Every handler of ``logger`` writes JSON lines; a logger without one gets a stderr
    handler (the Lambda runtime has its own on the root logger; a test has none)."""
    if not logger.handlers:
        logger.addHandler(logging.StreamHandler(sys.stderr))
    for handler in logger.handlers:
        handler.setFormatter(JsonFormatter())
