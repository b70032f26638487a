"""`galley demo`: the whole local path in one run — stack up, example jobs, results, stack down."""

from __future__ import annotations

import csv
import io
import os
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

from runner.core import aws
from runner.local import embedded
from runner.local.process import wait_for
from runner.ops import status
from runner.ops.dashboard import server
from runner.runtime import results

Out = Callable[[str], None]

ORDERS_KEY = "inbox/orders.csv"
UPLOAD_KEY = "uploads/invoice-2026-11.pdf"


def _orders_csv(rows: int = 200) -> bytes:
    rng = random.Random(7)  # noqa: S311 - demo data, not security
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["order_id", "region", "quantity", "amount"])
    for n in range(rows):
        region = rng.choice(["eu", "us", "ap"])
        writer.writerow([n, region, rng.randint(1, 5), round(rng.uniform(5, 500), 2)])
    return buffer.getvalue().encode()


def _customers(count: int = 300) -> list[dict[str, Any]]:
    people: list[dict[str, Any]] = [
        {"name": f"Customer {n}", "email": f"c{n}@example.com"} for n in range(count)
    ]
    for n in range(0, count, 37):  # a few bad rows the import rejects
        people[n] = {"name": "", "email": "nobody"}
    return people


def _show_progress(out: Out, label: str) -> Callable[[results.JobStatus], None]:
    def show(status: results.JobStatus) -> None:
        if (
            status.state == "PROGRESS"
            and isinstance(status.result, dict)
            and ("done" in status.result)
        ):
            out(f"  {label}: {status.result['done']}/{status.result['total']} records")
        elif not status.ready:
            out(f"  {label}: {status.state}")

    return show


def run(out: Out = print, *, work_dir: Path = Path(".galley"), timeout: float = 120) -> int:
    """Run the demo; 0 when every example job ended as expected."""
    work_dir.mkdir(parents=True, exist_ok=True)
    with embedded.running_stack(log_dir=work_dir) as running:
        stack = running.resources
        out(f"stack         template.yaml deployed into moto as {running.deployed.name}")
        out(f"moto server   {stack.endpoint_url} (pid {running.moto_pid}), log {work_dir}/moto.log")
        out(f"jobs queue    {stack.queue_url}")
        out(f"dead letters  {stack.dlq_url}")
        out(f"results       s3://{stack.bucket}/results/")
        os.environ.update(stack.env())
        worker = embedded.start_worker(stack, log=work_dir / "worker.log")
        out(f"celery worker pid {worker.pid}, log {work_dir}/worker.log")
        try:
            page = _dashboard()
            out(f"dashboard     {page.url}  (open it to watch the jobs; it stops with the demo)\n")
            try:
                return _jobs(out, stack, timeout)
            finally:
                page.stop()
        finally:
            out("\nstopping worker and moto server")
            worker.stop(grace=30)


def _dashboard() -> server.Running:
    """`galley dashboard` of the demo's stack, served by this process on any free port."""
    return server.start(*status.attach(None), port=0, interval=1.0)


def _jobs(out: Out, stack: embedded.LocalResources, timeout: float) -> int:
    # Imported here: the app reads its settings from the environment set above.
    from runner.runtime.app import app
    from tasks.imports import import_records
    from tasks.reports import summarize_csv
    from tasks.uploads import publish_upload

    s3 = aws.client("s3")
    s3.put_object(Bucket=stack.bucket, Key=ORDERS_KEY, Body=_orders_csv())

    out(f"1. summarize_csv: reads s3://{stack.bucket}/{ORDERS_KEY}, writes a summary beside it")
    summary = summarize_csv.delay(stack.bucket, ORDERS_KEY)
    done = results.wait(app, summary.id, timeout=timeout, on_change=_show_progress(out, "summary"))
    out(f"  -> {done.state}: {done.result}\n")
    ok = done.state == "SUCCESS"

    out("2. import_records: 300 customers into S3 in chunks, reporting progress")
    imported = import_records.delay(_customers(), stack.bucket, "imports/customers")
    done = results.wait(
        app, imported.id, timeout=timeout, interval=0.05, on_change=_show_progress(out, "import")
    )
    if done.state == "SUCCESS":
        out(
            f"  -> SUCCESS: {done.result['accepted']} accepted, "
            f"{len(done.result['rejected'])} rejected, {len(done.result['keys'])} objects written\n"
        )
    ok = ok and done.state == "SUCCESS"

    out(f"3. publish_upload: waits for s3://{stack.bucket}/{UPLOAD_KEY}, retrying with backoff")
    published = publish_upload.delay(stack.bucket, UPLOAD_KEY)
    seen: list[results.JobStatus] = []

    def retrying() -> bool:
        seen.append(results.status(app, published.id))
        return seen[-1].state == "RETRY"

    wait_for(retrying, timeout=timeout, what="publish_upload to retry")
    out(f"  -> RETRY: {seen[-1].error}")
    out("  the uploader finishes; the next try finds the object")
    s3.put_object(Bucket=stack.bucket, Key=UPLOAD_KEY, Body=b"%PDF-1.7 demo invoice")
    done = results.wait(app, published.id, timeout=timeout)
    out(f"  -> {done.state}: {done.result or done.error}")
    ok = ok and done.state == "SUCCESS"

    out(
        "\ndemo "
        + (
            "passed: every job ran on the worker and its result is in S3"
            if ok
            else "FAILED: see .galley/worker.log"
        )
    )
    return 0 if ok else 1
