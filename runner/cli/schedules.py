"""`galley schedules`, and what `galley local up` prints about schedules. Thin over
runner.local.schedule_check and runner.local.scheduler."""

from __future__ import annotations

import logging
from pathlib import Path

import click

from runner.cli.failures import one_line_errors
from runner.errors import BeatScheduleError
from runner.local import sam, schedule_check
from runner.local import scheduler as scheduler_

#: How each finding's line starts: its status, in a column.
STATUS_WIDTH = len("missing  ")


@click.command()
@click.option(
    "--template",
    type=click.Path(path_type=Path, dir_okay=False),
    default=sam.DEFAULT_TEMPLATE,
    show_default=True,
    help="The SAM template to check.",
)
def schedules(template: Path) -> None:
    """Check beat_schedule (tasks/schedules.py) against the template's EventBridge schedules.

    One line per entry: its EventBridge expression and the template event that fires it, or
    what differs and the YAML to paste. Exit 1 on any difference, so CI can run it.
    """
    try:
        with one_line_errors():
            report = schedule_check.check(template)
    except click.ClickException as error:
        raise click.ClickException(printable(error.message)) from None
    for finding in report.findings:
        click.echo(printable(f"{finding.status:<{STATUS_WIDTH}}{finding}"))
        if finding.snippet:
            click.echo(printable(finding.snippet))
    if report.differences:
        raise click.ClickException(
            printable(
                f"{len(report.differences)} difference(s) between beat_schedule and {template}"
            )
        )
    click.echo(printable(f"beat_schedule and {template} agree: {len(report.findings)} schedule(s)"))


def printable(text: str) -> str:
    """``text`` with lone surrogates written as escapes: YAML's and JSON's ``"\\ud800"`` make
    them, and no terminal encoding can print one."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def differences(template: Path) -> list[str]:
    """`local up`'s lines for each way beat_schedule and the template disagree; one line saying
    why if they cannot be compared (the stack runs on: the template's schedules fire)."""
    try:
        report = schedule_check.check(template)
    except BeatScheduleError as error:
        return [printable(f"cannot compare beat_schedule and {template}: {error}")]
    return [
        printable(f"{finding.brief} (see `galley schedules`)") for finding in report.differences
    ]


class _EchoHandler(logging.Handler):
    """Log records as terminal lines (warnings and errors to stderr)."""

    def emit(self, record: logging.LogRecord) -> None:
        click.echo(self.format(record), err=record.levelno >= logging.WARNING)


#: Formatted like the worker's own lines, which `local up` shows beside them.
_FIRES = _EchoHandler(logging.INFO)
_FIRES.setFormatter(logging.Formatter("[%(asctime)s: %(levelname)s/schedules] %(message)s"))


def echo_fires() -> None:
    """Print the local scheduler's log: a line each time a schedule fires, or fails to."""
    logger = logging.getLogger(scheduler_.__name__)
    logger.setLevel(logging.INFO)
    if _FIRES not in logger.handlers:
        logger.addHandler(_FIRES)
