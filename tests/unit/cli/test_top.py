"""`galley top`: any arguments end in a frame or one line, never a traceback; what a frame says."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from unittest import mock

import boto3
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runner.cli import top as cli
from runner.cli.main import main
from runner.ops import registry, status, top

TEXT = st.text(
    st.characters(codec="utf-8", exclude_categories=["Cs"], exclude_characters="\x00"), max_size=30
)
ARGS = st.lists(
    st.one_of(
        st.sampled_from(
            [
                "--once",
                "--interval",
                "--stack",
                "--help",
                "0",
                "0.1",
                "0.5",
                "2",
                "-1",
                "nan",
                "inf",
                "1e9",
                "-x",
            ]
        ),  # fmt: skip
        TEXT,
    ),
    max_size=5,
)
ENV = st.fixed_dictionaries(
    {},
    optional={
        "GALLEY_QUEUE_URL": st.sampled_from(
            ["", "https://sqs.us-east-1.amazonaws.com/123456789012/q", "nonsense"]
        ),
        "GALLEY_RESULTS_BUCKET": st.one_of(TEXT, st.just("b-top")),
    },
)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(args=ARGS, env=ENV)
def test_top_never_prints_a_traceback(
    moto_in_process: None, args: list[str], env: dict[str, str]
) -> None:
    # GIVEN AWS mocked in this process, with the queue and bucket the settings may name
    boto3.client("sqs", region_name="us-east-1").create_queue(QueueName="q")
    boto3.client("s3", region_name="us-east-1").create_bucket(Bucket="b-top")
    clean = {k: v for k, v in os.environ.items() if not k.startswith("GALLEY_")}

    def interrupted(seconds: float) -> None:  # a person presses Ctrl-C at the first pause
        raise KeyboardInterrupt

    # WHEN `galley top` runs with any arguments and settings
    with (
        mock.patch.dict(os.environ, {**clean, **env}, clear=True),
        mock.patch.object(cli.time, "sleep", interrupted),
    ):
        result = CliRunner().invoke(main, ["top", *args])
    # THEN frames, a usage error or one line: never an exception out of the command
    assert result.exit_code in (0, 1, 2), result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception
    )
    assert "Traceback" not in result.output
    if result.exit_code == 1:  # settings errors list each variable on a line of its own
        assert result.output.startswith("Error: ")


@pytest.mark.parametrize(
    ("meta", "expected"),
    [
        ({"status": "PROGRESS", "result": {"done": 3, "total": 12}}, top.Progress(3, 12)),
        ({"status": "PROGRESS", "result": {"current": 1, "total": 4}}, top.Progress(1, 4)),
        ({"status": "PROGRESS", "result": {"done": 3, "total": 0}}, None),
        ({"status": "PROGRESS", "result": {"done": True, "total": 2}}, None),
        ({"status": "PROGRESS", "result": {"done": 1, "total": float("inf")}}, None),
        ({"status": "PROGRESS", "result": [1, 2]}, None),
        ({"status": "SUCCESS", "result": {"done": 1, "total": 2}}, None),
        ("PROGRESS", None),
    ],
)
def test_progress_is_read_from_a_result_object(meta: object, expected: object) -> None:
    assert top.progress_of(meta) == expected


def worker_entry(at: float, succeeded: int) -> registry.Entry:
    return registry.Entry(
        host="ip-10-0-1-5", pid=7, version="0.1.0", started=at - 100, at=at, interval=15,
        concurrency=2, queue="jobs", state="running",
        running=[registry.Running("job-1", "tasks.imports.import_records", at - 30)], waiting=0,
        totals={"succeeded": succeeded, "failed": 1, "retried": 0},
        tasks={"tasks.imports.import_records": {"succeeded": succeeded, "failed": 1, "retried": 0}},
    )  # fmt: skip


def test_a_frame_as_plain_lines() -> None:
    # GIVEN a frame with a worker running a job at 25 %
    at = 1_800_000_000.0
    frame = top.Frame(
        source="environment",
        bucket="b",
        at=datetime.fromtimestamp(at, UTC),
        queues=[status.QueueStatus("jobs", "queue", "u", 3, 1, 0)],
        registry=registry.Listing([worker_entry(at, 9)], gone=1),
        jobs=[
            top.Job(
                "ip-10-0-1-5:7", "job-1", "tasks.imports.import_records", 30.0, top.Progress(5, 20)
            )
        ],  # fmt: skip
        rate=1.5,
        tasks=top.per_task([worker_entry(at, 9)]),
    )
    # WHEN it is printed plain
    lines = cli.plain_lines(frame, 2.0)
    # THEN a header with jobs/s, the tables, and a text bar
    assert lines[0].endswith("every 2s; 1.50 jobs/s")
    assert any(line.split() == ["jobs", "3", "1", "0"] for line in lines)
    assert (
        "ip-10-0-1-5:7  jobs   running  1/2   0        9   1       0        1m40s  0.1.0" in lines
    )
    assert "(1 stopped or gone)" in lines
    assert any(
        line.split() == ["tasks.imports.import_records", "1", "9", "1", "0"] for line in lines
    )
    assert lines[-1].endswith("30s  [#####---------------] 5/20 (25%)")


def test_jobs_a_second_comes_from_the_totals_between_entries() -> None:
    # GIVEN a watch whose registry shows a worker finishing 30 jobs in 15 s
    watch = top.Watch(status.Target("t", {}, {}, bucket="b"), lambda service: None)
    # WHEN the same entry is seen twice, then a newer one
    assert watch._rate([worker_entry(100.0, 10)], now=101.0) is None
    assert watch._rate([worker_entry(100.0, 10)], now=103.0) is None
    rate = watch._rate([worker_entry(115.0, 40)], now=116.0)
    # THEN jobs a second is the finished jobs over the entries' own timestamps
    assert rate == pytest.approx(2.0)


@pytest.mark.parametrize("text", ["[/]", "[bold]x[/bold]", "[link=https://example.com]id"])
def test_the_screen_shows_registry_text_as_it_is_not_as_markup(text: str) -> None:
    # GIVEN a frame whose worker, task and job id hold what rich reads as markup (a job id
    # is whatever its producer chose; a registry entry is any text in the bucket)
    from io import StringIO

    from rich.console import Console

    at = 1_800_000_000.0
    entry = registry.Entry(
        host=text, pid=7, version=text, started=at - 100, at=at, interval=15, concurrency=2,
        queue="jobs", state="running", running=[registry.Running(text, text, at - 30)],
        waiting=0, totals={"succeeded": 1, "failed": 0, "retried": 0},
    )  # fmt: skip
    frame = top.Frame(
        source="environment",
        bucket="b",
        at=datetime.fromtimestamp(at, UTC),
        queues=[status.QueueStatus("jobs", "queue", "u", 3, 1, 0)],
        registry=registry.Listing([entry]),
        jobs=[top.Job(entry.name, text, text, 30.0)],
        tasks=top.per_task([entry]),
        rate=None,
    )
    # WHEN it is drawn on a terminal (on main: rich.errors.MarkupError for "[/]")
    out = StringIO()
    Console(file=out, width=300, color_system=None).print(cli.screen(frame, 2.0))
    # THEN the text is shown as it is
    assert f"{text}:7" in out.getvalue()
    assert out.getvalue().count(text) >= 4


#: What a job id, task name, host or S3 key may hold that a terminal would act on: an escape
#: that clears the screen, line breaks, a bell.
HOSTILE = "x\x1b[2J\x1b]0;owned\x07\ny\u2028z\rw"


def hostile_frame() -> top.Frame:
    at = 1_800_000_000.0
    entry = registry.Entry(
        host=HOSTILE, pid=7, version=HOSTILE, started=at - 100, at=at, interval=15,
        concurrency=2, queue=HOSTILE, state="running",
        running=[registry.Running(HOSTILE, HOSTILE, at - 30)], waiting=0,
        totals={"succeeded": 1, "failed": 0, "retried": 0},
    )  # fmt: skip
    return top.Frame(
        source="environment",
        bucket="b",
        at=datetime.fromtimestamp(at, UTC),
        queues=[status.QueueStatus("jobs", "queue", "u", 3, 1, 0)],
        registry=registry.Listing([entry], notes=[f"workers/{HOSTILE}.json: skipped"]),
        jobs=[top.Job(entry.name, HOSTILE, HOSTILE, 30.0)],
        tasks=top.per_task([entry]),
        rate=None,
    )


def test_plain_lines_show_control_characters_from_the_bucket_as_escapes() -> None:
    # GIVEN a frame whose registry text holds terminal escapes and line breaks (a job's id is
    # whatever its producer chose; an entry or a key under workers/ is any text in the bucket)
    frame = hostile_frame()
    # WHEN it is printed plain
    lines = cli.plain_lines(frame, 2.0)
    # THEN no control character reaches the terminal, each row stays one line, and the text
    # is still shown, escaped
    text = "\n".join(lines)
    assert not any(c in text for c in "\x1b\x07\r\u2028"), text
    assert all(len(line.splitlines()) == 1 for line in lines)
    assert "x\\x1b[2J" in text


def test_the_screen_shows_control_characters_from_the_bucket_as_escapes() -> None:
    # GIVEN the same frame, WHEN it is drawn on a terminal
    from io import StringIO

    from rich.console import Console

    out = StringIO()
    Console(file=out, width=400, color_system=None).print(cli.screen(hostile_frame(), 2.0))
    # THEN no escape of the bucket's text reaches the terminal
    assert "\x1b" not in out.getvalue() and "\x07" not in out.getvalue()
    assert "x\\x1b[2J" in out.getvalue()
