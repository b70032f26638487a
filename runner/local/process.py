"""Child processes Galley starts (moto server, Celery worker): start, wait for, stop by pid."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO

from runner.errors import WaitTimeout


def wait_for(
    condition: Callable[[], bool], *, timeout: float, interval: float = 0.1, what: str = ""
) -> None:
    """Poll ``condition`` until it is true; at the deadline raise WaitTimeout (a TimeoutError)
    naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return
        if time.monotonic() >= deadline:
            raise WaitTimeout(f"timed out after {timeout:g}s waiting for {what or condition}")
        time.sleep(interval)


class Child:
    """One child process in its own process group, so stopping it stops its children too."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        log: Path | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.argv = list(argv)
        self.log_path = log
        self._log: IO[bytes] | None = open(log, "ab") if log else None  # noqa: SIM115
        self.proc = subprocess.Popen(
            self.argv,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            stdout=self._log if self._log else None,
            stderr=subprocess.STDOUT if self._log else None,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        if not self.log_path or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def signal(self, signum: int) -> None:
        """Send ``signum`` to the process group (the child and whatever it forked)."""
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signum)

    def stop(self, *, grace: float = 10.0) -> int:
        """SIGTERM to the child itself (as ECS does to a container's PID 1: a Celery worker then
        finishes its running tasks), up to ``grace`` seconds, then SIGKILL to the whole group.
        Returns the exit code."""
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self.signal(signal.SIGKILL)
                self.proc.wait(timeout=10)
        # Reap anything left in the group (a prefork child orphaned by a SIGKILL).
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        if self._log:
            self._log.close()
            self._log = None
        return self.proc.returncode


def python_module(module: str, *args: str) -> list[str]:
    """argv running ``python -m module args`` with this interpreter."""
    return [sys.executable, "-m", module, *args]


#: The signals that end a foreground command: Ctrl-C, ``kill``, and a closed terminal (SIGHUP).
#: Left to their default, SIGTERM and SIGHUP end Python without its ``finally`` blocks, and the
#: children (each in a session of its own) keep running.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class StopRequested:
    """A flag set by any of :data:`STOP_SIGNALS` while installed: a clean shutdown.

    With ``interrupt=True`` the signal also raises KeyboardInterrupt, for code that is busy
    rather than looping on the flag; its ``finally`` blocks do the cleanup.
    """

    def __init__(self, *, interrupt: bool = False) -> None:
        self.interrupt = interrupt
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopRequested:
        for signum in STOP_SIGNALS:
            self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]

    def _handle(self, signum: int, _frame: object) -> None:
        self.signum = signum
        if self.interrupt:
            raise KeyboardInterrupt(signal.Signals(signum).name)

    def __bool__(self) -> bool:
        return self.signum is not None

    def sleep(self, seconds: float) -> None:
        """Sleep up to ``seconds``, returning early once a stop is requested."""
        deadline = time.monotonic() + seconds
        while not self and time.monotonic() < deadline:
            time.sleep(min(0.1, max(0.0, deadline - time.monotonic())))
