"""`galley status` on any arguments and settings: a status or one line, never a traceback."""

from __future__ import annotations

import os
from unittest import mock

import boto3
from click.testing import CliRunner
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from runner.cli.main import main

TEXT = st.text(
    st.characters(codec="utf-8", exclude_categories=["Cs"], exclude_characters="\x00"), max_size=40
)
QUEUE_URLS = st.one_of(
    TEXT,
    st.sampled_from(["", "https://sqs.us-east-1.amazonaws.com/123456789012/q"]),
    st.builds(lambda name: f"https://sqs.us-east-1.amazonaws.com/123456789012/{name}", TEXT),
)
ENV = st.fixed_dictionaries(
    {},
    optional={
        "GALLEY_QUEUE_URL": QUEUE_URLS,
        "GALLEY_LONG_QUEUE_URL": QUEUE_URLS,
        "GALLEY_DLQ_URL": QUEUE_URLS,
        "GALLEY_LONG_DLQ_URL": QUEUE_URLS,
        "GALLEY_RESULTS_BUCKET": TEXT,
        "AWS_REGION": st.one_of(TEXT, st.just("eu-west-1")),
        "AWS_ENDPOINT_URL": st.one_of(TEXT, st.just("ftp://x")),
    },
)
ARGS = st.lists(
    st.one_of(
        st.sampled_from(["--json", "--stack", "--failures", "--help", "-x", "0", "101", "-1"]),
        TEXT,
    ),
    max_size=5,
)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(args=ARGS, env=ENV)
# found by the property: moto answered a stack name with a control character with a body botocore
# could not parse (ResponseParserError, which is no BotoCoreError)
@example(args=["--stack", "0\x1f"], env={})
def test_status_never_prints_a_traceback(
    moto_in_process: None, args: list[str], env: dict[str, str]
) -> None:
    # GIVEN AWS mocked in this process, with one queue the settings may name
    boto3.client("sqs", region_name="us-east-1").create_queue(QueueName="q")
    clean = {k: v for k, v in os.environ.items() if not k.startswith("GALLEY_")}
    # WHEN `galley status` runs with any arguments and settings
    with mock.patch.dict(os.environ, {**clean, **env}, clear=True):
        result = CliRunner().invoke(main, ["status", *args])
    # THEN a status, a usage error or one-line error: never an exception out of the command
    assert result.exit_code in (0, 1, 2), result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception
    )
    assert "Traceback" not in result.output


def test_status_lines_show_control_characters_as_escapes() -> None:
    # GIVEN a status whose worker registry and dead letters hold terminal escapes and line
    # breaks (a dead letter's task name and id are whatever its producer sent)
    from datetime import UTC, datetime

    from runner.cli import status as cli
    from runner.ops import status as ops

    hostile = "x\x1b[2J\x07\ny\u2028z"
    worker = {
        "host": hostile, "pid": 7, "queue": hostile, "state": "running", "concurrency": 2,
        "waiting": 0, "totals": {"succeeded": 1, "failed": 0, "retried": 0}, "started": 0.0,
        "version": hostile, "running": [{"task": hostile, "id": hostile, "started": None}],
    }  # fmt: skip
    failure = {
        "failed_at": None, "task": hostile, "task_id": hostile, "message_id": "m",
        "queue": "jobs", "reason": hostile,
    }  # fmt: skip
    report = ops.Status(
        source="environment",
        bucket="b",
        queues=[],
        failures=[failure],
        workers={"registry": {"workers": [worker], "gone": 0, "notes": [hostile]}},
        at=datetime.fromtimestamp(100.0, UTC),
    )
    # WHEN it is printed as text
    lines = cli.lines(report)
    # THEN no control character reaches the terminal and each line stays one line
    text = "\n".join(lines)
    assert not any(c in text for c in "\x1b\x07\u2028"), text
    assert all(len(line.splitlines()) == 1 for line in lines)
