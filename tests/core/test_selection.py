"""Which tensors are the labels and the predictions: the regexes, searched anywhere in a name."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evaluator.core.params import RuleParameters
from evaluator.core.selection import TensorSelector, name_list


def selector(**params: str) -> TensorSelector:
    parameters = RuleParameters(**params)  # type: ignore[arg-type]
    return TensorSelector(parameters.labels_regex, parameters.predictions_regex)


def test_regexes_match_anywhere_in_the_name() -> None:
    default = selector()
    assert default.wants("labels")
    assert default.wants("train/CrossEntropyLoss_input_1_labels_0")
    assert default.wants("model/predictions:0")
    assert not default.wants("label")
    assert not default.wants("loss")
    anchored = selector(labels_regex="^labels$", predictions_regex="^predictions$")
    assert not anchored.wants("x_labels")
    assert anchored.split(["x_labels", "labels", "predictions"]) == (
        ["labels"],
        ["predictions"],
    )


def test_split_sorts_each_role_by_name() -> None:
    names = ["c_labels", "b_predictions", "a_labels", "loss", "a_predictions", "b_labels"]
    assert selector().split(names) == (
        ["a_labels", "b_labels", "c_labels"],
        ["a_predictions", "b_predictions"],
    )


def test_the_rule_wants_what_its_selector_wants() -> None:
    from evaluator.core import ClassImbalanceRule

    rule = ClassImbalanceRule(RuleParameters(labels_regex="^y$", predictions_regex="^p$"))
    assert [rule.wants(name) for name in ("y", "p", "xy", "loss")] == [True, True, False, False]


# -- RE2 means what Python's re means, for the patterns tensor names take ---------------------

COMMON_PATTERNS = (
    # the defaults, README's and the tests'
    ".*labels",
    ".*predictions",
    r"loss\d+_input_1$",
    r"loss\d+_input_0$",
    "labels_0$",
    "^labels$",
    "^y$",
    "^y_hat$",
    r"outputs/\d+",
    "CrossEntropyLoss_input_1",
    "smdebug_y$",
    "smdebug_y_pred",
    "targets$",
    "preds",
    "y",
    # and what else operators write
    "(?i)LABELS",
    "labels|targets",
    r"^model/.+/labels:\d+$",
    r"\blabels\b",
    "[Ll]abels?_[0-9]{1,2}$",
    r"(?:^|/)y(?:_true)?$",
    r"\Alabels\s*$",
)
NAMES = (
    "",
    "labels",
    "x_labels",
    "label",
    "Labels",
    "LABELS_0",
    "train/CrossEntropyLoss_input_1_labels_0",
    "CrossEntropyLoss_input_0",
    "model/predictions:0",
    "model/dense/labels:0",
    "loss0_input_1",
    "gluon.loss12_input_0",
    "smdebug_y",
    "smdebug_y_pred",
    "outputs/12",
    "targets",
    "y",
    "y_hat",
    "y_true",
    "xy",
    "labels_10",
    "labels_100",
    "labels-0",
    "a labels b",
    "labels \t",
    "aaaa",
)


@pytest.mark.parametrize("pattern", COMMON_PATTERNS)
def test_a_common_pattern_matches_the_names_python_re_matches(pattern: str) -> None:
    chosen = TensorSelector(pattern, pattern)
    assert [chosen.matches("labels", n) for n in NAMES] == [
        re.search(pattern, n) is not None for n in NAMES
    ]


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40))
def test_on_printable_ascii_names_re2_agrees_with_python_re(name: str) -> None:
    for pattern in COMMON_PATTERNS:
        chosen = TensorSelector(pattern, ".*predictions")
        assert chosen.matches("labels", name) is (re.search(pattern, name) is not None), pattern


# The differences left, held here so that a change of them is seen (README lists them).
DIFFERENCES = (
    pytest.param(r"labels_\d$", "labels_\u0663", id="digit_is_ascii"),  # ARABIC-INDIC THREE
    pytest.param(r"^\w+_labels$", "étiquette_labels", id="word_is_ascii"),
    pytest.param(r"labels\s", "labels\u00a0", id="space_is_ascii"),  # NO-BREAK SPACE
    pytest.param("labels$", "labels\n", id="dollar_only_at_the_end"),
)


@pytest.mark.parametrize(("pattern", "name"), DIFFERENCES)
def test_where_re2_differs_from_python_it_matches_less(pattern: str, name: str) -> None:
    assert re.search(pattern, name) is not None
    assert not TensorSelector(pattern, pattern).wants(name)


def test_a_name_with_a_lone_surrogate_is_matched_not_an_error() -> None:
    """An index file's JSON can spell one (``"\\ud800"``): strict UTF-8 cannot encode it."""
    assert selector().wants("\ud800_labels")
    assert not selector().wants("\udcff")


def test_the_names_a_message_lists_are_bounded() -> None:
    names = [f"tensor_{i}" for i in range(60)] + ["x" * 5000]
    listed = name_list(names)
    assert listed.startswith("'tensor_0', 'tensor_1'")
    assert listed.endswith("and 11 more")
    assert name_list(["x" * 5000], quote=False) == "x" * 200 + "... (5,000 characters in all)"
    message = selector().missing_message("labels", ["loss", "predictions"])
    assert message == "no tensor matching labels_regex '.*labels' among ['loss', 'predictions']"
