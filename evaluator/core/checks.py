"""The rule's checks: conditions on the cumulative per-class counts, as a list of ``Check``.

A check answers two questions. ``holds`` says, for every row of a (steps x classes) matrix of
cumulative counts, whether it holds there: the rule asks it once per chunk of steps, so it must
be a few vectorised numpy calls. ``describe`` says why, as a ``Finding``, for one step's counts:
asked only where ``holds`` said yes (the first time) or when a status is written, so it may take
its time. Both must agree: they use the same float divisions.

The seed rule's two checks are the defaults (``seed_checks``). Both thresholds are exclusive
("strictly above"), as in the seed's wording "exceeds". Classes with no labelled sample take
part in neither check: a class the data has not shown yet is not "infinitely rare", and its
misprediction fraction is undefined, not 0.

To add a check: a class with ``name``, ``holds`` and ``describe``, its parameters in
``RuleParameters``, and a line in ``seed_checks`` (or an opt-in factory); every output (status,
metrics, logs) iterates the configured checks by name.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from evaluator.core.params import RuleParameters

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

IMBALANCE = "imbalance"
MISPREDICTION = "misprediction"


@dataclass(frozen=True)
class Finding:
    """One check that held: where, by how much, against which threshold, for which classes."""

    check: str
    """The check's name."""
    step: int
    value: float
    """The figure compared with the threshold (imbalance: largest/smallest class count;
    misprediction: the worst misprediction fraction)."""
    threshold: float
    classes: tuple[int, ...]
    """The classes the finding is about (imbalance: the largest and the smallest class;
    misprediction: every class above the threshold, worst first)."""
    message: str


class Check(Protocol):
    """One condition on cumulative per-class counts (samples, mispredicted)."""

    @property
    def name(self) -> str:
        """The check's key in findings, the status and the metrics' ``check`` label."""
        ...

    def holds(self, samples: IntArray, mispredicted: IntArray) -> BoolArray:
        """Per row of (steps x classes) cumulative counts, whether the check holds there."""
        ...

    def describe(self, samples: IntArray, mispredicted: IntArray, step: int) -> Finding | None:
        """The finding for one step's per-class counts, None when the check does not hold."""
        ...


@dataclass(frozen=True)
class ImbalanceCheck:
    """Largest class count over the smallest (classes seen) strictly above ``threshold``."""

    threshold: float
    name: str = IMBALANCE

    def holds(self, samples: IntArray, mispredicted: IntArray) -> BoolArray:
        seen = samples > 0
        any_seen = seen.any(axis=1)
        largest = np.where(seen, samples, 0).max(axis=1).astype(np.float64)
        smallest = np.where(seen, samples, np.iinfo(np.int64).max).min(axis=1).astype(np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = largest / np.where(any_seen, smallest, 1.0)
        return np.asarray(any_seen & (ratio > self.threshold), dtype=bool)

    def describe(self, samples: IntArray, mispredicted: IntArray, step: int) -> Finding | None:
        return check_imbalance(samples, self.threshold, step, check=self.name)


@dataclass(frozen=True)
class MispredictionCheck:
    """Some class's mispredicted / samples strictly above ``threshold``."""

    threshold: float
    name: str = MISPREDICTION

    def holds(self, samples: IntArray, mispredicted: IntArray) -> BoolArray:
        seen = samples > 0
        with np.errstate(divide="ignore", invalid="ignore"):
            fractions = np.divide(mispredicted, samples, out=np.zeros(samples.shape), where=seen)
        return np.asarray(((fractions > self.threshold) & seen).any(axis=1), dtype=bool)

    def describe(self, samples: IntArray, mispredicted: IntArray, step: int) -> Finding | None:
        return check_misprediction(samples, mispredicted, self.threshold, step, check=self.name)


def seed_checks(params: RuleParameters) -> tuple[Check, ...]:
    """The seed rule's checks, in the order its findings are listed."""
    return (
        ImbalanceCheck(params.threshold_imbalance),
        MispredictionCheck(params.threshold_misprediction),
    )


def holds_now(
    checks: Sequence[Check], samples: IntArray, mispredicted: IntArray
) -> dict[str, bool]:
    """Each check's verdict on one set of per-class counts."""
    if not samples.size:  # no class seen yet: one class of no samples, as a chunk has
        samples, mispredicted = np.zeros(1, np.int64), np.zeros(1, np.int64)
    rows, wrong = samples.reshape(1, -1), mispredicted.reshape(1, -1)
    return {check.name: bool(check.holds(rows, wrong)[0]) for check in checks}


def describe_current(
    checks: Sequence[Check],
    holds: Mapping[str, bool],
    samples: IntArray,
    mispredicted: IntArray,
    step: int,
) -> dict[str, Finding | None]:
    """Each check's finding where ``holds`` says it holds, None where it does not; empty when
    ``holds`` is (before ``samples`` labels were counted)."""
    if not holds:
        return {}
    return {
        check.name: check.describe(samples, mispredicted, step) if holds.get(check.name) else None
        for check in checks
    }


def imbalance_ratio(samples: IntArray) -> tuple[float, int, int] | None:
    """(largest / smallest count over classes seen, largest class, smallest class), or None.

    Ties go to the lowest class index, so the result does not depend on evaluation order.
    """
    seen = np.flatnonzero(samples)
    if seen.size == 0:
        return None
    counts = samples[seen]
    largest = int(seen[np.argmax(counts)])
    smallest = int(seen[np.argmin(counts)])
    return float(samples[largest]) / float(samples[smallest]), largest, smallest


def misprediction_fractions(samples: IntArray, mispredicted: IntArray) -> FloatArray:
    """mispredicted / samples per class; NaN for classes with no sample."""
    fractions = np.full(samples.shape, np.nan)
    np.divide(mispredicted, samples, out=fractions, where=samples > 0)
    return fractions


def check_imbalance(
    samples: IntArray, threshold: float, step: int, *, check: str = IMBALANCE
) -> Finding | None:
    """A finding when largest/smallest class count is strictly above ``threshold``."""
    result = imbalance_ratio(samples)
    if result is None or not result[0] > threshold:
        return None
    ratio, largest, smallest = result
    return Finding(
        check=check,
        step=step,
        value=ratio,
        threshold=threshold,
        classes=(largest, smallest),
        message=(
            f"largest/smallest class count {samples[largest]}/{samples[smallest]} = {ratio:.4g} "
            f"is above threshold_imbalance {threshold:g} (largest class {largest}, smallest "
            f"class {smallest})"
        ),
    )


def check_misprediction(
    samples: IntArray,
    mispredicted: IntArray,
    threshold: float,
    step: int,
    *,
    check: str = MISPREDICTION,
) -> Finding | None:
    """A finding when some class's misprediction fraction is strictly above ``threshold``."""
    fractions = misprediction_fractions(samples, mispredicted)
    with np.errstate(invalid="ignore"):
        above = np.flatnonzero(fractions > threshold)
    if above.size == 0:
        return None
    order = above[np.lexsort((above, -fractions[above]))]
    worst = int(order[0])
    shown = ", ".join(
        f"class {c}: {mispredicted[c]}/{samples[c]} = {fractions[c]:.3f}" for c in order[:5]
    )
    more = f" and {order.size - 5} more" if order.size > 5 else ""
    return Finding(
        check=check,
        step=step,
        value=float(fractions[worst]),
        threshold=threshold,
        classes=tuple(int(c) for c in order),
        message=(
            f"misprediction fraction above threshold_misprediction {threshold:g} for "
            f"{order.size} class{'es' if order.size != 1 else ''} ({shown}{more})"
        ),
    )
