"""`make deploy` (infra/deploy.sh) against stand-ins for `sam` and `aws` that keep a stack's state.

No Docker engine and no AWS here, so the two commands are replaced by small programs on PATH:
the `sam` stand-in reads --parameter-overrides with the SAM CLI's own parser (from
`make tools`) and, like `sam deploy`, keeps the previous value of every parameter not given; the
`aws` stand-in answers describe-stacks and get-function by applying the script's --query with
jmespath (the AWS CLI's query language) to a response shaped like AWS's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.infra.conftest import ROOT, tool

SCRIPT = ROOT / "infra" / "deploy.sh"
STACK_NAME = tomllib.loads((ROOT / "samconfig.toml").read_text())["default"]["global"][
    "parameters"
]["stack_name"]
REPO = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/galley1a2b3c/consumerfunction4d5e6frepo"
OLD_IMAGE = f"{REPO}@sha256:{'a' * 64}"
NEW_IMAGE = f"{REPO}@sha256:{'b' * 64}"
VPC = "vpc-0123456789abcdef0"
SUBNETS = "subnet-0123456789abcdef0,subnet-0123456789abcdef1"

FAKE_SAM = """
import json, os, sys
from samcli.cli.types import CfnParameterOverridesType

path = os.environ["FAKE_STATE"]
with open(path) as f:
    state = json.load(f)
argv = sys.argv[1:]
state["sam"].append(argv)
if argv[0] == "build":
    state["built"] = os.environ["FAKE_BUILT_IMAGE"]
elif argv[0] == "deploy":
    start = argv.index("--parameter-overrides") + 1
    words = []
    for word in argv[start:]:
        if word.startswith("--"):
            break
        words.append(word)
    overrides = CfnParameterOverridesType().convert(tuple(words), None, None)
    stack = state["stack"] or {"parameters": {}}
    stack["parameters"].update(overrides)  # the others keep their previous value
    stack["consumer_image"] = state["built"]  # sam deploy pushed it; the functions run it
    state["stack"] = stack
    state["deployed"].append(dict(stack["parameters"]))
with open(path, "w") as f:
    json.dump(state, f)
"""

FAKE_AWS = """
import json, os, sys
import jmespath

with open(os.environ["FAKE_STATE"]) as f:
    state = json.load(f)
argv = sys.argv[1:]
options = dict(zip(argv[2::2], argv[3::2]))
stack = state["stack"]
if argv[:2] == ["cloudformation", "describe-stacks"]:
    if stack is None or options["--stack-name"] != os.environ["FAKE_STACK_NAME"]:
        print("An error occurred (ValidationError): Stack does not exist", file=sys.stderr)
        sys.exit(254)
    response = {"Stacks": [{
        "Parameters": [{"ParameterKey": k, "ParameterValue": v}
                       for k, v in stack["parameters"].items()],
        "Outputs": [{"OutputKey": "ConsumerFunctionArn",
                     "OutputValue": "arn:aws:lambda:eu-west-1:123456789012:function:x-consumer"}],
    }]}
elif argv[:2] == ["lambda", "get-function"]:
    assert options["--function-name"].endswith(":function:x-consumer"), options
    response = {"Code": {"ImageUri": "not-the-digest", "ResolvedImageUri": stack["consumer_image"]}}
else:
    sys.exit(f"unexpected aws call: {argv}")
found = jmespath.search(options["--query"], response)
assert options["--output"] == "text" and options["--region"] == "eu-west-1", options
print("\\t".join(found) if isinstance(found, list) else found)
"""


@dataclass
class Run:
    result: subprocess.CompletedProcess[str]
    state: dict[str, Any]

    @property
    def sam(self) -> list[list[str]]:
        return list(self.state["sam"])

    def deploys(self) -> list[list[str]]:
        return [argv for argv in self.sam if argv[0] == "deploy"]


Deploy = Callable[..., Run]


@pytest.fixture
def deploy(tmp_path: Path) -> Deploy:
    """Factory: run `make deploy` (or the script) against a stack in the given state."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, python, code in (
        ("sam", tool("sam", "python"), FAKE_SAM),
        ("aws", Path(sys.executable), FAKE_AWS),
    ):
        stub = bin_dir / name
        stub.write_text(f"#!{python}\n{code}")
        stub.chmod(0o755)
    state_file = tmp_path / "state.json"

    def run(
        *args: str,
        stack: dict[str, str] | None = None,
        via_make: bool = False,
        **env: str,
    ) -> Run:
        initial = {"parameters": dict(stack), "consumer_image": OLD_IMAGE} if stack else None
        state_file.write_text(json.dumps({"stack": initial, "sam": [], "deployed": []}))
        environ = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "WORKER_"))},
            "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
            "FAKE_STATE": str(state_file),
            "FAKE_BUILT_IMAGE": NEW_IMAGE,
            "FAKE_STACK_NAME": STACK_NAME,
            "AWS_CONFIG_FILE": os.devnull,
            **env,
        }
        argv = (
            ["make", "--no-print-directory", "deploy", f"SAM={bin_dir / 'sam'}", *args]
            if via_make
            else ["sh", str(SCRIPT), *args]
        )
        result = subprocess.run(
            argv, cwd=ROOT, env=environ, capture_output=True, text=True, timeout=60
        )
        return Run(result, json.loads(state_file.read_text()))

    return run


def overrides(argv: list[str]) -> list[str]:
    start = argv.index("--parameter-overrides") + 1
    end = next((i for i in range(start, len(argv)) if argv[i].startswith("--")), len(argv))
    return argv[start:end]


def test_first_deploy_creates_the_worker_on_the_image_the_lambdas_run(deploy: Deploy) -> None:
    # GIVEN no stack yet
    # WHEN `make deploy` is given the worker's VPC and subnets
    run = deploy(
        via_make=True,
        AWS_REGION="eu-west-1",
        WORKER_VPC_ID=VPC,
        WORKER_SUBNETS=SUBNETS,
    )
    # THEN it builds, deploys without a worker (no image yet), then with the image just pushed
    assert run.result.returncode == 0, run.result.stdout + run.result.stderr
    assert run.sam[0] == ["build"]
    first, second = run.deploys()
    for argv in (first, second):
        assert argv[1:5] == ["--stack-name", STACK_NAME, "--region", "eu-west-1"]
    assert overrides(first) == [f"WorkerVpcId={VPC}", f"WorkerSubnets={SUBNETS}"]
    assert overrides(second) == [
        f"WorkerVpcId={VPC}",
        f"WorkerSubnets={SUBNETS}",
        f"WorkerImageUri={NEW_IMAGE}",
    ]
    # AND the stack ends with the Fargate worker on the Lambda functions' image
    assert run.state["stack"]["parameters"] == {
        "WorkerVpcId": VPC,
        "WorkerSubnets": SUBNETS,
        "WorkerImageUri": NEW_IMAGE,
    }
    assert NEW_IMAGE in run.result.stdout


def test_a_release_moves_the_worker_to_the_new_image_without_removing_it(
    deploy: Deploy,
) -> None:
    # GIVEN a stack whose worker runs the previous release
    stack = {"WorkerVpcId": VPC, "WorkerSubnets": SUBNETS, "WorkerImageUri": OLD_IMAGE}
    # WHEN `make deploy` runs again, with nothing but the region (and options for CI)
    run = deploy(
        "--no-confirm-changeset",
        stack=stack,
        AWS_DEFAULT_REGION="eu-west-1",
        PARAMETERS="AlarmEmail=ops@example.com WorkerMaxCapacity=8",
    )
    # THEN the VPC and subnets are the stack's, and no deploy ever leaves the worker without an
    # image (an empty WorkerImageUri would delete it)
    assert run.result.returncode == 0, run.result.stdout + run.result.stderr
    assert [p["WorkerImageUri"] for p in run.state["deployed"]] == [OLD_IMAGE, NEW_IMAGE]
    assert all(p["WorkerVpcId"] == VPC for p in run.state["deployed"])
    assert run.state["stack"]["parameters"]["WorkerImageUri"] == NEW_IMAGE
    # AND the other parameters and the options reach both deploys
    for argv in run.deploys():
        assert overrides(argv)[:2] == ["AlarmEmail=ops@example.com", "WorkerMaxCapacity=8"]
        assert argv[-1] == "--no-confirm-changeset"


def test_a_rerun_with_the_same_image_deploys_once(deploy: Deploy) -> None:
    # GIVEN a stack whose worker already runs what `sam build` makes
    stack = {"WorkerVpcId": VPC, "WorkerSubnets": SUBNETS, "WorkerImageUri": NEW_IMAGE}
    # WHEN
    run = deploy(stack=stack, AWS_REGION="eu-west-1")
    # THEN one deploy (the functions), and the worker is left as it is
    assert run.result.returncode == 0, run.result.stderr
    assert len(run.deploys()) == 1
    assert "already runs" in run.result.stdout


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"AWS_REGION": "eu-west-1", "WORKER_SUBNETS": SUBNETS}, "WORKER_VPC_ID"),
        ({"AWS_REGION": "eu-west-1", "WORKER_VPC_ID": VPC}, "WORKER_SUBNETS"),
        ({"WORKER_VPC_ID": VPC, "WORKER_SUBNETS": SUBNETS}, "AWS_REGION"),
        (
            {
                "AWS_REGION": "eu-west-1",
                "WORKER_VPC_ID": VPC,
                "WORKER_SUBNETS": "subnet-a, subnet-b",
            },
            "WORKER_SUBNETS",
        ),
    ],
)
def test_a_first_deploy_missing_a_setting_stops_before_building(
    deploy: Deploy, env: dict[str, str], named: str
) -> None:
    # GIVEN no stack, and one setting missing (or subnets with a space)
    # WHEN
    run = deploy(**env)
    # THEN nothing is built or deployed, and the message names the setting
    assert run.result.returncode != 0
    assert named in run.result.stderr
    assert run.sam == []


def test_the_image_is_read_from_the_consumer_function_output(sam: dict[str, Any]) -> None:
    assert sam["Outputs"]["ConsumerFunctionArn"]["Value"] == {
        "Fn::GetAtt": ["ConsumerFunction", "Arn"]
    }
    assert "ConsumerFunctionArn" in SCRIPT.read_text()
