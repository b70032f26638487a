"""`galley dashboard`: the stack's web page, served until Ctrl-C. Thin over runner.ops.dashboard."""

from __future__ import annotations

import sys

import click

from runner.cli.dlq import _clear_errors
from runner.cli.status import stack_option
from runner.core import settings
from runner.local.process import StopRequested
from runner.ops import status, top
from runner.ops.dashboard import server


@click.command("dashboard")
@stack_option
@click.option("--host", default=server.DEFAULT_HOST, show_default=True, help="Address to bind.")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=server.DEFAULT_PORT,
    show_default=True,
    help="Port to bind (0: any free one).",
)
@click.option(
    "--token",
    envvar=settings.DASHBOARD_TOKEN,
    default=None,
    help=f"Required on every request; needed for a --host that is not loopback [env: "
    f"{settings.DASHBOARD_TOKEN}].",
)
@click.option(
    "--interval",
    type=click.FloatRange(top.MIN_INTERVAL, 3600),
    default=top.DEFAULT_INTERVAL,
    show_default=True,
    help="Seconds between the page's refreshes.",
)
def dashboard(stack: str | None, host: str, port: int, token: str | None, interval: float) -> None:
    """A web page of the queues (with a depth chart), workers and their jobs' progress, the dead
    letters (redrive, purge) and job lookup by id, refreshed live. Ctrl-C stops it.

    Each refresh costs what one `galley top` refresh does; the dead-letter queues are read
    (a receive of each message) every few refreshes and after each action.
    """
    with _clear_errors():
        target, clients = status.attach(stack)
        try:
            running = server.start(
                target, clients, host=host, port=port, token=token or None, interval=interval
            )
        except ValueError as error:
            raise click.UsageError(str(error)) from None
        except OSError as error:
            raise click.ClickException(
                f"cannot listen on {host}:{port}: {error.strerror or error} "
                "(--port 0 takes any free port)"
            ) from None
    click.echo(f"galley dashboard of {target.source}: {running.url}  (Ctrl-C stops it)")
    sys.stdout.flush()  # a pipe or a file reading it waits for this line
    with StopRequested() as stop:  # Ctrl-C, SIGTERM, a closed terminal
        while not stop:
            stop.sleep(1.0)
    running.stop()
    click.echo("dashboard stopped")
