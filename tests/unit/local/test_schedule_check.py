"""runner.local.schedule_check and `galley schedules`: beat_schedule against template.yaml."""

from __future__ import annotations

import copy
import functools
import json
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import yaml
from celery.schedules import crontab
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from samtranslator.yaml_helper import yaml_parse

from runner.cli import schedules as schedules_cli
from runner.cli.main import main
from runner.local import routing, sam, schedule_check

ROOT = Path(__file__).resolve().parents[3]
TEMPLATE = ROOT / "template.yaml"
#: Where a snippet is pasted: at the top of ScheduleFunction's events.
EVENTS = "      Events:\n"
FIRST_EVENT = "        NightlyImportSummary:\n"

NIGHTLY = {
    "task": "tasks.reports.summarize_csv",
    "schedule": crontab(minute=0, hour=2),
    "args": ["${ResultsBucket}", "inbox/orders.csv"],
}


@functools.cache
def _parsed_template() -> dict[str, Any]:
    return sam.load_template(TEMPLATE)


def repo_template() -> dict[str, Any]:
    """The repo's template.yaml, parsed once; each caller gets its own copy to change."""
    return copy.deepcopy(_parsed_template())


def default_routes(requests: Mapping[str, routing.Request]) -> dict[str, routing.Route]:
    """What the app's routing answers when nothing routes the tasks (the repository's case)."""
    return {name: routing.Route("jobs", by=routing.BY_DEFAULT) for name in requests}


def schedules_command(*args: str, app_routing: bool = False) -> Any:
    """`galley schedules ARGS`. The app's routing is asked in a child process (a second each);
    unless ``app_routing``, it is answered as for an app that routes nothing."""
    routes = routing.routes if app_routing else default_routes
    with mock.patch.object(routing, "routes", routes):
        return CliRunner().invoke(main, ["schedules", *args])


def edited_template(tmp_path: Path, old: str, new: str) -> Path:
    """A copy of the repo's template.yaml with ``old`` replaced by ``new``."""
    text = TEMPLATE.read_text()
    assert old in text
    path = tmp_path / "template.yaml"
    path.write_text(text.replace(old, new))
    return path


# --- the repository ------------------------------------------------------------------------------


def test_the_repository_beat_schedule_and_template_agree() -> None:
    # GIVEN the repo's tasks/schedules.py and template.yaml
    # WHEN `galley schedules` compares them
    result = schedules_command("--template", str(TEMPLATE), app_routing=True)
    # THEN each entry is listed with its EventBridge expression and its event, and it exits 0
    assert result.exit_code == 0, result.output
    assert (
        "nightly-import-summary -> ScheduleFunction.NightlyImportSummary: "
        "tasks.reports.summarize_csv at cron(0 2 * * ? *)" in result.output
    )
    assert "agree" in result.output.splitlines()[-1]


def test_an_entry_the_app_routes_to_the_long_queue_needs_the_queue_in_the_input(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by review: task_routes sent `celery beat`'s jobs to the long queue, but the schedule
    Lambda sent the template's to the jobs queue, and `galley schedules` said they agree."""
    # GIVEN the app routes tasks.reports.* to the long queue (a task module of its own)
    (tmp_path / "long_reports_routes.py").write_text(
        'from runner import app\napp.conf.task_routes = {"tasks.reports.*": {"queue": "long"}}\n'
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("GALLEY_TASK_MODULES", "long_reports_routes")
    # WHEN `galley schedules` checks the repository, whose nightly entry is tasks.reports.*
    result = schedules_command("--template", str(TEMPLATE), app_routing=True)
    # THEN the Input lacks the queue celery beat sends it to, and the event to paste has it
    assert result.exit_code == 1, result.output
    assert "Input queue is jobs, beat_schedule's is long (the app's task_routes)" in result.output
    assert '"queue": "long"' in result.output


def test_local_up_runs_on_with_a_line_when_the_app_cannot_be_loaded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN an app whose task modules cannot be loaded
    monkeypatch.setenv("GALLEY_TASK_MODULES", "no_such_module_anywhere")
    # WHEN `galley local up` asks for the differences THEN one line says why there are none
    (line,) = schedules_cli.differences(TEMPLATE)
    assert line.startswith(f"cannot compare beat_schedule and {TEMPLATE}: cannot load the Celery")


# --- differences ---------------------------------------------------------------------------------


def test_a_missing_schedule_is_reported_with_a_snippet_that_fixes_it(tmp_path: Path) -> None:
    # GIVEN a beat_schedule with an entry the template does not have
    beat = {
        "nightly-import-summary": NIGHTLY,
        "publish_latest_upload": {
            "task": "tasks.uploads.publish_upload",
            "schedule": timedelta(minutes=5),
            "args": ["${ResultsBucket}"],
            "kwargs": {"key": "uploads/latest.csv"},
        },
    }
    # WHEN it is compared
    report = schedule_check.compare(beat, repo_template())
    # THEN the new entry is missing, with its expression, and a snippet for ScheduleFunction
    (missing,) = report.differences
    assert missing.status == "missing"
    assert missing.event == "ScheduleFunction.PublishLatestUpload"
    assert missing.expression == "rate(5 minutes)"
    assert missing.snippet is not None
    assert "ScheduleExpression: rate(5 minutes)" in missing.snippet
    assert '"${ResultsBucket}"' in missing.snippet
    # AND pasted under ScheduleFunction's Events, the snippet makes the two agree
    fixed = edited_template(
        tmp_path, EVENTS + FIRST_EVENT, EVENTS + missing.snippet + "\n" + FIRST_EVENT
    )
    template = sam.load_template(fixed)
    assert schedule_check.compare(beat, template).differences == []
    # AND the template is still valid SAM, and the local stack reads the new schedule
    sam.translate(template, sam.LOCAL_PARAMETERS)
    found = {spec.name: spec for spec in sam.schedules(template, {"ResultsBucket": "b"})}
    assert found["ScheduleFunction.PublishLatestUpload"].input == {
        "task": "tasks.uploads.publish_upload",
        "args": ["b"],
        "kwargs": {"key": "uploads/latest.csv"},
    }
    assert found["ScheduleFunction.PublishLatestUpload"].expression == "rate(5 minutes)"


def test_galley_schedules_exits_non_zero_on_a_difference_and_prints_the_fix(
    tmp_path: Path,
) -> None:
    # GIVEN a template whose nightly schedule runs at 03:00, not beat_schedule's 02:00
    template = edited_template(tmp_path, "cron(0 2 * * ? *)", "cron(0 3 * * ? *)")
    # WHEN `galley schedules` checks it
    result = schedules_command("--template", str(template))
    # THEN it names what differs, prints the event to paste instead, and fails
    assert result.exit_code == 1, result.output
    assert "ScheduleExpression is cron(0 3 * * ? *), beat_schedule's is cron(0 2 * * ? *)" in (
        result.output
    )
    assert "        NightlyImportSummary:\n          Type: ScheduleV2\n" in result.output
    assert "ScheduleExpression: cron(0 2 * * ? *)" in result.output
    assert "Error: 1 difference(s) between beat_schedule and" in result.output


def test_an_expression_written_differently_but_firing_alike_agrees() -> None:
    template = repo_template()
    events = template["Resources"]["ScheduleFunction"]["Properties"]["Events"]
    events["NightlyImportSummary"]["Properties"]["ScheduleExpression"] = "cron(0 2 ? * * *)"
    assert schedule_check.compare({"nightly-import-summary": NIGHTLY}, template).differences == []


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ({**NIGHTLY, "args": ["${ResultsBucket}", "inbox/other.csv"]}, "Input args are"),
        ({**NIGHTLY, "kwargs": {"output_key": "x"}}, "Input kwargs are {}, beat_schedule's are"),
        ({**NIGHTLY, "task": "tasks.reports.other"}, "Input task is tasks.reports.summarize_csv"),
    ],
)
def test_a_different_input_is_reported(entry: dict[str, Any], problem: str) -> None:
    report = schedule_check.compare({"nightly-import-summary": entry}, repo_template())
    (finding,) = report.differences
    assert finding.status == "differs"
    assert problem in finding.detail
    assert finding.snippet is not None


def test_template_only_settings_that_change_the_job_are_differences() -> None:
    # GIVEN a template event that routes to the long queue, in Berlin time, switched off
    template = repo_template()
    props = template["Resources"]["ScheduleFunction"]["Properties"]["Events"][
        "NightlyImportSummary"
    ]["Properties"]
    props["Input"] = {"Fn::Sub": props["Input"]["Fn::Sub"].replace("{", '{"queue": "long", ', 1)}
    props["ScheduleExpressionTimezone"] = "Europe/Berlin"
    props["State"] = "DISABLED"
    # WHEN compared THEN each is named
    (finding,) = schedule_check.compare({"nightly-import-summary": NIGHTLY}, template).differences
    assert "Input queue is long, beat_schedule's is jobs" in finding.detail
    assert "ScheduleExpressionTimezone is Europe/Berlin; beat_schedule's times are UTC" in (
        finding.detail
    )
    assert "State is DISABLED" in finding.detail


# --- the long queue ------------------------------------------------------------------------------

LONG_NIGHTLY = {**NIGHTLY, "options": {"queue": "long"}}


def nightly_props(template: dict[str, Any]) -> dict[str, Any]:
    events = template["Resources"]["ScheduleFunction"]["Properties"]["Events"]
    props: dict[str, Any] = events["NightlyImportSummary"]["Properties"]
    return props


def test_an_entry_for_the_long_queue_needs_the_queue_in_the_input(tmp_path: Path) -> None:
    """Found by review: options={"queue": "long"} was refused, so a periodic job for the long
    queue could not be declared, and the schedule Lambda sent it to the jobs queue."""
    # GIVEN an entry sent to the long queue, Celery's way, and the template without a queue
    beat = {"nightly-import-summary": LONG_NIGHTLY}
    # WHEN compared
    (finding,) = schedule_check.compare(beat, repo_template()).findings
    # THEN the missing queue is the difference, and the event to paste says it
    assert finding.status == "differs", finding
    assert "Input queue is jobs, beat_schedule's is long" in finding.detail
    assert finding.snippet is not None
    assert '"queue": "long"' in finding.snippet
    # AND with the snippet in place of the event they agree, and the local stack reads the queue
    text = TEMPLATE.read_text()
    start = text.index(FIRST_EVENT)
    end = text.index("\n\n", start)
    fixed = tmp_path / "template.yaml"
    fixed.write_text(text[:start] + finding.snippet + text[end:])
    template = sam.load_template(fixed)
    assert schedule_check.compare(beat, template).differences == []
    (spec,) = sam.schedules(template, {"ResultsBucket": "b"})
    assert spec.input["queue"] == "long"


def test_the_input_may_say_the_long_queue_when_the_entry_does() -> None:
    # GIVEN a template event whose Input sends the job to the long queue
    template = repo_template()
    props = nightly_props(template)
    props["Input"] = {"Fn::Sub": props["Input"]["Fn::Sub"].replace("{", '{"queue": "long", ', 1)}
    # WHEN the entry says so too THEN they agree; WHEN it does not THEN that is the difference
    assert (
        schedule_check.compare({"nightly-import-summary": LONG_NIGHTLY}, template).differences == []
    )
    assert (
        schedule_check.compare(
            {"nightly-import-summary": {**NIGHTLY, "options": {"queue": "jobs"}}}, template
        )
        .differences[0]
        .detail
        == "Input queue is long, beat_schedule's is jobs"
    )


def test_an_input_saying_the_default_queue_agrees_with_an_entry_saying_none() -> None:
    template = repo_template()
    props = nightly_props(template)
    props["Input"] = {"Fn::Sub": props["Input"]["Fn::Sub"].replace("{", '{"queue": "jobs", ', 1)}
    assert schedule_check.compare({"nightly-import-summary": NIGHTLY}, template).differences == []


@pytest.mark.parametrize(
    ("route", "queue"),
    [
        (routing.Route("long", by=routing.BY_TASK_QUEUE), "long"),
        (routing.Route("long", by=routing.BY_TASK_ROUTES), "long"),
        (routing.Route("jobs", by=routing.BY_DEFAULT), None),
    ],
)
def test_an_entry_goes_where_the_app_routes_its_task(
    route: routing.Route, queue: str | None
) -> None:
    (finding,) = schedule_check.compare(
        {"nightly-import-summary": NIGHTLY}, repo_template(), {"nightly-import-summary": route}
    ).findings
    assert finding.queue == queue
    if queue:
        assert finding.detail == f"Input queue is jobs, beat_schedule's is long ({route.by})"
    else:
        assert finding.status == "ok"


def test_the_entry_s_queue_option_wins_over_the_app_s_routing() -> None:
    beat = {"nightly-import-summary": {**NIGHTLY, "options": {"queue": "jobs"}}}
    routes = {"nightly-import-summary": routing.Route("long", by=routing.BY_TASK_ROUTES)}
    assert schedule_check.compare(beat, repo_template(), routes).differences == []
    assert schedule_check._routed(beat) == {}


@pytest.mark.parametrize(
    ("route", "reason"),
    [
        (
            routing.Route(None, problem="Queue 'reports' missing from task_queues"),
            "celery beat cannot send it: Queue 'reports' missing from task_queues (the stack's "
            "queues are jobs, long)",
        ),
        (
            routing.Route("reports", by=routing.BY_TASK_ROUTES),
            "celery beat sends it to queue 'reports' (the app's task_routes)",
        ),
    ],
)
def test_an_entry_the_app_routes_off_the_stack_is_refused(
    route: routing.Route, reason: str
) -> None:
    (finding,) = schedule_check.compare(
        {"nightly-import-summary": NIGHTLY}, repo_template(), {"nightly-import-summary": route}
    ).findings
    assert finding.status == "refused"
    assert reason in finding.detail


def test_a_template_schedule_without_a_beat_entry_is_reported() -> None:
    (finding,) = schedule_check.compare({}, repo_template()).differences
    assert finding.status == "extra"
    assert finding.event == "ScheduleFunction.NightlyImportSummary"
    assert "not in beat_schedule" in str(finding)


@pytest.mark.parametrize(
    ("entry", "reason"),
    [
        ({**NIGHTLY, "schedule": 30}, "the shortest EventBridge Scheduler rate is 1 minute"),
        ({**NIGHTLY, "schedule": timedelta(seconds=150)}, "not a whole number of minutes"),
        (
            {**NIGHTLY, "schedule": crontab(0, 2, day_of_week=1, day_of_month=1)},
            "both day_of_month and day_of_week",
        ),
        ({**NIGHTLY, "options": {"expires": 60}}, "options {'expires': 60}"),
        ({**NIGHTLY, "options": {"queue": "long", "expires": 60}}, "keep only queue"),
        ({**NIGHTLY, "options": {"queue": "reports"}}, "queue 'reports': the stack's queues are"),
        ({**NIGHTLY, "options": ["queue", "long"]}, "options must be a dict"),
        ({**NIGHTLY, "relative": True}, "relative=True"),
        ({**NIGHTLY, "sched": 60}, "unknown key 'sched'"),
        ({"schedule": 60}, "no task"),
        ({"task": "tasks.x"}, "no schedule"),
        ({**NIGHTLY, "args": "inbox/a.csv"}, "args must be a list"),
        ({**NIGHTLY, "kwargs": [1]}, "kwargs must be a dict"),
        ({**NIGHTLY, "args": [timedelta(1)]}, "args and kwargs must be JSON"),
        ({**NIGHTLY, "task": "tasks/reports"}, "the schedule Lambda would refuse its input"),
        ({**NIGHTLY, "args": ["${JobsQueue}"]}, "${JobsQueue}"),
    ],
)
def test_an_entry_eventbridge_cannot_run_is_refused_with_the_reason(
    entry: dict[str, Any], reason: str
) -> None:
    (finding,) = schedule_check.compare({"nightly-import-summary": entry}, repo_template()).findings
    assert finding.status == "refused"
    assert reason in finding.detail
    assert finding.snippet is None


def test_two_names_for_one_event_are_refused() -> None:
    beat = {"nightly-import-summary": NIGHTLY, "nightly_import_summary": NIGHTLY}
    findings = schedule_check.compare(beat, repo_template()).findings
    assert [f.status for f in findings] == ["ok", "refused"]
    assert "also ScheduleFunction.NightlyImportSummary" in findings[1].detail


@pytest.mark.parametrize(
    ("name", "event_id"),
    [
        ("nightly-import-summary", "NightlyImportSummary"),
        ("NightlyImportSummary", "NightlyImportSummary"),
        ("every 5 minutes", "Every5Minutes"),
        ("tasks.reports.summarize_csv", "TasksReportsSummarizeCsv"),
    ],
)
def test_an_entry_name_becomes_an_event_id(name: str, event_id: str) -> None:
    assert schedule_check.event_id(name) == event_id


def test_the_snippet_is_yaml_for_the_event() -> None:
    # GIVEN an entry without stack references
    snippet = schedule_check.snippet(
        "EveryHour", "every-hour", "rate(1 hour)", {"task": "tasks.x", "args": ["a: b # c"]}
    )
    # WHEN it is read as YAML THEN it is the ScheduleV2 event, its Input plain JSON (no !Sub)
    event = yaml_parse(snippet)["EveryHour"]
    assert event["Type"] == "ScheduleV2"
    assert event["Properties"]["ScheduleExpression"] == "rate(1 hour)"
    assert event["Properties"]["Input"] == '{"task": "tasks.x", "args": ["a: b # c"]}'
    assert event["Properties"]["Name"] == {"Fn::Sub": "${AWS::StackName}-every-hour"}


def test_an_input_with_a_stack_reference_but_no_sub_is_a_difference(tmp_path: Path) -> None:
    """Found by review: EventBridge sends a plain string as written, so the job got the literal
    ``${ResultsBucket}`` on AWS while `galley schedules` said the two agree."""
    # GIVEN the repo's template with the nightly event's Input written without !Sub
    template = edited_template(tmp_path, "Input: !Sub >-", "Input: >-")
    # WHEN `galley schedules` checks it
    result = schedules_command("--template", str(template))
    # THEN it says the Input must be !Sub for ${ResultsBucket} to be filled in, and fails
    assert result.exit_code == 1, result.output
    assert (
        "Input is not !Sub, so EventBridge sends ${ResultsBucket} as written; "
        "write it Input: !Sub" in result.output
    )
    # AND the event to replace it with is !Sub
    assert "Input: !Sub >-" in result.output


# --- templates that are not what a SAM template looks like ---------------------------------------

FUNCTION_WITH = "Resources:\n  Fn:\n    Type: AWS::Serverless::Function\n    Properties:\n"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "is empty"),
        ("{{{{", "is not valid YAML: "),
        ("- a\n- b\n", "is a list, expected a mapping"),
        ("Resources: []\n", "Resources is a list, expected a mapping"),
        ("Resources: {F: 3}\n", "Resources.F is a number, expected a mapping"),
        (
            "Resources:\n  Fn:\n    Type: AWS::Serverless::Function\n    Properties: null\n",
            "Resources.Fn.Properties is null, expected a mapping",
        ),
        (FUNCTION_WITH + "      Events: [1, 2]\n", "Resources.Fn.Properties.Events is a list"),
        (
            FUNCTION_WITH + "      Events:\n        Nightly: rate(1 day)\n",
            "Resources.Fn.Properties.Events.Nightly is a string, expected a mapping",
        ),
        (
            FUNCTION_WITH + "      Events:\n        Nightly:\n          Type: ScheduleV2\n"
            "          Properties: [rate(1 day)]\n",
            "Resources.Fn.Properties.Events.Nightly.Properties is a list, expected a mapping",
        ),
    ],
)
def test_a_template_galley_cannot_read_is_one_line_naming_what_is_wrong(
    tmp_path: Path, text: str, problem: str
) -> None:
    """Found by review: each of these printed a traceback (AttributeError, a YAML parse error)."""
    # GIVEN a template that is not a SAM template's shape
    path = tmp_path / "odd.yaml"
    path.write_text(text)
    # WHEN `galley schedules` checks it
    result = schedules_command("--template", str(path))
    # THEN one line says what is wrong, naming the file, and it exits 1 (no traceback)
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), result.exception
    assert result.output.startswith(f"Error: {path}: "), result.output
    assert problem in result.output
    assert result.output.count("\n") == 1


@pytest.mark.parametrize(
    ("expression", "problem"),
    [
        ("rate(99999999999999999999 days)", "longer than 36500 days"),  # was OverflowError
        ("rate(999999999 days)", "longer than 36500 days"),  # passed; local up then overflowed
    ],
)
def test_a_rate_too_long_to_schedule_is_a_difference(
    tmp_path: Path, expression: str, problem: str
) -> None:
    template = edited_template(tmp_path, "cron(0 2 * * ? *)", expression)
    result = schedules_command("--template", str(template))
    assert result.exit_code == 1, result.output
    assert f"ScheduleExpression {expression}: {problem}" in result.output


# Template-ish YAML: the shape SAM gives a schedule event, with anything in any place of it.
# Text includes lone surrogates: YAML's and JSON's "\ud800" escapes make them.
# (st.text leaves them out whatever its alphabet, so the characters are joined here.)
_TEXT = st.lists(st.characters() | st.characters(categories=["Cs"]), max_size=12).map("".join)
_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats()
    | _TEXT
)
_ANYTHING = st.recursive(
    _SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(_TEXT | st.integers(), inner, max_size=3)
    ),
    max_leaves=8,
)
_EXPRESSIONS = (
    st.sampled_from(["cron(0 2 * * ? *)", "cron(0 2 ? * * *)", "cron(0 3 * * ? *)"])
    | st.builds(
        "rate({} {})".format,
        st.integers(min_value=-1, max_value=10**25),
        st.sampled_from(["minute", "minutes", "hour", "hours", "day", "days", "weeks"]),
    )
    | _TEXT
    | _ANYTHING
)
_PAYLOADS = st.fixed_dictionaries(
    {},
    optional={
        "task": st.just("tasks.reports.summarize_csv") | _ANYTHING,
        "args": st.just(["${ResultsBucket}", "inbox/orders.csv"]) | _ANYTHING,
        "kwargs": _ANYTHING,
        "queue": st.sampled_from(["jobs", "long"]) | _ANYTHING,
    },
).map(json.dumps)
_INPUTS = (
    _PAYLOADS
    | _PAYLOADS.map(lambda text: {"Fn::Sub": text})
    | st.builds(lambda text, more: {"Fn::Sub": [text, more]}, _PAYLOADS, _ANYTHING)
    | _ANYTHING
)
_EVENT_PROPERTIES = (
    st.fixed_dictionaries(
        {},
        optional={
            "ScheduleExpression": _EXPRESSIONS,
            "Input": _INPUTS,
            "State": st.sampled_from(["ENABLED", "DISABLED"]) | _ANYTHING,
            "ScheduleExpressionTimezone": st.sampled_from(["UTC", "Europe/Berlin"]) | _ANYTHING,
        },
    )
    | _ANYTHING
)
_EVENTS = (
    st.dictionaries(
        st.sampled_from(["NightlyImportSummary", "Other"]) | _TEXT | st.integers(),
        st.fixed_dictionaries(
            {"Type": st.sampled_from(["ScheduleV2", "Schedule", "SQS"]) | _ANYTHING},
            optional={"Properties": _EVENT_PROPERTIES},
        )
        | _ANYTHING,
        max_size=3,
    )
    | _ANYTHING
)
_RESOURCES = (
    st.dictionaries(
        st.sampled_from(["ScheduleFunction", "Other"]) | _TEXT,
        st.fixed_dictionaries(
            {"Type": st.just("AWS::Serverless::Function") | _ANYTHING},
            optional={
                "Properties": st.fixed_dictionaries({}, optional={"Events": _EVENTS}) | _ANYTHING
            },
        )
        | _ANYTHING,
        max_size=2,
    )
    | _ANYTHING
)
#: From the template's root to the nightly event's Properties: where a mutation lands.
_EVENT_PATH = (
    "Resources",
    "ScheduleFunction",
    "Properties",
    "Events",
    "NightlyImportSummary",
    "Properties",
)
_LEAVES = {
    "ScheduleExpression": _EXPRESSIONS,
    "Input": _INPUTS,
    "State": st.sampled_from(["ENABLED", "DISABLED"]) | _ANYTHING,
    "ScheduleExpressionTimezone": st.sampled_from(["UTC", "Europe/Berlin"]) | _ANYTHING,
    "Type": st.sampled_from(["ScheduleV2", "Schedule", "SQS"]) | _ANYTHING,
}


@st.composite
def _mutations(draw: st.DrawFn) -> list[tuple[int, Any, Any]]:
    """One to three changes to the repository's template, each ``(depth, key, value)``: set
    ``key`` to ``value`` in the mapping ``depth`` steps along :data:`_EVENT_PATH`. Mostly in the
    event's own Properties, so the check gets past the shape to the values."""
    changes = []
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        depth = draw(st.sampled_from([0, 1, 2, 3, 4, 4, 5, 5, *[6] * 8]))
        key = draw(st.sampled_from([*_EVENT_PATH[depth : depth + 1], *_LEAVES]) | _TEXT)
        value = draw(_LEAVES[key] if key in _LEAVES else _ANYTHING | _EVENTS)
        changes.append((depth, key, value))
    return changes


def _mutated(changes: list[tuple[int, Any, Any]]) -> str:
    # the repository's schedule function and its events only: quick to write and read back
    function = repo_template()["Resources"]["ScheduleFunction"]
    events = function["Properties"]["Events"]
    template = {"Resources": {"ScheduleFunction": {"Properties": {"Events": events}}}}
    for depth, key, value in changes:
        parent: Any = template
        for step in _EVENT_PATH[:depth]:
            parent = parent.get(step) if isinstance(parent, dict) else None
        if isinstance(parent, dict):
            parent[key] = value
    return yaml.safe_dump(template)


_OTHER_TEXTS = (
    st.fixed_dictionaries({}, optional={"Resources": _RESOURCES}).map(yaml.safe_dump)
    | _ANYTHING.map(yaml.safe_dump)
    | st.text(max_size=40)
    | st.sampled_from(["", "{{{{", "Resources: !Sub [", "a: 2024-13-01", "[" * 300])
)


def assert_checked_without_a_traceback(tmp_path: Path, text: str) -> None:
    # GIVEN a template with this text
    path = tmp_path / "template.yaml"
    path.write_text(text, encoding="utf-8")
    # WHEN `galley schedules` checks it
    result = schedules_command("--template", str(path))
    # THEN it exits 0 (they agree) or 1 with an error line, never with another exception
    assert isinstance(result.exception, SystemExit | None), repr(result.exception)
    assert result.exit_code in (0, 1), result.output
    assert "Traceback" not in result.output
    last = result.output.splitlines()[-1]
    if result.exit_code:
        assert last.startswith("Error: "), result.output
    else:
        assert "agree" in last, result.output


def test_an_input_nested_too_deep_for_json_is_a_difference(tmp_path: Path) -> None:
    """Found while fuzzing: a RecursionError traceback from json.loads."""
    deep = "[" * 100_000 + "]" * 100_000
    template = edited_template(tmp_path, "Input: !Sub >-", f"Input: '{deep}'\n            X: >-")
    result = schedules_command("--template", str(template))
    assert result.exit_code == 1, result.output
    assert "Input is not JSON (nested too deep)" in result.output


def test_a_lone_surrogate_in_the_template_is_printed_as_an_escape(tmp_path: Path) -> None:
    """Found by the property tests below: a UnicodeEncodeError traceback printing the line."""
    template = edited_template(tmp_path, "cron(0 2 * * ? *)", '"\\ud83a"')
    result = schedules_command("--template", str(template))
    assert result.exit_code == 1, result.output
    assert "ScheduleExpression \\ud83a: expected rate(value unit)" in result.output


_FUZZ = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@_FUZZ
@given(changes=_mutations())
def test_galley_schedules_never_prints_a_traceback_for_a_changed_template(
    tmp_path: Path, changes: list[tuple[int, Any, Any]]
) -> None:
    assert_checked_without_a_traceback(tmp_path, _mutated(changes))


@_FUZZ
@given(text=_OTHER_TEXTS)
def test_galley_schedules_never_prints_a_traceback_for_any_yaml(tmp_path: Path, text: str) -> None:
    assert_checked_without_a_traceback(tmp_path, text)
