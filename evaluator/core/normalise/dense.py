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
        classes = predictions.shape[axis]
        if classes == 0:
            raise BatchRejected(
                "unsupported_predictions_shape",
                f"expected dense scores with at least one class on axis {axis}, but found "
                f"scores of shape {predictions.shape}",
            )
        scores = np.moveaxis(predictions, axis, -1).reshape(-1, classes)
        return labels.reshape(-1), scores[:, 0] if classes == 1 else scores
    if rank >= 2 and labels.shape == predictions.shape and not _row_per_sample(labels, predictions):
        return labels.reshape(-1), predictions.reshape(-1)
    return None


def _class_axis(labels: tuple[int, ...], scores: tuple[int, ...], class_axis: int) -> int:
    # Axis 0 is the batch: it is never the class axis, even where the shapes would allow it.
    candidates = [
        axis for axis in range(1, len(scores)) if scores[:axis] + scores[axis + 1 :] == labels
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


def _row_per_sample(labels: Array, predictions: Array) -> bool:
    """Whether a same-shape 2-D pair is a row per sample, one-hot or probability labels beside
    (B, C) scores or one-hot predictions, rather than a label and a prediction per element.

    The shapes cannot tell (B, T) token labels from (B, C) one-hot rows: the values decide.
    Labels must be class rows; the predictions must be class rows too or hold a fraction (scores
    or logits). Token labels with exactly one 1 per row beside one-hot-like 0/1 predictions stay
    ambiguous and are read as rows; integer token predictions beside them are read per element.
    """
    if labels.ndim != 2 or not _class_rows(labels):
        return False
    if predictions.dtype.kind == "f":
        finite = predictions[np.isfinite(predictions)]
        if finite.size and not bool(np.all(np.floor(finite) == finite)):
            return True
    return _class_rows(predictions)


def _class_rows(rows: Array) -> bool:
    """Whether 2-D rows are one-hot or probability rows: each finite, in [0, 1], summing to 1."""
    if rows.dtype.kind not in "biuf" or not rows.size:
        return False
    values = rows.astype(np.float64)
    if not np.isfinite(values).all() or values.min() < 0 or values.max() > 1:
        return False
    return bool(np.allclose(values.sum(axis=1), 1.0))
