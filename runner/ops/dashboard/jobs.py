"""A job looked up by id: its result object in S3, read as JSON, without Celery.

Galley's app stores Celery's extended results (``result_extended``): besides the state and the
result or error, the object holds the task's name, its arguments, the worker and the queue. The
object is Celery's own (runner/runtime/backend.py), under ``<prefix>celery-task-meta-<id>``; the
prefix is the results prefix of the workers in the registry, else the default ``results/``. A job
with no object yet (queued, delayed, or no job has this id) is "no such job": Celery would call
it PENDING, which says the same.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from runner.core import revocations
from runner.ops import registry, top
from runner.wire.saferepr import saferepr

#: A result object larger than this is not shown (``galley result ID`` prints it whole).
MAX_RESULT_BYTES = 1 << 20
#: How long the argument and result reprs may be on the page.
MAX_REPR_CHARS = 4000
DEFAULT_PREFIX = "results/"


class NoSuchJob(LookupError):
    """No result object has this id."""


class Unreadable(RuntimeError):
    """The object is there but cannot be read (S3 refused it, or it is not Celery's JSON)."""


def check_id(job_id: str) -> str:
    """``job_id`` if it can be a Celery task id; ValueError (RevokeError) naming what is wrong."""
    return revocations.check_task_id(job_id)


def lookup(s3: Any, bucket: str, prefixes: Iterable[str], job_id: str) -> dict[str, Any]:
    """The job ``job_id`` as the page shows it. Raises NoSuchJob, Unreadable, or ValueError for
    an id that cannot be one."""
    check_id(job_id)
    for prefix in dict.fromkeys([*prefixes, DEFAULT_PREFIX]):
        key = top.RESULT_KEY.format(prefix=prefix, id=job_id)
        try:
            found = s3.get_object(Bucket=bucket, Key=key)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                continue
            raise Unreadable(f"s3://{bucket}/{key}: {registry.reason(error)}") from None
        except BotoCoreError as error:
            raise Unreadable(f"s3://{bucket}/{key}: {registry.reason(error)}") from None
        return _describe(job_id, key, found)
    raise NoSuchJob(
        f"no such job: {job_id} has no result in s3://{bucket} (not run yet, or no job has this id)"
    )


def _describe(job_id: str, key: str, found: dict[str, Any]) -> dict[str, Any]:
    size = int(found.get("ContentLength") or 0)
    if size > MAX_RESULT_BYTES:
        found["Body"].close()
        raise Unreadable(
            f"{key} is {size} bytes, too large to show here; `galley result {job_id}` prints it"
        )
    try:
        meta = json.loads(found["Body"].read())
    except (ValueError, UnicodeDecodeError) as error:
        raise Unreadable(f"{key} is not a result object (not JSON: {error})") from None
    except (ClientError, BotoCoreError) as error:
        raise Unreadable(f"{key}: {registry.reason(error)}") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("status"), str):
        raise Unreadable(f"{key} is not a result object (no status)")
    state, result = meta["status"], meta.get("result")
    progress = top.progress_of(meta)
    job: dict[str, Any] = {
        "id": job_id,
        "state": state,
        "task": _text(meta.get("name")),
        "args": _repr(meta["args"]) if "args" in meta else None,
        "kwargs": _repr(meta["kwargs"]) if "kwargs" in meta else None,
        "worker": _text(meta.get("worker")),
        "queue": _text(meta.get("queue")),
        "retries": meta.get("retries") if isinstance(meta.get("retries"), int) else None,
        "date_done": _text(meta.get("date_done")),
        "progress": None if progress is None else _progress(progress),
        "error": _error(result),
        "traceback": _text(meta.get("traceback")),
        "result": None,
    }
    if job["error"] is None and progress is None and result is not None:
        job["result"] = _json(result)
    return job


def _progress(progress: top.Progress) -> dict[str, float]:
    return {"done": progress.done, "total": progress.total, "fraction": progress.fraction}


def _error(result: Any) -> str | None:
    """Celery's stored exception (``exc_type``, ``exc_message``) as ``Type: message``."""
    if not isinstance(result, dict) or "exc_type" not in result:
        return None
    message = result.get("exc_message")
    if isinstance(message, list | tuple):
        message = ", ".join(str(part) for part in message)
    text = f"{result['exc_type']}: {message}" if message not in (None, "") else result["exc_type"]
    return _text(text)


def _repr(value: Any) -> str:
    return saferepr(value, maxlen=MAX_REPR_CHARS)


def _json(value: Any) -> str:
    text = json.dumps(value, indent=2, ensure_ascii=False, default=repr)
    return text if len(text) <= MAX_REPR_CHARS else text[:MAX_REPR_CHARS] + "\u2026"


def _text(value: Any) -> str | None:
    return None if value is None else str(value)
