"""The deployment's tests: the image, the entrypoint, the manifests, alerting rules and the
dashboard, each checked by the real tool where one runs here."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "podman: builds and runs the container image with podman (root, ~1 min cold)"
    )
