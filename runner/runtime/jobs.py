"""Sending jobs through the Celery app, checked before anything is sent."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from celery import Celery

from runner.core import contracts
from runner.errors import InvalidTaskInput, JobError


def registered_tasks(app: Celery) -> list[str]:
    """The names of the tasks the app's task modules define (Celery's own ``celery.*`` excluded)."""
    app.loader.import_default_modules()
    return sorted(name for name in app.tasks if not name.startswith("celery."))


def parse_json_args(args: str | None, kwargs: str | None) -> tuple[list[Any], dict[str, Any]]:
    """``--args`` must be a JSON array and ``--kwargs`` a JSON object."""
    parsed_args = _parse(args, "--args", list, 'a JSON array like ["a", 1]') if args else []
    parsed_kwargs = (
        _parse(kwargs, "--kwargs", dict, 'a JSON object like {"n": 1}') if kwargs else {}
    )
    return parsed_args, parsed_kwargs


def _parse(text: str, option: str, kind: type, expected: str) -> Any:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise JobError(f"{option} is not valid JSON: {error.msg} at position {error.pos}") from None
    except RecursionError:
        raise JobError(f"{option} is nested too deeply to read") from None
    except ValueError as error:  # e.g. an integer over Python's 4300-digit limit
        raise JobError(f"{option} cannot be read: {error}") from None
    if not isinstance(value, kind):
        raise JobError(f"{option} must be {expected}, got {type(value).__name__}")
    return value


def parse_timing(countdown: float | None, eta: str | None) -> dict[str, Any]:
    """``countdown`` or ``eta`` (ISO 8601; UTC when it names no offset) as apply_async options."""
    if countdown is not None and eta is not None:
        raise JobError("give --countdown or --eta, not both")
    if eta is None:
        return {} if countdown is None else {"countdown": countdown}
    try:
        when = datetime.fromisoformat(eta)
    except ValueError:
        raise JobError(
            f"--eta: {eta!r} is not an ISO 8601 date and time (e.g. 2026-12-01T09:00:00+00:00)"
        ) from None
    try:
        return {"eta": (when if when.tzinfo else when.replace(tzinfo=UTC)).astimezone(UTC)}
    except OverflowError:
        raise JobError(f"--eta: {eta!r} is out of range once in UTC") from None


def submit(app: Celery, name: str, args: list[Any], kwargs: dict[str, Any], **options: Any) -> str:
    """Send task ``name`` with apply_async ``options`` (queue, countdown, eta); refuse unknown
    names, wrong arguments and an unconfigured queue before anything is sent."""
    known = registered_tasks(app)
    if name not in known:
        raise JobError(f"unknown task {name!r}; known tasks: {', '.join(known) or 'none'}")
    task = app.tasks[name]
    try:
        contracts.check(name, args, kwargs, getattr(task, "input_model", None))
    except InvalidTaskInput as error:
        raise JobError(f"arguments do not fit {name}: {error}") from None
    try:
        # Celery checks the arguments against the task's signature before sending.
        # an option not given is not passed: queue=None would override the task's own queue
        given = {key: value for key, value in options.items() if value is not None}
        return str(task.apply_async(args=args, kwargs=kwargs, **given).id)
    except TypeError as error:
        raise JobError(f"arguments do not fit {name}: {error}") from None
