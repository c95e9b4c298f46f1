"""An immutable picture of the evaluation, taken by the loop and read by exporters.

The loop owns the rule and mutates it; the metrics server's thread must never read half an
update. So the loop publishes a ``Snapshot`` (copies, not views) after each step, and exporters
read whichever snapshot is current: one reference swap, no lock held while serving.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from evaluator.core import ClassImbalanceRule
from evaluator.core.checks import IMBALANCE, MISPREDICTION, imbalance_ratio

IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class ModeCounts:
    """Per-class counts of one mode; index = class."""

    samples: IntArray
    mispredicted: IntArray


@dataclass(frozen=True)
class Snapshot:
    """Everything exporters show, as of one moment."""

    status: str
    """InProgress, NoIssuesFound, IssuesFound, Error or Stopped."""
    trial: str
    ready: bool
    """Attached to the trial and evaluating (for /readyz)."""
    threshold_imbalance: float
    threshold_misprediction: float
    samples_required: int
    steps_evaluated: int = 0
    last_step: int | None = None
    samples: int = 0
    ignored: int = 0
    imbalance_ratio: float | None = None
    by_mode: Mapping[str, ModeCounts] = field(default_factory=dict)
    combined: ModeCounts = field(
        default_factory=lambda: ModeCounts(np.zeros(0, np.int64), np.zeros(0, np.int64))
    )
    issue_now: Mapping[str, bool] = field(default_factory=dict)
    """Whether each check holds at the last evaluated step."""
    issue_found: Mapping[str, bool] = field(default_factory=dict)
    """Whether each check has held at any evaluated step."""
    issue_step: int | None = None
    skipped_rows: Mapping[str, int] = field(default_factory=dict)
    skipped_batches: Mapping[str, int] = field(default_factory=dict)
    reader_problems: Mapping[str, int] = field(default_factory=dict)
    """Files the reader gave up on, by reason (malformed index, late parts, ...)."""
    last_evaluation_time: float | None = None
    """Unix time of the last evaluated step."""


def take_snapshot(
    rule: ClassImbalanceRule,
    *,
    status: str,
    trial: str,
    ready: bool,
    reader_problems: Mapping[str, int] | None = None,
    last_evaluation_time: float | None = None,
) -> Snapshot:
    """Copy what exporters need out of the rule (cost: O(classes x modes))."""
    by_mode = {
        mode: ModeCounts(*(a.copy() for a in counts.trimmed()))
        for mode, counts in sorted(rule.counts_by_mode.items())
    }
    samples, mispredicted = rule.combined_counts()
    ratio = imbalance_ratio(samples)
    found = {finding.check for finding in rule.findings}
    return Snapshot(
        status=status,
        trial=trial,
        ready=ready,
        threshold_imbalance=rule.params.threshold_imbalance,
        threshold_misprediction=rule.params.threshold_misprediction,
        samples_required=rule.params.samples,
        steps_evaluated=rule.steps_evaluated,
        last_step=rule.last_step,
        samples=rule.samples,
        ignored=rule.ignored,
        imbalance_ratio=None if ratio is None else ratio[0],
        by_mode=by_mode,
        combined=ModeCounts(samples.copy(), mispredicted.copy()),
        issue_now={
            check: rule.current_holds.get(check, False) for check in (IMBALANCE, MISPREDICTION)
        },
        issue_found={check: check in found for check in (IMBALANCE, MISPREDICTION)},
        issue_step=rule.issue_step,
        skipped_rows=dict(rule.skipped_rows),
        skipped_batches=dict(rule.skipped_batches),
        reader_problems=dict(reader_problems or {}),
        last_evaluation_time=last_evaluation_time,
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
