"""Start-up checks against AWS: the queues, the dead-letter queue and the results bucket exist,
can be reached, and agree with the settings.

Used by the Celery worker at start, the Lambda consumer at cold start and `galley doctor`. Pure
functions over the boto3 clients the caller passes (:func:`clients` builds them with short
timeouts). No AWS, botocore or network fault escapes: each becomes a :class:`Problem` naming the
environment variable to fix. When AWS cannot be reached at all (or refuses the credentials), that
is reported once and the remaining checks are skipped.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    HTTPClientError,
    NoCredentialsError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

from runner.core import aws
from runner.core.settings import (
    AWS_ENDPOINT_URL,
    DLQ_URL,
    LONG_QUEUE_URL,
    QUEUE_URL,
    RESULTS_BUCKET,
    VISIBILITY_TIMEOUT,
    AwsSettings,
    WorkerSettings,
)

#: Checks answer within seconds: short timeouts and one retry, not the runtime's five attempts.
CHECK_CONFIG = Config(
    connect_timeout=5, read_timeout=10, retries={"mode": "standard", "max_attempts": 2}
)

#: boto3's variable for static credentials; named when AWS refuses or finds none.
AWS_ACCESS_KEY_ID = "AWS_ACCESS_KEY_ID"

NO_DEAD_LETTER_QUEUE = (
    "no dead-letter queue: set GALLEY_DLQ_URL or give the queue a RedrivePolicy; "
    "without one a failing job is retried forever"
)

_MISSING_QUEUE_CODES = frozenset(
    {"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist", "NonExistentQueue"}
)
_BAD_CREDENTIAL_CODES = frozenset(
    {
        "InvalidClientTokenId",
        "UnrecognizedClientException",
        "SignatureDoesNotMatch",
        "InvalidAccessKeyId",
        "ExpiredToken",
        "ExpiredTokenException",
        "InvalidToken",
    }
)
_XML_CODE = re.compile(r"<Code>([^<]+)</Code>")
#: Faults that stop every check: nothing else can be reached or signed.
_NETWORK_ERRORS = (BotoConnectionError, HTTPClientError)

Status = Literal["ok", "fail", "skipped"]


@dataclass(frozen=True)
class Problem:
    """A check that failed: the variable to fix and, in one line, what is wrong and what to do."""

    variable: str
    message: str

    def __str__(self) -> str:
        return f"{self.variable}: {self.message}"


@dataclass(frozen=True)
class QueueFacts:
    """What a queue's attributes say, as the checks use them."""

    url: str
    visibility_timeout: int
    #: The RedrivePolicy's deadLetterTargetArn as a queue URL on the same host as ``url``.
    dead_letter_url: str | None
    max_receive_count: int | None


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


class _Failed(Exception):
    def __init__(self, problem: Problem) -> None:
        super().__init__(str(problem))
        self.problem = problem


class _Stop(_Failed):
    """AWS is unreachable or refuses the credentials: no later check can succeed."""


class _Skip(Exception):
    pass


def clients(settings: AwsSettings, *, session: Any = None) -> tuple[Any, Any]:
    """SQS and S3 clients for the checks (CHECK_CONFIG: short timeouts, one retry)."""
    options: dict[str, Any] = {
        "endpoint_url": settings.endpoint_url,
        "region": settings.region,
        "session": session,
        "config": CHECK_CONFIG,
    }
    return aws.client("sqs", **options), aws.client("s3", **options)


def inspect_queue(
    sqs: Any, url: str, variable: str, *, endpoint_url: str | None = None
) -> QueueFacts | Problem:
    """The queue's facts, or the Problem (naming ``variable``, or AWS_ENDPOINT_URL when
    ``endpoint_url`` is given and cannot be reached) that kept us from reading them."""
    try:
        return _inspect(sqs, url, variable, endpoint_url)
    except _Failed as failure:
        return failure.problem


def run_checks(settings: WorkerSettings, sqs: Any, s3: Any) -> Report:
    """Every check, in order: queue, visibility timeout, dead-letter queue, long queue, bucket."""
    checker = _Checker(settings, sqs, s3)
    checks: list[Check] = []
    stopped: Problem | None = None
    for variable, step in checker.steps():
        if stopped is not None:
            checks.append(Check(variable, "skipped", f"not checked (fix {stopped.variable} first)"))
            continue
        try:
            checks.append(step())
        except _Stop as stop:
            stopped = stop.problem
            checks.append(Check(stop.problem.variable, "fail", stop.problem.message))
        except _Failed as failure:
            checks.append(Check(failure.problem.variable, "fail", failure.problem.message))
        except _Skip as skip:
            checks.append(Check(variable, "skipped", str(skip)))
    return Report(tuple(checks), checker.resolved())


def worker_problems(settings: WorkerSettings, sqs: Any, s3: Any) -> tuple[list[Problem], Resolved]:
    """What is wrong (empty when all is well) and what the checks resolved."""
    report = run_checks(settings, sqs, s3)
    return report.problems, report.resolved


def format_problems(problems: Iterable[Problem]) -> str:
    """One line per problem."""
    return "\n".join(str(problem) for problem in problems)


class _Checker:
    def __init__(self, settings: WorkerSettings, sqs: Any, s3: Any) -> None:
        self.settings, self.sqs, self.s3 = settings, sqs, s3
        self.queue: QueueFacts | None = None
        self.visibility_timeout = settings.visibility_timeout
        self.dlq_url = settings.dlq_url

    def steps(self) -> list[tuple[str, Callable[[], Check]]]:
        steps = [
            (QUEUE_URL, self.queue_exists),
            (VISIBILITY_TIMEOUT, self.visibility_agrees),
            (DLQ_URL, self.dead_letter_queue),
        ]
        if self.settings.long_queue_url:
            steps.append((LONG_QUEUE_URL, self.long_queue_exists))
        steps.append((RESULTS_BUCKET, self.bucket_exists))
        return steps

    def resolved(self) -> Resolved:
        return Resolved(visibility_timeout=self.visibility_timeout, dlq_url=self.dlq_url)

    def _inspect(self, url: str, variable: str) -> QueueFacts:
        return _inspect(self.sqs, url, variable, self.settings.endpoint_url)

    def queue_exists(self) -> Check:
        self.queue = self._inspect(self.settings.queue_url, QUEUE_URL)
        return Check(QUEUE_URL, "ok", _reachable(self.queue))

    def long_queue_exists(self) -> Check:
        assert self.settings.long_queue_url is not None
        return Check(
            LONG_QUEUE_URL,
            "ok",
            _reachable(self._inspect(self.settings.long_queue_url, LONG_QUEUE_URL)),
        )

    def _read_queue(self) -> QueueFacts:
        if self.queue is None:
            raise _Skip(f"not checked (the queue in {QUEUE_URL} could not be read)")
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
            raise _Failed(
                Problem(
                    VISIBILITY_TIMEOUT,
                    f"{given} differs from the queue's VisibilityTimeout {actual}; "
                    f"set it to {actual} or unset it (the queue's value is then used)",
                )
            )
        return Check(VISIBILITY_TIMEOUT, "ok", f"{queue.visibility_timeout} s, as the queue's")

    def dead_letter_queue(self) -> Check:
        if self.settings.dlq_url:
            self._inspect(self.settings.dlq_url, DLQ_URL)
            return Check(DLQ_URL, "ok", f"dead-letter queue {self.settings.dlq_url} exists")
        queue = self._read_queue()
        if queue.dead_letter_url is None:
            raise _Failed(Problem(DLQ_URL, NO_DEAD_LETTER_QUEUE))
        try:
            self._inspect(queue.dead_letter_url, DLQ_URL)
        except _Stop:
            raise
        except _Failed as failure:
            raise _Failed(
                Problem(
                    DLQ_URL,
                    "the dead-letter queue in the queue's RedrivePolicy: "
                    f"{failure.problem.message}; recreate it or fix the RedrivePolicy",
                )
            ) from None
        self.dlq_url = queue.dead_letter_url
        return Check(
            DLQ_URL,
            "ok",
            f"not set: the queue's RedrivePolicy sends to {queue.dead_letter_url} "
            f"after {queue.max_receive_count} receives",
        )

    def bucket_exists(self) -> Check:
        bucket = self.settings.results_bucket
        try:
            self.s3.head_bucket(Bucket=bucket)
        except (ClientError, BotoCoreError, OSError) as error:
            raise _s3_fault(error, bucket, self.s3, self.settings.endpoint_url) from None
        return Check(RESULTS_BUCKET, "ok", f"bucket {bucket} exists")


def _reachable(queue: QueueFacts) -> str:
    return f"queue {queue.url} exists (VisibilityTimeout {queue.visibility_timeout} s)"


def _inspect(sqs: Any, url: str, variable: str, endpoint_url: str | None) -> QueueFacts:
    try:
        attributes = sqs.get_queue_attributes(
            QueueUrl=url, AttributeNames=["VisibilityTimeout", "RedrivePolicy"]
        ).get("Attributes", {})
    except (ClientError, BotoCoreError, OSError) as error:
        raise _sqs_fault(error, url, variable, sqs, endpoint_url) from None
    dead_letter_url, max_receive_count = None, None
    if attributes.get("RedrivePolicy"):
        dead_letter_url, max_receive_count = _redrive(url, variable, attributes["RedrivePolicy"])
    return QueueFacts(
        url=url,
        visibility_timeout=int(attributes.get("VisibilityTimeout", 30)),
        dead_letter_url=dead_letter_url,
        max_receive_count=max_receive_count,
    )


def _redrive(url: str, variable: str, policy: str) -> tuple[str, int | None]:
    """The dead-letter queue's URL (same scheme and host as ``url``) and maxReceiveCount."""
    try:
        parsed = json.loads(policy)
        arn = str(parsed["deadLetterTargetArn"])
        count = parsed.get("maxReceiveCount")
        count = None if count is None else int(count)
    except (ValueError, KeyError, TypeError, AttributeError):
        raise _Failed(Problem(variable, f"queue {url} has an unreadable RedrivePolicy")) from None
    parts = arn.split(":")
    if len(parts) != 6 or parts[2] != "sqs":
        raise _Failed(
            Problem(variable, f"queue {url}: RedrivePolicy target {arn!r} is not an SQS queue ARN")
        )
    base = urlsplit(url)
    dead_letter_url = f"{base.scheme}://{base.netloc}/{parts[4]}/{parts[5]}"
    return dead_letter_url, count


def _code(error: ClientError) -> str:
    """The error code; read from the body when botocore could only give the HTTP status (an XML
    error answering a JSON request, as moto's IAM check and some proxies send)."""
    details = error.response.get("Error", {})
    code = str(details.get("Code", ""))
    found = _XML_CODE.search(str(details.get("Message", "")))
    return found.group(1) if code.isdigit() and found else code


def _one_line(error: Exception) -> str:
    return " ".join(str(error).split())


def _common_fault(
    error: Exception, variable: str, service: str, client: Any, endpoint_url: str | None
) -> _Failed | None:
    """Unreachable endpoint or unusable credentials (both stop the checks); else None."""
    if isinstance(error, _NETWORK_ERRORS):
        if endpoint_url:
            return _Stop(
                Problem(
                    AWS_ENDPOINT_URL,
                    f"cannot reach {endpoint_url} ({_one_line(error)}); start that server, "
                    "or unset AWS_ENDPOINT_URL to use AWS",
                )
            )
        host = urlsplit(client.meta.endpoint_url).hostname
        return _Stop(
            Problem(
                variable,
                f"cannot reach {service} at {host} ({_one_line(error)}); "
                "check the network and AWS_REGION",
            )
        )
    if isinstance(error, NoCredentialsError):
        return _Stop(
            Problem(
                AWS_ACCESS_KEY_ID,
                "no AWS credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
                "or AWS_PROFILE, or run with an IAM role",
            )
        )
    if isinstance(error, ClientError) and _code(error) in _BAD_CREDENTIAL_CODES:
        return _Stop(
            Problem(
                AWS_ACCESS_KEY_ID,
                f"AWS refused the credentials ({_code(error)}): check AWS_ACCESS_KEY_ID, "
                "AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN, or AWS_PROFILE",
            )
        )
    return None


def _sqs_fault(
    error: Exception, url: str, variable: str, sqs: Any, endpoint_url: str | None
) -> _Failed:
    common = _common_fault(error, variable, "SQS", sqs, endpoint_url)
    if common is not None:
        return common
    if isinstance(error, ClientError):
        code = _code(error)
        query_code = str(error.response.get("Error", {}).get("QueryErrorCode", ""))
        if code in _MISSING_QUEUE_CODES or query_code in _MISSING_QUEUE_CODES:
            return _Failed(
                Problem(variable, f"queue {url} does not exist (check its account, region, name)")
            )
        if "AccessDenied" in code or code == "403":
            return _Failed(
                Problem(
                    variable,
                    f"access denied to queue {url}: the role or user running Galley needs "
                    "sqs:GetQueueAttributes on it",
                )
            )
    return _Failed(Problem(variable, f"cannot read queue {url}: {_one_line(error)}"))


def _s3_fault(error: Exception, bucket: str, s3: Any, endpoint_url: str | None) -> _Failed:
    common = _common_fault(error, RESULTS_BUCKET, "S3", s3, endpoint_url)
    if common is not None:
        return common
    if isinstance(error, ClientError):
        code = _code(error)
        if code in ("404", "NoSuchBucket", "NotFound"):
            return _Failed(Problem(RESULTS_BUCKET, f"bucket {bucket} does not exist"))
        if code in ("403", "AccessDenied", "Forbidden"):
            return _Failed(
                Problem(
                    RESULTS_BUCKET,
                    f"access denied to bucket {bucket}: the role or user running Galley needs "
                    "s3:ListBucket on it (and s3:GetObject, s3:PutObject, s3:DeleteObject "
                    "on its objects)",
                )
            )
        if code in ("301", "PermanentRedirect"):
            headers = error.response.get("ResponseMetadata", {}).get("HTTPHeaders", {})
            region = headers.get("x-amz-bucket-region", "another region")
            return _Failed(
                Problem(RESULTS_BUCKET, f"bucket {bucket} is in {region}; set AWS_REGION to it")
            )
    return _Failed(Problem(RESULTS_BUCKET, f"cannot check bucket {bucket}: {_one_line(error)}"))
