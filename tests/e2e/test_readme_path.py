"""The README's path, as a user runs it: `galley local up`, `eval "$(galley local env)"`, enqueue,
result; and `galley demo`."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from runner.local import state as local_state
from runner.local.process import Child, wait_for
from tests import support

pytestmark = pytest.mark.e2e


def _user_env() -> dict[str, str]:
    """A user's shell: no Galley variables, the project's `galley` on PATH."""
    env = support.attached_env_plain()
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def _stop_leftovers(state: Path) -> None:
    """If `galley local up` could not clean up, stop what it started, by pid."""
    recorded = local_state.read(state)
    for pid in recorded.pids() if recorded else []:
        if not _gone(pid):
            os.killpg(pid, signal.SIGKILL)


def test_local_up_env_enqueue_result_and_ctrl_c(tmp_path: Path) -> None:
    # GIVEN `galley local up` running in a terminal
    state = tmp_path / ".galley" / "local.json"
    up = Child(
        support.galley("local", "up"), env=_user_env(), cwd=tmp_path, log=tmp_path / "up.log"
    )
    try:

        def up_and_ready() -> bool:
            assert up.alive(), f"galley local up exited:\n{up.log_tail()}"
            return state.exists() and "ready." in (tmp_path / "up.log").read_text()

        wait_for(up_and_ready, timeout=90, what="the local stack and its worker")
        running = local_state.read(state)
        assert running is not None and running.status == "running"
        # a worker on each queue
        assert running.resources is not None and len(running.pids("worker")) == 2
        stack, started = running.resources, running.pids()
        # WHEN another shell attaches with eval "$(galley local env)" and sends a job to each
        # queue
        records = json.dumps([[{"name": "Ada", "email": "ada@example.com"}], stack.bucket, "in"])
        script = (
            'eval "$(galley local env)" && '
            f"long=$(galley enqueue tasks.imports.import_records --args '{records}' --queue long)"
            ' && galley result "$long" --wait --timeout 60 > /dev/null && '
            f"id=$(galley enqueue tasks.imports.import_records --args '{records}') && "
            'galley result "$id" --wait --timeout 60'
        )
        shell = subprocess.run(
            ["bash", "-c", script],
            env=_user_env(),
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
        # THEN the result comes back through the local stack's worker
        assert shell.returncode == 0, shell.stderr + up.log_tail()
        status = json.loads(shell.stdout)
        assert status["state"] == "SUCCESS"
        assert status["result"]["accepted"] == 1
        # WHEN the user presses Ctrl-C
        up.signal(signal.SIGINT)
        assert up.proc.wait(timeout=60) == 0, up.log_tail()
    finally:
        up.stop()
        _stop_leftovers(state)
    # THEN it had said what it did not deploy and when the schedule fires
    log = (tmp_path / "up.log").read_text()
    (missing,) = [line for line in log.splitlines() if "not deployed locally" in line]
    assert "AWS::Lambda::EventSourceMapping" in missing
    assert "schedule ScheduleFunction.NightlyImportSummary: next at" in log
    # AND everything it started is stopped and the state file says so
    assert "local stack stopped" in log
    assert len(started) == 3 and all(_gone(pid) for pid in started)
    stopped = local_state.read(state)
    assert stopped is not None and stopped.status == "stopped"


def test_demo_runs_end_to_end(tmp_path: Path) -> None:
    # WHEN a person runs `galley demo`, and opens the dashboard it prints while the jobs run
    overview: dict[str, Any] = {}
    with subprocess.Popen(
        support.galley("demo"),
        env=_user_env(),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if shown := re.match(r"dashboard\s+(http://127\.0\.0\.1:\d+/)\s", line):
                with urllib.request.urlopen(f"{shown.group(1)}api/overview", timeout=30) as page:  # noqa: S310
                    overview = json.load(page)
        code, errors = proc.wait(timeout=300), proc.stderr.read()
    out = "".join(lines)
    assert code == 0, out + errors
    # THEN the dashboard answered with the demo's queues
    assert [q["name"] for q in overview.get("queues", [])][:2] == ["jobs", "jobs DLQ"], out
    assert "summarize_csv" in out and "-> SUCCESS" in out
    assert "-> RETRY: UploadNotReady" in out
    assert "demo passed" in out
    assert not (tmp_path / ".galley" / "demo.json").exists()
