"""What a fresh producer process loads and builds for a plain enqueue (tests/perf/test_cold_start.py
measures it; this keeps it from coming back unnoticed).

A Lambda that only enqueues pays, on every cold start, for each module it imports and each client
it builds. A plain enqueue (an untyped task, arguments under the payload threshold) needs boto3
and one SQS client: no S3 client, even with GALLEY_RESULTS_BUCKET set as in a deployed stack, and
neither pydantic nor pydantic-settings. Each case runs in a new interpreter: this one has loaded
them all already.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[3]
QUEUE_URL = "https://sqs.us-east-1.amazonaws.com/123456789012/galley-jobs"

#: Runs in the child: every client Galley's factory is asked for is recorded and stubbed (no
#: network); prints the services asked for and which of the heavy modules got loaded.
_CHILD = """
import json, sys
from runner.core import aws

built = []

class Stub:
    def send_message(self, **request):
        return {"MessageId": "m"}

    def put_object(self, **request):
        return {}

def client(service, **options):
    built.append(service)
    return Stub()

aws.client = client
from runner.producer.sender import enqueue
enqueue(%(task)r, %(args)r, %(kwargs)r)
heavy = ("pydantic", "pydantic_settings", "pydantic_core", "runner.core.settings", "tasks.schemas")
print(json.dumps({"built": built, "loaded": [name for name in heavy if name in sys.modules]}))
"""


def _fresh_enqueue(task: str, args: list[Any], kwargs: dict[str, Any] | None = None) -> Any:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "GALLEY_"))}
    env.update(
        {
            "AWS_DEFAULT_REGION": "us-east-1",
            "GALLEY_QUEUE_URL": QUEUE_URL,
            "GALLEY_RESULTS_BUCKET": "galley-results",  # as deployed
            "GALLEY_PAYLOAD_THRESHOLD_BYTES": "4096",
        }
    )
    code = _CHILD % {"task": task, "args": args, "kwargs": kwargs}
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.splitlines()[-1])


def test_a_plain_enqueue_builds_one_sqs_client_and_loads_no_pydantic() -> None:
    # GIVEN a deployed producer's settings (results bucket set)
    # WHEN a fresh process enqueues an untyped task with small arguments
    seen = _fresh_enqueue("tasks.imports.import_records", [[], "b", "p"])
    # THEN it built an SQS client only, and loaded neither pydantic nor the settings models
    assert seen["built"] == ["sqs"]
    assert seen["loaded"] == []


def test_arguments_over_the_threshold_build_the_s3_client() -> None:
    # GIVEN the same settings
    # WHEN a fresh process enqueues arguments over the threshold (4 KiB)
    seen = _fresh_enqueue("tasks.imports.import_records", [["x" * 8192], "b", "p"])
    # THEN the arguments went to S3 through an S3 client
    assert seen["built"] == ["s3", "sqs"]


def test_a_typed_task_is_still_checked_in_a_fresh_process() -> None:
    # GIVEN a task with an input model (tasks/schemas.py)
    # WHEN a fresh process enqueues a valid call
    seen = _fresh_enqueue("tasks.reports.summarize_csv", ["bucket-1", "in/a.csv"])
    # THEN the model was loaded to check it
    assert "tasks.schemas" in seen["loaded"] and "pydantic" in seen["loaded"]
