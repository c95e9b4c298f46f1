"""The rule's parameters, with the seed's names and defaults, and their string forms.

A managed debugger service passes every RuleParameter as a string ("10", "0.7", "False"), so each
parameter accepts its string form as well as its typed value. Every problem is collected and
reported together, so a user fixes a configuration in one round instead of one error at a time.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any

from evaluator.core.errors import ParameterError, ParameterProblem

_TRUE_WORDS = frozenset({"true", "1", "yes", "y", "on"})
_FALSE_WORDS = frozenset({"false", "0", "no", "n", "off"})


@dataclass(frozen=True)
class RuleParameters:
    """What the ClassImbalance rule checks and how it reads its inputs.

    Defaults are the seed rule's (SageMaker Debugger's built-in ClassImbalance), so a job
    configured for the managed rule behaves the same here.
    """

    threshold_imbalance: float = 10.0
    """Issue when the largest class count divided by the smallest (over classes seen at least
    once) is strictly above this. 10 is the seed's default; must be a finite number >= 1."""

    threshold_misprediction: float = 0.7
    """Issue when some class's mispredicted / samples is strictly above this. 0.7 is the
    seed's default; must be within [0, 1]."""

    samples: int = 500
    """Checks run only once at least this many labels were counted (seed default, sized for
    10 classes; raise it with many classes). Must be >= 0."""

    argmax: bool = False
    """Apply argmax over the last axis of (B, C) predictions (scores, probabilities, logits).
    The seed's default is False, so class-index predictions are taken as they are."""

    labels_regex: str = ".*labels"
    """Tensors whose names match (search semantics: anywhere in the name) hold the labels."""

    predictions_regex: str = ".*predictions"
    """Tensors whose names match (search semantics) hold the predictions."""

    ignore_index: int | None = -100
    """Labels equal to this are skipped and counted as ignored: PyTorch's CrossEntropyLoss
    convention for padding. None disables it."""

    max_classes: int = 1_000_000
    """Class indices at or above this are rejected as out of range (counted, not counted as
    samples): it bounds memory when a label tensor holds garbage. Raise it for larger models."""


def parse_rule_parameters(raw: Mapping[str, Any]) -> RuleParameters:
    """Build parameters from typed or string values, reporting every problem at once.

    Keys not given keep their defaults; unknown keys are problems, with a suggestion.
    """
    known = {f.name for f in fields(RuleParameters)}
    problems: list[ParameterProblem] = []
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in known:
            problems.append(ParameterProblem(key, value, f"one of {', '.join(sorted(known))}"))
            continue
        parser, expected = _PARSERS[key]
        try:
            values[key] = parser(value)
        except (ValueError, TypeError, OverflowError):  # float(None), float([1]), float(10**400)
            problems.append(ParameterProblem(key, value, expected))
    if problems:
        raise ParameterError(problems)
    return RuleParameters(**values)


def parse_bool(value: Any) -> bool:
    """Accept booleans and the usual words; Python's ``bool("False")`` is True, which is why."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE_WORDS | _FALSE_WORDS:
        return value.strip().lower() in _TRUE_WORDS
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise ValueError(value)


def parse_finite_float(value: Any) -> float:
    """Accept numbers and numeric strings, but never NaN or infinity (they disable a check)."""
    if isinstance(value, bool):
        raise ValueError(value)
    number = float(value.strip() if isinstance(value, str) else value)
    if not math.isfinite(number):
        raise ValueError(value)
    return number


def parse_whole_number(value: Any) -> int:
    """Accept integers and integral forms such as "500" or "500.0"; reject 500.5."""
    if isinstance(value, bool):
        raise ValueError(value)
    if isinstance(value, int):
        return value
    number = parse_finite_float(value)
    if not number.is_integer():
        raise ValueError(value)
    return int(number)


def _in_range(parse: Callable[[Any], float], low: float, high: float) -> Callable[[Any], float]:
    def parse_bounded(value: Any) -> float:
        number = parse(value)
        if not low <= number <= high:
            raise ValueError(value)
        return number

    return parse_bounded


def whole_number_within(low: int, high: int | None = None) -> Callable[[Any], int]:
    """A parser of whole numbers in [low, high] (high None: no upper bound)."""

    def parse_bounded(value: Any) -> int:
        number = parse_whole_number(value)
        if number < low or (high is not None and number > high):
            raise ValueError(value)
        return number

    return parse_bounded


def _regex(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(value)
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(value) from exc
    return value


def _optional_index(value: Any) -> int | None:
    if value is None or (isinstance(value, str) and value.strip().lower() in {"", "none", "null"}):
        return None
    return parse_whole_number(value)


_PARSERS: dict[str, tuple[Callable[[Any], Any], str]] = {
    "threshold_imbalance": (
        _in_range(parse_finite_float, 1.0, math.inf),
        'a finite number >= 1, such as 10 or "10"',
    ),
    "threshold_misprediction": (
        _in_range(parse_finite_float, 0.0, 1.0),
        'a fraction within [0, 1], such as 0.7 or "0.7"',
    ),
    "samples": (whole_number_within(0), 'a whole number >= 0, such as 500 or "500"'),
    "argmax": (parse_bool, 'a boolean: true/false, "True"/"False", 1/0, yes/no'),
    "labels_regex": (_regex, 'a valid Python regular expression, such as ".*labels"'),
    "predictions_regex": (_regex, 'a valid Python regular expression, such as ".*predictions"'),
    "ignore_index": (_optional_index, 'a whole number such as -100, or "none" to disable'),
    "max_classes": (
        whole_number_within(1, 2**31),
        "a whole number within [1, 2**31], such as 1000000",
    ),
}
