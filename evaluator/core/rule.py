"""The ClassImbalance rule: a thin stateful shell over the pure pieces.

``evaluate_step`` takes one global step's tensors (one batch per worker), normalises them to
class indices, adds them to per-mode counts and runs the checks on the counts summed over modes.
All state is additive, so ``merge`` and ``to_state``/``from_state`` give exact checkpoints and
multi-source totals. The rule never reads files or knows where tensors came from.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from evaluator.core.checks import (
    IMBALANCE,
    MISPREDICTION,
    Finding,
    check_imbalance,
    check_misprediction,
    checks_per_step,
)
from evaluator.core.counts import ClassCounts, IntArray
from evaluator.core.normalise import (
    IGNORED,
    BatchRejected,
    RowClasses,
    all_finite,
    countable_as_is,
    label_classes,
    prediction_classes,
)
from evaluator.core.params import RuleParameters

RULE_NAME = "ClassImbalance"
_EXAMPLES_KEPT = 32  # distinct skip reasons whose last message is kept for the status


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


@dataclass(frozen=True)
class StepResult:
    """What one step changed."""

    step: int
    counted: int
    new_findings: tuple[Finding, ...]
    skipped_batches: int


@dataclass
class ClassImbalanceRule:
    """Cumulative evaluation over steps, workers and modes."""

    params: RuleParameters
    counts_by_mode: dict[str, ClassCounts] = field(default_factory=dict)
    steps_evaluated: int = 0
    last_step: int | None = None
    issue_step: int | None = None
    findings: list[Finding] = field(default_factory=list)
    """The first finding of each check, in the order they occurred."""
    current_holds: dict[str, bool] = field(default_factory=dict)
    """Whether each check holds at the last evaluated step (empty before ``samples``)."""
    ignored: int = 0
    skipped_rows: Counter[str] = field(default_factory=Counter)
    skipped_batches: Counter[str] = field(default_factory=Counter)
    problem_examples: dict[str, str] = field(default_factory=dict)
    """The latest message for each skip reason, so the status can say what to change."""

    def __post_init__(self) -> None:
        self._labels_pattern = re.compile(self.params.labels_regex)
        self._predictions_pattern = re.compile(self.params.predictions_regex)
        self._split_cache: dict[tuple[str, ...], tuple[list[str], list[str]]] = {}

    # -- inputs -----------------------------------------------------------------------------

    def wants(self, tensor_name: str) -> bool:
        """Whether a tensor of this name is a label or prediction tensor (search semantics)."""
        return bool(
            self._labels_pattern.search(tensor_name)
            or self._predictions_pattern.search(tensor_name)
        )

    def split_names(self, tensor_names: Sequence[str]) -> tuple[list[str], list[str]]:
        """(label names, prediction names), each sorted: the order tensors are concatenated.

        Remembered per set of names: a trial saves the same tensors at nearly every step.
        """
        key = tuple(tensor_names)
        cached = self._split_cache.get(key)
        if cached is None:
            labels = sorted(n for n in tensor_names if self._labels_pattern.search(n))
            predictions = sorted(n for n in tensor_names if self._predictions_pattern.search(n))
            cached = (labels, predictions)
            if len(self._split_cache) < 256:
                self._split_cache[key] = cached
        return list(cached[0]), list(cached[1])

    # -- evaluation -------------------------------------------------------------------------

    @property
    def samples(self) -> int:
        """Labels counted so far, over every mode."""
        return sum(counts.total for counts in self.counts_by_mode.values())

    def evaluate_step(self, step: int, batches: Sequence[WorkerBatch]) -> StepResult:
        """Count one global step (every worker's batch), then run the checks."""
        return self.evaluate_steps([(step, batches)])[0]

    def evaluate_steps(
        self,
        steps: Sequence[tuple[int, Sequence[WorkerBatch]]],
        *,
        stop_at_first_issue: bool = False,
    ) -> list[StepResult]:
        """Evaluate consecutive steps exactly as one ``evaluate_step`` after another would.

        Replaying a saved trial hands over thousands of steps at once: the counts of a whole
        chunk are added in a few numpy calls and the checks run for every step of it on
        cumulative counts (a steps x classes matrix), so the cost per step is a small fraction
        of a step-by-step loop. With ``stop_at_first_issue`` nothing after the issue step is
        counted. Returns one result per step evaluated.
        """
        results: list[StepResult] = []
        position = 0
        while position < len(steps):
            size = max(1, _CHUNK_CELLS // max(1, self._class_bound()))
            window = steps[position : position + size]
            uniform = self._prepare_uniform(window)
            chunk = (
                list(zip((step for step, _ in window), uniform, strict=True))
                if uniform is not None
                else [(step, self._prepare_step(step, batches)) for step, batches in window]
            )
            results.extend(self._evaluate_chunk(chunk, stop_at_first_issue))
            if stop_at_first_issue and self.issue_step is not None:
                break
            position += size
        return results

    def _class_bound(self) -> int:
        return max((c.num_classes for c in self.counts_by_mode.values()), default=0) + 1

    def _prepare_step(self, step: int, batches: Sequence[WorkerBatch]) -> _PreparedStep:
        prepared = _PreparedStep()
        for batch in batches:
            try:
                prepared.rows.append(self._prepare_batch(batch, prepared))
            except BatchRejected as rejection:
                prepared.rejected.append(
                    (rejection.reason, f"step {step}, {batch.source}: {rejection}")
                )
        return prepared

    def _prepare_uniform(
        self, steps: Sequence[tuple[int, Sequence[WorkerBatch]]]
    ) -> list[_PreparedStep] | None:
        """``_prepare_step`` for every step at once, when every batch has the common form.

        A training job saves the same two tensors at every step: integer class indices (B,)
        and float scores (B, C). Then one concatenation, one argmax and four reductions over
        the whole chunk replace a dozen numpy calls per batch. Any batch of another form, and
        any row with a problem (a NaN score, a label out of range or ignored), returns None and
        the chunk takes the batch-by-batch path, so the rows counted are always the same.
        """
        batches = [batch for _, step_batches in steps for batch in step_batches]
        if not batches or not self.params.argmax:
            return None
        names = tuple(batches[0].tensors)
        label_names, prediction_names = self.split_names(names)
        if len(label_names) != 1 or len(prediction_names) != 1 or label_names == prediction_names:
            return None
        labels, scores = _uniform_tensors(batches, names, label_names[0], prediction_names[0])
        if labels is None or scores is None:
            return None
        label_rows = np.concatenate(labels).astype(np.int64, copy=False)
        if not countable_as_is(label_rows, self.params.ignore_index, self.params.max_classes):
            return None
        predicted = _argmax_blocks(scores)
        if predicted is None:
            return None
        if (
            scores[0].shape[1] > self.params.max_classes
            and int(predicted.max()) >= self.params.max_classes
        ):
            return None
        prepared: list[_PreparedStep] = []
        offset = 0
        sizes = iter([batch_labels.shape[0] for batch_labels in labels])
        for _, step_batches in steps:
            step_prepared = _PreparedStep()
            for batch in step_batches:
                end = offset + next(sizes)
                step_prepared.rows.append(
                    (batch.mode, label_rows[offset:end], predicted[offset:end])
                )
                offset = end
            prepared.append(step_prepared)
        return prepared

    def _evaluate_chunk(
        self, chunk: list[tuple[int, _PreparedStep]], stop_at_first_issue: bool
    ) -> list[StepResult]:
        """Decide every step's checks on cumulative counts, then commit the steps kept."""
        progress = self._cumulative(chunk)
        found = {finding.check for finding in self.findings}
        results: list[StepResult] = []
        holds_now: dict[str, bool] = {}
        for index, (step, prepared) in enumerate(chunk):
            new: list[Finding] = []
            if progress.gated[index]:
                holds_now = {
                    IMBALANCE: bool(progress.imbalance[index]),
                    MISPREDICTION: bool(progress.misprediction[index]),
                }
                for check, holds in holds_now.items():
                    if holds and check not in found:
                        finding = self._describe(
                            check, progress.samples[index], progress.mispredicted[index], step
                        )
                        if finding is not None:
                            new.append(finding)
                            found.add(check)
            results.append(
                StepResult(step, int(progress.counted[index]), tuple(new), len(prepared.rejected))
            )
            self.findings.extend(new)
            if new and self.issue_step is None:
                self.issue_step = step
            if stop_at_first_issue and self.issue_step is not None:
                break
        self._commit([prepared for _, prepared in chunk[: len(results)]])
        if holds_now:
            self.current_holds = holds_now
        self.steps_evaluated += len(results)
        self.last_step = results[-1].step
        return results

    def _cumulative(self, chunk: list[tuple[int, _PreparedStep]]) -> _ChunkProgress:
        """Per step of the chunk: counts so far (base + this chunk) and both checks' verdicts."""
        steps = len(chunk)
        step_of_row = [
            np.full(labels.size, index, dtype=np.int64)
            for index, (_, prepared) in enumerate(chunk)
            for _, labels, _ in prepared.rows
        ]
        labels = _joined([labels for _, p in chunk for _, labels, _ in p.rows])
        predicted = _joined([predicted for _, p in chunk for _, _, predicted in p.rows])
        base_samples, base_mispredicted = self.combined_counts()
        width = max(base_samples.size, int(labels.max()) + 1 if labels.size else 0, 1)
        rows = _joined(step_of_row) * width + labels
        wrong = labels != predicted
        per_step = np.bincount(rows, minlength=steps * width).reshape(steps, width)
        per_step_wrong = np.bincount(rows[wrong], minlength=steps * width).reshape(steps, width)
        samples = np.cumsum(per_step, axis=0)
        mispredicted = np.cumsum(per_step_wrong, axis=0)
        samples[:, : base_samples.size] += base_samples
        mispredicted[:, : base_mispredicted.size] += base_mispredicted
        counted = per_step.sum(axis=1)
        gated = self.samples + np.cumsum(counted) >= self.params.samples
        imbalance, misprediction = checks_per_step(
            samples,
            mispredicted,
            self.params.threshold_imbalance,
            self.params.threshold_misprediction,
        )
        return _ChunkProgress(samples, mispredicted, counted, gated, imbalance, misprediction)

    def _commit(self, kept: list[_PreparedStep]) -> None:
        """Add the kept steps' rows to the per-mode counts and their tallies to the totals."""
        by_mode: dict[str, tuple[list[IntArray], list[IntArray]]] = {}
        for prepared in kept:
            for mode, labels, predicted in prepared.rows:
                parts = by_mode.setdefault(mode, ([], []))
                parts[0].append(labels)
                parts[1].append(predicted)
            self.ignored += prepared.ignored
            self.skipped_rows.update(prepared.skipped_rows)
            for reason, message in prepared.rejected:
                self._note(self.skipped_batches, reason, message)
        for mode, (label_parts, predicted_parts) in by_mode.items():
            counts = self.counts_by_mode.setdefault(mode, ClassCounts())
            counts.add(_joined(label_parts), _joined(predicted_parts))

    def _prepare_batch(
        self, batch: WorkerBatch, tallies: _PreparedStep
    ) -> tuple[str, IntArray, IntArray]:
        """(mode, labels, predicted) of the rows to count; problem rows go to ``tallies``."""
        if batch.error_reason is not None:
            raise BatchRejected(batch.error_reason, batch.error or batch.error_reason)
        label_names, prediction_names = self.split_names(list(batch.tensors))
        both = sorted(set(label_names) & set(prediction_names))
        if both:
            raise BatchRejected(
                "ambiguous_tensor_name",
                f"tensor {both[0]!r} matches both labels_regex {self.params.labels_regex!r} and "
                f"predictions_regex {self.params.predictions_regex!r}: make the regexes disjoint",
            )
        if not label_names or not prediction_names:
            missing = "labels" if not label_names else "predictions"
            raise BatchRejected(
                f"missing_{missing}",
                f"no tensor matching {missing}_regex "
                f"{getattr(self.params, missing + '_regex')!r} among "
                f"{sorted(batch.tensors) or 'no tensors'}",
            )
        labels = _concatenate(
            [
                label_classes(
                    batch.tensors[n],
                    ignore_index=self.params.ignore_index,
                    max_classes=self.params.max_classes,
                )
                for n in label_names
            ]
        )
        predictions = _concatenate(
            [
                prediction_classes(
                    batch.tensors[n], argmax=self.params.argmax, max_classes=self.params.max_classes
                )
                for n in prediction_names
            ]
        )
        if labels.classes.size != predictions.classes.size:
            raise BatchRejected(
                "batch_size_mismatch",
                f"expected as many prediction rows as label rows, but found "
                f"{labels.classes.size} labels ({', '.join(label_names)}) and "
                f"{predictions.classes.size} predictions ({', '.join(prediction_names)})",
            )
        valid = _valid_rows(labels, predictions, tallies)
        label_rows = labels.classes if valid is None else labels.classes[valid]
        predicted_rows = predictions.classes if valid is None else predictions.classes[valid]
        return batch.mode, label_rows, predicted_rows

    def _describe(
        self, check: str, samples: IntArray, mispredicted: IntArray, step: int
    ) -> Finding | None:
        if check == IMBALANCE:
            return check_imbalance(samples, self.params.threshold_imbalance, step)
        return check_misprediction(samples, mispredicted, self.params.threshold_misprediction, step)

    def current_findings(self) -> dict[str, Finding | None]:
        """Each check's finding at the last evaluated step (None: it does not hold now).

        Built on demand (for a status write), not every step: describing is the costly part.
        """
        if self.last_step is None:
            return {}
        samples, mispredicted = self.combined_counts()
        return {
            check: self._describe(check, samples, mispredicted, self.last_step) if holds else None
            for check, holds in self.current_holds.items()
        }

    def _note(self, counter: Counter[str], reason: str, message: str) -> None:
        counter[reason] += 1
        if reason in self.problem_examples or len(self.problem_examples) < _EXAMPLES_KEPT:
            self.problem_examples[reason] = message

    # -- views ------------------------------------------------------------------------------

    def combined_counts(self) -> tuple[IntArray, IntArray]:
        """(samples, mispredicted) per class, summed over modes, up to the largest class seen."""
        if len(self.counts_by_mode) == 1:
            return next(iter(self.counts_by_mode.values())).trimmed()
        size = max((c.num_classes for c in self.counts_by_mode.values()), default=0)
        samples = np.zeros(size, dtype=np.int64)
        mispredicted = np.zeros(size, dtype=np.int64)
        for counts in self.counts_by_mode.values():
            mode_samples, mode_mispredicted = counts.trimmed()
            samples[: mode_samples.size] += mode_samples
            mispredicted[: mode_mispredicted.size] += mode_mispredicted
        return samples, mispredicted

    def merge(self, other: ClassImbalanceRule) -> None:
        """Add another evaluation of disjoint steps (another worker set, a restored checkpoint).

        Counts and skip tallies add; findings and issue step keep the earliest of the two.
        """
        for mode, counts in other.counts_by_mode.items():
            self.counts_by_mode.setdefault(mode, ClassCounts()).merge(counts)
        self.steps_evaluated += other.steps_evaluated
        if other.last_step is not None:
            self.last_step = max(self.last_step or other.last_step, other.last_step)
        self.ignored += other.ignored
        self.skipped_rows.update(other.skipped_rows)
        self.skipped_batches.update(other.skipped_batches)
        self.problem_examples.update(other.problem_examples)
        earliest: dict[str, Finding] = {}
        for finding in sorted([*self.findings, *other.findings], key=lambda f: f.step):
            earliest.setdefault(finding.check, finding)
        self.findings = list(earliest.values())
        self.issue_step = min((f.step for f in self.findings), default=None)

    # -- checkpoints ------------------------------------------------------------------------

    def to_state(self) -> dict[str, Any]:
        """A JSON-ready copy of everything accumulated (parameters excluded)."""
        return {
            "counts_by_mode": {m: c.to_dict() for m, c in self.counts_by_mode.items()},
            "steps_evaluated": self.steps_evaluated,
            "last_step": self.last_step,
            "issue_step": self.issue_step,
            "findings": [asdict(f) for f in self.findings],
            "current_holds": dict(self.current_holds),
            "ignored": self.ignored,
            "skipped_rows": dict(self.skipped_rows),
            "skipped_batches": dict(self.skipped_batches),
            "problem_examples": dict(self.problem_examples),
        }

    @classmethod
    def from_state(cls, params: RuleParameters, state: Mapping[str, Any]) -> ClassImbalanceRule:
        def finding(data: Mapping[str, Any]) -> Finding:
            return Finding(**{**data, "classes": tuple(data["classes"])})

        return cls(
            params=params,
            counts_by_mode={
                m: ClassCounts.from_dict(c) for m, c in state["counts_by_mode"].items()
            },
            steps_evaluated=int(state["steps_evaluated"]),
            last_step=state["last_step"],
            issue_step=state["issue_step"],
            findings=[finding(f) for f in state["findings"]],
            current_holds={k: bool(v) for k, v in state["current_holds"].items()},
            ignored=int(state["ignored"]),
            skipped_rows=Counter(state["skipped_rows"]),
            skipped_batches=Counter(state["skipped_batches"]),
            problem_examples=dict(state["problem_examples"]),
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


_CHUNK_CELLS = 1 << 21
"""Steps x classes cells of a chunk's cumulative matrices (16 MiB each): the chunk shrinks as
the class count grows, so 20,000 classes still fit in bounded memory."""


@dataclass
class _PreparedStep:
    """A step's rows, normalised but not counted yet, with what was set aside."""

    rows: list[tuple[str, IntArray, IntArray]] = field(default_factory=list)
    rejected: list[tuple[str, str]] = field(default_factory=list)
    ignored: int = 0
    skipped_rows: Counter[str] = field(default_factory=Counter)


@dataclass(frozen=True)
class _ChunkProgress:
    samples: npt.NDArray[np.int64]
    mispredicted: npt.NDArray[np.int64]
    counted: npt.NDArray[np.int64]
    gated: npt.NDArray[np.bool_]
    imbalance: npt.NDArray[np.bool_]
    misprediction: npt.NDArray[np.bool_]


def _joined(parts: list[IntArray]) -> IntArray:
    if len(parts) == 1:
        return parts[0]
    if not parts:
        return np.zeros(0, dtype=np.int64)
    return np.concatenate(parts)


def _valid_rows(
    labels: RowClasses, predictions: RowClasses, tallies: _PreparedStep
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


_BLOCK_BYTES = 512 << 10
"""Scores concatenated for one argmax: enough that a block of small batches (tens of classes)
costs a few numpy calls, while a batch this large (thousands of classes) goes alone, uncopied."""


def _argmax_blocks(scores: list[npt.NDArray[Any]]) -> IntArray | None:
    """The argmax of every score row, in blocks of about ``_BLOCK_BYTES``; None as soon as a
    block holds a NaN or infinite score (those rows need the batch-by-batch path)."""
    predicted: list[IntArray] = []
    block: list[npt.NDArray[Any]] = []
    block_bytes = 0
    for position, batch_scores in enumerate(scores):
        block.append(batch_scores)
        block_bytes += batch_scores.nbytes
        if block_bytes < _BLOCK_BYTES and position + 1 < len(scores):
            continue
        rows = block[0] if len(block) == 1 else np.concatenate(block)
        if not all_finite(rows):
            return None
        predicted.append(np.argmax(rows, axis=1).astype(np.int64, copy=False))
        block, block_bytes = [], 0
    return _joined(predicted)


def _uniform_tensors(
    batches: list[WorkerBatch], names: tuple[str, ...], label_name: str, prediction_name: str
) -> tuple[list[npt.NDArray[Any]] | None, list[npt.NDArray[Any]] | None]:
    """Each batch's labels and scores when all have the common form, else (None, None):
    the same tensor names, labels (B,) of one integer dtype that int64 holds exactly, scores
    (B, C) of one float dtype with the same C >= 2 and as many rows as labels."""
    labels: list[npt.NDArray[Any]] = []
    scores: list[npt.NDArray[Any]] = []
    first_labels = batches[0].tensors.get(label_name)
    first_scores = batches[0].tensors.get(prediction_name)
    if not isinstance(first_labels, np.ndarray) or not isinstance(first_scores, np.ndarray):
        return None, None
    label_dtype, score_dtype = first_labels.dtype, first_scores.dtype
    columns = first_scores.shape[1] if first_scores.ndim == 2 else 0
    if not (
        (label_dtype.kind == "i" or (label_dtype.kind == "u" and label_dtype.itemsize < 8))
        and score_dtype.kind == "f"
        and columns >= 2
    ):
        return None, None
    for batch in batches:
        tensors = batch.tensors
        if batch.error_reason is not None or tuple(tensors) != names:
            return None, None
        batch_labels = tensors[label_name]
        batch_scores = tensors[prediction_name]
        if not (
            isinstance(batch_labels, np.ndarray)
            and isinstance(batch_scores, np.ndarray)
            and batch_labels.dtype == label_dtype
            and batch_scores.dtype == score_dtype
            and batch_labels.ndim == 1
            and batch_scores.ndim == 2
            and batch_scores.shape[1] == columns
            and batch_scores.shape[0] == batch_labels.shape[0]
        ):
            return None, None
        labels.append(batch_labels)
        scores.append(batch_scores)
    return labels, scores
