"""The ClassImbalance rule: a thin stateful shell over the pure pieces.

``evaluate_steps`` takes global steps' tensors (one batch per worker), has them normalised to
class indices (``normalise``), decides every step's checks from cumulative counts
(``progress`` over the ``checks``), then adds the rows to per-mode counts. This class keeps the
state, walks the steps in bounded chunks, commits them and offers views of the counts. All
state is additive, so ``merge`` and ``to_state``/``from_state`` give exact checkpoints and
multi-source totals; what follows from the state (the issue step, which checks hold now) is
derived, never stored. The rule never reads files or knows where tensors came from.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from evaluator.core import progress
from evaluator.core.checks import (
    Check,
    Finding,
    Recent,
    Tallies,
    describe_current,
    holds_now,
    rule_checks,
)
from evaluator.core.counts import (
    DENSE_CLASSES,
    ClassCounts,
    IntArray,
    aligned,
    dense_enough,
    is_identity,
)
from evaluator.core.history import History, history_point
from evaluator.core.ledger import StepLedger
from evaluator.core.normalise import Inputs, PreparedStep, WorkerBatch, prepare_steps
from evaluator.core.params import RuleParameters
from evaluator.core.window import StepWindow

RULE_NAME = "ClassImbalance"
REPLAYED = "replayed"
"""The mode a replayed ledger's counts are committed under until the real totals replace them."""
EXAMPLES_KEPT = 32
"""Distinct skip reasons whose latest message is kept for the status."""


@dataclass(frozen=True)
class StepResult:
    """What one step changed."""

    step: int
    counted: int
    new_findings: tuple[Finding, ...]
    skipped_batches: int
    skipped_reasons: tuple[str, ...] = ()
    """The reason of each batch skipped at this step (``skipped_batches`` of them)."""


def _chunk_width(chunk: Sequence[tuple[int, PreparedStep]]) -> int:
    """One past the largest class index a prepared chunk counts (at least 1)."""
    width = 1
    for _, prepared in chunk:
        if prepared.label_bound >= 0:
            width = max(width, prepared.label_bound)
            continue
        for _, labels, _ in prepared.rows:
            if labels.size:
                width = max(width, int(labels.max()) + 1)
    return width


@dataclass
class ClassImbalanceRule:
    """Cumulative evaluation over steps, workers and modes."""

    params: RuleParameters
    checks: tuple[Check, ...] = ()
    """The checks evaluated after every step, in the order findings are listed; empty: the
    ones the parameters ask for (``rule_checks``; with default parameters the seed rule's)."""
    counts_by_mode: dict[str, ClassCounts] = field(default_factory=dict)
    steps_evaluated: int = 0
    last_step: int | None = None
    findings: list[Finding] = field(default_factory=list)
    """The first finding of each check, in the order they occurred."""
    ignored: int = 0
    skipped_rows: Counter[str] = field(default_factory=Counter)
    skipped_batches: Counter[str] = field(default_factory=Counter)
    problem_examples: dict[str, str] = field(default_factory=dict)
    """The latest message for each skip reason, so the status can say what to change."""
    binary_form: str | None = None
    """How this trial's binary scores are read (``probability`` or ``logit``), as its first
    batch of them decided; kept so that later batches, and a resumed run, read them alike."""

    window: StepWindow | None = None
    """The last ``window_steps`` steps' counts, kept when ``window_steps`` > 0."""
    history: History = field(default_factory=History)
    """The figures over steps, at a bounded number of exact points (for the report)."""
    ledger: StepLedger | None = None
    """Every evaluated step's own class counts, kept when this evaluation is one shard of
    several (``--emit-state``): what an exact merge of parallel shards needs."""

    def __post_init__(self) -> None:
        if not self.checks:
            self.checks = rule_checks(self.params)
        if self.window is None and self.params.window_steps > 0:
            self.window = StepWindow(
                self.params.window_steps, previous=self.params.minority_not_improving
            )
        names = [check.name for check in self.checks]
        if self.history.capacity <= len(names) + 1:  # pins: one per check, and the start
            raise ValueError(
                f"Expected a history capacity above the {len(names) + 1} pinned points (one per "
                f"check and the checks' start), but got {self.history.capacity}"
            )
        if len(set(names)) != len(names):
            raise ValueError(f"Expected checks with distinct names, but got {names}")
        self._inputs = Inputs.of(self.params)
        self._holds: tuple[tuple[int, int], dict[str, bool]] | None = None
        """``current_holds`` as of (steps evaluated, samples): a memo, never a second source of
        truth. The chunk fills it with the verdicts it computed for its last step; anything
        else that changes the counts (a merge, a restore) makes the key differ, and the
        property recomputes. It assumes ``checks`` are not replaced after construction."""

    # -- inputs -----------------------------------------------------------------------------

    def wants(self, tensor_name: str) -> bool:
        """Whether a tensor of this name is a label or prediction tensor (search semantics)."""
        return self._inputs.selector.wants(tensor_name)

    # -- derived state ----------------------------------------------------------------------

    @property
    def samples(self) -> int:
        """Labels counted so far, over every mode."""
        return sum(counts.total for counts in self.counts_by_mode.values())

    @property
    def issue_step(self) -> int | None:
        """The first step at which a check held, or None."""
        return min((finding.step for finding in self.findings), default=None)

    @property
    def current_holds(self) -> dict[str, bool]:
        """Whether each check holds at the last evaluated step (empty before ``samples``)."""
        samples = self.samples
        if self.last_step is None or samples < self.params.samples:
            return {}
        key = (self.steps_evaluated, samples)
        if self._holds is None or self._holds[0] != key:
            self._holds = (key, holds_now(self.checks, self.tallies()))
        return dict(self._holds[1])

    def tallies(self) -> Tallies:
        """What the checks look at now: the combined counts (over ``combined_columns``) and
        the recent window if kept."""
        classes, samples, mispredicted = self.combined_columns()
        ids = None if is_identity(classes) else classes
        return Tallies(samples, mispredicted, self.recent(classes), ids)

    def recent(self, classes: IntArray) -> Recent | None:
        """The recent window's counts over the sorted class ids ``classes`` (the combined
        columns, or any that hold every class counted); None when none is kept."""
        return None if self.window is None else self.window.current(classes)

    def current_findings(self) -> dict[str, Finding | None]:
        """Each check's finding at the last evaluated step (None: it does not hold now).

        Built on demand (for a status write), not every step: describing is the costly part.
        """
        if self.last_step is None:
            return {}
        return describe_current(self.checks, self.current_holds, self.tallies(), self.last_step)

    # -- evaluation -------------------------------------------------------------------------

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
        cumulative counts, so the cost per step is a small fraction of a step-by-step loop.
        With ``stop_at_first_issue`` nothing after the issue step is counted. Returns one
        result per step evaluated.
        """
        results: list[StepResult] = []
        position = 0
        while position < len(steps):
            size = max(1, self._chunk_cells // max(1, self._class_bound()))
            chunk = prepare_steps(steps[position : position + size], self._inputs, self.binary_form)
            # The classes counted so far bound the chunk before it is read; its own labels may
            # reach far higher (the first chunk of a 20,000-class trial), so it is cut again
            # to its real width, keeping every (steps x classes) matrix within CHUNK_CELLS.
            # The width is the chunk's columns: compact when the class indices are sparse.
            top = _chunk_width(chunk)
            columns = self._chunk_columns(chunk, top)
            width = max(self._class_bound(), top if columns is None else int(columns.size) + 1)
            part = max(1, self._chunk_cells // width)
            for start in range(0, len(chunk), part):
                results.extend(
                    self._evaluate_chunk(chunk[start : start + part], stop_at_first_issue, columns)
                )
                if stop_at_first_issue and self.issue_step is not None:
                    return results
            position += size
        return results

    def _chunk_columns(
        self, chunk: Sequence[tuple[int, PreparedStep]], top: int
    ) -> IntArray | None:
        """The prepared chunk's columns: None (column = class) while the counts so far and the
        chunk's labels (all below ``top``) are dense (``counts.dense_enough``); else the
        sorted ids of every class counted so far and in the chunk, so that the (steps x
        classes) matrices follow the classes seen, not the largest index. A part of the chunk
        uses these columns too: a superset of its classes changes no verdict (a column of no
        sample takes part in no check)."""
        dense = not any(counts.sparse for counts in self.counts_by_mode.values())
        if dense and max(top, self.num_classes) <= DENSE_CLASSES:
            return None  # nearly every trial: nothing sorted
        classes, samples, _ = self.combined_columns()
        columns = progress.chunk_classes(classes[samples > 0], [p for _, p in chunk])
        if dense and dense_enough(max(top, self.num_classes), int(columns.size)):
            return None
        return columns

    @property
    def _chunk_cells(self) -> int:
        """Steps x classes cells per chunk: a quarter of ``CHUNK_CELLS`` with the recent window
        or the Wilson bounds, which keep four more matrices and their temporaries per chunk."""
        opt_in = self.window is not None or self.params.confidence is not None
        return progress.CHUNK_CELLS // 4 if opt_in else progress.CHUNK_CELLS

    @property
    def num_classes(self) -> int:
        """One past the largest class index counted in any mode."""
        return max((c.num_classes for c in self.counts_by_mode.values()), default=0)

    def _class_bound(self) -> int:
        """Columns of the counts so far, plus one: what a chunk's width starts from."""
        if not any(counts.sparse for counts in self.counts_by_mode.values()):
            return self.num_classes + 1
        return int(self.combined_columns()[0].size) + 1

    def _evaluate_chunk(
        self,
        chunk: list[tuple[int, PreparedStep]],
        stop_at_first_issue: bool,
        columns: IntArray | None = None,
    ) -> list[StepResult]:
        """Decide every step's checks on cumulative counts, then commit the steps kept
        (``columns``: the chunk's class ids, ``_chunk_columns``; None: column = class)."""
        steps = [step for step, _ in chunk]
        prepared = [prepared for _, prepared in chunk]
        per_step, per_step_wrong = progress.step_counts(prepared, self.num_classes, columns)
        seen = self._progress(steps, per_step, per_step_wrong, columns)
        results, finding_rows = self._decide(
            steps, seen, [p.rejected for p in prepared], stop_at_first_issue
        )
        kept = len(results)
        self._record_history(steps[:kept], seen, finding_rows)
        self._commit(prepared[:kept])
        self._advance(steps[:kept], seen)
        return results

    def _progress(
        self,
        steps: Sequence[int],
        per_step: IntArray,
        per_step_wrong: IntArray,
        columns: IntArray | None = None,
    ) -> progress.ChunkProgress:
        if columns is None:
            base_samples, base_mispredicted = self.combined_counts()
        else:
            classes, samples, mispredicted = self.combined_columns()
            seen = samples > 0
            base_samples = aligned(classes[seen], samples[seen], columns)
            base_mispredicted = aligned(classes[seen], mispredicted[seen], columns)
        return progress.counts_progress(
            per_step,
            per_step_wrong,
            base_samples=base_samples,
            base_mispredicted=base_mispredicted,
            base_total=self.samples,
            samples_required=self.params.samples,
            checks=self.checks,
            window=self.window,
            steps=steps,
            classes=columns,
        )

    def _decide(
        self,
        steps: Sequence[int],
        seen: progress.ChunkProgress,
        rejected: Sequence[Sequence[tuple[str, str]]],
        stop_at_first_issue: bool,
    ) -> tuple[list[StepResult], list[int]]:
        """Each step's new findings, in order (up to the first issue when asked to stop
        there), and the rows that had one."""
        found = {finding.check for finding in self.findings}
        results: list[StepResult] = []
        finding_rows: list[int] = []
        # Python lists, once per chunk: a numpy scalar per step and check costs more than
        # the rest of the loop. A step can bring a finding only where a check not found yet
        # holds while the checks run.
        counted = seen.counted.tolist()
        candidates = np.zeros(len(steps), dtype=np.bool_)
        for check in self.checks:
            if check.name not in found:
                candidates |= seen.holds[check.name][: len(steps)]
        candidates &= seen.gated[: len(steps)]
        may_find = candidates.tolist()
        for index, step in enumerate(steps):
            new: list[Finding] = []
            if may_find[index]:
                for check in self.checks:
                    if check.name in found or not seen.holds[check.name][index]:
                        continue
                    finding = check.describe(seen.tallies.row(index), step)
                    if finding is not None:
                        new.append(finding)
                        found.add(check.name)
            step_rejected = rejected[index]
            results.append(
                StepResult(
                    step,
                    counted[index],
                    tuple(new),
                    len(step_rejected),
                    tuple(reason for reason, _ in step_rejected) if step_rejected else (),
                )
            )
            if new:
                finding_rows.append(index)
            self.findings.extend(new)
            if stop_at_first_issue and self.issue_step is not None:
                break
        return results, finding_rows

    def _advance(self, kept: Sequence[int], seen: progress.ChunkProgress) -> None:
        """After the kept steps' counts were committed: the ledger, the window, the position
        and the verdicts after the last step (already computed: kept as the memo)."""
        if (
            self.ledger is not None
            and seen.per_step is not None
            and seen.per_step_wrong is not None
        ):
            self.ledger.record(kept, seen.per_step, seen.per_step_wrong, seen.tallies.classes)
        if self.window is not None and seen.window is not None:
            self.window.commit(seen.window, len(kept))
        self.steps_evaluated += len(kept)
        self.last_step = kept[-1]
        last = len(kept) - 1
        if seen.gated[last]:
            verdicts = {name: bool(holds[last]) for name, holds in seen.holds.items()}
            self._holds = ((self.steps_evaluated, self.samples), verdicts)

    def replay(self, ledger: StepLedger) -> None:
        """Evaluate a ledger's steps (the merged shards'), deciding every step's checks as one
        process evaluating them in step order would: the findings, the window, the history.

        The counts it commits are the ledger's per-class sums, in one mode with no confusion
        pairs: ``shards.merge_states`` puts the shards' own totals in their place afterwards.
        """
        steps, *_ = ledger.arrays()
        classes = ledger.classes()
        top = int(classes[-1]) + 1 if classes.size else 0
        # Columns are classes for a dense model; the ledger's classes when they are sparse.
        columns = None if dense_enough(top, int(classes.size)) else classes
        width = max(top if columns is None else int(classes.size), 1)
        size = max(1, self._chunk_cells // width)
        replayed = self.counts_by_mode.setdefault(REPLAYED, ClassCounts())
        for start in range(0, steps.size, size):
            stop = min(start + size, int(steps.size))
            per_step, per_step_wrong = ledger.dense(start, stop, width, columns)
            chunk = [int(step) for step in steps[start:stop]]
            seen = self._progress(chunk, per_step, per_step_wrong, columns)
            _, finding_rows = self._decide(chunk, seen, [()] * len(chunk), False)
            self._record_history(chunk, seen, finding_rows)
            samples, mispredicted = per_step.sum(axis=0), per_step_wrong.sum(axis=0)
            if columns is None:
                part = ClassCounts(samples=samples, mispredicted=mispredicted)
            else:
                kept = samples > 0
                part = ClassCounts(
                    samples=samples[kept], mispredicted=mispredicted[kept], classes=columns[kept]
                )
            part.total = int(samples.sum())
            replayed.merge(part)
            self._advance(chunk, seen)

    def _record_history(
        self, steps: Sequence[int], seen: progress.ChunkProgress, finding_rows: list[int]
    ) -> None:
        """The chunk's history points: its rows on the history's grid, and pinned, the row
        where the checks start to run and the rows of first findings. Called before the
        chunk is committed (``steps_evaluated`` still counts the steps before it)."""
        history, base, gated = self.history, self.steps_evaluated, seen.gated
        first = (history.every - (base + 1) % history.every) % history.every
        starting = self.samples < self.params.samples  # the checks may start in this chunk
        if first >= len(steps) and not finding_rows and not starting:
            return  # no grid point and no pin: the common step while following
        pinned = set(finding_rows)
        if starting:
            start = int(np.argmax(gated[: len(steps)]))
            if gated[start]:
                pinned.add(start)
        history.make_room(base, base + len(steps), [base + row + 1 for row in pinned])
        first = (history.every - (base + 1) % history.every) % history.every  # the grid may
        # have coarsened: its first row in this chunk again
        for row in sorted(set(range(first, len(steps), history.every)) | pinned):
            active = bool(gated[row])
            history.record(
                history_point(
                    steps[row],
                    base + row + 1,
                    seen.tallies.samples[row],
                    seen.tallies.mispredicted[row],
                    holding=[n for n, holds in seen.holds.items() if active and holds[row]],
                    checks_active=active,
                    pinned=row in pinned,
                    classes_per_point=history.classes_per_point,
                    classes=seen.tallies.classes,
                )
            )

    def _commit(self, kept: list[PreparedStep]) -> None:
        """Add the kept steps' rows to the per-mode counts and their tallies to the totals."""
        by_mode: dict[str, tuple[list[IntArray], list[IntArray]]] = {}
        for prepared in kept:
            for mode, labels, predicted in prepared.rows:
                parts = by_mode.setdefault(mode, ([], []))
                parts[0].append(labels)
                parts[1].append(predicted)
            self.ignored += prepared.ignored
            if prepared.skipped_rows:  # nearly always empty: Counter.update costs more
                self.skipped_rows.update(prepared.skipped_rows)
            for reason, message in prepared.rejected:
                self._note(self.skipped_batches, reason, message)
        for mode, (label_parts, predicted_parts) in by_mode.items():
            counts = self.counts_by_mode.setdefault(mode, ClassCounts())
            counts.add(progress.joined(label_parts), progress.joined(predicted_parts))
        if kept and self.params.binary_scores == "auto":
            self.binary_form = kept[-1].binary_form

    def _note(self, counter: Counter[str], reason: str, message: str) -> None:
        counter[reason] += 1
        if reason in self.problem_examples or len(self.problem_examples) < EXAMPLES_KEPT:
            self.problem_examples[reason] = message

    # -- views ------------------------------------------------------------------------------

    def combined_columns(self) -> tuple[IntArray, IntArray, IntArray]:
        """(class ids, samples, mispredicted), summed over modes: every class below the
        largest while all modes are dense (the ids then 0 to n - 1), the classes seen once a
        mode is sparse. What the evaluation reads: it never spreads sparse counts out."""
        modes = list(self.counts_by_mode.values())
        if len(modes) == 1:
            return modes[0].columns()
        if not any(counts.sparse for counts in modes):
            samples, mispredicted = self.combined_counts()
            return np.arange(samples.size, dtype=np.int64), samples, mispredicted
        parts = [counts.columns() for counts in modes]
        classes = np.unique(np.concatenate([ids[s > 0] for ids, s, _ in parts]))
        samples = np.zeros(classes.size, dtype=np.int64)
        mispredicted = np.zeros(classes.size, dtype=np.int64)
        for ids, mode_samples, mode_mispredicted in parts:
            seen = mode_samples > 0
            where = np.searchsorted(classes, ids[seen])
            samples[where] += mode_samples[seen]
            mispredicted[where] += mode_mispredicted[seen]
        return classes, samples, mispredicted

    def combined_counts(self) -> tuple[IntArray, IntArray]:
        """(samples, mispredicted) per class, summed over modes, up to the largest class seen:
        dense, for small trials and tests (``combined_columns`` is the evaluation's view)."""
        if len(self.counts_by_mode) == 1:
            return next(iter(self.counts_by_mode.values())).trimmed()
        size = self.num_classes
        samples = np.zeros(size, dtype=np.int64)
        mispredicted = np.zeros(size, dtype=np.int64)
        for counts in self.counts_by_mode.values():
            ids, mode_samples, mode_mispredicted = counts.columns()
            samples[ids] += mode_samples
            mispredicted[ids] += mode_mispredicted
        return samples, mispredicted

    def merge(self, other: ClassImbalanceRule) -> None:
        """Add an evaluation of the steps *before* this one's (a restored checkpoint).

        Counts and skip tallies add; findings keep the earliest of each check, which is right
        only when the other side's steps came first: its findings were decided on counts that
        did not include this side's. Parallel shards (other steps or workers evaluated at the
        same time) merge with ``shards.merge_states``, which replays their ledgers instead.
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
        if self.window is not None and other.window is not None:
            self.window.merge(other.window)
        # Each side's points are exact for its own steps, not for the sum: the history of
        # the merged evaluation starts here.
        self.history = History(self.history.capacity, self.history.classes_per_point)
        self._holds = None

    # -- checkpoints ------------------------------------------------------------------------

    def to_state(self) -> dict[str, Any]:
        """A JSON-ready copy of everything accumulated (parameters and checks excluded)."""
        return {
            "counts_by_mode": {m: c.to_dict() for m, c in self.counts_by_mode.items()},
            "steps_evaluated": self.steps_evaluated,
            "last_step": self.last_step,
            "findings": [asdict(f) for f in self.findings],
            "ignored": self.ignored,
            "skipped_rows": dict(self.skipped_rows),
            "skipped_batches": dict(self.skipped_batches),
            "problem_examples": dict(self.problem_examples),
            "binary_form": self.binary_form,
            **({"window": self.window.to_state()} if self.window is not None else {}),
            "history": self.history.to_state(),
            **({"ledger": self.ledger.to_state()} if self.ledger is not None else {}),
        }

    @classmethod
    def from_state(
        cls,
        params: RuleParameters,
        state: Mapping[str, Any],
        checks: Sequence[Check] = (),
    ) -> ClassImbalanceRule:
        """The rule ``to_state`` saved, evaluated with ``params`` and ``checks`` from here on.

        Keys that older versions stored although they follow from the rest (``issue_step``,
        ``current_holds``) are ignored."""

        def finding(data: Mapping[str, Any]) -> Finding:
            return Finding(**{**data, "classes": tuple(data["classes"])})

        return cls(
            params=params,
            checks=tuple(checks),
            counts_by_mode={
                m: ClassCounts.from_dict(c) for m, c in state["counts_by_mode"].items()
            },
            steps_evaluated=int(state["steps_evaluated"]),
            last_step=state["last_step"],
            findings=[finding(f) for f in state["findings"]],
            ignored=int(state["ignored"]),
            skipped_rows=Counter(state["skipped_rows"]),
            skipped_batches=Counter(state["skipped_batches"]),
            problem_examples=dict(state["problem_examples"]),
            binary_form=state.get("binary_form"),
            window=StepWindow.from_state(state["window"]) if "window" in state else None,
            # Older checkpoints have none: the history then starts where they left off.
            history=History.from_state(state["history"]) if "history" in state else History(),
            ledger=StepLedger.from_state(state["ledger"]) if "ledger" in state else None,
        )
