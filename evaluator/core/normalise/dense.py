"""Dense predictions: a label per token or pixel, a class score per token or pixel.

Sequence labelling saves labels (B, T), padded with -100, and logits (B, T, C); segmentation
saves labels (B, H, W) and logits (B, C, H, W) (PyTorch, channels first) or (B, H, W, C) (Keras,
channels last). Every labelled element is a sample, so the pair is flattened into rows: the
class axis of the scores moves last, and both become (N,) labels and (N, C) scores (or (N,)
per-element scores for a binary model). A plain flatten of channels-first logits would count
the wrong classes: the class axis is the one whose removal leaves the labels' shape, and where
the shapes leave it open (C equal to a spatial size) ``class_axis`` says which.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from evaluator.core.normalise.tensors import BatchRejected

Array = npt.NDArray[Any]


def dense_pair(labels: Array, predictions: Array, class_axis: int) -> tuple[Array, Array] | None:
    """(labels, predictions) flattened to rows when the pair is dense, else None (the pair is
    read as it is: rows of class indices, one-hot rows or (B, C) scores)."""
    rank, scores_rank = labels.ndim, predictions.ndim
    if rank >= 2 and scores_rank == rank + 1:
        axis = _class_axis(labels.shape, predictions.shape, class_axis)
        scores = np.moveaxis(predictions, axis, -1).reshape(-1, predictions.shape[axis])
        return labels.reshape(-1), scores[:, 0] if scores.shape[1] == 1 else scores
    if rank >= 2 and labels.shape == predictions.shape and not _class_rows(labels):
        return labels.reshape(-1), predictions.reshape(-1)
    return None


def _class_axis(labels: tuple[int, ...], scores: tuple[int, ...], class_axis: int) -> int:
    candidates = [
        axis for axis in range(len(scores)) if scores[:axis] + scores[axis + 1 :] == labels
    ]
    if not candidates:
        raise BatchRejected(
            "dense_shape_mismatch",
            f"expected dense scores to have the labels' shape {labels} plus a class axis, but "
            f"found scores of shape {scores}: save labels and scores of the same tokens or "
            f"pixels",
        )
    if len(candidates) == 1:
        return candidates[0]
    chosen = class_axis % len(scores) if -len(scores) <= class_axis < len(scores) else None
    if chosen not in candidates:
        raise BatchRejected(
            "ambiguous_class_axis",
            f"scores of shape {scores} against labels of shape {labels} could hold the classes "
            f"on axis {' or '.join(map(str, candidates))}; class_axis is {class_axis}: set "
            f"class_axis to the scores' class axis (1 for PyTorch's (B, C, H, W), -1 for "
            f"channels last)",
        )
    return chosen


def _class_rows(labels: Array) -> bool:
    """Whether 2-D labels are one-hot or probability rows (each finite, in [0, 1], summing to 1),
    which go with (B, C) scores row by row, rather than a label per element."""
    if labels.ndim != 2 or labels.dtype.kind not in "biuf" or not labels.size:
        return False
    values = labels.astype(np.float64)
    if not np.isfinite(values).all() or values.min() < 0 or values.max() > 1:
        return False
    return bool(np.allclose(values.sum(axis=1), 1.0))
