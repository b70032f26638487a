"""Typed settings, one model per process kind, read from the environment and validated at start.

Every environment variable Galley reads is named in runner.core.variables (importable from here
too) and nowhere else. Resolution order:
explicit keyword argument > environment variable > default. A missing or malformed variable
raises :class:`SettingsError` naming the variable, before any AWS client is built.
"""

from __future__ import annotations

from typing import Any, Literal, TypeVar

from pydantic import AliasChoices, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from runner.core import limits
from runner.core.variables import (
    ALL_VARIABLES,
    AWS_DEFAULT_REGION,
    AWS_ENDPOINT_URL,
    AWS_REGION,
    DASHBOARD_TOKEN,
    DEFAULT_PAYLOAD_THRESHOLD_BYTES,
    DEFAULT_REGION,
    DEFAULT_REGISTRY_INTERVAL,
    DLQ_URL,
    LAMBDA_RESERVE_SECONDS,
    LOG_FORMAT,
    LONG_DLQ_URL,
    LONG_QUEUE_URL,
    MAX_HOP_SECONDS,
    MAX_REGISTRY_INTERVAL,
    METRICS,
    MIN_PAYLOAD_THRESHOLD_BYTES,
    MIN_REGISTRY_INTERVAL,
    PAYLOAD_THRESHOLD_BYTES,
    QUEUE_URL,
    RECEIVE_WAIT_SECONDS,
    REGISTRY_INTERVAL,
    RESULTS_BUCKET,
    RESULTS_PREFIX,
    REVOKE_REFRESH_SECONDS,
    SCALE_IN_PROTECTION,
    STACK_NAME,
    TASK_MODULES,
    TASK_TIME_LIMIT,
    VISIBILITY_HEARTBEAT,
    VISIBILITY_TIMEOUT,
    check_bucket_name,
    check_endpoint_url,
    check_queue_url,
    check_stack_name,
    check_standard_queue_url,
    queue_name_from_url,
    refuse_fifo,
)
from runner.errors import SettingsError

#: The variables' names and checks live in runner.core.variables (no pydantic); they are
#: importable from here too, as before.
__all__ = [
    "ALL_VARIABLES",
    "AWS_DEFAULT_REGION",
    "AWS_ENDPOINT_URL",
    "AWS_REGION",
    "DASHBOARD_TOKEN",
    "DLQ_URL",
    "LAMBDA_RESERVE_SECONDS",
    "LOG_FORMAT",
    "LONG_DLQ_URL",
    "LONG_QUEUE_URL",
    "MAX_HOP_SECONDS",
    "METRICS",
    "PAYLOAD_THRESHOLD_BYTES",
    "QUEUE_URL",
    "RECEIVE_WAIT_SECONDS",
    "REGISTRY_INTERVAL",
    "RESULTS_BUCKET",
    "RESULTS_PREFIX",
    "REVOKE_REFRESH_SECONDS",
    "SCALE_IN_PROTECTION",
    "STACK_NAME",
    "TASK_MODULES",
    "TASK_TIME_LIMIT",
    "VISIBILITY_HEARTBEAT",
    "VISIBILITY_TIMEOUT",
    "AwsSettings",
    "ConsumerSettings",
    "DlqSettings",
    "ProducerSettings",
    "StatusSettings",
    "WorkerSettings",
    "check_standard_queue_url",
    "load",
    "queue_name_from_url",
]

_HINTS = {
    QUEUE_URL: "the SQS queue URL jobs go to, "
    "e.g. https://sqs.us-east-1.amazonaws.com/123456789012/galley-jobs",
    RESULTS_BUCKET: "the S3 bucket results are stored in",
}


class _Base(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="GALLEY_",
        case_sensitive=False,
        extra="ignore",
        frozen=True,
        populate_by_name=True,
        # `GALLEY_DLQ_URL=` (e.g. an empty template parameter) means "not set"
        env_ignore_empty=True,
    )


class AwsSettings(_Base):
    """What every process needs to reach AWS (or moto, through ``AWS_ENDPOINT_URL``)."""

    region: str = Field(
        default=DEFAULT_REGION, validation_alias=AliasChoices(AWS_REGION, AWS_DEFAULT_REGION)
    )
    #: Only read to validate it and to report it; boto3 honours the variable by itself.
    endpoint_url: str | None = Field(default=None, validation_alias=AWS_ENDPOINT_URL)

    @field_validator("endpoint_url")
    @classmethod
    def _endpoint_is_url(cls, value: str | None) -> str | None:
        return check_endpoint_url(value)


class ProducerSettings(AwsSettings):
    """A process that only sends jobs."""

    queue_url: str
    #: The long-jobs queue (Fargate workers), for producers that route jobs to it.
    long_queue_url: str | None = None
    #: Where large arguments go (runner/wire/payloads.py); required by workers, optional here.
    results_bucket: str | None = None
    #: SQS messages larger than this carry their arguments in S3 instead (claim check).
    payload_threshold_bytes: int = Field(
        default=DEFAULT_PAYLOAD_THRESHOLD_BYTES,
        ge=MIN_PAYLOAD_THRESHOLD_BYTES,
        le=limits.MAX_MESSAGE_BYTES,
    )

    @property
    def queue_name(self) -> str:
        return queue_name_from_url(self.queue_url)

    @field_validator("queue_url")
    @classmethod
    def _queue_url_valid(cls, value: str) -> str:
        return check_queue_url(value)

    @field_validator("long_queue_url")
    @classmethod
    def _long_queue_url_valid(cls, value: str | None) -> str | None:
        return None if value in (None, "") else check_queue_url(value)

    @field_validator("results_bucket")
    @classmethod
    def _bucket_valid(cls, value: str | None) -> str | None:
        return check_bucket_name(value)


class WorkerSettings(ProducerSettings):
    """A process that runs jobs and stores their results: Celery worker, Lambda consumer, CLI."""

    #: The dead-letter queue of the jobs queue, and of the long-jobs queue; a worker takes
    #: its queue's from the queue's RedrivePolicy when unset.
    dlq_url: str | None = None
    long_dlq_url: str | None = None
    results_bucket: str
    results_prefix: str = "results/"
    #: Must equal the queue's VisibilityTimeout: kombu sends it with every ReceiveMessage.
    visibility_timeout: int = Field(default=900, ge=1, le=limits.MAX_VISIBILITY_TIMEOUT_SECONDS)
    #: Hard time limit per task; defaults to 90 % of the visibility timeout. Longer limits need
    #: the visibility heartbeat, which keeps a running task's message invisible.
    #: At most 12 h: SQS refuses to keep a message hidden longer than that after it was
    #: received, heartbeat or not.
    task_time_limit: int | None = Field(
        default=None, ge=1, le=limits.MAX_VISIBILITY_TIMEOUT_SECONDS - 60
    )
    #: Extend running tasks' message visibility (runner/worker/heartbeat.py).
    visibility_heartbeat: bool = True
    #: Extra task modules to load besides the ``tasks`` package (comma-separated).
    task_modules: str = ""
    #: Protect the ECS task from scale-in while busy (runner/worker/protection.py; Fargate).
    scale_in_protection: bool = False
    #: How long one ReceiveMessage long-polls. 20 s (SQS's longest) costs the fewest requests;
    #: a stopping worker waits for its poll in flight to return, so shorter stops faster.
    receive_wait_seconds: int = Field(default=limits.MAX_WAIT_TIME_SECONDS, ge=1, le=20)
    #: Longest SQS delay hop towards a job's eta (runner/worker/hops.py); SQS allows 900 s.
    max_hop_seconds: int = Field(
        default=limits.MAX_DELAY_SECONDS, ge=1, le=limits.MAX_DELAY_SECONDS
    )
    #: ``text`` (Celery's lines) or ``json``: one JSON object per line, with task name, id,
    #: state, duration and receive count on task lines (runner/core/logformat.py).
    log_format: Literal["text", "json"] = "text"
    #: How often a worker reads the revocations in S3 (runner/core/revocations.py), and how long
    #: the Lambda consumer trusts what it read: a job revoked less than this before it starts
    #: may still run. One HeadObject per refresh when nothing changed.
    revoke_refresh_seconds: float = Field(default=5.0, ge=1, le=300)
    #: How often the worker rewrites its entry in the worker registry, in seconds
    #: (runner/worker/registry.py; `galley status` and `galley top` read it); 0: no entry.
    registry_interval: float = Field(
        default=DEFAULT_REGISTRY_INTERVAL, ge=0, le=MAX_REGISTRY_INTERVAL
    )
    #: ``emf``: job metrics as CloudWatch Embedded Metric Format lines on stdout
    #: (runner/core/metrics.py; template.yaml turns them on); ``off``: none.
    metrics: Literal["emf", "off"] = "off"
    #: The Stack dimension of those metrics (template.yaml sets the stack's name).
    stack_name: str = "galley"

    @property
    def extra_task_modules(self) -> list[str]:
        return [m.strip() for m in self.task_modules.split(",") if m.strip()]

    @field_validator("dlq_url", "long_dlq_url")
    @classmethod
    def _dlq_url_valid(cls, value: str | None) -> str | None:
        return None if value in (None, "") else check_queue_url(value)

    @field_validator("queue_url", "long_queue_url", "dlq_url", "long_dlq_url")
    @classmethod
    def _standard_queues_only(cls, value: str | None) -> str | None:
        return None if value is None else refuse_fifo(value)

    @field_validator("stack_name")
    @classmethod
    def _stack_name_valid(cls, value: str) -> str:
        return check_stack_name(value)

    @field_validator("registry_interval")
    @classmethod
    def _registry_interval_valid(cls, value: float) -> float:
        if 0 < value < MIN_REGISTRY_INTERVAL:
            raise ValueError(
                f"{value:g} s is too short: 0 (no registry) or "
                f"{MIN_REGISTRY_INTERVAL} to {MAX_REGISTRY_INTERVAL}"
            )
        return value

    @field_validator("results_prefix")
    @classmethod
    def _prefix_valid(cls, value: str) -> str:
        if value.startswith("/"):
            raise ValueError(f"{value!r} must not start with '/'")
        return value if value == "" or value.endswith("/") else value + "/"

    @model_validator(mode="after")
    def _time_limit_below_visibility(self) -> WorkerSettings:
        too_long = (
            self.task_time_limit is not None and self.task_time_limit >= self.visibility_timeout
        )
        if too_long and not self.visibility_heartbeat:
            raise ValueError(
                f"{TASK_TIME_LIMIT}={self.task_time_limit} must be lower than "
                f"{VISIBILITY_TIMEOUT}={self.visibility_timeout} while "
                f"{VISIBILITY_HEARTBEAT} is off: a task running past the visibility timeout is "
                "delivered again and runs twice"
            )
        return self

    @property
    def effective_time_limit(self) -> int:
        if self.task_time_limit is not None:
            return self.task_time_limit
        return max(1, self.visibility_timeout * 9 // 10)


class ConsumerSettings(WorkerSettings):
    """The Lambda consumer: a worker that also watches the invocation's remaining time."""

    #: A record is started only while more than this is left of the invocation; the rest are
    #: reported as failures, not started, and SQS delivers them again.
    lambda_reserve_seconds: float = Field(default=10.0, ge=0, le=900)


class DlqSettings(AwsSettings):
    """`galley dlq`: the stack's dead-letter queues it reads, redrives and purges. Both are
    optional here; the one `--queue` asks for must be set (runner.ops.dlq.queue_url says so)."""

    #: The jobs queue's dead-letter queue (template.yaml: JobsDeadLetterQueue; `--queue jobs`).
    dlq_url: str | None = Field(default=None, validation_alias=DLQ_URL)
    #: The long-jobs queue's dead-letter queue (template.yaml: LongJobsDeadLetterQueue;
    #: `--queue long`).
    long_dlq_url: str | None = Field(default=None, validation_alias=LONG_DLQ_URL)

    @field_validator("dlq_url", "long_dlq_url")
    @classmethod
    def _dlq_url_valid(cls, value: str | None) -> str | None:
        return None if value in (None, "") else check_standard_queue_url(str(value))


class StatusSettings(AwsSettings):
    """`galley status` without ``--stack``: the stack's queues as a worker's environment names
    them (``galley local env`` exports them all). Each is optional here; the status says which
    are not set, and needs at least the jobs queue (runner.ops.status)."""

    queue_url: str | None = None
    long_queue_url: str | None = None
    dlq_url: str | None = None
    long_dlq_url: str | None = None
    results_bucket: str | None = None

    @field_validator("queue_url", "long_queue_url", "dlq_url", "long_dlq_url")
    @classmethod
    def _queue_urls_valid(cls, value: str | None) -> str | None:
        return None if value in (None, "") else check_standard_queue_url(str(value))

    @field_validator("results_bucket")
    @classmethod
    def _bucket_valid(cls, value: str | None) -> str | None:
        return check_bucket_name(value)


_S = TypeVar("_S", bound=_Base)


def _env_name(model: type[_Base], field: str) -> str:
    info = model.model_fields.get(field)
    if info is None and field.isupper():
        return field  # pydantic reports an aliased field by its alias: the variable itself
    if info is not None:
        alias = info.validation_alias
        if isinstance(alias, str):
            return alias
        if isinstance(alias, AliasChoices):
            return str(alias.choices[0])
    return (model.model_config.get("env_prefix", "") + field).upper()


def _describe(model: type[_Base], error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        field = str(item["loc"][0]) if item["loc"] else ""
        name = _env_name(model, field) if field else "settings"
        if item["type"] == "missing":
            hint = _HINTS.get(name)
            lines.append(f"  {name}: required but not set" + (f" ({hint})" if hint else ""))
        else:
            msg = str(item["msg"]).removeprefix("Value error, ")
            ours = item["type"] == "value_error"  # our validators already quote the value
            shown = "" if ours or not field else f" (got {item['input']!r})"
            lines.append(f"  {name}: {msg}{shown}" if field else f"  {msg}")
    return "Galley settings are invalid:\n" + "\n".join(lines)


def load(model: type[_S], **overrides: Any) -> _S:
    """Build ``model`` from keyword overrides and the environment, or raise SettingsError."""
    try:
        return model(**overrides)
    except ValidationError as error:
        raise SettingsError(_describe(model, error)) from None
