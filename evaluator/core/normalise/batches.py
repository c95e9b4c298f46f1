"""One step's worker batches, each turned into the rows to count, batch by batch.

This is the general path: every form ``tensors.py`` knows, several matching tensors per role
(concatenated in name order), and every problem row or batch set aside with its reason. The
whole-chunk path (``chunk.py``) is a shortcut for the common form and must count exactly what
this path counts.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from evaluator.core.normalise.dense import dense_pair
from evaluator.core.normalise.tensors import (
    IGNORED,
    BatchRejected,
    BinaryScores,
    RowClasses,
    label_classes,
    prediction_classes,
)
from evaluator.core.params import RuleParameters
from evaluator.core.selection import TensorSelector

IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class WorkerBatch:
    """One worker's tensors at one step, as the reader delivered them.

    ``error`` is set instead of tensors when the reader could not read this part; the rule
    counts it as a skipped batch so every loss is accounted in one place.
    """

    source: str
    mode: str
    tensors: Mapping[str, npt.ArrayLike] = field(default_factory=dict)
    error_reason: str | None = None
    error: str | None = None


@dataclass
class PreparedStep:
    """A step's rows, normalised but not counted yet, with what was set aside."""

    rows: list[tuple[str, IntArray, IntArray]] = field(default_factory=list)
    """(mode, labels, predicted) per counted batch: class indices in [0, max_classes)."""
    rejected: list[tuple[str, str]] = field(default_factory=list)
    """(reason, message) per batch that could not be counted at all."""
    ignored: int = 0
    skipped_rows: Counter[str] = field(default_factory=Counter)
    binary_form: str | None = None
    """How binary scores are read after this step: the form the trial's first batch of them
    decided (or the setting's), carried from step to step; None while none was seen."""
    label_bound: int = -1
    """At least one past the largest class index of ``rows`` when the preparation knew it (the
    whole-chunk path: its chunk's), so the rule need not reduce every batch again; -1: not
    known."""


@dataclass(frozen=True)
class Inputs:
    """How the rule reads its inputs: which tensors, and how they become class indices."""

    selector: TensorSelector
    argmax: bool
    ignore_index: int | None
    max_classes: int
    binary_threshold: float = 0.5
    binary_scores: str = "auto"
    class_axis: int = -1

    @classmethod
    def of(cls, params: RuleParameters) -> Inputs:
        return cls(
            TensorSelector(params.labels_regex, params.predictions_regex),
            params.argmax,
            params.ignore_index,
            params.max_classes,
            params.binary_threshold,
            params.binary_scores,
            params.class_axis,
        )

    def binary_form(self, decided: str | None) -> str | None:
        """The form binary scores are read in: the setting's, else what the trial decided."""
        return decided if self.binary_scores == "auto" else self.binary_scores


def prepare_step(
    step: int, batches: Sequence[WorkerBatch], inputs: Inputs, binary_form: str | None = None
) -> PreparedStep:
    """Every batch of one step: its rows to count, or the reason it cannot be counted."""
    prepared = PreparedStep(binary_form=inputs.binary_form(binary_form))
    for batch in batches:
        try:
            prepared.rows.append(_prepare_batch(batch, inputs, prepared))
        except BatchRejected as rejection:
            prepared.rejected.append(
                (rejection.reason, f"step {step}, {batch.source}: {rejection}")
            )
    return prepared


def _prepare_batch(
    batch: WorkerBatch, inputs: Inputs, tallies: PreparedStep
) -> tuple[str, IntArray, IntArray]:
    """(mode, labels, predicted) of the rows to count; problem rows go to ``tallies``."""
    if batch.error_reason is not None:
        raise BatchRejected(batch.error_reason, batch.error or batch.error_reason)
    selector = inputs.selector
    # A tensor may match both regexes: it is then both the labels and the predictions, as in
    # smdebug's own rule (its unit test of this rule points both regexes at one tensor).
    label_names, prediction_names = selector.split(list(batch.tensors))
    if not label_names or not prediction_names:
        missing = "labels" if not label_names else "predictions"
        raise BatchRejected(f"missing_{missing}", selector.missing_message(missing, batch.tensors))
    label_tensors = [np.asarray(batch.tensors[n]) for n in label_names]
    prediction_tensors = [np.asarray(batch.tensors[n]) for n in prediction_names]
    if len(label_tensors) == len(prediction_tensors) == 1:
        dense = dense_pair(label_tensors[0], prediction_tensors[0], inputs.class_axis)
        if dense is not None:
            label_tensors, prediction_tensors = [dense[0]], [dense[1]]
    labels = _concatenate(
        [
            label_classes(tensor, ignore_index=inputs.ignore_index, max_classes=inputs.max_classes)
            for tensor in label_tensors
        ]
    )
    # The binary form this batch decides is kept only once the whole batch is counted: a
    # rejected batch decides nothing for the batches after it.
    binary_form = tallies.binary_form
    predicted: list[RowClasses] = []
    for tensor in prediction_tensors:
        rows = prediction_classes(
            tensor,
            argmax=inputs.argmax,
            max_classes=inputs.max_classes,
            binary=BinaryScores(inputs.binary_threshold, binary_form),
        )
        binary_form = rows.binary_form or binary_form
        predicted.append(rows)
    predictions = _concatenate(predicted)
    if labels.classes.size != predictions.classes.size:
        raise BatchRejected(
            "batch_size_mismatch",
            f"expected as many prediction rows as label rows, but found "
            f"{labels.classes.size} labels ({', '.join(label_names)}) and "
            f"{predictions.classes.size} predictions ({', '.join(prediction_names)})",
        )
    if any(rows.binary_form is not None for rows in predicted):
        _refuse_binary_for_multiclass(labels, prediction_names)
    valid = _valid_rows(labels, predictions, tallies)
    label_rows = labels.classes if valid is None else labels.classes[valid]
    predicted_rows = predictions.classes if valid is None else predictions.classes[valid]
    tallies.binary_form = binary_form
    return batch.mode, label_rows, predicted_rows


def _refuse_binary_for_multiclass(labels: RowClasses, prediction_names: Sequence[str]) -> None:
    """One score per sample predicts class 0 or 1 only: against labels of a third class it
    would count every such sample as mispredicted, so the batch is refused instead."""
    flagged = np.zeros(labels.classes.size, dtype=bool)
    for _, mask in labels.problems:
        flagged |= mask
    above = labels.classes[~flagged] if flagged.any() else labels.classes
    if above.size and int(above.max()) > 1:
        raise BatchRejected(
            "binary_predictions_for_multiclass_labels",
            f"expected class indices or (B, C) scores for labels of {int(above.max()) + 1} or "
            f"more classes, but found one score per sample in {', '.join(prediction_names)}, "
            f"which can predict class 0 or 1 only: save the class indices or the per-class "
            f"scores, or point predictions_regex at them",
        )


def _concatenate(parts: list[RowClasses]) -> RowClasses:
    """Several matching tensors at one step become one batch, in name order."""
    if len(parts) == 1:
        return parts[0]
    classes = np.concatenate([p.classes for p in parts])
    offsets = np.cumsum([0] + [p.classes.size for p in parts])
    problems: list[tuple[str, npt.NDArray[np.bool_]]] = []
    for index, part in enumerate(parts):
        for reason, mask in part.problems:
            full = np.zeros(classes.size, dtype=bool)
            full[offsets[index] : offsets[index + 1]] = mask
            problems.append((reason, full))
    return RowClasses(classes, tuple(problems))


def _valid_rows(
    labels: RowClasses, predictions: RowClasses, tallies: PreparedStep
) -> npt.NDArray[np.bool_] | None:
    """Rows to count, tallying each other row once under its first problem."""
    problems = labels.problems + predictions.problems
    if not problems:
        return None
    remaining = np.ones(labels.classes.size, dtype=bool)
    for reason, mask in problems:
        hit = int(np.count_nonzero(mask & remaining))
        if hit:
            if reason == IGNORED:
                tallies.ignored += hit
            else:
                tallies.skipped_rows[reason] += hit
            remaining &= ~mask
    return remaining
