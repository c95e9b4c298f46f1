"""The seed rule's two checks, on cumulative per-class counts.

Both thresholds are exclusive ("strictly above"), as in the seed's wording "exceeds". Classes
with no labelled sample take part in neither check: a class the data has not shown yet is not
"infinitely rare", and its misprediction fraction is undefined, not 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from evaluator.core.checks.base import (
    BoolArray,
    Finding,
    IntArray,
    Tallies,
    class_of,
    misprediction_fractions,
    plural,
)

IMBALANCE = "imbalance"
MISPREDICTION = "misprediction"


@dataclass(frozen=True)
class ImbalanceCheck:
    """Largest class count over the smallest (classes seen) strictly above ``threshold``."""

    threshold: float
    name: str = IMBALANCE

    def holds(self, tallies: Tallies) -> BoolArray:
        samples = tallies.samples
        seen = samples > 0
        any_seen = seen.any(axis=1)
        largest = np.where(seen, samples, 0).max(axis=1).astype(np.float64)
        smallest = np.where(seen, samples, np.iinfo(np.int64).max).min(axis=1).astype(np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = largest / np.where(any_seen, smallest, 1.0)
        return np.asarray(any_seen & (ratio > self.threshold), dtype=bool)

    def describe(self, tallies: Tallies, step: int) -> Finding | None:
        return check_imbalance(
            tallies.samples, self.threshold, step, check=self.name, classes=tallies.classes
        )


@dataclass(frozen=True)
class MispredictionCheck:
    """Some class's mispredicted / samples strictly above ``threshold``."""

    threshold: float
    name: str = MISPREDICTION

    def holds(self, tallies: Tallies) -> BoolArray:
        samples, mispredicted = tallies.samples, tallies.mispredicted
        seen = samples > 0
        with np.errstate(divide="ignore", invalid="ignore"):
            fractions = np.divide(mispredicted, samples, out=np.zeros(samples.shape), where=seen)
        return np.asarray(((fractions > self.threshold) & seen).any(axis=1), dtype=bool)

    def describe(self, tallies: Tallies, step: int) -> Finding | None:
        return check_misprediction(
            tallies.samples,
            tallies.mispredicted,
            self.threshold,
            step,
            check=self.name,
            classes=tallies.classes,
        )


def imbalance_ratio(samples: IntArray) -> tuple[float, int, int] | None:
    """(largest / smallest count over classes seen, largest class, smallest class), or None.

    Ties go to the lowest class index, so the result does not depend on evaluation order. The
    classes are columns of ``samples``: sorted compact columns tie-break alike.
    """
    seen = np.flatnonzero(samples)
    if seen.size == 0:
        return None
    counts = samples[seen]
    largest = int(seen[np.argmax(counts)])
    smallest = int(seen[np.argmin(counts)])
    return float(samples[largest]) / float(samples[smallest]), largest, smallest


def check_imbalance(
    samples: IntArray,
    threshold: float,
    step: int,
    *,
    check: str = IMBALANCE,
    classes: IntArray | None = None,
) -> Finding | None:
    """A finding when largest/smallest class count is strictly above ``threshold``
    (``classes``: the class id of each column, as ``Tallies.classes``)."""
    result = imbalance_ratio(samples)
    if result is None or not result[0] > threshold:
        return None
    ratio, largest, smallest = result
    big, small = class_of(classes, largest), class_of(classes, smallest)
    return Finding(
        check=check,
        step=step,
        value=ratio,
        threshold=threshold,
        classes=(big, small),
        message=(
            f"largest/smallest class count {samples[largest]}/{samples[smallest]} = {ratio:.4g} "
            f"is above threshold_imbalance {threshold:g} (largest class {big}, smallest "
            f"class {small})"
        ),
    )


def check_misprediction(
    samples: IntArray,
    mispredicted: IntArray,
    threshold: float,
    step: int,
    *,
    check: str = MISPREDICTION,
    over: str = "",
    classes: IntArray | None = None,
) -> Finding | None:
    """A finding when some class's misprediction fraction is strictly above ``threshold``;
    ``over`` says over what, when not the whole evaluation (" over the last 50 steps")."""
    fractions = misprediction_fractions(samples, mispredicted)
    with np.errstate(invalid="ignore"):
        above = np.flatnonzero(fractions > threshold)
    if above.size == 0:
        return None
    order = above[np.lexsort((above, -fractions[above]))]
    worst = int(order[0])
    shown = ", ".join(
        f"class {class_of(classes, c)}: {mispredicted[c]}/{samples[c]} = {fractions[c]:.3f}"
        for c in order[:5]
    )
    more = f" and {order.size - 5} more" if order.size > 5 else ""
    return Finding(
        check=check,
        step=step,
        value=float(fractions[worst]),
        threshold=threshold,
        classes=tuple(class_of(classes, c) for c in order),
        message=(
            f"misprediction fraction{over} above threshold_misprediction {threshold:g} for "
            f"{plural(order.size, 'class')} ({shown}{more})"
        ),
    )
