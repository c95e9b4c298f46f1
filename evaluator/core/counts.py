"""Additive per-class counts: samples, mispredicted, and the confusion between classes.

Every field is a sum, so the counts of two workers, two modes, two halves of a run or a
checkpoint and what came after it merge by addition, and the order of merging does not matter
(torchmetrics' lesson: states declare their reduction, here always "sum").

Absent classes: a class with no labelled sample has ``samples == 0`` and no misprediction
fraction; the checks leave it out rather than treating it as 0 or NaN.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

IntArray = npt.NDArray[np.int64]

_PAIR_SHIFT = 32  # a pair key is label << 32 | predicted; class indices stay below 2**31
CLASS_ID_LIMIT = 1 << (_PAIR_SHIFT - 1)
"""Class ids are below this, 2**31, the largest ``max_classes``: a saved state (``from_dict``)
with one at or above it, whose pair keys would run into the other id, or a negative one, which
would index counts from their end, is refused."""
_COMPACT_AFTER = 1 << 16  # pending pair keys folded in once this many accumulate
_DENSE_PAIRS = 1 << 20
"""Buffered pairs over at most this many (label, predicted) cells are counted with one
bincount rather than sorted: tens or hundreds of classes, nearly every trial."""


def _grow(array: IntArray, size: int) -> IntArray:
    if size <= array.shape[0]:
        return array
    grown = np.zeros(max(size, 2 * array.shape[0]), dtype=np.int64)
    grown[: array.shape[0]] = array
    return grown


@dataclass
class PairCounts:
    """Sparse counts of (label, predicted) pairs where the two differ.

    Sparse because a 20,000-class model has 4e8 possible pairs but few occur; the diagonal is
    not stored (it is samples - mispredicted). New pairs are buffered and folded in batches so
    a step costs an append, not a re-sort.
    """

    keys: IntArray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    counts: IntArray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    _pending: list[IntArray] = field(default_factory=list)
    _pending_size: int = 0

    def add(self, labels: IntArray, predicted: IntArray) -> None:
        if labels.size == 0:
            return
        self._pending.append((labels << _PAIR_SHIFT) | predicted)
        self._pending_size += labels.size
        if self._pending_size >= _COMPACT_AFTER:
            self.compact()

    def compact(self) -> None:
        """Fold the buffered pairs into the sorted unique keys."""
        if not self._pending:
            return
        new_keys = np.concatenate(self._pending)
        self._pending.clear()
        self._pending_size = 0
        labels, predicted = new_keys >> _PAIR_SHIFT, new_keys & ((1 << _PAIR_SHIFT) - 1)
        width = int(max(labels.max(), predicted.max())) + 1
        if width * width > _DENSE_PAIRS:
            self._fold(new_keys, np.ones(new_keys.size, dtype=np.int64))
            return
        # A sort of every buffered pair costs ten times this count over the dense cells, whose
        # non-zero cells come out in key order (label-major, then predicted).
        dense = np.bincount(labels * width + predicted, minlength=width * width)
        cells = np.flatnonzero(dense)
        keys = ((cells // width) << _PAIR_SHIFT) | (cells % width)
        self._fold(keys, dense[cells])

    def merge(self, other: PairCounts) -> None:
        other.compact()
        self.compact()
        self._fold(other.keys, other.counts)

    def _fold(self, keys: IntArray, counts: IntArray) -> None:
        self.keys, self.counts = _summed([self.keys, keys], [self.counts, counts])

    def frozen(self) -> FrozenPairs:
        """An immutable view of these counts as of now, without folding the buffered pairs
        (a snapshot every 50 ms must not sort them): folded arrays are replaced, never changed
        in place, so holding them and the buffered arrays is a copy."""
        return FrozenPairs(self.keys, self.counts, tuple(self._pending))

    def triples(self) -> tuple[IntArray, IntArray, IntArray]:
        """(labels, predicted, counts), sorted by label then predicted."""
        self.compact()
        return _split(self.keys, self.counts)

    def row(self, label: int) -> dict[int, int]:
        """How often ``label`` was predicted as each other class."""
        self.compact()
        low = np.searchsorted(self.keys, label << _PAIR_SHIFT)
        high = np.searchsorted(self.keys, (label + 1) << _PAIR_SHIFT)
        mask = (1 << _PAIR_SHIFT) - 1
        return {
            int(k & mask): int(c)
            for k, c in zip(self.keys[low:high], self.counts[low:high], strict=True)
        }


@dataclass(frozen=True)
class FrozenPairs:
    """(label, predicted) pair counts as of one moment, folded when first read."""

    keys: IntArray
    counts: IntArray
    pending: tuple[IntArray, ...] = ()

    @functools.cached_property
    def folded(self) -> tuple[IntArray, IntArray]:
        """(sorted unique keys, counts) with the buffered pairs folded in."""
        if not self.pending:
            return self.keys, self.counts
        new = np.concatenate(self.pending)
        return _summed([self.keys, new], [self.counts, np.ones(new.size, dtype=np.int64)])

    @property
    def triples(self) -> tuple[IntArray, IntArray, IntArray]:
        """(labels, predicted, counts), sorted by label then predicted."""
        return _split(*self.folded)

    @classmethod
    def combined(cls, parts: Sequence[FrozenPairs]) -> FrozenPairs:
        """The sum of several pair counts (the modes'), folded."""
        if len(parts) == 1:
            return parts[0]
        folded = [part.folded for part in parts]
        return cls(*_summed([keys for keys, _ in folded], [counts for _, counts in folded]))


def _summed(keys: Sequence[IntArray], counts: Sequence[IntArray]) -> tuple[IntArray, IntArray]:
    """Sorted unique pair keys and their summed counts, from several (keys, counts) parts."""
    if not keys:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    unique, inverse = np.unique(np.concatenate(keys), return_inverse=True)
    weights = np.concatenate(counts)
    return unique, np.bincount(inverse, weights=weights, minlength=unique.size).astype(np.int64)


def _split(keys: IntArray, counts: IntArray) -> tuple[IntArray, IntArray, IntArray]:
    """(labels, predicted, counts) of pair keys."""
    return keys >> _PAIR_SHIFT, keys & ((1 << _PAIR_SHIFT) - 1), counts


DENSE_CLASSES = 1 << 14
"""Class indices below which per-class counts are always kept dense (index = class): 256 KiB
for the two arrays, and no sort of the labels (a chunk's columns are then the classes)."""
DENSE_RATIO = 4
"""Above ``DENSE_CLASSES``, counts stay dense while the largest index is at most this many
times the classes seen: a dense 20,000-class model keeps its fast path, one label of 999,999
beside ten small classes does not make every array a million wide."""


def dense_enough(top: int, seen: int) -> bool:
    """Whether per-class arrays ``top`` wide are fine for ``seen`` distinct classes."""
    return top <= DENSE_CLASSES or top <= DENSE_RATIO * seen


def is_identity(classes: IntArray) -> bool:
    """Whether sorted distinct class ids are 0, 1, ..., n - 1 (columns are classes)."""
    return classes.size == 0 or int(classes[-1]) == classes.size - 1


def column_of(classes: IntArray | None, class_id: int, width: int) -> int | None:
    """The column of ``class_id`` among sorted ids ``classes`` (None: the column is the
    class, below ``width``), or None when it has none."""
    if classes is None:
        return class_id if 0 <= class_id < width else None
    column = int(np.searchsorted(classes, class_id))
    return column if column < classes.size and int(classes[column]) == class_id else None


def aligned(classes: IntArray, values: IntArray, columns: IntArray) -> IntArray:
    """``values`` of sorted ``classes`` placed at their columns of sorted ``columns`` (which
    hold every one of ``classes``, so that as many columns are the same classes); 0
    elsewhere."""
    out = np.zeros(columns.size, dtype=np.int64)
    if classes.size == columns.size:  # the same classes
        out[:] = values
    elif is_identity(columns):
        out[classes] = values
    else:
        out[np.searchsorted(columns, classes)] = values
    return out


@dataclass
class ClassCounts:
    """Per-class samples and mispredictions plus the off-diagonal confusion pairs.

    Dense (``classes`` None: index = class) while the largest index is small or near the
    classes seen; sparse once it is far above them (``dense_enough``): ``classes`` then holds
    the sorted ids of the classes seen and the two arrays their counts, so memory follows the
    classes seen, never the largest index (a label of 999,999 beside ten small classes).
    """

    samples: IntArray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    mispredicted: IntArray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    confusion: PairCounts = field(default_factory=PairCounts)
    total: int = 0
    classes: IntArray | None = None
    """Sparse: the class id of each entry of ``samples`` (sorted, each with a sample); None:
    dense."""
    _size: int = -1
    """Cached ``num_classes``; -1 until computed (the arrays may be given at construction)."""

    @property
    def num_classes(self) -> int:
        """One past the largest class index with a sample."""
        if self._size < 0:
            if self.classes is not None:
                self._size = int(self.classes[-1]) + 1 if self.classes.size else 0
            else:
                nonzero = np.flatnonzero(self.samples)
                self._size = int(nonzero[-1]) + 1 if nonzero.size else 0
        return self._size

    @property
    def sparse(self) -> bool:
        return self.classes is not None

    def add(self, labels: IntArray, predicted: IntArray) -> None:
        """Count valid rows: both arrays hold class indices in [0, max_classes)."""
        if labels.size == 0:
            return
        top = int(labels.max()) + 1
        if self.classes is None and top > max(self.samples.shape[0], DENSE_CLASSES):
            beyond = labels[labels >= self.samples.shape[0]]
            seen = int(np.count_nonzero(self.samples)) + int(np.unique(beyond).size)
            if not dense_enough(top, seen):
                self._to_sparse()
        wrong = labels != predicted
        wrong_labels = labels[wrong] if wrong.any() else None
        if self.classes is not None:
            self._add_sparse(labels, wrong_labels)
        else:
            self._size = max(self.num_classes, top)
            self.samples = _grow(self.samples, top)
            self.mispredicted = _grow(self.mispredicted, top)
            _accumulate(self.samples, labels)
            if wrong_labels is not None:
                _accumulate(self.mispredicted, wrong_labels)
        if wrong_labels is not None:
            self.confusion.add(wrong_labels, predicted[wrong])
        self.total += int(labels.size)

    def _to_sparse(self) -> None:
        """Keep only the classes seen, with their ids (``_to_dense`` is the way back)."""
        seen = np.flatnonzero(self.samples)
        self.classes = seen.astype(np.int64)
        self.samples = self.samples[seen].copy()
        self.mispredicted = self.mispredicted[seen].copy()

    def _add_sparse(self, labels: IntArray, wrong_labels: IntArray | None) -> None:
        """Count labels into sparse counts (``wrong_labels``: those mispredicted; None: none)."""
        new, new_samples = np.unique(labels, return_counts=True)
        new_wrong = np.zeros(new.size, dtype=np.int64)
        if wrong_labels is not None:
            wrong_classes, wrong_counts = np.unique(wrong_labels, return_counts=True)
            new_wrong[np.searchsorted(new, wrong_classes)] = wrong_counts
        self._fold_sparse(new, new_samples.astype(np.int64), new_wrong)

    def _fold_sparse(self, classes: IntArray, samples: IntArray, mispredicted: IntArray) -> None:
        """Add sorted distinct ``classes``' counts into the sparse arrays."""
        assert self.classes is not None
        keep = samples > 0
        if not keep.all():
            classes, samples, mispredicted = classes[keep], samples[keep], mispredicted[keep]
        union = np.union1d(self.classes, classes)
        if union.size != self.classes.size:
            self.samples = aligned(self.classes, self.samples, union)
            self.mispredicted = aligned(self.classes, self.mispredicted, union)
            self.classes = union
        where = np.searchsorted(self.classes, classes)
        self.samples[where] += samples
        self.mispredicted[where] += mispredicted
        self._size = int(self.classes[-1]) + 1 if self.classes.size else 0
        if self._size <= DENSE_CLASSES or 2 * self._size <= DENSE_RATIO * self.classes.size:
            self._to_dense()  # filled in since (a dense model's first labels were few)

    def _to_dense(self) -> None:
        """Index = class again, once the classes seen fill the range (half the ratio that
        made them sparse, so that a trial near the line does not switch back and forth)."""
        assert self.classes is not None
        size = self.num_classes
        samples, mispredicted = np.zeros(size, np.int64), np.zeros(size, np.int64)
        samples[self.classes] = self.samples
        mispredicted[self.classes] = self.mispredicted
        self.samples, self.mispredicted, self.classes = samples, mispredicted, None

    def merge(self, other: ClassCounts) -> None:
        """Add ``other`` into these counts."""
        if self.classes is None and other.classes is None:
            size = max(self.samples.shape[0], other.samples.shape[0])
            self.samples = _grow(self.samples, size)
            self.mispredicted = _grow(self.mispredicted, size)
            self.samples[: other.samples.shape[0]] += other.samples
            self.mispredicted[: other.mispredicted.shape[0]] += other.mispredicted
            self.confusion.merge(other.confusion)
            self.total += other.total
            self._size = max(self.num_classes, other.num_classes)
            return
        if self.classes is None:
            self._to_sparse()
        self._fold_sparse(*other.columns())
        self.confusion.merge(other.confusion)
        self.total += other.total

    def columns(self) -> tuple[IntArray, IntArray, IntArray]:
        """(class ids, samples, mispredicted): dense, every index below ``num_classes``;
        sparse, the classes seen. Views, not copies."""
        if self.classes is not None:
            return self.classes, self.samples, self.mispredicted
        size = self.num_classes
        return np.arange(size, dtype=np.int64), self.samples[:size], self.mispredicted[:size]

    def trimmed(self) -> tuple[IntArray, IntArray]:
        """(samples, mispredicted) indexed by class, cut to ``num_classes`` entries: a dense
        view for small trials and tests (sparse counts are spread out, up to the largest
        index); the evaluation itself reads ``columns``."""
        if self.classes is not None:
            size = self.num_classes
            samples = np.zeros(size, dtype=np.int64)
            mispredicted = np.zeros(size, dtype=np.int64)
            samples[self.classes] = self.samples
            mispredicted[self.classes] = self.mispredicted
            return samples, mispredicted
        size = self.num_classes
        return self.samples[:size], self.mispredicted[:size]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form for checkpoints; ``from_dict`` restores it exactly. Dense counts
        keep the dense form older versions wrote; sparse ones add ``classes``, the id of each
        entry (a checkpoint of one label of 999,999 holds one entry, not a million)."""
        labels, predicted, counts = self.confusion.triples()
        confusion = [labels.tolist(), predicted.tolist(), counts.tolist()]
        if self.classes is not None:
            return {
                "classes": self.classes.tolist(),
                "samples": self.samples.tolist(),
                "mispredicted": self.mispredicted.tolist(),
                "confusion": confusion,
            }
        samples, mispredicted = self.trimmed()
        return {
            "samples": samples.tolist(),
            "mispredicted": mispredicted.tolist(),
            "confusion": confusion,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ClassCounts:
        """The counts ``to_dict`` saved; ValueError for a state it cannot have written: class
        ids (``classes``, the confusion's labels and predictions) that are negative or at least
        ``CLASS_ID_LIMIT``, sparse ids not strictly increasing or not one per count."""
        samples = np.asarray(data["samples"], dtype=np.int64)
        mispredicted = np.asarray(data["mispredicted"], dtype=np.int64)
        if "classes" in data:
            classes = _class_ids(data["classes"], "sparse class ids")
            _check_sparse_ids(classes, samples.size, mispredicted.size)
            keep = samples > 0
            restored = cls(
                samples=samples[keep], mispredicted=mispredicted[keep], classes=classes[keep]
            )
        else:
            restored = cls(samples=samples, mispredicted=mispredicted)
            if not dense_enough(samples.size, int(np.count_nonzero(samples))):
                restored._to_sparse()  # an older version's state of huge, sparse indices
        restored.total = int(restored.samples.sum())
        restored.confusion.keys, restored.confusion.counts = _pair_keys(data["confusion"])
        return restored


def _class_ids(values: Any, what: str) -> IntArray:
    """``values`` as class ids, each within [0, ``CLASS_ID_LIMIT``); ValueError naming
    ``what`` otherwise."""
    ids = np.asarray(values)
    if ids.ndim == 1 and ids.size == 0:
        return np.zeros(0, dtype=np.int64)
    if ids.ndim != 1 or ids.dtype.kind not in "iu":
        raise ValueError(
            f"expected {what} to be a list of whole numbers within [0, 2**31), but got "
            f"{str(values)[:80]}"
        )
    outside = (ids < 0) | (ids >= CLASS_ID_LIMIT)
    if outside.any():
        raise ValueError(
            f"expected {what} within [0, 2**31), the class indices max_classes allows, but got "
            f"{int(ids[outside][0])}"
        )
    return ids.astype(np.int64)


def _check_sparse_ids(classes: IntArray, samples: int, mispredicted: int) -> None:
    """ValueError unless ``classes`` name one count each and increase strictly."""
    if classes.size != samples or classes.size != mispredicted:
        raise ValueError(
            "expected sparse class counts with one sorted, distinct class id per count, but "
            f"got {classes.size} ids for {samples} counts"
        )
    unordered = np.flatnonzero(np.diff(classes) <= 0)
    if unordered.size:
        at = int(unordered[0])
        raise ValueError(
            "expected sparse class counts with one sorted, distinct class id per count, but "
            f"id {int(classes[at + 1])} follows {int(classes[at])}"
        )


def _pair_keys(confusion: Sequence[Any]) -> tuple[IntArray, IntArray]:
    """(pair keys, counts) of saved confusion triples (labels, predicted, counts)."""
    labels, predicted, counts = confusion
    labels = _class_ids(labels, "the confusion's labels")
    predicted = _class_ids(predicted, "the confusion's predicted classes")
    counts = np.asarray(counts, dtype=np.int64)
    if not labels.size == predicted.size == counts.size:
        raise ValueError(
            f"expected as many confusion labels, predicted classes and counts, but got "
            f"{labels.size}, {predicted.size} and {counts.size}"
        )
    keys = (labels << _PAIR_SHIFT) | predicted
    if bool(np.any(np.diff(keys) <= 0)):
        raise ValueError("expected confusion pairs sorted by label, then predicted, each once")
    return keys, counts


def _accumulate(target: IntArray, classes: IntArray) -> None:
    """target[c] += occurrences of c; bincount when dense, add.at when classes are many."""
    if target.shape[0] <= 8 * classes.size:
        counted = np.bincount(classes)
        target[: counted.shape[0]] += counted
    else:
        np.add.at(target, classes, 1)
