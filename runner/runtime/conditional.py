"""S3 reads and conditional writes, the compare-and-swap under result writes and chord counters.

S3 applies ``PutObject`` with ``If-Match: <etag>`` or ``If-None-Match: *`` atomically: of two
writers holding the same ETag exactly one succeeds; the other gets 412 ``PreconditionFailed``
(or 409 ``ConditionalRequestConflict`` when they overlap; ``If-Match`` on a key deleted meanwhile
is 404). A loser reads again and decides again. Plain boto3 calls on the client the caller passes.
"""

from __future__ import annotations

import random
import time
from typing import Any

from botocore.exceptions import ClientError

#: Error codes meaning "the object is not there".
MISSING = frozenset({"NoSuchKey", "404", "NotFound"})
#: Error codes meaning "the condition did not hold": read again and retry.
CONDITION_FAILED = frozenset(
    {"PreconditionFailed", "412", "ConditionalRequestConflict", "409", *MISSING}
)
#: Conditional writes retried while the object keeps changing under us, before giving up.
MAX_ATTEMPTS = 8


def code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def read(s3: Any, bucket: str, key: str) -> tuple[bytes, str] | None:
    """One GetObject: ``(body, etag)``, or None when there is no such object."""
    try:
        response = s3.get_object(Bucket=bucket, Key=key)
    except ClientError as error:
        if code(error) in MISSING:
            return None
        raise
    return response["Body"].read(), str(response["ETag"])


def put_if(s3: Any, bucket: str, key: str, body: bytes | str, etag: str | None) -> str | None:
    """PutObject only if the object is still the one read with ``etag`` (None: only if there is
    still none). The new ETag, or None when the condition did not hold."""
    condition = {"IfMatch": etag} if etag is not None else {"IfNoneMatch": "*"}
    try:
        response = s3.put_object(Bucket=bucket, Key=key, Body=body, **condition)
    except ClientError as error:
        if code(error) in CONDITION_FAILED:
            return None
        raise
    return str(response["ETag"])


def pause(attempt: int) -> None:
    """A short jittered pause between conflicting conditional writes."""
    time.sleep(random.uniform(0, 0.05 * 2**attempt))  # noqa: S311 - jitter, not crypto
