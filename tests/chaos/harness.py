"""The chaos scenario: N jobs through real prefork workers on a real moto server, under faults.

Each job writes a marker object ``markers/<job_id>/<uuid4>`` to S3 every time it runs
(tests/chaos/chaos_tasks.py). While the jobs drain, a timeline injects the faults, each when a
fraction of the jobs has a marker (progress measured from S3, not wall time):

====  ========================================================================================
10 %  ``kill -9`` of a worker (its whole process group: a crashed container); replaced
25 %  SIGSTOP of the moto server for longer than the visibility timeout, then SIGCONT
40 %  the long task (3 x the visibility timeout) is enqueued; one visibility timeout after it
      starts, SIGTERM of its worker (a busy worker, as ECS stops it: it must finish the task
      and exit 0), then ``kill -9`` of another worker while the long task runs; both replaced
75 %  ``kill -9`` of a worker not running the long task; replaced
====  ========================================================================================

and every job attempt's marker PUT fails with probability ``put_error_rate`` (injected in the
task, retried by Celery's autoretry through an SQS delay).

Network faults: the workers reach moto only through a FaultProxy (tests/faults.py) whose chaos
thread switches random SQS faults on and off all through the run -- 5xx, throttling, connection
resets, black holes, latency -- in short bursts. The harness's own clients (feeding, counting)
talk to moto directly. The bursts hit S3 too (result writes, the jobs' own writes) unless
``GALLEY_CHAOS_S3_FAULTS=0``.

Garbage: one garbage body (tests/garbage.py) is fed with every ``garbage_every`` jobs; each must
end in the DLQ (matched by body: dead letters are byte for byte) or, when it happens to be a
runnable job (an envelope naming ``chaos.target``), run.

Then it waits until the queue is empty (visible + in flight + delayed) and the marker count has
stopped changing, and does the accounting from the S3 markers and the queues' contents only:
enqueued, completed (jobs with a marker), lost, duplicated executions (and how many of them a
kill -9 explains), dead-lettered, garbage sent / in the DLQ / run, worker deaths.

Jobs are fed, not dumped: moto's SQS scans the whole queue on every SendMessage (three times, to
compute the queue's attributes), ReceiveMessage, DeleteMessage and ChangeMessageVisibility, so a
queue 10,000 deep makes every call ~100x slower and the run quadratic (measured: 10,000
SendMessageBatch'd jobs had not finished enqueuing after 7 minutes). The feeder keeps ``backlog``
jobs outstanding, topping up with ``enqueue_many`` (SendMessageBatch of 10) every half second.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import signal
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner.core.deadletter import REASON_ATTRIBUTE
from runner.core.settings import ProducerSettings
from runner.errors import WireError
from runner.local import embedded
from runner.local.process import Child, wait_for
from runner.ops.sqs_sweep import Sweep
from runner.producer import sender
from runner.wire import codec
from tests import garbage, support
from tests.chaos import chaos_tasks
from tests.faults import FaultProxy

TASK_MODULE = "tests.chaos.chaos_tasks"
JOB_TASK = "chaos.job"
LONG_TASK = "chaos.long"
TARGET_TASK = "chaos.target"
LONG_JOB_ID = "long-0"
#: The reason Galley gave a job whose Celery retry could not be published (SendMessage failed
#: past kombu's attempts: Celery raises Reject(requeue=False)) before runner/worker/request.py
#: requeued such a job: counted, so a regression shows.
RETRY_PUBLISH_FAILED = re.compile(r"failed: Reject: \((ClientError|OperationalError)\(")
#: Tries at starting a worker whose start-up checks keep meeting network faults.
START_ATTEMPTS = 5
#: Where Celery's result backend writes (GALLEY_RESULTS_PREFIX's default).
RESULTS_PREFIX = "results/"
#: Visible + in flight + delayed (support.queue_depth, with this thread's client).
DEPTH_ATTRIBUTES = (
    "ApproximateNumberOfMessages",
    "ApproximateNumberOfMessagesNotVisible",
    "ApproximateNumberOfMessagesDelayed",
)
#: Jobs are fed and counted in blocks of this many (ids ``job-BBBBNN``: block BBBB, index NN).
BLOCK = 100


def job_id(index: int) -> str:
    return f"job-{index:06d}"


def block_prefix(block: int) -> str:
    return f"{chaos_tasks.MARKERS}job-{block:04d}"


#: Two runs of one attempt on two workers finishing this close together began together: one
#: message handed to both by one instant's two receives. moto's ReceiveMessage marks messages
#: received without a lock; 12 threads receiving one 200-message queue got 2 of 1,000 messages
#: twice (visibility 300 s, nothing released). SQS itself may, rarely, do the same.
SIMULTANEOUS_SECONDS = 1.0


@dataclass(frozen=True)
class ChaosConfig:
    """The scenario's knobs; everything time-like derives from the visibility timeout."""

    n: int
    visibility_timeout: int = 6
    #: High enough that the faults alone never dead-letter a good job (each of the five
    #: process faults costs a message at most one extra receive).
    max_receive_count: int = 10
    workers: int = 2
    concurrency: int = 2
    put_error_rate: float = 0.05
    #: At most this many jobs enqueued without a marker yet (the feeder's target is
    #: :attr:`backlog`, smaller for a small N so the long task does not wait behind all of it).
    max_backlog: int = 300
    #: A small N would drain before the faults are over: jobs then sleep long enough that the
    #: whole run keeps the workers busy at least this long.
    min_busy_seconds: float = 60.0
    #: Progress fractions (jobs with a marker / N) at which each fault starts.
    #: (the third kill -9 is part of the long task's phase)
    kill_at: tuple[float, float] = (0.10, 0.75)
    sigstop_at: float = 0.25
    long_at: float = 0.40
    #: Network fault bursts between the workers and moto (FaultProxy.start_chaos).
    network_kinds: tuple[str, ...] = ("http_error", "throttle", "reset", "blackhole", "latency")
    #: Services the bursts hit: ("sqs",) or ("sqs", "s3").
    network_services: tuple[str, ...] = ("sqs",)
    fault_every: tuple[float, float] = (2.0, 5.0)
    fault_duration: tuple[float, float] = (0.3, 1.5)
    latency_seconds: float = 1.5
    seed: int = 20260104
    #: One garbage body is fed with every this many jobs (0: none).
    garbage_every: int = 10

    @property
    def processes(self) -> int:
        return self.workers * self.concurrency

    @property
    def backlog(self) -> int:
        return max(20, min(self.max_backlog, self.n // 10))

    @property
    def job_seconds(self) -> float:
        return max(0.005, self.min_busy_seconds * self.processes / self.n)

    @property
    def long_seconds(self) -> int:
        return 3 * self.visibility_timeout

    @property
    def sigstop_seconds(self) -> int:
        return self.visibility_timeout + 4

    @property
    def time_limit(self) -> int:
        """Above the long task plus a frozen moto (a task may block on it), with margin."""
        return self.long_seconds + self.sigstop_seconds + 60

    @property
    def garbage(self) -> int:
        return self.n // self.garbage_every if self.garbage_every else 0

    @property
    def deadline_seconds(self) -> float:
        """Bound on the whole run: 3 jobs/s is under the slowest rate measured here with the
        workers behind the fault proxy (2.7 jobs/s at N=300, fixed-length faults included)."""
        return 240.0 + self.min_busy_seconds + self.n / 3


@dataclass
class Fault:
    at: float
    what: str


@dataclass
class Report:
    """The accounting, from S3 markers and queue contents only."""

    config: ChaosConfig
    enqueued: int
    completed: int
    lost: list[str]
    duplicated_executions: int
    duplicated_jobs: int
    in_dlq: list[str]
    still_queued: list[str]
    unknown_markers: int
    long_runs: int
    long_finished: int
    executions: int
    injected_errors: int
    #: When the first and the last injected PUT error happened (seconds into the run).
    injected_span: tuple[float, float]
    faults: list[Fault]
    elapsed: float
    drained_in: float
    drained: bool
    worker_logs: list[Path]
    #: Exit codes of the SIGTERM'd workers (0: finished their tasks and stopped cleanly).
    sigterm_exits: list[int | None] = field(default_factory=list)
    #: Workers that were not killed by the harness and died anyway.
    died: list[int] = field(default_factory=list)
    #: Duplicated executions by cause (see Scenario.duplicates): "kill -9", "frozen moto",
    #: "retry sent twice", "moto receive race", and "other" (none of those: listed in
    #: ``unexplained``).
    duplicate_causes: Counter[str] = field(default_factory=Counter)
    unexplained: list[str] = field(default_factory=list)
    #: Network fault bursts the proxy switched on, and requests they hit, by kind.
    bursts: Counter[str] = field(default_factory=Counter)
    network_injected: Counter[str] = field(default_factory=Counter)
    garbage: GarbageCount = field(default_factory=lambda: GarbageCount())
    #: Workers that refused to start: their start-up checks met a network fault.
    startup_refusals: int = 0
    #: Jobs in the DLQ because their retry could not be published (must be none).
    retry_publish_failed: list[str] = field(default_factory=list)

    @property
    def throughput(self) -> float:
        return self.completed / self.drained_in if self.drained_in > 0 else 0.0

    def table(self) -> str:
        c = self.config
        lines = [
            f"chaos: N={c.n} jobs + 1 long task ({c.long_seconds} s), {c.workers} prefork workers"
            f" x {c.concurrency} processes, visibility timeout {c.visibility_timeout} s,"
            f" job {c.job_seconds * 1000:.0f} ms, maxReceiveCount {c.max_receive_count}",
            "faults injected:",
            *(f"  {f.at:8.1f} s  {f.what}" for f in self.faults),
            f"  {self.injected_span[0]:8.1f} s  .. {self.injected_span[1]:.1f} s:"
            f" {self.injected_errors} injected S3 PUT errors (p={c.put_error_rate} per attempt;"
            " raised before the PUT, retried by autoretry)",
            "accounting (S3 markers and queue contents, not worker logs):",
            f"  enqueued               {self.enqueued:7d}",
            f"  completed              {self.completed:7d}",
            f"  executions (markers)   {self.executions:7d}",
            f"  lost                   {len(self.lost):7d}",
            f"  duplicated executions  {self.duplicated_executions:7d}"
            f"  ({self.duplicated_jobs} jobs ran more than once; by cause:"
            f" {dict(self.duplicate_causes) or 'none'})",
            f"  in DLQ                 {len(self.in_dlq):7d}"
            f"  ({len(self.retry_publish_failed)} as their retry could not be published)",
            f"  still queued           {len(self.still_queued):7d}",
            f"  long task runs         {self.long_runs:7d}  (finished {self.long_finished})",
            f"  unknown markers        {self.unknown_markers:7d}",
            f"  garbage sent           {self.garbage.sent:7d}"
            f"  (of {self.garbage.generated}; {self.garbage.refused} refused by SQS, not sent)",
            f"  garbage in DLQ         {self.garbage.in_dlq:7d}"
            f"  ({self.garbage.without_reason} without a reason)",
            f"  garbage that ran       {self.garbage.ran:7d}"
            f"  ({self.garbage.expired} more expired)",
            f"  garbage unaccounted    {len(self.garbage.unaccounted):7d}",
            f"  garbage DLQ copies     {self.garbage.extra_copies:7d}  (second copies)",
            f"  DLQ strays             {self.garbage.strays:7d}  (neither a job nor garbage sent)",
            f"  worker deaths          {len(self.died):7d}  (not killed by the harness)",
            f"  worker start refusals  {self.startup_refusals:7d}"
            "  (start-up checks met a network fault; started again)",
            f"network fault bursts (SQS{'+S3' if 's3' in c.network_services else ''}):"
            f" {sum(self.bursts.values())} {dict(self.bursts)};"
            f" requests hit {dict(self.network_injected)}",
            f"elapsed {self.elapsed:.1f} s; jobs drained in {self.drained_in:.1f} s"
            f" ({self.throughput:.1f} jobs/s)" + ("" if self.drained else " -- NOT DRAINED"),
        ]
        if self.duplicated_executions:
            lines.append(
                "duplicates are SQS's at-least-once delivery, expected under these faults: a job"
                " killed (kill -9) after its marker and before its ack runs again once its"
                " visibility timeout passes; a frozen moto lets in-flight messages time out and"
                " be delivered again; retries carry the same job id; a network fault that"
                " swallows the answer to a SendMessage already done (a retry's publish) makes"
                " its retry a second copy; two concurrent receives can return one message"
                " (moto's receive race)"
            )
        if self.lost:
            lines.append(f"LOST: {', '.join(self.lost[:20])}")
        if self.unexplained:
            lines.append(f"DUPLICATES NO KNOWN CAUSE EXPLAINS: {self.unexplained[:10]}")
        if self.garbage.unaccounted:
            lines.append(f"GARBAGE UNACCOUNTED: {self.garbage.unaccounted[:5]}")
        lines.append(f"SIGTERM'd workers' exit codes: {self.sigterm_exits}")
        if self.died:
            lines.append(f"workers that died by themselves: {self.died}")
        lines.append("worker logs: " + " ".join(str(p) for p in self.worker_logs))
        return "\n".join(lines)


@dataclass
class GarbageCount:
    """What became of the garbage fed with the jobs."""

    generated: int = 0
    #: SQS refuses it (tests/garbage.py sqs_accepts): not sent.
    refused: int = 0
    sent: int = 0
    in_dlq: int = 0
    #: Of those in the DLQ, without a galley-reason (moved there by the queue's redrive policy).
    without_reason: int = 0
    #: Runnable after all (an envelope naming chaos.target): ran, or expired (REVOKED).
    ran: int = 0
    expired: int = 0
    #: Sent, and neither in the DLQ nor run: lost.
    unaccounted: list[str] = field(default_factory=list)
    #: Second copies of a garbage body in the DLQ (a dead letter's SendMessage retried by
    #: botocore after its answer was lost: SendMessage is not idempotent).
    extra_copies: int = 0
    #: DLQ messages that are neither a job nor garbage sent.
    strays: int = 0


class Markers:
    """Counts jobs with at least one marker, listing only the blocks not complete yet.

    moto lists a bucket in O(keys) and sorts every match for each page, so listing every marker
    on each poll would cost seconds at N = 10,000; a complete block is never listed again.
    """

    def __init__(self, s3: Any, bucket: str, n: int) -> None:
        self.s3, self.bucket, self.n = s3, bucket, n
        self.complete: set[int] = set()
        self.partial: dict[int, int] = {}

    def size(self, block: int) -> int:
        return min(BLOCK, self.n - block * BLOCK)

    def poll(self, enqueued: int) -> int:
        blocks = (enqueued + BLOCK - 1) // BLOCK
        for block in range(blocks):
            if block in self.complete:
                continue
            jobs = {
                key.split("/")[1] for key in list_keys(self.s3, self.bucket, block_prefix(block))
            }
            if len(jobs) >= self.size(block):
                self.complete.add(block)
                self.partial.pop(block, None)
            else:
                self.partial[block] = len(jobs)
        return sum(self.size(b) for b in self.complete) + sum(self.partial.values())


def list_keys(s3: Any, bucket: str, prefix: str) -> list[str]:
    keys: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys += [item["Key"] for item in page.get("Contents", [])]
    return keys


class Feeder(threading.Thread):
    """Enqueues the N jobs in order, keeping ``backlog`` outstanding, and keeps
    ``completed`` (jobs with a marker) current for the fault timeline."""

    def __init__(self, stack: embedded.LocalResources, markers_bucket: str, config: ChaosConfig):
        super().__init__(name="chaos-feeder", daemon=True)
        self.config = config
        self.markers_bucket = markers_bucket
        sqs, s3 = support.clients(stack)  # clients of this thread's own
        self.sqs = sqs
        self.settings = ProducerSettings(
            queue_url=stack.queue_url, region=stack.region, endpoint_url=stack.endpoint_url
        )
        self.markers = Markers(s3, markers_bucket, config.n)
        queue = stack.queue_url.rsplit("/", 1)[1]
        self.garbage = garbage.random_bodies(
            config.seed, config.garbage, task=TARGET_TASK, queue=queue
        )
        #: Garbage sent (SQS took it) and refused (not sent).
        self.garbage_sent: list[garbage.Garbage] = []
        self.garbage_refused = 0
        self.enqueued = 0
        self.completed = 0
        self.error: BaseException | None = None
        self.stopped = threading.Event()

    def run(self) -> None:
        try:
            while not self.stopped.is_set():
                self.completed = self.markers.poll(self.enqueued)
                target = min(self.config.n, self.completed + self.config.backlog)
                if target > self.enqueued:
                    self.enqueue(target)
                self.stopped.wait(0.5)
        except BaseException as error:  # reported by check() in the main thread
            self.error = error

    def enqueue(self, stop: int) -> None:
        start = self.enqueued
        seconds = self.config.job_seconds
        calls = [
            sender.Call(JOB_TASK, [self.markers_bucket, job_id(i), seconds])
            for i in range(start, stop)
        ]
        sender.enqueue_many(calls, client=self.sqs, settings=self.settings)
        self.enqueued = stop
        if self.config.garbage_every:
            self.feed_garbage(stop // self.config.garbage_every)

    def feed_garbage(self, until: int) -> None:
        """Garbage in step with the jobs: body ``i`` goes with job ``i * garbage_every``."""
        while self.garbage_refused + len(self.garbage_sent) < min(until, len(self.garbage)):
            item = self.garbage[self.garbage_refused + len(self.garbage_sent)]
            if not item.sendable:
                self.garbage_refused += 1
                continue
            self.sqs.send_message(QueueUrl=self.settings.queue_url, MessageBody=item.body)
            self.garbage_sent.append(item)

    def check(self) -> None:
        if self.error is not None:
            raise RuntimeError(f"the feeder failed: {self.error!r}") from self.error
        if not self.is_alive() and not self.stopped.is_set():
            raise RuntimeError("the feeder stopped")

    def stop(self) -> None:
        self.stopped.set()
        self.join(timeout=120)


class Scenario:
    """One chaos run; :meth:`run` returns the :class:`Report` and stops everything it started."""

    def __init__(self, config: ChaosConfig, workdir: Path) -> None:
        self.config = config
        self.workdir = workdir
        self.moto: embedded.MotoServer | None = None
        self.proxy: FaultProxy | None = None
        self.moto_stopped = False
        self.stack: embedded.LocalResources | None = None
        self.markers_bucket = f"chaos-markers-{uuid.uuid4().hex[:10]}"
        self.workers: list[Child] = []  # serving
        self.started: list[Child] = []  # everything ever started, for cleanup and logs
        self.terminated: list[Child] = []  # sent SIGTERM, finishing their tasks
        self.killed: list[int] = []  # worker pids killed with kill -9
        self.startup_refusals = 0  # workers whose start-up checks met a network fault
        self.frozen: tuple[float, float] | None = None  # when moto was SIGSTOP'd (epoch)
        #: Jobs dead-lettered because their Celery retry could not be published (must be none).
        self.retry_publish_failed: list[str] = []
        self.faults: list[Fault] = []
        self.feeder: Feeder | None = None
        self.sqs: Any = None  # the main thread's clients
        self.s3: Any = None
        self.long_enqueued = False
        self.t0 = time.monotonic()
        self.t0_epoch = time.time()
        self.deadline = self.t0 + config.deadline_seconds

    # --- bookkeeping ---

    def now(self) -> float:
        return time.monotonic() - self.t0

    def log_fault(self, what: str) -> None:
        self.faults.append(Fault(self.now(), what))
        print(f"[chaos {self.now():7.1f}s] {what}", flush=True)

    def remaining(self) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"chaos run exceeded {self.config.deadline_seconds:.0f} s")
        return left

    def wait(self, condition: Callable[[], bool], what: str, timeout: float | None = None) -> None:
        def check() -> bool:
            assert self.feeder is not None
            self.feeder.check()
            return condition()

        limit = min(timeout, self.remaining()) if timeout else self.remaining()
        wait_for(check, timeout=limit, interval=0.25, what=what)

    @property
    def resources(self) -> embedded.LocalResources:
        assert self.stack is not None
        return self.stack

    # --- the processes ---

    def start_worker(self) -> Child:
        """A worker behind the fault proxy. One whose start-up checks meet a network fault
        refuses to start (exit 1, "cannot reach"): it is started again, as ECS would."""
        for _ in range(START_ATTEMPTS - 1):
            try:
                return self._start_worker()
            except AssertionError as error:
                if "Galley cannot start" not in str(error) or "cannot reach" not in str(error):
                    raise
                self.startup_refusals += 1
                self.log_fault(
                    "  a worker refused to start (its start-up checks met a network fault)"
                )
        return self._start_worker()

    def _start_worker(self) -> Child:
        c = self.config
        log = self.workdir / f"worker-{len(self.started) + self.startup_refusals}.log"
        assert self.proxy is not None
        # the workers reach moto only through the fault proxy
        behind = dataclasses.replace(self.resources, endpoint_url=self.proxy.url)
        child = support.start_worker(
            behind,
            log,
            concurrency=c.concurrency,
            GALLEY_TASK_MODULES=TASK_MODULE,
            GALLEY_TASK_TIME_LIMIT=str(c.time_limit),
            **{chaos_tasks.PUT_ERROR_RATE: str(c.put_error_rate)},
        )
        self.started.append(child)
        self.workers.append(child)
        return child

    def long_started(self) -> tuple[int, float] | None:
        """The long task's worker (main process pid) and start (epoch), from its marker."""
        prefix = f"{chaos_tasks.MARKERS}{LONG_JOB_ID}/"
        for key in list_keys(self.s3, self.markers_bucket, prefix):
            record = json.loads(
                self.s3.get_object(Bucket=self.markers_bucket, Key=key)["Body"].read()
            )
            return int(record["worker_pid"]), float(record["at"])
        return None

    def long_finished(self) -> bool:
        prefix = f"{chaos_tasks.FINISHED}{LONG_JOB_ID}/"
        return bool(list_keys(self.s3, self.markers_bucket, prefix))

    def wait_long_started(self) -> tuple[int, float] | None:
        """Once enqueued, the long task's worker and start (None before): waits for it to
        start, so that no worker holding it unstarted is killed."""
        if not self.long_enqueued:
            return None
        self.wait(
            lambda: self.long_started() is not None,
            "the long task to start",
            timeout=self.config.long_seconds * 4,
        )
        return self.long_started()

    def victim(self) -> Child:
        """A serving worker that is not running the long task."""
        long = self.wait_long_started()
        for child in self.workers:
            if (long is None or child.pid != long[0]) and child.alive():
                return child
        raise AssertionError("no worker to kill besides the long task's")

    # --- the faults ---

    def at_progress(self, fraction: float) -> None:
        feeder = self.feeder
        assert feeder is not None
        target = int(self.config.n * fraction)
        self.wait(lambda: feeder.completed >= target, f"{fraction:.0%} of the jobs to complete")

    def kill_9(self) -> None:
        doomed = self.victim()
        os.killpg(doomed.pid, signal.SIGKILL)
        self.killed.append(doomed.pid)
        doomed.proc.wait(timeout=30)
        doomed.stop()  # reaps the group, closes the log
        self.workers.remove(doomed)
        self.log_fault(f"kill -9 worker {doomed.pid} (process group) at {self.progress()}")
        fresh = self.start_worker()
        self.log_fault(f"  replacement worker {fresh.pid} ready")

    def sigstop_moto(self) -> None:
        assert self.moto is not None and self.moto.child is not None
        pid = self.moto.child.pid
        seconds = self.config.sigstop_seconds
        os.kill(pid, signal.SIGSTOP)
        self.moto_stopped = True
        frozen_at = time.time()
        self.log_fault(
            f"SIGSTOP moto {pid} for {seconds} s"
            f" (visibility timeout {self.config.visibility_timeout} s)"
        )
        time.sleep(seconds)  # the fault itself: moto frozen longer than the visibility timeout
        os.kill(pid, signal.SIGCONT)
        self.moto_stopped = False
        self.frozen = (frozen_at, time.time())
        self.log_fault(f"SIGCONT moto {pid}")

    def enqueue_long(self) -> None:
        c = self.config
        settings = ProducerSettings(
            queue_url=self.resources.queue_url,
            region=self.resources.region,
            endpoint_url=self.resources.endpoint_url,
        )
        sender.enqueue(
            LONG_TASK,
            [self.markers_bucket, LONG_JOB_ID, c.long_seconds],
            settings=settings,
            client=self.sqs,
        )
        self.long_enqueued = True
        self.log_fault(f"long task enqueued ({c.long_seconds} s, 3 x the visibility timeout)")

    def long_phase(self) -> None:
        """The long task (3 x the visibility timeout) is enqueued; one visibility timeout into
        its run, its worker -- busy for sure -- gets SIGTERM (as ECS stops a task) and must
        finish it, keep its message invisible and exit 0; then another worker is killed."""
        self.enqueue_long()
        started = self.wait_long_started()
        assert started is not None
        pid, at = started
        self.log_fault(f"  long task started on worker {pid}")
        self.wait(lambda: time.time() >= at + self.config.visibility_timeout, "the long task")
        self.sigterm(pid)
        self.kill_9()

    def sigterm(self, pid: int) -> None:
        """SIGTERM to a worker's main process only; a replacement starts at once."""
        busy = next((w for w in self.workers if w.pid == pid), None)
        assert busy is not None, f"worker {pid} is not serving"
        os.kill(busy.pid, signal.SIGTERM)
        self.workers.remove(busy)
        self.terminated.append(busy)
        running = "running" if not self.long_finished() else "NOT running"
        self.log_fault(f"SIGTERM worker {pid} ({running} the long task) at {self.progress()}")
        fresh = self.start_worker()
        self.log_fault(f"  replacement worker {fresh.pid} ready")

    def progress(self) -> str:
        assert self.feeder is not None
        return f"{self.feeder.completed}/{self.config.n} jobs done"

    def timeline(self) -> None:
        c = self.config
        steps: list[tuple[float, Callable[[], None]]] = [
            (c.kill_at[0], self.kill_9),
            (c.sigstop_at, self.sigstop_moto),
            (c.long_at, self.long_phase),
            (c.kill_at[1], self.kill_9),
        ]
        for fraction, fault in sorted(steps, key=lambda step: step[0]):
            self.at_progress(fraction)
            fault()

    # --- the end ---

    def drain(self) -> float:
        """Waits for an empty queue, the long task's end, the SIGTERM'd worker's exit and a
        marker count that no longer moves; returns when the queue went empty."""
        feeder = self.feeder
        assert feeder is not None
        self.wait(lambda: feeder.enqueued >= self.config.n, "every job to be enqueued")
        self.wait(lambda: self.depth() == 0, "the queue to be empty")
        drained_at = self.now()
        # no more faults: what is still being settled (or comes back) settles now
        self.stop_network_chaos()
        self.wait(lambda: self.depth() == 0, "the queue to be empty without network faults")
        for child in self.terminated:
            self.wait(
                lambda child=child: not child.alive(), f"SIGTERM'd worker {child.pid} to exit"
            )
        previous = -1

        def settled() -> bool:
            nonlocal previous
            count = len(list_keys(self.s3, self.markers_bucket, chaos_tasks.MARKERS))
            steady = count == previous and self.depth() == 0
            previous = count
            return steady

        wait_for(settled, timeout=min(120, self.remaining()), interval=2, what="markers to settle")
        return drained_at

    def depth(self) -> int:
        attrs = self.sqs.get_queue_attributes(
            QueueUrl=self.resources.queue_url, AttributeNames=["All"]
        )["Attributes"]
        return sum(int(attrs[name]) for name in DEPTH_ATTRIBUTES)

    def account(self, drained_in: float, drained: bool) -> Report:
        sqs, s3 = self.sqs, self.s3
        keys = list_keys(s3, self.markers_bucket, chaos_tasks.MARKERS)
        runs = Counter(key.split("/")[1] for key in keys)
        finished = list_keys(s3, self.markers_bucket, f"{chaos_tasks.FINISHED}{LONG_JOB_ID}/")
        injected = list_keys(s3, self.markers_bucket, chaos_tasks.INJECTED)
        expected = {job_id(i) for i in range(self.config.n)} | {LONG_JOB_ID}
        dead = dead_letters(sqs, self.resources.dlq_url, self.config.visibility_timeout)
        counted, in_dlq = self.count_garbage(dead)
        still = queued_jobs(sqs, self.resources.queue_url, self.config.visibility_timeout)
        completed = expected & set(runs)
        lost = sorted(expected - completed - set(in_dlq) - set(still))
        duplicated = [j for j in completed if runs[j] > 1]
        assert self.proxy is not None
        return Report(
            config=self.config,
            enqueued=len(expected),
            completed=len(completed),
            lost=lost,
            duplicated_executions=sum(runs[j] - 1 for j in completed),
            duplicated_jobs=len(duplicated),
            in_dlq=sorted(in_dlq),
            still_queued=sorted(still),
            unknown_markers=sum(count for j, count in runs.items() if j not in expected),
            executions=len(keys),
            long_runs=runs.get(LONG_JOB_ID, 0),
            long_finished=len(finished),
            injected_errors=len(injected),
            injected_span=self.span(injected),
            faults=list(self.faults),
            elapsed=self.now(),
            drained_in=drained_in,
            drained=drained,
            worker_logs=[c.log_path for c in self.started if c.log_path],
            sigterm_exits=[child.proc.poll() for child in self.terminated],
            died=[child.pid for child in self.workers if not child.alive()],
            **self.duplicates(duplicated),
            bursts=Counter(event.kind for event in self.proxy.chaos_events()),
            network_injected=self.proxy.injected(),
            garbage=counted,
            startup_refusals=self.startup_refusals,
            retry_publish_failed=sorted(self.retry_publish_failed),
        )

    def duplicates(self, jobs: list[str]) -> dict[str, Any]:
        """Each repeated execution of ``jobs`` by cause, from the markers' records: an earlier
        run on a worker killed with kill -9 (a crash between effect and ack); an earlier run
        while moto was frozen past the visibility timeout (or just after: its marker PUT waited
        for moto); the same retry run twice (its publish retried after the answer was lost:
        SendMessage is not idempotent); the same attempt run by two workers at the same moment
        (moto's ReceiveMessage takes no lock: two concurrent receives can return one message; a
        visibility lapse would space the runs a visibility timeout apart); else "other", listed."""
        causes: Counter[str] = Counter()
        unexplained: list[str] = []
        margin = self.config.visibility_timeout
        for job in jobs:
            records = self.records(chaos_tasks.MARKERS, job)
            # attempts that failed (an injected PUT error, retried by a new message) count as
            # earlier runs too: a kill -9 after such a retry's publish and before the ack runs
            # the job from both the original message and the retry
            attempts = records + self.records(chaos_tasks.INJECTED, job)
            for index in range(1, len(records)):
                this = records[index]
                earlier = [r for r in attempts if float(r["at"]) < float(this["at"])]
                if any(int(r["worker_pid"]) in self.killed for r in earlier):
                    causes["kill -9"] += 1
                elif self.frozen is not None and any(
                    self.frozen[0] - margin <= float(r["at"]) <= self.frozen[1] + margin
                    for r in earlier
                ):
                    causes["frozen moto"] += 1
                elif this["retries"] and any(
                    r["retries"] == this["retries"] for r in records[:index]
                ):
                    causes["retry sent twice"] += 1
                elif any(
                    r["worker_pid"] != this["worker_pid"]
                    and r["retries"] == this["retries"]
                    and float(this["at"]) - float(r["at"]) < SIMULTANEOUS_SECONDS
                    for r in records[:index]
                ):
                    causes["moto receive race"] += 1
                else:
                    causes["other"] += 1
                    runs = [
                        (round(float(r["at"]) - self.t0_epoch, 1), r["worker_pid"], r["retries"])
                        for r in attempts
                    ]
                    unexplained.append(f"{job}: attempts (s, worker, retries) {sorted(runs)}")
        return {"duplicate_causes": causes, "unexplained": unexplained}

    def records(self, prefix: str, job: str) -> list[dict[str, Any]]:
        """The records of ``job``'s runs under ``prefix`` (markers or injected errors), by time."""
        found = []
        for key in list_keys(self.s3, self.markers_bucket, f"{prefix}{job}/"):
            found.append(
                json.loads(self.s3.get_object(Bucket=self.markers_bucket, Key=key)["Body"].read())
            )
        return sorted(found, key=lambda record: float(record["at"]))

    def count_garbage(self, dead: list[tuple[str, str]]) -> tuple[GarbageCount, list[str]]:
        """What became of the garbage, and the job ids in the DLQ: a dead letter is a garbage
        body sent (byte for byte), a job (decoded), or a stray."""
        assert self.feeder is not None
        sent = self.feeder.garbage_sent
        waiting = Counter(item.body for item in sent)
        counted = GarbageCount(
            generated=len(self.feeder.garbage),
            refused=self.feeder.garbage_refused,
            sent=len(sent),
        )
        jobs: list[str] = []
        for body, reason in dead:
            if waiting[body] > 0:
                waiting[body] -= 1
                counted.in_dlq += 1
                counted.without_reason += not reason.strip()
            elif body in waiting:
                counted.extra_copies += 1
            elif (job := self.dead_job(body, reason)) is not None:
                jobs.append(job)
            else:
                counted.strays += 1
        self.not_dead_lettered(sent, waiting, counted, dead)
        return counted, jobs

    def dead_job(self, body: str, reason: str) -> str | None:
        """The job id of a dead-lettered job message, or None if it is not one."""
        try:
            message = codec.decode(body)
        except WireError:
            return None
        if message.task not in (JOB_TASK, LONG_TASK) or len(message.args) < 2:
            return None
        if RETRY_PUBLISH_FAILED.search(reason):
            self.retry_publish_failed.append(str(message.args[1]))
        return str(message.args[1])

    def not_dead_lettered(
        self,
        sent: list[garbage.Garbage],
        waiting: Counter[str],
        counted: GarbageCount,
        dead: list[tuple[str, str]],
    ) -> None:
        """Garbage sent and not in the DLQ must have been a runnable job: it ran, or expired."""
        ran = {
            key.split("/")[1]
            for key in list_keys(self.s3, self.resources.bucket, chaos_tasks.GARBAGE_RAN)
        }
        for item in sent:
            if waiting[item.body] <= 0:
                continue
            waiting[item.body] -= 1
            try:
                task_id = codec.decode(item.body).id  # not dead-lettered: it must be a job
            except WireError as error:  # it could not run: it should be in the DLQ
                counted.unaccounted.append(f"{item.kind} (undecodable: {error.reason})")
                continue
            if task_id in ran:
                counted.ran += 1
            elif self.result_state(task_id) == "REVOKED":  # its expires header had passed
                counted.expired += 1
            else:
                counted.unaccounted.append(
                    f"{item.kind} (id {task_id!r}; {self.dead_as(task_id, dead)}): "
                    f"{item.body[:120]!r}"
                )

    def dead_as(self, task_id: str, dead: list[tuple[str, str]]) -> str:
        """Whether a DLQ message with another body carries ``task_id``, for the report."""
        for body, reason in dead:
            try:
                if codec.decode(body).id == task_id:
                    return f"in the DLQ with another body, reason {reason[:200]!r}"
            except WireError:
                continue
        return "no DLQ message has its id"

    def result_state(self, task_id: str) -> str | None:
        """The state Celery's S3 result backend stored for ``task_id``, if any."""
        key = f"{RESULTS_PREFIX}celery-task-meta-{task_id}"
        if task_id != task_id.encode("utf-8", "replace").decode():
            return None  # no S3 key can name it: nothing was stored
        try:
            body = self.s3.get_object(Bucket=self.resources.bucket, Key=key)["Body"].read()
        except self.s3.exceptions.NoSuchKey:
            return None
        return str(json.loads(body).get("status"))

    def span(self, keys: list[str]) -> tuple[float, float]:
        """First and last ``at`` of the records under ``keys``, in seconds into the run."""
        moments = [
            float(
                json.loads(self.s3.get_object(Bucket=self.markers_bucket, Key=key)["Body"].read())[
                    "at"
                ]
            )
            - self.t0_epoch
            for key in keys
        ]
        return (min(moments), max(moments)) if moments else (0.0, 0.0)

    # --- the whole run ---

    def run(self) -> Report:
        try:
            return self._run()
        finally:
            self.cleanup()

    def _run(self) -> Report:
        c = self.config
        self.moto = embedded.MotoServer(log=self.workdir / "moto.log").start()
        self.stack = support.provision(
            self.moto.url,
            support.unique_config(
                visibility_timeout=c.visibility_timeout, max_receive_count=c.max_receive_count
            ),
        )
        self.sqs, self.s3 = support.clients(self.stack)
        self.s3.create_bucket(Bucket=self.markers_bucket)
        self.proxy = FaultProxy(self.moto.url, seed=c.seed).start()
        for _ in range(c.workers):
            self.start_worker()
        self.t0, self.t0_epoch = time.monotonic(), time.time()
        self.deadline = self.t0 + c.deadline_seconds
        self.feeder = Feeder(self.stack, self.markers_bucket, c)
        self.feeder.start()
        self.start_network_chaos()
        drained = False
        drained_in = 0.0
        try:
            self.timeline()
            drained_in = self.drain()
            drained = True
        except TimeoutError as error:
            drained_in = self.now()
            self.faults.append(Fault(self.now(), f"GAVE UP: {error}"))
        finally:
            self.feeder.stop()
            self.stop_network_chaos()
        return self.account(drained_in, drained)

    def start_network_chaos(self) -> None:
        c = self.config
        if not c.network_kinds:
            return
        assert self.proxy is not None
        self.proxy.start_chaos(
            c.seed,
            kinds=c.network_kinds,
            every=c.fault_every,
            duration=c.fault_duration,
            total=c.deadline_seconds,
            service=None if "s3" in c.network_services else "sqs",
            seconds=c.latency_seconds,
        )
        self.log_fault(
            f"network fault bursts on ({', '.join(c.network_services)}):"
            f" {', '.join(c.network_kinds)}"
            f" every {c.fault_every[0]:g}-{c.fault_every[1]:g} s"
            f" for {c.fault_duration[0]:g}-{c.fault_duration[1]:g} s"
        )

    def stop_network_chaos(self) -> None:
        if self.proxy is not None and self.proxy.chaos_running:
            events = self.proxy.stop_chaos()
            self.log_fault(f"network fault bursts stopped after {len(events)}")

    def cleanup(self) -> None:
        if self.feeder is not None and self.feeder.is_alive():
            self.feeder.stop()
        if self.moto is not None and self.moto.child is not None and self.moto_stopped:
            os.kill(self.moto.child.pid, signal.SIGCONT)
            self.moto_stopped = False
        for child in self.started:
            child.stop(grace=self.config.long_seconds + 10)
        if self.proxy is not None:
            self.proxy.stop()
        if self.moto is not None:
            self.moto.stop()


def dead_letters(sqs: Any, url: str, visibility: int) -> list[tuple[str, str]]:
    """(body, galley-reason) of every message in ``url``."""
    found = []
    with Sweep(sqs, url, visibility=max(visibility, 30)) as sweep:
        for batch in sweep.batches():
            for raw in batch:
                reason = raw.get("MessageAttributes", {}).get(REASON_ATTRIBUTE, {})
                found.append((raw["Body"], reason.get("StringValue", "")))
    return found


def queued_jobs(sqs: Any, url: str, visibility: int) -> list[str]:
    """Job ids of the messages in ``url``, each decoded from its body (runner.wire.codec)."""
    jobs = []
    with Sweep(sqs, url, visibility=max(visibility, 30)) as sweep:
        for batch in sweep.batches():
            for raw in batch:
                try:
                    message = codec.decode(raw["Body"])
                    jobs.append(str(message.args[1]))
                except (WireError, IndexError):
                    jobs.append(f"<undecodable {raw['MessageId']}>")
    return jobs


def run(config: ChaosConfig, workdir: Path) -> Report:
    workdir.mkdir(parents=True, exist_ok=True)
    return Scenario(config, workdir).run()
