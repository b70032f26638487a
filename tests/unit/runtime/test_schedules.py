"""runner.runtime.schedules: the project's beat_schedule, declared in tasks/schedules.py."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from celery.schedules import crontab

from runner.core.settings import WorkerSettings
from runner.errors import BeatScheduleError
from runner.runtime import schedules
from runner.runtime.app import celery_config

SETTINGS = WorkerSettings(
    queue_url="https://sqs.eu-west-1.amazonaws.com/123456789012/galley-jobs",
    results_bucket="galley-results",
    region="eu-west-1",
)


@pytest.fixture
def schedule_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The path of ``beat_fixture_module``, importable for this test once the test writes it."""
    monkeypatch.syspath_prepend(str(tmp_path))
    path = tmp_path / "beat_fixture_module.py"
    yield path
    sys.modules.pop("beat_fixture_module", None)


def test_the_project_declares_its_schedules_in_tasks() -> None:
    # GIVEN the repository's tasks/schedules.py
    # WHEN the app's schedule is read
    declared = schedules.declared()
    # THEN the example nightly summary is there, as Celery beat reads it
    nightly = declared["nightly-import-summary"]
    assert nightly["task"] == "tasks.reports.summarize_csv"
    assert nightly["schedule"] == crontab(minute=0, hour=2)
    assert nightly["args"] == ["${ResultsBucket}", "inbox/orders.csv"]


def test_the_app_config_carries_the_beat_schedule_with_stack_references_filled_in() -> None:
    # WHEN the Celery configuration is built for a worker's settings
    beat = celery_config(SETTINGS)["beat_schedule"]
    # THEN `celery beat` would send the settings' bucket where the template says ${ResultsBucket}
    assert beat["nightly-import-summary"]["args"] == ["galley-results", "inbox/orders.csv"]
    assert beat["nightly-import-summary"]["schedule"] == crontab(minute=0, hour=2)
    # AND the declaration itself is left as written
    assert schedules.declared()["nightly-import-summary"]["args"][0] == "${ResultsBucket}"


def test_references_are_filled_in_nested_arguments_and_unknown_ones_are_kept(
    schedule_module: Path,
) -> None:
    schedule_module.write_text(
        "beat_schedule = {'x': {'task': 't', 'schedule': 60,\n"
        "    'args': ('s3://${ResultsBucket}/a', ['${AWS::Region}']),\n"
        "    'kwargs': {'where': {'bucket': '${ResultsBucket}'}, 'other': '${Unknown}'}}}\n"
    )
    beat = schedules.for_app(SETTINGS, module="beat_fixture_module")
    assert beat["x"]["args"] == ("s3://galley-results/a", ["eu-west-1"])
    assert beat["x"]["kwargs"] == {"where": {"bucket": "galley-results"}, "other": "${Unknown}"}
    assert beat["x"]["schedule"] == 60


def test_references_lists_what_an_entry_names() -> None:
    value = {"a": ["${ResultsBucket}", "x-${AWS::Region}-${ResultsBucket}"], "b": 1}
    assert schedules.references(value) == ["AWS::Region", "ResultsBucket"]


def test_no_schedule_module_means_no_schedules() -> None:
    assert schedules.declared("tasks.no_such_module") == {}


def test_a_module_without_beat_schedule_has_none(schedule_module: Path) -> None:
    schedule_module.write_text("X = 1\n")
    assert schedules.declared("beat_fixture_module") == {}


def test_a_beat_schedule_that_is_not_a_dict_is_named(schedule_module: Path) -> None:
    schedule_module.write_text("beat_schedule = [1]\n")
    with pytest.raises(BeatScheduleError, match=r"beat_fixture_module\.beat_schedule.*dict.*list"):
        schedules.declared("beat_fixture_module")


def test_a_schedule_module_that_fails_to_import_is_not_hidden(schedule_module: Path) -> None:
    schedule_module.write_text("import galley_no_such_dependency\n")
    with pytest.raises(ModuleNotFoundError, match="galley_no_such_dependency"):
        schedules.declared("beat_fixture_module")


def test_interval_entries_pass_through_untouched() -> None:
    assert schedules.fill(timedelta(minutes=5), {"ResultsBucket": "b"}) == timedelta(minutes=5)
