"""Dense predictions and binary scores through the rule, against plain numpy references."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from evaluator.core import ClassImbalanceRule, RuleParameters, WorkerBatch

RNG = np.random.default_rng(11)


def counts(rule: ClassImbalanceRule) -> tuple[list[int], list[int]]:
    samples, mispredicted = rule.combined_counts()
    return samples.tolist(), mispredicted.tolist()


def reference(
    labels: Any, predicted: Any, classes: int, ignore: int = -100
) -> tuple[list[int], list[int]]:
    """Per-class samples and mispredictions of every labelled element, with numpy alone."""
    labels, predicted = np.asarray(labels).reshape(-1), np.asarray(predicted).reshape(-1)
    keep = labels != ignore
    labels, predicted = labels[keep], predicted[keep]
    samples = np.bincount(labels, minlength=classes)
    wrong = np.bincount(labels[labels != predicted], minlength=classes)
    top = int(np.flatnonzero(samples).max()) + 1
    return samples[:top].tolist(), wrong[:top].tolist()


def evaluate(labels: Any, predictions: Any, **params: Any) -> ClassImbalanceRule:
    rule = ClassImbalanceRule(RuleParameters(**{"samples": 0, "argmax": True, **params}))
    batch = WorkerBatch("w", "TRAIN", {"labels": labels, "predictions": predictions})
    result = rule.evaluate_step(0, [batch])
    assert result.skipped_batches == 0, rule.problem_examples
    return rule


def test_tokens_with_padding() -> None:
    labels = RNG.integers(0, 4, (3, 7))
    labels[0, 5:] = -100
    labels[2, 2:] = -100
    logits = RNG.standard_normal((3, 7, 4)).astype(np.float32)
    rule = evaluate(labels, logits)
    assert counts(rule) == reference(labels, logits.argmax(axis=-1), 4)
    assert rule.ignored == 2 + 5


def test_pixels_channels_first() -> None:
    labels = RNG.integers(0, 3, (2, 4, 5))
    logits = RNG.standard_normal((2, 3, 4, 5)).astype(np.float32)
    assert counts(evaluate(labels, logits)) == reference(labels, logits.argmax(axis=1), 3)


def test_pixels_channels_last() -> None:
    labels = RNG.integers(0, 3, (2, 4, 5))
    logits = RNG.standard_normal((2, 4, 5, 3)).astype(np.float32)
    assert counts(evaluate(labels, logits)) == reference(labels, logits.argmax(axis=-1), 3)


@pytest.mark.parametrize("class_axis", [1, -1])
def test_an_ambiguous_class_axis_follows_the_setting(class_axis: int) -> None:
    """Three classes on 3 x 3 images: any of three axes could hold them."""
    labels = RNG.integers(0, 3, (2, 3, 3))
    logits = RNG.standard_normal((2, 3, 3, 3)).astype(np.float32)
    rule = evaluate(labels, logits, class_axis=class_axis)
    assert counts(rule) == reference(labels, logits.argmax(axis=class_axis), 3)


def test_a_class_axis_the_shapes_rule_out_is_refused_with_the_choices() -> None:
    rule = ClassImbalanceRule(RuleParameters(samples=0, argmax=True, class_axis=0))
    labels = RNG.integers(0, 3, (2, 3, 3))
    logits = RNG.standard_normal((2, 3, 3, 3))
    rule.evaluate_step(0, [WorkerBatch("w", "TRAIN", {"labels": labels, "predictions": logits})])
    assert dict(rule.skipped_batches) == {"ambiguous_class_axis": 1}
    assert "axis 1 or 2 or 3" in rule.problem_examples["ambiguous_class_axis"]


def test_scores_of_other_tokens_are_refused() -> None:
    rule = ClassImbalanceRule(RuleParameters(samples=0, argmax=True))
    labels, logits = RNG.integers(0, 3, (2, 5)), RNG.standard_normal((2, 6, 3))
    rule.evaluate_step(0, [WorkerBatch("w", "TRAIN", {"labels": labels, "predictions": logits})])
    assert dict(rule.skipped_batches) == {"dense_shape_mismatch": 1}


def test_token_class_indices_and_per_token_binary_logits() -> None:
    labels = RNG.integers(0, 2, (4, 6))
    indices = RNG.integers(0, 2, (4, 6))
    assert counts(evaluate(labels, indices)) == reference(labels, indices, 2)
    logits = RNG.standard_normal((4, 6, 1)).astype(np.float32) * 3
    assert counts(evaluate(labels, logits)) == reference(labels, (logits[..., 0] > 0), 2)


def test_one_hot_label_rows_still_go_with_score_rows() -> None:
    labels = np.eye(3, dtype=np.float32)[[0, 2, 1, 1]]
    scores = RNG.standard_normal((4, 3)).astype(np.float32)
    assert counts(evaluate(labels, scores)) == reference([0, 2, 1, 1], scores.argmax(axis=1), 3)


# -- binary models -------------------------------------------------------------------------------

BINARY_MODELS = {
    # what the hook saves -> (labels, scores, probabilities of class 1)
    "xgboost_binary_logistic": (np.array([0, 1, 1, 0, 1.0]), np.array([0.1, 0.7, 0.4, 0.6, 0.9])),
    "torch_bce_with_logits": (
        np.array([[0], [1], [1], [0]]),
        np.array([[-2.0], [1.5], [-0.3], [0.2]]),
    ),
    "keras_sigmoid": (np.array([[0.0], [1.0], [1.0]]), np.array([[0.2], [0.9], [0.3]], np.float32)),
}


@pytest.mark.parametrize("case", BINARY_MODELS.values(), ids=BINARY_MODELS.keys())
def test_binary_models_count_class_1_above_the_threshold(case: tuple[Any, Any]) -> None:
    labels, scores = case
    values = np.asarray(scores, dtype=np.float64).reshape(-1)
    logits = (values < 0).any() or (values > 1).any()
    probabilities = 1 / (1 + np.exp(-values)) if logits else values
    rule = evaluate(labels, scores, argmax=False)
    truth = np.asarray(labels).reshape(-1).astype(int)
    assert counts(rule) == reference(truth, (probabilities > 0.5).astype(int), 2)
    assert rule.binary_form == ("logit" if logits else "probability")


def test_logits_that_happen_to_lie_in_0_1_stay_logits_for_the_trial() -> None:
    rule = ClassImbalanceRule(RuleParameters(samples=0))
    first = WorkerBatch(
        "w", "TRAIN", {"labels": np.array([0, 1]), "predictions": np.array([-3.5, 2.5])}
    )
    later = WorkerBatch(
        "w", "TRAIN", {"labels": np.array([0, 0]), "predictions": np.array([0.2, 0.4])}
    )
    rule.evaluate_steps([(0, [first]), (1, [later])])
    assert rule.binary_form == "logit"
    assert counts(rule) == ([3, 1], [2, 0]), "0.2 and 0.4 are logits above 0: class 1"
    resumed = ClassImbalanceRule.from_state(rule.params, rule.to_state())
    resumed.evaluate_step(2, [later])
    assert counts(resumed) == ([5, 1], [4, 0]), "a resumed run reads them alike"


def test_the_form_can_be_set_for_a_trial_whose_first_logits_lie_in_0_1() -> None:
    rule = ClassImbalanceRule(RuleParameters(samples=0, binary_scores="logit"))
    batch = WorkerBatch(
        "w", "TRAIN", {"labels": np.array([1, 1]), "predictions": np.array([0.2, 0.4])}
    )
    rule.evaluate_step(0, [batch])
    assert counts(rule) == ([0, 2], [0, 0])
