"""The offline linters and security checks over template.yaml and the worker image."""

from __future__ import annotations

import json
import os
import re
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


def _instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order; comments dropped, continuation lines joined."""
    text = dockerfile.read_text().replace("\\\n", " ")
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    return [(ln.split(None, 1)[0].upper(), ln.split(None, 1)[1]) for ln in lines]


def test_image_installs_the_tasks_requirements_held_to_the_runtime_pins() -> None:
    # GIVEN the worker image's build steps
    steps = _instructions(ROOT / "infra" / "Dockerfile")
    runs = [i for i, (op, _) in enumerate(steps) if op == "RUN" and "pip install" in steps[i][1]]
    copies = {args.split()[0]: i for i, (op, args) in enumerate(steps) if op == "COPY"}
    # WHEN the tasks' requirements are installed
    (tasks_install,) = [i for i in runs if "tasks-requirements.txt" in steps[i][1]]
    command = steps[tasks_install][1]
    # THEN from tasks/requirements.txt, after the runtime and under its pins, before the code
    assert "tasks/requirements.txt" in copies and copies["tasks/requirements.txt"] < tasks_install
    assert runs[0] < tasks_install < copies["tasks"] and copies["runner"] < copies["tasks"]
    assert '-c "${LAMBDA_TASK_ROOT}/requirements.txt"' in command
    assert '-r "${LAMBDA_TASK_ROOT}/tasks-requirements.txt"' in command


def test_tasks_requirements_leave_galleys_runtime_alone() -> None:
    """Galley's runtime is installed already, pinned: tasks/requirements.txt lists only what the
    tasks add (a second pin of celery or boto3 would fight the image's)."""

    def names(path: Path) -> set[str]:
        lines = [ln.split("#", 1)[0].strip() for ln in path.read_text().splitlines()]
        found = [re.split(r"[\s\[<>=!~;@]", ln, maxsplit=1)[0] for ln in lines if ln]
        return {name.lower().replace("_", "-") for name in found}

    runtime = names(ROOT / "infra" / "requirements.txt")
    assert "celery" in runtime
    assert names(ROOT / "tasks" / "requirements.txt") & runtime == set()


def test_make_install_installs_the_tasks_requirements_too() -> None:
    # GIVEN a forced, dry run of `make install`: WHEN its commands are listed
    result = run(["make", "--no-print-directory", "-n", "-B", "install"])
    # THEN the tasks' requirements go into .venv under the suite's constraints
    assert result.returncode == 0, result.stderr
    assert "-c constraints.txt -r tasks/requirements.txt" in result.stdout
