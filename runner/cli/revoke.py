"""`galley revoke ID...`: revoke jobs through S3. Thin over runner.runtime.revoking."""

from __future__ import annotations

import click

from runner.cli.failures import one_line_errors
from runner.errors import RevokeError


class BadInput(click.ClickException):
    """Not a task id, or not a signal: one line, exit 2 (as a usage error)."""

    exit_code = 2


@click.command("revoke")
@click.argument("task_ids", nargs=-1, required=True, metavar="ID...")
@click.option(
    "--terminate",
    is_flag=True,
    help="Also stop a job that is running on a worker (the worker signals the process running "
    "it within GALLEY_REVOKE_REFRESH_SECONDS). The Lambda consumer cannot stop a running job.",
)
@click.option(
    "--signal",
    default="SIGTERM",
    show_default=True,
    help="With --terminate: the signal sent (SIGTERM, SIGKILL, ...).",
)
def revoke(task_ids: tuple[str, ...], terminate: bool, signal: str) -> None:
    """Revoke jobs: none of them runs its body from now on (queued, delayed, retrying or
    redriven from the dead-letter queue), and their state is REVOKED at once.

    A job that already succeeded keeps its result; revoking one twice is harmless. The
    revocation is an object under revoked/ in the results bucket, read by every worker.
    """
    from runner.runtime import revoking
    from runner.runtime.app import create_app

    with one_line_errors():
        app = create_app()  # this command's settings, read now (not a process-wide app's)
        try:
            done = revoking.revoke(app, list(task_ids), terminate=terminate, signal=signal)
        except RevokeError as error:
            raise BadInput(str(error)) from None
    for outcome in done:
        click.echo(outcome.line)
