"""Prometheus metrics of the evaluation, built from a snapshot at scrape time.

client_python's habit: a custom collector yields metric families from one ``Snapshot`` per
scrape, so the evaluation loop never touches a metric object and a scrape never sees half a
step. Per-class series are capped (see ``kept_classes``) because a model with tens of thousands
of classes would otherwise create that many series per mode in Prometheus.

Per-class figures are gauges, not counters: which classes fall into ``class="other"`` changes
as the counts change, so that series can go down, and a class leaving the kept set makes its
series disappear. The run's totals only grow and are counters.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

import numpy as np
import numpy.typing as npt
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
    StateSetMetricFamily,
)
from prometheus_client.registry import CollectorRegistry

from container.actions import OUTCOMES as ACTION_OUTCOMES
from container.config import MetricsSettings
from container.snapshot import Snapshot, SnapshotBox
from evaluator.core import IGNORED, uses_window

PREFIX = "classimbalance"
INFO_NAME = f"{PREFIX}_evaluation_info"
INFO_HELP = (
    "Always 1: which evaluation this is, as labels (trial, training_job, and metric_labels), to "
    "join with the other series by instance."
)
STATES = ("InProgress", "NoIssuesFound", "IssuesFound", "Error", "Stopped")
OTHER = "other"
"""The ``class`` label of the series that sums every class not kept on its own."""

IntArray = npt.NDArray[np.int64]


def kept_classes(samples: IntArray, mispredicted: IntArray, k: int) -> IntArray:
    """The classes that get their own series: the k worst by misprediction fraction and the k
    scarcest, over all modes (sorted, at most 2k), as entries of the counts (their class ids
    are ``ModeCounts.classes``: sorted, so ties still go to the lowest class index).

    These are the classes the seed rule's checks are about, so an alert can name them; the rest are
    summed under ``class="other"``. Ties go to the lowest class index so that the kept set
    does not flicker between scrapes of unchanged counts. Classes with no sample are never
    kept: they have no series at all.
    """
    seen = np.flatnonzero(samples)
    if seen.size <= k:
        return seen
    counts = samples[seen]
    fractions = mispredicted[seen] / counts
    worst = seen[np.lexsort((seen, -fractions))[:k]]
    scarcest = seen[np.lexsort((seen, counts))[:k]]
    return np.union1d(worst, scarcest)


def info_labels(metrics: MetricsSettings) -> list[tuple[str, str]]:
    """``evaluation_info``'s labels besides ``trial``: ``training_job`` when set, then the
    configured ``metric_labels`` (one place for the server's and the push's)."""
    job = [("training_job", metrics.training_job)] if metrics.training_job else []
    return [*job, *metrics.metric_labels]


class ClassImbalanceCollector:
    """Builds every family from whichever snapshot is current when Prometheus scrapes, so the
    loop only publishes snapshots and never waits for, or races with, a scrape."""

    def __init__(
        self,
        box: SnapshotBox,
        max_class_series: int,
        max_confusion_series: int = 10,
        info_labels: Sequence[tuple[str, str]] = (),
    ) -> None:
        for name, value in (
            ("max_class_series", max_class_series),
            ("max_confusion_series", max_confusion_series),
        ):
            if value < 0:
                raise ValueError(f"Expected `{name}` to be a whole number >= 0, but got {value!r}")
        self._box = box
        self._k = max_class_series
        self._confusions = max_confusion_series
        self._info_labels = tuple(info_labels)
        """(name, value) of ``evaluation_info``'s labels besides ``trial``."""

    def describe(self) -> Iterator[Metric]:
        """The families without samples, so the registry knows the names without a scrape
        (duplicate-name checks, ``name[]`` filtering)."""
        return iter([*_Families().all(), GaugeMetricFamily(INFO_NAME, INFO_HELP)])

    def collect(self) -> Iterator[Metric]:
        snapshot = self._box.get()  # one snapshot per scrape: every family agrees
        families = _Families(named=snapshot.class_names is not None)
        self._fill(families, snapshot)
        return iter([*families.all(), self._info(snapshot)])

    def _info(self, snapshot: Snapshot) -> Metric:
        """Which evaluation this is: the trial, the training job and the configured labels,
        for joins by ``instance`` (``* on(instance) group_left(training_job) ...``)."""
        names = ["trial", *(name for name, _ in self._info_labels)]
        info = GaugeMetricFamily(INFO_NAME, INFO_HELP, labels=names)
        info.add_metric([snapshot.trial, *(value for _, value in self._info_labels)], 1.0)
        return info

    def _fill(self, f: _Families, s: Snapshot) -> None:
        if s.imbalance_ratio is not None:
            f.imbalance_ratio.add_metric([], s.imbalance_ratio)
        f.threshold_imbalance.add_metric([], s.threshold_imbalance)
        f.threshold_misprediction.add_metric([], s.threshold_misprediction)
        f.samples_required.add_metric([], s.samples_required)
        f.samples.add_metric([], s.samples)
        f.steps.add_metric([], s.steps_evaluated)
        if s.last_step is not None:
            f.last_step.add_metric([], s.last_step)
        if s.progress.last_evaluation_time is not None:
            f.last_evaluation.add_metric([], s.progress.last_evaluation_time)
        # An unknown status leaves every state 0 rather than inventing a state (and a series).
        f.status.add_metric([], {state: s.status == state for state in STATES})
        for check in s.checks:
            f.issue_current.add_metric([check.name], float(s.current_holds.get(check.name, False)))
            f.issue_found.add_metric([check.name], float(s.issue_found.get(check.name, False)))
        rows = dict(s.skipped_rows)
        if s.ignored:
            rows[IGNORED] = rows.get(IGNORED, 0) + s.ignored
        _add_by_reason(f.skipped_rows, rows)
        _add_by_reason(f.skipped_batches, s.skipped_batches)
        _add_by_reason(f.skipped_files, s.reader.skipped_files)
        _add_by_reason(f.reader_notices, s.reader.notices)
        kept = kept_classes(s.combined.samples, s.combined.mispredicted, self._k)
        self._add_classes(f, s, kept)
        self._add_modes(f, s)
        self._add_confusions(f, s)
        self._add_recent(f, s, kept)
        for position, outcome in enumerate(s.reported_actions(), start=1):
            for state in ACTION_OUTCOMES:
                labels = [str(outcome["action"]["name"]), str(position), state]
                f.action_outcome.add_metric(labels, float(outcome["outcome"] == state))

    def _add_classes(self, f: _Families, s: Snapshot, kept: IntArray) -> None:
        """``kept``: entries of the snapshot's counts (every mode's are over the same classes,
        ``ModeCounts.classes``), named by their class index."""
        for mode in sorted(s.by_mode):
            counts = s.by_mode[mode]
            samples, mispredicted = counts.samples, counts.mispredicted
            own = kept[kept < samples.size]
            own = own[samples[own] > 0]  # kept overall, but maybe never seen in this mode
            fractions = mispredicted[own] / samples[own]
            for column, fraction in zip(own.tolist(), fractions.tolist(), strict=True):
                labels = [*_class(s, counts.class_at(column)), mode]
                f.class_samples.add_metric(labels, float(samples[column]))
                f.class_fraction.add_metric(labels, fraction)
            rest = samples > 0
            rest[own] = False
            rest_samples = int(samples[rest].sum())
            if rest_samples:
                rest_mispredicted = int(mispredicted[rest].sum())
                other = [OTHER, OTHER] if s.class_names is not None else [OTHER]
                f.class_samples.add_metric([*other, mode], float(rest_samples))
                f.class_fraction.add_metric([*other, mode], rest_mispredicted / rest_samples)

    def _add_modes(self, f: _Families, s: Snapshot) -> None:
        """Each mode's own verdicts: the cumulative checks on its counts alone."""
        for mode, verdict in sorted(s.mode_verdicts.items()):
            if verdict.imbalance_ratio is not None:
                f.mode_imbalance_ratio.add_metric([mode], verdict.imbalance_ratio)
            for check in s.checks:
                if not uses_window(check):  # 0 before the mode has ``samples`` labels
                    holds = verdict.holds.get(check.name, False)
                    f.mode_issue_current.add_metric([check.name, mode], float(holds))

    def _add_confusions(self, f: _Families, s: Snapshot) -> None:
        """The classes above threshold_misprediction now, worst first (at most
        ``max_confusion_series``): in each mode, what each is most often predicted as."""
        fractions = s.fractions
        with np.errstate(invalid="ignore"):
            failing = np.flatnonzero(fractions > s.threshold_misprediction)
        failing = failing[np.lexsort((failing, -fractions[failing]))][: self._confusions]
        if not failing.size:  # ranking the pairs costs a sort: only when a series needs it
            return
        for mode in sorted(s.by_mode):
            confusions = s.by_mode[mode].confusions
            for column in failing.tolist():
                c = s.combined.class_at(column)
                top = confusions.get(c)
                if top:
                    labels = [*_class(s, c), *_class(s, top[0].predicted), mode]
                    f.class_confusion.add_metric(labels, top[0].fraction)

    def _add_recent(self, f: _Families, s: Snapshot, kept: IntArray) -> None:
        recent = s.recent
        if recent is None:
            return
        f.recent_steps.add_metric([], float(recent.steps))
        own = kept[kept < recent.samples.size]
        own = own[recent.samples[own] > 0]
        fractions = recent.mispredicted[own] / recent.samples[own]
        for column, fraction in zip(own.tolist(), fractions.tolist(), strict=True):
            f.class_recent_fraction.add_metric(_class(s, s.combined.class_at(column)), fraction)


def _class(s: Snapshot, index: int) -> list[str]:
    """The class labels of a series: ``class``, and ``class_name`` when names are set."""
    if s.class_names is None:
        return [str(index)]
    return [str(index), s.class_name(index) or ""]


def _add_by_reason(family: CounterMetricFamily, counts: Mapping[str, int]) -> None:
    for reason, count in sorted(counts.items()):
        family.add_metric([reason], float(count))


class _Families:
    """Every family the collector exports, empty; one place for names, types and help.

    With class names configured, every family labelled by ``class`` has ``class_name`` beside
    it (and ``mistaken_for_name`` beside ``mistaken_for``)."""

    def __init__(self, *, named: bool = False) -> None:
        p = PREFIX
        cls = ["class", "class_name"] if named else ["class"]
        mistaken = ["mistaken_for", "mistaken_for_name"] if named else ["mistaken_for"]
        self.imbalance_ratio = GaugeMetricFamily(
            f"{p}_imbalance_ratio",
            "Largest over smallest class count, summed over modes, among classes with at "
            "least one sample; absent until a class has one. The imbalance check holds when it "
            "is above the imbalance threshold.",
        )
        self.threshold_imbalance = GaugeMetricFamily(
            f"{p}_imbalance_threshold_ratio",
            "threshold_imbalance: the imbalance check holds when the imbalance ratio is "
            "strictly above it.",
        )
        self.threshold_misprediction = GaugeMetricFamily(
            f"{p}_misprediction_threshold_ratio",
            "threshold_misprediction: the misprediction check holds when some class's "
            "misprediction fraction (over all modes) is strictly above it.",
        )
        self.samples_required = GaugeMetricFamily(
            f"{p}_samples_required",
            "The samples parameter: labels to count before the checks run.",
        )
        self.class_samples = GaugeMetricFamily(
            f"{p}_class_samples",
            "Labels counted per class and mode. Only the classes with the highest "
            "misprediction fraction and the scarcest have their own series; the rest are "
            'summed under class="other". Classes with no sample have no series.',
            labels=[*cls, "mode"],
        )
        self.class_fraction = GaugeMetricFamily(
            f"{p}_class_misprediction_ratio",
            "Fraction of a class's labels predicted as another class, per mode; for "
            'class="other", its summed mispredictions over its summed samples.',
            labels=[*cls, "mode"],
        )
        self.class_confusion = GaugeMetricFamily(
            f"{p}_class_confusion_ratio",
            "For the classes above the misprediction threshold now (the worst first, at most "
            "max_confusion_series), per mode: the fraction of the class's labels predicted as "
            "the class it is most often mistaken for (mistaken_for).",
            labels=[*cls, *mistaken, "mode"],
        )
        self.class_recent_fraction = GaugeMetricFamily(
            f"{p}_class_recent_misprediction_ratio",
            "Fraction of a class's labels mispredicted over the last window_steps steps, every "
            "mode; the same classes as the per-class series; only with window_steps > 0.",
            labels=cls,
        )
        self.recent_steps = GaugeMetricFamily(
            f"{p}_recent_window_steps",
            "Steps in the recent window (window_steps once that many were evaluated); only "
            "with window_steps > 0.",
        )
        self.action_outcome = GaugeMetricFamily(
            f"{p}_action_outcome",
            "1 for each configured action's outcome (pending, done, failed, skipped, "
            "would_run), 0 for the others; position is the action's place in the list.",
            labels=["action", "position", "outcome"],
        )
        self.mode_imbalance_ratio = GaugeMetricFamily(
            f"{p}_mode_imbalance_ratio",
            "Largest over smallest class count within one mode's labels.",
            labels=["mode"],
        )
        self.mode_issue_current = GaugeMetricFamily(
            f"{p}_mode_issue_current",
            "1 when the check holds on one mode's counts alone at the last evaluated step, "
            "else 0 (checks over the recent window are evaluated over every mode only). The "
            "combined verdict (issue_current) decides the status.",
            labels=["check", "mode"],
        )
        self.samples = CounterMetricFamily(
            f"{p}_samples", "Labels counted, over all workers and modes."
        )
        self.steps = CounterMetricFamily(f"{p}_steps_evaluated", "Global steps evaluated.")
        self.last_step = GaugeMetricFamily(
            f"{p}_last_evaluated_step",
            "The last global step evaluated; absent before the first.",
        )
        self.status = StateSetMetricFamily(
            f"{p}_status", "The rule's status, as in the status file."
        )
        self.issue_current = GaugeMetricFamily(
            f"{p}_issue_current",
            "1 when the check holds at the last evaluated step, else 0.",
            labels=["check"],
        )
        self.issue_found = GaugeMetricFamily(
            f"{p}_issue_found",
            "1 once the check has held at some evaluated step, else 0.",
            labels=["check"],
        )
        self.skipped_rows = CounterMetricFamily(
            f"{p}_skipped_rows",
            "Label rows not counted, by reason (ignored_label: equal to ignore_index).",
            labels=["reason"],
        )
        self.skipped_batches = CounterMetricFamily(
            f"{p}_skipped_batches",
            "Worker batches not counted, by reason (including read errors of their part).",
            labels=["reason"],
        )
        self.skipped_files = CounterMetricFamily(
            f"{p}_skipped_files",
            "Trial files the reader gave up on (left out of their step after retries, or "
            "arriving after it was evaluated), by reason.",
            labels=["reason"],
        )
        self.reader_notices = CounterMetricFamily(
            f"{p}_reader_notices",
            "Reader events that lose no data by themselves (storage outages ridden out, steps "
            "released by the incomplete-step window, ...), by reason.",
            labels=["reason"],
        )
        self.last_evaluation = GaugeMetricFamily(
            f"{p}_last_evaluation_timestamp_seconds",
            "Unix time of the last evaluated step; absent before the first.",
        )

    def all(self) -> list[Metric]:
        return list(vars(self).values())


def build_registry(
    box: SnapshotBox, max_class_series: int, max_confusion_series: int = 10
) -> CollectorRegistry:
    """A private registry holding only the collector: nothing global, so tests and several
    servers in one process never share or collide."""
    registry = CollectorRegistry()
    registry.register(ClassImbalanceCollector(box, max_class_series, max_confusion_series))
    return registry
