"""Normalising label and prediction tensors to class indices, with named row problems."""

from __future__ import annotations

from collections import Counter
from functools import partial
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from container.config import parse_rule_parameters
from evaluator.core.normalise import (
    BINARY_SCORE_OUT_OF_RANGE,
    IGNORED,
    LABEL_OUT_OF_RANGE,
    NEGATIVE_LABEL,
    NONFINITE_LABEL,
    NONFINITE_PREDICTION,
    NONFINITE_SCORE,
    NONINTEGRAL_LABEL,
    PREDICTION_OUT_OF_RANGE,
    BatchRejected,
    BinaryScores,
    RowClasses,
    binary_classes,
    label_classes,
    prediction_classes,
)
from tests.core.cases import CASES, FLOAT_DTYPES, INTEGER_DTYPES, NAN, Case
from tests.core.reference import classify_rows

MAX = 1_000_000
SINGLE = {
    name: case for name, case in CASES.items() if case.single_pair and not case.skipped_batches
}


def _labels(tensor: Any, *, ignore_index: int | None = -100, max_classes: int = MAX) -> RowClasses:
    return label_classes(tensor, ignore_index=ignore_index, max_classes=max_classes)


def _predictions(tensor: Any, *, argmax: bool = False, max_classes: int = MAX) -> RowClasses:
    return prediction_classes(tensor, argmax=argmax, max_classes=max_classes)


def _first_problems(*rows: RowClasses) -> tuple[np.ndarray, Counter[str]]:
    """(valid mask, rows per first problem), the order the rule tallies them in."""
    size = rows[0].classes.size
    remaining = np.ones(size, dtype=bool)
    tally: Counter[str] = Counter()
    for row in rows:
        assert row.classes.shape == (size,)
        assert row.classes.dtype == np.int64
        for reason, mask in row.problems:
            assert mask.shape == (size,)
            hit = int(np.count_nonzero(mask & remaining))
            if hit:
                tally[reason] += hit
            remaining &= ~mask
    return remaining, tally


def _problem(rows: RowClasses, reason: str) -> list[bool]:
    masks = [mask for name, mask in rows.problems if name == reason]
    assert len(masks) == 1, f"expected exactly one {reason} mask in {rows.problems}"
    return masks[0].tolist()


# -- the catalogue, one tensor of each role --------------------------------------------------


@pytest.mark.parametrize("case", SINGLE.values(), ids=list(SINGLE))
def test_catalogue_case_valid_rows_are_the_expected_pairs_in_order(case: Case) -> None:
    params = parse_rule_parameters(case.params)
    labels = _labels(
        case.tensors["labels"], ignore_index=params.ignore_index, max_classes=params.max_classes
    )
    predictions = _predictions(
        case.tensors["predictions"], argmax=params.argmax, max_classes=params.max_classes
    )
    valid, tally = _first_problems(labels, predictions)
    pairs = list(
        zip(labels.classes[valid].tolist(), predictions.classes[valid].tolist(), strict=True)
    )
    assert pairs == list(case.pairs)
    assert tally.pop(IGNORED, 0) == case.ignored
    assert dict(tally) == dict(case.skipped_rows)


# -- labels ----------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [*INTEGER_DTYPES, np.bool_], ids=lambda d: np.dtype(d).name)
def test_integer_and_bool_labels_are_class_indices(dtype: Any) -> None:
    values = [1, 0, 1] if dtype is np.bool_ else [0, 7, 3, 127]
    rows = _labels(np.array(values, dtype=dtype))
    assert rows.classes.dtype == np.int64
    assert rows.classes.tolist() == values
    assert rows.problems == ()


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=lambda d: np.dtype(d).name)
def test_integral_float_labels_are_class_indices(dtype: Any) -> None:
    values = [0.0, 7.0, 3.0, 2048.0]
    rows = _labels(np.array(values, dtype=dtype))
    assert rows.classes.dtype == np.int64
    assert rows.classes.tolist() == [0, 7, 3, 2048]
    assert rows.problems == ()


@pytest.mark.parametrize(
    ("tensor", "expected"),
    [
        (np.array([[2], [0], [1]]), [2, 0, 1]),
        (np.array([[2.0]], dtype=np.float32), [2]),
        (np.int16(4), [4]),
        (np.array(5.0), [5]),
        (3, [3]),
        ([1, 2], [1, 2]),
        (np.zeros((0, 1)), []),
        (np.zeros(0, dtype=np.uint8), []),
    ],
    ids=[
        "column",
        "column_float",
        "numpy_scalar",
        "zero_d_array",
        "python_int",
        "list",
        "empty_column",
        "empty",
    ],
)
def test_label_shapes_b_b1_and_scalar(tensor: Any, expected: list[int]) -> None:
    rows = _labels(tensor)
    assert rows.classes.tolist() == expected
    assert rows.problems == ()


@pytest.mark.parametrize(
    ("tensor", "expected"),
    [
        (np.eye(4)[[3, 0, 2]], [3, 0, 2]),
        (np.eye(3, dtype=np.uint8)[[1, 1]], [1, 1]),
        (np.array([[0.1, 0.7, 0.2], [0.5, 0.2, 0.3]], dtype=np.float16), [1, 0]),
        (np.array([[0.5, 0.5], [0.0, 0.0], [0.2, 0.8]]), [0, 0, 1]),
    ],
    ids=["one_hot", "one_hot_uint8", "probabilities", "ties_pick_first"],
)
def test_two_dimensional_labels_are_reduced_by_argmax(tensor: Any, expected: list[int]) -> None:
    rows = _labels(tensor)
    assert rows.classes.tolist() == expected
    assert rows.problems == ()


def test_nonfinite_probability_labels_are_flagged_per_row() -> None:
    rows = _labels(np.array([[0.2, 0.8], [NAN, 0.1], [0.9, np.inf]]))
    assert _problem(rows, NONFINITE_LABEL) == [False, True, True]
    assert rows.classes[0] == 1


@pytest.mark.parametrize(
    "tensor",
    [np.array([3, -100, 1, -100]), np.array([3.0, -100.0, 1.0, -100.0], dtype=np.float32)],
    ids=["int", "float"],
)
def test_ignore_index_marks_rows_ignored_first(tensor: Any) -> None:
    rows = _labels(tensor)
    assert rows.problems[0][0] == IGNORED
    assert _problem(rows, IGNORED) == [False, True, False, True]
    valid, tally = _first_problems(rows)
    assert tally == Counter({IGNORED: 2}), "an ignored row is not also a negative label"
    assert valid.tolist() == [True, False, True, False]


def test_ignore_index_none_makes_minus_100_a_negative_label() -> None:
    rows = _labels(np.array([-100, 1]), ignore_index=None)
    assert [reason for reason, _ in rows.problems] == [NEGATIVE_LABEL]
    assert _problem(rows, NEGATIVE_LABEL) == [True, False]


def test_ignore_index_zero_does_not_claim_nan_or_fractional_labels() -> None:
    rows = _labels(np.array([NAN, 0.0, 2.5, 1.0]), ignore_index=0)
    _, tally = _first_problems(rows)
    assert tally == Counter({IGNORED: 1, NONFINITE_LABEL: 1, NONINTEGRAL_LABEL: 1})
    assert _problem(rows, IGNORED) == [False, True, False, False]


def test_negative_labels_are_flagged() -> None:
    rows = _labels(np.array([-1, 0, -5], dtype=np.int8))
    assert _problem(rows, NEGATIVE_LABEL) == [True, False, True]


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=lambda d: np.dtype(d).name)
def test_nonfinite_and_fractional_labels_are_flagged(dtype: Any) -> None:
    rows = _labels(np.array([NAN, 1.0, np.inf, -np.inf, 0.5, -2.5], dtype=dtype))
    assert _problem(rows, NONFINITE_LABEL) == [True, False, True, True, False, False]
    assert _problem(rows, NONINTEGRAL_LABEL) == [False, False, False, False, True, True]
    valid, _ = _first_problems(rows)
    assert valid.tolist() == [False, True, False, False, False, False]
    assert rows.classes[1] == 1


def test_uint64_values_beyond_int64_are_out_of_range_not_negative() -> None:
    rows = _labels(np.array([2**64 - 1, 2**63, 5], dtype=np.uint64))
    assert [reason for reason, _ in rows.problems] == [LABEL_OUT_OF_RANGE]
    assert _problem(rows, LABEL_OUT_OF_RANGE) == [True, True, False]
    assert rows.classes[2] == 5


def test_labels_at_or_above_max_classes_are_out_of_range() -> None:
    rows = _labels(np.array([9, 10, 11, 0]), max_classes=10)
    assert _problem(rows, LABEL_OUT_OF_RANGE) == [False, True, True, False]


def test_huge_float_labels_are_out_of_range_or_negative() -> None:
    rows = _labels(np.array([1e30, -1e30, 3.0]))
    assert _problem(rows, LABEL_OUT_OF_RANGE) == [True, False, False]
    assert _problem(rows, NEGATIVE_LABEL) == [False, True, False]


def test_one_hot_labels_wider_than_max_classes_are_out_of_range() -> None:
    rows = _labels(np.eye(6)[[5, 2, 3]], max_classes=3)
    assert rows.classes.tolist() == [5, 2, 3]
    assert _problem(rows, LABEL_OUT_OF_RANGE) == [True, False, True]


# -- predictions -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "dtype", [*INTEGER_DTYPES, *FLOAT_DTYPES, np.bool_], ids=lambda d: np.dtype(d).name
)
def test_prediction_indices_in_any_numeric_dtype(dtype: Any) -> None:
    values = [1, 0, 1] if dtype is np.bool_ else [4, 0, 2]
    rows = _predictions(np.array(values, dtype=dtype))
    assert rows.classes.tolist() == values
    assert rows.problems == ()


@pytest.mark.parametrize("shape", [(3, 2), (1, 5), (0, 4)], ids=str)
def test_scores_without_argmax_reject_the_batch_and_say_set_argmax_to_true(
    shape: tuple[int, int],
) -> None:
    with pytest.raises(BatchRejected, match="set argmax to true") as raised:
        _predictions(np.zeros(shape, dtype=np.float32), argmax=False)
    assert raised.value.reason == "argmax_required"
    assert str(shape) in str(raised.value)


@pytest.mark.parametrize("dtype", [*FLOAT_DTYPES, np.int32], ids=lambda d: np.dtype(d).name)
def test_scores_with_argmax_pick_the_first_highest(dtype: Any) -> None:
    scores = np.array([[-1, 2, 0], [3, -2, 0], [1, 1, 0], [0, 4, 4]], dtype=dtype)
    rows = _predictions(scores, argmax=True)
    assert rows.classes.tolist() == [1, 0, 0, 1]
    assert rows.problems == ()


def test_nonfinite_scores_are_flagged_per_row() -> None:
    scores = np.array([[NAN, 1.0], [0.0, 1.0], [np.inf, 0.0], [-np.inf, 2.0], [0.3, 0.2]])
    rows = _predictions(scores, argmax=True)
    assert _problem(rows, NONFINITE_SCORE) == [True, False, True, True, False]
    assert rows.classes[[1, 4]].tolist() == [1, 0]


def test_scores_wider_than_max_classes_are_out_of_range() -> None:
    rows = _predictions(np.eye(5)[[4, 0]], argmax=True, max_classes=3)
    assert _problem(rows, PREDICTION_OUT_OF_RANGE) == [True, False]


def test_prediction_indices_out_of_range_and_nonfinite_are_flagged() -> None:
    rows = _predictions(np.array([-1.0, 3.0, NAN, 1.0, np.inf]), max_classes=3)
    assert _problem(rows, NONFINITE_PREDICTION) == [False, False, True, False, True]
    assert _problem(rows, PREDICTION_OUT_OF_RANGE) == [True, True, False, False, False]


def test_uint64_huge_predictions_are_out_of_range() -> None:
    rows = _predictions(np.array([2**64 - 1, 1], dtype=np.uint64))
    assert _problem(rows, PREDICTION_OUT_OF_RANGE) == [True, False]


@pytest.mark.parametrize("argmax", [False, True])
def test_one_fractional_score_per_sample_is_a_binary_probability(argmax: bool) -> None:
    rows = _predictions(np.array([1.0, NAN, 0.25, 0.75]), argmax=argmax)
    assert rows.binary_form == "probability"
    assert rows.classes.tolist()[2:] == [0, 1]
    assert rows.classes[0] == 1
    assert _problem(rows, NONFINITE_SCORE) == [False, True, False, False]


BINARY_SCORES = {
    # name -> (scores, BinaryScores, expected classes, form read)
    "probabilities_above_one_half": (
        [0.1, 0.5, 0.51, 0.9],
        BinaryScores(),
        [0, 0, 1, 1],
        "probability",
    ),
    "logits_decided_by_a_score_outside_0_1": (
        [-3.0, -0.1, 0.2, 4.0],
        BinaryScores(),
        [0, 0, 1, 1],
        "logit",
    ),
    "logits_in_0_1_stay_logits_once_decided": (
        [0.1, 0.4, 0.9],
        BinaryScores(form="logit"),
        [1, 1, 1],
        "logit",
    ),
    "a_threshold_for_probabilities": (
        [0.5, 0.75, 0.85],
        BinaryScores(0.8),
        [0, 0, 1],
        "probability",
    ),
    "the_same_threshold_for_logits": (
        [1.3, 1.4, 2.0],
        BinaryScores(0.8, form="logit"),
        [0, 1, 1],
        "logit",
    ),
}


@pytest.mark.parametrize("case", BINARY_SCORES.values(), ids=BINARY_SCORES.keys())
def test_binary_scores_against_a_numpy_reference(case: Any) -> None:
    scores, binary, expected, form = case
    values = np.asarray(scores, dtype=np.float32)
    rows = binary_classes(values, binary, MAX)
    assert (rows.classes.tolist(), rows.binary_form) == (expected, form)
    probabilities = values if form == "probability" else 1 / (1 + np.exp(-values.astype(float)))
    assert rows.classes.tolist() == (probabilities > binary.threshold).astype(int).tolist()


def test_scores_outside_0_1_read_as_probabilities_are_set_aside_not_guessed() -> None:
    rows = binary_classes(np.array([0.2, 1.5, -0.1, 0.9]), BinaryScores(form="probability"), MAX)
    assert _problem(rows, BINARY_SCORE_OUT_OF_RANGE) == [False, True, True, False]
    assert rows.binary_form == "probability"


# -- shapes and dtypes that reject a batch ---------------------------------------------------


@pytest.mark.parametrize(
    ("tensor", "reason"),
    [
        (np.array(["0", "1"]), "unsupported_{role}_dtype"),
        (np.array([1 + 0j]), "unsupported_{role}_dtype"),
        (np.array([object()]), "unsupported_{role}_dtype"),
        (np.zeros((2, 3, 1)), "unsupported_{role}_shape"),
        (np.zeros((2, 0)), "unsupported_{role}_shape"),
    ],
    ids=["strings", "complex", "objects", "three_dimensional", "zero_width"],
)
@pytest.mark.parametrize("role", ["labels", "predictions"])
def test_uninterpretable_tensors_reject_the_batch(tensor: Any, reason: str, role: str) -> None:
    normalise = _labels if role == "labels" else partial(_predictions, argmax=True)
    with pytest.raises(BatchRejected) as raised:
        normalise(tensor)
    assert raised.value.reason == reason.format(role=role)
    assert str(raised.value).startswith(f"expected {role}")


# -- properties ------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    st.sampled_from([np.int8, np.int16, np.int32, np.int64]).flatmap(
        lambda dtype: hnp.arrays(dtype, st.integers(0, 30))
    ),
    st.sampled_from([-100, 0, 5, None]),
    st.integers(1, 200),
)
def test_signed_integer_labels_follow_the_row_reference(
    labels: np.ndarray, ignore_index: int | None, max_classes: int
) -> None:
    rows = _labels(labels, ignore_index=ignore_index, max_classes=max_classes)
    assert rows.classes.tolist() == labels.tolist()
    valid, tally = _first_problems(rows)
    outcome = classify_rows(
        labels,
        np.zeros(labels.size, dtype=np.int64),
        max_classes=max_classes,
        ignore_index=ignore_index,
    )
    np.testing.assert_array_equal(valid, outcome.valid)
    assert tally.pop(IGNORED, 0) == outcome.ignored
    assert tally == outcome.skipped


@settings(max_examples=60, deadline=None)
@given(
    hnp.arrays(
        st.sampled_from([np.float16, np.float32, np.float64]),
        st.tuples(st.integers(0, 12), st.integers(2, 12)),
    )
)
def test_argmax_of_finite_score_rows_equals_numpy(scores: np.ndarray) -> None:
    rows = _predictions(scores, argmax=True, max_classes=100)
    finite = np.isfinite(scores).all(axis=1)
    np.testing.assert_array_equal(rows.classes[finite], np.argmax(scores[finite], axis=1))
    flagged = ~finite
    if flagged.any():
        assert _problem(rows, NONFINITE_SCORE) == flagged.tolist()
    else:
        assert rows.problems == ()
