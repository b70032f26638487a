"""template.yaml as the source of truth for the local stack: translate offline, deploy into moto.

The SAM transform is expanded with samtranslator and its bundled managed-policy map (no IAM call),
then the plain CloudFormation template is created in moto's CloudFormation. Queue URLs, the bucket
name and the schedules are read back from the stack, so local and production resources match.
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from runner.errors import StackError

#: The template: ./template.yaml, else the one beside this package (the project root).
DEFAULT_TEMPLATE = Path("template.yaml")
_PROJECT_TEMPLATE = Path(__file__).resolve().parents[2] / "template.yaml"
DEFAULT_STACK_NAME = "galley-local"

# --- names the code relies on; tests/infra checks the template has them ---
OUTPUT_QUEUE_URL = "JobsQueueUrl"
OUTPUT_DLQ_URL = "JobsDeadLetterQueueUrl"
OUTPUT_LONG_QUEUE_URL = "LongJobsQueueUrl"
OUTPUT_LONG_DLQ_URL = "LongJobsDeadLetterQueueUrl"
OUTPUT_BUCKET = "ResultsBucketName"
REQUIRED_OUTPUTS = (
    OUTPUT_QUEUE_URL,
    OUTPUT_DLQ_URL,
    OUTPUT_LONG_QUEUE_URL,
    OUTPUT_LONG_DLQ_URL,
    OUTPUT_BUCKET,
)
JOBS_QUEUE = "JobsQueue"
RESULTS_BUCKET = "ResultsBucket"
SCHEDULE_FUNCTION = "ScheduleFunction"
#: Event types of a function that are EventBridge schedules (the local stack fires them).
SCHEDULE_EVENT_TYPES = ("ScheduleV2", "Schedule")

#: Parameters of a local deployment: short timeouts, quick dead-lettering; the Fargate worker is
#: left out (the local worker plays its part). VisibilityTimeout stays 6 x LambdaTimeout.
LOCAL_PARAMETERS = {
    "VisibilityTimeout": "120",
    "LambdaTimeout": "20",
    "LongJobsVisibilityTimeout": "300",
    "MaxReceiveCount": "3",
}

#: Image functions need an ImageUri to translate; `sam build` provides the real one.
PLACEHOLDER_IMAGE_URI = "123456789012.dkr.ecr.us-east-1.amazonaws.com/galley:local"

#: Removed before a local deployment, with the reason reported to the user.
REMOVED_LOCALLY = {
    "AWS::Lambda::EventSourceMapping": "Lambda needs Docker here; the local worker consumes "
    "the queue instead (the consumer handler is tested by calling it directly)",
}


#: What stands in locally for a resource type moto's CloudFormation skips.
LOCAL_STAND_INS = {
    "AWS::Scheduler::Schedule": "not implemented by moto; `galley local up` fires it itself",
}


@dataclass(frozen=True)
class ScheduleSpec:
    """One schedule declared in the template (an EventBridge Scheduler ScheduleV2 event)."""

    name: str
    expression: str
    input: dict[str, Any]


@dataclass(frozen=True)
class NotDeployed:
    """A resource of the template the local stack does not have, and why."""

    type: str
    logical_id: str
    reason: str

    def __str__(self) -> str:
        return f"{self.type} ({self.logical_id}): {self.reason}"


def summarize(missing: Sequence[NotDeployed]) -> str:
    """What the local stack lacks, in one line: how many of each type, in the template's order."""
    counts = Counter(item.type for item in missing)
    kinds = ", ".join(f"{count} {kind}" for kind, count in counts.items())
    noun = "resource" if len(missing) == 1 else "resources"
    return f"{len(missing)} {noun} moto cannot emulate ({kinds})"


@dataclass(frozen=True)
class DeployedStack:
    """What a local deployment created, as the code needs it."""

    name: str
    outputs: dict[str, str]
    schedules: list[ScheduleSpec] = field(default_factory=list)
    #: Everything the local stack does not have, with the reason.
    not_deployed: list[NotDeployed] = field(default_factory=list)


def _schedule_input(name: str, raw: str) -> Any:
    """A schedule's Input, JSON text; StackError names the schedule if it is not JSON."""
    if not raw:
        return {}
    try:
        return json.loads(raw)
    except ValueError as error:
        raise StackError(f"schedule {name}: Input is not JSON ({error})") from None
    except RecursionError:
        raise StackError(f"schedule {name}: Input is not JSON (nested too deep)") from None


def load_template(path: Path) -> dict[str, Any]:
    """Parse a SAM/CloudFormation YAML template, short-form intrinsics (!Ref, !Sub ...) included.

    StackError, naming the file, if it cannot be read, is not YAML or is not a mapping.
    """
    import yaml
    from samtranslator.yaml_helper import yaml_parse

    if path == DEFAULT_TEMPLATE and not path.exists() and _PROJECT_TEMPLATE.exists():
        path = _PROJECT_TEMPLATE
    if not path.exists():
        raise StackError(f"template not found: {path} (run galley from the project root)")
    try:
        text = path.read_text()
    except (OSError, UnicodeError) as error:
        raise StackError(f"{path}: the template cannot be read: {error}") from None
    try:
        template = yaml_parse(text)
    except yaml.YAMLError as error:
        raise StackError(
            f"{path}: the template is not valid YAML: {_yaml_problem(error)}"
        ) from None
    except (ValueError, RecursionError) as error:  # a date like 2024-13-01; nesting too deep
        problem = str(error) or type(error).__name__
        raise StackError(f"{path}: the template is not valid YAML: {problem}") from None
    if template is None:
        raise StackError(f"{path}: the template is empty")
    if not isinstance(template, dict):
        raise StackError(f"{path}: the template is {_kind(template)}, expected a mapping")
    return template


def _yaml_problem(error: Exception) -> str:
    """A YAML error on one line: the problem and where it is."""
    import yaml

    if isinstance(error, yaml.MarkedYAMLError):
        problem = error.problem or error.context or "cannot be parsed"
        mark = error.problem_mark or error.context_mark
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        return f"{problem}{where}"
    return str(error).splitlines()[0] if str(error) else type(error).__name__


def _kind(value: Any) -> str:
    """What a YAML value is, as a message names it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return f"a {type(value).__name__}"


def _mapping(value: Any, where: str) -> Mapping[Any, Any]:
    if not isinstance(value, Mapping):
        raise StackError(f"{where} is {_kind(value)}, expected a mapping")
    return value


def _key(name: Any) -> str:
    """A key of the template as a message shows it: logical ids as they are, others quoted."""
    return name if isinstance(name, str) and re.fullmatch(r"[A-Za-z0-9_:-]+", name) else repr(name)


def schedule_events(template: Mapping[str, Any]) -> list[tuple[str, str, Mapping[str, Any]]]:
    """``(logical id, event id, Properties)`` of every schedule event (:data:`SCHEDULE_EVENT_TYPES`)
    of every resource. StackError names the first part on the way to them that is not a mapping
    (CloudFormation refuses null there too)."""
    if "Resources" not in template:
        raise StackError("the template has no Resources")
    found = []
    for logical_id, resource in _mapping(template["Resources"], "Resources").items():
        where = f"Resources.{_key(logical_id)}"
        resource = _mapping(resource, where)
        if "Properties" not in resource:
            continue
        props = _mapping(resource["Properties"], f"{where}.Properties")
        if "Events" not in props:
            continue
        events = _mapping(props["Events"], f"{where}.Properties.Events")
        for event_id, event in events.items():
            at = f"{where}.Properties.Events.{_key(event_id)}"
            event = _mapping(event, at)
            if event.get("Type") in SCHEDULE_EVENT_TYPES:
                properties = _mapping(event.get("Properties", {}), f"{at}.Properties")
                found.append((str(logical_id), str(event_id), properties))
    return found


def translate(
    template: Mapping[str, Any], parameters: Mapping[str, str], region: str = "us-east-1"
) -> dict[str, Any]:
    """Expand the SAM transform offline: plain CloudFormation, no AWS call."""
    import boto3
    from samtranslator.internal.managed_policies import get_bundled_managed_policy_map
    from samtranslator.model.exceptions import InvalidDocumentException
    from samtranslator.parser.parser import Parser
    from samtranslator.translator.translator import Translator

    sam = json.loads(json.dumps(template))  # a deep copy the translator may change
    for resource in sam.get("Resources", {}).values():
        props = resource.get("Properties", {})
        if resource.get("Type") == "AWS::Serverless::Function" and props.get("PackageType") == (
            "Image"
        ):
            props.setdefault("ImageUri", PLACEHOLDER_IMAGE_URI)
    policies = get_bundled_managed_policy_map("aws") or {}
    session = boto3.Session(region_name=region)
    try:
        translated: dict[str, Any] = Translator(None, Parser(), boto_session=session).translate(
            sam, dict(parameters), get_managed_policy_map=lambda: policies
        )
    except InvalidDocumentException as error:
        reasons = "; ".join(str(cause) for cause in error.causes)
        raise StackError(f"template.yaml is not a valid SAM template: {reasons}") from None
    return translated


def for_local(
    translated: Mapping[str, Any], *, bucket_name: str | None = None
) -> tuple[dict[str, Any], list[NotDeployed]]:
    """The translated template minus what cannot run locally, and the list of what was removed.

    With ``bucket_name`` the results bucket gets that name instead of one CloudFormation makes
    up at each deployment (`galley local up` keeps its bucket's name across restarts).
    """
    template = json.loads(json.dumps(translated))
    if bucket_name is not None:
        bucket = template["Resources"].get(RESULTS_BUCKET)
        if bucket is None:
            raise StackError(f"template.yaml has no {RESULTS_BUCKET} to name {bucket_name}")
        bucket.setdefault("Properties", {})["BucketName"] = bucket_name
    removed = []
    for logical_id, resource in list(template["Resources"].items()):
        reason = REMOVED_LOCALLY.get(resource["Type"])
        if reason:
            del template["Resources"][logical_id]
            removed.append(NotDeployed(resource["Type"], logical_id, reason))
    return template, removed


def schedules(
    sam_template: Mapping[str, Any], substitutions: Mapping[str, str]
) -> list[ScheduleSpec]:
    """The ScheduleV2 events of every function, with ``${Name}`` in their input resolved."""
    found = []
    for logical_id, event_id, props in schedule_events(sam_template):
        name = f"{logical_id}.{event_id}"
        raw_input = _resolve(props.get("Input", "{}"), substitutions)
        found.append(
            ScheduleSpec(
                name=name,
                expression=str(_resolve(props.get("ScheduleExpression", ""), substitutions)),
                input=_schedule_input(name, raw_input),
            )
        )
    return found


def _resolve(value: Any, substitutions: Mapping[str, str]) -> str:
    """A string as written, or a !Sub with its ${Name} references (all in ``substitutions``)
    filled in. As CloudFormation does, ``${Name}`` in a plain string stays as it is: EventBridge
    sends such an Input as written (`galley schedules` reports it)."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and "Fn::Sub" in value:
        value = value["Fn::Sub"]
    if not isinstance(value, str):
        raise StackError(f"cannot resolve {value!r} locally (only strings and !Sub are supported)")

    def lookup(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in substitutions:
            raise StackError(f"cannot resolve ${{{name}}} in {value!r} locally")
        return substitutions[name]

    return re.sub(r"\$\{([A-Za-z0-9:._]+)\}", lookup, value)


def deploy(
    endpoint_url: str,
    *,
    template_path: Path = DEFAULT_TEMPLATE,
    stack_name: str = DEFAULT_STACK_NAME,
    parameters: Mapping[str, str] | None = None,
    region: str = "us-east-1",
    session: Any = None,
    timeout: float = 120,
    bucket_name: str | None = None,
) -> DeployedStack:
    """Translate ``template_path`` and create it in the CloudFormation at ``endpoint_url``
    (the results bucket named ``bucket_name``, if given)."""
    from runner.core import aws

    params = {**LOCAL_PARAMETERS, **(parameters or {})}
    sam = load_template(template_path)
    template, removed = for_local(translate(sam, params, region), bucket_name=bucket_name)
    cfn = aws.client("cloudformation", endpoint_url=endpoint_url, session=session)
    cfn.create_stack(
        StackName=stack_name,
        TemplateBody=json.dumps(template),
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in params.items()],
        Capabilities=["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND"],
    )
    stack = _wait_for_stack(cfn, stack_name, timeout)
    if stack["StackStatus"] != "CREATE_COMPLETE":
        raise StackError(
            f"stack {stack_name} ended {stack['StackStatus']}: {stack.get('StackStatusReason')}"
        )
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
    missing = [name for name in REQUIRED_OUTPUTS if name not in outputs]
    if missing:
        raise StackError(f"template.yaml lacks the outputs {', '.join(missing)}")
    outputs = {k: _local_queue_url(v, endpoint_url) for k, v in outputs.items()}
    physical = {
        r["LogicalResourceId"]: r["PhysicalResourceId"]
        for r in cfn.list_stack_resources(StackName=stack_name)["StackResourceSummaries"]
    }
    active = active_resources(template, params)
    skipped = [
        NotDeployed(
            resource["Type"],
            logical_id,
            LOCAL_STAND_INS.get(resource["Type"], "not implemented by moto's CloudFormation"),
        )
        for logical_id, resource in template["Resources"].items()
        if logical_id in active and logical_id not in physical
    ]
    substitutions = {
        **params,
        **physical,
        "AWS::StackName": stack_name,
        "AWS::Region": region,
        "AWS::AccountId": "123456789012",
    }
    return DeployedStack(
        name=stack_name,
        outputs=outputs,
        schedules=schedules(sam, substitutions),
        not_deployed=removed + skipped,
    )


def active_resources(template: Mapping[str, Any], parameters: Mapping[str, str]) -> set[str]:
    """Logical ids of the resources CloudFormation creates with ``parameters`` (Conditions)."""
    values: dict[str, Any] = {}
    for name, declared in template.get("Parameters", {}).items():
        value = str(parameters.get(name, declared.get("Default", "")))
        values[name] = value.split(",") if declared.get("Type") == "CommaDelimitedList" else value
    conditions = template.get("Conditions", {})
    return {
        logical_id
        for logical_id, resource in template["Resources"].items()
        if "Condition" not in resource
        or _condition(conditions[resource["Condition"]], conditions, values)
    }


def _condition(expr: Any, conditions: Mapping[str, Any], values: Mapping[str, Any]) -> bool:
    if isinstance(expr, bool):
        return expr
    ((function, args),) = expr.items()
    if function == "Condition":
        return _condition(conditions[args], conditions, values)
    if function == "Fn::Equals":
        return bool(_value(args[0], values) == _value(args[1], values))
    if function == "Fn::Not":
        return not _condition(args[0], conditions, values)
    if function == "Fn::And":
        return all(_condition(a, conditions, values) for a in args)
    if function == "Fn::Or":
        return any(_condition(a, conditions, values) for a in args)
    raise StackError(f"cannot evaluate condition {function} locally")


def _value(expr: Any, values: Mapping[str, Any]) -> Any:
    if isinstance(expr, str):
        return expr
    if isinstance(expr, dict) and "Ref" in expr:
        return values[expr["Ref"]]
    if isinstance(expr, dict) and "Fn::Join" in expr:
        separator, items = expr["Fn::Join"]
        parts = _value(items, values) if isinstance(items, dict) else items
        return separator.join(str(_value(p, values)) for p in parts)
    raise StackError(f"cannot evaluate {expr!r} in a condition locally")


def _wait_for_stack(cfn: Any, name: str, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        stack: dict[str, Any] = cfn.describe_stacks(StackName=name)["Stacks"][0]
        if not stack["StackStatus"].endswith("_IN_PROGRESS"):
            return stack
        if time.monotonic() >= deadline:
            raise StackError(f"stack {name} still {stack['StackStatus']} after {timeout:g}s")
        time.sleep(0.2)


def _local_queue_url(value: str, endpoint_url: str) -> str:
    """moto's CloudFormation reports AWS-style queue URLs; point them at the local endpoint."""
    parts = urlsplit(value)
    if (
        parts.hostname
        and parts.hostname.startswith("sqs.")
        and parts.hostname.endswith(".amazonaws.com")
    ):
        return endpoint_url.rstrip("/") + parts.path
    return value
