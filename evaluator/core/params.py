"""The rule's parameters, with the seed's names and defaults, each validated where it is declared.

Every field carries what it accepts, in words for messages (``accepted``), and a typed check of
its value (``valid``); building a ``RuleParameters`` runs every check and reports every problem
at once, so a user fixes a configuration in one round instead of one error at a time. The core
knows only typed values: turning the strings a managed service sends ("10", "0.7", "False")
into them is the runtime's configuration loader's job (``container.config``), which reads the
field types and the ``accepted`` words from here.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import Field, dataclass, field, fields
from typing import Any, Literal, get_args

from evaluator.core.errors import ParameterError, ParameterProblem
from evaluator.core.selection import regex_refusal

BinaryScoresSetting = Literal["auto", "probability", "logit"]

ACCEPTED = "accepted"
"""Field metadata key: the accepted values in words ("a finite number >= 1, such as 10")."""
MAX_WINDOW_STEPS = 100_000
"""The largest ``window_steps``. The window keeps each step's counts for the classes it saw
(sparse), so its memory follows the steps' labels, not the number of classes, and is bounded
again by ``window.MAX_WINDOW_CELLS`` whatever the steps hold."""
VALID = "valid"
"""Field metadata key: the typed check of a value (True when it is valid)."""
WHY = "why"
"""Field metadata key, optional: why a value is refused, for a field where "expected" alone
does not say (a regex names the construct it cannot take), or None."""
MAX_REGEX_CHARS = 4096
"""The longest ``labels_regex`` or ``predictions_regex``: a pattern for tensor names takes tens
of characters, an alternation of a dozen whole names a few hundred. Checked before anything
compiles the pattern, so a 10 MiB value costs its length only."""
REGEX_ACCEPTED = (
    "a valid Python regular expression in the syntax RE2 matches in linear time (no "
    f"backreferences, lookaround or possessive quantifiers), of at most {MAX_REGEX_CHARS} "
    "characters"
)


def _parameter(
    default: Any,
    accepted: str,
    valid: Callable[[Any], bool],
    why: Callable[[Any], str | None] | None = None,
) -> Any:
    metadata = {ACCEPTED: accepted, VALID: valid}
    if why is not None:
        metadata[WHY] = why
    return field(default=default, metadata=metadata)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _regex(value: Any) -> bool:
    return isinstance(value, str) and _regex_problem(value) is None


def _regex_problem(value: Any) -> str | None:
    """Why a regex is refused ("found ..., write ..."), the length first: nothing compiles an
    oversized pattern."""
    if not isinstance(value, str):
        return None  # "expected a ... regular expression, but got 5" says it
    if len(value) > MAX_REGEX_CHARS:
        return (
            f"this one is {len(value):,} characters long: match a shorter part of the tensor "
            f"name (a search finds it anywhere in the name)"
        )
    refusal = regex_refusal(value)
    return None if refusal is None else f"this one {refusal}"


@dataclass(frozen=True)
class RuleParameters:
    """What the ClassImbalance rule checks and how it reads its inputs.

    Defaults are the seed rule's (SageMaker Debugger's built-in ClassImbalance), so a job
    configured for the managed rule behaves the same here. Invalid values raise
    ``ParameterError`` listing every problem.
    """

    threshold_imbalance: float = _parameter(
        10.0, 'a finite number >= 1, such as 10 or "10"', lambda v: _number(v) and v >= 1
    )
    """Issue when the largest class count divided by the smallest (over classes seen at least
    once) is strictly above this. 10 is the seed's default; must be a finite number >= 1."""

    threshold_misprediction: float = _parameter(
        0.7, 'a fraction within [0, 1], such as 0.7 or "0.7"', lambda v: _number(v) and 0 <= v <= 1
    )
    """Issue when some class's mispredicted / samples is strictly above this. 0.7 is the
    seed's default; must be within [0, 1]."""

    samples: int = _parameter(
        500, 'a whole number >= 0, such as 500 or "500"', lambda v: _whole(v) and v >= 0
    )
    """Checks run only once at least this many labels were counted (seed default, sized for
    10 classes; raise it with many classes). Must be >= 0."""

    argmax: bool = _parameter(
        False, 'a boolean: true/false, "True"/"False", 1/0, yes/no', lambda v: isinstance(v, bool)
    )
    """Apply argmax over the last axis of (B, C) predictions (scores, probabilities, logits).
    The seed's default is False, so class-index predictions are taken as they are."""

    labels_regex: str = _parameter(
        ".*labels", f'{REGEX_ACCEPTED}, such as ".*labels"', _regex, _regex_problem
    )
    """Tensors whose names match (search semantics: anywhere in the name) hold the labels.
    Matched by RE2, in time linear in the name (``selection``), so a name anyone can write
    cannot make a search backtrack for minutes; a name past ``MAX_MATCHED_NAME_CHARS`` matches
    no regex."""

    predictions_regex: str = _parameter(
        ".*predictions", f'{REGEX_ACCEPTED}, such as ".*predictions"', _regex, _regex_problem
    )
    """Tensors whose names match (search semantics) hold the predictions."""

    ignore_index: int | None = _parameter(
        -100, 'a whole number such as -100, or "none" to disable', lambda v: v is None or _whole(v)
    )
    """Labels equal to this are skipped and counted as ignored: PyTorch's CrossEntropyLoss
    convention for padding. None disables it."""

    max_classes: int = _parameter(
        1_000_000,
        "a whole number within [1, 2**31], such as 1000000",
        lambda v: _whole(v) and 1 <= v <= 2**31,
    )
    """Class indices at or above this are rejected as out of range (counted, not counted as
    samples): it bounds memory when a label tensor holds garbage. Raise it for larger models."""

    binary_threshold: float = _parameter(
        0.5,
        "a probability strictly between 0 and 1, such as 0.5",
        lambda v: _number(v) and 0 < v < 1,
    )
    """A binary model's one score per sample is class 1 when its probability is above this (a
    logit: above log(t / (1 - t)), 0 for 0.5), else class 0. 0.5 is the usual cut."""

    binary_scores: BinaryScoresSetting = _parameter(
        "auto",
        "auto, probability or logit",
        lambda v: v in get_args(BinaryScoresSetting),
    )
    """What a binary model's scores are: ``auto`` decides once per trial, at the first batch of
    them (any score outside [0, 1] means logits, torchmetrics' convention); ``probability`` or
    ``logit`` says it, for a trial whose first logits all happen to lie in [0, 1]."""

    class_axis: int = _parameter(
        -1,
        "a whole number: the axis of the classes in dense scores, such as -1 (the last) or 1",
        _whole,
    )
    """For dense scores (a class score per token or pixel), the axis that holds the classes
    when the shapes leave it open (a number of classes equal to a spatial size); otherwise it
    follows from the labels' shape. -1: the last axis (Keras' channels last); PyTorch's
    segmentation logits (B, C, H, W) need 1 only in that ambiguous case."""

    confidence: float | None = _parameter(
        None,
        'a probability strictly between 0 and 1, such as 0.95, or "none" to disable',
        lambda v: v is None or (_number(v) and 0 < v < 1),
    )
    """Guard the checks against small counts: with a confidence such as 0.95, a class fails
    the misprediction check only when the one-sided Wilson lower bound of its mispredicted
    fraction is above ``threshold_misprediction`` (1 of 1 does not fire, 400 of 500 does), and
    the imbalance ratio is taken between bounds on the largest and smallest class's share.
    None (the default): the seed rule's plain fractions."""

    window_steps: int = _parameter(
        0,
        f"a whole number within [0, {MAX_WINDOW_STEPS}], such as 50; 0 disables",
        lambda v: _whole(v) and 0 <= v <= MAX_WINDOW_STEPS,
    )
    """When above 0, the ``recent_misprediction`` check: some class's mispredicted fraction
    over the last this many evaluated steps (every mode) is above ``threshold_misprediction``,
    so a late regression shows although the cumulative figure is fine, and a late fix clears.
    0 (the default) disables it."""

    minority_not_improving: bool = _parameter(
        False,
        'a boolean: true/false, "True"/"False", 1/0, yes/no (true needs window_steps > 0)',
        lambda v: isinstance(v, bool),
    )
    """The ``minority_not_improving`` check: a class with fewer samples than the mean class
    whose mispredicted fraction over the last ``window_steps`` steps has not fallen below the
    one over the ``window_steps`` before, while the other classes' pooled fraction has."""

    def __post_init__(self) -> None:
        problems = [
            ParameterProblem(spec.name, getattr(self, spec.name), _expected(spec, self))
            for spec in fields(self)
            if not spec.metadata[VALID](getattr(self, spec.name))
        ]
        if self.minority_not_improving is True and self.window_steps == 0:
            problems.append(
                ParameterProblem(
                    "minority_not_improving",
                    True,
                    "false, or true with window_steps > 0 (the windows it compares; "
                    "window_steps is 0: set it, such as 50)",
                )
            )
        if problems:
            raise ParameterError(problems)


def _expected(spec: Field[Any], parameters: RuleParameters) -> str:
    """What the field accepts, and why this value is not that when the field can say."""
    why = spec.metadata.get(WHY)
    reason = None if why is None else why(getattr(parameters, spec.name))
    accepted_words = str(spec.metadata[ACCEPTED])
    return accepted_words if reason is None else f"{accepted_words}; {reason}"


PARAMETER_NAMES: tuple[str, ...] = tuple(spec.name for spec in fields(RuleParameters))


def accepted(name: str) -> str:
    """What a parameter accepts, in words."""
    return str({spec.name: spec for spec in fields(RuleParameters)}[name].metadata[ACCEPTED])
