"""runner.local.control: which recorded pids are still the stack's, and how status reads."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from runner.errors import StateError
from runner.local import control, state
from runner.local.process import alive, wait_for


def _sleeper(*argv_tail: str) -> subprocess.Popen[bytes]:
    """A process whose command line ends with ``argv_tail`` (as a worker's or moto's would)."""
    return subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)", *argv_tail],
        start_new_session=True,
    )


def test_a_recorded_pid_is_ours_only_while_it_runs_the_recorded_command() -> None:
    # GIVEN a process that looks like a local worker, and moto on port 5555
    worker = _sleeper("-A", "runner.app", "worker")
    moto = _sleeper("runner.local.motoserver", "-H", "127.0.0.1", "-p", "5555")
    try:
        as_worker = state.ProcessRecord(kind="worker", name="worker", pid=worker.pid)
        as_moto = state.ProcessRecord(kind="moto", name="moto", pid=moto.pid)
        # THEN each is recognised as what it is, and nothing else
        assert control.is_ours(as_worker, 5555)
        assert control.is_ours(as_moto, 5555)
        assert not control.is_ours(as_moto, 5556)  # a moto, but not this stack's
        assert not control.is_ours(as_moto, 555)  # found by the review: a port's prefix matched
        assert not control.is_ours(as_moto.model_copy(update={"pid": worker.pid}), 5555)
        this = state.ProcessRecord(kind="worker", name="worker", pid=os.getpid())
        assert not control.is_ours(this, 5555)  # a reused pid: pytest is no worker
    finally:
        worker.kill()
        moto.kill()
        worker.wait()
        moto.wait()
    # AND a pid that is gone is not
    assert not control.is_ours(as_worker, 5555)


def test_leftovers_of_a_stopped_stack_are_not_looked_for(tmp_path: Path) -> None:
    leftover = _sleeper("-A", "runner.app", "worker")
    try:
        record = state.ProcessRecord(kind="worker", name="worker", pid=leftover.pid)
        stopped = state.LocalState(
            status="stopped", port=5555, suffix="abcd1234", processes=(record,)
        )
        assert control.stop_leftovers(stopped) == []
        assert alive(leftover.pid)
        # WHEN the state says it still ran
        crashed = stopped.model_copy(update={"status": "running", "pid": 99999999})
        lines = control.stop_leftovers(crashed)
        # THEN it is stopped, and named
        assert lines and f"worker (pid {leftover.pid})" in lines[0]
        wait_for(lambda: leftover.poll() is not None, timeout=10, what="the leftover to exit")
    finally:
        leftover.kill()
        leftover.wait()


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(7, "7s"), (312, "5m 12s"), (7500, "2h 5m"), (3 * 86400 + 4 * 3600 + 9, "3d 4h")],
)
def test_uptime_reads_at_a_glance(seconds: float, shown: str) -> None:
    assert control._duration(seconds) == shown


def test_status_without_a_state_file_is_not_running(tmp_path: Path) -> None:
    report = control.status(tmp_path / "local.json")
    assert not report.running
    assert report.exit_code == control.STATUS_NOT_RUNNING == 3
    assert report.lines == ["no local stack running"]


def test_down_stops_what_an_older_galley_left_after_a_sighup(tmp_path: Path) -> None:
    """The reported bug: SIGHUP to `local up` left moto and the worker running, and the state
    file (in the layout of Galley before the lock) naming them."""
    # GIVEN processes that look like that moto and that worker, and the old state file
    moto = _sleeper("runner.local.motoserver", "-H", "127.0.0.1", "-p", "5555")
    worker = _sleeper("-A", "runner.app", "worker")
    path = tmp_path / "local.json"
    legacy = {
        "endpoint_url": "http://127.0.0.1:5555",
        "region": "us-east-1",
        "queue_url": "http://127.0.0.1:5555/123456789012/galley-local-jobs",
        "moto_pid": moto.pid,
        "worker_pid": worker.pid,
        "extra": {},
    }
    path.write_text(json.dumps(legacy))
    try:
        # WHEN `galley local down` runs
        lines = control.down(path, timeout=5)
        # THEN both are stopped and named, and the file is now a stopped state on that port
        assert f"moto (pid {moto.pid})" in lines[0] and f"worker (pid {worker.pid})" in lines[0]
        wait_for(lambda: moto.poll() is not None and worker.poll() is not None, timeout=10)
        now = state.read(path)
        assert now is not None and (now.status, now.port) == ("stopped", 5555)
    finally:
        for child in (moto, worker):
            child.kill()
            child.wait()


def test_a_file_that_is_neither_state_nor_legacy_is_still_refused(tmp_path: Path) -> None:
    path = tmp_path / "local.json"
    path.write_text(json.dumps({"endpoint_url": "https://example.com", "moto_pid": 1}))
    assert state.read_legacy(path) is None
    with pytest.raises(StateError):
        state.read_any(path)
    assert state.read_any(path, fresh=True) is None
