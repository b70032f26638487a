"""`galley top`: the queues, the workers and their jobs, live. Thin over runner.ops.top.

On a terminal it redraws one screen in place (rich); otherwise (a pipe, a file, CI) it prints
plain lines, one block per refresh, a blank line between blocks. Ctrl-C ends it, exit 0.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import click

from runner.cli.dlq import _clear_errors, _echo
from runner.cli.status import duration, stack_option
from runner.cli.text import shown
from runner.ops import status as status_
from runner.ops import top as ops

#: How wide a plain-text progress bar is, in characters.
PLAIN_BAR = 20


@click.command("top")
@stack_option
@click.option(
    "--interval",
    type=click.FloatRange(ops.MIN_INTERVAL, 3600),
    default=ops.DEFAULT_INTERVAL,
    show_default=True,
    help="Seconds between refreshes.",
)
@click.option("--once", is_flag=True, help="Print one frame and exit.")
def top(stack: str | None, interval: float, once: bool) -> None:
    """The queues, the workers and the jobs they run, refreshed in place: jobs a second,
    counts per task, a progress bar for each job that reports PROGRESS.

    Each refresh reads each queue's counts, the worker registry (a list and one read per
    worker) and one result object per running job. Ctrl-C exits.
    """
    with _clear_errors():
        watch = _watch(stack)
        first = watch.frame()
    try:
        if sys.stdout.isatty():
            _live(watch, first, interval, once)
        else:
            _plain(watch, first, interval, once)
    except KeyboardInterrupt:
        return


def _watch(stack: str | None) -> ops.Watch:
    return ops.Watch(*status_.attach(stack))


def _frames(watch: ops.Watch, first: ops.Frame, interval: float, once: bool) -> Any:
    yield first
    while not once:
        time.sleep(interval)
        try:
            yield watch.frame()
        except Exception as error:  # a passing fault: say so in place, try again next time
            click.echo(f"refresh failed: {type(error).__name__}: {error}", err=True)


def _plain(watch: ops.Watch, first: ops.Frame, interval: float, once: bool) -> None:
    for number, frame in enumerate(_frames(watch, first, interval, once)):
        if number:
            _echo("")
        for line in plain_lines(frame, interval):
            _echo(line)
        sys.stdout.flush()


def _live(watch: ops.Watch, first: ops.Frame, interval: float, once: bool) -> None:
    from rich.console import Console
    from rich.live import Live

    console = Console()
    if once:
        console.print(screen(first, interval))
        return
    with Live(screen(first, interval), console=console, auto_refresh=False) as live:
        for frame in _frames(watch, first, interval, once):
            live.update(screen(frame, interval), refresh=True)


# --- what a frame shows ---


def _header(frame: ops.Frame, interval: float) -> str:
    rate = "-" if frame.rate is None else f"{frame.rate:.2f}"
    return (
        f"galley top: {frame.source}, bucket {frame.bucket}, {frame.at:%H:%M:%S} UTC, "
        f"every {interval:g}s; {rate} jobs/s"
    )


def _queue_cells(queue: status_.QueueStatus) -> list[str]:
    if queue.problem is not None:
        return [queue.name, "-", "-", "-", queue.problem]
    return [queue.name, str(queue.visible), str(queue.in_flight), str(queue.delayed), ""]


def _worker_cells(worker: Any, now: float) -> list[str]:
    totals = worker.totals
    return [
        worker.name,
        worker.queue,
        worker.state,
        f"{len(worker.running)}/{worker.concurrency}",
        str(worker.waiting),
        str(totals["succeeded"]),
        str(totals["failed"]),
        str(totals["retried"]),
        duration(now - worker.started),
        worker.version,
    ]


def _job_cells(job: ops.Job) -> list[str]:
    age = "-" if job.age is None else duration(job.age)
    return [job.worker, job.task, job.id, age]


def _count(progress: ops.Progress) -> str:
    return f"{progress.done:g}/{progress.total:g} ({progress.fraction:.0%})"


QUEUE_HEADS = ["QUEUE", "VISIBLE", "IN FLIGHT", "DELAYED", ""]
WORKER_HEADS = ["WORKER", "QUEUE", "STATE", "BUSY", "WAITING", "OK", "FAILED", "RETRIED", "UP",
                "VERSION"]  # fmt: skip
TASK_HEADS = ["TASK", "RUNNING", "OK", "FAILED", "RETRIED"]
JOB_HEADS = ["WORKER", "TASK", "ID", "AGE", "PROGRESS"]


def _task_cells(name: str, counts: dict[str, int]) -> list[str]:
    return [name, *(str(counts[k]) for k in ("running", "succeeded", "failed", "retried"))]


def plain_lines(frame: ops.Frame, interval: float) -> list[str]:
    """One frame as plain text (no colours, no cursor movement)."""
    now = frame.at.timestamp()
    out = [_header(frame, interval)]
    out += _table(QUEUE_HEADS, [_queue_cells(q) for q in frame.queues])
    out += _table(WORKER_HEADS, [_worker_cells(w, now) for w in frame.registry.workers])
    out += _nobody(frame)
    out += _table(TASK_HEADS, [_task_cells(n, c) for n, c in frame.tasks.items()])
    rows = []
    for job in frame.jobs:
        bar = ""
        if job.progress is not None:
            filled = round(job.progress.fraction * PLAIN_BAR)
            bar = f"[{'#' * filled}{'-' * (PLAIN_BAR - filled)}] {_count(job.progress)}"
        rows.append([*_job_cells(job), bar])
    out += _table(JOB_HEADS, rows)
    return out


def _nobody(frame: ops.Frame) -> list[str]:
    listing = frame.registry
    lines = [] if listing.workers else ["(no worker in the registry)"]
    if listing.problem:
        lines.append(f"(worker registry: {listing.problem})")
    lines += [f"({shown(note)})" for note in listing.notes]
    if listing.gone:
        lines.append(f"({listing.gone} stopped or gone)")
    return lines


def _table(heads: list[str], rows: list[list[str]]) -> list[str]:
    if not rows:
        return []
    rows = [[shown(cell) for cell in row] for row in rows]
    widths = [max(len(row[i]) for row in [heads, *rows]) for i in range(len(heads) - 1)]
    return [
        "  ".join([*(c.ljust(w) for c, w in zip(row[:-1], widths, strict=True)), row[-1]]).rstrip()
        for row in [heads, *rows]
    ]


def screen(frame: ops.Frame, interval: float) -> Any:
    """One frame as a rich renderable: tables, and a bar for every job reporting PROGRESS."""
    from rich.console import Group
    from rich.progress_bar import ProgressBar
    from rich.table import Table
    from rich.text import Text

    def table(heads: list[str], rows: list[list[Any]]) -> Table:
        grid = Table(box=None, pad_edge=False, header_style="bold")
        for head in heads:
            grid.add_column(head, no_wrap=head not in ("", "PROGRESS"))
        for row in rows:  # text from the bucket: never read as markup, its controls escaped
            grid.add_row(*(Text(shown(cell)) if isinstance(cell, str) else cell for cell in row))
        return grid

    now = frame.at.timestamp()
    parts: list[Any] = [Text(_header(frame, interval), style="bold"), Text("")]
    parts.append(table(QUEUE_HEADS, [_queue_cells(q) for q in frame.queues]))
    parts.append(Text(""))
    if frame.registry.workers:
        parts.append(table(WORKER_HEADS, [_worker_cells(w, now) for w in frame.registry.workers]))
    parts += [Text(line, style="dim") for line in _nobody(frame)]
    if frame.tasks:
        parts += [Text(""), table(TASK_HEADS, [_task_cells(n, c) for n, c in frame.tasks.items()])]
    if frame.jobs:
        rows: list[list[Any]] = []
        for job in frame.jobs:
            bar: Any = ""
            if job.progress is not None:
                bar = Table.grid(padding=(0, 1))
                bar.add_row(
                    ProgressBar(total=job.progress.total, completed=job.progress.done, width=24),
                    _count(job.progress),
                )
            rows.append([*_job_cells(job), bar])
        parts += [Text(""), table(JOB_HEADS, rows)]
    return Group(*parts)
