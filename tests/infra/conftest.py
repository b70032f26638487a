"""Fixtures over template.yaml: the SAM source and its offline translation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from runner.local import sam as templates

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"
TOOLS = ROOT / ".venv-tools"

#: Parameters that switch every conditional resource on, for checks and the moto deployment.
FULL_PARAMETERS = {
    "WorkerImageUri": templates.PLACEHOLDER_IMAGE_URI,
    "WorkerVpcId": "vpc-0123456789abcdef0",
    "WorkerSubnets": "subnet-0123456789abcdef0,subnet-0123456789abcdef1",
    "AlarmEmail": "ops@example.com",
}


@pytest.fixture(scope="session")
def sam() -> dict[str, Any]:
    return templates.load_template(TEMPLATE)


@pytest.fixture(scope="session")
def cfn(sam: dict[str, Any]) -> dict[str, Any]:
    """The template as CloudFormation (SAM transform expanded offline)."""
    return templates.translate(sam, FULL_PARAMETERS)


def tool(venv: str, name: str) -> Path:
    """A template tool installed by `make tools`; a missing one fails the test, never skips."""
    path = TOOLS / venv / "bin" / name
    assert path.exists(), f"{path} is missing: run `make tools` (make test does)"
    return path
