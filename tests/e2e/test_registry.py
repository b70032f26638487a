"""The worker registry with real prefork workers: entries appear, list running jobs, go."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from typing import Any

import pytest

from runner.core import settings
from runner.local import embedded
from runner.local.process import Child, wait_for
from runner.ops import registry
from tests import support
from tests.faults import FaultProxy

pytestmark = pytest.mark.e2e

#: Entries rewritten every second, so the tests see changes quickly.
FAST = {
    "GALLEY_TASK_MODULES": "tests.e2e.registry_tasks",
    settings.REGISTRY_INTERVAL: "1",
}


def status_json(stack: embedded.LocalResources) -> dict[str, Any]:
    result = subprocess.run(
        support.galley("status", "--json", "--failures", "0"),
        env=support.attached_env(stack),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    listing: dict[str, Any] = json.loads(result.stdout)["workers"]["registry"]
    return listing


def test_a_running_workers_entry_lists_its_job_and_goes_when_it_stops(
    stack: embedded.LocalResources,
    worker: Callable[..., Child],
    app_for: Callable[[embedded.LocalResources], Any],
) -> None:
    # GIVEN a prefork worker with 2 processes, running a job of ~8 s
    child = worker(stack, concurrency=2, **FAST)
    job = app_for(stack).send_task("registry.steps", args=[16, 0.5])

    # WHEN `galley status` reads the registry while the job runs
    seen: list[dict[str, Any]] = []

    def running() -> bool:
        listing = status_json(stack)
        seen[:] = [w for w in listing["workers"] if w["pid"] == child.pid and w["running"]]
        return bool(seen)

    wait_for(running, timeout=30, what="the worker's entry to list a running job")
    entry = seen[0]
    # THEN the worker's entry names it, its queue and processes, and the job with its start
    assert entry["state"] == "running"
    assert (entry["queue"], entry["concurrency"]) == ("jobs", 2)
    ((job_entry),) = entry["running"]
    assert (job_entry["id"], job_entry["task"]) == (job.id, "registry.steps")
    assert job_entry["started"] is not None and job_entry["started"] <= entry["at"]
    assert entry["version"] and entry["interval"] == 1
    # AND the text status shows the worker and its job with its age
    text = subprocess.run(
        support.galley("status", "--failures", "0"),
        env=support.attached_env(stack),
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    assert f":{child.pid}  jobs  running  1 of 2 busy" in text
    assert f"    registry.steps  {job.id}  running " in text

    # WHEN the job ends and the worker stops
    assert job.get(timeout=60) == 16
    wait_for(
        lambda: status_json(stack)["workers"][0]["totals"]["succeeded"] == 1,
        timeout=15,
        what="the entry to count the success",
    )
    assert child.stop(grace=30) == 0
    # THEN its entry reads as gone, and its object says stopped
    listing = status_json(stack)
    assert listing["workers"] == [] and listing["gone"] == 1
    _, s3 = support.clients(stack)
    (key,) = [
        o["Key"]
        for o in s3.list_objects_v2(Bucket=stack.bucket, Prefix=registry.PREFIX)["Contents"]
    ]
    stored = registry.parse(s3.get_object(Bucket=stack.bucket, Key=key)["Body"].read())
    assert (stored.state, stored.running, stored.totals["succeeded"]) == ("stopped", [], 1)


def test_s3_faults_on_registry_writes_never_stop_the_worker(
    moto_server: embedded.MotoServer,
    stack: embedded.LocalResources,
    worker: Callable[..., Child],
    app_for: Callable[[embedded.LocalResources], Any],
) -> None:
    with FaultProxy(moto_server.url) as proxy:
        # GIVEN S3 failing every write to the registry (500), and nothing else
        proxy.inject(
            "http_error", service="s3", action="PUT", path=f"/{stack.bucket}/{registry.PREFIX}"
        )
        child = worker(stack, AWS_ENDPOINT_URL=proxy.url, **FAST)
        # WHEN the registry has failed several intervals and a job is sent
        wait_for(
            lambda: proxy.injected()["http_error"] >= 4,
            timeout=30,
            what="several failed registry writes",
        )
        job = app_for(stack).send_task("registry.steps", args=[2, 0.1])
        # THEN the job runs, the worker lives, and the outage is logged once
        assert job.get(timeout=60) == 2
        assert child.alive()
        assert child.log_path is not None
        log = child.log_path.read_text()
        assert log.count("worker registry: cannot write") == 1, log
        assert status_json(stack)["workers"] == []
        # WHEN S3 heals
        proxy.heal()
        # THEN the entry appears, and the recovery is logged once
        wait_for(
            lambda: [w for w in status_json(stack)["workers"] if w["pid"] == child.pid],
            timeout=20,
            what="the entry to appear after S3 heals",
        )
        assert child.log_path.read_text().count("worker registry: writing") == 1
        assert child.stop(grace=30) == 0
