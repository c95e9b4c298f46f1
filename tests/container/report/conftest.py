"""The catalogue's evaluations, run once per session for every report test."""

from __future__ import annotations

import pytest

from tests.container.report.evaluations import CATALOGUE, Evaluation


@pytest.fixture(scope="session")
def evaluations(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Evaluation]:
    root = tmp_path_factory.mktemp("report-evaluations")
    return {name: make(root / name) for name, make in CATALOGUE.items()}
