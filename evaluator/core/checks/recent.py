"""Checks over the last steps: a late regression, and the minority classes left behind.

The cumulative counts of a long run forget nothing, so a class that was learnt and then
unlearnt late shows only when it is too late, and a fixed one keeps failing. These checks look
at the recent window (``window_steps`` evaluated steps, every mode, ``Recent``) instead, kept
exactly by ``window.StepWindow``. Both are opt-in.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from evaluator.core.bounds import wilson_bounds, z_score
from evaluator.core.checks.base import (
    BoolArray,
    Finding,
    FloatArray,
    IntArray,
    Recent,
    Tallies,
    class_of,
    plural,
)
from evaluator.core.checks.guarded import describe_guarded_misprediction
from evaluator.core.checks.seed import check_misprediction

RECENT_MISPREDICTION = "recent_misprediction"
MINORITY_NOT_IMPROVING = "minority_not_improving"


def _fractions(mispredicted: IntArray, samples: IntArray) -> FloatArray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.divide(mispredicted, samples, out=np.zeros(samples.shape), where=samples > 0)


@dataclass(frozen=True)
class RecentMispredictionCheck:
    """Some class's mispredicted fraction over the last ``window_steps`` steps strictly above
    ``threshold`` (its Wilson lower bound, with ``confidence``)."""

    threshold: float
    window_steps: int
    confidence: float | None = None
    name: str = RECENT_MISPREDICTION
    uses_window: bool = True

    def holds(self, tallies: Tallies) -> BoolArray:
        recent = tallies.recent
        if recent is None:
            return np.zeros(tallies.samples.shape[0], dtype=bool)
        if self.confidence is None:
            figure = _fractions(recent.mispredicted, recent.samples)
        else:
            lower, _ = wilson_bounds(recent.mispredicted, recent.samples, z_score(self.confidence))
            figure = np.nan_to_num(lower, nan=0.0)
        return np.asarray(((figure > self.threshold) & (recent.samples > 0)).any(axis=1))

    def describe(self, tallies: Tallies, step: int) -> Finding | None:
        recent = tallies.recent
        if recent is None:
            return None
        over = f" over the last {plural(int(recent.steps), 'step', 's')}"
        if self.confidence is not None:
            return describe_guarded_misprediction(
                recent.samples,
                recent.mispredicted,
                self.threshold,
                self.confidence,
                step,
                check=self.name,
                over=over,
                classes=tallies.classes,
            )
        return check_misprediction(
            recent.samples,
            recent.mispredicted,
            self.threshold,
            step,
            check=self.name,
            over=over,
            classes=tallies.classes,
        )


@dataclass(frozen=True)
class _Learning:
    """Per row (or one step): which minority classes are stuck, the recent and previous
    fractions per class, and the majority classes' pooled fractions."""

    stuck: BoolArray
    now: FloatArray
    before: FloatArray
    majority_now: FloatArray
    majority_before: FloatArray


def _learning(tallies: Tallies, recent: Recent, window_steps: int) -> _Learning:
    """Minority classes whose recent fraction has not fallen below the previous window's
    while the majority classes' pooled fraction has; 2-D or 1-D tallies alike."""
    samples = tallies.samples
    seen = samples > 0
    classes_seen = np.maximum(seen.sum(axis=-1, keepdims=True), 1)
    mean = samples.sum(axis=-1, keepdims=True) / classes_seen
    minority = seen & (samples < mean)
    majority = seen & ~minority
    full = (recent.previous_steps >= window_steps) & (recent.steps >= window_steps)

    def pooled(mispredicted: IntArray, counts: IntArray) -> FloatArray:
        wrong = np.where(majority, mispredicted, 0).sum(axis=-1)
        total = np.where(majority, counts, 0).sum(axis=-1)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(total > 0, wrong / np.maximum(total, 1), np.nan)

    majority_now = pooled(recent.mispredicted, recent.samples)
    majority_before = pooled(recent.previous_mispredicted, recent.previous_samples)
    with np.errstate(invalid="ignore"):
        majority_improved = full & (majority_now < majority_before)
    now = _fractions(recent.mispredicted, recent.samples)
    before = _fractions(recent.previous_mispredicted, recent.previous_samples)
    stuck = (
        minority
        & (recent.samples > 0)
        & (recent.previous_samples > 0)
        & (now > 0)
        & (now >= before)
    )
    return _Learning(
        np.asarray(stuck & np.expand_dims(majority_improved, -1), dtype=bool),
        now,
        before,
        majority_now,
        majority_before,
    )


@dataclass(frozen=True)
class MinorityNotImprovingCheck:
    """A minority class (fewer samples than the mean class) whose mispredicted fraction over
    the last ``window_steps`` steps has not fallen below the one over the ``window_steps``
    before, while the majority classes' pooled fraction has: the imbalance hurting learning,
    as the seed rule's text describes. Needs 2 x ``window_steps`` evaluated steps."""

    window_steps: int
    name: str = MINORITY_NOT_IMPROVING
    uses_window: bool = True

    def holds(self, tallies: Tallies) -> BoolArray:
        recent = tallies.recent
        if recent is None:
            return np.zeros(tallies.samples.shape[0], dtype=bool)
        return np.asarray(_learning(tallies, recent, self.window_steps).stuck.any(axis=1))

    def describe(self, tallies: Tallies, step: int) -> Finding | None:
        recent = tallies.recent
        if recent is None:
            return None
        learning = _learning(tallies, recent, self.window_steps)
        stuck = np.flatnonzero(learning.stuck)
        if stuck.size == 0:
            return None
        now, before = learning.now, learning.before
        order = stuck[np.lexsort((stuck, -now[stuck]))]
        major_now, major_before = float(learning.majority_now), float(learning.majority_before)
        ids = tallies.classes
        shown = ", ".join(
            f"class {class_of(ids, c)}: {before[c]:.3f} -> {now[c]:.3f}" for c in order[:5]
        )
        more = f" and {order.size - 5} more" if order.size > 5 else ""
        worst = int(order[0])
        return Finding(
            check=self.name,
            step=step,
            value=float(now[worst]),
            threshold=float(before[worst]),
            classes=tuple(class_of(ids, c) for c in order),
            message=(
                f"mispredicted fraction of {plural(order.size, 'minority class', 'es')} has "
                f"not fallen over the last {self.window_steps} steps ({shown}{more}) while "
                f"the majority classes' fell from {major_before:.3f} to {major_now:.3f}"
            ),
        )
