"""The project's periodic jobs: Celery's ``beat_schedule``, declared in ``tasks/schedules.py``.

That dict is the one place a periodic job is declared. The app's configuration carries it
(``app.conf.beat_schedule``, so ``celery -A runner.app beat`` runs it), and ``galley schedules``
checks that template.yaml has one EventBridge Scheduler schedule for each entry, with the same
times and the same input (runner/local/schedule_check.py).

An argument may name a resource of the stack the way template.yaml's ``!Sub`` does,
``"${ResultsBucket}"``: on AWS the template fills it in; under ``celery beat`` the app fills in
those of :data:`STACK_REFERENCES` from its settings, so both send the same job.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Mapping
from typing import Any

from runner.core.settings import WorkerSettings
from runner.errors import BeatScheduleError

#: The module that declares the project's periodic jobs, and the dict in it.
SCHEDULE_MODULE = "tasks.schedules"
SCHEDULE_VARIABLE = "beat_schedule"

#: ``${Name}`` as template.yaml's !Sub writes a reference (runner/local/sam.py reads it too).
REFERENCE = re.compile(r"\$\{([A-Za-z0-9:._]+)\}")

#: The references the app can fill in for ``celery beat``, and the setting that holds each: the
#: template sets these variables from the same resources (GALLEY_RESULTS_BUCKET: !Ref ...).
STACK_REFERENCES: Mapping[str, Callable[[WorkerSettings], str]] = {
    "ResultsBucket": lambda settings: settings.results_bucket,
    "AWS::Region": lambda settings: settings.region,
}


def declared(module: str = SCHEDULE_MODULE) -> dict[str, Any]:
    """``module.beat_schedule`` as written; ``{}`` when there is no such module or variable.

    A module that exists but fails to import raises, as a broken task module does.
    """
    try:
        found = importlib.import_module(module)
    except ModuleNotFoundError as error:
        if error.name and (module == error.name or module.startswith(f"{error.name}.")):
            return {}
        raise
    beat_schedule = getattr(found, SCHEDULE_VARIABLE, {})
    if not isinstance(beat_schedule, Mapping):
        raise BeatScheduleError(
            f"{module}.{SCHEDULE_VARIABLE} must be a dict of entries (as Celery's beat_schedule),"
            f" got {type(beat_schedule).__name__}"
        )
    return dict(beat_schedule)


def for_app(settings: WorkerSettings, module: str = SCHEDULE_MODULE) -> dict[str, Any]:
    """The beat_schedule for the app's configuration: references in args and kwargs filled in
    from ``settings``; unknown ones are left for ``galley schedules`` to report."""
    values = {name: get(settings) for name, get in STACK_REFERENCES.items()}
    filled: dict[str, Any] = {}
    for name, entry in declared(module).items():
        if isinstance(entry, Mapping):
            entry = dict(entry)
            for key in ("args", "kwargs"):
                if key in entry:
                    entry[key] = fill(entry[key], values)
        filled[name] = entry
    return filled


def fill(value: Any, values: Mapping[str, str]) -> Any:
    """``value`` with every known ``${Name}`` in its strings replaced; containers rebuilt."""
    if isinstance(value, str):
        return REFERENCE.sub(lambda match: values.get(match.group(1), match.group(0)), value)
    if isinstance(value, list | tuple):
        return type(value)(fill(item, values) for item in value)
    if isinstance(value, Mapping):
        return {key: fill(item, values) for key, item in value.items()}
    return value


def references(value: Any) -> list[str]:
    """The names ``${Name}`` in the strings of ``value``, sorted, each once."""
    found: set[str] = set()

    def walk(item: Any) -> None:
        if isinstance(item, str):
            found.update(REFERENCE.findall(item))
        elif isinstance(item, list | tuple):
            for part in item:
                walk(part)
        elif isinstance(item, Mapping):
            for part in item.values():
                walk(part)

    walk(value)
    return sorted(found)
