"""Fixtures: one moto server for the session, fresh resources per test, workers stopped always."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings as hypothesis_settings

from runner.local import embedded
from runner.local.process import Child, stop_children
from tests import support

# In CI (`CI=true`) the property tests draw the same examples every run, so a landing is not
# decided by chance; anywhere else each run explores new ones (and keeps what failed in
# .hypothesis/ to try first next time).
hypothesis_settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI") == "true":
    hypothesis_settings.load_profile("ci")


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[embedded.MotoServer]:
    """A real moto server on 127.0.0.1 and a free port; fails (never skips) if it cannot start."""
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    with embedded.MotoServer(log=log) as server:
        yield server


@pytest.fixture
def make_stack(moto_server: embedded.MotoServer) -> Callable[..., embedded.LocalResources]:
    """Factory: a queue + DLQ + bucket with names unique to the call."""

    def create(**config: Any) -> embedded.LocalResources:
        return support.provision(moto_server.url, support.unique_config(**config))

    return create


@pytest.fixture
def stack(make_stack: Callable[..., embedded.LocalResources]) -> embedded.LocalResources:
    return make_stack()


@pytest.fixture
def attach(
    stack: embedded.LocalResources, monkeypatch: pytest.MonkeyPatch
) -> embedded.LocalResources:
    """Point this process's environment (and so boto3 and the Celery app) at ``stack``."""
    for name, value in stack.env().items():
        monkeypatch.setenv(name, value)
    return stack


@pytest.fixture
def worker(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Callable[..., Child]]:
    """Factory: real ``celery worker`` processes, stopped at teardown; logs shown on failure."""
    started: list[Child] = []

    def create(stack: embedded.LocalResources, **kwargs: Any) -> Child:
        log = tmp_path / f"worker-{len(started)}.log"
        child = support.start_worker(stack, log, **kwargs)
        started.append(child)
        return child

    yield create
    # SIGTERM to all at once: each finishes its long poll in flight (up to 5 s) at the same
    # time, not one after the other
    stop_children(started, grace=20)
    for child in started:
        if child.log_path and child.log_path.exists():
            print(f"--- {child.log_path.name} ---\n{child.log_tail(80)}")


@pytest.fixture
def app(attach: embedded.LocalResources) -> Iterator[Any]:
    """A Galley Celery client for ``attach``'s stack, built from the environment like any process.

    Tasks are sent by name (``send_task``): the example tasks are bound to the module-level
    ``runner.runtime.app.app``, which configures itself once per process.
    """
    from runner.runtime.app import create_app

    celery = create_app()
    yield celery
    celery.close()


@pytest.fixture
def make_recording_stack(tmp_path: Path) -> Iterator[Callable[[], embedded.LocalResources]]:
    """A stack on a moto server of its own that records every request (moto's recorder)."""
    servers: list[embedded.MotoServer] = []

    def create() -> embedded.LocalResources:
        server = embedded.MotoServer(
            log=tmp_path / "moto-recording.log",
            env={
                "MOTO_ENABLE_RECORDING": "true",
                "MOTO_RECORDER_FILEPATH": str(tmp_path / "recording.jsonl"),
            },
        ).start()
        servers.append(server)
        return support.provision(server.url, support.unique_config())

    yield create
    for server in servers:
        server.stop()


@pytest.fixture
def app_for(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[embedded.LocalResources], Any]]:
    """Factory: a Galley Celery client attached (through the environment) to a given stack."""
    from runner.runtime.app import create_app

    apps: list[Any] = []

    def create(stack: embedded.LocalResources) -> Any:
        for name, value in stack.env().items():
            monkeypatch.setenv(name, value)
        celery = create_app()
        apps.append(celery)
        return celery

    yield create
    for celery in apps:
        celery.close()
