"""The CloudWatch dashboard and the failure-rate alarms of template.yaml: valid JSON once
CloudFormation has filled it in, and only metrics the stack emits."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from runner.core import metrics, queues, settings
from tests.infra.test_guard import Template, props, resources

STACK = "my-stack"
#: What AWS publishes for the stack's resources, by namespace: the names the dashboard may use.
AWS_METRICS = {
    "AWS/SQS": {
        "ApproximateNumberOfMessagesVisible",
        "ApproximateNumberOfMessagesNotVisible",
        "ApproximateAgeOfOldestMessage",
    },
    "AWS/Lambda": {"Errors", "Throttles", "Invocations", "ConcurrentExecutions"},
    # the cluster has containerInsights enabled (WorkerCluster): no extra cost to read it
    "ECS/ContainerInsights": {"RunningTaskCount"},
}
QUEUES = {"JobsQueue", "LongJobsQueue", "JobsDeadLetterQueue", "LongJobsDeadLetterQueue"}


def resolve(value: Any, deploy_worker: bool, names: dict[str, str] | None = None) -> Any:
    """``value`` as CloudFormation would give it: Fn::Sub filled in (a ref as ``<Id>`` or
    ``<Id.Attribute>``, the stack's name as :data:`STACK`), Fn::If by ``deploy_worker``."""
    if isinstance(value, list):
        return [resolve(item, deploy_worker, names) for item in value]
    if not isinstance(value, dict):
        return value
    if "Fn::If" in value:
        condition, yes, no = value["Fn::If"]
        assert condition == "DeployWorker"
        return resolve(yes if deploy_worker else no, deploy_worker, names)
    if "Fn::Sub" in value:
        text, variables = (
            (value["Fn::Sub"], {}) if isinstance(value["Fn::Sub"], str) else value["Fn::Sub"]
        )
        filled = {k: str(resolve(v, deploy_worker, names)) for k, v in variables.items()}

        def lookup(match: re.Match[str]) -> str:
            name = match.group(1)
            if name in filled:
                return filled[name]
            return {"AWS::StackName": STACK, "AWS::Region": "eu-west-1"}.get(name, f"<{name}>")

        return re.sub(r"\$\{([^!}][^}]*)\}", lookup, text)
    if "Ref" in value:
        return {"AWS::StackName": STACK}.get(value["Ref"], f"<{value['Ref']}>")
    return {k: resolve(v, deploy_worker, names) for k, v in value.items()}


def dashboard(sam: Template, deploy_worker: bool) -> dict[str, Any]:
    (board,) = resources(sam, "AWS::CloudWatch::Dashboard").values()
    text = resolve(props(board)["DashboardBody"], deploy_worker)
    body = json.loads(text)  # THEN it is JSON
    assert isinstance(body, dict)
    return body


def widget_metrics(body: dict[str, Any]) -> list[tuple[str, str, dict[str, str]]]:
    """(namespace, metric name, dimensions) of every metric a widget names, its SEARCH
    expressions included."""
    found = []
    for widget in body["widgets"]:
        for row in widget.get("properties", {}).get("metrics", []):
            if isinstance(row[0], dict):  # an expression
                found += search_metrics(row[0]["expression"])
                continue
            names = [item for item in row if not isinstance(item, dict)]
            namespace, name, *pairs = names
            found.append((namespace, name, dict(zip(pairs[::2], pairs[1::2], strict=True))))
    return found


def search_metrics(expression: str) -> list[tuple[str, str, dict[str, str]]]:
    found = []
    for query in re.findall(r"SEARCH\('([^']*)'", expression):
        schema = re.match(r"\{([^}]*)\}", query)
        assert schema, f"a SEARCH names its schema: {query}"
        namespace, *dimensions = schema.group(1).split(",")
        pairs = dict(re.findall(r'(\w+)="([^"]*)"', query))
        name = pairs.pop("MetricName")
        assert set(pairs) <= set(dimensions), query
        found.append((namespace, name, {d: pairs.get(d, "*") for d in dimensions}))
    return found


@pytest.mark.parametrize("deploy_worker", [True, False], ids=["with-fargate", "lambda-only"])
def test_the_dashboard_is_json_naming_only_metrics_the_stack_emits(
    sam: Template, deploy_worker: bool
) -> None:
    # GIVEN the dashboard as CloudFormation fills it in, with and without the Fargate worker
    body = dashboard(sam, deploy_worker)
    named = widget_metrics(body)
    assert named
    for namespace, name, dimensions in named:
        if namespace == metrics.NAMESPACE:
            # THEN Galley's metrics are the ones the code writes, on its dimensions and stack
            assert name in metrics.METRIC_NAMES, name
            assert tuple(dimensions) in metrics.DIMENSION_SETS, dimensions
            assert dimensions[metrics.STACK] == STACK
            assert dimensions.get(metrics.QUEUE, "*") in {*queues.ROLES, "*"}
        else:
            # AND AWS's are ones AWS publishes, of this stack's resources
            assert name in AWS_METRICS[namespace], (namespace, name)
            if namespace == "AWS/SQS":
                assert dimensions["QueueName"].removesuffix(".QueueName>")[1:] in QUEUES
            if namespace == "AWS/Lambda":
                assert dimensions == {"FunctionName": "<ConsumerFunction>"}
    # AND it shows what operators look at
    shown = {(namespace, name) for namespace, name, _ in named}
    sqs = {n for ns, n in shown if ns == "AWS/SQS"}
    assert {"ApproximateNumberOfMessagesVisible", "ApproximateAgeOfOldestMessage"} <= sqs
    depth = {d["QueueName"] for ns, n, d in named if n == "ApproximateNumberOfMessagesVisible"}
    assert depth == {f"<{q}.QueueName>" for q in QUEUES}  # each queue and each DLQ
    galley = {n for ns, n in shown if ns == metrics.NAMESPACE}
    assert {metrics.SUCCEEDED, metrics.FAILED, metrics.RETRIED, metrics.RUNTIME} <= galley
    assert ("AWS/Lambda", "Errors") in shown and ("AWS/Lambda", "Throttles") in shown
    assert (("ECS/ContainerInsights", "RunningTaskCount") in shown) == deploy_worker
    runtime_p95 = [
        m["expression"]
        for w in body["widgets"]
        for row in w.get("properties", {}).get("metrics", [])
        for m in row
        if isinstance(m, dict) and "Runtime" in m.get("expression", "")
    ]
    assert runtime_p95 and all("'p95'" in e and ",Task}" in e for e in runtime_p95)


def test_the_failure_rate_alarms_divide_failed_by_succeeded_and_failed(sam: Template) -> None:
    alarms = {
        k: props(v)
        for k, v in resources(sam, "AWS::CloudWatch::Alarm").items()
        if "FailureRate" in k
    }
    assert set(alarms) == {"JobsFailureRateAlarm", "LongJobsFailureRateAlarm"}
    for logical_id, alarm in alarms.items():
        queue = queues.LONG if logical_id.startswith("Long") else queues.JOBS
        stats = {m["Id"]: m["MetricStat"] for m in alarm["Metrics"] if "MetricStat" in m}
        for stat in stats.values():
            metric = stat["Metric"]
            dimensions = {d["Name"]: resolve(d["Value"], True) for d in metric["Dimensions"]}
            assert metric["Namespace"] == metrics.NAMESPACE
            assert dimensions == {metrics.STACK: STACK, metrics.QUEUE: queue}
        names = {k: s["Metric"]["MetricName"] for k, s in stats.items()}
        assert names == {"failed": metrics.FAILED, "succeeded": metrics.SUCCEEDED}
        (expression,) = [m["Expression"] for m in alarm["Metrics"] if m.get("ReturnData")]
        assert "failed / (succeeded + failed)" in expression
        assert alarm["AlarmActions"] == [{"Ref": "AlarmTopic"}]


def test_the_consumer_and_the_worker_write_metrics_of_their_stack(sam: Template) -> None:
    consumer = props(sam["Resources"]["ConsumerFunction"])["Environment"]["Variables"]
    (container,) = props(sam["Resources"]["WorkerTaskDefinition"])["ContainerDefinitions"]
    worker = {e["Name"]: e["Value"] for e in container["Environment"]}
    for environment in (consumer, worker):
        assert environment[settings.METRICS] == metrics.EMF
        assert environment[settings.STACK_NAME] == {"Ref": "AWS::StackName"}
