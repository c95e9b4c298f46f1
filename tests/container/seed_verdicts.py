"""A catalogue of trials and flags whose default-parameter verdicts are pinned (findings,
issue_step, exit code) in ``seed_verdicts.json``, written by the code before the explanations
and opt-in checks existed: ``python -m tests.container.seed_verdicts OUT.json`` at that commit.
"""

from __future__ import annotations

import json
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from container.cli import main
from tests.container.trials import scores_batch, write_trial

Recipe = tuple[Callable[[Path], object], tuple[str, ...]]

RECIPES: dict[str, Recipe] = {
    "balanced_good_model": (
        lambda p: write_trial(p, steps=12, make_batch=scores_batch([1, 1, 1], batch=64)),
        ("--argmax", "true"),
    ),
    "imbalanced_20_to_1": (
        lambda p: write_trial(p, steps=30, make_batch=scores_batch([20, 5, 1], batch=64)),
        ("--argmax", "true"),
    ),
    "weak_model_misprediction": (
        lambda p: write_trial(
            p, steps=20, make_batch=scores_batch([3, 3, 2, 1], batch=64, skill=0.2)
        ),
        ("--argmax", "true"),
    ),
    "two_workers_two_modes": (
        lambda p: write_trial(
            p,
            steps=24,
            workers=2,
            make_batch=scores_batch([12, 4, 1], batch=32, skill=1.0),
            modes=lambda s: "EVAL" if s % 3 == 2 else "TRAIN",
        ),
        ("--argmax", "true"),
    ),
    "low_samples_gate": (
        lambda p: write_trial(p, steps=8, make_batch=scores_batch([30, 1], batch=16)),
        ("--argmax", "true", "--samples", "10"),
    ),
    "stop_on_first_issue": (
        lambda p: write_trial(p, steps=40, make_batch=scores_batch([15, 2, 1], batch=32)),
        ("--argmax", "true", "--stop-on-first-issue"),
    ),
    "many_classes": (
        lambda p: write_trial(
            p, steps=15, make_batch=scores_batch([1 + (c % 7) for c in range(40)], batch=128)
        ),
        ("--argmax", "true", "--samples", "1000"),
    ),
    "strict_thresholds": (
        lambda p: write_trial(p, steps=16, make_batch=scores_batch([4, 3, 1], batch=64, skill=1.0)),
        ("--argmax", "true", "--threshold-imbalance", "3", "--threshold-misprediction", "0.3"),
    ),
}


def verdict(name: str, root: Path) -> dict[str, Any]:
    make, flags = RECIPES[name]
    trial = root / name / "trial"
    make(trial)
    status_file = root / name / "status.json"
    code = main(
        [
            "--trial",
            str(trial),
            "--status-file",
            str(status_file),
            "--metrics-enabled",
            "false",
            "--log-level",
            "ERROR",
            *flags,
        ]
    )
    document = json.loads(status_file.read_text())
    return {
        "exit_code": code,
        "issue_step": document["issue_step"],
        "findings": document["findings"],
    }


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        found = {name: verdict(name, Path(tmp)) for name in RECIPES}
    Path(sys.argv[1]).write_text(json.dumps(found, indent=2, sort_keys=True) + "\n")
