"""CloudWatch Embedded Metric Format (EMF): a JSON log line that CloudWatch Logs turns into metrics.

Why a log line: CloudWatch Logs extracts the metrics of any log event in this format that reaches
it through PutLogEvents; the ``x-amzn-logs-format: json/emf`` header is optional
(https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Generation_PutLogEvents.html).
A Lambda function's stdout goes to its log group that way, and so does a Fargate container's
through the ``awslogs`` log driver: no CloudWatch agent, no sidecar, no PutMetricData call from
the job's process (no request, latency or IAM permission added to a job).

Why written here, not with aws-embedded-metrics or Powertools Metrics: both flush one document
per scope (a job), where Galley sums an interval of jobs into one line per task
(runner/core/metrics.py); aws-embedded-metrics is asyncio-based and, outside Lambda, sends to a
CloudWatch agent on port 25888 by default (the sidecar we do not want) after probing the EC2
metadata endpoint; Powertools would be a dependency of the worker image for ~100 lines of JSON.
The format's rules kept here: the spec's limits (runner/core/limits.py), dimension values
CloudWatch accepts (ASCII, no control characters, not blank, at most 1024 characters), and values
within +-2^360, finite.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import IO, Any

from runner.core.limits import (
    MAX_DIMENSION_VALUE_CHARS,
    MAX_EMF_DIMENSIONS,
    MAX_EMF_METRICS,
    MAX_EMF_VALUES,
    MAX_METRIC_VALUE,
)

__all__ = [
    "MAX_DIMENSION_VALUE_CHARS",
    "MAX_EMF_VALUES",
    "dimension_value",
    "document",
    "dumps",
    "number",
    "write",
]

#: Significant digits kept of a value: percentiles within 0.5 %, and short lines.
SIGNIFICANT_DIGITS = 3
#: What stands for a dimension value with nothing printable in it.
BLANK = "(blank)"


def dimension_value(text: str) -> str:
    """``text`` as a dimension value CloudWatch accepts: a character outside printable ASCII is
    written as its escape (``é`` -> ``\\xe9``), a blank one is :data:`BLANK`, a long one is cut."""
    if not (text.isascii() and text.isprintable()):
        text = "".join(c if " " <= c <= "~" else ascii(c)[1:-1] for c in text)
    text = text[:MAX_DIMENSION_VALUE_CHARS]
    return text if text.strip() else BLANK


def number(value: float) -> int | float:
    """``value`` to :data:`SIGNIFICANT_DIGITS` digits, within CloudWatch's range (beyond it, or
    infinite, it is the range's end); NaN is refused (ValueError): it has no place on a graph."""
    try:
        value = float(value)
    except OverflowError:  # an int beyond a float's range
        value = math.inf if value > 0 else -math.inf
    if math.isnan(value):
        raise ValueError("NaN is not a metric value")
    if math.isfinite(value):
        value = float(f"{value:.{SIGNIFICANT_DIGITS}g}")
    value = max(-MAX_METRIC_VALUE, min(MAX_METRIC_VALUE, value))
    return int(value) if value.is_integer() and abs(value) < 2**53 else value


def document(
    namespace: str,
    dimension_sets: Sequence[Sequence[str]],
    dimensions: Mapping[str, str],
    metrics: Mapping[str, tuple[str, int | float | list[int | float]]],
    timestamp: float,
) -> dict[str, Any]:
    """One EMF document: ``metrics`` maps each name to (unit, value or up to 100 values), every
    name of ``dimension_sets`` is a key of ``dimensions``; ``timestamp`` in seconds."""
    assert 0 < len(metrics) <= MAX_EMF_METRICS
    assert all(len(names) <= MAX_EMF_DIMENSIONS for names in dimension_sets)
    body: dict[str, Any] = {name: dimension_value(value) for name, value in dimensions.items()}
    for name, (_, value) in metrics.items():
        assert not isinstance(value, list) or 0 < len(value) <= MAX_EMF_VALUES
        body[name] = value
    body["_aws"] = {
        "Timestamp": int(timestamp * 1000),
        "CloudWatchMetrics": [
            {
                "Namespace": namespace,
                "Dimensions": [list(names) for names in dimension_sets],
                "Metrics": [{"Name": name, "Unit": unit} for name, (unit, _) in metrics.items()],
            }
        ],
    }
    return body


def dumps(doc: Mapping[str, Any]) -> str:
    """The document as one line of ASCII JSON."""
    return json.dumps(doc, separators=(",", ":"), allow_nan=False)


def write(lines: Iterable[str], stream: IO[str]) -> None:
    """Each line with its newline in one write (a reader never sees half a line), then flush:
    a line that waits in a buffer is a metric that arrives late."""
    for line in lines:
        stream.write(line + "\n")
    stream.flush()
