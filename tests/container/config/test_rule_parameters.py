"""Rule parameters as the loader reads them: the seed's names and defaults, string forms, and
errors reported together (the core validates typed values; the strings are the loader's)."""

from __future__ import annotations

import math
from dataclasses import fields
from typing import Any

import pytest

from container.config import parse_rule_parameters
from container.config.limits import quote
from container.config.values import parse_bool
from evaluator.core import ParameterError, ParameterProblem, RuleParameters

SEED_DEFAULTS = {
    "threshold_imbalance": 10,
    "threshold_misprediction": 0.7,
    "samples": 500,
    "argmax": False,
    "labels_regex": ".*labels",
    "predictions_regex": ".*predictions",
}


def _problems(raw: dict[Any, Any]) -> list[ParameterProblem]:
    with pytest.raises(ParameterError) as raised:
        parse_rule_parameters(raw)
    return raised.value.problems


def test_defaults_are_the_seed_rules() -> None:
    defaults = RuleParameters()
    types = {"threshold_imbalance": float, "threshold_misprediction": float, "samples": int}
    for name, value in SEED_DEFAULTS.items():
        assert getattr(defaults, name) == value, name
        assert type(getattr(defaults, name)) is types.get(name, type(value)), name
    assert defaults.ignore_index == -100
    assert defaults.max_classes == 1_000_000
    assert parse_rule_parameters({}) == defaults


def test_every_parameter_is_known_by_its_seed_name() -> None:
    names = {f.name for f in fields(RuleParameters)}
    assert set(SEED_DEFAULTS) <= names
    assert names - set(SEED_DEFAULTS) == {
        "ignore_index",
        "max_classes",
        "binary_threshold",
        "binary_scores",
        "class_axis",
        "confidence",
        "window_steps",
        "minority_not_improving",
    }


def test_seed_defaults_given_as_strings_parse_to_the_defaults() -> None:
    as_strings = {name: str(value) for name, value in SEED_DEFAULTS.items()}
    assert parse_rule_parameters(as_strings) == RuleParameters()


ACCEPTED = [
    ("threshold_imbalance", "10", 10.0),
    ("threshold_imbalance", " 2.5 ", 2.5),
    ("threshold_imbalance", 3, 3.0),
    ("threshold_imbalance", "1", 1.0),
    ("threshold_imbalance", "1e3", 1000.0),
    ("threshold_misprediction", "0.7", 0.7),
    ("threshold_misprediction", "0", 0.0),
    ("threshold_misprediction", 1, 1.0),
    ("threshold_misprediction", ".25", 0.25),
    ("samples", "500", 500),
    ("samples", "500.0", 500),
    ("samples", 0, 0),
    ("samples", 20.0, 20),
    ("samples", "  7 ", 7),
    ("argmax", "False", False),
    ("argmax", "True", True),
    ("argmax", "true", True),
    ("argmax", "FALSE", False),
    ("argmax", " yes ", True),
    ("argmax", "no", False),
    ("argmax", "on", True),
    ("argmax", "off", False),
    ("argmax", "1", True),
    ("argmax", "0", False),
    ("argmax", 1, True),
    ("argmax", 0, False),
    ("argmax", True, True),
    ("labels_regex", "^y$", "^y$"),
    ("predictions_regex", r"outputs/\d+", r"outputs/\d+"),
    ("ignore_index", "-100", -100),
    ("ignore_index", "-100.0", -100),
    ("ignore_index", 255, 255),
    ("ignore_index", "none", None),
    ("ignore_index", "None", None),
    ("ignore_index", "", None),
    ("ignore_index", "null", None),
    ("ignore_index", None, None),
    ("max_classes", "1000", 1000),
    ("max_classes", 2**31, 2**31),
]


def _id(name: str, raw: Any) -> str:
    return f"{name}={raw!r}"[:40]


@pytest.mark.parametrize(
    ("name", "raw", "expected"), ACCEPTED, ids=[_id(n, r) for n, r, _ in ACCEPTED]
)
def test_typed_and_string_forms_are_accepted(name: str, raw: Any, expected: Any) -> None:
    value = getattr(parse_rule_parameters({name: raw}), name)
    assert value == expected
    assert type(value) is type(expected)


INVALID = [
    ("threshold_imbalance", "0.5", "a finite number >= 1"),
    ("threshold_imbalance", "ten", "a finite number >= 1"),
    ("threshold_imbalance", "nan", "a finite number >= 1"),
    ("threshold_imbalance", math.inf, "a finite number >= 1"),
    ("threshold_imbalance", True, "a finite number >= 1"),
    ("threshold_imbalance", None, "a finite number >= 1"),
    ("threshold_imbalance", [10], "a finite number >= 1"),
    ("threshold_imbalance", 10**400, "a finite number >= 1"),
    ("threshold_misprediction", "1.01", "a fraction within [0, 1]"),
    ("threshold_misprediction", -0.1, "a fraction within [0, 1]"),
    ("threshold_misprediction", "70%", "a fraction within [0, 1]"),
    ("samples", "-1", "a whole number >= 0"),
    ("samples", "500.5", "a whole number >= 0"),
    ("samples", "five hundred", "a whole number >= 0"),
    ("samples", False, "a whole number >= 0"),
    ("samples", "inf", "a whole number >= 0"),
    ("samples", {"n": 1}, "a whole number >= 0"),
    ("argmax", "maybe", "a boolean"),
    ("argmax", 2, "a boolean"),
    ("argmax", 1.0, "a boolean"),
    ("argmax", None, "a boolean"),
    ("labels_regex", "(", "a valid Python regular expression"),
    ("labels_regex", 5, "a valid Python regular expression"),
    ("predictions_regex", "[a-", "a valid Python regular expression"),
    ("ignore_index", "-100.5", "a whole number such as -100"),
    ("ignore_index", "ignore", "a whole number such as -100"),
    ("max_classes", 0, "a whole number within [1, 2**31]"),
    ("max_classes", 2**31 + 1, "a whole number within [1, 2**31]"),
]


@pytest.mark.parametrize(
    ("name", "raw", "expected_phrase"), INVALID, ids=[_id(n, r) for n, r, _ in INVALID]
)
def test_invalid_value_is_a_clear_error(name: str, raw: Any, expected_phrase: str) -> None:
    [problem] = _problems({name: raw})
    assert (problem.name, problem.value) == (name, raw)
    message = problem.describe()
    assert message.startswith(f"{name}: expected {expected_phrase}")
    assert message.endswith(f"but got {quote(raw)}")  # the value shortened past 200 characters


def test_every_problem_is_reported_at_once() -> None:
    raw = {
        "threshold_imbalance": "0",
        "threshold_misprediction": "2",
        "samples": "-5",
        "argmax": "perhaps",
        "labels_regex": "(",
        "threshold_imbalanse": 3,
    }
    problems = _problems(raw)
    assert [p.name for p in problems] == [
        "threshold_imbalance",
        "threshold_misprediction",
        "samples",
        "argmax",
        "labels_regex",
        "threshold_imbalanse",
    ]
    with pytest.raises(ParameterError) as raised:
        parse_rule_parameters(raw)
    text = str(raised.value)
    assert text.startswith("6 rule parameters are invalid:\n  - threshold_imbalance: expected")
    assert text.count("\n  - ") == 6
    assert "did you mean 'threshold_imbalance'?" in text


def test_valid_values_beside_invalid_ones_do_not_hide_the_error() -> None:
    problems = _problems({"samples": "100", "argmax": "true", "threshold_imbalance": "x"})
    assert [p.name for p in problems] == ["threshold_imbalance"]


def test_one_problem_is_worded_in_the_singular() -> None:
    with pytest.raises(ParameterError, match=r"^1 rule parameter is invalid:\n  - samples: "):
        parse_rule_parameters({"samples": "many"})


@pytest.mark.parametrize(
    ("unknown", "suggestion"),
    [
        ("threshold_imbalence", "threshold_imbalance"),
        ("treshold_misprediction", "threshold_misprediction"),
        ("sample", "samples"),
        ("arg_max", "argmax"),
        ("label_regex", "labels_regex"),
        ("prediction_regex", "predictions_regex"),
        ("ignore_idx", "ignore_index"),
        ("max_class", "max_classes"),
    ],
)
def test_unknown_key_suggests_the_closest_name(unknown: str, suggestion: str) -> None:
    [problem] = _problems({unknown: "1"})
    assert problem.describe() == f"unknown parameter {unknown!r}; did you mean {suggestion!r}?"


def test_unknown_key_without_a_close_name_lists_the_known_ones() -> None:
    [problem] = _problems({"base_trial": "s3://bucket/trial"})
    message = problem.describe()
    assert message.startswith("unknown parameter 'base_trial'; known: argmax, binary_scores, ")
    assert message.endswith("threshold_imbalance, threshold_misprediction, window_steps")


def test_non_string_unknown_key_is_a_problem_not_a_crash() -> None:
    [problem] = _problems({10: "x"})
    assert problem.describe().startswith("unknown parameter 10; known: ")


def test_problem_names_its_source_when_known() -> None:
    problem = ParameterProblem("samples", "x", "a whole number >= 0", source="rule.yaml: samples")
    assert problem.describe() == (
        "samples (from rule.yaml: samples): expected a whole number >= 0, but got 'x'"
    )
    unknown = ParameterProblem("sampels", 1, "one of samples, argmax", source="env RULE_SAMPELS")
    assert unknown.describe() == (
        "unknown parameter 'sampels' (from env RULE_SAMPELS); did you mean 'samples'?"
    )


def test_parameter_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="rule parameter"):
        parse_rule_parameters({"argmax": "perhaps"})


@pytest.mark.parametrize("word", ["true", "TRUE", "True", "1", "yes", "Y", "on", " On "])
def test_parse_bool_true_words(word: str) -> None:
    assert parse_bool(word) is True


@pytest.mark.parametrize("word", ["false", "FALSE", "False", "0", "no", "N", "off", " Off "])
def test_parse_bool_false_words(word: str) -> None:
    assert parse_bool(word) is False
