"""Independent references for the rule core, written without importing its logic.

* ``sklearn_confusion``: scikit-learn's confusion matrix of the rows that should be counted.
* ``core_confusion``: the full matrix the core implies (diagonal = samples - mispredicted,
  off-diagonal from the sparse confusion triples), to compare with the former.
* ``imbalance_holds`` / ``misprediction_holds``: the two checks in a few lines of plain numpy.
* ``classify_rows``: which rows of an index batch are counted, ignored or skipped (and why).
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from sklearn.metrics import confusion_matrix

from evaluator.core.counts import ClassCounts

IntArray = npt.NDArray[np.int64]


def sklearn_confusion(labels: Sequence[int], predicted: Sequence[int], size: int) -> IntArray:
    """scikit-learn's (size x size) confusion matrix; all zeros when there are no rows."""
    if len(labels) == 0:
        return np.zeros((size, size), dtype=np.int64)
    with warnings.catch_warnings():  # "A single label was found": labels= is given
        warnings.simplefilter("ignore", UserWarning)
        matrix = confusion_matrix(
            np.asarray(labels, dtype=np.int64),
            np.asarray(predicted, dtype=np.int64),
            labels=np.arange(size),
        )
    return np.asarray(matrix, dtype=np.int64)


def core_confusion(counts: ClassCounts, size: int) -> IntArray:
    """The (size x size) matrix held by ``counts``: diagonal from samples - mispredicted."""
    samples, mispredicted = counts.trimmed()
    matrix = np.zeros((size, size), dtype=np.int64)
    labels, predicted, pair_counts = counts.confusion.triples()
    assert np.all(labels != predicted), "the sparse confusion must hold off-diagonal pairs only"
    assert np.all(pair_counts > 0), "the sparse confusion must not hold zero counts"
    assert len(set(zip(labels.tolist(), predicted.tolist(), strict=True))) == labels.size
    matrix[labels, predicted] = pair_counts
    diagonal = np.arange(samples.size)
    matrix[diagonal, diagonal] = samples - mispredicted
    return matrix


def confusion_size(counts: ClassCounts, labels: Sequence[int], predicted: Sequence[int]) -> int:
    """Big enough for every class in the expected rows and in the core's counts."""
    pair_labels, pair_predicted, _ = counts.confusion.triples()
    candidates = [
        counts.samples.shape[0],
        *(int(v) + 1 for v in (*labels, *predicted)),
        *(int(v) + 1 for v in (*pair_labels.tolist(), *pair_predicted.tolist())),
    ]
    return max(candidates, default=0)


def assert_confusion_matches_sklearn(
    counts: ClassCounts, labels: Sequence[int], predicted: Sequence[int]
) -> None:
    size = confusion_size(counts, labels, predicted)
    expected = sklearn_confusion(labels, predicted, size)
    actual = core_confusion(counts, size)
    np.testing.assert_array_equal(actual, expected)
    # And per-class samples / mispredicted as rows of scikit-learn's matrix.
    samples, mispredicted = counts.trimmed()
    expected_samples = expected.sum(axis=1)
    expected_mispredicted = expected_samples - np.diag(expected)
    np.testing.assert_array_equal(_padded(samples, size), expected_samples)
    np.testing.assert_array_equal(_padded(mispredicted, size), expected_mispredicted)
    assert counts.total == len(labels)


def _padded(array: IntArray, size: int) -> IntArray:
    out = np.zeros(size, dtype=np.int64)
    out[: array.size] = array
    return out


def imbalance_holds(samples: npt.ArrayLike, threshold: float) -> bool:
    """largest / smallest count over classes with at least one sample, strictly above."""
    counts = np.asarray(samples, dtype=np.int64)
    seen = counts[counts > 0]
    if seen.size == 0:
        return False
    return bool(float(seen.max()) / float(seen.min()) > threshold)


def misprediction_holds(
    samples: npt.ArrayLike, mispredicted: npt.ArrayLike, threshold: float
) -> bool:
    """Some class with a sample has mispredicted / samples strictly above the threshold."""
    counts = np.asarray(samples, dtype=np.int64)
    wrong = np.asarray(mispredicted, dtype=np.int64)
    seen = counts > 0
    return bool(np.any(wrong[seen] / counts[seen] > threshold))


@dataclass
class RowOutcome:
    """What should become of an index batch's rows (labels and predictions as class indices)."""

    valid: npt.NDArray[np.bool_]
    ignored: int
    skipped: Counter[str]


def classify_rows(
    labels: npt.ArrayLike,
    predicted: npt.ArrayLike,
    *,
    max_classes: int,
    ignore_index: int | None = -100,
) -> RowOutcome:
    """Row-by-row, with the first problem of each row named (label problems before predictions)."""
    skipped: Counter[str] = Counter()
    valid = []
    ignored = 0
    for label, guess in zip(
        np.asarray(labels).tolist(), np.asarray(predicted).tolist(), strict=True
    ):
        if ignore_index is not None and label == ignore_index:
            ignored += 1
            valid.append(False)
        elif label < 0:
            skipped["negative_label"] += 1
            valid.append(False)
        elif label >= max_classes:
            skipped["label_out_of_range"] += 1
            valid.append(False)
        elif not 0 <= guess < max_classes:
            skipped["prediction_out_of_range"] += 1
            valid.append(False)
        else:
            valid.append(True)
    return RowOutcome(np.asarray(valid, dtype=bool), ignored, skipped)
