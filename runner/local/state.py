"""The local stack's state file and lock: whether a `galley local up` runs, and what it started.

`galley local up` holds an exclusive ``flock`` on the lock file beside the state file
(``.galley/local.lock``) for as long as it runs. The lock, not a pid, says whether a stack runs:
the kernel drops it when the process ends, however it ends (``kill -9`` included), so a stale
state file never blocks a start, and a pid reused by another program is never taken for a stack.
Child processes do not inherit it (Python opens files non-inheritable).

The state file (``.galley/local.json``) says what the holder runs: its pid, its children's pids,
the endpoint and the resources. It outlives the stack, with status ``stopped``. It is read as
outside input: anything that is not a state this Galley wrote is a :class:`StateError` with one
line naming the file, never a traceback.
"""

from __future__ import annotations

import fcntl
import os
import re
import secrets
from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    PositiveInt,
    ValidationError,
    model_validator,
)

from runner.errors import StateError
from runner.local.resources import LocalResources

HOST = "127.0.0.1"
#: Where `galley local up` records the running stack for `galley local env`, `status`, `down`.
DEFAULT_STATE_FILE = Path(".galley") / "local.json"
#: The layout of the state file; a file with another version is not read.
STATE_VERSION: Literal[1] = 1
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
#: The random part of the stack's bucket name: lowercase letters and digits, as S3 names allow.
SUFFIX_PATTERN = r"^[a-z0-9]{8}$"
_SUFFIX_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"

Status = Literal["starting", "running", "stopping", "stopped"]
#: What a recorded process is: how `galley local down` recognises it before signalling it.
Kind = Literal["moto", "worker"]


def new_suffix() -> str:
    """A fresh random suffix for a stack's names (8 of [a-z0-9]: about 2.8e12 of them)."""
    return "".join(secrets.choice(_SUFFIX_ALPHABET) for _ in range(8))


def bucket_name(suffix: str, stack_name: str) -> str:
    """The local stack's results bucket: ``galley-local-results-<suffix>``. The suffix makes a
    clash with a real bucket of that name unlikely, were a client to miss AWS_ENDPOINT_URL."""
    return f"{stack_name}-results-{suffix}"


def data_path(state_file: Path) -> Path:
    """The stack's saved data beside ``state_file``: ``.galley/local-data.json``."""
    return state_file.with_name(f"{state_file.stem}-data.json")


def lock_path(state_file: Path) -> Path:
    """The lock file beside ``state_file``: ``.galley/local.json`` -> ``.galley/local.lock``."""
    return state_file.with_suffix(".lock")


def endpoint(port: int) -> str:
    return f"http://{HOST}:{port}"


class ProcessRecord(BaseModel):
    """One process `local up` started: moto, or a worker (``name`` tells workers apart)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    kind: Kind
    name: str = Field(min_length=1, max_length=64)
    pid: PositiveInt


class LocalState(BaseModel):
    """The state file's content."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    version: Literal[1] = STATE_VERSION
    status: Status
    #: The stack's identity, kept across restarts: its port, and the suffix of its bucket's name
    #: (made once, at the first start, or with --fresh).
    port: int = Field(ge=1, le=65535)
    suffix: str = Field(pattern=SUFFIX_PATTERN)
    #: The `galley local up` process (holder of the lock while it runs).
    pid: PositiveInt | None = None
    #: Started in this order (moto first), stopped in reverse.
    processes: tuple[ProcessRecord, ...] = ()
    started_at: AwareDatetime | None = None
    stopped_at: AwareDatetime | None = None
    resources: LocalResources | None = None

    @model_validator(mode="after")
    def _safe_to_export(self) -> LocalState:
        # `galley local env` output is eval'ed by a shell: only local endpoints (it goes with dummy
        # credentials) and variable names a shell takes as names.
        if self.resources is None:
            return self
        if self.resources.endpoint_url != self.endpoint_url:
            raise ValueError(f"its endpoint is not {self.endpoint_url}")
        bad = [name for name in self.resources.extra if not _ENV_NAME.fullmatch(name)]
        if bad:
            raise ValueError(f"{bad[0]!r} is not an environment variable name")
        return self

    @property
    def endpoint_url(self) -> str:
        return endpoint(self.port)

    def pids(self, kind: Kind | None = None) -> list[int]:
        return [p.pid for p in self.processes if kind is None or p.kind == kind]

    def uptime(self, now: datetime) -> float | None:
        """Seconds since the start, while it runs."""
        if self.started_at is None or self.status == "stopped":
            return None
        return max(0.0, (now - self.started_at).total_seconds())


def read(path: Path) -> LocalState | None:
    """The state at ``path``; None if there is no file. :class:`StateError` (one line) if the file
    cannot be read or is not a state this Galley wrote."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as error:
        raise StateError(f"cannot read {path}: {error.strerror or error}") from None
    try:
        return LocalState.model_validate_json(raw)
    except ValidationError as error:
        raise StateError(
            f"{path} is not a local stack's state written by this Galley ({_first_problem(error)});"
            " remove it, or start afresh with `galley local up --fresh`"
        ) from None


class _LegacyState(BaseModel):
    """The state file of Galley before the lock: the resources, ``moto_pid`` and ``worker_pid``
    at the top level, deleted when `local up` ended cleanly (so one left behind names processes
    a `local up` killed by SIGHUP or SIGKILL did not stop)."""

    model_config = ConfigDict(extra="ignore", strict=True)

    endpoint_url: str = Field(pattern=rf"^http://{re.escape(HOST)}:[0-9]{{1,5}}$")
    moto_pid: PositiveInt | None = None
    worker_pid: PositiveInt | None = None


def read_legacy(path: Path) -> LocalState | None:
    """A state file in the layout of Galley before the lock, as a ``running`` state (its port,
    its processes, a new suffix: the old bucket name was CloudFormation's); None if it is not
    one."""
    try:
        old = _LegacyState.model_validate_json(path.read_bytes())
    except (OSError, ValidationError):
        return None
    port = int(old.endpoint_url.rsplit(":", 1)[1])
    if not 1 <= port <= 65535:
        return None
    processes = [ProcessRecord(kind="moto", name="moto", pid=old.moto_pid)] if old.moto_pid else []
    if old.worker_pid:
        processes.append(ProcessRecord(kind="worker", name="worker", pid=old.worker_pid))
    return LocalState(status="running", port=port, suffix=new_suffix(), processes=tuple(processes))


def read_any(path: Path, *, fresh: bool = False) -> LocalState | None:
    """:func:`read`, taking a state file of an older Galley for what it is (:func:`read_legacy`),
    and with ``fresh`` any other file that is not a state for none."""
    try:
        return read(path)
    except StateError:
        legacy = read_legacy(path)
        if legacy is None and not fresh:
            raise
        return legacy


def _first_problem(error: ValidationError) -> str:
    """The first validation problem, cleaned to one short line (keys come from the file)."""
    first = error.errors(include_url=False, include_input=False)[0]
    where = ".".join(str(part) for part in first.get("loc", ()))
    text = f"{where}: {first['msg']}" if where else str(first["msg"])
    return re.sub(r"[^\x20-\x7e]", "?", text)[:160]


def save(path: Path, state: LocalState) -> None:
    """Write ``state`` to ``path`` atomically: a reader sees the old file or the new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(state.model_dump_json(indent=2) + "\n")
    tmp.replace(path)


class StackLock:
    """The lock a running `galley local up` holds (``flock``, released by the kernel at exit)."""

    def __init__(self, state_file: Path) -> None:
        self.path = lock_path(state_file)
        self._fd: int | None = None

    def try_acquire(self) -> bool:
        """Take the lock if no one holds it; never waits."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        # the holder's pid, for `local down` and the refusal: the state file may still name a
        # predecessor (killed with kill -9) while this one stops what it left
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the lock
            self._fd = None

    @property
    def held(self) -> bool:
        """True while this object holds the lock."""
        return self._fd is not None


def held_elsewhere(state_file: Path) -> bool:
    """True if a process holds the stack's lock: a `galley local up` runs."""
    if not lock_path(state_file).exists():
        return False
    probe = StackLock(state_file)
    if probe.try_acquire():
        probe.release()
        return False
    return True


def lock_holder(state_file: Path) -> int | None:
    """The pid the stack's lock file names (its holder wrote it), or None."""
    try:
        text = lock_path(state_file).read_text(errors="replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() and int(text) > 0 else None


def describe_running(state_file: Path) -> str:
    """`pid N, http://127.0.0.1:P` for the stack that holds the lock, from its state file."""
    holder = lock_holder(state_file)
    try:
        current = read(state_file)
    except StateError as error:
        return f"pid {holder}; its state file cannot be read: {error}"
    if current is None or current.pid is None or (holder and current.pid != holder):
        # the state file is not the holder's yet (it may stop what a killed one left running)
        return f"pid {holder}, starting" if holder else f"no state recorded yet in {state_file}"
    starting = "starting at " if current.status == "starting" else ""
    return f"pid {current.pid}, {starting}{current.endpoint_url}"
