"""Turn label and prediction tensors, in whatever form a framework saved them, into class indices.

Frameworks save labels as class indices in any integer dtype, as integral floats, as (B, 1)
columns, or one-hot / probability rows; predictions as class indices, (B, C) scores, or one
score per sample for a binary model (XGBoost's binary:logistic (B,) probabilities, a
BCEWithLogitsLoss model's (B, 1) logits, a Keras sigmoid's (B, 1) probabilities). Everything
here is vectorised: a step's rows are classified in a few numpy passes, and rows that cannot be
counted are set aside with a named reason instead of failing the step. Only a form that cannot
be interpreted at all (a shape, a dtype, argmax left off for scores) rejects the whole batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

# Row-level reasons, in the order a row's first problem is reported.
IGNORED = "ignored_label"
NONFINITE_LABEL = "nonfinite_label"
NONINTEGRAL_LABEL = "nonintegral_label"
NEGATIVE_LABEL = "negative_label"
LABEL_OUT_OF_RANGE = "label_out_of_range"
NONFINITE_SCORE = "nonfinite_score"
NONFINITE_PREDICTION = "nonfinite_prediction"
PREDICTION_OUT_OF_RANGE = "prediction_out_of_range"
BINARY_SCORE_OUT_OF_RANGE = "binary_score_out_of_range"

PROBABILITY = "probability"
LOGIT = "logit"
BINARY_FORMS = (PROBABILITY, LOGIT)


class BatchRejected(ValueError):
    """A whole batch cannot be interpreted; ``reason`` is a short key for counting."""

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        super().__init__(message)


@dataclass(frozen=True)
class RowClasses:
    """Class index per row, and the rows that must not be counted, by reason (priority order)."""

    classes: IntArray
    problems: tuple[tuple[str, BoolArray], ...] = ()
    binary_form: str | None = None
    """For binary scores: how they were read (``probability`` or ``logit``)."""


@dataclass(frozen=True)
class BinaryScores:
    """How one score per sample becomes a class: 1 when the probability is above
    ``threshold``, or the logit above log(threshold / (1 - threshold)); 0 otherwise.

    ``form`` is ``probability`` or ``logit`` once known; None decides it from the scores
    (torchmetrics' convention: any score outside [0, 1] means logits), once per trial: the
    caller keeps the form the first batch decided, so a later batch of logits that happen to
    lie in [0, 1] is still read as logits."""

    threshold: float = 0.5
    form: str | None = None


def label_classes(
    tensor: npt.ArrayLike, *, ignore_index: int | None, max_classes: int
) -> RowClasses:
    """Class index per label row: indices as they are, one-hot/probability rows by argmax."""
    array = _as_rows(tensor, "labels")
    if array.ndim == 2:
        rows = _argmax_rows(array, "labels", NONFINITE_LABEL)
        return _flag_out_of_range(rows, max_classes, LABEL_OUT_OF_RANGE, array.shape[1])
    classes, column_problems = _integral_column(
        array, "labels", NONFINITE_LABEL, NONINTEGRAL_LABEL, max_classes
    )
    if not column_problems and countable_as_is(classes, ignore_index, max_classes):
        return RowClasses(classes)  # the common case: two reductions, no masks
    problems = list(column_problems)
    if ignore_index is not None:
        ignored = classes == ignore_index
        for _, mask in column_problems:  # NaN/non-integral rows were cleaned to 0: not ignored
            ignored &= ~mask
        if ignored.any():
            problems.insert(0, (IGNORED, ignored))
    below = classes < 0
    if below.any():
        problems.append((NEGATIVE_LABEL, below))
    above = classes >= max_classes
    if above.any():
        problems.append((LABEL_OUT_OF_RANGE, above))
    return RowClasses(classes, tuple(problems))


def countable_as_is(classes: IntArray, ignore_index: int | None, max_classes: int) -> bool:
    """Whether every label index counts as it is (none ignored, negative or out of range),
    decided by two reductions; False for no rows, which take the masked path."""
    if not classes.size:
        return False
    low, high = int(classes.min()), int(classes.max())
    return (
        low >= 0
        and high < max_classes
        and not (ignore_index is not None and low <= ignore_index <= high)
    )


def all_finite(array: npt.NDArray[np.generic]) -> bool:
    """Whether a float array holds no NaN or infinity (other dtypes always do not).

    min and max propagate NaN and show infinities without float warnings: two fast passes
    decide the common case before any per-row work."""
    return (
        array.dtype.kind != "f"
        or not array.size
        or bool(np.isfinite(array.min()) and np.isfinite(array.max()))
    )


def prediction_classes(
    tensor: npt.ArrayLike,
    *,
    argmax: bool,
    max_classes: int,
    binary: BinaryScores | None = None,
) -> RowClasses:
    """Class index per prediction row: indices as they are, (B, C) scores by argmax if enabled,
    one float score per sample as a binary score once the trial's binary form is known, and
    before that when a score is not a whole number. (Once a batch of fractional scores decided
    the form, a later batch of saturated 0.0/1.0 probabilities or whole-number logits is still
    binary scores, not class indices.)"""
    array = _as_rows(tensor, "predictions")
    if (
        array.ndim == 1
        and array.dtype.kind == "f"
        and ((binary is not None and binary.form is not None) or _has_fraction(array))
    ):
        return binary_classes(array, binary or BinaryScores(), max_classes)
    if array.ndim == 2:
        if not argmax:
            raise BatchRejected(
                "argmax_required",
                f"expected predictions as class indices of shape (B,) because argmax is false, "
                f"but found scores of shape {array.shape}: set argmax to true",
            )
        rows = _argmax_rows(array, "predictions", NONFINITE_SCORE)
        return _flag_out_of_range(rows, max_classes, PREDICTION_OUT_OF_RANGE, array.shape[1])
    classes, problems = _integral_column(
        array, "predictions", NONFINITE_PREDICTION, None, max_classes
    )
    outside = (classes < 0) | (classes >= max_classes)
    if outside.any():
        problems = (*problems, (PREDICTION_OUT_OF_RANGE, outside))
    return RowClasses(classes, problems)


def _has_fraction(array: npt.NDArray[np.generic]) -> bool:
    """Whether a float column holds a finite value that is not a whole number."""
    finite = array[np.isfinite(array)]
    return bool(finite.size) and not bool(np.all(np.floor(finite) == finite))


def binary_classes(
    scores: npt.NDArray[np.generic], binary: BinaryScores, max_classes: int
) -> RowClasses:
    """Class 1 where the score is above the threshold (of its form), else 0; the form used is
    in ``binary_form``. Under ``probability``, a score outside [0, 1] is no probability: its row
    is set aside as ``binary_score_out_of_range`` rather than guessed."""
    values = scores.astype(np.float64)
    finite = np.isfinite(values)
    problems: list[tuple[str, BoolArray]] = []
    if not finite.all():
        problems.append((NONFINITE_SCORE, ~finite))
    clean = np.where(finite, values, 0.0)
    outside = finite & ((clean < 0.0) | (clean > 1.0))
    form = binary.form or (LOGIT if outside.any() else PROBABILITY)
    if form == LOGIT:
        cut = float(np.log(binary.threshold / (1.0 - binary.threshold)))
        classes = (clean > cut).astype(np.int64)
    else:
        if outside.any():
            problems.append((BINARY_SCORE_OUT_OF_RANGE, outside))
        classes = (clean > binary.threshold).astype(np.int64)
    if max_classes < 2:
        above = classes >= max_classes
        if above.any():
            problems.append((PREDICTION_OUT_OF_RANGE, above))
    return RowClasses(classes, tuple(problems), form)


def _as_rows(tensor: npt.ArrayLike, role: str) -> npt.NDArray[np.generic]:
    """Reshape to (B,) or (B, C); a scalar is one row and a (B, 1) column is squeezed."""
    array = np.asarray(tensor)
    if array.dtype.kind not in "biuf":
        raise BatchRejected(
            f"unsupported_{role}_dtype",
            f"expected {role} as numbers (integers, floats or booleans), but found dtype "
            f"{array.dtype}: point {role}_regex at a numeric tensor",
        )
    if array.ndim == 0:
        return array.reshape(1)
    if array.ndim == 2 and array.shape[1] == 1:
        return array[:, 0]
    if array.ndim == 2 and array.shape[1] == 0:
        raise BatchRejected(
            f"unsupported_{role}_shape",
            f"expected {role} of shape (B,) or (B, C) with C >= 1, but found {array.shape}",
        )
    if array.ndim > 2:
        raise BatchRejected(
            f"unsupported_{role}_shape",
            f"expected {role} of shape (B,), (B, 1) or (B, C), but found {array.shape}: "
            f"save one row per sample (flatten sequence dimensions into the batch)",
        )
    return array


def _argmax_rows(array: npt.NDArray[np.generic], role: str, nonfinite: str) -> RowClasses:
    if not all_finite(array):
        bad = ~np.isfinite(array).all(axis=1)
        cleaned = np.where(bad[:, None], 0, array)
        return RowClasses(np.argmax(cleaned, axis=1).astype(np.int64), ((nonfinite, bad),))
    return RowClasses(np.argmax(array, axis=1).astype(np.int64, copy=False))


def _flag_out_of_range(rows: RowClasses, max_classes: int, reason: str, columns: int) -> RowClasses:
    """Argmax over more than max_classes columns can give a class index out of range."""
    if columns <= max_classes:
        return rows
    above = rows.classes >= max_classes
    if not above.any():
        return rows
    return RowClasses(rows.classes, (*rows.problems, (reason, above)))


def _integral_column(
    array: npt.NDArray[np.generic],
    role: str,
    nonfinite: str,
    nonintegral: str | None,
    max_classes: int,
) -> tuple[IntArray, tuple[tuple[str, BoolArray], ...]]:
    """Class indices from a 1-D column; floats must hold whole numbers."""
    kind = array.dtype.kind
    if kind in "bi":
        return array.astype(np.int64, copy=False), ()
    if kind == "u":
        # uint64 values above int64's range would wrap to negatives; clip to "out of range".
        clipped = np.minimum(array, np.uint64(max_classes)) if array.dtype.itemsize == 8 else array
        return clipped.astype(np.int64), ()
    finite = np.isfinite(array)
    whole = np.equal(np.floor(array, where=finite, out=np.zeros(array.shape)), array)
    if finite.all() and whole.all():
        return _float_to_index(array, max_classes), ()
    if nonintegral is None:
        # Predictions: a column with a fraction is binary scores (``prediction_classes``), so
        # here only non-finite values stand between a row and its class.
        problems: tuple[tuple[str, BoolArray], ...] = ((nonfinite, ~finite),)
    else:
        problems = ((nonfinite, ~finite), (nonintegral, finite & ~whole))
    cleaned = np.where(finite & whole, array, 0)
    return _float_to_index(cleaned, max_classes), problems


def _float_to_index(array: npt.NDArray[np.generic], max_classes: int) -> IntArray:
    # Clip before the cast: 1e30 would otherwise become an arbitrary int64. Values beyond
    # max_classes (or far below zero) stay out of range, and every integer within 2**53 is exact.
    limit = float(max(max_classes, 2**53))
    return np.clip(array.astype(np.float64), -limit, limit).astype(np.int64)
