"""beat_schedule against template.yaml: one EventBridge Scheduler schedule for each entry.

``tasks/schedules.py`` declares the periodic jobs (runner/runtime/schedules.py); template.yaml
deploys them, one ``ScheduleV2`` event of ``ScheduleFunction`` each. This module compares the two
and says, for every entry, whether the template has the matching event: the same times (the
entry's schedule translated by runner/local/eventbridge.py, compared by when it fires) and the
same input (``{"task", "args", "kwargs", "queue"}``, what the schedule Lambda enqueues, and where:
the queue is the one the entry's ``options={"queue": ...}`` names, as ``celery beat`` sends it).
An Input with ``${Name}`` must be ``!Sub``: EventBridge sends a plain string as written. For an
entry the template lacks, or has otherwise, it writes the event to paste.

It checks rather than generates: template.yaml stays the hand-edited SAM template that ``sam
deploy`` and SAM users expect, and one command (``galley schedules``, run by the tests) says
exactly what to change. An entry is matched with the event whose logical id is its name in
CamelCase (``nightly-import-summary`` -> ``NightlyImportSummary``), in any function.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError

from runner.core import queues
from runner.errors import BeatScheduleError, ScheduleExpressionError, StackError
from runner.local import cadence, eventbridge, routing, sam
from runner.producer.job_request import JobRequest
from runner.runtime import schedules

#: The function whose events a missing schedule is added to: the schedule Lambda.
FUNCTION = sam.SCHEDULE_FUNCTION
#: Event types the local stack fires (runner/local/sam.py ``schedules``); snippets use ScheduleV2.
EVENT_TYPES = sam.SCHEDULE_EVENT_TYPES
#: Keys of a beat_schedule entry Celery knows.
ENTRY_KEYS = frozenset({"task", "schedule", "args", "kwargs", "options", "relative"})
#: Keys of a schedule's Input a beat_schedule entry can say (``queue`` by its options, as
#: ``options={"queue": "long"}``), and what the schedule Lambda takes when a key is absent.
INPUT_DEFAULTS: Mapping[str, Any] = {"task": None, "args": [], "kwargs": {}, "queue": queues.JOBS}
INPUT_KEYS = tuple(INPUT_DEFAULTS)
#: ScheduleExpressionTimezone values that are UTC, the zone of beat_schedule's times.
UTC_ZONES = (None, "UTC", "Etc/UTC")
#: Where the entries are declared, as the report names it.
SOURCE = "tasks/schedules.py"

Status = Literal["ok", "missing", "differs", "refused", "extra"]


@dataclass(frozen=True)
class Finding:
    """One beat_schedule entry (or one template schedule without an entry) and its verdict."""

    name: str
    #: ``Function.EventId`` in the template, found or expected.
    event: str
    status: Status
    task: str | None = None
    expression: str | None = None
    #: The queue the job goes to, when not the default one.
    queue: str | None = None
    detail: str = ""
    #: The event to paste under the function's ``Events`` (missing or differing entries).
    snippet: str | None = None

    def __str__(self) -> str:
        if self.status == "extra":
            return (
                f"{self.event}: in template.yaml but not in beat_schedule ({SOURCE}); "
                "add the entry there or remove the event"
            )
        if self.status == "refused":
            return f"{self.name}: EventBridge Scheduler cannot run it: {self.detail}"
        head = f"{self.name} -> {self.event}: {self.task} at {self.expression}"
        if self.queue:
            head += f" on the {self.queue} queue"
        if self.status == "missing":
            return f"{head}: not in template.yaml; add under {FUNCTION}'s Events:"
        if self.status == "differs":
            return f"{head}: template.yaml differs: {self.detail}; replace the event with:"
        return head

    @property
    def brief(self) -> str:
        """One line for `galley local up`: the difference, and what fires (the template's)."""
        entry = f"beat_schedule entry {self.name}"
        if self.status == "extra":
            return f"{self.event} fires here and on AWS but is not in beat_schedule ({SOURCE})"
        if self.status == "missing":
            return f"{entry} is not in template.yaml: it fires neither here nor on AWS"
        if self.status == "differs":
            return f"{entry} differs from {self.event} ({self.detail}): the template's fires"
        if self.status == "refused":
            return f"{entry} cannot run on EventBridge Scheduler ({self.detail}): it never fires"
        return f"{self.name} -> {self.event}"


@dataclass(frozen=True)
class Report:
    findings: list[Finding]

    @property
    def differences(self) -> list[Finding]:
        return [finding for finding in self.findings if finding.status != "ok"]


@dataclass(frozen=True)
class _Wanted:
    """What an entry asks EventBridge for."""

    expression: str
    payload: dict[str, Any]
    #: What decided the queue when the entry's options did not (the app's routing).
    queue_by: str = ""


def check(
    template_path: Path = sam.DEFAULT_TEMPLATE, module: str = schedules.SCHEDULE_MODULE
) -> Report:
    """The project's beat_schedule against the template at ``template_path``.

    StackError, naming the file, if the template cannot be read or its schedules found;
    BeatScheduleError if the app cannot be loaded to see where it routes the entries' tasks.
    """
    template = sam.load_template(template_path)
    try:
        sam.schedule_events(template)
    except StackError as error:
        raise StackError(f"{template_path}: {error}") from None
    beat_schedule = schedules.declared(module)
    return compare(beat_schedule, template, routing.routes(_routed(beat_schedule)))


def _routed(beat_schedule: Mapping[str, Any]) -> dict[str, routing.Request]:
    """The entries whose queue the app's routing decides: a task, and no queue in the options
    (the options win over any routing; other options are refused anyway)."""
    found = {}
    for name, entry in beat_schedule.items():
        if not isinstance(entry, Mapping) or entry.get("options"):
            continue
        task, args, kwargs = entry.get("task"), entry.get("args"), entry.get("kwargs")
        if not isinstance(task, str):
            continue
        try:  # a route function sees the arguments; ones the check refuses are left out
            args = json.loads(json.dumps(list(args) if isinstance(args, list | tuple) else []))
            kwargs = json.loads(json.dumps(dict(kwargs) if isinstance(kwargs, Mapping) else {}))
        except (TypeError, ValueError):
            args, kwargs = [], {}
        found[str(name)] = routing.Request(task, args, kwargs)
    return found


def compare(
    beat_schedule: Mapping[str, Any],
    template: Mapping[str, Any],
    routes: Mapping[str, routing.Route] | None = None,
) -> Report:
    """Every entry of ``beat_schedule``, then every template schedule no entry matched.

    ``routes``: where the app routes each entry's task (by entry name) when its options name no
    queue, as runner.local.routing finds it; an entry without one goes to the default queue.
    """
    routes = routes or {}
    events = _events(template)
    claimed: dict[str, str] = {}
    findings = []
    for name, entry in beat_schedule.items():
        event_name = event_id(str(name))
        where = events.get(event_name)
        event = where[0] if where else f"{FUNCTION}.{event_name}"
        if not event_name or event_name in claimed:
            also = f"; entry {claimed[event_name]!r} is also {event}" if event_name else ""
            detail = f"its name gives no distinct template event id{also}"
            findings.append(Finding(str(name), event, "refused", detail=detail))
            continue
        claimed[event_name] = str(name)
        props = where[1] if where else None
        findings.append(_finding(str(name), entry, event, props, routes.get(str(name))))
    for event_name, (event, _) in events.items():
        if event_name not in claimed:
            findings.append(Finding("", event, "extra"))
    return Report(findings)


def event_id(name: str) -> str:
    """A template event's logical id for an entry name: ``nightly-import-summary`` ->
    ``NightlyImportSummary`` (letters and digits only, as CloudFormation requires)."""
    return "".join(part[:1].upper() + part[1:] for part in re.split(r"[^0-9A-Za-z]+", name))


def snippet(event: str, name: str, expression: str, payload: Mapping[str, Any]) -> str:
    """The ScheduleV2 event for an entry, indented to paste under a function's ``Events``."""
    kebab = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "-", name)
    kebab = re.sub(r"[^0-9A-Za-z]+", "-", kebab).strip("-").lower()
    body = json.dumps(dict(payload))
    tag = "!Sub " if schedules.references(payload) else ""
    lines = [
        f"{event}:",
        "  Type: ScheduleV2",
        "  Properties:",
        f'    Name: !Sub "${{AWS::StackName}}-{kebab}"',
        f"    Description: {json.dumps(f'beat_schedule entry {name} ({SOURCE})')}",
        f"    ScheduleExpression: {expression}",
        f"    Input: {tag}>-",
        f"      {body}",
        "    RetryPolicy:",
        "      MaximumRetryAttempts: 3",
    ]
    return "\n".join(" " * 8 + line for line in lines)


def _events(template: Mapping[str, Any]) -> dict[str, tuple[str, Mapping[str, Any]]]:
    """Schedule events by logical id: ``(Function.EventId, the event's Properties)``."""
    found: dict[str, tuple[str, Mapping[str, Any]]] = {}
    for logical_id, name, props in sam.schedule_events(template):
        found.setdefault(name, (f"{logical_id}.{name}", props))
    return found


def _finding(
    name: str,
    entry: Any,
    event: str,
    props: Mapping[str, Any] | None,
    route: routing.Route | None,
) -> Finding:
    try:
        wanted = _wanted(entry, route)
    except BeatScheduleError as error:
        return Finding(name, event, "refused", detail=str(error))
    fix = snippet(event.split(".", 1)[1], name, wanted.expression, wanted.payload)
    common = {
        "task": wanted.payload["task"],
        "expression": wanted.expression,
        "queue": wanted.payload.get("queue"),
    }
    if props is None:
        return Finding(name, event, "missing", snippet=fix, **common)
    problems = _differences(wanted, props)
    if problems:
        return Finding(name, event, "differs", detail="; ".join(problems), snippet=fix, **common)
    return Finding(name, event, "ok", **common)


def _wanted(entry: Any, route: routing.Route | None = None) -> _Wanted:
    """The expression and Input an entry asks for; BeatScheduleError if EventBridge cannot.

    The queue is the one the entry's options name, else the one ``route`` (the app's routing of
    its task) gives, else the default.
    """
    if not isinstance(entry, Mapping):
        raise BeatScheduleError(f"an entry must be a dict, got {type(entry).__name__}")
    unknown = sorted(set(entry) - ENTRY_KEYS)
    if unknown:
        raise BeatScheduleError(f"unknown key {unknown[0]!r} (an entry has {sorted(ENTRY_KEYS)})")
    if not entry.get("task"):
        raise BeatScheduleError("no task")
    if "schedule" not in entry:
        raise BeatScheduleError("no schedule")
    queue, queue_by = _queue_option(entry.get("options")), ""
    if queue is None and route is not None:
        queue, queue_by = _routed_queue(route), route.by
    if entry.get("relative"):
        raise BeatScheduleError("relative=True: EventBridge cannot round an interval to its unit")
    payload = _payload(entry)
    if queue is not None and queue != queues.JOBS:
        payload["queue"] = queue
    return _Wanted(eventbridge.expression(entry["schedule"]), payload, queue_by)


def _routed_queue(route: routing.Route) -> str:
    """The stack queue the app routes an entry's task to; BeatScheduleError if none."""
    roles = ", ".join(queues.ROLES)
    if route.queue is None:
        raise BeatScheduleError(
            f"celery beat cannot send it: {route.problem} (the stack's queues are {roles})"
        )
    if route.queue not in queues.ROLES:
        raise BeatScheduleError(
            f"celery beat sends it to queue {route.queue!r} ({route.by}); the stack's queues "
            f"are {roles}"
        )
    return route.queue


def _queue_option(options: Any) -> str | None:
    """The queue an entry's options name, Celery's way (``options={"queue": "long"}``), or None;
    BeatScheduleError for any other option, which the schedule Lambda cannot take."""
    if not options:
        return None
    if not isinstance(options, Mapping):
        raise BeatScheduleError(f"options must be a dict, got {type(options).__name__}")
    if set(options) != {"queue"}:
        raise BeatScheduleError(
            f"options {dict(options)!r}: EventBridge sends the schedule Lambda task, args, kwargs "
            "and a queue only; keep only queue"
        )
    queue = options["queue"]
    if queue not in queues.ROLES:
        raise BeatScheduleError(
            f"queue {queue!r}: the stack's queues are {', '.join(queues.ROLES)}"
        )
    return str(queue)


def _payload(entry: Mapping[str, Any]) -> dict[str, Any]:
    args, kwargs = entry.get("args", []), entry.get("kwargs", {})
    if not isinstance(args, list | tuple):
        raise BeatScheduleError(f"args must be a list, got {type(args).__name__}")
    if not isinstance(kwargs, Mapping):
        raise BeatScheduleError(f"kwargs must be a dict, got {type(kwargs).__name__}")
    payload = {"task": entry["task"], "args": list(args), "kwargs": dict(kwargs)}
    try:
        payload = json.loads(json.dumps(payload, allow_nan=False))
    except (TypeError, ValueError) as error:
        raise BeatScheduleError(f"args and kwargs must be JSON: {error}") from None
    try:
        JobRequest.model_validate(payload)
    except ValidationError as error:
        problem = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
        raise BeatScheduleError(f"the schedule Lambda would refuse its input: {problem}") from None
    unknown = [
        ref for ref in schedules.references(payload) if ref not in schedules.STACK_REFERENCES
    ]
    if unknown:
        known = ", ".join(f"${{{ref}}}" for ref in schedules.STACK_REFERENCES)
        raise BeatScheduleError(
            f"${{{unknown[0]}}}: celery beat cannot fill it in (it knows {known})"
        )
    return {key: value for key, value in payload.items() if value or key == "task"}


def _differences(wanted: _Wanted, props: Mapping[str, Any]) -> list[str]:
    problems = _expression_differences(wanted.expression, props)
    problems += _input_differences(wanted, props.get("Input"))
    if props.get("State") == "DISABLED":
        problems.append("State is DISABLED: it never fires on AWS")
    return problems


def _expression_differences(wanted: str, props: Mapping[str, Any]) -> list[str]:
    problems = []
    zone = props.get("ScheduleExpressionTimezone")
    if zone not in UTC_ZONES:
        problems.append(f"ScheduleExpressionTimezone is {zone}; beat_schedule's times are UTC")
    expression = props.get("ScheduleExpression")
    if not isinstance(expression, str):
        return [*problems, f"ScheduleExpression {expression!r} is not a plain expression"]
    try:
        same = cadence.parse(expression).fires_like(cadence.parse(wanted))
    except ScheduleExpressionError as error:
        return [*problems, f"ScheduleExpression {error}"]
    if not same:
        problems.append(f"ScheduleExpression is {expression}, beat_schedule's is {wanted}")
    return problems


def _input_differences(wanted: _Wanted, raw: Any) -> list[str]:
    substituted = isinstance(raw, Mapping) and "Fn::Sub" in raw
    text = raw.get("Fn::Sub") if isinstance(raw, Mapping) else raw
    if not isinstance(text, str):
        return [f"Input {raw!r} cannot be read (a JSON string or !Sub of one)"]
    try:
        given = json.loads(text)
    except ValueError as error:
        return [f"Input is not JSON ({error})"]
    except RecursionError:
        return ["Input is not JSON (nested too deep)"]
    if not isinstance(given, dict):
        return ["Input is not a JSON object"]
    problems = []
    unfilled = schedules.references(given) if not substituted else []
    if unfilled:
        # CloudFormation fills in ${Name} only inside Fn::Sub: EventBridge would send the text.
        names = ", ".join(f"${{{name}}}" for name in unfilled)
        problems.append(
            f"Input is not !Sub, so EventBridge sends {names} as written; write it Input: !Sub"
        )
    problems += [
        f"Input has {key}, which a beat_schedule entry cannot say"
        for key in given
        if key not in INPUT_KEYS
    ]
    for key, default in INPUT_DEFAULTS.items():
        mine, theirs = wanted.payload.get(key, default), given.get(key, default)
        if mine != theirs:
            verb = "are" if key in ("args", "kwargs") else "is"
            why = f" ({wanted.queue_by})" if key == "queue" and wanted.queue_by else ""
            problems.append(
                f"Input {key} {verb} {_show(theirs)}, beat_schedule's {verb} {_show(mine)}{why}"
            )
    return problems


def _show(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)
