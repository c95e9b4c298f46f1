"""The rule's two checks, as pure functions of the cumulative per-class counts.

Both thresholds are exclusive ("strictly above"), as in the seed's wording "exceeds". Classes
with no labelled sample take part in neither check: a class the data has not shown yet is not
"infinitely rare", and its misprediction fraction is undefined, not 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]

IMBALANCE = "imbalance"
MISPREDICTION = "misprediction"


@dataclass(frozen=True)
class Finding:
    """One check that held: where, by how much, against which threshold, for which classes."""

    check: str
    step: int
    value: float
    """The figure compared: largest/smallest class count, or the worst misprediction fraction."""
    threshold: float
    classes: tuple[int, ...]
    """imbalance: (largest class, smallest class); misprediction: every class above the
    threshold, worst first."""
    message: str


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


def checks_per_step(
    samples: IntArray,
    mispredicted: IntArray,
    threshold_imbalance: float,
    threshold_misprediction: float,
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    """Both checks' verdicts for each row of (steps x classes) cumulative counts.

    The same float divisions as ``check_imbalance`` and ``check_misprediction``, so a verdict
    here and a finding described there always agree.
    """
    seen = samples > 0
    any_seen = seen.any(axis=1)
    largest = np.where(seen, samples, 0).max(axis=1).astype(np.float64)
    smallest = np.where(seen, samples, np.iinfo(np.int64).max).min(axis=1).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        imbalance = any_seen & (largest / np.where(any_seen, smallest, 1.0) > threshold_imbalance)
        fractions = np.divide(mispredicted, samples, out=np.zeros(samples.shape), where=seen)
    misprediction = ((fractions > threshold_misprediction) & seen).any(axis=1)
    return np.asarray(imbalance, dtype=bool), np.asarray(misprediction, dtype=bool)


def check_imbalance(samples: IntArray, threshold: float, step: int) -> Finding | None:
    """A finding when largest/smallest class count is strictly above ``threshold``."""
    result = imbalance_ratio(samples)
    if result is None or not result[0] > threshold:
        return None
    ratio, largest, smallest = result
    return Finding(
        check=IMBALANCE,
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
    samples: IntArray, mispredicted: IntArray, threshold: float, step: int
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
        check=MISPREDICTION,
        step=step,
        value=float(fractions[worst]),
        threshold=threshold,
        classes=tuple(int(c) for c in order),
        message=(
            f"misprediction fraction above threshold_misprediction {threshold:g} for "
            f"{order.size} class{'es' if order.size != 1 else ''} ({shown}{more})"
        ),
    )
