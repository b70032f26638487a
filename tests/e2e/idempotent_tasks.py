"""Tasks for the idempotency tests, loaded by workers through GALLEY_TASK_MODULES.

:class:`Idempotent` is Galley's own task class (``GalleyTask.__call__`` runs a keyed body once
per key through :func:`runner.runtime.idempotency.run_once`) with a short retry countdown.

A run's *effect* is a marker object ``effects/<job>/<run id>``; every attempt (each delivery and
each retry) also leaves ``attempts/<job>/<uuid>``. Tests count both from S3. With ``wait=True``
the body, after its effect, waits for ``gates/<job>`` to exist, so a test can hold the lease
while it sends a duplicate. ``idem.next`` is the step a chain or link runs after a keyed task:
each run leaves ``next/<job>/<uuid>``.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from celery import signals

from runner.core import aws
from runner.runtime.app import GalleyTask, app

#: How long a body waits for its gate at most (well inside the tests' 60 s time limit).
GATE_TIMEOUT = 45.0


class Idempotent(GalleyTask):
    """GalleyTask (which runs keyed bodies once per key), looking again after 1 s, not 10 s."""

    idempotency_retry_seconds = 1


def _effect(bucket: str, job: str, wait: bool) -> dict[str, str]:
    s3 = aws.client("s3")
    run = uuid.uuid4().hex
    s3.put_object(Bucket=bucket, Key=f"effects/{job}/{run}", Body=b"")
    deadline = time.monotonic() + GATE_TIMEOUT
    while wait and s3.list_objects_v2(Bucket=bucket, Prefix=f"gates/{job}").get("KeyCount") != 1:
        if time.monotonic() > deadline:
            raise TimeoutError(f"no gates/{job} after {GATE_TIMEOUT:g}s")
        time.sleep(0.1)
    return {"job": job, "run": run}


@app.task(
    base=Idempotent,
    name="idem.keyed",
    idempotency_key=lambda bucket, job, wait=False: job,
    track_started=True,  # the tests see the holder running
)
def keyed(bucket: str, job: str, wait: bool = False) -> dict[str, str]:
    """Keyed by a function of its arguments: the job."""
    return _effect(bucket, job, wait)


@app.task(base=Idempotent, name="idem.plain")
def plain(bucket: str, job: str, wait: bool = False) -> dict[str, str]:
    """No key function: idempotent only when enqueued with a galley_idempotency_key header."""
    return _effect(bucket, job, wait)


@app.task(name="idem.unguarded")
def unguarded(bucket: str, job: str, wait: bool = False) -> dict[str, str]:
    """The negative control: the same body without the wrapper."""
    return _effect(bucket, job, wait)


@app.task(name="idem.next")
def next_step(previous: dict[str, str], *, bucket: str, job: str) -> dict[str, str]:
    """A chain's next step, or a link: counts its runs (its bucket and job are keywords, so
    ``_count_attempt`` leaves it out)."""
    aws.client("s3").put_object(Bucket=bucket, Key=f"next/{job}/{uuid.uuid4().hex}", Body=b"")
    return {"after": previous["run"]}


@signals.task_prerun.connect(weak=False, dispatch_uid="galley-idem-attempts")
def _count_attempt(sender: Any = None, args: Any = None, **_: Any) -> None:
    if getattr(sender, "name", "").startswith("idem.") and args and len(args) >= 2:
        aws.client("s3").put_object(
            Bucket=args[0], Key=f"attempts/{args[1]}/{uuid.uuid4().hex}", Body=b""
        )
