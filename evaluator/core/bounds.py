"""Wilson score bounds on a binomial fraction: how sure a count of k in n is above a threshold.

A fraction of 1 mispredicted in 1 is as high as 400 in 500, but only the second says much about
the class. Wilson's interval (rather than the normal approximation) stays within [0, 1] and is
usable at n = 1 and at k = 0 or k = n, which are exactly the cases a rare class presents. The
bounds are one-sided at ``confidence``: "the true fraction is above the lower bound" is wrong
with probability at most 1 - confidence (approximately; Wilson's coverage is close to nominal).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


def z_score(confidence: float) -> float:
    """The standard normal quantile of a one-sided bound at ``confidence`` (0.95 -> 1.645)."""
    # Lazy: statistics (with fractions, decimal and random) takes ~4 ms to import, and only
    # the guarded and windowed checks call this, once they evaluate steps.
    from statistics import NormalDist  # noqa: PLC0415

    return NormalDist().inv_cdf(confidence)


def wilson_bounds(
    successes: npt.ArrayLike, trials: npt.ArrayLike, z: float
) -> tuple[FloatArray, FloatArray]:
    """(lower, upper) Wilson score bounds of successes / trials, elementwise; NaN where
    trials == 0 (no evidence either way)."""
    k = np.asarray(successes, dtype=np.float64)
    n = np.asarray(trials, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = k / n
        z2 = z * z
        centre = p + z2 / (2 * n)
        spread = z * np.sqrt(np.maximum(p * (1 - p), 0.0) / n + z2 / (4 * n * n))
        scale = 1 + z2 / n
        lower = (centre - spread) / scale
        upper = (centre + spread) / scale
    # Exact at the ends, where rounding would leave 1 - 2e-16 (all k of n) or 1e-17 (none).
    lower = np.where(k <= 0, 0.0, np.clip(lower, 0.0, 1.0))
    upper = np.where(k >= n, 1.0, np.clip(upper, 0.0, 1.0))
    empty = n <= 0
    lower = np.where(empty, np.nan, lower)
    upper = np.where(empty, np.nan, upper)
    return lower, upper
