"""Import a batch of records, reporting progress as it goes (``state="PROGRESS"``)."""

from __future__ import annotations

from typing import Any

from celery import Task

from runner.app import app

#: Report progress every this many records (each report is one S3 PUT).
PROGRESS_EVERY = 10


def validate_record(record: dict[str, Any]) -> str | None:
    """The reason a record is rejected, or None if it is accepted."""
    email = record.get("email")
    if not isinstance(email, str) or "@" not in email:
        return "email missing or malformed"
    if not str(record.get("name", "")).strip():
        return "name missing"
    return None


@app.task(bind=True, name="tasks.imports.import_records")
def import_records(self: Task, records: list[dict[str, Any]]) -> dict[str, Any]:
    """Validate ``records``; the result lists the rejected ones with their reasons."""
    total = len(records)
    rejected = []
    for index, record in enumerate(records, start=1):
        reason = validate_record(record)
        if reason:
            rejected.append({"index": index - 1, "reason": reason})
        if index % PROGRESS_EVERY == 0 and index < total:
            self.update_state(state="PROGRESS", meta={"done": index, "total": total})
    return {"total": total, "accepted": total - len(rejected), "rejected": rejected}
