"""Large arguments travel through S3 (claim check), not through SQS.

SQS takes at most 1 MiB per message and kombu base64-encodes the body twice, leaving about 0.55
of that for arguments. A call whose SQS message would pass ``GALLEY_PAYLOAD_THRESHOLD_BYTES`` is
sent with empty arguments and a ``galley_payload`` header pointing at
``s3://<results bucket>/payloads/<task id>/<uuid>``, which holds ``[args, kwargs]`` in kombu's
JSON. The worker and the Lambda consumer read it back before the task runs; the object is
deleted once the message is acknowledged (kept while the job sits in a dead-letter queue), and
the bucket's lifecycle rule removes any orphan.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from runner.errors import PayloadError
from runner.wire import kombu_json

#: The message header carrying the pointer ({"bucket": ..., "key": ...}).
HEADER = "galley_payload"
#: Key prefix of payload objects (the template's lifecycle rule expires it).
PREFIX = "payloads/"


def pointer_of(headers: Mapping[str, Any] | None) -> dict[str, str] | None:
    value = (headers or {}).get(HEADER)
    if isinstance(value, dict) and value.get("bucket") and value.get("key"):
        return {"bucket": str(value["bucket"]), "key": str(value["key"])}
    return None


def trusted_pointer(
    headers: Mapping[str, Any] | None, bucket: str | None, task_id: str
) -> dict[str, str] | None:
    """The pointer, only if it names this job's own payload in the results bucket: a message
    must not make a worker read or delete any other object."""
    pointer = pointer_of(headers)
    if pointer is None:
        return None
    if pointer["bucket"] != bucket or not pointer["key"].startswith(f"{PREFIX}{task_id}/"):
        raise PayloadError(
            f"payload pointer s3://{pointer['bucket']}/{pointer['key']} is not this job's "
            f"(expected s3://{bucket}/{PREFIX}{task_id}/...)"
        )
    return pointer


def store(
    s3: Any, bucket: str, task_id: str, args: Sequence[Any], kwargs: Mapping[str, Any] | None
) -> dict[str, str]:
    """Upload ``[args, kwargs]``; returns the pointer for the message header."""
    key = f"{PREFIX}{task_id}/{uuid.uuid4().hex}"
    body = kombu_json.dumps([list(args), dict(kwargs or {})]).encode()
    s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/json")
    return {"bucket": bucket, "key": key}


def load(s3: Any, pointer: Mapping[str, str]) -> tuple[list[Any], dict[str, Any]]:
    """The arguments a pointer refers to."""
    import json

    try:
        raw = s3.get_object(Bucket=pointer["bucket"], Key=pointer["key"])["Body"].read()
        args, kwargs = json.loads(raw, object_hook=kombu_json.object_hook)
    except Exception as error:
        raise PayloadError(
            f"payload s3://{pointer['bucket']}/{pointer['key']} cannot be read: {error}"
        ) from error
    return list(args), dict(kwargs)


def delete(s3: Any, pointer: Mapping[str, str]) -> None:
    s3.delete_object(Bucket=pointer["bucket"], Key=pointer["key"])
