"""With default parameters the verdict is the seed rule's, byte for byte as before the
explanations and the opt-in checks: the findings, the issue step and the exit code of every
trial in ``seed_verdicts`` equal those the earlier code wrote (``seed_verdicts.json``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.container.seed_verdicts import RECIPES, verdict

PINNED = json.loads((Path(__file__).with_name("seed_verdicts.json")).read_text())


def test_the_catalogue_and_the_pinned_verdicts_agree() -> None:
    assert set(PINNED) == set(RECIPES)
    assert {v["exit_code"] for v in PINNED.values()} == {0, 1}, "both verdicts are pinned"


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_default_parameters_give_the_pinned_verdict(name: str, tmp_path: Path) -> None:
    found = verdict(name, tmp_path)
    assert json.dumps(found, sort_keys=True) == json.dumps(PINNED[name], sort_keys=True)
