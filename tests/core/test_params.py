"""Rule parameters as typed values: every value checked where it is declared, all at once."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

import pytest

from evaluator.core import (
    PARAMETER_NAMES,
    ParameterError,
    RuleParameters,
    accepted,
)

# name -> (a typed value it refuses, a phrase of what it accepts)
REFUSED: dict[str, tuple[Any, str]] = {
    "threshold_imbalance": (0.5, "a finite number >= 1"),
    "threshold_misprediction": (1.5, "a fraction within [0, 1]"),
    "samples": (-1, "a whole number >= 0"),
    "argmax": (1, "a boolean"),
    "labels_regex": ("(", "a valid Python regular expression"),
    "predictions_regex": (5, "a valid Python regular expression"),
    "ignore_index": (2.5, "a whole number such as -100"),
    "max_classes": (0, "a whole number within [1, 2**31]"),
    "binary_threshold": (1.0, "a probability strictly between 0 and 1"),
    "binary_scores": ("logits", "auto, probability or logit"),
    "class_axis": (1.5, "a whole number: the axis of the classes"),
    "confidence": (1.0, "a probability strictly between 0 and 1, such as 0.95"),
    "window_steps": (100_001, "a whole number within [0, 100000]"),
    "minority_not_improving": ("yes", "a boolean"),
}


def test_every_parameter_declares_what_it_accepts() -> None:
    assert set(REFUSED) == set(PARAMETER_NAMES) == {f.name for f in fields(RuleParameters)}
    for name, (_value, phrase) in REFUSED.items():
        assert accepted(name).startswith(phrase)


@pytest.mark.parametrize("name", REFUSED, ids=list(REFUSED))
def test_a_refused_typed_value_names_the_parameter_and_what_it_accepts(name: str) -> None:
    value, phrase = REFUSED[name]
    with pytest.raises(ParameterError) as raised:
        RuleParameters(**{name: value})
    [problem] = raised.value.problems
    assert (problem.name, problem.value) == (name, value)
    assert problem.describe().startswith(f"{name}: expected {phrase}")


def test_every_refused_value_is_reported_at_once_in_field_order() -> None:
    with pytest.raises(ParameterError) as raised:
        RuleParameters(**{name: value for name, (value, _phrase) in reversed(REFUSED.items())})
    assert [p.name for p in raised.value.problems] == list(PARAMETER_NAMES)


def test_minority_not_improving_needs_a_window_and_says_so() -> None:
    with pytest.raises(ParameterError) as raised:
        RuleParameters(minority_not_improving=True)
    [problem] = raised.value.problems
    assert problem.name == "minority_not_improving"
    assert "window_steps is 0: set it, such as 50" in problem.describe()
    assert RuleParameters(minority_not_improving=True, window_steps=50).window_steps == 50


def test_typed_values_within_their_ranges_are_kept() -> None:
    parameters = RuleParameters(threshold_imbalance=1, samples=0, ignore_index=None)
    assert (parameters.threshold_imbalance, parameters.samples) == (1, 0)
    assert parameters.ignore_index is None


def test_a_refused_regex_says_why_after_what_is_accepted() -> None:
    with pytest.raises(ParameterError) as raised:
        RuleParameters(labels_regex="labels(?!_1)", predictions_regex="p" * 5000)
    labels, predictions = (problem.describe() for problem in raised.value.problems)
    assert labels.startswith(f"labels_regex: expected {accepted('labels_regex')}; this one uses")
    assert "negative lookahead (?!...), which RE2 does not support" in labels
    assert "this one is 5,000 characters long" in predictions
    assert predictions.endswith("... (5,000 characters in all)")  # the value quoted short
    assert len(predictions) < 1000


@pytest.mark.parametrize(
    "pattern", [".*labels", r"loss\d+_input_1$", "(a+)+$", r"(?P<y>y)_hat", r"labels_\d{2,}"]
)
def test_a_regex_re2_matches_in_linear_time_is_accepted(pattern: str) -> None:
    assert RuleParameters(labels_regex=pattern).labels_regex == pattern
