"""An immutable picture of the evaluation: the one projection every output is built from.

The loop owns the rule and mutates it; the metrics server's thread must never read half an
update, and the status file, the managed service's message and report must say the same as the
metrics. So the loop takes a ``Snapshot`` (copies, not views) and every exporter reads one: the
metrics collector per scrape (``metrics``), the status document (``status``), the report. What
each output computes from the counts (the ratio, the fractions) is computed here once.

The snapshot box is one reference swap, no lock held while serving.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import numpy.typing as npt

from evaluator.core import (
    Check,
    ClassCounts,
    ClassImbalanceRule,
    Confusion,
    ConfusionMatrix,
    Finding,
    FrozenPairs,
    HistoryPoint,
    ModeVerdict,
    Recent,
    RuleParameters,
    Tallies,
    aligned,
    class_of,
    classes_that_matter,
    confusion_matrix,
    describe_current,
    imbalance_ratio,
    is_identity,
    misprediction_fractions,
    mode_verdict,
    top_confusions,
)
from evaluator.trial import NO_PROBLEMS, ReaderProblems

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]

FINAL_STATUSES = frozenset({"NoIssuesFound", "Error", "Stopped"})
"""The final statuses besides IssuesFound (an Error may follow an issue: see issue_step)."""


@dataclass(frozen=True)
class ModeCounts:
    """Per-class counts of one mode, one entry per class of ``classes`` (the snapshot's: the
    same entries in every mode and in the combined counts)."""

    samples: IntArray
    mispredicted: IntArray
    pairs: FrozenPairs = field(default_factory=lambda: FrozenPairs(_empty(), _empty()))
    """How often each class was predicted as each other one."""
    classes: IntArray | None = None
    """The sorted class id of each entry; None: the entry's index is the class. Every class
    below the largest while the counts are dense, the classes seen once they are sparse (a
    label of 999,999 beside ten small classes: 11 entries, not a million)."""

    @property
    def ids(self) -> IntArray | None:
        """``classes``, or None when they are 0, 1, ..., n - 1 (as ``Tallies.classes``)."""
        classes = self.classes
        return None if classes is None or is_identity(classes) else classes

    def class_at(self, column: int) -> int:
        """The class id of an entry."""
        return class_of(self.classes, column)

    @cached_property
    def confusions(self) -> dict[int, tuple[Confusion, ...]]:
        """Per class with a misprediction: what it was most often predicted as."""
        return top_confusions(self.pairs, self.samples, classes=self.ids)


def _empty() -> IntArray:
    return np.zeros(0, np.int64)


def _no_counts() -> ModeCounts:
    return ModeCounts(_empty(), _empty())


@dataclass(frozen=True)
class Progress:
    """What the loop knows beyond the rule: how far the reader got, and when."""

    steps_seen: int = 0
    """Complete steps the reader delivered, in the selected modes and range or not."""
    last_evaluation_time: float | None = None
    """Unix time of the last evaluated step."""
    trial_found: bool = True
    """Whether the trial exists (a sidecar may start before training writes it)."""


@dataclass(frozen=True)
class Snapshot:
    """Everything exporters show, as of one moment."""

    status: str
    """InProgress, NoIssuesFound, IssuesFound, Error or Stopped."""
    trial: str
    ready: bool
    """Attached to the trial and evaluating (for /readyz)."""
    params: RuleParameters = field(default_factory=RuleParameters)
    checks: tuple[Check, ...] = ()
    """The checks evaluated, in order: every per-check output iterates these."""
    steps_evaluated: int = 0
    last_step: int | None = None
    samples: int = 0
    ignored: int = 0
    combined: ModeCounts = field(default_factory=_no_counts)
    """Per-class counts summed over modes."""
    by_mode: Mapping[str, ModeCounts] = field(default_factory=dict)
    recent: Recent | None = None
    """The counts over the last ``window_steps`` steps, when a window is kept."""
    class_names: tuple[str, ...] | None = None
    """A name per class index, when configured: shown beside the index in every output."""
    actions: tuple[Mapping[str, Any], ...] = ()
    """What became of each configured action (``ActionOutcome.to_json``)."""
    findings: tuple[Finding, ...] = ()
    """The first finding of each check, in the order they occurred."""
    current_holds: Mapping[str, bool] = field(default_factory=dict)
    """Whether each check holds at the last evaluated step (all False before ``samples``)."""
    issue_found: Mapping[str, bool] = field(default_factory=dict)
    """Whether each check has held at any evaluated step."""
    issue_step: int | None = None
    skipped_rows: Mapping[str, int] = field(default_factory=dict)
    skipped_batches: Mapping[str, int] = field(default_factory=dict)
    problem_examples: Mapping[str, str] = field(default_factory=dict)
    """The rule's latest message per skip reason."""
    reader: ReaderProblems = NO_PROBLEMS
    """What the reader could not use, and why."""
    progress: Progress = field(default_factory=Progress)
    history: tuple[HistoryPoint, ...] = ()
    """The figures over steps at the history's points (``History``), oldest first."""
    history_every: int = 1
    """Evaluated steps between the history's grid points."""

    @cached_property
    def fractions(self) -> FloatArray:
        """Per class: mispredicted / samples over all modes; NaN for a class with no sample.
        Computed once per snapshot, when an output first asks (a scrape may not)."""
        return misprediction_fractions(self.combined.samples, self.combined.mispredicted)

    @cached_property
    def confusions(self) -> dict[int, tuple[Confusion, ...]]:
        """Per class with a misprediction, over every mode: what it was most often predicted
        as (folded from the modes' pairs when an output first asks)."""
        if len(self.by_mode) == 1:  # one mode's are the combined ones: ranked once
            return next(iter(self.by_mode.values())).confusions
        return top_confusions(self.pairs, self.combined.samples, classes=self.combined.ids)

    @cached_property
    def pairs(self) -> FrozenPairs:
        """How often each class was predicted as each other one, over every mode."""
        if not self.by_mode:
            return FrozenPairs(_empty(), _empty())
        return FrozenPairs.combined([counts.pairs for counts in self.by_mode.values()])

    @cached_property
    def confusion_matrix(self) -> ConfusionMatrix:
        """The matrix of the classes that matter: the largest and the smallest, the
        worst-predicted and what each is most mistaken for (``classes_that_matter``)."""
        combined = self.combined
        samples, mispredicted, ids = combined.samples, combined.mispredicted, combined.ids
        ratio = imbalance_ratio(samples)
        first = [] if ratio is None else [combined.class_at(ratio[1]), combined.class_at(ratio[2])]
        if self.params.confidence is not None:  # the guarded checks' classes, not the raw worst
            for finding in self.current_findings().values():
                first += [] if finding is None else list(finding.classes[:4])
        classes = classes_that_matter(samples, mispredicted, self.confusions, first=first, ids=ids)
        return confusion_matrix(self.pairs, samples, mispredicted, classes, ids)

    @cached_property
    def mode_verdicts(self) -> dict[str, ModeVerdict]:
        """Each mode's figures and the cumulative checks' verdicts on its counts alone
        (without findings: see ``mode_findings``)."""
        return {mode: self._mode_verdict(mode, describe=False) for mode in self.by_mode}

    def mode_findings(self, mode: str) -> ModeVerdict:
        """One mode's verdict with its findings described (for a status write)."""
        return self._mode_verdict(mode, describe=True)

    def _mode_verdict(self, mode: str, *, describe: bool) -> ModeVerdict:
        counts = self.by_mode[mode]
        return mode_verdict(
            self.checks,
            counts.samples,
            counts.mispredicted,
            samples_required=self.params.samples,
            step=self.last_step,
            describe=describe,
            classes=counts.ids,
        )

    def reported_actions(
        self, configured: Sequence[Mapping[str, Any]] = ()
    ) -> list[dict[str, Any]]:
        """Each action's outcome as every output reports it (``configured`` stands in before
        the actions have outcomes): once the evaluation ended without an issue, the actions
        still pending are ``skipped`` (here only: a checkpoint keeps them pending, so a resumed
        evaluation that finds the issue still carries them out)."""
        outcomes = [dict(outcome) for outcome in self.actions] or [
            {"action": dict(action), "outcome": "pending", "detail": ""} for action in configured
        ]
        if self.status in FINAL_STATUSES and self.issue_step is None:
            for outcome in outcomes:
                if outcome["outcome"] == "pending":
                    outcome.update(outcome="skipped", detail="not carried out: no issue was found")
        return outcomes

    def class_name(self, index: int) -> str | None:
        names = self.class_names
        return names[index] if names is not None and 0 <= index < len(names) else None

    @cached_property
    def imbalance_ratio(self) -> float | None:
        """Largest over smallest class count (classes with a sample); None before any."""
        ratio = imbalance_ratio(self.combined.samples)
        return None if ratio is None else ratio[0]

    @property
    def threshold_imbalance(self) -> float:
        return self.params.threshold_imbalance

    @property
    def threshold_misprediction(self) -> float:
        return self.params.threshold_misprediction

    @property
    def samples_required(self) -> int:
        return self.params.samples

    @property
    def checks_active(self) -> bool:
        """Whether ``samples`` labels were counted, so that the checks run."""
        return self.samples >= self.params.samples

    def current_findings(self) -> Mapping[str, Finding | None]:
        """Each check's finding at the last evaluated step, None where it does not hold now;
        empty before a step is evaluated with ``samples`` reached. Described on demand (for a
        status write): describing is the costly part, and a scrape never needs it; once per
        snapshot (the status and, with ``confidence``, the confusion matrix both ask)."""
        return self._current_findings

    @cached_property
    def _current_findings(self) -> dict[str, Finding | None]:
        if self.last_step is None or not self.checks_active:
            return {}
        combined = self.combined
        tallies = Tallies(combined.samples, combined.mispredicted, self.recent, combined.ids)
        return describe_current(self.checks, self.current_holds, tallies, self.last_step)


def take_snapshot(
    rule: ClassImbalanceRule,
    *,
    status: str,
    trial: str,
    ready: bool,
    reader: ReaderProblems = NO_PROBLEMS,
    progress: Progress | None = None,
    class_names: tuple[str, ...] | None = None,
    actions: tuple[Mapping[str, Any], ...] = (),
) -> Snapshot:
    """Copy what exporters need out of the rule (cost: O(classes x modes), the classes seen
    when their indices are sparse; the confusion pairs are held, not copied, and folded only
    when an output asks). Every mode's counts are over the combined counts' classes."""
    classes, samples, mispredicted = (a.copy() for a in rule.combined_columns())
    by_mode = {
        mode: _mode_copy(counts, classes) for mode, counts in sorted(rule.counts_by_mode.items())
    }
    recent = rule.recent(classes)
    found = {finding.check for finding in rule.findings}
    holds = rule.current_holds
    return Snapshot(
        status=status,
        trial=trial,
        ready=ready,
        params=rule.params,
        checks=rule.checks,
        steps_evaluated=rule.steps_evaluated,
        last_step=rule.last_step,
        samples=rule.samples,
        ignored=rule.ignored,
        combined=ModeCounts(samples, mispredicted, classes=classes),
        by_mode=by_mode,
        recent=recent,
        class_names=class_names,
        actions=actions,
        findings=tuple(rule.findings),
        current_holds={check.name: holds.get(check.name, False) for check in rule.checks},
        issue_found={check.name: check.name in found for check in rule.checks},
        issue_step=rule.issue_step,
        skipped_rows=dict(rule.skipped_rows),
        skipped_batches=dict(rule.skipped_batches),
        problem_examples=dict(rule.problem_examples),
        reader=reader,
        progress=progress or Progress(),
        history=tuple(rule.history.points),
        history_every=rule.history.every,
    )


def _mode_copy(counts: ClassCounts, classes: IntArray) -> ModeCounts:
    """One mode's counts over ``classes`` (sorted: every class the mode counted, or more)."""
    ids, samples, mispredicted = counts.columns()
    seen = samples > 0
    return ModeCounts(
        aligned(ids[seen], samples[seen], classes),
        aligned(ids[seen], mispredicted[seen], classes),
        counts.confusion.frozen(),
        classes,
    )


class SnapshotBox:
    """The current snapshot, swapped whole by the loop and read by any thread."""

    def __init__(self, initial: Snapshot) -> None:
        self._current = initial
        self._lock = threading.Lock()

    def publish(self, snapshot: Snapshot) -> None:
        with self._lock:
            self._current = snapshot

    def get(self) -> Snapshot:
        with self._lock:
            return self._current
