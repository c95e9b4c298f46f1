"""A named catalogue of input cases for one worker batch, with their expected outcome.

Each case is the tensors of one worker at one step (names as a reader would deliver them), the
rule parameters that differ from the defaults, and what the rule must make of them:

* ``pairs``: the (label, predicted) rows that are counted, in batch order, written by hand;
  the tests compare the core's full confusion with scikit-learn's on exactly these rows;
* ``samples`` / ``mispredicted``: the per-class counts, also by hand (trimmed to the largest
  class with a sample, as ``ClassCounts.trimmed`` returns them);
* ``ignored`` and ``skipped_rows`` / ``skipped_batches``: the rows and batches not counted, by
  reason; ``message`` is a phrase the rejection must contain.

Tests parametrise over ``CASES`` with the names as ids (``pytest -k logits`` runs one).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

INTEGER_DTYPES = (
    np.int8,
    np.int16,
    np.int32,
    np.int64,
    np.uint8,
    np.uint16,
    np.uint32,
    np.uint64,
)
FLOAT_DTYPES = (np.float16, np.float32, np.float64)

NAN = float("nan")
INF = float("inf")


@dataclass(frozen=True)
class Case:
    tensors: Mapping[str, Any]
    pairs: tuple[tuple[int, int], ...] = ()
    samples: tuple[int, ...] = ()
    mispredicted: tuple[int, ...] = ()
    params: Mapping[str, Any] = field(default_factory=dict)
    ignored: int = 0
    skipped_rows: Mapping[str, int] = field(default_factory=dict)
    skipped_batches: Mapping[str, int] = field(default_factory=dict)
    message: str | None = None
    """A phrase the rejection message (``problem_examples``) must contain."""

    @property
    def counted(self) -> int:
        return len(self.pairs)

    @property
    def single_pair(self) -> bool:
        """Exactly one labels tensor and one predictions tensor, named "labels"/"predictions"."""
        return set(self.tensors) == {"labels", "predictions"}


def _case(labels: Any, predictions: Any, **expected: Any) -> Case:
    return Case(tensors={"labels": labels, "predictions": predictions}, **expected)


def _rejected(tensors: Mapping[str, Any], reason: str, message: str, **kw: Any) -> Case:
    return Case(tensors=tensors, skipped_batches={reason: 1}, message=message, **kw)


# labels [0, 1, 2, 2, 1] against predictions [0, 2, 2, 1, 1], in every dtype.
_BASIC_PAIRS = ((0, 0), (1, 2), (2, 2), (2, 1), (1, 1))
_BASIC = {"pairs": _BASIC_PAIRS, "samples": (1, 2, 2), "mispredicted": (0, 1, 1)}

_DTYPE_CASES = {
    f"labels_{np.dtype(dtype).name}": _case(
        np.array([0, 1, 2, 2, 1], dtype=dtype), np.array([0, 2, 2, 1, 1], dtype=dtype), **_BASIC
    )
    for dtype in (*INTEGER_DTYPES, *FLOAT_DTYPES)
}

# 1000 classes, one sample each; odd classes are predicted as the next class.
_THOUSAND = np.arange(1000)
_THOUSAND_PREDICTED = np.where(_THOUSAND % 2 == 0, _THOUSAND, (_THOUSAND + 1) % 1000)

CASES: dict[str, Case] = {
    **_DTYPE_CASES,
    "labels_bool": _case(
        np.array([True, False, True]),
        np.array([True, True, False]),
        pairs=((1, 1), (0, 1), (1, 0)),
        samples=(1, 2),
        mispredicted=(1, 1),
    ),
    "labels_int_predictions_float_indices": _case(
        np.array([0, 1, 2, 2, 1], dtype=np.int32),
        np.array([0.0, 2.0, 2.0, 1.0, 1.0], dtype=np.float32),
        **_BASIC,
    ),
    "column_b1": _case(
        np.array([[0], [1], [1]]),
        np.array([[1], [1], [1]], dtype=np.float64),
        pairs=((0, 1), (1, 1), (1, 1)),
        samples=(1, 2),
        mispredicted=(1, 0),
    ),
    "scalar": _case(
        np.int64(3), np.int64(1), pairs=((3, 1),), samples=(0, 0, 0, 1), mispredicted=(0, 0, 0, 1)
    ),
    "scalar_float_0d_array": _case(
        np.array(2.0, dtype=np.float32),
        np.array(2),
        pairs=((2, 2),),
        samples=(0, 0, 1),
        mispredicted=(0, 0, 0),
    ),
    "one_hot_labels": _case(
        np.eye(3)[[0, 1, 2, 2]],
        np.array([0, 1, 1, 2]),
        pairs=((0, 0), (1, 1), (2, 1), (2, 2)),
        samples=(1, 1, 2),
        mispredicted=(0, 0, 1),
    ),
    "one_hot_labels_int8": _case(
        np.eye(4, dtype=np.int8)[[3, 3, 0]],
        np.array([3, 0, 0]),
        pairs=((3, 3), (3, 0), (0, 0)),
        samples=(1, 0, 0, 2),
        mispredicted=(0, 0, 0, 1),
    ),
    "one_hot_labels_bool": _case(
        np.eye(2, dtype=bool)[[1, 0]],
        np.array([1, 1]),
        pairs=((1, 1), (0, 1)),
        samples=(1, 1),
        mispredicted=(1, 0),
    ),
    "probability_labels": _case(
        np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8], [0.3, 0.4, 0.3]]),
        np.array([0, 0, 1]),
        pairs=((0, 0), (2, 0), (1, 1)),
        samples=(1, 1, 1),
        mispredicted=(0, 0, 1),
    ),
    "logits_with_argmax": _case(
        np.array([1, 2, 2]),
        np.array([[-1.0, 2.0, 0.5], [3.0, -2.0, 0.0], [0.1, 0.2, 5.0]], dtype=np.float32),
        params={"argmax": True},
        pairs=((1, 1), (2, 0), (2, 2)),
        samples=(0, 1, 2),
        mispredicted=(0, 0, 1),
    ),
    "probabilities_with_argmax_string_true": _case(
        np.array([0, 1]),
        np.array([[0.9, 0.1], [0.6, 0.4]], dtype=np.float16),
        params={"argmax": "true"},
        pairs=((0, 0), (1, 0)),
        samples=(1, 1),
        mispredicted=(0, 1),
    ),
    "one_hot_labels_and_scores": _case(
        np.eye(3)[[2, 0]],
        np.array([[0.1, 0.2, 0.7], [0.1, 0.8, 0.1]]),
        params={"argmax": True},
        pairs=((2, 2), (0, 1)),
        samples=(1, 0, 1),
        mispredicted=(1, 0, 0),
    ),
    "argmax_ties_pick_first": _case(
        np.array([1, 2, 2]),
        np.array([[0.5, 0.5, 0.0], [0.1, 0.4, 0.4], [0.3, 0.3, 0.3]]),
        params={"argmax": True},
        pairs=((1, 0), (2, 1), (2, 0)),
        samples=(0, 1, 2),
        mispredicted=(0, 1, 2),
    ),
    "label_ties_pick_first": _case(
        np.array([[0.5, 0.5], [0.0, 0.0]]),
        np.array([1, 0]),
        pairs=((0, 1), (0, 0)),
        samples=(2,),
        mispredicted=(1,),
    ),
    "ignore_index_default": _case(
        np.array([0, -100, 1, -100, 1]),
        np.array([0, 0, 1, 1, 0]),
        ignored=2,
        pairs=((0, 0), (1, 1), (1, 0)),
        samples=(1, 2),
        mispredicted=(0, 1),
    ),
    "ignore_index_float_label": _case(
        np.array([0.0, -100.0, 1.0], dtype=np.float32),
        np.array([1, 1, 1]),
        ignored=1,
        pairs=((0, 1), (1, 1)),
        samples=(1, 1),
        mispredicted=(1, 0),
    ),
    "ignore_index_int8": _case(
        np.array([-100, 0], dtype=np.int8),
        np.array([5, 0], dtype=np.int8),
        ignored=1,
        pairs=((0, 0),),
        samples=(1,),
        mispredicted=(0,),
    ),
    "ignore_index_custom_string_uint8": _case(
        np.array([255, 1, 255], dtype=np.uint8),
        np.array([0, 0, 1], dtype=np.uint8),
        params={"ignore_index": "255"},
        ignored=2,
        pairs=((1, 0),),
        samples=(0, 1),
        mispredicted=(0, 1),
    ),
    "ignore_index_disabled": _case(
        np.array([-100, 0]),
        np.array([0, 0]),
        params={"ignore_index": "none"},
        skipped_rows={"negative_label": 1},
        pairs=((0, 0),),
        samples=(1,),
        mispredicted=(0,),
    ),
    "ignore_index_zero_does_not_swallow_nan_labels": _case(
        np.array([NAN, 0.0, 1.0, 0.5]),
        np.array([0, 0, 1, 0]),
        params={"ignore_index": 0},
        ignored=1,
        skipped_rows={"nonfinite_label": 1, "nonintegral_label": 1},
        pairs=((1, 1),),
        samples=(0, 1),
        mispredicted=(0, 0),
    ),
    "ignored_label_with_bad_prediction_counts_as_ignored": _case(
        np.array([-100, 1]),
        np.array([-3, 1]),
        ignored=1,
        pairs=((1, 1),),
        samples=(0, 1),
        mispredicted=(0, 0),
    ),
    "negative_labels": _case(
        np.array([-1, 0, -5, 2]),
        np.array([0, 0, 0, 2]),
        skipped_rows={"negative_label": 2},
        pairs=((0, 0), (2, 2)),
        samples=(1, 0, 1),
        mispredicted=(0, 0, 0),
    ),
    "nan_and_inf_labels": _case(
        np.array([NAN, 1.0, INF, -INF, 2.0]),
        np.array([0, 1, 0, 0, 1]),
        skipped_rows={"nonfinite_label": 3},
        pairs=((1, 1), (2, 1)),
        samples=(0, 1, 1),
        mispredicted=(0, 0, 1),
    ),
    "nonintegral_labels": _case(
        np.array([0.5, 1.0, -0.5], dtype=np.float32),
        np.array([0, 1, 0]),
        skipped_rows={"nonintegral_label": 2},
        pairs=((1, 1),),
        samples=(0, 1),
        mispredicted=(0, 0),
    ),
    "huge_float_labels": _case(
        np.array([1e30, -1e30, 1.0]),
        np.array([0, 0, 0]),
        skipped_rows={"label_out_of_range": 1, "negative_label": 1},
        pairs=((1, 0),),
        samples=(0, 1),
        mispredicted=(0, 1),
    ),
    "nan_in_one_hot_labels": _case(
        np.array([[NAN, 1.0], [0.0, 1.0]]),
        np.array([1, 1]),
        skipped_rows={"nonfinite_label": 1},
        pairs=((1, 1),),
        samples=(0, 1),
        mispredicted=(0, 0),
    ),
    "nan_and_inf_scores": _case(
        np.array([0, 1, 0, 0]),
        np.array([[NAN, 1.0], [0.0, 1.0], [INF, 0.0], [0.2, 0.8]]),
        params={"argmax": True},
        skipped_rows={"nonfinite_score": 2},
        pairs=((1, 1), (0, 1)),
        samples=(1, 1),
        mispredicted=(1, 0),
    ),
    "nan_prediction_indices": _case(
        np.array([0, 1, 1]),
        np.array([NAN, 1.0, -INF]),
        skipped_rows={"nonfinite_prediction": 2},
        pairs=((1, 1),),
        samples=(0, 1),
        mispredicted=(0, 0),
    ),
    "label_problem_reported_before_prediction_problem": _case(
        np.array([-1, 0, 2]),
        np.array([-1, 0, 9]),
        params={"max_classes": 5},
        skipped_rows={"negative_label": 1, "prediction_out_of_range": 1},
        pairs=((0, 0),),
        samples=(1,),
        mispredicted=(0,),
    ),
    "uint64_huge_labels": _case(
        np.array([2**64 - 1, 1, 2**63], dtype=np.uint64),
        np.array([1, 1, 0], dtype=np.uint64),
        skipped_rows={"label_out_of_range": 2},
        pairs=((1, 1),),
        samples=(0, 1),
        mispredicted=(0, 0),
    ),
    "uint64_huge_predictions": _case(
        np.array([0, 1], dtype=np.uint64),
        np.array([2**64 - 1, 1], dtype=np.uint64),
        skipped_rows={"prediction_out_of_range": 1},
        pairs=((1, 1),),
        samples=(0, 1),
        mispredicted=(0, 0),
    ),
    "labels_at_or_above_max_classes": _case(
        np.array([5, 4, 7, 0]),
        np.array([0, 4, 0, 1]),
        params={"max_classes": "5"},
        skipped_rows={"label_out_of_range": 2},
        pairs=((4, 4), (0, 1)),
        samples=(1, 0, 0, 0, 1),
        mispredicted=(1, 0, 0, 0, 0),
    ),
    "predictions_out_of_range": _case(
        np.array([0, 1, 2]),
        np.array([5, -1, 2]),
        params={"max_classes": 5},
        skipped_rows={"prediction_out_of_range": 2},
        pairs=((2, 2),),
        samples=(0, 0, 1),
        mispredicted=(0, 0, 0),
    ),
    "one_hot_labels_wider_than_max_classes": _case(
        np.eye(5)[[4, 0]],
        np.array([0, 0]),
        params={"max_classes": 3},
        skipped_rows={"label_out_of_range": 1},
        pairs=((0, 0),),
        samples=(1,),
        mispredicted=(0,),
    ),
    "scores_wider_than_max_classes": _case(
        np.array([0, 1]),
        np.eye(5)[[4, 1]],
        params={"max_classes": 3, "argmax": True},
        skipped_rows={"prediction_out_of_range": 1},
        pairs=((1, 1),),
        samples=(0, 1),
        mispredicted=(0, 0),
    ),
    "empty_batch": _case(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)),
    "empty_column_batch": _case(np.zeros((0, 1)), np.zeros((0, 1), dtype=np.int32)),
    "empty_batch_with_scores": _case(
        np.zeros(0, dtype=np.int64), np.zeros((0, 3)), params={"argmax": True}
    ),
    "thousand_classes": _case(
        _THOUSAND,
        _THOUSAND_PREDICTED,
        pairs=tuple(zip(_THOUSAND.tolist(), _THOUSAND_PREDICTED.tolist(), strict=True)),
        samples=(1,) * 1000,
        mispredicted=tuple((_THOUSAND % 2).tolist()),
    ),
    "thousand_class_scores": _case(
        np.array([999, 0, 500]),
        np.eye(1000, dtype=np.float32)[[999, 999, 7]],
        params={"argmax": True},
        pairs=((999, 999), (0, 999), (500, 7)),
        samples=(1, *(0,) * 499, 1, *(0,) * 498, 1),
        mispredicted=(1, *(0,) * 499, 1, *(0,) * 498, 0),
    ),
    # Inserted b before a: concatenation must follow name order, pairing a with a.
    "several_tensors_concatenated_in_name_order": Case(
        tensors={
            "b_labels": np.array([1, 1]),
            "a_predictions": np.array([0, 0]),
            "a_labels": np.array([0, 0]),
            "b_predictions": np.array([1, 1]),
        },
        pairs=((0, 0), (0, 0), (1, 1), (1, 1)),
        samples=(2, 2),
        mispredicted=(0, 0),
    ),
    "several_tensors_keep_row_problems_in_place": Case(
        tensors={
            "b_labels": np.array([-100, 2]),
            "a_labels": np.array([[0], [1]]),
            "b_predictions": np.array([[0.1, 0.2, 0.7], [0.1, 0.2, 0.7]]),
            "a_predictions": np.array([[0.9, 0.1, 0.0], [NAN, 0.0, 0.0]]),
        },
        params={"argmax": True},
        ignored=1,
        skipped_rows={"nonfinite_score": 1},
        pairs=((0, 0), (2, 2)),
        samples=(1, 0, 1),
        mispredicted=(0, 0, 0),
    ),
    "several_tensors_length_mismatch": _rejected(
        {
            "a_labels": np.array([0, 1]),
            "b_labels": np.array([1]),
            "a_predictions": np.array([0, 1]),
            "b_predictions": np.array([1, 1]),
        },
        "batch_size_mismatch",
        "3 labels (a_labels, b_labels) and 4 predictions",
    ),
    "batch_size_mismatch": _rejected(
        {"labels": np.array([0, 1, 1]), "predictions": np.array([0, 1])},
        "batch_size_mismatch",
        "expected as many prediction rows as label rows",
    ),
    # A tensor matching both regexes is both labels and predictions (smdebug's semantics):
    # labels [labels, labels_vs_predictions], predictions [labels_vs_predictions, predictions].
    "a_name_matching_both_regexes_is_in_both_roles": Case(
        tensors={
            "labels": np.array([0]),
            "predictions": np.array([1]),
            "labels_vs_predictions": np.array([2]),
        },
        pairs=((0, 2), (2, 1)),
        samples=(1, 0, 1),
        mispredicted=(1, 0, 1),
    ),
    "one_tensor_for_both_roles_has_no_misprediction": Case(
        tensors={"labels_0": np.array([0, 0, 0, 1])},
        pairs=((0, 0), (0, 0), (0, 0), (1, 1)),
        samples=(3, 1),
        mispredicted=(0, 0),
        params={"labels_regex": "labels_0", "predictions_regex": "labels_0"},
    ),
    "overlapping_regexes_with_rows_that_differ": _rejected(
        {"y": np.array([0]), "y_hat": np.array([0])},
        "batch_size_mismatch",
        "2 labels (y, y_hat) and 1 predictions (y_hat)",
        params={"labels_regex": "y", "predictions_regex": "y_hat"},
    ),
    "missing_labels": _rejected(
        {"predictions": np.array([0, 1]), "loss": np.float32(0.3)},
        "missing_labels",
        "no tensor matching labels_regex '.*labels' among ['loss', 'predictions']",
    ),
    "missing_predictions": _rejected(
        {"labels": np.array([0, 1])}, "missing_predictions", "no tensor matching predictions_regex"
    ),
    "no_tensors": _rejected({}, "missing_labels", "among no tensors"),
    "scores_without_argmax": _rejected(
        {"labels": np.array([0, 1]), "predictions": np.array([[0.2, 0.8], [0.6, 0.4]])},
        "argmax_required",
        "set argmax to true",
    ),
    "binary_probabilities": _case(
        np.array([0, 1, 1, 0], dtype=np.float32),
        np.array([0.2, 0.8, 0.4, 0.5], dtype=np.float32),
        pairs=((0, 0), (1, 1), (1, 0), (0, 0)),
        samples=(2, 2),
        mispredicted=(0, 1),
    ),
    "binary_logits_column": _case(
        np.array([[0], [1], [1]]),
        np.array([[-2.5], [0.3], [-0.1]], dtype=np.float32),
        pairs=((0, 0), (1, 1), (1, 0)),
        samples=(1, 2),
        mispredicted=(0, 1),
    ),
    "string_labels": _rejected(
        {"labels": np.array(["cat", "dog"]), "predictions": np.array([0, 1])},
        "unsupported_labels_dtype",
        "expected labels as numbers",
    ),
    "three_dimensional_labels": _rejected(
        {"labels": np.zeros((2, 3, 4)), "predictions": np.array([0, 1])},
        "unsupported_labels_shape",
        "flatten sequence dimensions",
    ),
    "zero_width_scores": _rejected(
        {"labels": np.array([0, 1]), "predictions": np.zeros((2, 0))},
        "unsupported_predictions_shape",
        "with C >= 1",
        params={"argmax": True},
    ),
    "regex_search_anywhere_in_name": Case(
        tensors={"loss/labels:0": np.array([1, 0]), "model/preds_out": np.array([1, 1])},
        params={"labels_regex": "labels", "predictions_regex": "preds"},
        pairs=((1, 1), (0, 1)),
        samples=(1, 1),
        mispredicted=(1, 0),
    ),
    "default_regex_matches_suffixed_names": Case(
        tensors={
            "CrossEntropyLoss_input_labels_0": np.array([2]),
            "model_predictions_0": np.array([2]),
            "loss": np.float32(1.5),
        },
        pairs=((2, 2),),
        samples=(0, 0, 1),
        mispredicted=(0, 0, 0),
    ),
}
