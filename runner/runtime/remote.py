"""Celery's remote control on SQS: one clear line naming what answers instead.

``celery inspect``, ``status``, ``control``, ``events`` and Flower talk to workers through a
broadcast (fanout) exchange and per-client reply queues (``<uuid>.reply.celery.pidbox``). SQS has
no fanout, and Galley's broker knows only the stack's queues, so stock Celery fails deep in kombu
with the name of a reply queue that tells a user nothing. The app's ``control`` and ``events``
(:class:`Control`, :class:`Events`, set by runner.runtime.app) refuse every call that needs a
broadcast or an event stream, before any queue is touched, with a :class:`NoBroadcast` naming the
Galley command that answers the same question. It is a ``click.ClickException``, so the
``celery`` command prints ``Error: <the line>`` and exits 69 (EX_UNAVAILABLE, Celery's own code
for a remote-control failure), with no traceback.

What still works: ``app.control.purge()`` (``celery worker --purge``: it purges the consumed
queue, no broadcast), ``app.control.mailbox`` (``celery beat`` builds its node from it, and finds
no fanout), and an events *dispatcher* that is disabled (every worker builds one; with events off,
as runner.runtime.app configures, it sends nothing).

Revoking works, without a broadcast: ``app.control.revoke`` (and so ``AsyncResult.revoke()``),
``app.control.terminate`` and ``celery control revoke|terminate`` record the revocation in S3
(runner/runtime/revoking.py), where every worker reads it. Revoking by stamped headers, and
``inspect revoked``, are refused with the line saying to revoke by id.
"""

from __future__ import annotations

import functools
import warnings
from functools import cached_property
from typing import Any

import click
from celery.app.control import Control as CeleryControl
from celery.app.control import Inspect as CeleryInspect
from celery.app.events import Events as CeleryEvents

from runner.core import queues
from runner.errors import RemoteControlError, RevokeError
from runner.runtime import revoking

#: Celery's exit code for a remote-control command that cannot run (celery.platforms).
EX_UNAVAILABLE = 69

STATUS = (
    "`galley status` shows each queue's waiting, in-flight and delayed jobs and the last failures"
)
#: What answers the question a command asks, where it is not ``galley status``.
ANSWERS = {
    "query_task": "`galley result ID` reads a job's state and result",
    "shutdown": "stop a worker with SIGTERM to its process (running jobs finish first): "
    "`galley local down` locally, the ECS service's desired count on AWS",
    "add_consumer": "a Galley worker serves the one queue it starts with: "
    "`celery -A runner.app worker -Q long`",
    "cancel_consumer": "a Galley worker serves the one queue it starts with; stop it with SIGTERM",
    "rate_limit": "set it on the task (`@app.task(rate_limit=...)`) and restart the workers",
    "time_limit": "set it on the task (`@app.task(time_limit=...)`) or GALLEY_TASK_TIME_LIMIT, "
    "and restart the workers",
    "pool_grow": "start the worker with the --concurrency it needs",
    "pool_shrink": "start the worker with the --concurrency it needs",
    "autoscale": "start the worker with the --concurrency it needs",
    "pool_restart": "restart the worker (SIGTERM; `galley local up` restarts on a tasks/ change)",
    "enable_events": "Galley workers send no events; GALLEY_LOG_FORMAT=json logs each task's state",
    "disable_events": "Galley workers send no events",
}
#: Remote-control commands that revoke by id: carried out through S3 (runner/runtime/revoking.py).
REVOKES = frozenset({"revoke", "terminate"})
#: Revoke commands Galley has no answer for but revoking by id.
BY_ID_ONLY = frozenset({"revoke_by_stamped_headers", "revoked"})
BY_ID = (
    "Galley revokes by task id only (`galley revoke ID...`, `AsyncResult(id).revoke()`); the "
    "revocations are the objects under revoked/ in the results bucket"
)
#: Node name in the reply of `celery control revoke`: no worker answers, the bucket does.
REPLY_NODE = "galley (S3)"
EVENTS = (
    "Galley workers send no events (SQS has no broadcast to carry them); `galley status` shows "
    "the queues and the last failures, and GALLEY_LOG_FORMAT=json logs one JSON line per task "
    "state (for CloudWatch Logs Insights)"
)
FLOWER = (
    "Flower needs Celery's events and remote control, and SQS has no broadcast to carry them; "
    + STATUS
)


class NoBroadcast(RemoteControlError, click.ClickException):
    """A remote-control call SQS cannot carry; as a ClickException the ``celery`` command
    prints its one line and exits :data:`EX_UNAVAILABLE`."""

    exit_code = EX_UNAVAILABLE

    def __init__(self, message: str) -> None:
        RemoteControlError.__init__(self, message)
        click.ClickException.__init__(self, message)


def refusal(command: str, *, python_call: str) -> NoBroadcast:
    """The error for remote-control ``command``, named as the user ran it: the ``celery`` command
    line when it runs under the celery CLI, else ``python_call``."""
    what = _cli_command() or python_call
    if command in BY_ID_ONLY:
        return NoBroadcast(f"{what}: {BY_ID}")
    answer = ANSWERS.get(command, STATUS)
    return NoBroadcast(f"{what}: SQS has no broadcast, so no worker can be asked; {answer}")


class RevokeRefused(RevokeError, click.ClickException):
    """A revoke with a bad id or signal; under the ``celery`` command one line, exit 2 (usage)."""

    exit_code = 2

    def __init__(self, message: str) -> None:
        RevokeError.__init__(self, message)
        click.ClickException.__init__(self, message)


def revoke(app: Any, task_ids: Any, terminate: bool, signal: Any) -> list[revoking.Revoked]:
    try:
        return revoking.revoke(app, task_ids, terminate=terminate, signal=signal)
    except RevokeError as error:
        raise RevokeRefused(str(error)) from None


class Inspect(CeleryInspect):
    """``app.control.inspect()``: every request is refused (see the module docstring)."""

    def _request(self, command: str, **kwargs: Any) -> Any:
        raise refusal(command, python_call=f"app.control.inspect().{command}()")


class Control(CeleryControl):
    """``app.control``: broadcasts are refused with the answer; ``purge`` is Celery's."""

    @cached_property
    def inspect(self) -> Any:
        return self.app.subclass_with_self(Inspect, reverse="control.inspect")

    def broadcast(
        self,
        command: str,
        arguments: Any = None,
        *args: Any,
        callback: Any = None,
        **kwargs: Any,
    ) -> Any:
        """``revoke`` and ``terminate`` (``celery control revoke ID...``) are carried out, with
        one reply as a worker's; any other command is refused with its answer."""
        if command not in REVOKES:
            raise refusal(command, python_call=f"app.control.broadcast({command!r})")
        arguments = dict(arguments or {})
        terminate = command == "terminate" or bool(arguments.get("terminate"))
        done = revoke(self.app, arguments.get("task_id") or [], terminate, arguments.get("signal"))
        reply = {REPLY_NODE: {"ok": "\n".join(o.line for o in done) or "no task ids given"}}
        if callback is not None:
            callback(reply)
        return [reply]

    def revoke(
        self,
        task_id: Any,
        destination: Any = None,
        terminate: bool = False,
        signal: Any = None,
        **kwargs: Any,
    ) -> list[revoking.Revoked]:
        """Record the revocation of ``task_id`` (an id or a list) in S3 and write REVOKED at
        once (runner/runtime/revoking.py); returns what was done for each id."""
        return revoke(self.app, task_id, terminate, signal)

    def terminate(
        self, task_id: Any, destination: Any = None, signal: Any = None, **kwargs: Any
    ) -> list[revoking.Revoked]:
        return revoke(self.app, task_id, True, signal)

    def revoke_by_stamped_headers(self, headers: Any, *args: Any, **kwargs: Any) -> Any:
        raise refusal(
            "revoke_by_stamped_headers", python_call="app.control.revoke_by_stamped_headers()"
        )


class Events(CeleryEvents):
    """``app.events``: no receiver (nothing sends events), and no monitor under ``celery
    events``. Every worker builds a dispatcher (disabled: it sends nothing) and, for gossip, a
    receiver class and a state it does not use on SQS; those stay Celery's."""

    @property
    def Receiver(self) -> Any:  # noqa: N802 (Celery's name)
        def refuse(*args: Any, **kwargs: Any) -> Any:
            raise NoBroadcast(f"{_cli_command() or 'app.events.Receiver'}: {EVENTS}")

        return refuse

    @property
    def State(self) -> Any:  # noqa: N802 (Celery's name)
        command = _cli_command()
        if command is not None and command.startswith("celery events"):
            raise NoBroadcast(f"{command}: {EVENTS}")  # before curses takes the terminal
        return super().State


def flower_refusal() -> NoBroadcast:
    return NoBroadcast(f"celery flower: {FLOWER}")


def check_purge(app: Any, selected: Any, excluded: Any) -> None:
    """``celery purge -Q/-X``: every queue named is one of the app's, or :class:`NoBroadcast`
    says which is not. Celery passes an unknown name to kombu, which stops with a traceback
    (``UndefinedQueueException``); an unknown ``-X`` (a typo) would purge every other queue."""
    known = list(app.amqp.queues)
    for option, names in (("-Q", selected), ("-X", excluded)):
        for name in names or ():
            if name in known:
                continue
            if name in queues.ROLES:  # the stack has it, but this process was not told its URL
                missing = queues.QUEUE_VARIABLE[name]
                raise NoBroadcast(f"celery purge {option} {name}: {missing} is not set")
            raise NoBroadcast(
                f"celery purge {option} {name!r}: not a queue of this stack (its queues: "
                f"{', '.join(known)}); a dead-letter queue is emptied with `galley dlq purge "
                "--queue jobs|long`"
            )


def install_cli_guards() -> None:
    """What the ``celery`` command needs to answer in one line on a Galley app.

    - :func:`check_purge` runs before Celery's ``celery purge`` (its callback, wrapped once per
      process): Celery offers no hook between parsing ``-Q`` and purging.
    - Celery's ``celery events`` declares ``-d`` twice (``--dump`` and ``--detach``), and click
      warns about it on every run, in four lines before the answer: that warning is ignored.
    """
    warnings.filterwarnings(
        "ignore", message="The parameter -d is used more than once", category=UserWarning
    )
    from celery.bin.purge import purge

    original = purge.callback
    if original is None or getattr(original, "galley_checked", False):
        return

    @functools.wraps(original)
    def checked(*args: Any, **kwargs: Any) -> Any:
        app = click.get_current_context().obj.app
        if hasattr(app, "galley_settings"):  # a Galley app (this venv may run others)
            check_purge(app, kwargs.get("queues"), kwargs.get("exclude_queues"))
        return original(*args, **kwargs)

    checked.galley_checked = True  # type: ignore[attr-defined]
    purge.callback = checked


def _cli_command() -> str | None:
    """``celery <command> [<sub-command>]`` when running under the celery CLI, else None."""
    ctx = click.get_current_context(silent=True)
    if ctx is None or ctx.find_root().command.name != "celery":
        return None
    sub = ctx.params.get("command")
    return " ".join(["celery", str(ctx.info_name), *([str(sub)] if sub else [])])
