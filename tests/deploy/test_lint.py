"""The Dockerfile, the shell scripts and the deployment's YAML, each under its linter."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.deploy.tools import REPO, required_tool

SHELL_SCRIPTS = [REPO / "entrypoint.sh", *sorted((REPO / "tests" / "deploy").glob("*.sh"))]


def run(*command: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(part) for part in command],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_hadolint_finds_nothing_in_the_dockerfile() -> None:
    result = run(required_tool("hadolint"), "--failure-threshold", "style", "Dockerfile")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == ""


def test_shellcheck_finds_nothing_in_the_scripts() -> None:
    result = run(required_tool("shellcheck"), "--severity", "style", *SHELL_SCRIPTS)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_scripts_are_executable() -> None:
    for script in SHELL_SCRIPTS:
        assert script.stat().st_mode & 0o111, script


def test_yamllint_finds_nothing_in_the_deployment_yaml() -> None:
    folders = ("config/kubernetes", "config/prometheus", "config/grafana", ".yamllint")
    result = run(required_tool("yamllint"), "--strict", *folders)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_image_context_is_only_what_the_image_needs() -> None:
    """.dockerignore lets in the package sources and their metadata, nothing else."""
    allowed = {
        "pyproject.toml",
        "setup.py",
        "README.md",
        "evaluator/",
        "container/",
        "entrypoint.sh",
        "config/requirements/",
    }
    lines = (REPO / ".dockerignore").read_text().splitlines()
    patterns = [line for line in lines if line and not line.startswith("#")]
    assert patterns[0] == "*", "everything is excluded first"
    kept = {line.removeprefix("!") for line in patterns if line.startswith("!")}
    assert kept == allowed
