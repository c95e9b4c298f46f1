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


def test_the_batch_axis_is_never_the_class_axis() -> None:
    """Three sequences of three tokens, three classes: axes 0, 1 and 2 all fit the shapes, but
    axis 0 is the batch, so only 1 and 2 are offered."""
    labels = RNG.integers(0, 3, (3, 3))
    logits = RNG.standard_normal((3, 3, 3)).astype(np.float32)
    assert counts(evaluate(labels, logits)) == reference(labels, logits.argmax(axis=-1), 3)
    rule = ClassImbalanceRule(RuleParameters(samples=0, argmax=True, class_axis=0))
    rule.evaluate_step(0, [WorkerBatch("w", "TRAIN", {"labels": labels, "predictions": logits})])
    assert dict(rule.skipped_batches) == {"ambiguous_class_axis": 1}
    assert "axis 1 or 2;" in rule.problem_examples["ambiguous_class_axis"]


def test_dense_scores_without_classes_are_refused() -> None:
    rule = ClassImbalanceRule(RuleParameters(samples=0, argmax=True))
    labels, logits = np.zeros((2, 3), np.int64), np.zeros((2, 3, 0), np.float32)
    rule.evaluate_step(0, [WorkerBatch("w", "TRAIN", {"labels": labels, "predictions": logits})])
    assert dict(rule.skipped_batches) == {"unsupported_predictions_shape": 1}
    assert "at least one class" in rule.problem_examples["unsupported_predictions_shape"]


SAME_SHAPE_PAIRS = {
    # labels whose rows look one-hot, beside what -> read per element?
    "token_indices": (np.array([[0, 1, 0], [1, 0, 0]]), np.array([[0, 2, 1], [1, 1, 0]]), True),
    "score_rows": (
        np.array([[0, 1, 0], [1, 0, 0]]),
        np.array([[0.1, 0.8, 0.1], [0.5, 0.2, 0.3]]),
        False,
    ),
    "one_hot_predictions": (np.eye(3)[[1, 0]], np.eye(3, dtype=np.int64)[[2, 0]], False),
}


@pytest.mark.parametrize("case", SAME_SHAPE_PAIRS.values(), ids=SAME_SHAPE_PAIRS.keys())
def test_same_shape_pairs_are_read_per_element_unless_both_are_rows(case: Any) -> None:
    labels, predictions, per_element = case
    rule = evaluate(labels, predictions)
    if per_element:
        assert counts(rule) == reference(labels, predictions, 3)
    else:
        truth, guess = np.argmax(labels, axis=1), np.argmax(predictions, axis=1)
        assert counts(rule) == reference(truth, guess, 3)


def batch(labels: Any, predictions: Any) -> WorkerBatch:
    return WorkerBatch("w", "TRAIN", {"labels": np.asarray(labels), "predictions": predictions})


def test_whole_number_scores_after_the_form_is_known_are_still_binary_scores() -> None:
    """Logits 2.0 and -1.0, or saturated probabilities 1.0 and 0.0, once the trial's scores are
    known to be binary, are scores, not class indices 2 and -1."""
    rule = ClassImbalanceRule(RuleParameters(samples=0))
    rule.evaluate_steps(
        [(0, [batch([0, 1], np.array([-3.5, 2.5]))]), (1, [batch([1, 0], np.array([2.0, -1.0]))])]
    )
    assert rule.binary_form == "logit"
    assert counts(rule) == ([2, 2], [0, 0])
    saturated = ClassImbalanceRule(RuleParameters(samples=0))
    saturated.evaluate_steps(
        [
            (0, [batch([0, 1], np.array([0.25, 0.75], np.float32))]),
            (1, [batch([1, 0], np.array([1.0, 0.0], np.float32))]),
        ]
    )
    assert counts(saturated) == ([2, 2], [0, 0])
    assert saturated.skipped_rows == {}


def test_binary_scores_against_labels_of_a_third_class_are_refused_and_decide_nothing() -> None:
    rule = ClassImbalanceRule(RuleParameters(samples=0))
    rule.evaluate_steps(
        [
            (0, [batch([0, 1, 2], np.array([-3.0, 0.5, 2.0]))]),
            (1, [batch([0, 1], np.array([0.2, 0.7]))]),
        ]
    )
    assert dict(rule.skipped_batches) == {"binary_predictions_for_multiclass_labels": 1}
    message = rule.problem_examples["binary_predictions_for_multiclass_labels"]
    assert "class 0 or 1 only" in message
    assert "3 or more classes" in message
    assert rule.binary_form == "probability", "the refused logits did not decide the form"
    assert counts(rule) == ([1, 1], [0, 0])


def test_an_ignored_third_class_label_does_not_refuse_binary_scores() -> None:
    rule = evaluate(np.array([0, 1, 7]), np.array([0.2, 0.7, 0.9]), ignore_index=7)
    assert counts(rule) == ([1, 1], [0, 0])


@pytest.mark.parametrize("cells", [1, 3, 1 << 21])
def test_the_binary_form_carries_across_chunks(cells: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """However the rule cuts the steps into chunks, the form the first batch decided holds."""
    from evaluator.core import progress

    monkeypatch.setattr(progress, "CHUNK_CELLS", cells)
    first = [(0, [batch([0, 1, 1], np.array([-2.0, 3.0, 0.4]))])]
    later = [(step, [batch([0, 1, 0], np.array([0.3, 0.9, -0.2]))]) for step in range(1, 6)]
    rule = ClassImbalanceRule(RuleParameters(samples=0))
    rule.evaluate_steps(first + later)
    # as logits: 0.4 -> 1, 0.3 -> 1 (wrong for label 0), 0.9 -> 1, -0.2 -> 0
    assert rule.binary_form == "logit"
    assert counts(rule) == ([1 + 10, 2 + 5], [0 + 5, 0])
