"""Input normalisation: tensors in whatever form a framework saved them, as class indices.

Every recognition of an input form lives in this package: ``tensors`` (one tensor's rows),
``batches`` (one worker's batch, the general path), ``chunk`` (the whole-chunk shortcut for the
common form) and ``steps`` (which of the two a chunk takes). To add an input form, teach
``tensors`` (and ``chunk`` only if the form is common enough to deserve the shortcut).
"""

from evaluator.core.normalise.batches import Inputs, PreparedStep, WorkerBatch, prepare_step
from evaluator.core.normalise.steps import prepare_steps
from evaluator.core.normalise.tensors import (
    BINARY_FORMS,
    BINARY_SCORE_OUT_OF_RANGE,
    IGNORED,
    LABEL_OUT_OF_RANGE,
    NEGATIVE_LABEL,
    NONFINITE_LABEL,
    NONFINITE_PREDICTION,
    NONFINITE_SCORE,
    NONINTEGRAL_LABEL,
    PREDICTION_OUT_OF_RANGE,
    BatchRejected,
    BinaryScores,
    RowClasses,
    all_finite,
    binary_classes,
    countable_as_is,
    label_classes,
    prediction_classes,
)

__all__ = [
    "BINARY_FORMS",
    "BINARY_SCORE_OUT_OF_RANGE",
    "IGNORED",
    "LABEL_OUT_OF_RANGE",
    "NEGATIVE_LABEL",
    "NONFINITE_LABEL",
    "NONFINITE_PREDICTION",
    "NONFINITE_SCORE",
    "NONINTEGRAL_LABEL",
    "PREDICTION_OUT_OF_RANGE",
    "BatchRejected",
    "BinaryScores",
    "Inputs",
    "PreparedStep",
    "RowClasses",
    "WorkerBatch",
    "all_finite",
    "binary_classes",
    "countable_as_is",
    "label_classes",
    "prediction_classes",
    "prepare_step",
    "prepare_steps",
]
