"""Read a CSV object from S3, summarise it, write the summary back next to it."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from runner import app
from runner.core import aws
from tasks import schemas


def summarize_rows(rows: list[dict[str, str]]) -> dict[str, Any]:
    """Row count, and for every column whose values are all numbers: sum, min and max."""
    columns: dict[str, list[float]] = {}
    non_numeric: set[str] = set()
    for row in rows:
        for name, raw in row.items():
            try:
                columns.setdefault(name, []).append(float(raw))
            except (TypeError, ValueError):
                non_numeric.add(name)
    numeric = {
        name: {"sum": round(sum(values), 6), "min": min(values), "max": max(values)}
        for name, values in columns.items()
        if name not in non_numeric and values
    }
    return {"rows": len(rows), "numeric_columns": numeric}


@app.task(name="tasks.reports.summarize_csv", input_model=schemas.SummarizeCsv)
def summarize_csv(bucket: str, key: str, output_key: str | None = None) -> dict[str, Any]:
    """Summarise ``s3://bucket/key`` (a CSV with a header) into ``output_key`` as JSON."""
    s3 = aws.client("s3")
    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode("utf-8")
    summary = summarize_rows(list(csv.DictReader(io.StringIO(body))))
    output_key = output_key or f"{key}.summary.json"
    s3.put_object(
        Bucket=bucket,
        Key=output_key,
        Body=json.dumps(summary, indent=2).encode(),
        ContentType="application/json",
    )
    return {"output_key": output_key, **summary}
