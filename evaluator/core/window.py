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
    def of_row(cls, step: int, samples: IntArray, mispredicted: IntArray) -> StepCounts:
        classes = np.flatnonzero(samples)
        return cls.of(step, classes, samples[classes], mispredicted[classes])

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


def _zeros(width: int) -> IntArray:
    return np.zeros(width, dtype=np.int64)


def _padded(array: IntArray, width: int) -> IntArray:
    out = _zeros(max(width, array.size))
    out[: array.size] = array
    return out


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
        """(recent samples, recent mispredicted, previous samples, previous mispredicted)."""

    # -- reading ------------------------------------------------------------------------------

    def current(self, width: int) -> Recent:
        """The windows after the last step added, ``width`` classes wide."""
        recent, previous = self._step_counts(self._seen)
        samples, mispredicted, previous_samples, previous_mispredicted = (
            _padded(array, width)[:width] for array in self._sums
        )
        return Recent(
            samples,
            mispredicted,
            previous_samples,
            previous_mispredicted,
            np.asarray(recent),
            np.asarray(previous),
        )

    def _step_counts(self, seen: int) -> tuple[int, int]:
        recent = min(seen, self.size)
        previous = min(max(seen - self.size, 0), self.size) if self.previous else 0
        return recent, previous

    # -- adding a chunk -----------------------------------------------------------------------

    def preview(
        self, steps: Sequence[int], per_step: IntArray, per_step_wrong: IntArray
    ) -> WindowPreview:
        """The windows after each step of a chunk (per_step: (steps x width) counts), without
        changing this window; ``commit`` then keeps as many of the steps as were evaluated."""
        rows, width = per_step.shape
        entries = tuple(
            StepCounts.of_row(step, per_step[index], per_step_wrong[index])
            for index, step in enumerate(steps)
        )
        sequence = [*self._entries, *entries]
        first = len(self._entries)
        dropped = max(len(sequence) - self.span, 0)
        cells = self._cells + sum(e.size for e in entries) - sum(e.size for e in sequence[:dropped])
        self._check_bound(cells, len(sequence) - dropped)
        sums = [_padded(array, width)[:width].copy() for array in self._sums]
        out = [np.zeros((rows, width), dtype=np.int64) for _ in range(4)]
        counts = np.zeros((2, rows), dtype=np.int64)
        for index, entry in enumerate(entries):
            position = first + index
            _add(sums[0], sums[1], entry, 1)
            leaving = position - self.size
            if leaving >= 0:
                _add(sums[0], sums[1], sequence[leaving], -1)
                if self.previous:
                    _add(sums[2], sums[3], sequence[leaving], 1)
            dropped = position - 2 * self.size
            if self.previous and dropped >= 0:
                _add(sums[2], sums[3], sequence[dropped], -1)
            for target, source in zip(out, sums, strict=True):
                target[index] = source
            counts[:, index] = self._step_counts(self._seen + index + 1)
        return WindowPreview(Recent(out[0], out[1], out[2], out[3], counts[0], counts[1]), entries)

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
        width = max((int(e.classes[-1]) + 1 for e in kept if e.classes.size), default=0)
        sums = [_zeros(width) for _ in range(4)]
        recent = kept[-self.size :]
        for entry in recent:
            _add(sums[0], sums[1], entry, 1)
        if self.previous:
            for entry in kept[: max(len(kept) - self.size, 0)]:
                _add(sums[2], sums[3], entry, 1)
        self._sums = (sums[0], sums[1], sums[2], sums[3])

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


def _add(samples: IntArray, mispredicted: IntArray, entry: StepCounts, sign: int) -> None:
    """Add (sign 1) or remove (sign -1) one step's counts; its classes are distinct."""
    if entry.classes.size:
        samples[entry.classes] += sign * entry.samples
        mispredicted[entry.classes] += sign * entry.mispredicted
