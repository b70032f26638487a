"""The offline linters and security checks over template.yaml and the worker image."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.infra.conftest import ROOT, TEMPLATE, tool

OFFLINE_AWS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "SAM_CLI_TELEMETRY": "0",
}


def run(argv: list[str | Path], **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in argv],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_cfn_lint_is_clean() -> None:
    result = run([Path(sys.executable).parent / "cfn-lint", TEMPLATE])
    assert result.returncode == 0, result.stdout + result.stderr


def test_sam_validate_lint_is_clean() -> None:
    result = run([tool("sam", "sam"), "validate", "--lint", "-t", TEMPLATE], **OFFLINE_AWS)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "is a valid SAM Template" in result.stdout + result.stderr


def test_checkov_finds_nothing() -> None:
    result = run(
        [
            tool("checkov", "checkov"),
            "-f",
            TEMPLATE,
            "--framework",
            "cloudformation",
            "--skip-download",
            "--output",
            "json",
            "--quiet",
        ],
        BC_SKIP_MAPPING="TRUE",
    )
    report = json.loads(result.stdout)
    summary = report["summary"]
    failed = [
        f"{c['check_id']} {c['resource']}"
        for c in report.get("results", {}).get("failed_checks", [])
    ]
    assert summary["failed"] == 0, failed
    assert summary["passed"] > 20  # it really checked the template
    assert result.returncode == 0


def test_hadolint_is_clean() -> None:
    hadolint = Path(sys.executable).parent / "hadolint"
    result = run([hadolint, ROOT / "infra" / "Dockerfile"])
    assert result.returncode == 0, result.stdout + result.stderr


def test_image_requirements_match_constraints() -> None:
    """The worker image installs exactly the versions the suite ran with."""

    def pins(path: Path) -> dict[str, str]:
        lines = [ln.strip() for ln in path.read_text().splitlines()]
        pairs = [ln.split("==", 1) for ln in lines if ln and not ln.startswith("#")]
        return {name.lower().replace("_", "-"): version for name, version in pairs}

    image = pins(ROOT / "infra" / "requirements.txt")
    tested = pins(ROOT / "constraints.txt")
    assert {"celery", "kombu", "boto3", "pydantic", "pydantic-settings", "pycurl"} <= set(image)
    mismatched = {name: (v, tested.get(name)) for name, v in image.items() if tested.get(name) != v}
    assert mismatched == {}
    assert "moto" not in image  # local-only dependencies stay out of the image
