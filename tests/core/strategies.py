"""Hypothesis strategies: index batches, and whole runs of steps over workers and modes.

A ``Scenario`` is what a reader would hand the rule: per global step, one batch per worker, each
in a mode (TRAIN or EVAL). Labels are mostly valid class indices with ignored (-100), negative
and out-of-range values mixed in; a batch occasionally loses its last prediction (a batch-size
mismatch the rule must skip). ``simulate`` derives the expected outcome row by row in plain
Python and numpy, sharing nothing with the core but the definitions.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from hypothesis import strategies as st

from evaluator.core.rule import WorkerBatch
from tests.core.reference import classify_rows, imbalance_holds, misprediction_holds

MODES = ("TRAIN", "EVAL")
CLASS_COUNTS = (2, 3, 5, 1000)
# Dtypes that hold -100 and 1000 exactly, so the reference can reason on Python ints.
DTYPES = (np.int16, np.int32, np.int64, np.float32, np.float64)


@dataclass(frozen=True)
class Batch:
    source: str
    mode: str
    labels: np.ndarray[Any, Any]
    predictions: np.ndarray[Any, Any]

    def worker_batch(self) -> WorkerBatch:
        return WorkerBatch(
            self.source, self.mode, {"labels": self.labels, "predictions": self.predictions}
        )


@dataclass(frozen=True)
class Scenario:
    num_classes: int
    params: dict[str, Any]
    steps: tuple[tuple[int, tuple[Batch, ...]], ...]
    """(step number, every worker's batch at that step)."""


def class_rows(num_classes: int, *, invalid: bool) -> st.SearchStrategy[int]:
    valid = st.integers(0, num_classes - 1)
    if not invalid:
        return valid
    return st.one_of(valid, valid, valid, st.sampled_from([-100, -1, num_classes]))


@st.composite
def index_rows(
    draw: st.DrawFn, *, max_rows: int = 40, num_classes: int | None = None
) -> tuple[int, list[int], list[int]]:
    """(num_classes, labels, predicted): valid class indices only."""
    classes = num_classes or draw(st.sampled_from(CLASS_COUNTS))
    size = draw(st.integers(0, max_rows))
    labels = draw(st.lists(class_rows(classes, invalid=False), min_size=size, max_size=size))
    predicted = draw(st.lists(class_rows(classes, invalid=False), min_size=size, max_size=size))
    return classes, labels, predicted


@st.composite
def batches(draw: st.DrawFn, num_classes: int, source: str) -> Batch:
    size = draw(st.integers(0, 12))
    rows = class_rows(num_classes, invalid=True)
    labels = draw(st.lists(rows, min_size=size, max_size=size))
    predicted = draw(st.lists(rows, min_size=size, max_size=size))
    if size and draw(st.integers(0, 11)) == 0:
        predicted = predicted[:-1]  # a batch-size mismatch: the whole batch is skipped
    return Batch(
        source=source,
        mode=draw(st.sampled_from(MODES)),
        labels=np.asarray(labels, dtype=draw(st.sampled_from(DTYPES))),
        predictions=np.asarray(predicted, dtype=draw(st.sampled_from(DTYPES))),
    )


@st.composite
def scenarios(draw: st.DrawFn, max_steps: int = 8) -> Scenario:
    num_classes = draw(st.sampled_from(CLASS_COUNTS))
    workers = draw(st.integers(1, 3))
    step_count = draw(st.integers(1, max_steps))
    first = draw(st.integers(0, 3))
    stride = draw(st.sampled_from([1, 10]))
    steps = tuple(
        (
            first + index * stride,
            tuple(draw(batches(num_classes, f"worker-{w}")) for w in range(workers)),
        )
        for index in range(step_count)
    )
    params = {
        "threshold_imbalance": draw(st.sampled_from([1.0, 1.5, 2.0, 3.0, 10.0])),
        "threshold_misprediction": draw(st.sampled_from([0.0, 0.5, 0.7, 1.0])),
        "samples": draw(st.sampled_from([0, 5, 20, 60])),
        "max_classes": num_classes,
    }
    return Scenario(num_classes, params, steps)


@dataclass
class Expected:
    """What the rule must report after a scenario, derived row by row."""

    rows_by_mode: dict[str, tuple[list[int], list[int]]] = field(default_factory=dict)
    ignored: int = 0
    skipped_rows: Counter[str] = field(default_factory=Counter)
    skipped_batches: Counter[str] = field(default_factory=Counter)
    first_step: dict[str, int] = field(default_factory=dict)
    """The first step at which each check holds (once enough labels were counted)."""
    issue_step: int | None = None
    samples: np.ndarray[Any, Any] = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    mispredicted: np.ndarray[Any, Any] = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    def all_rows(self) -> tuple[list[int], list[int]]:
        labels = [v for rows in self.rows_by_mode.values() for v in rows[0]]
        predicted = [v for rows in self.rows_by_mode.values() for v in rows[1]]
        return labels, predicted


def simulate(scenario: Scenario) -> Expected:
    expected = Expected()
    size = scenario.num_classes
    samples = np.zeros(size, dtype=np.int64)
    mispredicted = np.zeros(size, dtype=np.int64)
    params = scenario.params
    for step, step_batches in scenario.steps:
        for batch in step_batches:
            if batch.labels.size != batch.predictions.size:
                expected.skipped_batches["batch_size_mismatch"] += 1
                continue
            labels = [int(v) for v in batch.labels.tolist()]
            predicted = [int(v) for v in batch.predictions.tolist()]
            outcome = classify_rows(labels, predicted, max_classes=size)
            expected.ignored += outcome.ignored
            expected.skipped_rows.update(outcome.skipped)
            mode_labels, mode_predicted = expected.rows_by_mode.setdefault(batch.mode, ([], []))
            for label, guess, valid in zip(labels, predicted, outcome.valid, strict=True):
                if valid:
                    mode_labels.append(label)
                    mode_predicted.append(guess)
                    samples[label] += 1
                    mispredicted[label] += label != guess
        if samples.sum() < params["samples"]:
            continue
        holds = {
            "imbalance": imbalance_holds(samples, params["threshold_imbalance"]),
            "misprediction": misprediction_holds(
                samples, mispredicted, params["threshold_misprediction"]
            ),
        }
        for check, held in holds.items():
            if held:
                expected.first_step.setdefault(check, step)
        if any(holds.values()) and expected.issue_step is None:
            expected.issue_step = step
    expected.samples = samples
    expected.mispredicted = mispredicted
    return expected


# -- runs of score batches: the form a training job saves at every step ---------------------

LABEL_DTYPES = (np.int8, np.uint8, np.int16, np.uint16, np.int32, np.uint32, np.int64, np.uint64)
SCORE_DTYPES = (np.float16, np.float32, np.float64)
ODD_FORMS = ("column_labels", "integer_scores", "one_column", "rows_mismatch", "reader_error")


@st.composite
def score_batches(
    draw: st.DrawFn, columns: int, label_dtype: Any, score_dtype: Any, source: str
) -> WorkerBatch:
    """Mostly the common form ((B,) class indices, (B, C) float scores); now and then a bad row
    (a NaN or infinite score, an ignored, negative or out-of-range label) or a batch of
    another form, so that both of the rule's paths are taken and must agree."""
    size = draw(st.integers(0, 10))
    valid = st.integers(0, columns - 1)
    odd_label = st.sampled_from([-100, -1, columns, 1000])
    label_values = draw(st.lists(st.one_of(*[valid] * 30, odd_label), min_size=size, max_size=size))
    kind = np.dtype(label_dtype)
    low, high = (np.iinfo(kind).min, np.iinfo(kind).max)
    labels = np.asarray([min(max(v, low), high) for v in label_values], dtype=kind)
    scores = np.asarray(
        draw(
            st.lists(
                st.lists(
                    st.floats(-10, 10, allow_nan=False, width=16),
                    min_size=columns,
                    max_size=columns,
                ),
                min_size=size,
                max_size=size,
            )
        ),
        dtype=score_dtype,
    ).reshape(size, columns)
    if size and draw(st.integers(0, 40)) == 0:
        scores[draw(st.integers(0, size - 1)), 0] = draw(st.sampled_from([np.nan, np.inf]))
    tensors: dict[str, Any] = {"labels": labels, "predictions": scores}
    odd = draw(st.sampled_from([None] * 30 + list(ODD_FORMS)))
    if odd == "column_labels":
        tensors["labels"] = labels.reshape(-1, 1)
    elif odd == "integer_scores":
        tensors["predictions"] = np.nan_to_num(scores, posinf=0.0).astype(np.int32)
    elif odd == "one_column":
        tensors["predictions"] = scores[:, :1]
    elif odd == "rows_mismatch" and size:
        tensors["predictions"] = scores[:-1]
    if odd == "reader_error":
        return WorkerBatch(source, "TRAIN", {}, error_reason="truncated", error="cut short")
    return WorkerBatch(source, draw(st.sampled_from(MODES)), tensors)


@dataclass(frozen=True)
class ScoreRun:
    params: dict[str, Any]
    steps: tuple[tuple[int, tuple[WorkerBatch, ...]], ...]


@st.composite
def score_runs(draw: st.DrawFn, max_steps: int = 16) -> ScoreRun:
    columns = draw(st.sampled_from([2, 3, 7]))
    label_dtype = draw(st.sampled_from(LABEL_DTYPES))
    score_dtype = draw(st.sampled_from(SCORE_DTYPES))
    workers = draw(st.integers(1, 3))
    steps = tuple(
        (
            step,
            tuple(
                draw(score_batches(columns, label_dtype, score_dtype, f"worker-{w}"))
                for w in range(workers)
            ),
        )
        for step in range(draw(st.integers(1, max_steps)))
    )
    params = {
        "threshold_imbalance": draw(st.sampled_from([1.5, 10.0])),
        "threshold_misprediction": draw(st.sampled_from([0.5, 0.7])),
        "samples": draw(st.sampled_from([0, 20])),
        "max_classes": draw(st.sampled_from([columns, columns - 1, 1000])),
        "ignore_index": draw(st.sampled_from([-100, 0, None])),
        "argmax": draw(st.sampled_from([True, True, True, False])),
    }
    return ScoreRun(params, steps)
