"""The EMF specification's rules, checked on a log line: what the tests call valid EMF.

https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html
Kept apart from the writer (runner/core/emf.py) on purpose: a test that used the writer's own
idea of validity could not catch the writer's mistakes.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from typing import Any

#: CloudWatch's units (MetricDatum.Unit).
UNITS = {
    "Seconds", "Microseconds", "Milliseconds", "Bytes", "Kilobytes", "Megabytes", "Gigabytes",
    "Terabytes", "Bits", "Kilobits", "Megabits", "Gigabits", "Terabits", "Percent", "Count",
    "Bytes/Second", "Kilobytes/Second", "Megabytes/Second", "Gigabytes/Second",
    "Terabytes/Second", "Bits/Second", "Kilobits/Second", "Megabits/Second", "Gigabits/Second",
    "Terabits/Second", "Count/Second", "None",
}  # fmt: skip
#: CloudWatch rejects values outside +-2^360 (PutMetricData, MetricDatum.Value).
LIMIT = 2.0**360


def check(line: str) -> dict[str, Any]:
    """The document of ``line``, or AssertionError naming the rule it breaks."""
    assert "\n" not in line and len(line.encode()) <= 256 * 1024, "one log event, at most 256 KB"
    document = json.loads(line, parse_constant=_no_constant)
    assert isinstance(document, dict), "the root is a JSON object"
    meta = document.get("_aws")
    assert isinstance(meta, dict), "_aws is an object"
    timestamp = meta.get("Timestamp")
    assert isinstance(timestamp, int) and not isinstance(timestamp, bool), "Timestamp in ms"
    assert timestamp > 0
    directives = meta.get("CloudWatchMetrics")
    assert isinstance(directives, list) and directives, "CloudWatchMetrics is a non-empty array"
    for directive in directives:
        _check_directive(document, directive)
    return document


def _check_directive(document: dict[str, Any], directive: Any) -> None:
    assert isinstance(directive, dict)
    namespace = directive.get("Namespace")
    assert isinstance(namespace, str) and 0 < len(namespace) <= 255, "Namespace"
    dimension_sets = directive.get("Dimensions")
    assert isinstance(dimension_sets, list), "Dimensions is an array of DimensionSets"
    for names in dimension_sets:
        assert isinstance(names, list) and len(names) <= 30, "a DimensionSet: at most 30 keys"
        for name in names:
            assert isinstance(name, str) and name in document, f"dimension {name!r} at the root"
            _check_dimension_value(document[name])
    metrics = directive.get("Metrics")
    assert isinstance(metrics, list) and 0 < len(metrics) <= 100, "1 to 100 MetricDefinitions"
    names = [metric.get("Name") for metric in metrics]
    assert len(set(names)) == len(names), "each metric once"
    for metric in metrics:
        name = metric.get("Name")
        assert isinstance(name, str) and 0 < len(name) <= 255, "metric Name"
        assert metric.get("Unit", "None") in UNITS, f"Unit of {name}"
        assert name in document, f"metric {name!r} has its value at the root"
        _check_value(name, document[name])


def _check_dimension_value(value: Any) -> None:
    assert isinstance(value, str), "a dimension value is a string"
    assert 0 < len(value) <= 1024 and value.strip(), "1 to 1024 characters, not blank"
    assert all(32 <= ord(c) < 127 for c in value), f"ASCII without control characters: {value!r}"


def _check_value(name: str, value: Any) -> None:
    values = value if isinstance(value, list) else [value]
    assert 0 < len(values) <= 100, f"{name}: 1 to 100 values"
    for item in values:
        assert isinstance(item, int | float) and not isinstance(item, bool), f"{name}: a number"
        assert math.isfinite(item) and abs(item) <= LIMIT, f"{name}: {item} out of range"


def _no_constant(text: str) -> Any:
    raise AssertionError(f"{text} is not JSON")


def totals(lines: list[str], **dimensions: str) -> Counter[str]:
    """Every counter (a single number) summed over the lines whose dimensions include
    ``dimensions``, and every timing (an array) counted by its values: what CloudWatch would
    aggregate for that dimension set."""
    summed: Counter[str] = Counter()
    for line in lines:
        document = check(line)
        if any(document.get(k) != v for k, v in dimensions.items()):
            continue
        for directive in document["_aws"]["CloudWatchMetrics"]:
            for metric in directive["Metrics"]:
                value = document[metric["Name"]]
                summed[metric["Name"]] += len(value) if isinstance(value, list) else value
    return summed
