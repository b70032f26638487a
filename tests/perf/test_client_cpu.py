"""CPU per AWS call in the calling process: Galley's clients beside botocore's defaults.

What a client spends of its own process's CPU per request (botocore's request building, signing,
HTTP and parsing; not the server's), for the two calls a kept job's hot path makes most:
PutObject of a job's result (a pool process) and an SQS call (the worker's main process), against
a moto server on this machine. ``galley`` is ``runner.core.aws.client()``, its User-Agent named in
its Config; ``botocore`` is the same client (retries, uploads without ``Expect: 100-continue``)
with botocore's own User-Agent, which botocore builds twice per request; ``galley result write``
is the result backend's upload (runner.core.quickput), after its first. Rounds alternate
between the two so the machine's drift falls on both; the median round is printed. Printed,
never asserted.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from botocore.config import Config

from runner.core import aws, quickput
from runner.local import embedded
from tests.perf.bench import emit, heading

ROUNDS = 7
CALLS = 300
RESULT = (
    b'{"status": "SUCCESS", "result": null, "traceback": null, "children": [], '
    b'"date_done": "2026-12-01T00:00:00.000000+00:00", "task_id": "0"}'
)


def _cpu_ms_per_call(call: Callable[[int], Any]) -> float:
    began = time.process_time()
    for i in range(CALLS):
        call(i)
    return (time.process_time() - began) / CALLS * 1000


def _botocores(service: str, endpoint_url: str, config: Config) -> Any:
    """A client as Galley's but for its User-Agent: botocore's own."""
    session = aws.new_session("us-east-1")
    made = session.client(service, endpoint_url=endpoint_url, config=config)  # type: ignore[call-overload]
    return aws.quicken_small_uploads(made) if service == "s3" else made


@pytest.mark.e2e
def test_client_cpu_per_call(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    heading(f"client CPU per call: median of {ROUNDS} alternating rounds of {CALLS} calls")
    with embedded.MotoServer(log=tmp_path / "moto.log") as server:
        for name, value in embedded.DUMMY_CREDENTIALS.items():
            monkeypatch.setenv(name, value)
        botocore_default = Config(retries={"mode": "standard", "max_attempts": 5})  # as Galley
        clients = {
            system: {
                service: (
                    aws.client(service, endpoint_url=server.url, region="us-east-1")
                    if system == "galley"
                    else _botocores(service, server.url, botocore_default)
                )
                for service in ("s3", "sqs")
            }
            for system in ("galley", "botocore")
        }
        clients["galley"]["s3"].create_bucket(Bucket="results")
        url = clients["galley"]["sqs"].create_queue(QueueName="jobs")["QueueUrl"]
        calls: dict[str, Callable[[Any], Callable[[int], Any]]] = {
            "PutObject": lambda c: (
                lambda i: c["s3"].put_object(
                    Bucket="results", Key=f"celery-task-meta-{i}", Body=RESULT
                )
            ),
            "GetQueueAttributes": lambda c: (
                lambda i: c["sqs"].get_queue_attributes(
                    QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"]
                )
            ),
        }
        quick = quickput.QuickPut(clients["galley"]["s3"])
        quick.put("results", "first", RESULT)  # learns the bucket's route
        rounds: dict[tuple[str, str], list[float]] = {}
        for _ in range(ROUNDS):
            for operation, make in calls.items():
                for system, made in clients.items():
                    rounds.setdefault((operation, system), []).append(_cpu_ms_per_call(make(made)))
            rounds.setdefault(("PutObject", "galley result write"), []).append(
                _cpu_ms_per_call(lambda i: quick.put("results", f"celery-task-meta-{i}", RESULT))
            )
    emit(
        "client_cpu.PutObject",
        "galley result write",
        cpu_ms_per_call=statistics.median(rounds["PutObject", "galley result write"]),
    )
    for operation in calls:
        figures = {system: statistics.median(rounds[operation, system]) for system in clients}
        for system, figure in figures.items():
            emit(f"client_cpu.{operation}", system, cpu_ms_per_call=figure)
        emit(
            f"client_cpu.{operation}.ratio",
            "galley/botocore",
            cpu=figures["galley"] / figures["botocore"],
        )
