"""Celery's S3 result backend, riding out passing S3 faults instead of failing the job.

Celery's backends retry nothing unless told which errors are safe to retry; its S3 backend says
none. A 5xx, a throttle or a reset on a result write made outside the task's body (STARTED before
it runs, RETRY, FAILURE) then became the job's final failure: dead-lettered though its body never
failed. Here transient S3 errors are retried with Celery's exponential backoff (and jitter), for
about a minute, before giving up; a 4xx that will not pass (no such bucket, access denied) fails
at once.
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from celery.backends.s3 import S3Backend as CeleryS3Backend

#: Error codes S3 (and botocore's retry logic) treat as passing: throttling and server errors.
TRANSIENT_CODES = frozenset(
    {"SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout", "Throttling"}
)
#: Celery's result_backend_* retry settings Galley uses with this backend (~60 s in all).
RETRY_SETTINGS = {
    "result_backend_always_retry": True,
    "result_backend_max_retries": 12,
    "result_backend_base_sleep_between_retries_ms": 200,
    "result_backend_max_sleep_between_retries_ms": 10_000,
}


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return error.get("Code") in TRANSIENT_CODES or int(status or 0) >= 500
    return isinstance(exc, BotoCoreError | OSError)


class S3Backend(CeleryS3Backend):
    def exception_safe_to_retry(self, exc: Any) -> bool:
        return is_transient(exc)
