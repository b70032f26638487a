"""`galley top` against real prefork workers: on a terminal (a pseudo-terminal) and in a pipe."""

from __future__ import annotations

import contextlib
import fcntl
import io
import os
import pty
import re
import signal
import struct
import subprocess
import sys
import termios
import threading
from collections.abc import Callable
from typing import Any

import pytest

from runner.core import settings
from runner.local import embedded
from runner.local.process import Child, wait_for
from tests import support

pytestmark = pytest.mark.e2e

FAST = {"GALLEY_TASK_MODULES": "tests.e2e.registry_tasks", settings.REGISTRY_INTERVAL: "0.5"}
#: Runs in the pseudo-terminal: makes it the controlling terminal (so Ctrl-C is a SIGINT from
#: the terminal, as for a person), then becomes the program of its arguments.
BOOT = (
    "import fcntl, os, sys, termios; fcntl.ioctl(0, termios.TIOCSCTTY, 0); "
    "os.execv(sys.argv[1], sys.argv[1:])"
)
ANSI = re.compile(r"\x1b(\[[0-9;?]*[A-Za-z]|\][^\x07]*\x07|[()][A-Z0-9])")
PROGRESS = re.compile(r"(\d+)/16 \((\d+)%\)")


class Terminal:
    """A program on a pseudo-terminal of ``cols`` x ``rows``; everything it writes is kept."""

    def __init__(self, argv: list[str], env: dict[str, str], cols: int = 150, rows: int = 40):
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        self.proc = subprocess.Popen(
            [sys.executable, "-c", BOOT, *argv],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=env,
            start_new_session=True,
        )
        os.close(slave)
        self.master = master
        self.raw = bytearray()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        while True:
            try:
                chunk = os.read(self.master, 65536)
            except OSError:  # EIO: the program closed the terminal
                return
            if not chunk:
                return
            self.raw.extend(chunk)

    @property
    def text(self) -> str:
        return ANSI.sub("", bytes(self.raw).decode("utf-8", "replace"))

    def type(self, keys: bytes) -> None:
        os.write(self.master, keys)

    def close(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.reader.join(5)
        os.close(self.master)


def _exit_code(proc: subprocess.Popen[Any], output: Callable[[], str]) -> int:
    """The exit code of a `galley top` told to stop; if it has not stopped within 15 s, where
    each of its threads is (faulthandler, on SIGABRT), in the failure. Seen once, in a rehearsal
    on a machine loaded far past its cores."""
    try:
        return proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGABRT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)
        raise AssertionError(f"galley top did not stop on Ctrl-C:\n{output()}") from None


def terminal_env(stack: embedded.LocalResources) -> dict[str, str]:
    env = support.attached_env(stack, TERM="xterm-256color", PYTHONFAULTHANDLER="1")
    for name in ("COLUMNS", "LINES", "NO_COLOR", "TERM_PROGRAM"):
        env.pop(name, None)
    return env


def test_top_on_a_terminal_shows_the_worker_its_job_and_an_advancing_bar(
    stack: embedded.LocalResources,
    worker: Callable[..., Child],
    app_for: Callable[[embedded.LocalResources], Any],
) -> None:
    # GIVEN a worker running a job that reports PROGRESS 16 times over ~8 s
    child = worker(stack, **FAST)
    job = app_for(stack).send_task("registry.steps", args=[16, 0.5])
    # WHEN `galley top` runs on a terminal
    screen = Terminal(support.galley("top", "--interval", "0.5"), terminal_env(stack))
    try:

        def advanced() -> bool:
            seen = [int(done) for done, _ in PROGRESS.findall(screen.text)]
            return len(set(seen)) >= 3 and seen == sorted(seen)

        try:
            wait_for(advanced, timeout=40, what="top to show the job's progress advancing")
        except Exception:
            print(screen.text[-4000:])
            raise
        # AND the person presses Ctrl-C
        screen.type(b"\x03")
        code = _exit_code(screen.proc, lambda: screen.text[-6000:])
    finally:
        screen.close()
    text = screen.text
    print(text[-3000:])
    # THEN it showed the worker, the running job and a bar, and left with 0, no traceback
    assert code == 0
    assert f":{child.pid}" in text and "registry.steps" in text and job.id in text
    assert "━" in text  # rich's progress bar
    assert "jobs/s" in text
    assert "Traceback" not in text and "KeyboardInterrupt" not in text
    # AND it redrew in place (cursor up), not line after line
    assert "\x1b[" in bytes(screen.raw).decode("utf-8", "replace")
    assert "\x1b[1A" in bytes(screen.raw).decode() or "\x1b[2K" in bytes(screen.raw).decode()


def test_top_in_a_pipe_prints_plain_blocks(
    stack: embedded.LocalResources,
    worker: Callable[..., Child],
    app_for: Callable[[embedded.LocalResources], Any],
) -> None:
    # GIVEN a worker running a job that reports PROGRESS
    child = worker(stack, **FAST)
    job = app_for(stack).send_task("registry.steps", args=[16, 0.5])
    wait_for(lambda: job.state == "PROGRESS", timeout=30, what="the job to report its progress")
    # WHEN `galley top` writes to a pipe, and is interrupted after a few refreshes
    lines: list[str] = []
    with subprocess.Popen(
        support.galley("top", "--interval", "0.5"),
        env=support.attached_env(stack, PYTHONFAULTHANDLER="1"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        reader = threading.Thread(target=lambda: lines.extend(proc.stdout or []), daemon=True)
        reader.start()
        try:
            wait_for(
                lambda: sum(line.startswith("galley top:") for line in lines) >= 3,
                timeout=30,
                what="three blocks",
            )
            proc.send_signal(signal.SIGINT)
            code = _exit_code(proc, lambda: (proc.stderr or io.StringIO()).read()[-6000:])
        finally:
            if proc.poll() is None:
                proc.kill()
        reader.join(5)
        stderr = proc.stderr.read()
    # THEN plain lines: no escape codes, blocks separated by an empty line, each with the
    # worker, its job and a text bar
    assert code == 0, stderr
    text = "".join(lines)
    assert "\x1b" not in text
    blocks = [b for b in text.split("\n\n") if b.startswith("galley top:")]
    assert len(blocks) >= 3
    for block in blocks[:3]:
        assert f":{child.pid}" in block
        assert re.search(rf"registry\.steps\s+{job.id}\s+\S+\s+\[[#-]{{20}}\] \d+/16", block), block
    assert "Traceback" not in stderr


def test_top_once_without_settings_or_stack_says_what_is_missing(
    stack: embedded.LocalResources,
) -> None:
    # GIVEN no settings at all
    plain = subprocess.run(
        support.galley("top", "--once"),
        env=support.attached_env_plain(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    # THEN one line naming the variable, exit 1
    assert plain.returncode == 1
    assert plain.stderr.strip().splitlines() == [
        "Error: GALLEY_QUEUE_URL is not set: attach this shell to a stack "
        '(eval "$(galley local env)") or name a deployed one with --stack NAME'
    ]
    # GIVEN settings of a stack whose server is not running
    down = {**support.attached_env(stack), "AWS_ENDPOINT_URL": "http://127.0.0.1:9"}
    result = subprocess.run(
        support.galley("top"), env=down, capture_output=True, text=True, timeout=120
    )
    # THEN one line naming what cannot be reached, exit 1
    assert result.returncode == 1, result.stdout
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("Error: the jobs queue http://") and "Could not connect" in line, line
    assert result.stdout == ""
