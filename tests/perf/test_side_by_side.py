"""Galley against stock Celery on one moto, same machine, same run: jobs/s, requests and dollars.

Both drain the same N no-op jobs with a prefork worker at concurrency 4, talking to moto through
the test suite's proxy (tests/faults.py), which adds a round trip of :data:`RTT` to every request
(AWS is a few milliseconds away; moto is on this machine) and counts requests by AWS operation.
The jobs are sent straight to moto, not through the proxy, once the worker is polling: the counts
are the worker's alone. The clock runs from the first send until the poller (every 0.1 s) sees the
last job done: with N = 400 Galley's kept run lasted 3.6 s, of which 0.6 s passed between its last
job's end and the poller's notice, so N is 1,000. Scenarios:

- ``kept``: the result is kept (``perf.noop``); done when the queue is empty and every result is
  in the bucket;
- ``ignored``: fire-and-forget (``ignore_result=True``, ``perf.noop_ignored``); done when the queue
  is empty;
- ``chord``: :data:`CHORDS` chords of three no-op header tasks and a body, sent at once by a client
  of each system (straight to moto, uncounted); done when every body's result is in. Stock Celery's
  S3 backend cannot count, so each chord also runs ``celery.chord_unlock``, polling every second;
  Galley counts header completions in S3 (runner/runtime/chords.py).

Stock Celery is ``tests/perf/stock_app.py``: SQS broker and S3 backend as Celery's documentation
configures them, Celery's defaults otherwise (early ack, prefetch multiplier 4). Galley is
``runner.app`` as deployed (late ack, heartbeat, dead-lettering), with its default settings.

Prices (us-east-1 list prices): SQS $0.40 per million requests; S3 PUT/POST/DELETE $5.00 and
GET/HEAD $0.40 per million. One SendMessage per job is added for the sender (batched sends cost
a tenth of that; the table assumes the common one-by-one ``.delay()``). Printed, never asserted.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from celery import Celery, chord

from runner.core import settings
from runner.local import embedded
from runner.local.process import Child, python_module, wait_for
from runner.wire import codec
from tests import support
from tests.faults import FaultProxy
from tests.perf import stock_app
from tests.perf.bench import emit, heading

N = 1000
CONCURRENCY = 4
#: Latency the proxy adds to every request (one round trip).
RTT = 0.010
SQS_PRICE = 0.40
S3_WRITE_PRICE = 5.00
S3_READ_PRICE = 0.40
S3_WRITES = ("s3:PUT", "s3:POST", "s3:DELETE")
S3_READS = ("s3:GET", "s3:HEAD")
SCENARIOS = {"kept": "perf.noop", "ignored": "perf.noop_ignored", "chord": "perf.one"}
CHORDS = 40


@dataclasses.dataclass
class Run:
    system: str
    scenario: str
    seconds: float
    counts: Counter[str]
    #: Jobs, or chords for the chord scenario.
    units: int = N
    #: SendMessage requests per unit from the sender (4 per chord: 3 header tasks and the body).
    sends: int = 1

    @property
    def per_s(self) -> float:
        return self.units / self.seconds

    def per_unit(self, prefix: str) -> float:
        return sum(v for k, v in self.counts.items() if k.startswith(prefix)) / self.units

    @property
    def dollars_per_million(self) -> float:
        """Dollars per million units: the worker's requests plus the sender's SendMessages."""
        sqs = self.per_unit("sqs:") + self.sends
        writes = sum(self.counts[k] for k in S3_WRITES) / self.units
        reads = sum(self.counts[k] for k in S3_READS) / self.units
        return sqs * SQS_PRICE + writes * S3_WRITE_PRICE + reads * S3_READ_PRICE


def _start_galley(stack: embedded.LocalResources, proxy_url: str, log: Path) -> Child:
    through_proxy = dataclasses.replace(stack, endpoint_url=proxy_url)
    return support.start_worker(
        through_proxy,
        log,
        concurrency=CONCURRENCY,
        GALLEY_TASK_MODULES="tests.perf.noop_tasks,tests.perf.chord_tasks",
        **{settings.RECEIVE_WAIT_SECONDS: "20"},  # as deployed (locally it is 5)
    )


def _start_stock(stack: embedded.LocalResources, proxy_url: str, log: Path) -> Child:
    env = {
        **support.attached_env_plain(),
        **dataclasses.replace(stack, endpoint_url=proxy_url).env(),
        "STOCK_QUEUE_URL": stack.queue_url,
        "STOCK_BUCKET": stack.bucket,
    }
    argv = python_module(
        "celery", "-A", "tests.perf.stock_app", "worker", "--loglevel", "INFO",
        "--pool", "prefork", "--concurrency", str(CONCURRENCY),
    )  # fmt: skip
    worker = Child(argv, env=env, log=log)

    def ready() -> bool:
        if not worker.alive():
            raise AssertionError(f"stock worker exited early:\n{worker.log_tail(60)}")
        return bool(log.exists() and support.READY.search(log.read_text(errors="replace")))

    wait_for(ready, timeout=60, what="the stock celery worker to be ready")
    return worker


SYSTEMS: dict[str, tuple[Callable[[embedded.LocalResources, str, Path], Child], str]] = {
    # system -> (start a worker, the routing key its messages carry)
    "stock-celery": (_start_stock, stock_app.QUEUE),
    "galley": (_start_galley, "jobs"),
}


def _results(s3: Any, stack: embedded.LocalResources) -> int:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=stack.bucket)
    return sum(
        1 for page in pages for o in page.get("Contents", []) if "celery-task-meta-" in o["Key"]
    )


def _client(system: str, stack: embedded.LocalResources) -> Any:
    """A client app of ``system`` sending straight to moto (its requests are not counted)."""
    if system == "stock-celery":
        return stock_app.configure(
            Celery("stock-client"), stack.queue_url, stack.bucket, stack.endpoint_url
        )
    from runner.runtime.app import create_app

    return create_app()  # its settings from the environment: the stack's


def _send_jobs(system: str, scenario: str, stack: embedded.LocalResources) -> Callable[[], bool]:
    """Send N jobs of ``scenario``; returns whether they are all done."""
    sqs, s3 = support.clients(stack)  # made once: a client costs ~0.1 s of CPU to build
    routing_key = SYSTEMS[system][1]
    bodies = [
        codec.encode_message(codec.build(SCENARIOS[scenario], queue=routing_key)) for _ in range(N)
    ]  # each its own task id, so each keeps a result of its own
    for first in range(0, N, 10):
        entries = [
            {"Id": str(i), "MessageBody": body} for i, body in enumerate(bodies[first : first + 10])
        ]
        sqs.send_message_batch(QueueUrl=stack.queue_url, Entries=entries)

    def done() -> bool:
        if support.queue_depth(stack, stack.queue_url):
            return False
        return scenario != "kept" or _results(s3, stack) >= N

    return done


def _send_chords(client: Any) -> Callable[[], bool]:
    """Send CHORDS chords at once; returns whether every body has its result."""
    pending = [
        chord([client.signature("perf.one") for _ in range(3)], client.signature("perf.total"))
        .apply_async()
        .id
        for _ in range(CHORDS)
    ]

    def done() -> bool:
        pending[:] = [i for i in pending if client.AsyncResult(i).state != "SUCCESS"]
        return not pending

    return done


def _drain(
    system: str,
    scenario: str,
    server_url: str,
    proxy: FaultProxy,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Run:
    start = SYSTEMS[system][0]
    stack = support.provision(server_url, support.unique_config(visibility_timeout=60))
    proxy.reset_counts()
    worker = start(stack, proxy.url, tmp_path / f"{system}-{scenario}.log")
    try:
        wait_for(
            lambda: proxy.counts()["sqs:ReceiveMessage"] > 0,
            timeout=30,
            what=f"{system} polling",
        )
        with monkeypatch.context() as env:
            for name, value in stack.env().items():  # the client talks to moto directly
                env.setenv(name, value)
            client = _client(system, stack) if scenario == "chord" else None
            proxy.reset_counts()
            began = time.monotonic()
            done = _send_jobs(system, scenario, stack) if client is None else _send_chords(client)
            wait_for(done, timeout=900, interval=0.1, what=f"{system} draining {scenario}")
            seconds = time.monotonic() - began
            counts = proxy.counts()
            if client is not None:
                client.close()
    finally:
        worker.stop(grace=30)
    if scenario == "chord":
        return Run(system, scenario, seconds, counts, units=CHORDS, sends=4)
    return Run(system, scenario, seconds, counts)


def _print(run: Run) -> None:
    unit = "chord" if run.scenario == "chord" else "job"
    emit(
        f"side_by_side.{run.scenario}",
        run.system,
        **{f"{unit}s": run.units, f"{unit}s_per_s": run.per_s},
        **{f"aws_per_{unit}": run.per_unit("sqs:") + run.per_unit("s3:")},
        **{f"sqs_per_{unit}": run.per_unit("sqs:"), f"s3_per_{unit}": run.per_unit("s3:")},
        **{f"dollars_per_million_{unit}s": run.dollars_per_million},
    )
    for name, count in sorted(run.counts.items()):
        emit(
            f"side_by_side.{run.scenario}.by_operation",
            f"{run.system}:{name}",
            **{f"per_{unit}": count / run.units},
        )


@pytest.mark.e2e
@pytest.mark.timeout(3600)
def test_galley_against_stock_celery(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    heading(
        f"side by side: {N} no-op jobs and {CHORDS} chords of 3, prefork concurrency "
        f"{CONCURRENCY}, {RTT * 1000:.0f} ms added per request; prices: SQS ${SQS_PRICE}/M "
        f"requests, S3 PUT ${S3_WRITE_PRICE}/M, GET/HEAD ${S3_READ_PRICE}/M, + the sender's "
        "SendMessage per job (4 per chord)"
    )
    # BENCH_SYSTEMS=galley runs one system only (while tuning); the ratios need both
    chosen = os.environ.get("BENCH_SYSTEMS", ",".join(SYSTEMS)).split(",")
    runs: dict[tuple[str, str], Run] = {}
    with embedded.MotoServer(log=tmp_path / "moto.log") as server, FaultProxy(server.url) as proxy:
        proxy.inject("latency", seconds=RTT)
        for scenario in SCENARIOS:
            for system in chosen:
                run = _drain(system, scenario, server.url, proxy, tmp_path, monkeypatch)
                runs[system, scenario] = run
                _print(run)
    for scenario in SCENARIOS if len(chosen) == len(SYSTEMS) else ():
        galley, stock = runs["galley", scenario], runs["stock-celery", scenario]
        emit(
            f"side_by_side.{scenario}.ratio",
            "galley/stock",
            throughput=galley.per_s / stock.per_s,
            cost=galley.dollars_per_million / stock.dollars_per_million,
        )
