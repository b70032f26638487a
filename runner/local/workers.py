"""The workers of `galley local up`: which ones, started and stopped together, and restarted when
a module in ``tasks/`` changes.

`local up` runs a worker per queue, jobs and long (:func:`local_workers`); everything below
handles any number of them.

Reloading: :class:`TaskWatcher` compares the ``*.py`` files under the task package's directory
(size and modification time) once a second. On a change the workers are restarted as `local
down` would stop them: SIGTERM, so each finishes its running jobs (up to
:data:`WORKER_GRACE_SECONDS`; a job still running then is killed and its message comes back
after the visibility timeout, as after any crash), and messages received but not started are
released at once. A worker that exits by itself (a task module that does not import) is
reported, and started again at the next change.
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from runner.core import queues
from runner.local import embedded
from runner.local.process import Child, stop_children
from runner.local.resources import LocalResources

#: How long a stopping worker may take to finish its running jobs before it is killed.
WORKER_GRACE_SECONDS = 30.0
#: How often ``tasks/`` is looked at.
POLL_SECONDS = 1.0
#: The package whose modules the worker loads (runner.runtime.app.TASK_PACKAGES).
TASK_PACKAGE = "tasks"


@dataclass(frozen=True)
class WorkerSpec:
    """One worker `local up` runs: its name, the queue it consumes (by role: runner.core.queues),
    its processes, and environment on top of the stack's."""

    name: str
    queue: str = queues.JOBS
    concurrency: int = 2
    env: Mapping[str, str] = field(default_factory=dict)


def local_workers(concurrency: int = 2) -> list[WorkerSpec]:
    """The workers of `local up`: one per queue of the stack (a worker serves one queue: each
    has its own visibility timeout and dead-letter queue), as on AWS the Lambda consumer runs
    the jobs queue and the Fargate workers the long one. The long queue's worker runs one job
    at a time locally, which is enough to try long jobs and keeps a laptop's load down."""
    return [
        WorkerSpec("worker", concurrency=concurrency),
        WorkerSpec("long-worker", queue=queues.LONG, concurrency=1),
    ]


Starter = Callable[[LocalResources, WorkerSpec], Child]


def start_worker(resources: LocalResources, spec: WorkerSpec) -> Child:
    return embedded.start_worker(
        resources, concurrency=spec.concurrency, queue=spec.queue, extra_env=spec.env
    )


class WorkerPool:
    """The workers of one stack: started, watched, restarted and stopped together."""

    def __init__(
        self,
        specs: Sequence[WorkerSpec],
        resources: LocalResources,
        *,
        start: Starter = start_worker,
        grace: float = WORKER_GRACE_SECONDS,
    ) -> None:
        self.specs = list(specs)
        self.resources = resources
        self._start = start
        self.grace = grace
        self.children: list[tuple[WorkerSpec, Child]] = []
        self._reported: set[int] = set()

    def start(self) -> None:
        self.children = [(spec, self._start(self.resources, spec)) for spec in self.specs]

    def stop(self) -> None:
        stop_children([child for _, child in self.children], grace=self.grace)

    def restart(self) -> None:
        self.stop()
        self.start()

    def newly_exited(self) -> list[tuple[WorkerSpec, Child]]:
        """Workers that exited by themselves since the last call (each reported once)."""
        exited = []
        for spec, child in self.children:
            if not child.alive() and child.pid not in self._reported:
                self._reported.add(child.pid)
                exited.append((spec, child))
        return exited


def task_directories(cwd: Path | None = None) -> list[Path]:
    """Where the worker finds ``tasks``: the current directory's package, as ``python -m celery``
    puts the current directory first on its path, else the installed one."""
    local = (cwd or Path.cwd()) / TASK_PACKAGE
    if (local / "__init__.py").is_file():
        return [local]
    spec = importlib.util.find_spec(TASK_PACKAGE)
    locations = spec.submodule_search_locations if spec else None
    return [Path(p) for p in locations or []]


Stamp = tuple[int, int]  # (mtime_ns, size)


class TaskWatcher:
    """Tells which ``*.py`` files under ``roots`` changed, appeared or went away since the last
    look; looks at most once per ``interval``."""

    def __init__(
        self,
        roots: Sequence[Path],
        *,
        interval: float = POLL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.roots = list(roots)
        self.interval = interval
        self._clock = clock
        self._seen = self._scan()
        self._last = clock()

    def _scan(self) -> dict[Path, Stamp]:
        found: dict[Path, Stamp] = {}
        for root in self.roots:
            for path in root.rglob("*.py"):
                try:
                    info = path.stat()
                except OSError:
                    continue  # removed between the listing and the stat
                found[path] = (info.st_mtime_ns, info.st_size)
        return found

    def changes(self) -> list[Path]:
        """The files that changed since the last look (empty if it is not time to look yet)."""
        now = self._clock()
        if now - self._last < self.interval:
            return []
        self._last = now
        current = self._scan()
        changed = sorted(
            path
            for path in current.keys() | self._seen.keys()
            if current.get(path) != self._seen.get(path)
        )
        self._seen = current
        return changed
