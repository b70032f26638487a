"""`galley status`: the stack's queues and dead-letter queues, its workers, the last failures.

One shot, read-only, and reusable by a live view: :func:`gather` returns a :class:`Status`,
:func:`Status.as_dict` its JSON form.

Where the numbers come from:

- **Depths**: GetQueueAttributes, SQS's approximate counts (visible, in flight, delayed), read for
  every queue before anything else, so the failures listing below does not count itself.
- **Age of the oldest message**: SQS's GetQueueAttributes has no such attribute. On AWS it is the
  CloudWatch metric ``AWS/SQS ApproximateAgeOfOldestMessage`` (its latest one-minute maximum of
  the last 15 minutes; SQS publishes it every minute while the queue is active, so it lags by a
  few minutes). A job queue is never peeked for it: reading a message there takes it from the
  workers and counts as a delivery towards the dead-letter queue. A dead-letter queue is peeked
  anyway for the failures, so when that peek read every message its oldest ``SentTimestamp``
  gives the age (for a message SQS moved there by its redrive policy, the age since its original
  send). Otherwise the age is reported unknown, with the reason (moto publishes no metrics).
- **Last failures**: runner.ops.dlq's listing of each dead-letter queue (a peek: each status adds
  one to every DLQ message's receive count and hides them for a few seconds), newest first.
- **Workers**: each live worker's entry in the worker registry (runner/ops/registry.py: one
  ListObjectsV2 and one GetObject per entry), with the jobs it runs; with ``--stack`` also the
  Fargate service's task counts (ECS) and the Lambda consumer's event source mapping (Lambda
  invocations are not in the registry).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from runner.core import aws, queues, settings
from runner.errors import StatusError
from runner.ops import dlq, registry

#: The stack's outputs (template.yaml) that ``--stack`` reads.
QUEUE_OUTPUTS = {queues.JOBS: "JobsQueueUrl", queues.LONG: "LongJobsQueueUrl"}
BUCKET_OUTPUT = "ResultsBucketName"
CLUSTER_OUTPUT = "WorkerClusterName"
SERVICE_OUTPUT = "WorkerServiceName"
CONSUMER_OUTPUT = "ConsumerFunctionArn"
#: How far back the CloudWatch age metric is looked for.
METRIC_WINDOW = timedelta(minutes=15)
AGE_METRIC = "ApproximateAgeOfOldestMessage"
#: How many messages of each dead-letter queue are read for the failures (and the age).
PEEK_LIMIT = dlq.DEFAULT_LIMIT
DEFAULT_FAILURES = 10

_DEPTHS = {
    "visible": "ApproximateNumberOfMessages",
    "in_flight": "ApproximateNumberOfMessagesNotVisible",
    "delayed": "ApproximateNumberOfMessagesDelayed",
}


@dataclass(frozen=True)
class Target:
    """Which stack: the queue URLs by role (None: not set), the DLQs', the bucket."""

    source: str
    queues: dict[str, str | None]
    dead_letter_queues: dict[str, str | None]
    bucket: str | None = None
    #: From the stack's outputs only (``--stack``).
    outputs: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class QueueStatus:
    role: str
    #: ``queue`` or ``dead-letter``.
    kind: str
    url: str | None
    visible: int | None = None
    in_flight: int | None = None
    delayed: int | None = None
    oldest_age_seconds: float | None = None
    #: Where the age comes from (``cloudwatch``, ``peek``, ``empty``), or why it is unknown.
    oldest_age_source: str = "unknown"
    #: Why the counts are missing (not set, not found, refused), else None.
    problem: str | None = None

    @property
    def name(self) -> str:
        return self.role if self.kind == "queue" else f"{self.role} DLQ"


@dataclass(frozen=True)
class Status:
    source: str
    bucket: str | None
    queues: list[QueueStatus]
    failures: list[dict[str, Any]]
    workers: dict[str, Any]
    at: datetime

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "at": self.at.isoformat(),
            "bucket": self.bucket,
            "queues": [{"name": q.name, **asdict(q)} for q in self.queues],
            "workers": self.workers,
            "failures": self.failures,
        }


# --- which stack ---


def from_settings(config: settings.StatusSettings) -> Target:
    """The stack a worker's environment names (``galley local env`` exports it all)."""
    if config.queue_url is None:
        raise StatusError(
            f"{settings.QUEUE_URL} is not set: attach this shell to a stack "
            '(eval "$(galley local env)") or name a deployed one with --stack NAME'
        )
    return Target(
        source="environment",
        queues={queues.JOBS: config.queue_url, queues.LONG: config.long_queue_url},
        dead_letter_queues={queues.JOBS: config.dlq_url, queues.LONG: config.long_dlq_url},
        bucket=config.results_bucket,
    )


def attach(stack: str | None) -> tuple[Target, Callable[[str], Any]]:
    """What `galley status` and `galley top` look at: stack ``stack``'s outputs, or the
    environment's settings without one; and the AWS clients to look with (one per service)."""
    config = settings.load(settings.AwsSettings if stack else settings.StatusSettings)

    def clients(service: str) -> Any:
        return aws.cached(
            service, use="checks", endpoint_url=config.endpoint_url, region=config.region
        )

    if stack is not None:
        return from_stack(clients("cloudformation"), stack), clients
    assert isinstance(config, settings.StatusSettings)
    return from_settings(config), clients


#: CloudFormation's stack names and stack ARNs (what `aws cloudformation` accepts as a name).
STACK_NAME = re.compile(r"[A-Za-z][-A-Za-z0-9]{0,127}")
STACK_ARN = re.compile(
    r"arn:aws[-a-z]*:cloudformation:[-a-z0-9]+:\d{12}:stack/[A-Za-z][-A-Za-z0-9]{0,127}/[-a-f0-9]+"
)


def from_stack(cloudformation: Any, name: str) -> Target:
    """The stack ``name``'s queues and bucket, from its CloudFormation outputs."""
    if not name.strip():
        raise StatusError("--stack: give the name of a deployed stack")
    if not (STACK_NAME.fullmatch(name) or STACK_ARN.fullmatch(name)):
        raise StatusError(
            f"--stack {name!r}: not a stack name (a letter, then letters, digits and '-', "
            "at most 128) or a stack ARN"
        )
    try:
        stacks = cloudformation.describe_stacks(StackName=name)["Stacks"]
    except ClientError as error:
        raise StatusError(f"--stack {name}: {registry.reason(error)}") from None
    outputs = {
        str(o["OutputKey"]): str(o["OutputValue"])
        for o in (stacks[0].get("Outputs") or [] if stacks else [])
        if "OutputKey" in o and "OutputValue" in o
    }
    if QUEUE_OUTPUTS[queues.JOBS] not in outputs:
        raise StatusError(
            f"--stack {name}: it has no output {QUEUE_OUTPUTS[queues.JOBS]} "
            "(is it a Galley stack, deployed from template.yaml?)"
        )
    return Target(
        source=f"stack {name}",
        queues={role: outputs.get(key) for role, key in QUEUE_OUTPUTS.items()},
        dead_letter_queues={role: outputs.get(dlq.ROLES[role].output) for role in queues.ROLES},
        bucket=outputs.get(BUCKET_OUTPUT),
        outputs=outputs,
    )


# --- the status ---


def gather(
    target: Target,
    clients: Callable[[str], Any],
    *,
    failures: int = DEFAULT_FAILURES,
    now: datetime | None = None,
) -> Status:
    """The status of ``target``; ``clients(service)`` gives a boto3 client. AWS faults of one
    part are reported in that part; only a stack that cannot be found at all raises."""
    now = now or datetime.now(UTC)
    sqs = clients("sqs")
    listed = depths(target, sqs)
    letters = {q.role: _peek(sqs, q) for q in listed if q.kind == "dead-letter" and q.url}
    aged = [_with_age(q, letters.get(q.role), clients, now) for q in listed]
    recent = sorted(
        (
            {"queue": role, **letter.as_dict()}
            for role, read in letters.items()
            if isinstance(read, list)
            for letter in read
        ),
        key=lambda item: item["failed_at"] or "",
        reverse=True,
    )
    return Status(
        source=target.source,
        bucket=target.bucket,
        queues=aged,
        failures=recent[:failures],
        workers=workers(target, clients),
        at=now,
    )


def depths(target: Target, sqs: Any) -> list[QueueStatus]:
    """Each queue's and dead-letter queue's counts (one GetQueueAttributes each), no age."""
    listed: list[QueueStatus] = []
    for role in queues.ROLES:
        listed.append(_depths(sqs, role, "queue", target.queues.get(role)))
        listed.append(_depths(sqs, role, "dead-letter", target.dead_letter_queues.get(role)))
    return listed


def _depths(sqs: Any, role: str, kind: str, url: str | None) -> QueueStatus:
    if url is None:
        variable = (queues.QUEUE_VARIABLE if kind == "queue" else queues.DLQ_VARIABLE)[role]
        return QueueStatus(role, kind, None, problem=f"not set ({variable})")
    try:
        attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=list(_DEPTHS.values()))
    except (ClientError, BotoCoreError) as error:
        return QueueStatus(role, kind, url, problem=registry.reason(error))
    counts = {key: int(attrs["Attributes"].get(name, 0)) for key, name in _DEPTHS.items()}
    return QueueStatus(role, kind, url, counts["visible"], counts["in_flight"], counts["delayed"])


def _peek(sqs: Any, queue: QueueStatus) -> list[dlq.DeadLetter] | str:
    """The dead-letter queue's messages (up to :data:`PEEK_LIMIT`), or why they were not read."""
    if queue.problem is not None:
        return queue.problem
    if not (queue.visible or queue.in_flight or queue.delayed):
        return []
    assert queue.url is not None
    try:
        return dlq.peek(sqs, queue.url, PEEK_LIMIT)
    except (ClientError, BotoCoreError) as error:
        return registry.reason(error)


def _with_age(
    queue: QueueStatus,
    letters: list[dlq.DeadLetter] | str | None,
    clients: Callable[[str], Any],
    now: datetime,
) -> QueueStatus:
    if queue.problem is not None or queue.url is None:
        return queue
    if not (queue.visible or queue.in_flight or queue.delayed):
        return _aged(queue, 0.0, "empty")
    read = letters if isinstance(letters, list) else []
    sent = [letter.sent_at for letter in read]
    read_all = len(read) >= (queue.visible or 0) > 0
    if read_all and not queue.in_flight and not queue.delayed and all(sent):
        oldest = min(moment for moment in sent if moment is not None)
        return _aged(queue, max(0.0, (now - oldest).total_seconds()), "peek")
    return _from_cloudwatch(queue, clients, now)


def _from_cloudwatch(
    queue: QueueStatus, clients: Callable[[str], Any], now: datetime
) -> QueueStatus:
    assert queue.url is not None
    try:
        points = clients("cloudwatch").get_metric_statistics(
            Namespace="AWS/SQS",
            MetricName=AGE_METRIC,
            Dimensions=[{"Name": "QueueName", "Value": settings.queue_name_from_url(queue.url)}],
            StartTime=now - METRIC_WINDOW,
            EndTime=now,
            Period=60,
            Statistics=["Maximum"],
        )["Datapoints"]
    except (ClientError, BotoCoreError) as error:
        return _aged(queue, None, f"unknown: CloudWatch {registry.reason(error)}")
    if not points:
        return _aged(
            queue,
            None,
            f"unknown: no CloudWatch {AGE_METRIC} in the last "
            f"{int(METRIC_WINDOW.total_seconds() // 60)} minutes (moto publishes none)",
        )
    latest = max(points, key=lambda point: point["Timestamp"])
    return _aged(queue, float(latest["Maximum"]), "cloudwatch")


def _aged(queue: QueueStatus, seconds: float | None, source: str) -> QueueStatus:
    return QueueStatus(
        queue.role,
        queue.kind,
        queue.url,
        queue.visible,
        queue.in_flight,
        queue.delayed,
        seconds,
        source,
        queue.problem,
    )


# --- workers ---


def workers(target: Target, clients: Callable[[str], Any]) -> dict[str, Any]:
    """What is known of the stack's workers: the worker registry's live entries; with
    ``--stack`` also the Fargate service (long queue) and the Lambda consumer's event source
    (jobs queue)."""
    found: dict[str, Any] = {"registry": registry.read(clients("s3"), target.bucket).as_dict()}
    cluster, service = target.outputs.get(CLUSTER_OUTPUT), target.outputs.get(SERVICE_OUTPUT)
    if cluster and service:
        found[queues.LONG] = _fargate(clients("ecs"), cluster, service)
    consumer = target.outputs.get(CONSUMER_OUTPUT)
    if consumer:
        found[queues.JOBS] = _lambda_consumer(clients("lambda"), consumer)
    return found


def _fargate(ecs: Any, cluster: str, service: str) -> dict[str, Any]:
    try:
        found = ecs.describe_services(cluster=cluster, services=[service])["services"]
    except (ClientError, BotoCoreError) as error:
        return {"kind": "fargate", "service": service, "problem": registry.reason(error)}
    if not found:
        return {"kind": "fargate", "service": service, "problem": "service not found"}
    one = found[0]
    return {
        "kind": "fargate",
        "service": service,
        "running": one.get("runningCount"),
        "pending": one.get("pendingCount"),
        "desired": one.get("desiredCount"),
    }


def _lambda_consumer(lambda_: Any, function_arn: str) -> dict[str, Any]:
    try:
        mappings = lambda_.list_event_source_mappings(FunctionName=function_arn)[
            "EventSourceMappings"
        ]
    except (ClientError, BotoCoreError) as error:
        return {"kind": "lambda", "function": function_arn, "problem": registry.reason(error)}
    return {
        "kind": "lambda",
        "function": function_arn,
        "event_sources": [
            {"queue": m.get("EventSourceArn"), "state": m.get("State")} for m in mappings
        ],
    }
