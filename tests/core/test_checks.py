"""The two checks against a plain-numpy reference: strict thresholds, absent classes left out."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from container.config import parse_rule_parameters
from evaluator.core.checks import (
    IMBALANCE,
    MISPREDICTION,
    check_imbalance,
    check_misprediction,
    imbalance_ratio,
    misprediction_fractions,
)
from tests.core.reference import imbalance_holds, misprediction_holds

CHECK_SETTINGS = settings(max_examples=150, deadline=None)


def _ints(values: list[int]) -> np.ndarray:
    return np.asarray(values, dtype=np.int64)


@st.composite
def class_counts(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    """(samples, mispredicted) per class, with absent classes (0 samples) mixed in."""
    size = draw(st.integers(0, 12))
    samples = draw(
        st.lists(st.one_of(st.just(0), st.integers(1, 40)), min_size=size, max_size=size)
    )
    mispredicted = [draw(st.integers(0, s)) for s in samples]
    return _ints(samples), _ints(mispredicted)


@st.composite
def imbalance_thresholds(draw: st.DrawFn, samples: np.ndarray) -> float:
    """Often exactly an achievable ratio (the boundary), otherwise any threshold >= 1."""
    seen = samples[samples > 0].tolist()
    if seen and draw(st.booleans()):
        return max(1.0, draw(st.sampled_from(seen)) / draw(st.sampled_from(seen)))
    return draw(st.floats(1.0, 50.0))


@st.composite
def misprediction_thresholds(draw: st.DrawFn, samples: np.ndarray, wrong: np.ndarray) -> float:
    """Often exactly some class's fraction (the boundary), otherwise any fraction in [0, 1]."""
    seen = np.flatnonzero(samples).tolist()
    if seen and draw(st.booleans()):
        c = draw(st.sampled_from(seen))
        return float(wrong[c]) / float(samples[c])
    return draw(st.floats(0.0, 1.0))


@CHECK_SETTINGS
@given(class_counts(), st.data())
def test_imbalance_check_agrees_with_numpy_reference(
    counts: tuple[np.ndarray, np.ndarray], data: st.DataObject
) -> None:
    samples, _ = counts
    threshold = data.draw(imbalance_thresholds(samples), label="threshold")
    finding = check_imbalance(samples, threshold, step=3)
    assert (finding is not None) == imbalance_holds(samples, threshold)
    if finding is None:
        return
    seen = samples > 0
    largest = int(np.flatnonzero(samples == samples[seen].max())[0])
    smallest = int(np.flatnonzero(samples == samples[seen].min())[0])
    assert finding.classes == (largest, smallest)
    assert finding.value == samples[largest] / samples[smallest]
    assert finding.value > threshold
    assert (finding.check, finding.step, finding.threshold) == (IMBALANCE, 3, threshold)


@CHECK_SETTINGS
@given(class_counts(), st.data())
def test_misprediction_check_agrees_with_numpy_reference(
    counts: tuple[np.ndarray, np.ndarray], data: st.DataObject
) -> None:
    samples, wrong = counts
    threshold = data.draw(misprediction_thresholds(samples, wrong), label="threshold")
    finding = check_misprediction(samples, wrong, threshold, step=4)
    assert (finding is not None) == misprediction_holds(samples, wrong, threshold)
    if finding is None:
        return
    seen = np.flatnonzero(samples)
    fraction = {int(c): wrong[c] / samples[c] for c in seen}
    above = [c for c, f in fraction.items() if f > threshold]
    assert finding.classes == tuple(sorted(above, key=lambda c: (-fraction[c], c)))
    assert finding.value == max(fraction[c] for c in above)
    assert (finding.check, finding.step, finding.threshold) == (MISPREDICTION, 4, threshold)


# -- strictness at the threshold, and absent classes -----------------------------------------


@pytest.mark.parametrize(
    ("samples", "threshold", "found"),
    [
        ([10, 1], 10.0, False),
        ([11, 1], 10.0, True),
        ([1, 10], 10.0, False),
        ([0, 10, 0, 0, 1, 0], 10.0, False),
        ([0, 11, 0, 0, 1, 0], 10.0, True),
        ([5, 2], 2.5, False),
        ([5], 1.0, False),
        ([7, 7], 1.0, False),
        ([7, 6], 1.0, True),
        ([], 1.0, False),
        ([0, 0, 0], 1.0, False),
    ],
)
def test_imbalance_is_strictly_above_threshold_over_seen_classes(
    samples: list[int], threshold: float, found: bool
) -> None:
    assert (check_imbalance(_ints(samples), threshold, step=0) is not None) is found
    assert imbalance_holds(samples, threshold) is found


@pytest.mark.parametrize(
    ("samples", "wrong", "threshold", "found"),
    [
        ([10], [7], 0.7, False),
        ([10], [8], 0.7, True),
        ([0, 10], [0, 7], 0.7, False),
        ([4, 0, 4], [0, 0, 0], 0.0, False),
        ([4, 0, 4], [0, 0, 1], 0.0, True),
        ([3], [3], 1.0, False),
        ([], [], 0.0, False),
    ],
)
def test_misprediction_is_strictly_above_threshold_over_seen_classes(
    samples: list[int], wrong: list[int], threshold: float, found: bool
) -> None:
    result = check_misprediction(_ints(samples), _ints(wrong), threshold, step=0)
    assert (result is not None) is found
    assert misprediction_holds(samples, wrong, threshold) is found


def test_fraction_equal_to_a_string_threshold_is_never_an_issue() -> None:
    for hundredths in range(101):
        text = f"{hundredths / 100}"
        threshold = parse_rule_parameters({"threshold_misprediction": text})
        limit = threshold.threshold_misprediction
        for scale in (1, 3, 7):
            samples = _ints([100 * scale])
            at = check_misprediction(samples, _ints([hundredths * scale]), limit, step=0)
            assert at is None, f"{hundredths * scale}/{100 * scale} is not above {text}"
            if hundredths < 100:
                above = check_misprediction(samples, _ints([hundredths * scale + 1]), limit, 0)
                assert above is not None


def test_ratio_equal_to_a_string_threshold_is_never_an_issue() -> None:
    for text, largest, smallest in [("10", 10, 1), ("2.5", 5, 2), ("1.5", 300, 200), ("1", 4, 4)]:
        threshold = parse_rule_parameters({"threshold_imbalance": text}).threshold_imbalance
        assert check_imbalance(_ints([largest, smallest]), threshold, step=0) is None
        assert check_imbalance(_ints([largest + 1, smallest]), threshold, step=0) is not None


# -- helpers and messages --------------------------------------------------------------------


def test_imbalance_ratio_ties_go_to_the_lowest_class() -> None:
    assert imbalance_ratio(_ints([0, 3, 1, 3, 1])) == (3.0, 1, 2)
    assert imbalance_ratio(_ints([0, 0])) is None


def test_misprediction_fraction_of_an_absent_class_is_nan_not_zero() -> None:
    fractions = misprediction_fractions(_ints([4, 0, 2]), _ints([1, 0, 2]))
    assert fractions[0] == 0.25
    assert math.isnan(fractions[1])
    assert fractions[2] == 1.0


def test_imbalance_message_names_counts_ratio_threshold_and_classes() -> None:
    finding = check_imbalance(_ints([2, 30, 0, 3]), 5.0, step=12)
    assert finding is not None
    assert finding.message == (
        "largest/smallest class count 30/2 = 15 is above threshold_imbalance 5 "
        "(largest class 1, smallest class 0)"
    )


def test_misprediction_message_lists_worst_classes_first_and_counts_the_rest() -> None:
    samples = _ints([10] * 8)
    wrong = _ints([9, 8, 10, 9, 8, 9, 0, 8])
    finding = check_misprediction(samples, wrong, 0.7, step=1)
    assert finding is not None
    assert finding.classes == (2, 0, 3, 5, 1, 4, 7)
    assert finding.value == 1.0
    assert finding.message.startswith(
        "misprediction fraction above threshold_misprediction 0.7 for 7 classes "
        "(class 2: 10/10 = 1.000, class 0: 9/10 = 0.900"
    )
    assert finding.message.endswith("class 1: 8/10 = 0.800 and 2 more)")


def test_misprediction_message_for_one_class_is_singular() -> None:
    finding = check_misprediction(_ints([4, 4]), _ints([0, 3]), 0.5, step=1)
    assert finding is not None
    assert "for 1 class (class 1: 3/4 = 0.750)" in finding.message
