"""`galley dlq`: list, show, redrive and purge a dead-letter queue. Thin over runner.ops.dlq."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any, TypeVar

import click
from botocore.exceptions import BotoCoreError, ClientError

from runner.cli.failures import one_line_errors
from runner.cli.text import shown
from runner.core import aws, settings
from runner.errors import WireError
from runner.ops import dlq as ops
from runner.wire import kombu_json

_F = TypeVar("_F", bound=Callable[..., Any])
#: Widest reason the table shows; `--json` and `show` give it whole.
REASON_WIDTH = 70


def _queue_option(command: _F) -> _F:
    roles = ", ".join(f"{name} (${role.variable})" for name, role in ops.ROLES.items())
    return click.option(
        "--queue",
        "queue",
        default=None,
        metavar="|".join([*ops.ROLES, "URL"]),
        help=f"The dead-letter queue: {roles} or a queue URL [default: {ops.DEFAULT_ROLE}].",
    )(command)


@contextmanager
def _clear_errors() -> Iterator[None]:
    """Every command's one-line errors, an SQS fault named as such."""
    with one_line_errors():
        try:
            yield
        except (ClientError, BotoCoreError) as error:
            raise click.ClickException(f"SQS: {error}") from None


def _echo(text: str, *, err: bool = False) -> None:
    """click.echo for text that may hold a message's lone surrogates (legal in JSON, not in
    UTF-8): they print as escapes instead of failing the command."""
    click.echo(text.encode("utf-8", "backslashreplace").decode("utf-8"), err=err)


def _connect(queue: str | None) -> tuple[Any, str]:
    """An SQS client and the URL of the DLQ ``--queue`` names (a role or a URL)."""
    config = settings.load(settings.DlqSettings)
    url = ops.queue_url(config, queue)
    client = aws.client("sqs", endpoint_url=config.endpoint_url, region=config.region)
    return client, url


@click.group("dlq")
def dlq() -> None:
    """The dead-letter queue: what failed and why; send it back; empty it.

    IDs are task ids, or SQS message ids for messages that are not Celery tasks.
    """


@dlq.command("list")
@_queue_option
@click.option("--limit", type=click.IntRange(min=1), default=ops.DEFAULT_LIMIT, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def list_(queue: str | None, limit: int, as_json: bool) -> None:
    """List the messages with task, id, receive count, when each failed (UTC) and the reason.

    Reading a message counts as a receive: each listing adds one to every receive count.
    """
    with _clear_errors():
        sqs, url = _connect(queue)
        letters = ops.peek(sqs, url, limit)
    if as_json:
        _echo(_json([letter.as_dict() for letter in letters], indent=2))
        return
    if not letters:
        _echo(f"no messages in {url}")
        return
    rows = [("TASK", "ID", "RECEIVES", "FAILED AT", "REASON")]
    rows += [
        (
            shown(letter.task or "(undecodable)"),
            shown(letter.task_id or letter.message_id),
            str(letter.receive_count),
            _when(letter.failed_at) + ("*" if _sent_at_only(letter) else ""),
            shown(ops.shorten_reason(letter.reason, REASON_WIDTH)),
        )
        for letter in letters
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        padded = [cell.ljust(width) for cell, width in zip(row[:4], widths, strict=True)]
        _echo("  ".join([*padded, row[4]]))
    if any(_sent_at_only(letter) for letter in letters):
        _echo(f"* {ops.SENT_AT_NOTE}")
    more = " (--limit reached)" if len(letters) == limit else ""
    _echo(f"{len(letters)} message(s) in {url}{more}")


@dlq.command("show")
@_queue_option
@click.argument("message_id", metavar="ID")
def show(queue: str | None, message_id: str) -> None:
    """Print one message decoded (task, id, args, kwargs, eta, retries, headers) and its reason."""
    with _clear_errors():
        sqs, url = _connect(queue)
        letters = ops.find(sqs, url, message_id)
    for number, letter in enumerate(letters):
        if number:
            _echo("")
        _show(letter)


def _show(letter: ops.DeadLetter) -> None:
    sent = _sent_at_only(letter)
    fields: list[tuple[str, Any]] = [("message id", letter.message_id)]
    try:
        message = letter.decoded()
    except WireError as error:
        fields += [("task", "(undecodable)"), ("error", error.reason), ("body", letter.body[:500])]
    else:
        fields += [
            ("task", message.task),
            ("id", message.id),
            ("args", _json(message.args)),
            ("kwargs", _json(message.kwargs)),
            ("eta", message.eta.isoformat() if message.eta else None),
            ("retries", message.retries),
        ]
    fields += [
        ("reason", letter.reason),
        ("source queue", letter.source_queue),
        ("failed at", _when(letter.failed_at) + (f" ({ops.SENT_AT_NOTE})" if sent else "")),
        ("receives", letter.receive_count),
    ]
    for name, value in fields:
        _echo(f"{name + ':':<14}{'-' if value is None else shown(str(value))}")
    if letter.task_id is not None:
        headers = _json(letter.decoded().headers, indent=2)
        _echo("headers:\n" + "\n".join("  " + line for line in headers.splitlines()))


@dlq.command("redrive")
@_queue_option
@click.argument("ids", nargs=-1, metavar="[ID]...")
@click.option("--all", "all_", is_flag=True, help="Every message in the queue.")
@click.option(
    "--to", "to", default=None, metavar="URL", help="Send here instead of each source queue."
)
def redrive(queue: str | None, ids: tuple[str, ...], all_: bool, to: str | None) -> None:
    """Send messages back to the queue they failed on (or --to), then delete them here.

    Nothing is lost: a message leaves the DLQ only after it was sent. A job goes back as it
    failed (task id, arguments, idempotency key) with its retry count set back to 0, so a rerun
    is the same job with all its retries. A job past its expiry time stays here: its queue
    would revoke it without running it.
    """
    if all_ == bool(ids):
        raise click.UsageError("give message IDs or --all (not both)")
    if to is not None and not to.startswith(("https://", "http://")):
        raise click.UsageError(f"--to must be a queue URL, got {to!r}")
    with _clear_errors():
        sqs, url = _connect(queue)
        result = ops.redrive(sqs, url, to=to, ids=None if all_ else ids)
    for moved in result.moved:
        name = moved.task or "(undecodable)"
        reset = f" (retries {moved.spent_retries} -> 0)" if moved.spent_retries else ""
        _echo(f"moved {name} {moved.task_id or moved.message_id} -> {moved.queue}{reset}")
    for failed in result.failed:
        _echo(f"not moved {failed.task_id or failed.message_id}: {failed.reason}", err=True)
    _echo(f"{len(result.moved)} moved, {len(result.failed)} not moved")
    if result.failed:
        raise click.ClickException(f"{len(result.failed)} message(s) not moved")


@dlq.command("purge")
@_queue_option
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def purge(queue: str | None, yes: bool) -> None:
    """Delete every message in the dead-letter queue, once confirmed (declining purges
    nothing and is no error)."""
    with _clear_errors():
        sqs, url = _connect(queue)
        count = ops.count(sqs, url)
    if count == 0:
        _echo(f"no messages in {url}")
        return
    if not yes and not click.confirm(f"Delete {count} messages from {url}?"):
        _echo("nothing purged")
        return
    with _clear_errors():
        ops.purge(sqs, url)
    _echo(f"purged {url} ({count} messages)")


def _json(value: Any, indent: int | None = None) -> str:
    """JSON for printing whatever a message holds. Values JSON has no form for print as they
    travel, in kombu's type markers (``{"__type__": "datetime", "__value__": "..."}``: how
    Celery sends datetime, date, time, Decimal, UUID and bytes), anything else as its repr."""
    return json.dumps(value, indent=indent, default=_printable)


def _printable(value: Any) -> Any:
    try:
        return kombu_json.JSONEncoder().default(value)
    except TypeError:
        return repr(value)


def _sent_at_only(letter: ops.DeadLetter) -> bool:
    """True if the message recorded no failure time and shows when it was sent instead."""
    return letter.failed_at_source == ops.SENT_TIMESTAMP


def _when(moment: datetime | None) -> str:
    return "-" if moment is None else f"{moment:%Y-%m-%d %H:%M:%S}"
