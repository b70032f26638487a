"""Start-up checks against AWS: the queues, the dead-letter queue and the results bucket exist,
can be reached, and agree with the settings.

Used by the Celery worker at start and by `galley doctor` (the Lambda consumer checks only its
settings and that a dead-letter queue is set, at cold start). Pure
functions over the boto3 clients the caller passes (:func:`clients` builds them with short
timeouts). No AWS, botocore or network fault escapes: each becomes a :class:`Problem` naming the
environment variable to fix. When AWS cannot be reached at all (or refuses the credentials), that
is reported once and the remaining checks are skipped.

The probes of AWS and the faults they turn into problems are in :mod:`runner.ops.probes`; this
module runs them in order, as `galley doctor` lists them, and resolves what the worker uses.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

from runner.core import aws, queues
from runner.core.settings import (
    DLQ_URL,
    RESULTS_BUCKET,
    VISIBILITY_TIMEOUT,
    AwsSettings,
    WorkerSettings,
)
from runner.ops.probes import (
    AWS_ACCESS_KEY_ID,
    Failed,
    Problem,
    QueueFacts,
    Stop,
    check_bucket,
    inspect_queue,
    read_queue,
)

__all__ = [
    "AWS_ACCESS_KEY_ID",
    "NO_DEAD_LETTER_QUEUE",
    "Check",
    "Problem",
    "QueueFacts",
    "Report",
    "Resolved",
    "Status",
    "clients",
    "format_problems",
    "inspect_queue",
    "run_checks",
    "worker_problems",
]


def no_dead_letter_queue(variable: str = DLQ_URL) -> str:
    return (
        f"no dead-letter queue: set {variable} or give the queue a RedrivePolicy; "
        "without one a failing job is retried forever"
    )


NO_DEAD_LETTER_QUEUE = no_dead_letter_queue()

Status = Literal["ok", "fail", "skipped"]


@dataclass(frozen=True)
class Resolved:
    """What the checks learnt, for the process to use."""

    #: GALLEY_VISIBILITY_TIMEOUT when set, else the queue's VisibilityTimeout.
    visibility_timeout: int
    #: GALLEY_DLQ_URL when set, else the dead-letter queue of the queue's RedrivePolicy.
    dlq_url: str | None


@dataclass(frozen=True)
class Check:
    """One check's outcome, as `galley doctor` lists it."""

    variable: str
    status: Status
    #: What was found (ok), the problem's message (fail) or why it was not checked (skipped).
    detail: str

    @property
    def problem(self) -> Problem | None:
        return Problem(self.variable, self.detail) if self.status == "fail" else None

    def __str__(self) -> str:
        return f"{self.variable}: {self.detail}"


@dataclass(frozen=True)
class Report:
    checks: tuple[Check, ...]
    resolved: Resolved

    @property
    def problems(self) -> list[Problem]:
        return [check.problem for check in self.checks if check.problem is not None]


class _Skip(Exception):
    pass


def clients(settings: AwsSettings, *, session: Any = None) -> tuple[Any, Any]:
    """SQS and S3 clients for the checks (the "checks" use: short timeouts, one retry)."""
    options: dict[str, Any] = {
        "endpoint_url": settings.endpoint_url,
        "region": settings.region,
        "session": session,
        "use": "checks",
    }
    return aws.client("sqs", **options), aws.client("s3", **options)


def run_checks(settings: WorkerSettings, sqs: Any, s3: Any, consume: str = queues.JOBS) -> Report:
    """Every check, in order, for a process that consumes the queue with role ``consume``
    (runner.core.queues): that queue, its visibility timeout, its dead-letter queue, the stack's
    other queue, the bucket."""
    checker = _Checker(settings, sqs, s3, consume)
    checks: list[Check] = []
    stopped: Problem | None = None
    for variable, step in checker.steps():
        if stopped is not None:
            checks.append(Check(variable, "skipped", f"not checked (fix {stopped.variable} first)"))
            continue
        try:
            checks.append(step())
        except Stop as stop:
            stopped = stop.problem
            checks.append(Check(stop.problem.variable, "fail", stop.problem.message))
        except Failed as failure:
            checks.append(Check(failure.problem.variable, "fail", failure.problem.message))
        except _Skip as skip:
            checks.append(Check(variable, "skipped", str(skip)))
    return Report(tuple(checks), checker.resolved())


def worker_problems(
    settings: WorkerSettings, sqs: Any, s3: Any, consume: str = queues.JOBS
) -> tuple[list[Problem], Resolved]:
    """What is wrong (empty when all is well) and what the checks resolved."""
    report = run_checks(settings, sqs, s3, consume)
    return report.problems, report.resolved


def format_problems(problems: Iterable[Problem]) -> str:
    """One line per problem."""
    return "\n".join(str(problem) for problem in problems)


class _Checker:
    def __init__(self, settings: WorkerSettings, sqs: Any, s3: Any, consume: str) -> None:
        self.settings, self.sqs, self.s3 = settings, sqs, s3
        self.consume = queues.check_role(consume)
        #: The consumed queue's variables, and the stack's other queue (checked to exist).
        self.queue_variable = queues.QUEUE_VARIABLE[consume]
        self.dlq_variable = queues.DLQ_VARIABLE[consume]
        self.queue_url = queues.urls(settings).get(consume)
        self.other = next(role for role in queues.ROLES if role != consume)
        self.queue: QueueFacts | None = None
        self.visibility_timeout = settings.visibility_timeout
        self.given_dlq_url = settings.long_dlq_url if consume == queues.LONG else settings.dlq_url
        self.dlq_url = self.given_dlq_url

    def steps(self) -> list[tuple[str, Callable[[], Check]]]:
        steps = [
            (self.queue_variable, self.queue_exists),
            (VISIBILITY_TIMEOUT, self.visibility_agrees),
            (self.dlq_variable, self.dead_letter_queue),
        ]
        if self.other in queues.urls(self.settings):
            steps.append((queues.QUEUE_VARIABLE[self.other], self.other_queue_exists))
        steps.append((RESULTS_BUCKET, self.bucket_exists))
        return steps

    def resolved(self) -> Resolved:
        return Resolved(visibility_timeout=self.visibility_timeout, dlq_url=self.dlq_url)

    def _inspect(self, url: str, variable: str) -> QueueFacts:
        return read_queue(self.sqs, url, variable, self.settings.endpoint_url)

    def queue_exists(self) -> Check:
        if self.queue_url is None:
            raise Stop(
                Problem(
                    self.queue_variable,
                    f"not set, so no worker can consume the {self.consume} queue",
                )
            )
        self.queue = self._inspect(self.queue_url, self.queue_variable)
        return Check(self.queue_variable, "ok", _reachable(self.queue))

    def other_queue_exists(self) -> Check:
        variable = queues.QUEUE_VARIABLE[self.other]
        url = queues.urls(self.settings)[self.other]
        return Check(variable, "ok", _reachable(self._inspect(url, variable)))

    def _read_queue(self) -> QueueFacts:
        if self.queue is None:
            raise _Skip(f"not checked (the queue in {self.queue_variable} could not be read)")
        return self.queue

    def visibility_agrees(self) -> Check:
        queue = self._read_queue()
        if "visibility_timeout" not in self.settings.model_fields_set:
            self.visibility_timeout = queue.visibility_timeout
            return Check(
                VISIBILITY_TIMEOUT,
                "ok",
                f"not set: the queue's {queue.visibility_timeout} s is used",
            )
        given, actual = self.settings.visibility_timeout, queue.visibility_timeout
        if given != actual:
            raise Failed(
                Problem(
                    VISIBILITY_TIMEOUT,
                    f"{given} differs from the {self.consume} queue's VisibilityTimeout "
                    f"{actual}; set it to {actual} or unset it (the queue's value is then used)",
                )
            )
        return Check(VISIBILITY_TIMEOUT, "ok", f"{queue.visibility_timeout} s, as the queue's")

    def dead_letter_queue(self) -> Check:
        variable = self.dlq_variable
        if self.given_dlq_url:
            self._inspect(self.given_dlq_url, variable)
            return Check(variable, "ok", f"dead-letter queue {self.given_dlq_url} exists")
        queue = self._read_queue()
        if queue.dead_letter_url is None:
            raise Failed(Problem(variable, no_dead_letter_queue(variable)))
        try:
            self._inspect(queue.dead_letter_url, variable)
        except Stop:
            raise
        except Failed as failure:
            raise Failed(
                Problem(
                    variable,
                    "the dead-letter queue in the queue's RedrivePolicy: "
                    f"{failure.problem.message}; recreate it or fix the RedrivePolicy",
                )
            ) from None
        self.dlq_url = queue.dead_letter_url
        return Check(
            variable,
            "ok",
            f"not set: the queue's RedrivePolicy sends to {queue.dead_letter_url} "
            f"after {queue.max_receive_count} receives",
        )

    def bucket_exists(self) -> Check:
        bucket = self.settings.results_bucket
        check_bucket(self.s3, bucket, self.settings.endpoint_url)
        return Check(RESULTS_BUCKET, "ok", f"bucket {bucket} exists")


def _reachable(queue: QueueFacts) -> str:
    return f"queue {queue.url} exists (VisibilityTimeout {queue.visibility_timeout} s)"
