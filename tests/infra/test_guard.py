"""Guard-style rules over template.yaml (SAM source) and its CloudFormation translation."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runner.core import revocations, settings
from runner.core.settings import WorkerSettings
from runner.local import sam as templates
from runner.ops import registry
from runner.wire import payloads
from tests.infra.conftest import ROOT

Template = dict[str, Any]

#: AWS-managed policies a role may carry, and why (their "*" resources are AWS's, not ours).
ALLOWED_MANAGED_POLICIES = {
    "AWSLambdaBasicExecutionRole",  # SAM default: write own logs
    "AWSXrayWriteOnlyAccess",  # Tracing: Active
    "AmazonECSTaskExecutionRolePolicy",  # ecr:GetAuthorizationToken only exists on "*"
}


def resources(template: Template, kind: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == kind}


def props(resource: dict[str, Any]) -> dict[str, Any]:
    return resource.get("Properties", {})


def ref_target(value: Any) -> str | None:
    """The logical id a !Ref or !GetAtt points at."""
    if isinstance(value, dict):
        if "Ref" in value:
            return str(value["Ref"])
        if "Fn::GetAtt" in value:
            return str(value["Fn::GetAtt"][0])
    return None


def default(sam: Template, parameter: str) -> int:
    return int(sam["Parameters"][parameter]["Default"])


# --- queues --------------------------------------------------------------------------------------


def test_every_queue_has_a_dlq_with_longer_retention(sam: Template) -> None:
    queues = resources(sam, "AWS::SQS::Queue")
    dlqs = {
        ref_target(props(q)["RedrivePolicy"]["deadLetterTargetArn"])
        for q in queues.values()
        if "RedrivePolicy" in props(q)
    }
    sources = {k: q for k, q in queues.items() if k not in dlqs}
    assert len(sources) == 2 and len(dlqs) == 2
    for name, queue in sources.items():
        redrive = props(queue).get("RedrivePolicy")
        assert redrive, f"{name} has no dead-letter queue"
        dlq = props(queues[str(ref_target(redrive["deadLetterTargetArn"]))])
        assert dlq["MessageRetentionPeriod"] > props(queue)["MessageRetentionPeriod"], name


def test_every_queue_is_encrypted(sam: Template) -> None:
    for name, queue in resources(sam, "AWS::SQS::Queue").items():
        p = props(queue)
        assert p.get("SqsManagedSseEnabled") is True or "KmsMasterKeyId" in p, name


def test_queue_visibility_is_at_least_six_lambda_timeouts(sam: Template) -> None:
    jobs = props(sam["Resources"][templates.JOBS_QUEUE])
    assert jobs["VisibilityTimeout"] == {"Ref": "VisibilityTimeout"}
    # Defaults, and the values `galley local up` deploys with.
    assert default(sam, "VisibilityTimeout") >= 6 * default(sam, "LambdaTimeout")
    local = templates.LOCAL_PARAMETERS
    assert int(local["VisibilityTimeout"]) >= 6 * int(local["LambdaTimeout"])
    # The consumer's timeout is the LambdaTimeout parameter.
    assert sam["Globals"]["Function"]["Timeout"] == {"Ref": "LambdaTimeout"}


def _tls_only(statement: dict[str, Any]) -> bool:
    return (
        statement["Effect"] == "Deny"
        and statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
        and statement["Principal"] in ("*", {"AWS": "*"})
    )


def test_every_queue_has_a_tls_only_policy(sam: Template) -> None:
    covered: set[str] = set()
    for policy in resources(sam, "AWS::SQS::QueuePolicy").values():
        statements = props(policy)["PolicyDocument"]["Statement"]
        if any(_tls_only(s) for s in statements):
            covered |= {str(ref_target(q)) for q in props(policy)["Queues"]}
    assert covered == set(resources(sam, "AWS::SQS::Queue"))


# --- bucket --------------------------------------------------------------------------------------


def test_bucket_is_private_encrypted_tls_only_and_expires_results(sam: Template) -> None:
    ((name, bucket),) = resources(sam, "AWS::S3::Bucket").items()
    p = props(bucket)
    assert p["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    rule = p["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]
    assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] in ("AES256", "aws:kms")
    expiry = [r for r in p["LifecycleConfiguration"]["Rules"] if r.get("Prefix") == "results/"]
    assert expiry and expiry[0]["ExpirationInDays"] == {"Ref": "ResultExpiryDays"}
    # orphan payloads expire, but not before a dead letter pointing at one could be redriven
    (orphans,) = [r for r in p["LifecycleConfiguration"]["Rules"] if r.get("Prefix") == "payloads/"]
    dlq_days = max(
        props(q)["MessageRetentionPeriod"] / 86400
        for q in resources(sam, "AWS::SQS::Queue").values()
    )
    assert orphans["ExpirationInDays"] > dlq_days
    # revocations expire too, after any dead letter they revoke could be redriven
    (revoked,) = [
        r for r in p["LifecycleConfiguration"]["Rules"] if r.get("Prefix") == revocations.PREFIX
    ]
    assert revoked["ExpirationInDays"] > dlq_days
    # the worker registry's entries go a day after their worker stopped writing them
    (workers,) = [
        r for r in p["LifecycleConfiguration"]["Rules"] if r.get("Prefix") == registry.PREFIX
    ]
    assert (workers["Status"], workers["ExpirationInDays"]) == ("Enabled", 1)
    policies = [
        props(bp)
        for bp in resources(sam, "AWS::S3::BucketPolicy").values()
        if ref_target(props(bp)["Bucket"]) == name
    ]
    assert any(_tls_only(s) for bp in policies for s in bp["PolicyDocument"]["Statement"])


# --- IAM -----------------------------------------------------------------------------------------


def _statements(cfn: Template) -> Iterator[tuple[str, dict[str, Any]]]:
    for name, role in resources(cfn, "AWS::IAM::Role").items():
        for policy in props(role).get("Policies", []):
            for statement in policy["PolicyDocument"]["Statement"]:
                yield name, statement
    for name, managed in resources(cfn, "AWS::IAM::ManagedPolicy").items():
        for statement in props(managed)["PolicyDocument"]["Statement"]:
            yield name, statement


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def test_no_wildcard_action_or_resource_in_iam(cfn: Template) -> None:
    checked = 0
    for role, statement in _statements(cfn):
        if statement.get("Effect", "Allow") != "Allow":
            continue
        checked += 1
        for action in _as_list(statement["Action"]):
            assert action != "*" and not str(action).endswith(":*"), (role, action)
        for resource in _as_list(statement["Resource"]):
            assert resource != "*", (role, statement)
    assert checked >= 8  # the consumer, producers, worker and scheduler roles were all seen


def test_only_known_managed_policies(cfn: Template) -> None:
    for name, role in resources(cfn, "AWS::IAM::Role").items():
        for arn in props(role).get("ManagedPolicyArns", []):
            text = arn["Fn::Sub"] if isinstance(arn, dict) and "Fn::Sub" in arn else str(arn)
            assert text.rsplit("/", 1)[-1] in ALLOWED_MANAGED_POLICIES, (name, arn)


def test_producers_may_only_send(cfn: Template) -> None:
    for logical_id in ("EnqueueFunctionRole", "ScheduleFunctionRole"):
        role = cfn["Resources"][logical_id]
        statements = [
            s
            for policy in props(role).get("Policies", [])
            for s in policy["PolicyDocument"]["Statement"]
        ]
        sqs = {a for s in statements for a in _as_list(s["Action"]) if a.startswith("sqs:")}
        assert sqs and all(a.startswith("sqs:SendMessage") for a in sqs), sqs
        s3 = [s for s in statements if any(a.startswith("s3:") for a in _as_list(s["Action"]))]
        # ...and put large arguments under payloads/, nothing else
        assert [_as_list(s["Action"]) for s in s3] == [["s3:PutObject"]]
        assert s3[0]["Resource"] == {"Fn::Sub": "${ResultsBucket.Arn}/payloads/*"}


def test_producer_policy_sends_jobs_and_reads_results_only(sam: Template) -> None:
    """The managed policy a web app attaches (docs/web-apps.md): each action on exactly the
    resources the producer and the result reader touch, prefixes as the code writes them."""
    # GIVEN the policy and where the code puts large arguments and results
    policy = sam["Resources"]["ProducerPolicy"]
    assert policy["Type"] == "AWS::IAM::ManagedPolicy"
    statements = props(policy)["PolicyDocument"]["Statement"]
    results_prefix = WorkerSettings.model_fields["results_prefix"].default
    # WHEN each action is paired with the resources it is allowed on
    allowed = {
        action: [_as_list(s["Resource"]) for s in statements if action in _as_list(s["Action"])]
        for s in statements
        for action in _as_list(s["Action"])
    }
    # THEN sending, uploading payloads and reading results is all it may do, each on its own
    assert all(s["Effect"] == "Allow" and "Condition" not in s for s in statements)
    assert allowed == {
        # SendMessage also authorises SendMessageBatch (enqueue_many)
        "sqs:SendMessage": [
            [{"Fn::GetAtt": ["JobsQueue", "Arn"]}, {"Fn::GetAtt": ["LongJobsQueue", "Arn"]}]
        ],
        "s3:PutObject": [[{"Fn::Sub": f"${{ResultsBucket.Arn}}/{payloads.PREFIX}*"}]],
        "s3:GetObject": [[{"Fn::Sub": f"${{ResultsBucket.Arn}}/{results_prefix}*"}]],
        # a result not written yet reads as 404 (PENDING), not 403, only with ListBucket
        "s3:ListBucket": [[{"Fn::GetAtt": ["ResultsBucket", "Arn"]}]],
    }


def test_producer_policy_arn_is_an_output(sam: Template) -> None:
    output = sam["Outputs"]["ProducerPolicyArn"]
    assert output["Value"] == {"Ref": "ProducerPolicy"}  # a managed policy's Ref is its ARN
    assert "Condition" not in output


# --- functions, worker, alarms -------------------------------------------------------------------


def test_consumer_reports_batch_item_failures_from_the_image(sam: Template) -> None:
    consumer = sam["Resources"]["ConsumerFunction"]
    event = props(consumer)["Events"]["Jobs"]
    assert event["Type"] == "SQS"
    assert props(event)["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert ref_target(props(event)["Queue"]) == templates.JOBS_QUEUE
    assert props(consumer)["PackageType"] == "Image"
    assert props(consumer)["ImageConfig"]["Command"] == ["runner.lambdas.consumer.handler"]
    for function in resources(sam, "AWS::Serverless::Function").values():
        dockerfile = (
            ROOT / function["Metadata"]["DockerContext"] / function["Metadata"]["Dockerfile"]
        )
        assert dockerfile.exists()


def test_jobs_the_lambda_consumer_runs_may_route_to_the_long_queue(sam: Template) -> None:
    # a chain link, retry or send routed to "long" from a job the Lambda runs needs the long
    # queue's URL and permission to send to it (found by the review: QueueNotFound after the
    # job's body had run)
    consumer = sam["Resources"]["ConsumerFunction"]
    env = props(consumer)["Environment"]["Variables"]
    assert ref_target(env[settings.LONG_QUEUE_URL]) == "LongJobsQueue"
    role = resources(sam, "AWS::IAM::Role")["ConsumerRole"]
    sends = {
        str(ref_target(resource))
        for policy in props(role)["Policies"]
        for statement in policy["PolicyDocument"]["Statement"]
        if "sqs:SendMessage" in _as_list(statement["Action"])
        for resource in _as_list(statement["Resource"])
    }
    assert "LongJobsQueue" in sends


def _environment_names(sam: Template) -> set[str]:
    names = set(sam["Globals"]["Function"]["Environment"]["Variables"])
    for function in resources(sam, "AWS::Serverless::Function").values():
        names |= set(props(function).get("Environment", {}).get("Variables", {}))
    for task in resources(sam, "AWS::ECS::TaskDefinition").values():
        for container in props(task)["ContainerDefinitions"]:
            names |= {e["Name"] for e in container.get("Environment", [])}
    return names


def test_environment_names_exist_in_settings(sam: Template) -> None:
    names = _environment_names(sam)
    assert settings.QUEUE_URL in names and settings.RESULTS_BUCKET in names
    assert names <= set(settings.ALL_VARIABLES), names - set(settings.ALL_VARIABLES)


def test_no_secrets_in_environment(sam: Template) -> None:
    for name in _environment_names(sam):
        assert not any(word in name for word in ("SECRET", "PASSWORD", "TOKEN", "ACCESS_KEY"))


def test_fargate_worker_runs_celery_from_the_same_image_safely(sam: Template) -> None:
    (task,) = resources(sam, "AWS::ECS::TaskDefinition").values()
    (container,) = props(task)["ContainerDefinitions"]
    assert container["Command"][:4] == ["celery", "-A", "runner.app", "worker"]
    assert container["Image"] == {"Ref": "WorkerImageUri"}
    assert container["ReadonlyRootFilesystem"] is True
    assert container["StopTimeout"] >= 60
    assert container["User"] != "root" and not str(container["User"]).startswith("0")
    # the worker consumes the long-jobs queue (-Q long) and knows both queues, so task_routes
    # and queue= reach either from a job it runs
    command = container["Command"]
    assert command[command.index("-Q") + 1] == "long"
    env = {e["Name"]: e["Value"] for e in container["Environment"]}
    assert ref_target(env[settings.QUEUE_URL]) == "JobsQueue"
    assert ref_target(env[settings.LONG_QUEUE_URL]) == "LongJobsQueue"
    assert ref_target(env[settings.LONG_DLQ_URL]) == "LongJobsDeadLetterQueue"
    assert settings.DLQ_URL not in env
    assert ref_target(env[settings.VISIBILITY_TIMEOUT]) == "LongJobsVisibilityTimeout"
    # AND its role lets the start-up checks read both queues and its DLQ, and send to the jobs
    # queue
    role = resources(sam, "AWS::IAM::Role")["WorkerTaskRole"]
    allowed: dict[str, set[str]] = {}
    for policy in props(role)["Policies"]:
        for statement in policy["PolicyDocument"]["Statement"]:
            for resource in _as_list(statement["Resource"]):
                target = str(ref_target(resource) or resource)
                allowed.setdefault(target, set()).update(_as_list(statement["Action"]))
    assert {"sqs:GetQueueAttributes", "sqs:SendMessage"} <= allowed["JobsQueue"]
    assert {"sqs:GetQueueAttributes", "sqs:SendMessage"} <= allowed["LongJobsDeadLetterQueue"]
    assert "sqs:ReceiveMessage" not in allowed["JobsQueue"]
    entrypoint = (ROOT / "infra" / "entrypoint.sh").read_text()
    assert '"${1:-}" = "celery"' in entrypoint


def test_worker_scales_out_from_zero_and_back(sam: Template) -> None:
    assert default(sam, "WorkerMinCapacity") == 0
    backlog = props(sam["Resources"]["LongJobsBacklogAlarm"])
    # >= 1, not > 1: a single waiting job must start a worker.
    assert backlog["Threshold"] == 1
    assert backlog["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
    assert backlog["MetricName"] == "ApproximateNumberOfMessagesVisible"
    scale_in = props(sam["Resources"]["WorkerScaleInPolicy"])["StepScalingPolicyConfiguration"]
    assert scale_in["AdjustmentType"] == "ExactCapacity"
    assert scale_in["StepAdjustments"][0]["ScalingAdjustment"] == 0
    idle = props(sam["Resources"]["LongJobsIdleAlarm"])
    expression = [m for m in idle["Metrics"] if m.get("ReturnData")][0]["Expression"]
    assert expression == "visible + inflight"  # never scale in while a job is running


def test_alarms_on_dead_letters_and_age(sam: Template) -> None:
    alarms = resources(sam, "AWS::CloudWatch::Alarm")
    watched = {
        (props(a).get("MetricName"), ref_target(props(a)["Dimensions"][0]["Value"]))
        for a in alarms.values()
        if "Dimensions" in props(a)
    }
    for dlq in ("JobsDeadLetterQueue", "LongJobsDeadLetterQueue"):
        assert ("ApproximateNumberOfMessagesVisible", dlq) in watched
    for queue in ("JobsQueue", "LongJobsQueue"):
        assert ("ApproximateAgeOfOldestMessage", queue) in watched


def test_outputs_are_described_and_include_what_the_code_reads(sam: Template) -> None:
    outputs = sam["Outputs"]
    assert set(templates.REQUIRED_OUTPUTS) <= set(outputs)
    for name, output in outputs.items():
        assert output.get("Description"), name


def test_every_checkov_skip_gives_its_reason(sam: Template) -> None:
    skips = [
        (name, skip)
        for name, resource in sam["Resources"].items()
        for skip in resource.get("Metadata", {}).get("checkov", {}).get("skip", [])
    ]
    assert skips
    for name, skip in skips:
        assert len(skip.get("comment", "")) > 20, (name, skip)


@pytest.mark.parametrize("path", ["samconfig.toml", "infra/Dockerfile", "infra/entrypoint.sh"])
def test_deploy_files_exist(path: str) -> None:
    assert (Path(ROOT) / path).is_file()
