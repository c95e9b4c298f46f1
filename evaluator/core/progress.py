"""Cumulative per-class counts after every step of a chunk, and each check's verdict there.

The rule must decide its checks after every step, as if it counted step by step. Counting a
chunk of steps at once and deciding afterwards is the same thing if the checks see, for every
step, the counts summed up to it: one (steps x classes) matrix of cumulative counts, built with
two bincounts and a cumsum, over which each check is a few vectorised calls. The matrices are
bounded by the caller (``CHUNK_CELLS``), so a chunk shrinks as the class count grows.

The columns are classes (the identity) for a dense model; for sparse class indices they are
the chunk's compact columns (``chunk_classes``: the classes seen so far and in the chunk,
sorted), so a label of 999,999 beside ten small classes makes the matrices 11 wide, not a
million.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from evaluator import compiled
from evaluator.core.checks import Check, Tallies
from evaluator.core.normalise import PreparedStep
from evaluator.core.window import StepWindow, WindowPreview

IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

CHUNK_CELLS = 1 << 21
"""Steps x classes cells of a chunk's cumulative matrices (16 MiB each): the chunk shrinks as
the class count grows, so 20,000 classes still fit in bounded memory."""


@dataclass(frozen=True)
class ChunkProgress:
    """Per step of a chunk: the counts so far (before it plus the chunk up to it) and verdicts."""

    tallies: Tallies
    """(steps x classes) cumulative labels and mispredicted labels per class, over every
    mode, with the recent window after each step when one is kept."""
    counted: IntArray
    """Labels counted at each step."""
    gated: BoolArray
    """Whether ``samples`` labels were reached by each step: the checks run only from there."""
    holds: dict[str, BoolArray]
    """Check name -> whether it holds after each step (regardless of ``gated``)."""
    per_step: IntArray
    """(steps x classes) labels counted at each step (not cumulative), for a ledger."""
    per_step_wrong: IntArray
    """(steps x classes) mispredicted labels at each step."""
    window: WindowPreview | None = None
    """The recent window's preview, to commit for the steps kept."""


def chunk_classes(seen: IntArray, chunk: Sequence[PreparedStep]) -> IntArray:
    """The sorted ids of the classes ``seen`` so far (sorted) and of the chunk's labels: the
    chunk's compact columns when class indices are sparse."""
    labels = joined([labels for p in chunk for _, labels, _ in p.rows])
    return np.union1d(seen, labels).astype(np.int64, copy=False)


def step_counts(
    chunk: Sequence[PreparedStep], width: int, classes: IntArray | None = None
) -> tuple[IntArray, IntArray]:
    """(steps x classes) labels and mispredicted labels of each step of ``chunk``, at least
    ``width`` classes wide: one pass of the compiled kernel, or two bincounts in numpy. With
    ``classes`` (sorted ids holding every label), the columns are those classes instead."""
    rows_of_chunk = len(chunk)
    labels = joined([labels for p in chunk for _, labels, _ in p.rows])
    predicted = joined([predicted for p in chunk for _, _, predicted in p.rows])
    if classes is not None:  # compact columns; a prediction only needs to differ or not
        columns = np.searchsorted(classes, labels).astype(np.int64, copy=False)
        predicted = np.where(labels == predicted, columns, -1)
        labels, width = columns, max(int(classes.size), 1)
    width = max(width, int(labels.max()) + 1 if labels.size else 0, 1)
    kernels = compiled.kernels()
    if kernels is not None and rows_of_chunk and labels.dtype == predicted.dtype == np.int64:
        sizes = [sum(rows.size for _, rows, _ in p.rows) for p in chunk]
        per_step = np.zeros((rows_of_chunk, width), dtype=np.int64)
        per_step_wrong = np.zeros((rows_of_chunk, width), dtype=np.int64)
        kernels.step_counts(
            np.ascontiguousarray(labels),
            np.ascontiguousarray(predicted),
            np.cumsum(sizes, dtype=np.int64),
            per_step,
            per_step_wrong,
        )
        return per_step, per_step_wrong
    step_of_row = [
        np.full(rows.size, index, dtype=np.int64)
        for index, prepared in enumerate(chunk)
        for _, rows, _ in prepared.rows
    ]
    rows = joined(step_of_row) * width + labels
    wrong = labels != predicted
    cells = rows_of_chunk * width
    per_step = np.bincount(rows, minlength=cells).reshape(rows_of_chunk, width)
    per_step_wrong = np.bincount(rows[wrong], minlength=cells).reshape(rows_of_chunk, width)
    return per_step, per_step_wrong


def counts_progress(
    per_step: IntArray,
    per_step_wrong: IntArray,
    *,
    base_samples: IntArray,
    base_mispredicted: IntArray,
    base_total: int,
    samples_required: int,
    checks: Sequence[Check],
    window: StepWindow | None = None,
    steps: Sequence[int] = (),
    classes: IntArray | None = None,
) -> ChunkProgress:
    """Cumulative counts and verdicts after every row of per-step counts (``step_counts``, or
    a merged ledger's), on top of the base counts (over the same columns: ``classes``, the
    class id of each, or None: the column is the class)."""
    samples = np.cumsum(per_step, axis=0)
    mispredicted = np.cumsum(per_step_wrong, axis=0)
    samples[:, : base_samples.size] += base_samples
    mispredicted[:, : base_mispredicted.size] += base_mispredicted
    counted = per_step.sum(axis=1)
    gated = base_total + np.cumsum(counted) >= samples_required
    preview = None if window is None else window.preview(steps, per_step, per_step_wrong, classes)
    recent = None if preview is None else preview.recent
    tallies = Tallies(samples, mispredicted, recent, classes)
    holds = {check.name: check.holds(tallies) for check in checks}
    return ChunkProgress(tallies, counted, gated, holds, per_step, per_step_wrong, preview)


def joined(parts: list[IntArray]) -> IntArray:
    """One array of ``parts``, without a copy for a single part."""
    if len(parts) == 1:
        return parts[0]
    if not parts:
        return np.zeros(0, dtype=np.int64)
    return np.concatenate(parts)
