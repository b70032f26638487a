"""template.yaml, translated offline, deploys into moto's CloudFormation."""

from __future__ import annotations

import json

from runner import local, stack
from tests import support
from tests.infra.conftest import FULL_PARAMETERS, TEMPLATE

#: Types moto's CloudFormation does not implement (it skips them); anything else must be created.
MOTO_SKIPS = {
    "AWS::ApplicationAutoScaling::ScalableTarget",
    "AWS::ApplicationAutoScaling::ScalingPolicy",
    "AWS::CloudWatch::Alarm",
    "AWS::Scheduler::Schedule",
    "AWS::SQS::QueuePolicy",
    "AWS::S3::BucketPolicy",
    "AWS::SNS::Subscription",
}


def test_full_template_reaches_create_complete(moto_server: local.MotoServer) -> None:
    # GIVEN every conditional resource switched on (Fargate worker, alarm e-mail)
    # WHEN the translated template is created in moto
    deployed = stack.deploy(
        moto_server.url,
        template_path=TEMPLATE,
        stack_name="galley-full",
        parameters=FULL_PARAMETERS,
        session=local.local_session(),
    )
    # THEN every output the code reads is there, pointing at the local endpoint
    assert (
        deployed.outputs[stack.OUTPUT_QUEUE_URL]
        == f"{moto_server.url}/123456789012/galley-full-jobs"
    )
    assert {"WorkerClusterName", "WorkerServiceName"} <= set(deployed.outputs)
    # AND only what moto cannot do, or Galley removes locally, is missing - each with its reason
    missing_types = {item.split(" ", 1)[0] for item in deployed.not_deployed}
    assert missing_types <= MOTO_SKIPS | set(stack.REMOVED_LOCALLY)
    assert all(": " in item for item in deployed.not_deployed)
    assert any(item.startswith("AWS::Lambda::EventSourceMapping") for item in deployed.not_deployed)
    # AND the example schedule is read with its input resolved to the real bucket
    (schedule,) = deployed.schedules
    assert schedule.expression == "cron(0 2 * * ? *)"
    assert schedule.input["task"] == "tasks.reports.summarize_csv"
    assert schedule.input["args"][0] == deployed.outputs[stack.OUTPUT_BUCKET]


def test_queues_carry_the_parameters(moto_server: local.MotoServer) -> None:
    deployed = stack.deploy(
        moto_server.url,
        template_path=TEMPLATE,
        stack_name="galley-params",
        parameters={"VisibilityTimeout": "240", "LambdaTimeout": "40", "MaxReceiveCount": "7"},
        session=local.local_session(),
    )
    resources = local.LocalResources(
        endpoint_url=moto_server.url,
        region="us-east-1",
        queue_url=deployed.outputs[stack.OUTPUT_QUEUE_URL],
        dlq_url=deployed.outputs[stack.OUTPUT_DLQ_URL],
        bucket=deployed.outputs[stack.OUTPUT_BUCKET],
        visibility_timeout=240,
    )
    sqs, s3 = support.clients(resources)
    attrs = sqs.get_queue_attributes(QueueUrl=resources.queue_url, AttributeNames=["All"])[
        "Attributes"
    ]
    assert attrs["VisibilityTimeout"] == "240"
    redrive = json.loads(attrs["RedrivePolicy"])
    assert int(redrive["maxReceiveCount"]) == 7
    assert redrive["deadLetterTargetArn"].endswith(":galley-params-jobs-dlq")
    s3.head_bucket(Bucket=resources.bucket)


def test_conditions_switch_the_fargate_worker(sam: dict[str, object]) -> None:
    translated = stack.translate(sam, stack.LOCAL_PARAMETERS)  # type: ignore[arg-type]
    without = stack.active_resources(translated, stack.LOCAL_PARAMETERS)
    with_worker = stack.active_resources(translated, {**stack.LOCAL_PARAMETERS, **FULL_PARAMETERS})
    assert "WorkerService" not in without and "AlarmEmailSubscription" not in without
    assert {"WorkerService", "WorkerScalableTarget", "AlarmEmailSubscription"} <= with_worker
    assert "JobsQueue" in without
