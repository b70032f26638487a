"""runner.cli.main: what `galley local up` prints around the local stack (the stack faked)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from runner.cli import main as cli
from runner.local.embedded import LocalResources, LocalStack, MotoServer
from runner.local.sam import DeployedStack, ScheduleSpec
from runner.local.scheduler import LocalScheduler

TEMPLATE = Path(__file__).resolve().parents[3] / "template.yaml"
RESOURCES = LocalResources(
    endpoint_url="http://127.0.0.1:5555",
    region="us-east-1",
    queue_url="http://127.0.0.1:5555/123456789012/galley-local-jobs",
    dlq_url="http://127.0.0.1:5555/123456789012/galley-local-jobs-dlq",
    bucket="galley-local-results",
    visibility_timeout=120,
)
START = datetime(2026, 11, 24, 1, 59, 30, tzinfo=UTC)
NIGHTLY = ScheduleSpec(
    name="ScheduleFunction.NightlyImportSummary",
    expression="cron(0 2 * * ? *)",
    input={"task": "tasks.reports.summarize_csv", "args": ["b", "inbox/orders.csv"]},
)


def test_local_up_prints_a_line_each_time_a_schedule_fires(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # GIVEN a local stack (faked) whose nightly schedule comes due while it runs
    def serve(stop: Any, **_: Any) -> int:
        scheduler = LocalScheduler([NIGHTLY], lambda spec: "3f1c0d9e-0001", start=START)
        scheduler.tick(START + timedelta(seconds=30))
        return 0

    monkeypatch.setattr(cli.supervisor, "serve", serve)
    # WHEN `galley local up` runs it
    result = CliRunner().invoke(
        cli.main, ["local", "up", "--state-file", str(tmp_path / "local.json")]
    )
    # THEN the terminal shows which schedule fired, its task and the job's task id
    assert result.exit_code == 0, result.output
    (line,) = [line for line in result.output.splitlines() if "fired" in line]
    assert line.endswith(
        "schedule ScheduleFunction.NightlyImportSummary fired: "
        "tasks.reports.summarize_csv[3f1c0d9e-0001]"
    )
    assert line.startswith("[2")  # a timestamp, as the worker's own lines have


def test_local_up_names_schedules_that_beat_schedule_and_the_template_disagree_on(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # GIVEN a template whose nightly schedule runs an hour later than beat_schedule says
    template = tmp_path / "template.yaml"
    template.write_text(TEMPLATE.read_text().replace("cron(0 2 * * ? *)", "cron(0 3 * * ? *)"))

    def serve(stop: Any, *, on_ready: Any, **_: Any) -> int:
        deployed = DeployedStack(name="galley-local", outputs={}, schedules=[NIGHTLY])
        stack = LocalStack(RESOURCES, deployed, MotoServer(5555), moto_pid=4242)
        on_ready(stack, LocalScheduler([NIGHTLY], print, START))
        return 0

    monkeypatch.setattr(cli.supervisor, "serve", serve)
    # WHEN `galley local up` starts
    result = CliRunner().invoke(
        cli.main,
        ["local", "up", "--template", str(template), "--state-file", str(tmp_path / "s.json")],
    )
    # THEN it says so, and which one fires, as it lists the schedules
    assert result.exit_code == 0, result.output
    assert "  schedule ScheduleFunction.NightlyImportSummary: next at 2026-11-24 02:00 UTC" in (
        result.output
    )
    assert (
        "  beat_schedule entry nightly-import-summary differs from "
        "ScheduleFunction.NightlyImportSummary (ScheduleExpression is cron(0 3 * * ? *), "
        "beat_schedule's is cron(0 2 * * ? *)): the template's fires (see `galley schedules`)"
    ) in result.output
