"""Wilson bounds against an independent computation: the roots of Wilson's quadratic."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from evaluator.core.bounds import wilson_bounds, z_score


def quadratic_roots(k: int, n: int, z: float) -> tuple[float, float]:
    """The p where (k/n - p)^2 = z^2 p (1 - p) / n: Wilson's definition, solved by numpy."""
    phat = k / n
    a = 1 + z * z / n
    b = -(2 * phat + z * z / n)
    c = phat * phat
    low, high = sorted(float(r.real) for r in np.roots([a, b, c]))
    return max(low, 0.0), min(high, 1.0)


@given(st.integers(1, 5000).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))))
def test_bounds_are_the_roots_of_wilsons_quadratic(case: tuple[int, int]) -> None:
    k, n = case
    z = z_score(0.95)
    lower, upper = wilson_bounds(k, n, z)
    expected = quadratic_roots(k, n, z)
    assert float(lower) == pytest.approx(expected[0], abs=1e-9)
    assert float(upper) == pytest.approx(expected[1], abs=1e-9)
    assert float(lower) <= k / n <= float(upper)


def test_z_score_is_the_one_sided_normal_quantile() -> None:
    assert z_score(0.95) == pytest.approx(1.6448536, rel=1e-6)
    assert z_score(0.5) == pytest.approx(0.0, abs=1e-12)


def test_no_trials_give_no_bound() -> None:
    lower, upper = wilson_bounds(np.array([0, 1]), np.array([0, 1]), 1.645)
    assert math.isnan(lower[0])
    assert math.isnan(upper[0])
    assert 0 < lower[1] < 1 == upper[1]


def test_one_of_one_is_not_evidence_but_four_hundred_of_five_hundred_is() -> None:
    z = z_score(0.95)
    one, _ = wilson_bounds(1, 1, z)
    many, _ = wilson_bounds(400, 500, z)
    assert float(one) < 0.7 < float(many)
