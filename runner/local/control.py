"""The local stack seen from another process: `galley local status`, `galley local down`, and
what a `galley local up` that is gone left behind.

Whether a stack runs is the lock's answer (:mod:`runner.local.state`); what it runs is the state
file's. A `local up` that ended without its cleanup (``kill -9``, the machine out of memory)
leaves its children running: each is in a session of its own. The next `local up` (or `local
down`) stops them by the pids the state file recorded, after checking that each pid still runs
the command recorded for it (a pid can be reused by an unrelated program).
"""

from __future__ import annotations

import contextlib
import os
import signal
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from botocore.exceptions import BotoCoreError, ClientError

from runner.core import aws
from runner.errors import ProcessError, StateError
from runner.local import embedded
from runner.local.process import alive, command_line, stop_pid, wait_for
from runner.local.resources import LocalResources
from runner.local.state import (
    LocalState,
    ProcessRecord,
    StackLock,
    held_elsewhere,
    lock_holder,
    read,
    read_any,
    save,
)

#: How long a leftover worker gets to finish its running jobs, and moto to write its data.
LEFTOVER_GRACE_SECONDS = 30.0


def is_ours(record: ProcessRecord, port: int) -> bool:
    """True if ``record.pid`` is alive and still runs the command of its kind (moto: on
    ``port``)."""
    if not alive(record.pid):
        return False
    marker = embedded.COMMAND_MARKERS[record.kind]
    if record.kind == "moto":
        marker = f"{marker} -H {embedded.HOST} -p {port}"
    # whole words: port 3956 must not match a moto on 39565
    return f" {marker} " in f" {command_line(record.pid) or ''} "


def stop_leftovers(previous: LocalState | None) -> list[str]:
    """Stop what a `local up` that did not clean up left running; one line per process stopped.
    Call it holding the stack's lock (no `local up` runs)."""
    if previous is None or previous.status == "stopped":
        return []
    stopped = []
    for record in reversed(previous.processes):  # workers first, moto last (it saves the data)
        if is_ours(record, previous.port):
            stop_pid(record.pid, grace=LEFTOVER_GRACE_SECONDS)
            stopped.append(f"{record.name} (pid {record.pid})")
    if not stopped:
        return []
    owner = f"pid {previous.pid}" if previous.pid else "unknown pid"
    return [
        f"stopped what the last `galley local up` ({owner}) left running: " + ", ".join(stopped)
    ]


# --- `galley local status` -------------------------------------------------------------------

#: ``galley local status`` exit codes, as ``systemctl status`` and LSB init scripts have them.
STATUS_RUNNING = 0
STATUS_NOT_RUNNING = 3


@dataclass(frozen=True)
class StackStatus:
    """What `galley local status` prints, and whether a stack runs (its exit code)."""

    running: bool
    lines: list[str]

    @property
    def exit_code(self) -> int:
        return STATUS_RUNNING if self.running else STATUS_NOT_RUNNING


def status(state_file: Path, *, now: datetime | None = None) -> StackStatus:
    """The local stack recorded at ``state_file``: running or not, and what it is."""
    now = now or datetime.now(UTC)
    running = held_elsewhere(state_file)
    try:
        current = read(state_file)
    except StateError as error:
        head = "local stack running" if running else "no local stack running"
        return StackStatus(running, [f"{head} ({error})"])
    if not running:
        return StackStatus(False, _not_running(current))
    if current is None or current.pid is None:
        return StackStatus(True, ["local stack starting (nothing recorded yet)"])
    return StackStatus(True, _running(current, now))


def _not_running(last: LocalState | None) -> list[str]:
    if last is None:
        return ["no local stack running"]
    when = f"last stopped {last.stopped_at:%Y-%m-%d %H:%M:%S} UTC; " if last.stopped_at else ""
    lines = [f"no local stack running ({when}it was at {last.endpoint_url})"]
    left = [r for r in last.processes if last.status != "stopped" and is_ours(r, last.port)]
    if left:
        names = ", ".join(f"{r.name} (pid {r.pid})" for r in left)
        lines.append(
            f"  left running by a `galley local up` that did not exit cleanly: {names}; "
            "`galley local down` stops them"
        )
    return lines


def _running(current: LocalState, now: datetime) -> list[str]:
    uptime = current.uptime(now)
    since = f"{current.started_at:%Y-%m-%d %H:%M:%S} UTC" if current.started_at else "?"
    head = f"local stack {current.status}: galley local up pid {current.pid}"
    lines = [head + (f", up {_duration(uptime)} (since {since})" if uptime is not None else "")]
    rows = [("endpoint", current.endpoint_url)]
    rows += [(record.name, f"pid {record.pid}") for record in current.processes]
    if current.resources is not None:
        rows.append(("bucket", current.resources.bucket))
        rows += _queue_rows(current.resources)
    width = max(len(name) for name, _ in rows)
    return lines + [f"  {name:<{width}}  {value}" for name, value in rows]


def _queue_rows(resources: LocalResources) -> list[tuple[str, str]]:
    sqs = aws.client(
        "sqs",
        use="checks",
        endpoint_url=resources.endpoint_url,
        session=embedded.local_session(resources.region),
    )
    rows = []
    for role, url in resources.queues().items():
        try:
            attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=list(_DEPTHS))
            depths = ", ".join(
                f"{attrs['Attributes'].get(name, '?')} {label}" for name, label in _DEPTHS.items()
            )
        except (BotoCoreError, ClientError) as error:
            depths = f"depth unknown ({type(error).__name__})"
        rows.append((role, f"{url}  {depths}"))
    return rows


_DEPTHS = {
    "ApproximateNumberOfMessages": "visible",
    "ApproximateNumberOfMessagesNotVisible": "in flight",
    "ApproximateNumberOfMessagesDelayed": "delayed",
}


def _duration(seconds: float) -> str:
    """``3d 4h``, ``2h 5m``, ``5m 12s`` or ``7s``."""
    total = int(seconds)
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    return f"{minutes}m {secs}s" if minutes else f"{secs}s"


# --- `galley local down` ---------------------------------------------------------------------

#: How long `galley local down` waits for `local up` to stop everything before it kills it:
#: the workers' grace to finish running jobs, then moto writing the data.
DOWN_TIMEOUT_SECONDS = 120.0


def down(state_file: Path, *, timeout: float = DOWN_TIMEOUT_SECONDS) -> list[str]:
    """Stop the `galley local up` recorded at ``state_file``: SIGTERM, so that it stops its
    workers and moto itself; if it has not ended within ``timeout``, SIGKILL, and its children
    are stopped by their pids. Returns what to print; "no local stack running" if none ran."""
    lock = StackLock(state_file)
    if not lock.path.exists() and not state_file.exists():
        return ["no local stack running"]
    if lock.try_acquire():
        try:
            return _clean_up_after_the_gone(state_file)
        finally:
            lock.release()
    current = read(state_file)
    # Signal the lock's holder only: the state file may still name a predecessor killed with
    # kill -9 (its pid perhaps reused) while the holder stops what that one left running.
    holder = lock_holder(state_file)
    if holder is None:
        raise ProcessError(
            f"a `galley local up` holds {lock.path} but has recorded no pid yet; "
            "try again in a moment, or press Ctrl-C in its terminal"
        )
    with contextlib.suppress(ProcessLookupError):
        os.kill(holder, signal.SIGTERM)
    names = [f"galley local up (pid {holder})"]
    where = "starting"
    if current is not None and current.pid == holder:
        names += [f"{r.name} (pid {r.pid})" for r in reversed(current.processes)]
        where = f"at {current.endpoint_url}"
    stopped = f"stopped the local stack {where}: {', '.join(names)}"
    pid = holder
    with contextlib.suppress(TimeoutError):
        wait_for(lock.try_acquire, timeout=timeout, interval=0.2)
        lock.release()
        return [stopped]
    # It did not finish in time: kill it, then stop what it started, as after a kill -9.
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    wait_for(lock.try_acquire, timeout=10, interval=0.1, what="the killed local up to exit")
    try:
        _clean_up_after_the_gone(state_file)
    finally:
        lock.release()
    return [f"{stopped} (local up did not stop within {timeout:g}s and was killed)"]


def _clean_up_after_the_gone(state_file: Path) -> list[str]:
    """Holding the lock: stop what a `local up` that is gone left, and record it stopped."""
    try:
        last = read_any(state_file)
    except StateError as error:
        return [f"no local stack running ({error})"]
    lines = stop_leftovers(last)
    if last is not None and last.status != "stopped":
        save(
            state_file,
            last.model_copy(
                update={"status": "stopped", "pid": None, "processes": (), "stopped_at": _now()}
            ),
        )
    return lines or ["no local stack running"]


def _now() -> datetime:
    return datetime.now(UTC)
