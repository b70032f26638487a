"""Import a batch of records into S3 in chunks, reporting progress as it goes."""

from __future__ import annotations

import json
from typing import Any

from celery import Task

from runner import app
from runner.core import aws

#: Records per output object; progress is reported after each chunk.
CHUNK_SIZE = 25


def validate_record(record: Any) -> str | None:
    """The reason a record is rejected, or None if it is accepted."""
    if not isinstance(record, dict):
        return "not an object"
    email = record.get("email")
    if not isinstance(email, str) or "@" not in email:
        return "email missing or malformed"
    if not str(record.get("name", "")).strip():
        return "name missing"
    return None


@app.task(bind=True, name="tasks.imports.import_records")
def import_records(
    self: Task, records: list[dict[str, Any]], bucket: str, prefix: str
) -> dict[str, Any]:
    """Write valid ``records`` to ``s3://bucket/prefix/part-NNNN.jsonl``; report progress.

    While it runs the task's state is ``PROGRESS`` with ``{"done": n, "total": m}``; the result
    lists the keys written and every rejected record's index and reason.
    """
    total = len(records)
    s3 = aws.client("s3")
    rejected: list[dict[str, Any]] = []
    keys: list[str] = []
    for start in range(0, total, CHUNK_SIZE):
        accepted = []
        for index, record in enumerate(records[start : start + CHUNK_SIZE], start=start):
            reason = validate_record(record)
            if reason:
                rejected.append({"index": index, "reason": reason})
            else:
                accepted.append(json.dumps(record, sort_keys=True))
        if accepted:
            key = f"{prefix.rstrip('/')}/part-{len(keys):04d}.jsonl"
            s3.put_object(Bucket=bucket, Key=key, Body="\n".join(accepted).encode())
            keys.append(key)
        done = min(start + CHUNK_SIZE, total)
        if done < total:
            self.update_state(state="PROGRESS", meta={"done": done, "total": total})
    return {"total": total, "accepted": total - len(rejected), "rejected": rejected, "keys": keys}
