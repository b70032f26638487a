"""Where ``celery beat`` sends each beat_schedule entry's task: the app's own routing.

An entry whose options name no queue goes where the app routes its task, as ``celery beat``
sends it: by ``task_routes``, by the task's ``queue`` (``@app.task(queue="long")``), else to the
default queue, ``jobs``. The schedule Lambda sends a job where its Input's ``queue`` says, so
`galley schedules` needs that queue in the Input too (runner/local/schedule_check.py).

Celery answers the question (``app.amqp.router.route``, what ``celery beat`` calls), but only a
configured app can, and Galley's app configures itself from the worker's settings
(``GALLEY_QUEUE_URL``, ``GALLEY_RESULTS_BUCKET``...), which `galley schedules` in CI has no reason
to have. A Celery app is configured once per process, so configuring this process's app with
stand-in values would leave it wrong for anything else here (a test suite, `galley local up`).
The question is therefore asked in a child process (``python -m runner.local.routing``): it
loads the app and its task modules as ``celery beat`` does (``GALLEY_TASK_MODULES`` included),
with stand-in queue URLs and bucket (routing reads the queues' roles, never their URLs), and
answers in JSON. No AWS call is made; it costs a second or so.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from runner.core import queues, settings
from runner.errors import BeatScheduleError

#: Settings the child's app is configured with: routing needs both queues' roles, nothing more.
STAND_INS = {
    settings.QUEUE_URL: "http://stand-in.invalid/000000000000/galley-jobs",
    settings.LONG_QUEUE_URL: "http://stand-in.invalid/000000000000/galley-long",
    settings.RESULTS_BUCKET: "galley-stand-in",
}
#: The one Galley variable routing depends on: more task modules, which may route.
KEPT = (settings.TASK_MODULES,)
#: How long the child may take to load the app and answer.
TIMEOUT_SECONDS = 120.0

#: What decided an entry's queue, as the check's messages name it.
BY_TASK_ROUTES = "the app's task_routes"
BY_TASK_QUEUE = "the task's queue="
BY_DEFAULT = "the default queue"


@dataclass(frozen=True)
class Request:
    """One entry's call, as ``celery beat`` makes it (a route function may read the arguments)."""

    task: str
    args: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Route:
    """Where Celery sends a call: the queue's name and what decided it, or why it cannot."""

    queue: str | None
    by: str = ""
    problem: str = ""


def routes(requests: Mapping[str, Request]) -> dict[str, Route]:
    """The route of each request, by the same key, from the app's routing (in a child process).

    BeatScheduleError, on one line, if the app cannot be loaded (a task module that fails to
    import, a GALLEY_TASK_MODULES entry that cannot be found).
    """
    if not requests:
        return {}
    env = {key: value for key, value in os.environ.items() if not key.startswith("GALLEY_")}
    env.update({key: os.environ[key] for key in KEPT if key in os.environ})
    env.update(STAND_INS)
    # the child imports what this process imports (tasks/, GALLEY_TASK_MODULES) from where it does
    env["PYTHONPATH"] = os.pathsep.join(entry or os.getcwd() for entry in sys.path)
    question = json.dumps({key: asdict(request) for key, request in requests.items()})
    where = "where celery beat sends the entries' tasks"
    try:
        # argv is this interpreter and this module; no shell
        answer = subprocess.run(  # noqa: S603
            [sys.executable, "-m", __name__],
            input=question,
            capture_output=True,
            text=True,
            env=env,
            timeout=TIMEOUT_SECONDS,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise BeatScheduleError(
            f"cannot load the Celery app to see {where}: no answer in {TIMEOUT_SECONDS:g} s"
        ) from None
    if answer.returncode != 0:
        lines = [line for line in answer.stderr.splitlines() if line.strip()]
        reason = lines[-1] if lines else f"exit status {answer.returncode}"
        raise BeatScheduleError(f"cannot load the Celery app to see {where}: {reason}")
    found = json.loads(answer.stdout)
    return {key: Route(**found[key]) for key in requests}


def _route_here(requests: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """In the child: each request routed by this process's app, as ``celery beat`` routes it."""
    from celery.exceptions import QueueNotFound

    from runner.runtime.app import app

    app.loader.import_default_modules()  # the task modules, as celery beat loads them
    router = app.amqp.router  # made now: the modules may have set task_routes
    found: dict[str, dict[str, Any]] = {}
    for key, request in requests.items():
        name, args, kwargs = request["task"], request["args"], request["kwargs"]
        task = app.tasks.get(name)
        # Task.apply_async puts the task's own queue in the options; they win over task_routes.
        declared = getattr(task, "queue", None)
        options = {"queue": declared} if declared else {}
        try:
            routed = router.route(dict(options), name, args, kwargs, task_type=task)
        except QueueNotFound as error:
            found[key] = asdict(Route(None, problem=str(error).strip("\"'")))
            continue
        queue = routed.get("queue")
        if declared:
            by = BY_TASK_QUEUE
        elif router.routes and router.lookup_route(name, args, kwargs, {}, task):
            by = BY_TASK_ROUTES
        else:
            by = BY_DEFAULT
        found[key] = asdict(Route(str(getattr(queue, "name", queue) or queues.JOBS), by=by))
    return found


def main() -> int:
    """``python -m runner.local.routing``: requests as JSON on stdin, routes as JSON on stdout;
    on failure one line on stderr, and exit status 1."""
    requests = json.load(sys.stdin)
    try:
        # a task module that prints at import must not spoil the answer
        with contextlib.redirect_stdout(sys.stderr):
            found = _route_here(requests)
    except Exception as error:
        print(" ".join(f"{type(error).__name__}: {error}".split()), file=sys.stderr)
        return 1
    json.dump(found, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
