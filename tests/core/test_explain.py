"""Explanations against independent numpy: top confusions from sklearn's confusion matrix, and
each mode's verdict from the plain reference checks."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from evaluator.core import (
    ClassImbalanceRule,
    RuleParameters,
    WorkerBatch,
    classes_that_matter,
    confusion_matrix,
    mode_verdict,
    rule_checks,
    top_confusions,
)
from evaluator.core.counts import ClassCounts, FrozenPairs
from tests.core.reference import imbalance_holds, misprediction_holds, sklearn_confusion


def reference_top(matrix: np.ndarray, k: int) -> dict[int, list[tuple[int, int, float]]]:
    """Per row of a confusion matrix: the k largest off-diagonal cells, ties to the lower
    column, as (predicted, count, count / row total)."""
    found: dict[int, list[tuple[int, int, float]]] = {}
    for label in range(matrix.shape[0]):
        row = matrix[label].copy()
        row[label] = 0
        columns = sorted(np.flatnonzero(row).tolist(), key=lambda c: (-row[c], c))[:k]
        if columns:
            total = int(matrix[label].sum())
            found[label] = [(c, int(row[c]), int(row[c]) / total) for c in columns]
    return found


@settings(max_examples=60, deadline=None)
@given(
    st.integers(2, 12).flatmap(
        lambda classes: st.lists(
            st.tuples(st.integers(0, classes - 1), st.integers(0, classes - 1)),
            min_size=1,
            max_size=300,
        ).map(lambda rows: (classes, rows))
    ),
    st.integers(1, 4),
    st.integers(1, 5),
)
def test_top_confusions_are_the_largest_off_diagonal_cells(
    case: tuple[int, list[tuple[int, int]]], k: int, parts: int
) -> None:
    classes, rows = case
    labels = np.array([r[0] for r in rows], dtype=np.int64)
    predicted = np.array([r[1] for r in rows], dtype=np.int64)
    counted = [ClassCounts() for _ in range(parts)]
    for index, chunk in enumerate(np.array_split(np.arange(labels.size), parts)):
        counted[index].add(labels[chunk], predicted[chunk])
    pairs = FrozenPairs.combined([c.confusion.frozen() for c in counted])
    samples = np.bincount(labels, minlength=classes)
    top = top_confusions(pairs, samples, k)
    expected = reference_top(sklearn_confusion(labels.tolist(), predicted.tolist(), classes), k)
    assert {
        label: [(c.predicted, c.count, c.fraction) for c in found] for label, found in top.items()
    } == expected


def test_a_frozen_view_does_not_change_with_later_counts() -> None:
    counts = ClassCounts()
    counts.add(np.array([0, 0, 1]), np.array([1, 2, 0]))
    view = counts.confusion.frozen()
    counts.add(np.array([0] * 5), np.array([2] * 5))
    counts.confusion.compact()
    assert [a.tolist() for a in view.triples] == [[0, 0, 1], [1, 2, 0], [1, 1, 1]]


def test_each_mode_has_its_own_verdict() -> None:
    params = RuleParameters(samples=10, threshold_imbalance=3)
    rule = ClassImbalanceRule(params)
    train = WorkerBatch(
        "w", "TRAIN", {"labels": np.array([0] * 40 + [1] * 4), "predictions": np.zeros(44)}
    )
    evaluation = WorkerBatch(
        "w", "EVAL", {"labels": np.array([0] * 10 + [1] * 10), "predictions": np.zeros(20)}
    )
    rule.evaluate_step(0, [train, evaluation])
    verdicts = {}
    for mode, counts in rule.counts_by_mode.items():
        samples, mispredicted = counts.trimmed()
        verdicts[mode] = mode_verdict(
            rule.checks, samples, mispredicted, samples_required=10, step=0, describe=True
        )
        assert verdicts[mode].holds == {
            "imbalance": imbalance_holds(samples, 3),
            "misprediction": misprediction_holds(samples, mispredicted, 0.7),
        }
    assert verdicts["TRAIN"].holds == {"imbalance": True, "misprediction": True}
    assert verdicts["EVAL"].holds == {"imbalance": False, "misprediction": True}
    assert verdicts["TRAIN"].imbalance_ratio == 10.0
    assert verdicts["EVAL"].current["imbalance"] is None


def test_a_mode_below_samples_has_no_verdict_and_window_checks_are_not_per_mode() -> None:
    params = RuleParameters(samples=30, window_steps=5)
    samples, mispredicted = np.array([20, 1]), np.array([0, 1])
    verdict = mode_verdict(rule_checks(params), samples, mispredicted, samples_required=30, step=3)
    assert (verdict.checks_active, dict(verdict.holds), dict(verdict.current)) == (False, {}, {})
    active = mode_verdict(rule_checks(params), samples, mispredicted, samples_required=5, step=3)
    assert set(active.holds) == {"imbalance", "misprediction"}


@settings(max_examples=60, deadline=None)
@given(
    st.integers(2, 30).flatmap(
        lambda classes: st.tuples(
            st.just(classes),
            st.lists(
                st.tuples(st.integers(0, classes - 1), st.integers(0, classes - 1)),
                min_size=1,
                max_size=300,
            ),
            st.lists(st.integers(0, classes - 1), max_size=3),
            st.integers(1, 12),
        )
    )
)
def test_the_matrix_of_the_classes_that_matter_is_sklearns_restricted_to_them(
    case: tuple[int, list[tuple[int, int]], list[int], int],
) -> None:
    classes, rows, first, limit = case
    labels = np.array([r[0] for r in rows], dtype=np.int64)
    predicted = np.array([r[1] for r in rows], dtype=np.int64)
    counts = ClassCounts()
    counts.add(labels, predicted)
    samples, mispredicted = counts.trimmed()
    pairs = counts.confusion.frozen()
    chosen = classes_that_matter(
        samples, mispredicted, top_confusions(pairs, samples), first=first, limit=limit
    )
    seen = set(np.flatnonzero(samples).tolist())
    assert len(chosen) == min(limit, len(seen))
    assert list(chosen) == sorted(chosen)
    assert set(chosen) <= seen
    wanted_first = [c for c in dict.fromkeys(first) if c in seen][:limit]
    assert set(wanted_first) <= set(chosen)
    matrix = confusion_matrix(pairs, samples, mispredicted, chosen)
    reference = sklearn_confusion(labels.tolist(), predicted.tolist(), classes)
    assert matrix.classes == chosen
    assert [list(r) for r in matrix.counts] == reference[np.ix_(chosen, chosen)].tolist()
    inside = reference[np.ix_(chosen, chosen)].sum(axis=1)
    assert list(matrix.other) == (reference[list(chosen)].sum(axis=1) - inside).tolist()


def test_the_classes_that_matter_are_the_findings_then_the_worst_and_their_confusions() -> None:
    # class 3 is the worst and mostly predicted as 5; class 0 is the largest
    labels = np.array([0] * 50 + [1] * 20 + [2] * 20 + [3] * 10 + [4] * 5 + [5] * 8)
    predicted = labels.copy()
    predicted[70:72] = 1  # class 2: 2 of 20 wrong
    predicted[90:98] = 5  # class 3: 8 of 10 wrong, as 5
    counts = ClassCounts()
    counts.add(labels, predicted)
    samples, mispredicted = counts.trimmed()
    pairs = counts.confusion.frozen()
    chosen = classes_that_matter(
        samples, mispredicted, top_confusions(pairs, samples), first=(0, 4), limit=4
    )
    assert chosen == (0, 3, 4, 5)
