"""Celery's S3 result backend, with fewer requests per job and chords counted in S3.

Objects are stock Celery's: the same key (``<s3_base_path>celery-task-meta-<id>``) and the same
JSON, so ``AsyncResult`` in any Celery client with the stock S3 backend reads them, and this
backend reads theirs. What changes is how many requests it takes:

- **SUCCESS is one PutObject.** Celery reads the stored state before every write (HEAD + GET), so
  that a duplicate run cannot overwrite a SUCCESS. A SUCCESS may overwrite anything, so it is
  written blind.
- **Any other state** (STARTED, RETRY, FAILURE, REVOKED, a custom state from ``update_state``)
  keeps that guard with one GetObject, then writes with ``If-Match`` the ETag read (or
  ``If-None-Match: *`` if there was none): a SUCCESS landing in between makes the write fail (412)
  and is read, and kept. Celery's guard had that window open.
- **A read is one GetObject** (a missing object is PENDING), where Celery sends HEAD + GET.
- **Waiting** (``AsyncResult.get()``, joins) polls with backoff (runner.runtime.polling), in the
  calling thread.
- **Chords** count their header in S3 (runner.runtime.chords): no ``celery.chord_unlock`` task
  polling every second.

Celery's backends retry nothing unless told which errors are safe to retry; its S3 backend says
none. A 5xx, a throttle or a reset on a result write made outside the task's body (RETRY, FAILURE)
then became the job's final failure: dead-lettered though its body never failed. Here transient
S3 errors are retried with Celery's exponential backoff (and jitter), for about a minute, before
giving up; a 4xx that will not pass (no such bucket, access denied) fails at once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from functools import cached_property, partial
from typing import Any

from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from celery import states
from celery.backends.s3 import S3Backend as CeleryS3Backend
from celery.exceptions import BackendStoreError, ImproperlyConfigured, TaskRevokedError
from celery.exceptions import TimeoutError as CeleryTimeoutError
from kombu.utils.encoding import bytes_to_str

from runner.core import aws, quickput
from runner.runtime import chords, conditional, polling

log = logging.getLogger(__name__)

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

    @property
    def client(self) -> Any:
        """The boto3 S3 client of Celery's S3 resource (AWS_ENDPOINT_URL, region, retries)."""
        return self._s3_resource.meta.client

    def _connect_to_s3(self) -> Any:
        """Celery's S3 resource, from a session sharing this process's service models, its
        uploads of results sent without waiting for S3's ``100 Continue``, its User-Agent
        built once (runner.core.aws)."""
        credentials = {
            name: value
            for name, value in (
                ("aws_access_key_id", self.aws_access_key_id),
                ("aws_secret_access_key", self.aws_secret_access_key),
            )
            if value
        }
        session = aws.new_session(self.aws_region, **credentials)
        if session.get_credentials() is None:
            raise ImproperlyConfigured("Missing aws s3 creds")
        resource = session.resource(
            "s3",
            endpoint_url=self.endpoint_url,
            config=aws.with_app_id(Config(user_agent=aws.USER_AGENT), session),
        )
        aws.quicken_small_uploads(resource.meta.client)
        return resource

    def object_key(self, key: str | bytes) -> str:
        """The S3 key of a backend key, as Celery's S3 backend names it."""
        name = str(bytes_to_str(key))
        return f"{self.base_path}{name}" if self.base_path else name

    # --- the key/value store: one request each ---

    def get(self, key: str | bytes) -> Any:
        found = conditional.read(self.client, self.bucket_name, self.object_key(key))
        return None if found is None else self._text(found[0])

    def set(self, key: str | bytes, value: Any) -> None:
        """One PutObject; after the first, without botocore's pipeline (runner.core.quickput)."""
        body = value.encode("utf-8") if isinstance(value, str) else value
        self._quick_put.put(self.bucket_name, self.object_key(key), body)

    @cached_property
    def _quick_put(self) -> quickput.QuickPut:
        return quickput.QuickPut(self.client)

    def _text(self, data: bytes) -> Any:
        return data if self.content_encoding == "binary" else data.decode("utf-8")

    # --- results ---

    def _store_result(
        self,
        task_id: str,
        result: Any,
        state: str,
        traceback: Any = None,
        request: Any = None,
        **kwargs: Any,
    ) -> Any:
        meta = self._get_result_meta(
            result=result, state=state, traceback=traceback, request=request
        )
        meta["task_id"] = bytes_to_str(task_id)
        key = self.get_key_for_task(task_id)
        try:
            if state == states.SUCCESS:
                self.set(key, self.encode(meta))
            else:
                self._store_unless_success(key, self.encode(meta))
        except BackendStoreError as ex:
            raise BackendStoreError(str(ex), state=state, task_id=task_id) from ex
        return result

    def _store_unless_success(self, key: str | bytes, value: Any) -> None:
        """Write ``value`` unless a SUCCESS is stored: one GetObject and a conditional PUT."""
        self._store_over(key, value, lambda state: state != states.SUCCESS)

    def store_revoked_over(self, task_id: str, replaceable: frozenset[str], reason: str) -> str:
        """REVOKED, written only over a state in ``replaceable`` (nothing stored is PENDING) and
        by compare-and-swap, so a state a worker writes after the read is kept (`galley
        revoke`; Celery's ``_revoke`` reads, then writes blind). The state found: the one
        replaced, or the one kept. Transient S3 errors are retried as every result write is."""
        result = self.encode_result(TaskRevokedError(reason), states.REVOKED)
        meta = self._get_result_meta(
            result=result, state=states.REVOKED, traceback=None, request=None
        )
        meta["task_id"] = task_id
        found: str = self._ensure_retryable(
            self._store_over,
            self.get_key_for_task(task_id),
            self.encode(meta),
            replaceable.__contains__,
            fallback_exc=partial(BackendStoreError, task_id=task_id, state=states.REVOKED),
            fallback_msg="failed to store result on the backend",
        )
        return found

    def _store_over(self, key: str | bytes, value: Any, replaceable: Callable[[str], bool]) -> str:
        """Write ``value`` only over a state ``replaceable`` accepts: one GetObject and a PUT
        conditional on what was read; read again when the object changed in between. The
        state found (PENDING when nothing was stored)."""
        name = self.object_key(key)
        for attempt in range(conditional.MAX_ATTEMPTS):
            if attempt:
                conditional.pause(attempt)
            found = conditional.read(self.client, self.bucket_name, name)
            state = states.PENDING
            if found is not None:
                status = self.decode_result(self._text(found[0])).get("status")
                state = status if isinstance(status, str) else states.PENDING
            if not replaceable(state):
                return state  # e.g. a duplicate run must not undo a SUCCESS
            etag = found[1] if found is not None else None
            if conditional.put_if(self.client, self.bucket_name, name, value, etag) is not None:
                return state
        raise BackendStoreError(
            f"s3://{self.bucket_name}/{name} kept changing under "
            f"{conditional.MAX_ATTEMPTS} conditional writes"
        )

    def wait_for(
        self,
        task_id: str,
        timeout: float | None = None,
        interval: float = 0.5,
        no_ack: bool = True,
        on_interval: Any = None,
    ) -> Any:
        """Celery's wait, polling with backoff (runner.runtime.polling): one GetObject a poll."""
        self._ensure_not_eager()
        schedule = polling.naps(interval, timeout)
        while True:
            meta = self.get_task_meta(task_id)
            if meta["status"] in states.READY_STATES:
                return meta
            if on_interval:
                on_interval()
            nap = next(schedule, None)
            if nap is None:
                raise CeleryTimeoutError("The operation timed out.")
            time.sleep(nap)

    # --- chords: counted in S3 (runner.runtime.chords) ---

    def apply_chord(self, header_result_args: Any, body: Any, **kwargs: Any) -> None:
        self.ensure_chords_allowed()
        header = self.app.GroupResult(*header_result_args)
        chords.start(self, header)

    def on_chord_part_return(self, request: Any, state: str, result: Any, **kwargs: Any) -> None:
        chords.part_returned(self, request, state)
