"""Why a class fails: what it is mistaken for, and each mode's verdict on its own counts.

The counts already hold the answer to a user's first question about a failing class, "what is
it predicted as instead?": the off-diagonal pairs (``counts.PairCounts``). ``top_confusions``
ranks them per class in one vectorised pass, so a status over 1,000 classes costs a sort of the
pairs, not a loop. ``mode_verdicts`` applies the cumulative checks to each mode's counts alone:
TRAIN says whether the training data is balanced, EVAL whether the model generalises for the
rare classes; the combined verdict, over every mode, still decides the exit code.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from evaluator.core.checks import (
    Check,
    Finding,
    Tallies,
    class_of,
    describe_current,
    holds_now,
    imbalance_ratio,
    uses_window,
)
from evaluator.core.counts import FrozenPairs, column_of

IntArray = npt.NDArray[np.int64]

TOP_CONFUSIONS = 3
"""Classes listed per class as what it was most often predicted as."""


@dataclass(frozen=True)
class Confusion:
    """How often a class's samples were predicted as one other class."""

    predicted: int
    count: int
    fraction: float
    """count / the class's samples."""


def top_confusions(
    pairs: FrozenPairs,
    samples: IntArray,
    k: int = TOP_CONFUSIONS,
    classes: IntArray | None = None,
) -> dict[int, tuple[Confusion, ...]]:
    """Per class with a misprediction: its ``k`` most frequent wrong predictions, most frequent
    first (ties: the lower class index), with their fraction of the class's samples
    (``classes``: the sorted class id of each entry of ``samples``; None: index = class)."""
    labels, predicted, counts = pairs.triples
    if labels.size == 0:
        return {}
    order = _by_label_then_count(labels, counts)
    labels, predicted, counts = labels[order], predicted[order], counts[order]
    starts = np.flatnonzero(np.r_[True, labels[1:] != labels[:-1]])
    rank = np.arange(labels.size) - np.repeat(starts, np.diff(np.r_[starts, labels.size]))
    keep = rank < k
    labels, predicted, counts = labels[keep], predicted[keep], counts[keep]
    if classes is None:
        found = labels < samples.size
        columns = np.minimum(labels, samples.size - 1)
    else:
        columns = np.minimum(np.searchsorted(classes, labels), classes.size - 1)
        found = classes[columns] == labels if classes.size else np.zeros(labels.size, bool)
    totals = np.where(found, samples[columns] if samples.size else 0, 0)
    result: dict[int, list[Confusion]] = {}
    for label, guess, count, total in zip(
        labels.tolist(), predicted.tolist(), counts.tolist(), totals.tolist(), strict=True
    ):
        fraction = count / total if total else float("nan")
        result.setdefault(label, []).append(Confusion(guess, count, fraction))
    return {label: tuple(found) for label, found in result.items()}


def _by_label_then_count(labels: IntArray, counts: IntArray) -> IntArray:
    """The order by label, then count descending, then predicted class (the pairs come sorted
    by label and predicted class, and the sort is stable): one stable sort of one composite
    key, 6x faster than a three-key lexsort over 200,000 pairs."""
    most = int(counts.max())
    if most < (1 << 31):  # label < 2**31, so label * (most + 1) + most stays below 2**62
        return np.argsort(labels * (most + 1) + (most - counts), kind="stable")
    return np.lexsort((-counts, labels))


@dataclass(frozen=True)
class ModeVerdict:
    """One mode's figures and which checks hold on its counts alone."""

    samples: int
    imbalance_ratio: float | None
    checks_active: bool
    """Whether this mode alone has ``samples`` labels, so that its checks run."""
    holds: Mapping[str, bool]
    """Each cumulative check's verdict on this mode's counts (empty before ``samples``);
    checks over the recent window are evaluated over every mode only."""
    current: Mapping[str, Finding | None]
    """The findings of the checks that hold (described only when asked: a scrape needs
    ``holds`` alone, a status write the findings too)."""


def mode_verdict(
    checks: Sequence[Check],
    samples: IntArray,
    mispredicted: IntArray,
    *,
    samples_required: int,
    step: int | None,
    describe: bool = False,
    classes: IntArray | None = None,
) -> ModeVerdict:
    """The cumulative checks applied to one mode's per-class counts (``classes``: the class
    id of each column, as ``Tallies.classes``)."""
    own = [check for check in checks if not uses_window(check)]
    total = int(samples.sum())
    ratio = imbalance_ratio(samples)
    active = step is not None and total >= samples_required
    tallies = Tallies(samples, mispredicted, None, classes)
    holds = holds_now(own, tallies) if active else {}
    current = describe_current(own, holds, tallies, step) if describe and step is not None else {}
    return ModeVerdict(total, None if ratio is None else ratio[0], active, holds, current)


MATRIX_CLASSES = 12
"""Rows (and columns) of the confusion matrix a report shows: enough for the classes a verdict
is about and what they are mistaken for, few enough to read."""


@dataclass(frozen=True)
class ConfusionMatrix:
    """Labels (rows) against predictions (columns) for a few classes; predictions outside
    them are summed in ``other``."""

    classes: tuple[int, ...]
    counts: tuple[tuple[int, ...], ...]
    """``counts[i][j]``: samples of class ``classes[i]`` predicted as ``classes[j]`` (the
    diagonal: predicted right)."""
    other: tuple[int, ...]
    """Samples of ``classes[i]`` predicted as a class not in the matrix."""


def confusion_matrix(
    pairs: FrozenPairs,
    samples: IntArray,
    mispredicted: IntArray,
    classes: Sequence[int],
    ids: IntArray | None = None,
) -> ConfusionMatrix:
    """The matrix of ``classes`` (each row sums to the class's samples; ``ids``: the sorted
    class id of each entry of ``samples``, None: index = class)."""
    position = {c: i for i, c in enumerate(classes)}
    columns = [column_of(ids, int(c), samples.size) for c in classes]
    size = len(classes)
    cells = np.zeros((size, size), dtype=np.int64)
    for i, column in enumerate(columns):
        cells[i, i] = 0 if column is None else int(samples[column] - mispredicted[column])
    labels, predicted, counts = pairs.triples
    if size and labels.size:
        wanted = np.isin(labels, classes) & np.isin(predicted, classes)
        for label, guess, count in zip(
            labels[wanted].tolist(),
            predicted[wanted].tolist(),
            counts[wanted].tolist(),
            strict=True,
        ):
            cells[position[label], position[guess]] += count
    wrong = [0 if column is None else int(mispredicted[column]) for column in columns]
    other = tuple(w - int(cells[i].sum() - cells[i, i]) for i, w in enumerate(wrong))
    return ConfusionMatrix(tuple(classes), tuple(map(tuple, cells.tolist())), other)


def classes_that_matter(
    samples: IntArray,
    mispredicted: IntArray,
    confusions: Mapping[int, Sequence[Confusion]],
    *,
    first: Sequence[int] = (),
    limit: int = MATRIX_CLASSES,
    ids: IntArray | None = None,
) -> tuple[int, ...]:
    """The classes a reader of the verdict looks at, in index order: ``first`` (the classes
    of the findings), then the worst-predicted with what each is most mistaken for, then the
    largest; at most ``limit``, classes with samples only (``ids``: the sorted class id of
    each entry of the counts, None: index = class)."""
    chosen: dict[int, None] = {}

    def take(c: int) -> None:
        column = column_of(ids, c, samples.size)
        if len(chosen) < limit and column is not None and samples[column] > 0:
            chosen.setdefault(c, None)

    for c in first:
        take(int(c))
    seen = np.flatnonzero(samples)
    fractions = mispredicted[seen] / samples[seen]
    for index in np.lexsort((seen, -fractions)).tolist():
        if len(chosen) >= limit or fractions[index] == 0:
            break
        c = class_of(ids, int(seen[index]))
        take(c)
        for confusion in confusions.get(c, ())[:1]:
            take(confusion.predicted)
    for column in seen[np.lexsort((seen, -samples[seen]))].tolist():
        take(class_of(ids, column))
    return tuple(sorted(chosen))
