"""runner.local.routing: where `celery beat` sends each beat_schedule entry's task."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from runner.errors import BeatScheduleError
from runner.local import routing

#: A task module that routes the way the README shows: by route, by task, and not at all.
ROUTING_MODULE = """
from runner import app

app.conf.task_routes = {"tasks.reports.*": {"queue": "long"}, "{name}.elsewhere": {"queue": "x"}}


@app.task(name="{name}.rebuild_index", queue="long")
def rebuild_index():
    return None


@app.task(name="{name}.short")
def short():
    return None
"""


@pytest.fixture
def routed_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A task module loaded by the app (GALLEY_TASK_MODULES), with task_routes and queue=."""
    name = f"routing_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(ROUTING_MODULE).replace("{name}", name))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("GALLEY_TASK_MODULES", name)
    return name


def test_each_entry_goes_where_celery_beat_would_send_it(routed_module: str) -> None:
    # GIVEN the app's task_routes, a task declared with queue="long", and tasks routed by neither
    entries = {
        "summary": routing.Request("tasks.reports.summarize_csv"),
        "index": routing.Request(f"{routed_module}.rebuild_index"),
        "short": routing.Request(f"{routed_module}.short"),
        "unknown": routing.Request("tasks.nowhere.at_all"),
    }
    # WHEN the app is asked where celery beat sends them (no AWS settings in this process)
    found = routing.routes(entries)
    # THEN each is the queue Celery picks, and what decided it
    assert found["summary"] == routing.Route("long", by="the app's task_routes")
    assert found["index"] == routing.Route("long", by="the task's queue=")
    assert found["short"] == routing.Route("jobs", by="the default queue")
    assert found["unknown"] == routing.Route("jobs", by="the default queue")


def test_a_route_to_a_queue_the_stack_lacks_is_the_entry_s_problem(routed_module: str) -> None:
    found = routing.routes({"e": routing.Request(f"{routed_module}.elsewhere")})
    assert found["e"].queue is None
    assert "Queue 'x' missing from task_queues" in found["e"].problem


def test_no_entries_start_no_process() -> None:
    assert routing.routes({}) == {}


def test_an_app_that_cannot_load_is_one_line_naming_why(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GALLEY_TASK_MODULES", "no_such_module_anywhere")
    with pytest.raises(BeatScheduleError) as caught:
        routing.routes({"e": routing.Request("tasks.x")})
    message = str(caught.value)
    assert message.startswith("cannot load the Celery app to see where celery beat sends ")
    assert "GALLEY_TASK_MODULES: module 'no_such_module_anywhere' not found" in message
    assert "\n" not in message
