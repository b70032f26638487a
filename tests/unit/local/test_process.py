"""Stopping a child never signals a process group that is no longer the child's."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from runner.local import process
from runner.local.process import Child, wait_for


def test_a_child_already_reaped_with_nothing_left_in_its_group_is_not_signalled(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Under xdist a test's fresh process (a new session, its group id its own pid) was killed:
    stop() sent SIGKILL to the group id of a child reaped long before, an id the kernel had
    given to that new group."""
    child = Child([sys.executable, "-c", "pass"])
    child.proc.wait(timeout=30)  # reaped, as a test's proc.wait() does; the group is empty
    signalled: list[int] = []
    monkeypatch.setattr(os, "killpg", lambda pgid, signum: signalled.append(pgid))
    assert child.stop(grace=1) == 0
    assert signalled == []


def test_an_orphan_left_in_the_group_is_still_killed(tmp_path: Path) -> None:
    # GIVEN a child that starts a grandchild in its group and exits
    pid_file = tmp_path / "grandchild"
    code = (
        "import subprocess, sys; "
        "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
        f"open({str(pid_file)!r}, 'w').write(str(p.pid))"
    )
    child = Child([sys.executable, "-c", code])
    wait_for(lambda: pid_file.exists() and pid_file.read_text() != "", timeout=30)
    grandchild = int(pid_file.read_text())
    wait_for(lambda: not child.alive(), timeout=30)
    # WHEN it is stopped
    child.stop(grace=1)
    # THEN the grandchild is gone too
    wait_for(lambda: not process.alive(grandchild), timeout=10, what="the orphan killed")


def test_alive_does_not_reap() -> None:
    child = Child([sys.executable, "-c", "pass"])
    wait_for(lambda: not child.alive(), timeout=30)
    assert child.proc.returncode is None  # still a zombie: its pid cannot be reused yet
    assert child.stop(grace=1) == 0


def test_the_exit_code_is_read_without_reaping() -> None:
    child = Child([sys.executable, "-c", "raise SystemExit(3)"])
    wait_for(lambda: child.exit_code is not None, timeout=30)
    assert child.exit_code == 3
    assert child.proc.returncode is None
    assert child.stop(grace=1) == 3
