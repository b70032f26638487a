"""The deploy guide stays true: what README.md and docs/ name exists in the repository."""

from __future__ import annotations

import subprocess

import pytest

from tests.infra.conftest import ROOT


@pytest.mark.parametrize("path", [".aws-sam/build/template.yaml", ".aws-sam/build.toml"])
def test_sam_build_output_is_ignored_by_git(path: str) -> None:
    # GIVEN what `sam build` writes; WHEN git is asked; THEN it is ignored
    result = subprocess.run(
        ["git", "check-ignore", "--no-index", "--quiet", path], cwd=ROOT, check=False
    )
    assert result.returncode == 0, f"{path} is not in .gitignore"
