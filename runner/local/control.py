"""The local stack seen from another process: what a `galley local up` that is gone left behind.

A `local up` that ended without its cleanup (``kill -9``, the machine out of memory) leaves its
children running: each is in a session of its own. The next `local up` stops them by the pids the
state file recorded, after checking that each pid still runs the command recorded for it (a pid
can be reused by an unrelated program).
"""

from __future__ import annotations

from runner.local import embedded
from runner.local.process import alive, command_line, stop_pid
from runner.local.state import LocalState, ProcessRecord

#: How long a leftover worker gets to finish its running jobs, and moto to write its data.
LEFTOVER_GRACE_SECONDS = 30.0


def is_ours(record: ProcessRecord) -> bool:
    """True if ``record.pid`` is alive and still runs the command of its kind."""
    if not alive(record.pid):
        return False
    return embedded.COMMAND_MARKERS[record.kind] in (command_line(record.pid) or "")


def stop_leftovers(previous: LocalState | None) -> list[str]:
    """Stop what a `local up` that did not clean up left running; one line per process stopped.
    Call it holding the stack's lock (no `local up` runs)."""
    if previous is None or previous.status == "stopped":
        return []
    stopped = []
    for record in reversed(previous.processes):  # workers first, moto last (it saves the data)
        if is_ours(record):
            stop_pid(record.pid, grace=LEFTOVER_GRACE_SECONDS)
            stopped.append(f"{record.name} (pid {record.pid})")
    if not stopped:
        return []
    owner = f"pid {previous.pid}" if previous.pid else "unknown pid"
    return [
        f"stopped what the last `galley local up` ({owner}) left running: " + ", ".join(stopped)
    ]
