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


@dataclass
class ClassCounts:
    """Per-class samples and mispredictions plus the off-diagonal confusion pairs."""

    samples: IntArray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    mispredicted: IntArray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    confusion: PairCounts = field(default_factory=PairCounts)
    total: int = 0
    _size: int = -1
    """Cached ``num_classes``; -1 until computed (the arrays may be given at construction)."""

    @property
    def num_classes(self) -> int:
        """One past the largest class index with a sample."""
        if self._size < 0:
            nonzero = np.flatnonzero(self.samples)
            self._size = int(nonzero[-1]) + 1 if nonzero.size else 0
        return self._size

    def add(self, labels: IntArray, predicted: IntArray) -> None:
        """Count valid rows: both arrays hold class indices in [0, max_classes)."""
        if labels.size == 0:
            return
        top = int(labels.max()) + 1
        self._size = max(self.num_classes, top)
        self.samples = _grow(self.samples, top)
        self.mispredicted = _grow(self.mispredicted, top)
        wrong = labels != predicted
        _accumulate(self.samples, labels)
        if wrong.any():
            wrong_labels = labels[wrong]
            _accumulate(self.mispredicted, wrong_labels)
            self.confusion.add(wrong_labels, predicted[wrong])
        self.total += int(labels.size)

    def merge(self, other: ClassCounts) -> None:
        """Add ``other`` into these counts."""
        size = max(self.samples.shape[0], other.samples.shape[0])
        self.samples = _grow(self.samples, size)
        self.mispredicted = _grow(self.mispredicted, size)
        self.samples[: other.samples.shape[0]] += other.samples
        self.mispredicted[: other.mispredicted.shape[0]] += other.mispredicted
        self.confusion.merge(other.confusion)
        self.total += other.total
        self._size = max(self.num_classes, other.num_classes)

    def trimmed(self) -> tuple[IntArray, IntArray]:
        """(samples, mispredicted) cut to ``num_classes`` entries."""
        size = self.num_classes
        return self.samples[:size], self.mispredicted[:size]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form for checkpoints; ``from_dict`` restores it exactly."""
        samples, mispredicted = self.trimmed()
        labels, predicted, counts = self.confusion.triples()
        return {
            "samples": samples.tolist(),
            "mispredicted": mispredicted.tolist(),
            "confusion": [labels.tolist(), predicted.tolist(), counts.tolist()],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ClassCounts:
        restored = cls(
            samples=np.asarray(data["samples"], dtype=np.int64),
            mispredicted=np.asarray(data["mispredicted"], dtype=np.int64),
        )
        restored.total = int(restored.samples.sum())
        labels, predicted, counts = (np.asarray(v, dtype=np.int64) for v in data["confusion"])
        restored.confusion.keys = (labels << _PAIR_SHIFT) | predicted
        restored.confusion.counts = counts
        return restored


def _accumulate(target: IntArray, classes: IntArray) -> None:
    """target[c] += occurrences of c; bincount when dense, add.at when classes are many."""
    if target.shape[0] <= 8 * classes.size:
        counted = np.bincount(classes)
        target[: counted.shape[0]] += counted
    else:
        np.add.at(target, classes, 1)
