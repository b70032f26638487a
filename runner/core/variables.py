"""The environment variables Galley reads, their defaults, and the checks of their values.

Every variable Galley reads is named here and nowhere else. This module imports neither pydantic
nor pydantic-settings: the typed settings models (runner.core.settings) validate with these
checks, and a producer reads its few variables with them without loading those models
(runner.core.producer_config), which a Lambda would pay for on every cold start.

Each check returns the value as Galley keeps it, or raises ValueError saying what is wrong (the
settings models turn it into a SettingsError naming the variable).
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from runner.core import limits

# --- environment variable names (the template and README use exactly these) ---
QUEUE_URL = "GALLEY_QUEUE_URL"
LONG_QUEUE_URL = "GALLEY_LONG_QUEUE_URL"
DLQ_URL = "GALLEY_DLQ_URL"
LONG_DLQ_URL = "GALLEY_LONG_DLQ_URL"
RESULTS_BUCKET = "GALLEY_RESULTS_BUCKET"
RESULTS_PREFIX = "GALLEY_RESULTS_PREFIX"
VISIBILITY_TIMEOUT = "GALLEY_VISIBILITY_TIMEOUT"
TASK_TIME_LIMIT = "GALLEY_TASK_TIME_LIMIT"
LAMBDA_RESERVE_SECONDS = "GALLEY_LAMBDA_RESERVE_SECONDS"
VISIBILITY_HEARTBEAT = "GALLEY_VISIBILITY_HEARTBEAT"
TASK_MODULES = "GALLEY_TASK_MODULES"
MAX_HOP_SECONDS = "GALLEY_MAX_HOP_SECONDS"
PAYLOAD_THRESHOLD_BYTES = "GALLEY_PAYLOAD_THRESHOLD_BYTES"
SCALE_IN_PROTECTION = "GALLEY_SCALE_IN_PROTECTION"
RECEIVE_WAIT_SECONDS = "GALLEY_RECEIVE_WAIT_SECONDS"
LOG_FORMAT = "GALLEY_LOG_FORMAT"
REVOKE_REFRESH_SECONDS = "GALLEY_REVOKE_REFRESH_SECONDS"
REGISTRY_INTERVAL = "GALLEY_REGISTRY_INTERVAL"
METRICS = "GALLEY_METRICS"
STACK_NAME = "GALLEY_STACK_NAME"
DASHBOARD_TOKEN = "GALLEY_DASHBOARD_TOKEN"  # noqa: S105 - a variable's name, not a secret
AWS_REGION = "AWS_REGION"
AWS_DEFAULT_REGION = "AWS_DEFAULT_REGION"
AWS_ENDPOINT_URL = "AWS_ENDPOINT_URL"

#: Every variable Galley reads, for the README and the template check.
ALL_VARIABLES = (
    QUEUE_URL,
    LONG_QUEUE_URL,
    DLQ_URL,
    LONG_DLQ_URL,
    RESULTS_BUCKET,
    RESULTS_PREFIX,
    VISIBILITY_TIMEOUT,
    TASK_TIME_LIMIT,
    LAMBDA_RESERVE_SECONDS,
    VISIBILITY_HEARTBEAT,
    TASK_MODULES,
    MAX_HOP_SECONDS,
    PAYLOAD_THRESHOLD_BYTES,
    SCALE_IN_PROTECTION,
    RECEIVE_WAIT_SECONDS,
    LOG_FORMAT,
    REVOKE_REFRESH_SECONDS,
    REGISTRY_INTERVAL,
    METRICS,
    STACK_NAME,
    DASHBOARD_TOKEN,
    AWS_REGION,
    AWS_DEFAULT_REGION,
    AWS_ENDPOINT_URL,
)

#: The region when neither AWS_REGION nor AWS_DEFAULT_REGION is set.
DEFAULT_REGION = "us-east-1"
#: GALLEY_PAYLOAD_THRESHOLD_BYTES: its default and its lowest value (at most SQS's message size).
DEFAULT_PAYLOAD_THRESHOLD_BYTES = 256 * 1024
MIN_PAYLOAD_THRESHOLD_BYTES = 1024
#: GALLEY_REGISTRY_INTERVAL: its default and its largest value, in seconds (runner/ops/registry.py),
#: and its smallest other than 0 (off): shorter is a PUT storm from every worker, not an interval.
DEFAULT_REGISTRY_INTERVAL = 15
MAX_REGISTRY_INTERVAL = 300
MIN_REGISTRY_INTERVAL = 0.5

_QUEUE_NAME = re.compile(rf"^[A-Za-z0-9_-]{{1,{limits.MAX_QUEUE_NAME_LENGTH}}}$")
_BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
#: A CloudFormation stack name (the Stack dimension of Galley's metrics).
_STACK_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9-]{0,127}$")


def queue_name_from_url(url: str) -> str:
    """The queue name is the last path segment of its URL."""
    return url.rstrip("/").rsplit("/", 1)[-1]


def check_queue_url(value: str) -> str:
    """``value`` as the URL of an SQS queue (standard or FIFO), without a trailing slash."""
    parts = urlsplit(value)
    segments = [s for s in parts.path.split("/") if s]
    if parts.scheme not in ("http", "https") or not parts.netloc or len(segments) != 2:
        raise ValueError(
            f"{value!r} is not an SQS queue URL (expected scheme://host/<account-id>/<queue-name>)"
        )
    name = segments[1].removesuffix(".fifo")
    if not _QUEUE_NAME.match(name):
        raise ValueError(f"{segments[1]!r} is not a valid SQS queue name")
    return value.rstrip("/")


def check_standard_queue_url(value: str) -> str:
    """``value`` as the URL of a standard SQS queue (no trailing slash), or ValueError saying
    why not: for a queue URL given some other way than a variable (`galley dlq --queue`)."""
    return refuse_fifo(check_queue_url(value))


def refuse_fifo(value: str) -> str:
    """Galley's worker, Lambda consumer, hops and DLQ sends speak standard queues only."""
    if queue_name_from_url(value).endswith(".fifo"):
        raise ValueError(
            f"{value!r} is a FIFO queue; Galley supports standard queues only "
            "(FIFO needs message groups for every send; a separate feature)"
        )
    return value


def check_endpoint_url(value: str | None) -> str | None:
    """AWS_ENDPOINT_URL: an http(s) URL, or None when unset or empty."""
    if value in (None, ""):
        return None
    assert value is not None
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{value!r} is not an http(s) URL")
    return value


def check_bucket_name(value: str | None) -> str | None:
    """An S3 bucket name, or None when unset or empty."""
    if value in (None, ""):
        return None
    assert value is not None
    if not _BUCKET_NAME.match(value) or ".." in value:
        raise ValueError(
            f"{value!r} is not a valid S3 bucket name (3-63 lowercase letters, digits, '.' or '-')"
        )
    return value


def check_stack_name(value: str) -> str:
    """A CloudFormation stack name: a letter, then letters, digits and '-', 128 at most."""
    if not _STACK_NAME.match(value):
        raise ValueError(
            f"{value!r} is not a stack name (a letter, then letters, digits or '-', 128 at most)"
        )
    return value
