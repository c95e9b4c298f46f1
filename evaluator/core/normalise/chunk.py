"""The whole-chunk shortcut for the form nearly every training job saves.

A training job saves the same two tensors at every step: integer class indices (B,) and float
scores (B, C). For a chunk of such steps, one concatenation, one argmax per block and a few
reductions replace a dozen numpy calls per batch. Any batch of another form, and any row with a
problem (a NaN score, a label out of range or ignored), makes the whole chunk take the
batch-by-batch path (``batches.py``), so the rows counted are always the same; a property test
holds the two paths equal.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from evaluator import compiled
from evaluator.core.normalise.batches import Inputs, PreparedStep, WorkerBatch
from evaluator.core.normalise.tensors import all_finite, countable_as_is

IntArray = npt.NDArray[np.int64]

BLOCK_BYTES = 512 << 10
"""Scores concatenated for one argmax: enough that a block of small batches (tens of classes)
costs a few numpy calls, while a batch this large (thousands of classes) goes alone, uncopied."""


def prepare_uniform(
    steps: Sequence[tuple[int, Sequence[WorkerBatch]]], inputs: Inputs
) -> list[PreparedStep] | None:
    """``prepare_step`` for every step at once when every batch has the common form; None
    when any batch or row needs the batch-by-batch path."""
    batches = [batch for _, step_batches in steps for batch in step_batches]
    if not batches or not inputs.argmax:
        return None
    names = tuple(batches[0].tensors)
    label_names, prediction_names = inputs.selector.split(names)
    if len(label_names) != 1 or len(prediction_names) != 1 or label_names == prediction_names:
        return None
    forms = _common_form(batches, names, label_names[0], prediction_names[0])
    if forms is None:
        return None
    labels, scores = forms
    label_rows = np.concatenate(labels).astype(np.int64, copy=False)
    if not countable_as_is(label_rows, inputs.ignore_index, inputs.max_classes):
        return None
    predicted = _argmax_blocks(scores)
    if predicted is None:
        return None
    if scores[0].shape[1] > inputs.max_classes and int(predicted.max()) >= inputs.max_classes:
        return None
    prepared: list[PreparedStep] = []
    offset = 0
    sizes = iter([batch_labels.shape[0] for batch_labels in labels])
    bound = int(label_rows.max()) + 1  # countable_as_is saw rows: not empty
    for _, step_batches in steps:
        rows = []
        for batch in step_batches:
            end = offset + next(sizes)
            rows.append((batch.mode, label_rows[offset:end], predicted[offset:end]))
            offset = end
        prepared.append(PreparedStep(rows, label_bound=bound))
    return prepared


def _common_form(
    batches: list[WorkerBatch], names: tuple[str, ...], label_name: str, prediction_name: str
) -> tuple[list[npt.NDArray[Any]], list[npt.NDArray[Any]]] | None:
    """Each batch's labels and scores when all have the common form, else None: the same
    tensor names, labels (B,) of one integer dtype that int64 holds exactly, scores (B, C) of
    one float dtype with the same C >= 2 and as many rows as labels."""
    first_labels = batches[0].tensors.get(label_name)
    first_scores = batches[0].tensors.get(prediction_name)
    if not isinstance(first_labels, np.ndarray) or not isinstance(first_scores, np.ndarray):
        return None
    label_dtype, score_dtype = first_labels.dtype, first_scores.dtype
    columns = first_scores.shape[1] if first_scores.ndim == 2 else 0
    exact_in_int64 = label_dtype.kind == "i" or (
        label_dtype.kind == "u" and label_dtype.itemsize < 8
    )
    if not (exact_in_int64 and score_dtype.kind == "f" and columns >= 2):
        return None
    labels: list[npt.NDArray[Any]] = []
    scores: list[npt.NDArray[Any]] = []
    for batch in batches:
        if batch.error_reason is not None or tuple(batch.tensors) != names:
            return None
        batch_labels = batch.tensors[label_name]
        batch_scores = batch.tensors[prediction_name]
        if not (
            isinstance(batch_labels, np.ndarray)
            and isinstance(batch_scores, np.ndarray)
            and _same_form(batch_labels, batch_scores, label_dtype, score_dtype, columns)
        ):
            return None
        labels.append(batch_labels)
        scores.append(batch_scores)
    return labels, scores


def _same_form(
    labels: npt.NDArray[Any],
    scores: npt.NDArray[Any],
    label_dtype: np.dtype[Any],
    score_dtype: np.dtype[Any],
    columns: int,
) -> bool:
    return (
        labels.dtype == label_dtype
        and scores.dtype == score_dtype
        and labels.ndim == 1
        and scores.ndim == 2
        and scores.shape[1] == columns
        and scores.shape[0] == labels.shape[0]
    )


_COMPILED_SCORES = frozenset({np.dtype("<f2"), np.dtype("<f4"), np.dtype("<f8")})
"""Score dtypes the compiled argmax reads (any alignment); others take numpy's."""

COMPILED_COLUMNS = 32
"""Rows narrower than this take the compiled argmax, one call for the whole chunk; wider rows
(hundreds of classes) are long enough for numpy's SIMD passes over aligned blocks to win."""


def _argmax_blocks(scores: list[npt.NDArray[Any]]) -> IntArray | None:
    """The argmax of every score row; None as soon as a row holds a NaN or infinite score
    (those rows need the batch-by-batch path). Compiled: one pass over every batch, in place.
    In numpy: in blocks of about ``BLOCK_BYTES``."""
    kernels = compiled.kernels()
    first = scores[0]
    if (
        kernels is not None
        and first.dtype in _COMPILED_SCORES
        and first.shape[1] < COMPILED_COLUMNS
    ):
        predicted = np.empty(sum(batch.shape[0] for batch in scores), dtype=np.int64)
        try:
            return predicted if kernels.argmax_finite(scores, predicted) else None
        except (ValueError, BufferError):
            pass  # not C-contiguous (a broadcast view): numpy's path reads any layout
    return _argmax_numpy(scores)


def _argmax_numpy(scores: list[npt.NDArray[Any]]) -> IntArray | None:
    predicted: list[IntArray] = []
    block: list[npt.NDArray[Any]] = []
    block_bytes = 0
    for position, batch_scores in enumerate(scores):
        block.append(batch_scores)
        block_bytes += batch_scores.nbytes
        if block_bytes < BLOCK_BYTES and position + 1 < len(scores):
            continue
        # One large batch goes alone; a view into an event file's bytes is often misaligned,
        # which makes numpy's reductions over it 2.5-3x slower than over an aligned copy.
        rows = np.require(block[0], requirements="A") if len(block) == 1 else np.concatenate(block)
        if not all_finite(rows):
            return None
        predicted.append(np.argmax(rows, axis=1).astype(np.int64, copy=False))
        block, block_bytes = [], 0
    if len(predicted) == 1:
        return predicted[0]
    return np.concatenate(predicted)
