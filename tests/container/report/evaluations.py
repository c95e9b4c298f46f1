"""A named catalogue of evaluations whose reports the tests look at: each writes a trial with
smdebug's writer, evaluates it end to end (``container.app.run``) and returns what was written.

The catalogue spans the class of pages a user meets: the demo (skewed, two workers), a balanced
trial that passes, 1,000 classes, a binary model, an evaluation that ended in ``Error``, and one
with every opt-in check and an action.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from container.app import Outcome, run
from container.config import Settings
from evaluator.core import RuleParameters
from tests.container.trials import TrialTruth, scores_batch, write_trial


@dataclass(frozen=True)
class Evaluation:
    name: str
    outcome: Outcome
    truth: TrialTruth
    settings: Settings

    @property
    def document(self) -> dict[str, Any]:
        return self.outcome.document

    @property
    def report(self) -> Path:
        return Path(self.settings.outputs.report_path)


def _settings(trial: Path, out: Path, rule: RuleParameters, **changes: Any) -> Settings:
    base = Settings.of(
        base_trial=str(trial),
        status_file=str(out / "status.json"),
        rule=rule,
        metrics_enabled=False,
        poll_interval=0.02,
        idle_timeout=30,
    )
    return base.changed(**changes)


def _evaluate(
    name: str, out: Path, truth: TrialTruth, rule: RuleParameters, **changes: Any
) -> Evaluation:
    settings = _settings(truth.path, out, rule, **changes)
    return Evaluation(name, run(settings), truth, settings)


def demo(out: Path) -> Evaluation:
    """What ``make demo`` evaluates: five classes, the largest 20x the smallest, two workers."""
    probs = [20 ** (-i / 4) for i in range(5)]
    truth = write_trial(
        out / "trial", steps=40, workers=2, make_batch=scores_batch(probs, 64, skill=1.5)
    )
    return _evaluate("demo", out, truth, RuleParameters(argmax=True))


def balanced(out: Path) -> Evaluation:
    truth = write_trial(out / "trial", steps=30, make_batch=scores_batch([1, 1, 1, 1], 64, 3.0))
    return _evaluate(
        "balanced",
        out,
        truth,
        RuleParameters(argmax=True),
        class_names=("cat", "dog", "bird", "fish"),
    )


def thousand_classes(out: Path) -> Evaluation:
    """1,000 classes with a long tail, predictions as class indices."""

    def batch(rng: np.random.Generator, _step: int) -> tuple[np.ndarray, np.ndarray]:
        labels = np.minimum(rng.zipf(1.3, 800) - 1, 999).astype(np.int64)
        labels[:50] = rng.integers(0, 1000, 50)  # every class turns up now and then
        wrong = rng.random(labels.size) < 0.2 + 0.6 * (labels / 999)
        predicted = np.where(wrong, rng.integers(0, 1000, labels.size), labels)
        return labels, predicted.astype(np.int64)

    truth = write_trial(out / "trial", steps=25, make_batch=batch)
    return _evaluate("thousand_classes", out, truth, RuleParameters(max_classes=1000))


def binary(out: Path) -> Evaluation:
    """A sigmoid model: 0/1 labels, one probability per sample."""

    def batch(rng: np.random.Generator, _step: int) -> tuple[np.ndarray, np.ndarray]:
        labels = (rng.random(128) < 0.06).astype(np.int64)
        scores = np.clip(0.15 + 0.5 * labels + rng.normal(0, 0.2, 128), 0, 1)
        return labels, scores.astype(np.float32)

    truth = write_trial(out / "trial", steps=30, make_batch=batch)
    return _evaluate("binary", out, truth, RuleParameters())


def error(out: Path) -> Evaluation:
    """A labels regex that matches no tensor: the evaluation ends in Error with the names."""
    truth = write_trial(out / "trial", steps=5, make_batch=scores_batch([1, 1], 16))
    return _evaluate("error", out, truth, RuleParameters(argmax=True, labels_regex="targets$"))


def every_opt_in_check(out: Path) -> Evaluation:
    """Wilson bounds, a recent window, the minority check and an action (dry run)."""
    probs = [30, 10, 3, 1]
    truth = write_trial(out / "trial", steps=60, make_batch=scores_batch(probs, 64, skill=0.8))
    rule = RuleParameters(
        argmax=True, confidence=0.95, window_steps=10, minority_not_improving=True
    )
    return _evaluate(
        "every_opt_in_check",
        out,
        truth,
        rule,
        actions=({"name": "stop_file", "path": str(out / "STOP")},),
        actions_dry_run=True,
    )


CATALOGUE: dict[str, Callable[[Path], Evaluation]] = {
    "demo": demo,
    "balanced": balanced,
    "thousand_classes": thousand_classes,
    "binary": binary,
    "error": error,
    "every_opt_in_check": every_opt_in_check,
}
