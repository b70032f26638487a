"""Cold start of a fresh Python process: import + first enqueue, Galley's producer vs Celery.

What a Lambda that only *enqueues* pays on a cold start. Each run is a new interpreter
(``python -c``) sending one task to a queue on a moto server; runs of the variants are
interleaved so that machine noise spreads over all of them. Figures per variant:

- ``wall``: spawn to exit, measured by the parent around ``subprocess.run``;
- ``in_process``: inside the child, from the first line of its code to the return of the first
  enqueue (interpreter start-up and exit excluded), split into ``import`` and ``first_send``;
- ``startup``: parent's clock before the spawn to the child's first line (exec + site).

Variants: ``producer`` (runner.producer.sender.enqueue with the settings a deployed producer has:
``GALLEY_RESULTS_BUCKET`` set), ``producer_no_bucket`` (the same without it), ``celery``
(runner.app's Celery app, ``send_task``), ``celery_stock`` (a plain Celery app with the same
broker/backend settings and no Galley import), ``boto3`` (bare ``boto3.client("sqs").send_message``:
the floor). Ratios are printed against ``boto3`` (the producer's target: at most 1.05) and against
``celery``.

The install-footprint test lists the distributions a process importing only runner.producer.sender
loads beyond boto3's, with their size on disk.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from runner.local import embedded
from runner.local.process import wait_for
from tests.perf.bench import emit, heading, summary

ROOT = Path(__file__).resolve().parents[2]
RUNS = 15
#: Untimed runs per variant first: bytecode caches written, files in the page cache.
WARMUP = 1
REGION = "us-east-1"
TASK = "tasks.imports.import_records"
ARGS: list[Any] = [[], "b", "p"]
BUCKET = "galley-bench-results"

_PRELUDE = "import time\n_t0 = time.perf_counter()\n_w0 = time.time()\n"
_MIDDLE = "_t1 = time.perf_counter()\n"
_EPILOGUE = (
    "_t2 = time.perf_counter()\n"
    "import json, os\n"
    "print('BENCH-CHILD ' + json.dumps({'startup': _w0 - float(os.environ['BENCH_SPAWNED_AT']),"
    " 'import': _t1 - _t0, 'first_send': _t2 - _t1}))\n"
)


@dataclass(frozen=True)
class Variant:
    name: str
    queue_url: str
    imports: str
    send: str
    #: GALLEY_RESULTS_BUCKET in the child's environment, as in a deployed stack.
    bucket: str | None = BUCKET

    @property
    def code(self) -> str:
        return _PRELUDE + self.imports + "\n" + _MIDDLE + self.send + "\n" + _EPILOGUE


@dataclass(frozen=True)
class Run:
    wall: float
    startup: float
    imports: float
    first_send: float

    @property
    def in_process(self) -> float:
        return self.imports + self.first_send


def _variants(queues: dict[str, str]) -> list[Variant]:
    stock_name = queues["celery_stock"].rsplit("/", 1)[-1]
    stock_config = {
        "broker_transport_options": {
            "region": REGION,
            "predefined_queues": {stock_name: {"url": queues["celery_stock"]}},
        },
        "task_default_queue": stock_name,
        "s3_bucket": BUCKET,
        "s3_region": REGION,
        "task_serializer": "json",
        "accept_content": ["json"],
    }
    return [
        Variant(
            "producer",
            queues["producer"],
            "from runner.producer.sender import enqueue",
            f"enqueue({TASK!r}, {ARGS!r}, queue_url={queues['producer']!r})",
        ),
        Variant(
            "producer_no_bucket",
            queues["producer_no_bucket"],
            "from runner.producer.sender import enqueue",
            f"enqueue({TASK!r}, {ARGS!r}, queue_url={queues['producer_no_bucket']!r})",
            bucket=None,
        ),
        Variant(
            "celery",
            queues["celery"],
            "from runner.runtime.app import app",
            f"app.send_task({TASK!r}, {ARGS!r})",
        ),
        Variant(
            "celery_stock",
            queues["celery_stock"],
            "from celery import Celery",
            "app = Celery('bench', broker='sqs://', backend='s3')\n"
            f"app.conf.update({stock_config!r})\n"
            f"app.send_task({TASK!r}, {ARGS!r})",
        ),
        Variant(
            "boto3",
            queues["boto3"],
            "import boto3",
            f"boto3.client('sqs').send_message(QueueUrl={queues['boto3']!r}, MessageBody='bench')",
        ),
    ]


def _child_env(endpoint_url: str, variant: Variant) -> dict[str, str]:
    """This environment without any AWS or Galley variable, then the stack's, dummy creds.

    Without PYTHONDONTWRITEBYTECODE too: boto3 and Celery load from the .pyc files pip wrote at
    install, so with it set only Galley's own modules (an editable install) would be compiled
    from source on every run, and the WARMUP run could not write their caches."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AWS_", "GALLEY_")) and k != "PYTHONDONTWRITEBYTECODE"
    }
    env.update(embedded.DUMMY_CREDENTIALS)
    env.update(
        {
            "AWS_ENDPOINT_URL": endpoint_url,
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            "GALLEY_QUEUE_URL": variant.queue_url,
        }
    )
    if variant.bucket:
        env["GALLEY_RESULTS_BUCKET"] = variant.bucket
    return env


def _run_once(variant: Variant, env: dict[str, str]) -> Run:
    env = {**env, "BENCH_SPAWNED_AT": repr(time.time())}
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", variant.code], env=env, cwd=ROOT, capture_output=True, text=True
    )
    wall = time.perf_counter() - started
    assert proc.returncode == 0, f"{variant.name} failed:\n{proc.stderr[-3000:]}"
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("BENCH-CHILD ")]
    assert lines, f"{variant.name} printed no timing:\n{proc.stdout}\n{proc.stderr[-3000:]}"
    child = json.loads(lines[-1].removeprefix("BENCH-CHILD "))
    return Run(wall, child["startup"], child["import"], child["first_send"])


def _queue_count(sqs: Any, url: str) -> int:
    attrs = sqs.get_queue_attributes(
        QueueUrl=url,
        AttributeNames=[
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed",
        ],
    )["Attributes"]
    return sum(int(value) for value in attrs.values())


def _queue_holds(sqs: Any, url: str, count: int) -> bool:
    return _queue_count(sqs, url) == count


def _ms(seconds: list[float]) -> dict[str, float]:
    return summary([s * 1000 for s in seconds])


def test_cold_start_producer_vs_celery(moto_server: embedded.MotoServer) -> None:
    # GIVEN one queue per variant on a moto server
    sqs = embedded.local_session(REGION).client("sqs", endpoint_url=moto_server.url)
    suffix = os.urandom(4).hex()
    names = ("producer", "producer_no_bucket", "celery", "celery_stock", "boto3")
    queues = {n: sqs.create_queue(QueueName=f"bench-cold-{n}-{suffix}")["QueueUrl"] for n in names}
    variants = _variants(queues)
    envs = {v.name: _child_env(moto_server.url, v) for v in variants}

    # WHEN each variant runs WARMUP + RUNS times in fresh processes, interleaved
    runs: dict[str, list[Run]] = {v.name: [] for v in variants}
    for round_ in range(WARMUP + RUNS):
        for variant in variants:
            run = _run_once(variant, envs[variant.name])
            if round_ >= WARMUP:
                runs[variant.name].append(run)

    # THEN every run's message arrived
    for variant in variants:
        expected = WARMUP + RUNS
        wait_for(
            functools.partial(_queue_holds, sqs, variant.queue_url, expected),
            timeout=10,
            what=f"{expected} messages on the {variant.name} queue",
        )

    heading(f"cold start: fresh process, import + first enqueue ({RUNS} runs each, interleaved)")
    walls: dict[str, float] = {}
    inside: dict[str, float] = {}
    for variant in variants:
        measured = runs[variant.name]
        wall = _ms([r.wall for r in measured])
        proc = _ms([r.in_process for r in measured])
        walls[variant.name], inside[variant.name] = wall["median"], proc["median"]
        for label, stats in (("wall", wall), ("in_process", proc)):
            emit(
                f"cold_start.{label}",
                variant.name,
                median_ms=stats["median"],
                min_ms=stats["min"],
                max_ms=stats["max"],
                runs=len(measured),
            )
        wall_median = wall["median"]
        split = {
            "startup": _ms([r.startup for r in measured])["median"],
            "import": _ms([r.imports for r in measured])["median"],
            "first_send": _ms([r.first_send for r in measured])["median"],
        }
        emit(
            "cold_start.split",
            variant.name,
            startup_median_ms=split["startup"],
            import_median_ms=split["import"],
            first_send_median_ms=split["first_send"],
            exit_ms=wall_median - sum(split.values()),
        )
    for subject in ("producer", "producer_no_bucket"):
        emit(
            "cold_start.ratio",
            f"{subject}/boto3",
            wall=walls[subject] / walls["boto3"],
            in_process=inside[subject] / inside["boto3"],
            target="<=1.05" if subject == "producer" else "-",
        )
    for subject in ("producer", "boto3", "celery_stock"):
        emit(
            "cold_start.ratio",
            f"{subject}/celery",
            wall=walls[subject] / walls["celery"],
            in_process=inside[subject] / inside["celery"],
            target="<=0.65" if subject == "producer" else "-",
        )


# --- install footprint ---

_MODULES = "import json, sys\n{}\nprint(json.dumps(sorted(sys.modules)))\n"


def _loaded_modules(code: str) -> set[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "GALLEY_"))}
    env["AWS_DEFAULT_REGION"] = REGION
    proc = subprocess.run(
        [sys.executable, "-c", _MODULES.format(code)],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return set(json.loads(proc.stdout.splitlines()[-1]))


def _distribution_bytes(name: str) -> tuple[int, int]:
    """Bytes and file count on disk of an installed distribution (its RECORD)."""
    dist = metadata.distribution(name)
    total = count = 0
    for file in dist.files or []:
        path = Path(str(dist.locate_file(file)))
        if path.is_file():
            total += path.stat().st_size
            count += 1
    return total, count


def _distributions(tops: set[str]) -> tuple[set[str], set[str], set[str]]:
    """Split top-level module names into distributions, stdlib modules and the unmapped."""
    owners = metadata.packages_distributions()
    dists: set[str] = set()
    stdlib: set[str] = set()
    unknown: set[str] = set()
    for top in tops:
        if (
            top in sys.stdlib_module_names
            or top in sys.builtin_module_names
            or top.startswith("_sysconfigdata_")
        ):
            stdlib.add(top)
        elif top in owners:
            dists.update(owners[top])
        else:
            unknown.add(top)
    return dists, stdlib, unknown


def _mib(size: int) -> float:
    return size / (1024 * 1024)


def test_producer_install_footprint() -> None:
    # GIVEN what a process loads importing only the producer, and only boto3 + an SQS client
    producer = _loaded_modules("import runner.producer.sender")
    floor = _loaded_modules(f"import boto3, botocore\nboto3.client('sqs', region_name={REGION!r})")
    bare = _loaded_modules("")  # what every process loads (site, .pth hooks)

    # WHEN the producer's extra top-level modules are mapped to their distributions
    def top(names: set[str]) -> set[str]:
        return {name.split(".", 1)[0] for name in names}

    extra_dists, extra_stdlib, unknown = _distributions(top(producer) - top(floor))
    floor_dists, _, _ = _distributions(top(floor) - top(bare))
    project = {d for d in extra_dists if d.lower() == "galley"}
    extra_dists -= project

    # THEN the producer needs the project and its settings stack, not Celery
    assert "celery" not in top(producer) and "kombu" not in top(producer)
    heading(
        "producer install footprint beyond boto3 (import runner.producer.sender vs boto3 + client)"
    )
    total = files_total = 0
    for name in sorted(extra_dists, key=str.lower):
        size, files = _distribution_bytes(name)
        total, files_total = total + size, files_total + files
        emit(
            "footprint.extra_dist",
            name,
            version=metadata.version(name),
            size_mib=_mib(size),
            files=files,
        )
    emit(
        "footprint.extra_total",
        "producer",
        dists=len(extra_dists),
        size_mib=_mib(total),
        files=files_total,
        extra_modules=len(producer - floor),
        names=",".join(sorted(extra_dists, key=str.lower)) or "-",
    )
    floor_size = sum(_distribution_bytes(name)[0] for name in floor_dists)
    emit(
        "footprint.floor",
        "boto3",
        dists=len(floor_dists),
        size_mib=_mib(floor_size),
        names=",".join(sorted(floor_dists, key=str.lower)),
    )
    emit(
        "footprint.extra_stdlib",
        "producer",
        modules=len(extra_stdlib),
        names=",".join(sorted(extra_stdlib)) or "-",
    )
    emit(
        "footprint.project",
        "producer",
        runner_modules=len({m for m in producer if m.split(".", 1)[0] == "runner"}),
        unmapped=",".join(sorted(unknown - {"runner"})) or "-",
    )
