"""template.yaml, translated offline, deploys into moto's CloudFormation."""

from __future__ import annotations

import json

from runner.local import embedded
from runner.local import sam as templates
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


def test_full_template_reaches_create_complete(moto_server: embedded.MotoServer) -> None:
    # GIVEN every conditional resource switched on (Fargate worker, alarm e-mail)
    # WHEN the translated template is created in moto
    deployed = templates.deploy(
        moto_server.url,
        template_path=TEMPLATE,
        stack_name="galley-full",
        parameters=FULL_PARAMETERS,
        session=embedded.local_session(),
    )
    # THEN every output the code reads is there, pointing at the local endpoint
    assert (
        deployed.outputs[templates.OUTPUT_QUEUE_URL]
        == f"{moto_server.url}/123456789012/galley-full-jobs"
    )
    assert {"WorkerClusterName", "WorkerServiceName"} <= set(deployed.outputs)
    # AND only what moto cannot do, or Galley removes locally, is missing - each with its reason
    missing_types = {item.type for item in deployed.not_deployed}
    assert missing_types <= MOTO_SKIPS | set(templates.REMOVED_LOCALLY)
    assert all(item.reason for item in deployed.not_deployed)
    assert "AWS::Lambda::EventSourceMapping" in missing_types
    # AND the example schedule is read with its input resolved to the real bucket
    (schedule,) = deployed.schedules
    assert schedule.expression == "cron(0 2 * * ? *)"
    assert schedule.input["task"] == "tasks.reports.summarize_csv"
    assert schedule.input["args"][0] == deployed.outputs[templates.OUTPUT_BUCKET]


def test_queues_carry_the_parameters(moto_server: embedded.MotoServer) -> None:
    deployed = templates.deploy(
        moto_server.url,
        template_path=TEMPLATE,
        stack_name="galley-params",
        parameters={"VisibilityTimeout": "240", "LambdaTimeout": "40", "MaxReceiveCount": "7"},
        session=embedded.local_session(),
    )
    resources = embedded.LocalResources(
        endpoint_url=moto_server.url,
        region="us-east-1",
        queue_url=deployed.outputs[templates.OUTPUT_QUEUE_URL],
        dlq_url=deployed.outputs[templates.OUTPUT_DLQ_URL],
        bucket=deployed.outputs[templates.OUTPUT_BUCKET],
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
    translated = templates.translate(sam, templates.LOCAL_PARAMETERS)  # type: ignore[arg-type]
    without = templates.active_resources(translated, templates.LOCAL_PARAMETERS)
    with_worker = templates.active_resources(
        translated, {**templates.LOCAL_PARAMETERS, **FULL_PARAMETERS}
    )
    assert "WorkerService" not in without and "AlarmEmailSubscription" not in without
    assert {"WorkerService", "WorkerScalableTarget", "AlarmEmailSubscription"} <= with_worker
    assert "JobsQueue" in without
