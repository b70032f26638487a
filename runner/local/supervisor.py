"""`galley local up` in the foreground: one stack per state file, recorded while it runs, the
same port, names and data at every start, and everything it started stopped however it is asked
to end.

- one at a time: it holds the stack's lock (:mod:`runner.local.state`) from before moto starts to
  after the last child has stopped; a second `local up` is refused, naming the first;
- what a `local up` that did not clean up left running is stopped first (:mod:`.control`);
- the port and the bucket's name are the last start's (:class:`Identity`), and moto puts back
  the messages and objects it saved as it last stopped (:mod:`.snapshot`); ``fresh`` starts
  clean;
- the state file follows the stack: ``starting``, ``running`` (with every pid), ``stopping``,
  ``stopped``;
- the workers (:mod:`.workers`) restart when a module in ``tasks/`` changes;
- Ctrl-C, SIGTERM and SIGHUP (``stop``) end the loop; workers, then moto, are stopped in
  ``finally`` blocks, so an error on the way stops them too.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from runner.errors import PortInUseError, StackRunningError
from runner.local import control, embedded, sam, snapshot, state
from runner.local.process import Child, StopRequested
from runner.local.scheduler import LocalScheduler
from runner.local.state import LocalState, ProcessRecord
from runner.local.workers import (
    TaskWatcher,
    WorkerPool,
    WorkerSpec,
    task_directories,
)

Clock = Callable[[], datetime]
Note = Callable[[str], None]


@dataclass(frozen=True)
class Identity:
    """What makes the stack the same across restarts: its port and the suffix of its names."""

    port: int
    suffix: str
    #: The port came from the state file, not from --port or a free one.
    remembered: bool = False

    @classmethod
    def choose(cls, previous: LocalState | None, *, port: int | None, fresh: bool) -> Identity:
        """The last start's port and suffix (``--port`` replaces the port); new ones the first
        time, or with ``fresh``."""
        if previous is None or fresh:
            return cls(port or embedded.free_port(), state.new_suffix())
        return cls(port or previous.port, previous.suffix, remembered=port is None)


def serve(
    stop: StopRequested,
    *,
    port: int | None = None,
    fresh: bool = False,
    workers: Sequence[WorkerSpec] = (),
    reload: bool = True,
    template: Path = sam.DEFAULT_TEMPLATE,
    state_file: Path = state.DEFAULT_STATE_FILE,
    on_ready: Callable[[embedded.LocalStack, LocalScheduler], None] = lambda *_: None,
    on_note: Note = lambda _: None,
    clock: Clock = lambda: datetime.now(UTC),
) -> int:
    """Run the local stack until ``stop`` is set: the workers log to this terminal and the
    template's schedules fire on their cadence. Its port and names are the last start's (see
    :class:`Identity`); ``fresh`` makes new ones. With ``reload`` the workers are restarted when
    a module in ``tasks/`` changes (:mod:`.workers`).

    Returns 0 on a requested stop, 1 if a worker died by itself (without ``reload``).
    """
    with _claimed(state_file, fresh=fresh) as previous:
        for line in control.stop_leftovers(previous):
            on_note(line)
        identity = Identity.choose(previous, port=port, fresh=fresh)
        if fresh:
            snapshot.discard(state.data_path(state_file))
        record = _Record(state_file, None if fresh else previous)
        try:
            watcher = TaskWatcher(task_directories()) if reload and workers else None
            return _run(
                stop, record, identity, workers, watcher, template, on_ready, on_note, clock
            )
        finally:
            record.stopped(clock())


@contextlib.contextmanager
def _claimed(state_file: Path, *, fresh: bool) -> Iterator[LocalState | None]:
    """Hold the stack's lock for the block; yields the state the last `local up` left (one of
    an older Galley included; with ``fresh``, a state file that cannot be read is not an error:
    it is replaced)."""
    lock = state.StackLock(state_file)
    if not lock.try_acquire():
        raise StackRunningError(
            f"a local stack is already running here ({state.describe_running(state_file)}); "
            "stop it with `galley local down` (or Ctrl-C in its terminal)"
        )
    try:
        yield state.read_any(state_file, fresh=fresh)
    finally:
        lock.release()


def _run(
    stop: StopRequested,
    record: _Record,
    identity: Identity,
    specs: Sequence[WorkerSpec],
    watcher: TaskWatcher | None,
    template: Path,
    on_ready: Callable[[embedded.LocalStack, LocalScheduler], None],
    on_note: Note,
    clock: Clock,
) -> int:
    record.starting(identity, clock())
    with _stack(identity, template, record, on_note) as local_stack:
        resources = local_stack.resources
        scheduler = LocalScheduler(
            local_stack.deployed.schedules, embedded.schedule_firer(resources), start=clock()
        )
        pool = WorkerPool(specs, resources)
        try:
            pool.start()
            record.running(local_stack, pool.children)
            on_ready(local_stack, scheduler)
            while not stop:
                if not _watch_workers(pool, watcher, on_note):
                    return 1
                if watcher is not None and _reload(pool, watcher, stop, on_note):
                    record.running(local_stack, pool.children)
                scheduler.tick(clock())
                stop.sleep(0.5)
            return 0
        finally:
            record.stopping()
            pool.stop()


def _watch_workers(pool: WorkerPool, watcher: TaskWatcher | None, on_note: Note) -> bool:
    """False if a worker exited by itself and nothing will start it again (no reload)."""
    for spec, child in pool.newly_exited():
        if watcher is None:
            return False
        on_note(
            f"{spec.name} (pid {child.pid}) exited with code {child.exit_code}; "
            "it starts again when a module in tasks/ changes"
        )
    return True


def _reload(pool: WorkerPool, watcher: TaskWatcher, stop: StopRequested, on_note: Note) -> bool:
    """Restart the workers if ``tasks/`` changed; True if they were."""
    changed = watcher.changes()
    if not changed or stop:
        return False
    shown = ", ".join(_shown(path) for path in changed[:3]) + (" ..." if changed[3:] else "")
    on_note(f"{shown} changed: restarting the workers (running jobs finish first)")
    pool.restart()
    return True


def _shown(path: Path) -> str:
    """``tasks/jobs.py`` when under the current directory, else the full path."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


@contextlib.contextmanager
def _stack(
    identity: Identity, template: Path, record: _Record, on_note: Note
) -> Iterator[embedded.LocalStack]:
    """The stack on the identity's port, with its bucket's name and its data; moto's pid is
    recorded as soon as it runs. Once moto has stopped, a note says whether the data was saved."""
    state_file = record.path
    data = state.data_path(state_file)
    moto: embedded.MotoServer | None = None
    try:
        with embedded.running_stack(
            port=identity.port,
            template=template,
            log_dir=state_file.parent,
            bucket_name=state.bucket_name(identity.suffix, sam.DEFAULT_STACK_NAME),
            data=data,
            on_moto_started=record.moto_started,
        ) as local_stack:
            moto = local_stack.moto
            yield local_stack
    except PortInUseError:
        if not identity.remembered:
            raise
        raise PortInUseError(
            f"port {identity.port} on {embedded.HOST}, this stack's since its first start (kept "
            f"in {state_file}), is in use: stop whatever listens there, or start with --port "
            '(attached shells then need `eval "$(galley local env)"` again)'
        ) from None
    finally:
        if moto is not None:
            on_note(_saved(moto.exit_code, data))


def _saved(moto_exit_code: int | None, data: Path) -> str:
    if moto_exit_code == 0:
        return f"  results, dead letters and queued jobs saved in {data}"
    return (
        f"  moto did not stop cleanly (exit code {moto_exit_code}): what changed in this run may"
        f" not be saved in {data}; see {data.parent / 'moto.log'}"
    )


def restored_lines(report: snapshot.RestoreReport | None, data: Path) -> list[str]:
    """What the restore put back, in a line, and what it could not, in another."""
    if report is None or report.saved_at is None:
        return []
    messages, objects = sum(report.messages.values()), sum(report.objects.values())
    lines = [
        f"  data of the last run restored from {data} (saved {report.saved_at:%Y-%m-%d %H:%M:%S}"
        f" UTC): {messages} messages, {objects} objects"
    ]
    if report.unrestored:
        lines.append(
            f"  not restored (template.yaml no longer has them): {', '.join(report.unrestored)};"
            f" kept in {report.unrestored_file}"
        )
    return lines


class _Record:
    """The state file of the stack this process runs, written at each step."""

    def __init__(self, path: Path, previous: LocalState | None) -> None:
        self.path = path
        self.previous = previous
        self.current: LocalState | None = None

    def _save(self, new: LocalState) -> None:
        self.current = new
        state.save(self.path, new)

    def starting(self, identity: Identity, now: datetime) -> None:
        self._save(
            LocalState(
                status="starting",
                port=identity.port,
                suffix=identity.suffix,
                pid=os.getpid(),
                started_at=now,
            )
        )

    def moto_started(self, pid: int) -> None:
        """Recorded at once: were this process killed during the deployment, the next `local up`
        or `local down` finds moto by this pid."""
        assert self.current is not None
        moto = ProcessRecord(kind="moto", name="moto", pid=pid)
        self._save(self.current.model_copy(update={"processes": (moto,)}))

    def running(
        self, local_stack: embedded.LocalStack, workers: Sequence[tuple[WorkerSpec, Child]]
    ) -> None:
        assert self.current is not None
        processes = [ProcessRecord(kind="moto", name="moto", pid=local_stack.moto_pid)]
        processes += [ProcessRecord(kind="worker", name=s.name, pid=c.pid) for s, c in workers]
        self._save(
            self.current.model_copy(
                update={
                    "status": "running",
                    "processes": tuple(processes),
                    "resources": local_stack.resources,
                }
            )
        )

    def stopping(self) -> None:
        if self.current is not None:
            self._save(self.current.model_copy(update={"status": "stopping"}))

    def stopped(self, now: datetime) -> None:
        """After the last child has stopped. A start that failed before recording anything
        leaves the file as it found it."""
        if self.current is None:
            return
        if self.current.resources is None and self.previous is None:
            self.path.unlink(missing_ok=True)  # moto never came up: nothing worth keeping
            return
        done = {"status": "stopped", "pid": None, "processes": (), "stopped_at": now}
        base = self.current if self.current.resources is not None else self.previous
        assert base is not None
        self._save(base.model_copy(update=done))
