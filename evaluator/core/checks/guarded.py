"""The seed's checks with a stated error rate: they fire only when the counts make it likely.

With ``confidence`` set, a fraction is replaced by a one-sided Wilson bound on it
(``bounds``): a class fails the misprediction check only when the lower bound of its
mispredicted fraction is above ``threshold_misprediction``, so 1 of 1 mispredicted does not
fire while 400 of 500 does; the imbalance ratio is taken between the lower bound of the
largest class's share of the samples and the upper bound of the smallest's. This replaces the
seed's advice to raise ``samples`` with the number of classes by a chance of a false alarm.
The checks keep the seed's names, so alerts and dashboards need no change.
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
    Tallies,
    class_of,
    misprediction_fractions,
    plural,
)
from evaluator.core.checks.seed import IMBALANCE, MISPREDICTION, imbalance_ratio


def _share_bounds(samples: IntArray, z: float) -> tuple[FloatArray, FloatArray]:
    """Per row: the lower bound of the largest class's share and the upper bound of the
    smallest's (classes seen); NaN rows where no class was seen."""
    seen = samples > 0
    total = samples.sum(axis=-1)
    largest = np.where(seen, samples, 0).max(axis=-1)
    smallest = np.where(seen, samples, np.iinfo(np.int64).max).min(axis=-1)
    smallest = np.where(seen.any(axis=-1), smallest, 0)
    lower, _ = wilson_bounds(largest, total, z)
    _, upper = wilson_bounds(smallest, total, z)
    return lower, upper


def guarded_ratio(samples: IntArray, z: float) -> FloatArray:
    """Lower bound of the largest share over the upper bound of the smallest, per row."""
    lower, upper = _share_bounds(samples, z)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray(lower / upper, dtype=np.float64)


@dataclass(frozen=True)
class GuardedImbalanceCheck:
    """The imbalance ratio's lower bound at ``confidence`` strictly above ``threshold``."""

    threshold: float
    confidence: float
    name: str = IMBALANCE

    def holds(self, tallies: Tallies) -> BoolArray:
        ratio = guarded_ratio(tallies.samples, z_score(self.confidence))
        with np.errstate(invalid="ignore"):
            return np.asarray(np.nan_to_num(ratio, nan=0.0) > self.threshold, dtype=bool)

    def describe(self, tallies: Tallies, step: int) -> Finding | None:
        samples = tallies.samples
        plain = imbalance_ratio(samples)
        if plain is None:
            return None
        ratio, largest, smallest = plain
        z = z_score(self.confidence)
        lower, upper = _share_bounds(samples, z)
        bound = float(lower / upper)
        if not bound > self.threshold:
            return None
        big, small = class_of(tallies.classes, largest), class_of(tallies.classes, smallest)
        return Finding(
            check=self.name,
            step=step,
            value=bound,
            threshold=self.threshold,
            classes=(big, small),
            message=(
                f"largest/smallest class count {samples[largest]}/{samples[smallest]} = "
                f"{ratio:.4g}, and at confidence {self.confidence:g} at least {bound:.4g} "
                f"(shares of {int(samples.sum())} labels: largest >= {float(lower):.4g}, "
                f"smallest <= {float(upper):.4g}), which is above threshold_imbalance "
                f"{self.threshold:g} (largest class {big}, smallest class {small})"
            ),
        )


@dataclass(frozen=True)
class GuardedMispredictionCheck:
    """Some class's lower bound of mispredicted / samples strictly above ``threshold``."""

    threshold: float
    confidence: float
    name: str = MISPREDICTION

    def holds(self, tallies: Tallies) -> BoolArray:
        lower, _ = wilson_bounds(tallies.mispredicted, tallies.samples, z_score(self.confidence))
        with np.errstate(invalid="ignore"):
            return np.asarray((np.nan_to_num(lower, nan=0.0) > self.threshold).any(axis=-1))

    def describe(self, tallies: Tallies, step: int) -> Finding | None:
        return describe_guarded_misprediction(
            tallies.samples,
            tallies.mispredicted,
            self.threshold,
            self.confidence,
            step,
            check=self.name,
            over="",
            classes=tallies.classes,
        )


def describe_guarded_misprediction(
    samples: IntArray,
    mispredicted: IntArray,
    threshold: float,
    confidence: float,
    step: int,
    *,
    check: str,
    over: str,
    classes: IntArray | None = None,
) -> Finding | None:
    """The finding of classes whose lower bound is above ``threshold``, worst bound first
    (``classes``: the class id of each column, as ``Tallies.classes``)."""
    lower, _ = wilson_bounds(mispredicted, samples, z_score(confidence))
    lower = np.nan_to_num(lower, nan=0.0)
    above = np.flatnonzero(lower > threshold)
    if above.size == 0:
        return None
    fractions = misprediction_fractions(samples, mispredicted)
    order = above[np.lexsort((above, -lower[above]))]
    shown = ", ".join(
        f"class {class_of(classes, c)}: {mispredicted[c]}/{samples[c]} = {fractions[c]:.3f}, "
        f"at least {lower[c]:.3f}"
        for c in order[:5]
    )
    more = f" and {order.size - 5} more" if order.size > 5 else ""
    return Finding(
        check=check,
        step=step,
        value=float(lower[order[0]]),
        threshold=threshold,
        classes=tuple(class_of(classes, c) for c in order),
        message=(
            f"misprediction fraction{over} above threshold_misprediction {threshold:g} at "
            f"confidence {confidence:g} for {plural(order.size, 'class')} ({shown}{more})"
        ),
    )
