"""What a check is: a condition on tallies of per-class counts, and the finding it describes.

A check answers two questions. ``holds`` says, for every row of (steps x classes) tallies,
whether it holds there: the rule asks it once per chunk of steps, so it must be a few vectorised
numpy calls. ``describe`` says why, as a ``Finding``, for one step's tallies: asked only where
``holds`` said yes (the first time) or when a status is written, so it may take its time. Both
must agree: they use the same float divisions.

The tallies are the cumulative counts and, when a window is configured (``window_steps``), the
counts over the last steps (``Recent``); a check that needs the window holds nowhere without it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class Finding:
    """One check that held: where, by how much, against which threshold, for which classes."""

    check: str
    """The check's name."""
    step: int
    value: float
    """The figure compared with the threshold (imbalance: largest/smallest class count;
    misprediction: the worst misprediction fraction)."""
    threshold: float
    classes: tuple[int, ...]
    """The classes the finding is about (imbalance: the largest and the smallest class;
    misprediction: every class above the threshold, worst first)."""
    message: str


@dataclass(frozen=True)
class Recent:
    """Per-class counts over the last ``window_steps`` evaluated steps (every mode), and over
    the ``window_steps`` before those when a check compares the two; 1-D for one step, 2-D
    (steps x classes) for a chunk, the same width as the cumulative counts."""

    samples: IntArray
    mispredicted: IntArray
    previous_samples: IntArray
    previous_mispredicted: IntArray
    steps: IntArray
    """Steps in the recent window at each row: fewer than ``window_steps`` early on."""
    previous_steps: IntArray
    """Steps in the previous window at each row (0 when it is not kept)."""

    def row(self, index: int) -> Recent:
        return Recent(
            self.samples[index],
            self.mispredicted[index],
            self.previous_samples[index],
            self.previous_mispredicted[index],
            self.steps[index],
            self.previous_steps[index],
        )


@dataclass(frozen=True)
class Tallies:
    """What the checks look at: cumulative per-class counts, and the recent window if kept."""

    samples: IntArray
    mispredicted: IntArray
    recent: Recent | None = None
    classes: IntArray | None = None
    """The class id of each column (sorted): the classes a chunk's compact columns stand for
    when the class indices are sparse (a label of 999,999 beside ten small ones); None: the
    column is the class. The checks decide on columns alike (a column of no sample takes part
    in none) and name classes through ``class_of``."""

    def row(self, index: int) -> Tallies:
        """One row of 2-D tallies, as 1-D tallies."""
        recent = None if self.recent is None else self.recent.row(index)
        return Tallies(self.samples[index], self.mispredicted[index], recent, self.classes)

    def as_rows(self) -> Tallies:
        """1-D tallies as one row of 2-D ones."""
        recent = self.recent
        if recent is not None:
            recent = Recent(
                recent.samples.reshape(1, -1),
                recent.mispredicted.reshape(1, -1),
                recent.previous_samples.reshape(1, -1),
                recent.previous_mispredicted.reshape(1, -1),
                np.asarray(recent.steps).reshape(1),
                np.asarray(recent.previous_steps).reshape(1),
            )
        return Tallies(
            self.samples.reshape(1, -1), self.mispredicted.reshape(1, -1), recent, self.classes
        )


class Check(Protocol):
    """One condition on tallies of per-class counts."""

    @property
    def name(self) -> str:
        """The check's key in findings, the status and the metrics' ``check`` label."""
        ...

    def holds(self, tallies: Tallies) -> BoolArray:
        """Per row of (steps x classes) tallies, whether the check holds there."""
        ...

    def describe(self, tallies: Tallies, step: int) -> Finding | None:
        """The finding for one step's (1-D) tallies, None when the check does not hold."""
        ...


def uses_window(check: Check) -> bool:
    """Whether a check looks at the recent window (it then has no per-mode verdict)."""
    return bool(getattr(check, "uses_window", False))


def holds_now(checks: Sequence[Check], tallies: Tallies) -> dict[str, bool]:
    """Each check's verdict on one (1-D) set of tallies."""
    if not tallies.samples.size:  # no class seen yet: one class of no samples, as a chunk has
        zero = np.zeros(1, np.int64)
        tallies = Tallies(zero, zero, None, None)
    rows = tallies.as_rows()
    return {check.name: bool(check.holds(rows)[0]) for check in checks}


def describe_current(
    checks: Sequence[Check], holds: Mapping[str, bool], tallies: Tallies, step: int
) -> dict[str, Finding | None]:
    """Each check's finding where ``holds`` says it holds, None where it does not; empty when
    ``holds`` is (before ``samples`` labels were counted)."""
    if not holds:
        return {}
    return {
        check.name: check.describe(tallies, step) if holds.get(check.name) else None
        for check in checks
        if check.name in holds
    }


def misprediction_fractions(samples: IntArray, mispredicted: IntArray) -> FloatArray:
    """mispredicted / samples per class; NaN for classes with no sample."""
    fractions = np.full(samples.shape, np.nan)
    np.divide(mispredicted, samples, out=fractions, where=samples > 0)
    return fractions


def class_of(classes: IntArray | None, column: int) -> int:
    """The class id of a column (``Tallies.classes``)."""
    return int(column) if classes is None else int(classes[column])


def plural(count: int, word: str, suffix: str = "es") -> str:
    return f"{count} {word}{suffix if count != 1 else ''}"
