"""Garbage soak: hundreds of garbage bodies (tests/garbage.py) interleaved with good jobs through
two real prefork workers. The workers never exit, every message is settled, every good job runs
once, and every garbage message ends in the DLQ with its reason — or, when it happens to be a
runnable job, runs (or expires) like one.

``GALLEY_SOAK_N`` sets the number of garbage bodies (default 120); good jobs are a quarter of that,
at least 30. ``GALLEY_SOAK_SEED`` picks another deterministic set of bodies.
"""

from __future__ import annotations

import os
import random
import signal
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from botocore.exceptions import ClientError
from hypothesis import HealthCheck, assume, given, settings

from runner.core.deadletter import REASON_ATTRIBUTE
from runner.errors import WireError
from runner.local import embedded
from runner.local.process import Child, wait_for
from runner.ops.sqs_sweep import Sweep
from runner.wire import codec
from tests import garbage, support

pytestmark = pytest.mark.e2e

N = int(os.environ.get("GALLEY_SOAK_N", "120"))
SEED = int(os.environ.get("GALLEY_SOAK_SEED", "20260103"))
GOOD = max(30, N // 4)
TASKS = {"GALLEY_TASK_MODULES": "tests.e2e.network_tasks", "GALLEY_TASK_TIME_LIMIT": "30"}
TARGET = "soak.target"


# --- the generators themselves (no worker) ---


def test_random_bodies_are_reproducible_and_cover_every_kind() -> None:
    first, again = garbage.random_bodies(SEED, 40), garbage.random_bodies(SEED, 20)
    assert first[:20] == again
    assert {item.kind for item in first} == set(garbage.KINDS)
    assert first != garbage.random_bodies(SEED + 1, 40)
    # AND some of them SQS would refuse (raw lone surrogates, control characters)
    assert any(not item.sendable for item in first)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(garbage.strategies.garbage(task=TARGET))
def test_the_hypothesis_strategy_gives_bodies_the_decoder_reads_or_refuses(
    item: garbage.Garbage,
) -> None:
    # GIVEN a body SQS would carry (a raw lone surrogate it refuses; the codec never sees one)
    assume(item.sendable)
    # WHEN the decoder reads it
    try:
        message = codec.decode(item.body)
    except WireError as error:
        # THEN it either says why it cannot
        assert error.reason.strip()
    else:
        # OR it is a task message: one naming the target, or an unknown task
        assert message.task == TARGET or item.kind in ("unknown-task", "mutated-headers")


# --- the soak ---


def dead_letters(stack: embedded.LocalResources) -> list[tuple[str, str]]:
    """(body, galley-reason) of every message on the DLQ."""
    sqs, _ = support.clients(stack)
    found = []
    with Sweep(sqs, stack.dlq_url, visibility=60) as sweep:
        for batch in sweep.batches():
            for raw in batch:
                reason = raw.get("MessageAttributes", {}).get(REASON_ATTRIBUTE, {})
                found.append((raw["Body"], reason.get("StringValue", "")))
    return found


def markers(stack: embedded.LocalResources) -> Counter[str]:
    """Runs recorded by soak.good (by job) and soak.target (by task id)."""
    _, s3 = support.clients(stack)
    seen: Counter[str] = Counter()
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=stack.bucket, Prefix="runs/"):
        for item in page.get("Contents", []):
            key = item["Key"]
            seen[key[len("runs/") : key.rindex("/started/")]] += 1
    return seen


@dataclass
class Sent:
    """What was sent: garbage SQS took, garbage it refused (by kind), good jobs' results."""

    garbage: list[garbage.Garbage] = field(default_factory=list)
    refused: Counter[str] = field(default_factory=Counter)
    results: dict[str, Any] = field(default_factory=dict)


def send_all(stack: embedded.LocalResources, app: Any, order: list[Any]) -> Sent:
    """Sends good jobs (job ids, through Celery) and garbage (straight to SQS) in ``order``;
    garbage SQS refuses is skipped and counted."""
    sqs, _ = support.clients(stack)
    sent = Sent()
    for item in order:
        if isinstance(item, str):
            sent.results[item] = app.send_task("soak.good", args=[stack.bucket, item])
            continue
        try:
            if not item.sendable:
                raise ValueError("SQS refuses this body")
            sqs.send_message(QueueUrl=stack.queue_url, MessageBody=item.body)
        except (ValueError, ClientError):
            sent.refused[item.kind] += 1
        else:
            sent.garbage.append(item)
    return sent


@dataclass
class Fates:
    """What became of each garbage message SQS took."""

    dead_lettered: int = 0
    ran: Counter[str] = field(default_factory=Counter)
    expired: Counter[str] = field(default_factory=Counter)
    unexplained: list[garbage.Garbage] = field(default_factory=list)
    #: DLQ bodies that match no garbage sent.
    strays: list[str] = field(default_factory=list)


def fates(stack: embedded.LocalResources, app: Any, sent: Sent, runs: Counter[str]) -> Fates:
    """Each garbage message is matched to a dead letter with the same body (DLQ copies are byte
    for byte); one that is not must have been a job, and ran (a soak.target marker under its
    task id) or expired (REVOKED)."""
    reasons: dict[str, list[str]] = {}
    for body, reason in dead_letters(stack):
        reasons.setdefault(body, []).append(reason)
    found = Fates()
    for item in sent.garbage:
        if reasons.get(item.body):
            reason = reasons[item.body].pop()
            assert reason.strip(), f"a dead letter of kind {item.kind} without a reason"
            found.dead_lettered += 1
            continue
        task_id = codec.decode(item.body).id
        if runs[task_id]:
            found.ran[item.kind] += 1
        elif app.AsyncResult(task_id).state == "REVOKED":
            found.expired[item.kind] += 1
        else:
            found.unexplained.append(item)
    found.strays = [body[:100] for body, left in reasons.items() for _ in left]
    return found


def test_garbage_soak_every_message_settled_no_worker_dies(
    make_stack: Callable[..., embedded.LocalResources],
    app_for: Callable[[embedded.LocalResources], Any],
    worker: Callable[..., Child],
) -> None:
    # GIVEN two prefork workers (2 processes each) on a queue that never dead-letters by itself
    stack = make_stack(visibility_timeout=15, max_receive_count=50)
    app = app_for(stack)
    workers = [worker(stack, concurrency=2, **TASKS) for _ in range(2)]
    queue = stack.queue_url.rsplit("/", 1)[1]
    # AND N garbage bodies (some envelopes name a task the workers know), shuffled with good jobs
    good = [uuid.uuid4().hex for _ in range(GOOD)]
    order: list[Any] = [*garbage.random_bodies(SEED, N, task=TARGET, queue=queue), *good]
    random.Random(SEED).shuffle(order)  # noqa: S311 - test order

    def alive() -> bool:
        for child in workers:
            assert child.alive(), f"worker {child.pid} exited:\n{child.log_tail(80)}"
        return True

    # WHEN they are all sent (what SQS refuses is skipped and counted)
    sent = send_all(stack, app, order)
    # THEN every message is settled (visible + in flight + delayed == 0), no worker exiting
    wait_for(
        lambda: alive() and support.queue_depth(stack, stack.queue_url) == 0,
        timeout=120,
        interval=0.5,
        what="every message settled",
    )
    # AND every good job succeeded, exactly once
    states = {job: result.state for job, result in sent.results.items()}
    assert states == dict.fromkeys(good, "SUCCESS")
    runs = markers(stack)
    assert {job: runs[job] for job in good} == dict.fromkeys(good, 1)
    # AND every garbage message is in the DLQ with a reason, or was a job and ran (or expired)
    found = fates(stack, app, sent, runs)
    print(
        f"garbage soak: seed {SEED}; {N} garbage bodies: {len(sent.garbage)} sent,"
        f" {sum(sent.refused.values())} refused by SQS {dict(sent.refused)};"
        f" {found.dead_lettered} in the DLQ with a reason, {sum(found.ran.values())} ran"
        f" {dict(found.ran)}, {sum(found.expired.values())} expired {dict(found.expired)};"
        f" {GOOD} good jobs, {sum(runs[job] for job in good)} runs"
    )
    assert [(i.kind, i.body[:300]) for i in found.unexplained] == []
    assert found.strays == []  # nothing in the DLQ that was not sent as garbage
    assert found.dead_lettered >= len(sent.garbage) // 2  # most garbage is refused, not run
    # AND both workers are still up, and stop cleanly when told to
    alive()
    for child in workers:
        os.kill(child.pid, signal.SIGTERM)  # the main process only, as ECS stops a container
    for child in workers:
        assert child.proc.wait(timeout=60) == 0
