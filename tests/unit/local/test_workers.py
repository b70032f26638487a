"""runner.local.workers: which files changed in tasks/, and workers handled as a group."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from runner.core import queues, settings
from runner.local import embedded, workers
from runner.local.resources import LocalResources

RESOURCES = LocalResources("http://127.0.0.1:1", "us-east-1", "q", "d", "b", 120)


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _package(root: Path) -> Path:
    package = root / "tasks"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "jobs.py").write_text("x = 1\n")
    (package / "sub" / "deep.py").write_text("y = 1\n")
    return package


def test_a_changed_new_or_removed_module_is_seen_once_per_poll(tmp_path: Path) -> None:
    # GIVEN a watcher over a task package
    package = _package(tmp_path)
    clock = _Clock()
    watcher = workers.TaskWatcher([package], interval=1.0, clock=clock)
    clock.now = 1.0
    assert watcher.changes() == []
    # WHEN a module is edited, one added (in a subpackage), one removed, and a non-module written
    (package / "jobs.py").write_text("x = 2  # edited\n")
    (package / "sub" / "new.py").write_text("z = 1\n")
    (package / "sub" / "deep.py").unlink()
    (package / "notes.txt").write_text("not a module")
    # THEN nothing is looked at before the interval has passed
    clock.now = 1.5
    assert watcher.changes() == []
    # AND then each module is reported, once
    clock.now = 2.0
    assert watcher.changes() == sorted(
        [package / "jobs.py", package / "sub" / "new.py", package / "sub" / "deep.py"]
    )
    clock.now = 3.0
    assert watcher.changes() == []


def test_a_touch_that_changes_only_the_time_counts(tmp_path: Path) -> None:
    package = _package(tmp_path)
    clock = _Clock()
    watcher = workers.TaskWatcher([package], interval=1.0, clock=clock)
    info = (package / "jobs.py").stat()
    os.utime(package / "jobs.py", ns=(info.st_atime_ns, info.st_mtime_ns + 1_000_000))
    clock.now = 1.0
    assert watcher.changes() == [package / "jobs.py"]


def test_the_task_package_of_the_current_directory_comes_first(tmp_path: Path) -> None:
    assert workers.task_directories(tmp_path / "nowhere")  # the installed one
    package = _package(tmp_path)
    assert workers.task_directories(tmp_path) == [package]


class _FakeChild:
    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.running = True
        self.stopped = False

    def alive(self) -> bool:
        return self.running

    def terminate(self) -> None:
        self.running = False

    def stop(self, *, grace: float) -> int:
        self.running, self.stopped = False, True
        return 0


def test_workers_are_started_restarted_and_stopped_together() -> None:
    # GIVEN a pool of two workers (one per queue, say)
    started: list[_FakeChild] = []

    def start(resources: LocalResources, spec: workers.WorkerSpec) -> Any:
        started.append(_FakeChild(len(started) + 1))
        return started[-1]

    specs = [workers.WorkerSpec("jobs"), workers.WorkerSpec("long", queue=queues.LONG)]
    pool = workers.WorkerPool(specs, RESOURCES, start=start, grace=1)
    pool.start()
    assert [spec.name for spec, _ in pool.children] == ["jobs", "long"]
    # WHEN one exits by itself, THEN it is reported once
    started[1].running = False
    assert [spec.name for spec, _ in pool.newly_exited()] == ["long"]
    assert pool.newly_exited() == []
    # WHEN they are restarted, THEN both old ones were stopped and two new ones run
    pool.restart()
    assert started[0].stopped and len(started) == 4
    assert [child.pid for _, child in pool.children] == [3, 4]
    pool.stop()
    assert all(child.stopped for child in started[2:])


def test_a_worker_is_started_on_its_queue_with_its_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: dict[str, Any] = {}
    monkeypatch.setattr(embedded, "start_worker", lambda resources, **kw: seen.update(kw))
    spec = workers.WorkerSpec("long", queue=queues.LONG, concurrency=1, env={"X": "1"})
    workers.start_worker(RESOURCES, spec)
    assert seen == {"concurrency": 1, "queue": "long", "extra_env": {"X": "1"}}
    assert [s.queue for s in workers.local_workers()] == [queues.JOBS, queues.LONG]


@pytest.mark.parametrize(("shell", "expected"), [(None, "5"), ("1", "1"), ("20", "20")])
def test_a_local_worker_long_polls_5_s_unless_the_shell_sets_its_own(
    monkeypatch: pytest.MonkeyPatch, shell: str | None, expected: str
) -> None:
    # GIVEN GALLEY_RECEIVE_WAIT_SECONDS set in the shell that runs `galley local up`, or not
    if shell is None:
        monkeypatch.delenv(settings.RECEIVE_WAIT_SECONDS, raising=False)
    else:
        monkeypatch.setenv(settings.RECEIVE_WAIT_SECONDS, shell)
    seen: dict[str, Any] = {}

    class _Child:
        def __init__(self, argv: list[str], *, env: dict[str, str], log: Path | None) -> None:
            seen.update(env)

    monkeypatch.setattr(embedded, "Child", _Child)
    # WHEN a local worker starts
    embedded.start_worker(RESOURCES)
    # THEN the shell's value is used (not silently replaced), else the local default of 5 s
    assert seen[settings.RECEIVE_WAIT_SECONDS] == expected
