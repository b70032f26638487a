"""Whether a job's links (callbacks, errbacks, chain, chord) can be sent — checked before it runs.

Celery's tracer sends a job's links after its body returned, before it stores the result. A link
it cannot send (routed to a queue this app does not have, a group without tasks, a countdown that
is not a number) turns the job into a FAILURE *after its effect happened*: dead-lettered, then
redriven, it runs twice. Both runtimes ask :func:`problem` first and refuse such a job, with the
reason, before the body runs. Light checks only: no message is sent.
"""

from __future__ import annotations

import re
from typing import Any

from celery import Celery
from celery.exceptions import QueueNotFound

from runner.core import queues

#: Where a job's links live: the protocol-2 embed (body element 3) over the headers.
LINK_NAMES = ("callbacks", "errbacks", "chain")
#: Canvas types whose kwargs hold more signatures.
_CONTAINERS = {"chain": ("tasks",), "group": ("tasks",), "chord": ("header", "body")}
_NUMERIC_OPTIONS = ("countdown", "priority", "time_limit", "soft_time_limit")
_MAX_DEPTH = 20


def problem(app: Celery, headers: dict[str, Any], embed: dict[str, Any] | None) -> str | None:
    """Why the links of a job could not be sent after it ran, or None."""
    links = {**headers, **(embed or {})}
    for name in LINK_NAMES:
        for signature in links.get(name) or ():
            reason = _signature(app, signature, 0)
            if reason:
                return f"its {name} cannot be sent: {reason}"
    chord = links.get("chord")
    if chord:
        reason = _signature(app, chord, 0)
        if reason:
            return f"its chord cannot be sent: {reason}"
    return None


def _signature(app: Celery, data: Any, depth: int) -> str | None:
    if depth > _MAX_DEPTH:
        return "links nested too deeply"
    if not isinstance(data, dict):
        return f"a {type(data).__name__} is not a task signature"
    kind = data.get("subtask_type")
    kwargs = data.get("kwargs") or {}
    options = data.get("options") or {}
    if not isinstance(kwargs, dict) or not isinstance(options, dict):
        return "a signature whose kwargs or options are not objects"
    if kind in _CONTAINERS:
        return _container(app, kind, kwargs, depth)
    for key in _NUMERIC_OPTIONS:
        value = options.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            return f"option {key!r} is not a number: {value!r:.100}"
    for key in ("eta", "expires"):
        value = options.get(key)
        if value is not None and not isinstance(value, str | int | float):
            return f"option {key!r} is not a time: {value!r:.100}"
    if kind is None:
        return _route(app, data.get("task"), options)
    return None


def _container(app: Celery, kind: str, kwargs: dict[str, Any], depth: int) -> str | None:
    for field in _CONTAINERS[kind]:
        inner = kwargs.get(field)
        members = [inner] if field == "body" else inner
        if not isinstance(members, list | tuple) or not members or None in members:
            return f"a {kind} without {field}"
        for member in members:
            reason = _signature(app, member, depth + 1)
            if reason:
                return reason
    return None


def _route(app: Celery, task: Any, options: dict[str, Any]) -> str | None:
    if not isinstance(task, str) or not task:
        return "a signature without a task name"
    return route_problem(app, task, options, task_type=app.tasks.get(task))


def route_problem(
    app: Celery, task: str, options: dict[str, Any], task_type: Any = None
) -> str | None:
    """Why a send of ``task`` with ``options`` would reach no queue of ``app``, or None.

    As Celery routes it: the options, else the queue the task declares (``@app.task(queue=
    ...)``, which ``Task.apply_async`` adds to the options), else ``task_routes``, else the
    default queue. A named exchange reaches nothing: the app's queues are predefined SQS
    queues, bound to none, and kombu drops a message no binding matches without a word.
    """
    options = dict(options)
    # the registry as it is: Celery's send_task does not finalize the app to look a task up
    task_type = task_type or options.get("task_type") or app._tasks.get(task)
    declared = getattr(task_type, "queue", None)
    if declared and not options.get("queue"):
        options["queue"] = declared
    try:
        route = app.amqp.router.route(options, task, task_type=task_type)
    except QueueNotFound as error:
        return f"task {task!r} is routed to a queue this app does not have: {_missing(error)}"
    except Exception as error:  # anything else routing would raise after the body ran
        return f"task {task!r} cannot be routed: {type(error).__name__}: {error}"
    exchange = route.get("exchange")
    name = getattr(exchange, "name", exchange)
    if name:
        return (
            f"task {task!r} is routed through exchange {name!r}, which no queue receives from "
            "on SQS; route by queue instead (queue='long', or task_routes {'queue': ...})"
        )
    return None


def _missing(error: QueueNotFound) -> str:
    """What to do about the queue Celery did not find: the variable naming a role's queue, or
    the roles there are."""
    found = re.search(r"Queue '([^']*)'", str(error))
    name = found.group(1) if found else ""
    if name in queues.QUEUE_VARIABLE:
        return f"the {name} queue ({queues.QUEUE_VARIABLE[name]} is not set)"
    return f"{name!r} (the stack's queues are {', '.join(queues.ROLES)})"
