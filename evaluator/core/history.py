"""The evaluation's figures over steps, in a bounded number of exact points.

A report's charts over steps (the imbalance ratio, the worst classes' misprediction fractions)
need the figures at many steps of a run that may last a million. Keeping every step would grow
without bound; averaging steps together would show figures no step ever had. So the history
keeps *points*: the exact cumulative figures at one evaluated step, on a regular grid of every
``every`` evaluated steps. When the points outgrow the capacity the grid coarsens (``every``
doubles and every other point goes), so a run of any length ends with between half and all of
``capacity`` evenly spaced points, each exact. Points at steps that matter are *pinned* and
survive every coarsening: where the checks start to run (``samples`` reached) and each check's
first finding.

A point keeps the classes that were worst-predicted at its step (``classes_per_point`` of
them: every class when there are fewer), as counts, so fractions and bounds are exact to
recompute. The state is JSON-ready for checkpoints, so the charts survive a restart.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from evaluator.core.checks import class_of, imbalance_ratio, misprediction_fractions

IntArray = npt.NDArray[np.int64]

HISTORY_POINTS = 240
"""The most points kept: about one per 4 pixels of a chart a page wide."""
CLASSES_PER_POINT = 10
"""Classes whose counts a point keeps: the worst-predicted at its step."""
SMALL = 64
"""Classes up to which a point is computed in Python rather than numpy (faster when few)."""


@dataclass(frozen=True)
class HistoryPoint:
    """The cumulative figures after one evaluated step (every mode)."""

    step: int
    evaluated: int
    """Steps evaluated up to and including this one (the grid's coordinate)."""
    samples: int
    """Labels counted up to here."""
    imbalance_ratio: float | None
    """Largest over smallest class count (classes seen); None before any label."""
    classes: tuple[tuple[int, int, int], ...]
    """(class, samples, mispredicted) of the worst-predicted classes here, worst first (ties:
    the lower index)."""
    holding: tuple[str, ...] = ()
    """The checks that held here (none before ``samples`` labels were counted)."""
    checks_active: bool = False
    """Whether ``samples`` labels were counted by here."""
    pinned: bool = False
    """Kept whatever the grid (the checks' start, a first finding)."""

    def to_json(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "evaluated": self.evaluated,
            "samples": self.samples,
            "imbalance_ratio": self.imbalance_ratio,
            "classes": [list(entry) for entry in self.classes],
            "holding": list(self.holding),
            "checks_active": self.checks_active,
            "pinned": self.pinned,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> HistoryPoint:
        ratio = data["imbalance_ratio"]
        return cls(
            step=int(data["step"]),
            evaluated=int(data["evaluated"]),
            samples=int(data["samples"]),
            imbalance_ratio=None if ratio is None else float(ratio),
            classes=tuple((int(c), int(n), int(w)) for c, n, w in data["classes"]),
            holding=tuple(str(name) for name in data["holding"]),
            checks_active=bool(data["checks_active"]),
            pinned=bool(data["pinned"]),
        )


def history_point(
    step: int,
    evaluated: int,
    samples: IntArray,
    mispredicted: IntArray,
    *,
    holding: Sequence[str] = (),
    checks_active: bool = False,
    pinned: bool = False,
    classes_per_point: int = CLASSES_PER_POINT,
    classes: IntArray | None = None,
) -> HistoryPoint:
    """The point of one step's cumulative per-class counts (``classes``: the class id of each
    column, as ``Tallies.classes``; None: the column is the class)."""
    if samples.size <= SMALL:  # plain Python: the same float divisions, a fifth of the time
        ids = range(samples.size) if classes is None else classes.tolist()
        rows = [
            (c, n, w)
            for c, n, w in zip(ids, samples.tolist(), mispredicted.tolist(), strict=True)
            if n
        ]
        counts = [n for _, n, _ in rows]
        ratio = max(counts) / min(counts) if counts else None
        rows.sort(key=lambda r: (-(r[2] / r[1]), r[0]))
        total, worst = sum(counts), tuple(rows[: max(classes_per_point, 0)])
    else:
        found = imbalance_ratio(samples)
        ratio = None if found is None else found[0]
        total = int(samples.sum())
        worst = worst_classes(samples, mispredicted, classes_per_point, classes)
    return HistoryPoint(step, evaluated, total, ratio, worst, tuple(holding), checks_active, pinned)


def worst_classes(
    samples: IntArray, mispredicted: IntArray, limit: int, classes: IntArray | None = None
) -> tuple[tuple[int, int, int], ...]:
    """(class, samples, mispredicted) of the ``limit`` classes with the highest misprediction
    fraction, worst first, ties to the lower index; classes without a sample are left out
    (``classes``: the class id of each column, sorted; None: the column is the class)."""
    seen = np.flatnonzero(samples)
    if seen.size == 0 or limit <= 0:
        return ()
    fractions = misprediction_fractions(samples[seen], mispredicted[seen])
    if seen.size > limit:  # the candidates: every class at least as bad as the limit-th
        cut = np.partition(fractions, seen.size - limit)[seen.size - limit]
        keep = fractions >= cut
        seen, fractions = seen[keep], fractions[keep]
    order = np.lexsort((seen, -fractions))[:limit]
    return tuple(
        (class_of(classes, c), int(samples[c]), int(mispredicted[c])) for c in seen[order].tolist()
    )


@dataclass
class History:
    """The bounded, exact-where-kept history of one evaluation (see the module's docstring)."""

    capacity: int = HISTORY_POINTS
    classes_per_point: int = CLASSES_PER_POINT
    every: int = 1
    """Evaluated steps between grid points: a power of two that doubles when the points
    outgrow ``capacity``."""
    points: list[HistoryPoint] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.capacity < 2:
            raise ValueError(f"Expected a history capacity of at least 2, but got {self.capacity}")

    def due(self, evaluated: int) -> bool:
        """Whether the step that makes ``evaluated`` steps falls on the grid."""
        return evaluated % self.every == 0

    def record(self, point: HistoryPoint) -> None:
        """Keep ``point`` (on the grid, or pinned), coarsening the grid when it is full."""
        if not (point.pinned or self.due(point.evaluated)):
            return
        if self.points and self.points[-1].evaluated == point.evaluated:
            last = self.points[-1]  # the same step, due and pinned: one point, pinned
            point = point if point.pinned else last
            self.points[-1] = point
            return
        self.points.append(point)
        # Pins are few (one per check, and the checks' start), so this ends; should they ever
        # outnumber the capacity, the pins stay and the grid's points go.
        while len(self.points) > self.capacity and not all(p.pinned for p in self.points):
            self.every *= 2
            self.points = [p for p in self.points if p.pinned or p.evaluated % self.every == 0]

    def make_room(self, base: int, last: int, pins: Sequence[int] = ()) -> None:
        """Coarsen the grid now as recording the steps that make ``base + 1`` to ``last``
        evaluated steps one by one would (with pinned points at ``pins``), so a chunk of many
        steps computes only the points that stay: the points kept never depend on how the
        steps were chunked, as long as the pins are fewer than the capacity (the rule holds
        them so: one per check and the checks' start). (The count of points on a grid only
        grows as steps are added, so the grid at the end is the finest one that fits then.)"""
        if not pins and len(self.points) + last // self.every - base // self.every <= self.capacity:
            return  # room enough on this grid (the common case: one step while following)
        while True:
            kept = [p for p in self.points if p.pinned or p.evaluated % self.every == 0]
            on_grid = last // self.every - base // self.every
            off_grid = sum(1 for pin in set(pins) if pin % self.every)
            if len(kept) + on_grid + off_grid <= self.capacity or (
                on_grid == 0 and all(p.pinned for p in kept)
            ):
                break
            self.every *= 2
        self.points = kept

    # -- checkpoints ------------------------------------------------------------------------

    def to_state(self) -> dict[str, Any]:
        return {
            "capacity": self.capacity,
            "classes_per_point": self.classes_per_point,
            "every": self.every,
            "points": [point.to_json() for point in self.points],
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> History:
        return cls(
            capacity=int(state["capacity"]),
            classes_per_point=int(state["classes_per_point"]),
            every=int(state["every"]),
            points=[HistoryPoint.from_json(point) for point in state["points"]],
        )
