"""A real worker processes a job through the queue and bucket that template.yaml created in moto."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from runner.local import embedded, sam
from runner.local.process import Child
from tests import support

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]


def test_worker_runs_a_job_on_the_template_stack(
    tmp_path: Path,
    app_for: Callable[[embedded.LocalResources], Any],
    worker: Callable[..., Child],
) -> None:
    # GIVEN the local stack, deployed from template.yaml
    with embedded.running_stack(template=ROOT / "template.yaml", log_dir=tmp_path) as running:
        resources = running.resources
        assert resources.queue_url.endswith(f"/{sam.DEFAULT_STACK_NAME}-jobs")
        # WHEN a worker runs on it and a job is sent
        worker(resources)
        client = app_for(resources)
        result = client.send_task(
            "tasks.imports.import_records",
            args=[[{"name": "Ada", "email": "ada@example.com"}], resources.bucket, "in"],
        )
        # THEN the job ran, and its output and result are in the stack's bucket
        assert result.get(timeout=60)["accepted"] == 1
        _, s3 = support.clients(resources)
        keys = {o["Key"] for o in s3.list_objects_v2(Bucket=resources.bucket)["Contents"]}
        assert {"in/part-0000.jsonl", f"results/celery-task-meta-{result.id}"} <= keys
