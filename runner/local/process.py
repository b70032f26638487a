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
        self._terminated = False

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        """True until the child exits. An exited child is left unreaped (a zombie) for
        :meth:`stop`: while it is, its pid cannot be reused, so signalling its process group
        cannot reach a stranger's."""
        return self.proc.returncode is None and not _exited(self.proc.pid)

    @property
    def exit_code(self) -> int | None:
        """The exit code (negative: the signal that ended it), or None while it runs; read
        without reaping it."""
        if self.proc.returncode is not None:
            return self.proc.returncode
        try:
            info = os.waitid(os.P_PID, self.proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return self.proc.poll()
        if info is None:
            return None
        return info.si_status if info.si_code == os.CLD_EXITED else -info.si_status

    def log_tail(self, lines: int = 30) -> str:
        if not self.log_path or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def signal(self, signum: int) -> None:
        """Send ``signum`` to the process group (the child and whatever it forked)."""
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signum)

    def terminate(self) -> None:
        """SIGTERM to the child itself, once (a second SIGTERM could hurry a Celery worker)."""
        if self.alive() and not self._terminated:
            self._terminated = True
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGTERM)

    def stop(self, *, grace: float = 10.0) -> int:
        """SIGTERM to the child itself (as ECS does to a container's PID 1: a Celery worker then
        finishes its running tasks), up to ``grace`` seconds, then SIGKILL to the whole group.
        Returns the exit code.

        What is left in the group (a prefork child orphaned by a SIGKILL) is killed while the
        child is still unreaped: a group id is the pid of its first process, and once that pid
        is reaped and the group empty, the id can be given to another process's new group
        (under xdist a test's fresh process was killed this way)."""
        reaped_before = self.proc.returncode is not None
        if self.alive():
            self.terminate()
            if not _wait_exited(self.proc.pid, grace):
                self.signal(signal.SIGKILL)
                _wait_exited(self.proc.pid, 10.0)
        if not reaped_before or _group_has_members(self.proc.pid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)
        if self._log:
            self._log.close()
            self._log = None
        return self.proc.returncode


def _exited(pid: int) -> bool:
    """True if child ``pid`` has exited (without reaping it); True too if it is reaped."""
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


def _wait_exited(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not _exited(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)
    return True


def _group_has_members(pgid: int) -> bool:
    """True if a process (not a zombie) is in process group ``pgid`` (Linux: /proc)."""
    proc = Path("/proc")
    if not proc.exists():
        return False
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid and fields[0] != "Z":
                return True
    return False


def stop_children(children: Sequence[Child], *, grace: float) -> None:
    """Stop ``children`` together: SIGTERM to each at once, then each gets what is left of
    ``grace`` before its SIGKILL (so N workers take ``grace``, not N times it)."""
    for child in children:
        child.terminate()
    deadline = time.monotonic() + grace
    for child in children:
        child.stop(grace=max(0.0, deadline - time.monotonic()))


def alive(pid: int) -> bool:
    """True if process ``pid`` exists and has not exited (a zombie counts as exited)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    stat = Path(f"/proc/{pid}/stat")
    with contextlib.suppress(OSError, IndexError):
        # Linux: the state follows the command's closing parenthesis; Z is a zombie.
        return stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"
    return True


def command_line(pid: int) -> str | None:
    """Process ``pid``'s command line, or None if it cannot be read (gone, or not ours)."""
    cmdline = Path(f"/proc/{pid}/cmdline")
    if cmdline.parent.exists():
        try:
            return cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            return None
    try:  # no /proc (macOS): POSIX ps
        out = subprocess.run(
            ["ps", "-o", "command=", "-p", str(pid)],  # noqa: S607 - ps on PATH, as a shell has it
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def stop_pid(pid: int, *, grace: float, group: bool = True) -> bool:
    """Stop a process that is not our child, as :meth:`Child.stop` stops one that is: SIGTERM,
    up to ``grace`` seconds, then SIGKILL (to its group too, with ``group`` and if it leads one).
    Returns True if it is gone."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    with contextlib.suppress(TimeoutError):
        wait_for(lambda: not alive(pid), timeout=grace, interval=0.1)
        return True
    with contextlib.suppress(ProcessLookupError, PermissionError):
        leads_group = group and os.getpgid(pid) == pid
        (os.killpg if leads_group else os.kill)(pid, signal.SIGKILL)
    with contextlib.suppress(TimeoutError):
        wait_for(lambda: not alive(pid), timeout=10, interval=0.1)
    return not alive(pid)


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
