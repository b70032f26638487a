"""Probes of AWS for the start-up checks: read a queue's attributes, look for the bucket, and turn
every fault into a :class:`Problem` naming the environment variable to fix.

No AWS, botocore or network fault escapes a probe: each becomes :class:`Failed` (or
:class:`Stop` when AWS cannot be reached at all or refuses the credentials, so no later check can
succeed). :mod:`runner.ops.checks` runs the probes in order and lists what they found.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    HTTPClientError,
    NoCredentialsError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

from runner.core.settings import AWS_ENDPOINT_URL, RESULTS_BUCKET

#: boto3's variable for static credentials; named when AWS refuses or finds none.
AWS_ACCESS_KEY_ID = "AWS_ACCESS_KEY_ID"
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


class Failed(Exception):
    """A probe failed: ``problem`` says what to fix."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(str(problem))
        self.problem = problem


class Stop(Failed):
    """AWS is unreachable or refuses the credentials: no later check can succeed."""


def inspect_queue(
    sqs: Any, url: str, variable: str, *, endpoint_url: str | None = None
) -> QueueFacts | Problem:
    """The queue's facts, or the Problem (naming ``variable``, or AWS_ENDPOINT_URL when
    ``endpoint_url`` is given and cannot be reached) that kept us from reading them."""
    try:
        return read_queue(sqs, url, variable, endpoint_url)
    except Failed as failure:
        return failure.problem


def read_queue(sqs: Any, url: str, variable: str, endpoint_url: str | None) -> QueueFacts:
    """The queue's facts; raises :class:`Failed` (or :class:`Stop`) naming ``variable``."""
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


def check_bucket(s3: Any, bucket: str, endpoint_url: str | None) -> None:
    """The bucket exists and can be reached; raises :class:`Failed` (or :class:`Stop`)."""
    try:
        s3.head_bucket(Bucket=bucket)
    except (ClientError, BotoCoreError, OSError) as error:
        raise _s3_fault(error, bucket, s3, endpoint_url) from None


def _redrive(url: str, variable: str, policy: str) -> tuple[str, int | None]:
    """The dead-letter queue's URL (same scheme and host as ``url``) and maxReceiveCount."""
    try:
        parsed = json.loads(policy)
        arn = str(parsed["deadLetterTargetArn"])
        count = parsed.get("maxReceiveCount")
        count = None if count is None else int(count)
    except (ValueError, KeyError, TypeError, AttributeError):
        raise Failed(Problem(variable, f"queue {url} has an unreadable RedrivePolicy")) from None
    parts = arn.split(":")
    if len(parts) != 6 or parts[2] != "sqs":
        raise Failed(
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
) -> Failed | None:
    """Unreachable endpoint or unusable credentials (both stop the checks); else None."""
    if isinstance(error, _NETWORK_ERRORS):
        if endpoint_url:
            return Stop(
                Problem(
                    AWS_ENDPOINT_URL,
                    f"cannot reach {endpoint_url} ({_one_line(error)}); start that server, "
                    "or unset AWS_ENDPOINT_URL to use AWS",
                )
            )
        host = urlsplit(client.meta.endpoint_url).hostname
        return Stop(
            Problem(
                variable,
                f"cannot reach {service} at {host} ({_one_line(error)}); "
                "check the network and AWS_REGION",
            )
        )
    if isinstance(error, NoCredentialsError):
        return Stop(
            Problem(
                AWS_ACCESS_KEY_ID,
                "no AWS credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
                "or AWS_PROFILE, or run with an IAM role",
            )
        )
    if isinstance(error, ClientError) and _code(error) in _BAD_CREDENTIAL_CODES:
        return Stop(
            Problem(
                AWS_ACCESS_KEY_ID,
                f"AWS refused the credentials ({_code(error)}): check AWS_ACCESS_KEY_ID, "
                "AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN, or AWS_PROFILE",
            )
        )
    return None


def _sqs_fault(
    error: Exception, url: str, variable: str, sqs: Any, endpoint_url: str | None
) -> Failed:
    common = _common_fault(error, variable, "SQS", sqs, endpoint_url)
    if common is not None:
        return common
    if isinstance(error, ClientError):
        code = _code(error)
        query_code = str(error.response.get("Error", {}).get("QueryErrorCode", ""))
        if code in _MISSING_QUEUE_CODES or query_code in _MISSING_QUEUE_CODES:
            return Failed(
                Problem(variable, f"queue {url} does not exist (check its account, region, name)")
            )
        if "AccessDenied" in code or code == "403":
            return Failed(
                Problem(
                    variable,
                    f"access denied to queue {url}: the role or user running Galley needs "
                    "sqs:GetQueueAttributes on it",
                )
            )
    return Failed(Problem(variable, f"cannot read queue {url}: {_one_line(error)}"))


def _s3_fault(error: Exception, bucket: str, s3: Any, endpoint_url: str | None) -> Failed:
    common = _common_fault(error, RESULTS_BUCKET, "S3", s3, endpoint_url)
    if common is not None:
        return common
    if isinstance(error, ClientError):
        code = _code(error)
        if code in ("404", "NoSuchBucket", "NotFound"):
            return Failed(Problem(RESULTS_BUCKET, f"bucket {bucket} does not exist"))
        if code in ("403", "AccessDenied", "Forbidden"):
            return Failed(
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
            return Failed(
                Problem(RESULTS_BUCKET, f"bucket {bucket} is in {region}; set AWS_REGION to it")
            )
    return Failed(Problem(RESULTS_BUCKET, f"cannot check bucket {bucket}: {_one_line(error)}"))
