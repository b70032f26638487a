"""`galley`: run the local stack, send jobs and read their results. Thin over the library."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from runner.cli import schedules as schedules_
from runner.cli.failures import one_line_errors
from runner.core import queues
from runner.local import control, embedded, supervisor, workers
from runner.local import sam as stack_
from runner.local import state as local_state
from runner.local.process import StopRequested
from runner.local.scheduler import LocalScheduler

STATE_OPTION = click.option(
    "--state-file",
    type=click.Path(path_type=Path, dir_okay=False),
    default=embedded.DEFAULT_STATE_FILE,
    show_default=True,
    help="Where `local up` records the running stack.",
)


TEMPLATE_OPTION = click.option(
    "--template",
    type=click.Path(path_type=Path, dir_okay=False),
    default=stack_.DEFAULT_TEMPLATE,
    show_default=True,
    help="The SAM template the local stack is deployed from.",
)


def _app() -> Any:
    from runner.runtime.app import app

    return app


@click.group()
def main() -> None:
    """Galley: Celery jobs on AWS SQS with results in S3.

    Locally: `galley local up` in one terminal, then `eval "$(galley local env)"` in another
    and use `galley enqueue`, `galley result` or `celery -A runner.app worker` there.
    """


class _Seconds(click.ParamType):
    """A finite number of seconds, 0 to a week (``nan`` would make a wait endless)."""

    name = "seconds"

    def convert(self, value: Any, param: Any, ctx: Any) -> float:
        try:
            seconds = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number of seconds", param, ctx)
        if not 0 <= seconds <= 7 * 24 * 3600:  # False for nan too
            self.fail(f"{value!r} is not between 0 and 604800 seconds", param, ctx)
        return seconds


SECONDS = _Seconds()
#: ``--queue`` of the commands that take a queue by role (runner.core.queues).
QUEUE_ROLE = click.Choice(list(queues.ROLES))
#: ``--timeout`` of the commands that can ``--wait``.
TIMEOUT_OPTION = click.option(
    "--timeout",
    type=SECONDS,
    default=300,
    show_default=True,
    help="With --wait: seconds (at most a week).",
)


@main.group(name="local")
def local_() -> None:
    """The embedded local stack (moto on 127.0.0.1)."""


@local_.command("up")
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    default=None,
    help="moto's port, kept for the next starts (default: the last start's, else a free one).",
)
@click.option(
    "--fresh",
    is_flag=True,
    help="Start clean: a new port and bucket name, no results or messages of the last run.",
)
@click.option("--worker/--no-worker", default=True, show_default=True, help="Run a worker too.")
@click.option(
    "--reload/--no-reload",
    default=True,
    show_default=True,
    help="Restart the worker when a module in tasks/ changes (running jobs finish first).",
)
@click.option("--concurrency", type=int, default=2, show_default=True, help="Worker processes.")
@click.option(
    "--verbose", is_flag=True, help="List each resource moto cannot emulate, with the reason."
)
@TEMPLATE_OPTION
@STATE_OPTION
def local_up(
    port: int | None,
    fresh: bool,
    worker: bool,
    reload: bool,
    concurrency: int,
    verbose: bool,
    template: Path,
    state_file: Path,
) -> None:
    """Start moto, deploy template.yaml into it, run a worker and the schedules; Ctrl-C stops."""

    def ready(running: embedded.LocalStack, scheduler: LocalScheduler) -> None:
        stack = running.resources
        click.echo(f"local stack up: moto at {stack.endpoint_url}, queue {stack.queue_url}")
        data = local_state.data_path(state_file)
        for line in supervisor.restored_lines(running.restored, data):
            click.echo(line)
        missing = running.deployed.not_deployed
        if missing and verbose:
            for item in missing:
                click.echo(f"  not deployed locally: {item}")
        elif missing:
            click.echo(f"  not deployed locally: {stack_.summarize(missing)}; --verbose lists them")
        for name, at in scheduler.upcoming():
            click.echo(
                f"  schedule {name}: next at {at:%Y-%m-%d %H:%M} UTC"
                if at
                else f"  schedule {name}: will not fire again"
            )
        for line in schedules_.differences(template):
            click.echo(f"  {line}")
        option = "" if state_file == embedded.DEFAULT_STATE_FILE else f" --state-file {state_file}"
        click.echo(f'attach a shell with:  eval "$(galley local env{option})"')

    schedules_.echo_fires()
    with one_line_errors(), StopRequested() as stop:
        code = supervisor.serve(
            stop,
            port=port,
            fresh=fresh,
            workers=workers.local_workers(concurrency) if worker else [],
            reload=reload,
            template=template,
            state_file=state_file,
            on_ready=ready,
            on_note=click.echo,
        )
    if code:
        raise click.ClickException("the worker exited unexpectedly; local stack stopped")
    click.echo("local stack stopped")


@local_.command("env")
@STATE_OPTION
def local_env(state_file: Path) -> None:
    """Print `export` lines that attach a shell to the running local stack."""
    with one_line_errors():
        click.echo(embedded.read_state(state_file).exports())


@local_.command("status")
@STATE_OPTION
def local_status(state_file: Path) -> None:
    """Whether a local stack runs here: pids, endpoint, bucket, queues and their depths, uptime.

    Exit code 0 if it runs, 3 if not (as `systemctl status`).
    """
    with one_line_errors():
        report = control.status(state_file)
    for line in report.lines:
        click.echo(line)
    raise SystemExit(report.exit_code)


@local_.command("down")
@click.option(
    "--timeout",
    type=SECONDS,
    default=control.DOWN_TIMEOUT_SECONDS,
    show_default=True,
    help="Seconds to wait for `local up` to stop everything before killing it.",
)
@STATE_OPTION
def local_down(timeout: float, state_file: Path) -> None:
    """Stop the running `galley local up` and everything it started (its data is kept)."""
    with one_line_errors():
        lines = control.down(state_file, timeout=timeout)
    for line in lines:
        click.echo(line)


@main.command()
@click.argument("task")
@click.option("--args", "args_json", default=None, help="Positional arguments, a JSON array.")
@click.option("--kwargs", "kwargs_json", default=None, help="Keyword arguments, a JSON object.")
@click.option(
    "--queue",
    type=QUEUE_ROLE,
    default=None,
    help="The queue by role: jobs, or long (the Fargate workers'). Default: the task's route.",
)
@click.option("--countdown", type=SECONDS, default=None, help="Run it this many seconds from now.")
@click.option(
    "--eta",
    default=None,
    metavar="WHEN",
    help="Run it at this ISO 8601 time (e.g. 2026-12-01T09:00:00+00:00; UTC if no offset).",
)
@click.option("--wait", is_flag=True, help="Wait for the result and print it.")
@TIMEOUT_OPTION
def enqueue(
    task: str,
    args_json: str | None,
    kwargs_json: str | None,
    queue: str | None,
    countdown: float | None,
    eta: str | None,
    wait: bool,
    timeout: float,
) -> None:
    """Send TASK (e.g. tasks.reports.summarize_csv) to its queue; prints its id."""
    from runner.runtime import jobs, results

    with one_line_errors():
        args, kwargs = jobs.parse_json_args(args_json, kwargs_json)
        timing = jobs.parse_timing(countdown, eta)
        app = _app()
        task_id = jobs.submit(app, task, args, kwargs, queue=queue, **timing)
        click.echo(task_id)
        if wait:
            _print_status(results.wait(app, task_id, timeout=timeout))


@main.command()
@click.argument("task_id")
@click.option("--wait", is_flag=True, help="Wait until the job has finished.")
@TIMEOUT_OPTION
def result(task_id: str, wait: bool, timeout: float) -> None:
    """Print a job's state and result as JSON (exit 1 if it failed)."""
    from runner.runtime import results

    with one_line_errors():
        app = _app()
        status = (
            results.wait(app, task_id, timeout=timeout) if wait else results.status(app, task_id)
        )
        _print_status(status)


def _print_status(status: Any) -> None:
    click.echo(json.dumps(status.as_dict(), indent=2, default=str))
    if status.state == "FAILURE":
        raise SystemExit(1)


@main.command()
def demo() -> None:
    """Start a local stack, run the example jobs, show their results, stop."""
    from runner.local import demo as demo_

    with one_line_errors(), StopRequested(interrupt=True):
        code = demo_.run(click.echo)
    raise SystemExit(code)


@main.command()
@click.option(
    "--queue",
    type=QUEUE_ROLE,
    default="jobs",
    show_default=True,
    help="Check as the worker of this queue would (celery worker -Q QUEUE).",
)
def doctor(queue: str) -> None:
    """Check the settings against AWS: queues, dead-letter queue, visibility timeout, bucket.

    One line per check; exit 1 if any failed. Reads the same environment as the worker.
    """
    from runner.core.settings import WorkerSettings, load
    from runner.ops import checks

    with one_line_errors():
        config = load(WorkerSettings)
        sqs, s3 = checks.clients(config)
    report = checks.run_checks(config, sqs, s3, consume=queue)
    marks = _MARKS if _fancy(sys.stdout) else _PLAIN_MARKS
    for check in report.checks:
        click.echo(f"{marks[check.status]} {check}")
    if report.problems:
        raise click.ClickException(f"{len(report.problems)} problem(s); fix the variables named")
    click.echo("all checks passed")


_MARKS = {"ok": "\u2713", "fail": "\u2717", "skipped": "-"}
_PLAIN_MARKS = {"ok": "ok  ", "fail": "FAIL", "skipped": "skip"}


def _fancy(stream: Any) -> bool:
    """Check marks only on a terminal that can print them."""
    encoding = (getattr(stream, "encoding", None) or "").lower().replace("-", "")
    return bool(stream.isatty()) and encoding == "utf8"


from runner.cli import status as status_  # noqa: E402
from runner.cli import top as top_  # noqa: E402
from runner.cli.dashboard import dashboard  # noqa: E402
from runner.cli.dlq import dlq  # noqa: E402
from runner.cli.revoke import revoke  # noqa: E402

main.add_command(dlq)
main.add_command(status_.status)
main.add_command(top_.top)
main.add_command(schedules_.schedules)
main.add_command(revoke)
main.add_command(dashboard)


if __name__ == "__main__":
    main()
