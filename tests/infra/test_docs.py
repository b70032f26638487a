"""The deploy guide stays true: what README.md and docs/ name exists in the repository."""

from __future__ import annotations

import ast
import importlib
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from runner.core import settings
from tests.infra.conftest import ROOT

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
GUIDES = [ROOT / "docs" / "deploy.md", ROOT / "docs" / "web-apps.md"]


def _text(paths: list[Path]) -> str:
    return "\n".join(path.read_text() for path in paths)


def _code_blocks(path: Path, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", path.read_text(), re.DOTALL | re.MULTILINE)


@pytest.mark.parametrize("path", [".aws-sam/build/template.yaml", ".aws-sam/build.toml"])
def test_sam_build_output_is_ignored_by_git(path: str) -> None:
    # GIVEN what `sam build` writes; WHEN git is asked; THEN it is ignored
    result = subprocess.run(
        ["git", "check-ignore", "--no-index", "--quiet", path], cwd=ROOT, check=False
    )
    assert result.returncode == 0, f"{path} is not in .gitignore"


def test_every_make_target_the_docs_name_exists_and_make_help_lists_it() -> None:
    # GIVEN the targets the docs tell a reader to run, and the Makefile's rules
    named = set(re.findall(r"(?:`|^\$ )make ([a-z][a-z-]*)", _text(DOCS), re.MULTILINE))
    makefile = (ROOT / "Makefile").read_text()
    rules = set(re.findall(r"^([a-z][a-z-]*)\s*:(?!=)", makefile, re.MULTILINE))
    helped = subprocess.run(
        ["make", "--no-print-directory", "help"], cwd=ROOT, capture_output=True, text=True
    ).stdout
    # THEN each is a rule, and `make help` shows it
    assert {"deploy", "install", "tools"} <= named
    assert named <= rules, named - rules
    assert {t for t in named if f"make {t} " not in helped} <= {"install"}


def test_every_galley_variable_the_docs_name_is_a_setting() -> None:
    named = set(re.findall(r"\bGALLEY_[A-Z0-9_]+\b", _text(DOCS)))
    assert {settings.QUEUE_URL, settings.LONG_QUEUE_URL, settings.RESULTS_BUCKET} <= named
    assert named <= set(settings.ALL_VARIABLES), named - set(settings.ALL_VARIABLES)


def test_every_stack_output_the_guides_name_exists(sam: dict[str, Any]) -> None:
    text = _text([*GUIDES, ROOT / "README.md"])
    named = set(re.findall(r"\bout ([A-Z][A-Za-z]+)", text))
    named |= set(re.findall(r"`([A-Z][A-Za-z]+(?:Url|Arn|Name))`", text))
    assert {"ProducerPolicyArn", "JobsQueueUrl", "ResultsBucketName"} <= named
    assert named <= set(sam["Outputs"]), named - set(sam["Outputs"])


def test_every_parameter_the_guides_set_exists(sam: dict[str, Any]) -> None:
    named = set(re.findall(r"\b([A-Z][a-z]+[A-Z][A-Za-z]*)=", _text([*GUIDES, ROOT / "README.md"])))
    named -= {"ParameterKey", "OutputKey"}  # JMESPath in the shell examples
    assert {"WorkerImageUri", "WorkerVpcId", "WorkerSubnets"} <= named
    assert named <= set(sam["Parameters"]), named - set(sam["Parameters"])


def test_the_producer_policy_table_is_the_template_s(sam: dict[str, Any]) -> None:
    # GIVEN the table of web-apps.md: | `Sid` | `action` | ...
    rows = re.findall(r"^\| `(\w+)` \| `([a-z0-9]+:\w+)` \|", GUIDES[1].read_text(), re.MULTILINE)
    # THEN it lists the policy's statements, each with its action
    statements = sam["Resources"]["ProducerPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert dict(rows) == {s["Sid"]: s["Action"] for s in statements}


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_python_examples_compile_and_import_what_exists(path: Path) -> None:
    for block in _code_blocks(path, "python"):
        tree = ast.parse(block)
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("runner"):
                module = importlib.import_module(str(node.module))
                for alias in node.names:
                    assert hasattr(module, alias.name), f"{node.module}.{alias.name} ({path.name})"


def test_the_function_the_guide_reads_the_image_of_is_the_consumer(sam: dict[str, Any]) -> None:
    # GIVEN the by-hand steps of deploy.md, for the stack samconfig.toml names
    assert "--function-name galley-consumer" in GUIDES[0].read_text()
    # THEN that is the Lambda consumer's name in that stack
    consumer = sam["Resources"]["ConsumerFunction"]["Properties"]
    assert consumer["FunctionName"] == {"Fn::Sub": "${AWS::StackName}-consumer"}
