"""The recent window: exact per-class counts over the last evaluated steps, bounded in memory.

The checks over recent steps (``checks.recent``) need, after every step, the counts of the last
``size`` steps, and for comparisons the ``size`` before those. Keeping the last ``span`` steps'
counts (sparse: the classes each step saw) and the running sums of both windows makes that an
add and a subtract per step, exact in integers, and the memory is bounded by the labels of
``span`` steps however many classes the model has. The state is a list of steps, so merging two
evaluations of disjoint steps keeps the last ``span`` of their union, and a checkpoint restores
it exactly.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from evaluator.core.checks import Recent
from evaluator.core.counts import aligned, is_identity
from evaluator.core.errors import WindowLimitError

IntArray = npt.NDArray[np.int64]

MAX_WINDOW_CELLS = 1 << 22
"""Per-class counts the window keeps at most, over all its steps (about 100 MB): a step keeps
one count per class it saw, so 4,194,304 cells are 2,000 steps of 1,000 classes each side of a
comparison, or 40,000 steps of a 50-class model. Past it the evaluation stops with an error
that says which ``window_steps`` fits, rather than eating the node's memory."""


@dataclass(frozen=True)
class StepCounts:
    """One evaluated step's labels and mispredictions per class, for the classes it saw, in
    one array (classes, then samples, then mispredicted: one object per step, not three)."""

    step: int
    packed: IntArray

    @classmethod
    def of(
        cls, step: int, classes: IntArray, samples: IntArray, mispredicted: IntArray
    ) -> StepCounts:
        return cls(step, np.concatenate([classes, samples, mispredicted]).astype(np.int64))

    @classmethod
    def of_row(
        cls, step: int, samples: IntArray, mispredicted: IntArray, ids: IntArray | None = None
    ) -> StepCounts:
        """From one row of per-step counts whose columns are classes (``ids`` None) or the
        classes ``ids`` names."""
        columns = np.flatnonzero(samples)
        classes = columns if ids is None else ids[columns]
        return cls.of(step, classes, samples[columns], mispredicted[columns])

    @property
    def size(self) -> int:
        return self.packed.size // 3

    @property
    def classes(self) -> IntArray:
        return self.packed[: self.size]

    @property
    def samples(self) -> IntArray:
        return self.packed[self.size : 2 * self.size]

    @property
    def mispredicted(self) -> IntArray:
        return self.packed[2 * self.size :]


@dataclass(frozen=True)
class WindowPreview:
    """What a chunk of steps would make of the window: ``Recent`` after each step, 2-D."""

    recent: Recent
    entries: tuple[StepCounts, ...]
    classes: IntArray
    """The class id of each column of ``recent``."""


def _zeros(width: int) -> IntArray:
    return np.zeros(width, dtype=np.int64)


def _columns_of(ids: IntArray, classes: IntArray) -> IntArray:
    """The columns of sorted ``ids`` that hold ``classes`` (each one of them)."""
    return classes if is_identity(ids) else np.searchsorted(ids, classes)


class StepWindow:
    """The last ``size`` steps' counts (and the ``size`` before, when ``previous``)."""

    def __init__(self, size: int, *, previous: bool = False) -> None:
        if size < 1:
            raise ValueError(f"Expected a window of at least 1 step, but got {size}")
        self.size = size
        self.previous = previous
        self.span = 2 * size if previous else size
        self._entries: deque[StepCounts] = deque()
        self._cells = 0
        """Per-class counts kept over the entries (bounded by ``MAX_WINDOW_CELLS``)."""
        self._seen = 0
        """Steps ever added: the windows are full once it reaches their size."""
        self._sums = (_zeros(0), _zeros(0), _zeros(0), _zeros(0))
        """(recent samples, recent mispredicted, previous samples, previous mispredicted),
        one entry per class of ``_classes``."""
        self._classes = _zeros(0)
        """The sorted class ids of the sums' entries: compact, not as wide as the largest."""

    # -- reading ------------------------------------------------------------------------------

    def current(self, classes: IntArray) -> Recent:
        """The windows after the last step added, over sorted class ids ``classes`` (every
        class the window holds a count of: the classes counted so far, or more)."""
        recent, previous = self._step_counts(self._seen)
        samples, mispredicted, previous_samples, previous_mispredicted = self._aligned(classes)
        return Recent(
            samples,
            mispredicted,
            previous_samples,
            previous_mispredicted,
            np.asarray(recent),
            np.asarray(previous),
        )

    def _aligned(self, classes: IntArray) -> list[IntArray]:
        """The four sums over ``classes``, new arrays."""
        held = self._classes
        if held.size and not (classes.size >= held.size and is_identity(classes)):
            nonzero = np.flatnonzero(np.any(np.vstack(self._sums), axis=0))
            if nonzero.size != held.size:  # classes that left both windows: not wanted
                return [aligned(held[nonzero], a[nonzero], classes) for a in self._sums]
        return [aligned(held, array, classes) for array in self._sums]

    def _step_counts(self, seen: int) -> tuple[int, int]:
        recent = min(seen, self.size)
        previous = min(max(seen - self.size, 0), self.size) if self.previous else 0
        return recent, previous

    # -- adding a chunk -----------------------------------------------------------------------

    def preview(
        self,
        steps: Sequence[int],
        per_step: IntArray,
        per_step_wrong: IntArray,
        classes: IntArray | None = None,
    ) -> WindowPreview:
        """The windows after each step of a chunk (per_step: (steps x width) counts, whose
        columns are classes, or the sorted class ids ``classes``), without changing this
        window; ``commit`` then keeps as many of the steps as were evaluated."""
        rows, width = per_step.shape
        ids = np.arange(width, dtype=np.int64) if classes is None else classes
        entries = tuple(
            StepCounts.of_row(step, per_step[index], per_step_wrong[index], classes)
            for index, step in enumerate(steps)
        )
        sequence = [*self._entries, *entries]
        first = len(self._entries)
        dropped = max(len(sequence) - self.span, 0)
        cells = self._cells + sum(e.size for e in entries) - sum(e.size for e in sequence[:dropped])
        self._check_bound(cells, len(sequence) - dropped)
        sums = self._aligned(ids)
        out = [np.zeros((rows, width), dtype=np.int64) for _ in range(4)]
        counts = np.zeros((2, rows), dtype=np.int64)
        for index, entry in enumerate(entries):
            position = first + index
            _add(sums[0], sums[1], entry, 1, ids)
            leaving = position - self.size
            if leaving >= 0:
                _add(sums[0], sums[1], sequence[leaving], -1, ids)
                if self.previous:
                    _add(sums[2], sums[3], sequence[leaving], 1, ids)
            dropped = position - 2 * self.size
            if self.previous and dropped >= 0:
                _add(sums[2], sums[3], sequence[dropped], -1, ids)
            for target, source in zip(out, sums, strict=True):
                target[index] = source
            counts[:, index] = self._step_counts(self._seen + index + 1)
        recent = Recent(out[0], out[1], out[2], out[3], counts[0], counts[1])
        return WindowPreview(recent, entries, ids)

    def _check_bound(self, cells: int, steps: int) -> None:
        """Raise, before anything is counted, when the window would exceed its bound."""
        if cells <= MAX_WINDOW_CELLS:
            return
        per_step = max(cells / max(steps, 1), 1.0)
        fits = max(int(MAX_WINDOW_CELLS / per_step) // (self.span // self.size), 1)
        raise WindowLimitError(
            f"expected the recent window of window_steps={self.size} to keep at most "
            f"{MAX_WINDOW_CELLS} per-class counts, but its last {steps} steps would hold "
            f"{cells} ({per_step:.0f} classes a step): set window_steps to {fits} or less"
        )

    def commit(self, preview: WindowPreview, kept: int) -> None:
        """Add the first ``kept`` steps of a preview."""
        if kept <= 0:
            return
        for entry in preview.entries[:kept]:
            self._entries.append(entry)
            self._cells += entry.size
        while len(self._entries) > self.span:
            self._cells -= self._entries.popleft().size
        recent = preview.recent
        last = kept - 1
        self._sums = (
            recent.samples[last].copy(),
            recent.mispredicted[last].copy(),
            recent.previous_samples[last].copy(),
            recent.previous_mispredicted[last].copy(),
        )
        self._classes = preview.classes
        self._seen += kept

    # -- merging and saving -------------------------------------------------------------------

    def merge(self, other: StepWindow) -> None:
        """Keep the last ``span`` steps of both: evaluations of other steps, or of the same
        steps by other workers (a step both hold is one step, its counts summed)."""
        by_step: dict[int, list[StepCounts]] = {}
        for entry in [*self._entries, *other._entries]:
            by_step.setdefault(entry.step, []).append(entry)
        entries = [_summed(step, by_step[step]) for step in sorted(by_step)]
        shared = sum(len(parts) - 1 for parts in by_step.values())
        self._rebuild(entries, self._seen + other._seen - shared)

    def _rebuild(self, entries: Sequence[StepCounts], seen: int) -> None:
        kept = list(entries)[-self.span :]
        cells = sum(entry.size for entry in kept)
        self._check_bound(cells, len(kept))
        self._entries = deque(kept)
        self._cells = cells
        self._seen = seen
        classes = np.unique(np.concatenate([_zeros(0), *(e.classes for e in kept)]))
        sums = [_zeros(classes.size) for _ in range(4)]
        recent = kept[-self.size :]
        for entry in recent:
            _add(sums[0], sums[1], entry, 1, classes)
        if self.previous:
            for entry in kept[: max(len(kept) - self.size, 0)]:
                _add(sums[2], sums[3], entry, 1, classes)
        self._sums = (sums[0], sums[1], sums[2], sums[3])
        self._classes = classes.astype(np.int64, copy=False)

    def to_state(self) -> dict[str, Any]:
        """A JSON-ready copy; ``from_state`` restores it exactly."""
        return {
            "size": self.size,
            "previous": self.previous,
            "seen": self._seen,
            "steps": [
                [e.step, e.classes.tolist(), e.samples.tolist(), e.mispredicted.tolist()]
                for e in self._entries
            ],
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> StepWindow:
        window = cls(int(state["size"]), previous=bool(state["previous"]))
        entries = [
            StepCounts.of(int(step), *(np.asarray(v, dtype=np.int64) for v in (c, s, m)))
            for step, c, s, m in state["steps"]
        ]
        window._rebuild(entries, int(state["seen"]))
        return window

    def steps(self) -> list[int]:
        """The steps kept, oldest first."""
        return [entry.step for entry in self._entries]


def _summed(step: int, parts: Sequence[StepCounts]) -> StepCounts:
    """One step's counts from several sources (workers), summed per class."""
    if len(parts) == 1:
        return parts[0]
    classes = np.unique(np.concatenate([part.classes for part in parts]))
    samples, mispredicted = np.zeros(classes.size, np.int64), np.zeros(classes.size, np.int64)
    for part in parts:
        where = np.searchsorted(classes, part.classes)
        samples[where] += part.samples
        mispredicted[where] += part.mispredicted
    return StepCounts.of(step, classes, samples, mispredicted)


def _add(
    samples: IntArray, mispredicted: IntArray, entry: StepCounts, sign: int, ids: IntArray
) -> None:
    """Add (sign 1) or remove (sign -1) one step's counts into sums over the sorted class ids
    ``ids``; its classes are distinct, and each one of ``ids``."""
    if entry.classes.size:
        columns = _columns_of(ids, entry.classes)
        samples[columns] += sign * entry.samples
        mispredicted[columns] += sign * entry.mispredicted
