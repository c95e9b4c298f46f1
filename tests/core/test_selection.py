"""Which tensors are the labels and the predictions: the regexes, searched anywhere in a name."""

from __future__ import annotations

from evaluator.core.params import RuleParameters
from evaluator.core.selection import TensorSelector


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
