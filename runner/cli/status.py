"""`galley status`: the stack's queues, workers and last failures. Thin over runner.ops.status."""

from __future__ import annotations

import json
from typing import Any

import click

from runner.cli.dlq import REASON_WIDTH, _clear_errors, _echo
from runner.cli.text import shown
from runner.ops import dlq
from runner.ops import status as ops

#: `--stack NAME` of the commands that look at a stack (status, top, dashboard).
stack_option = click.option(
    "--stack",
    default=None,
    metavar="NAME",
    help="A deployed stack: its queues and bucket from its CloudFormation outputs "
    "[default: the GALLEY_* variables, as `galley local env` exports them].",
)


@click.command("status")
@stack_option
@click.option(
    "--failures",
    type=click.IntRange(0, ops.PEEK_LIMIT),
    default=ops.DEFAULT_FAILURES,
    show_default=True,
    help="How many of the last failures to show.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
def status(stack: str | None, failures: int, as_json: bool) -> None:
    """Each queue and dead-letter queue: visible, in flight, delayed, age of the oldest message;
    the workers; the last failures with their reasons.

    Reading a dead-letter queue counts as a receive (as `galley dlq list`).
    """
    with _clear_errors():
        target, clients = ops.attach(stack)
        report = ops.gather(target, clients, failures=failures)
    if as_json:
        _echo(json.dumps(report.as_dict(), indent=2))
        return
    for line in lines(report):
        _echo(line)


def lines(report: ops.Status) -> list[str]:
    """The status as text: a table of queues, the workers, the last failures; what the queues
    and the bucket hold is shown with its control characters escaped (runner/cli/text.py)."""
    return [shown(line) for line in _lines(report)]


def _lines(report: ops.Status) -> list[str]:
    out = [f"{report.source}, bucket {report.bucket or '-'}, at {report.at:%Y-%m-%d %H:%M:%S} UTC"]
    rows = [("QUEUE", "VISIBLE", "IN FLIGHT", "DELAYED", "OLDEST")]
    for queue in report.queues:
        if queue.problem is not None:
            rows.append((queue.name, "-", "-", "-", queue.problem))
            continue
        rows.append(
            (
                queue.name,
                str(queue.visible),
                str(queue.in_flight),
                str(queue.delayed),
                _age(queue),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        out.append("  ".join([*(c.ljust(w) for c, w in zip(row[:4], widths, strict=True)), row[4]]))
    out.append("workers:")
    for role, known in report.workers.items():
        if role == "registry":
            out.extend(registry_lines(known, report.at.timestamp()))
        else:
            out.append(f"  {role}: {_worker(known)}")
    if not report.failures:
        out.append("no failures in the dead-letter queues")
        return out
    out.append("last failures:")
    for item in report.failures:
        when = (item["failed_at"] or "-")[:19].replace("T", " ")
        task = item["task"] or "(undecodable)"
        ident = item["task_id"] or item["message_id"]
        reason = dlq.shorten_reason(item["reason"], REASON_WIDTH)
        out.append(f"  {when}  {item['queue']:<4}  {task}  {ident}  {reason}")
    return out


def registry_lines(listing: dict[str, Any], now: float) -> list[str]:
    """The worker registry (its JSON form): a line per live worker, one per job it runs."""
    if listing.get("problem"):
        return [f"  worker registry: {listing['problem']}"]
    live = listing["workers"]
    out = [f"  {len(live)} in the worker registry ({listing['gone']} stopped or gone)"]
    for worker in live:
        totals = worker["totals"]
        out.append(
            f"  {worker['host']}:{worker['pid']}  {worker['queue']}  {worker['state']}  "
            f"{len(worker['running'])} of {worker['concurrency']} busy, "
            f"{worker['waiting']} waiting; {totals['succeeded']} succeeded, "
            f"{totals['failed']} failed, {totals['retried']} retried; "
            f"up {duration(now - worker['started'])}; galley {worker['version']}"
        )
        for job in worker["running"]:
            age = "starting" if job["started"] is None else duration(now - job["started"])
            out.append(f"    {job['task']}  {job['id']}  running {age}")
    out.extend(f"  ({note})" for note in listing["notes"])
    return out


def duration(seconds: float) -> str:
    """``42s``, ``5m07s``, ``2h03m``."""
    whole = max(0, int(seconds))
    if whole >= 3600:
        return f"{whole // 3600}h{whole % 3600 // 60:02d}m"
    if whole >= 60:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole}s"


def _age(queue: ops.QueueStatus) -> str:
    if queue.oldest_age_seconds is None:
        return queue.oldest_age_source
    seconds = int(queue.oldest_age_seconds)
    shown = f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else f"{seconds}s"
    return f"{shown} ({queue.oldest_age_source})"


def _worker(known: Any) -> str:
    if not isinstance(known, dict):
        return str(known)
    if "problem" in known:
        name = known.get("service") or known.get("function")
        return f"{known.get('kind')} {name}: {known['problem']}"
    if known.get("kind") == "fargate":
        return (
            f"Fargate service {known['service']}: {known['running']} running, "
            f"{known['pending']} pending, {known['desired']} desired"
        )
    sources = ", ".join(f"{s['state']}" for s in known.get("event_sources", [])) or "none"
    return f"Lambda consumer {known['function']}: event source {sources}"
