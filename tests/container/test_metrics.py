"""The Prometheus collector, read through a private registry from snapshots of a real rule."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_text
from prometheus_client.openmetrics.parser import text_string_to_metric_families
from prometheus_client.registry import CollectorRegistry

from container.config import Settings
from container.metrics import STATES, ClassImbalanceCollector, build_registry, kept_classes
from container.snapshot import Progress, Snapshot, SnapshotBox, take_snapshot
from evaluator.core import ClassImbalanceRule, RuleParameters, WorkerBatch
from evaluator.trial import ReaderProblems

CLASS_SAMPLES = "classimbalance_class_samples"
CLASS_FRACTION = "classimbalance_class_misprediction_ratio"


# -- building real snapshots --------------------------------------------------------------------


def batch(
    labels: Sequence[int] | np.ndarray,
    predictions: Sequence[int] | np.ndarray,
    *,
    mode: str = "TRAIN",
    source: str = "worker_0",
) -> WorkerBatch:
    return WorkerBatch(
        source,
        mode,
        {"labels": np.asarray(labels, np.int64), "predictions": np.asarray(predictions, np.int64)},
    )


def evaluated(steps: Sequence[Sequence[WorkerBatch]], **params: object) -> ClassImbalanceRule:
    rule = ClassImbalanceRule(RuleParameters(**{"samples": 0, **params}))  # type: ignore[arg-type]
    for step, batches in enumerate(steps):
        rule.evaluate_step(step, batches)
    return rule


def snap(
    rule: ClassImbalanceRule,
    *,
    status: str = "InProgress",
    ready: bool = True,
    skipped_files: dict[str, int] | None = None,
    last_evaluation_time: float | None = None,
) -> Snapshot:
    return take_snapshot(
        rule,
        status=status,
        trial="/trials/run-1",
        ready=ready,
        reader=ReaderProblems(skipped_files=dict(skipped_files or {})),
        progress=Progress(last_evaluation_time=last_evaluation_time),
    )


def rich_rule() -> ClassImbalanceRule:
    """Two modes, two workers, skipped rows of several kinds, a skipped and an unread batch."""
    train_0 = batch([0, 0, 0, 0, 1, 1, 2, -1, -100], [0, 0, 1, 0, 1, 0, 0, 0, 0])
    train_1 = batch([0, 3, 3, 99], [0, 3, 0, 0], source="worker_1")
    evaluation = batch([0, 1, 1, 1], [0, 1, 1, 2], mode="EVAL")
    no_predictions = WorkerBatch("worker_1", "EVAL", {"labels": np.zeros(2, np.int64)})
    unread = WorkerBatch("worker_2", "TRAIN", error_reason="truncated", error="cut short")
    return evaluated(
        [[train_0, train_1], [evaluation, no_predictions], [unread]],
        max_classes=10,
        threshold_imbalance=2,
    )


def rich_snapshot() -> Snapshot:
    return snap(
        rich_rule(), skipped_files={"bad_index": 2, "late_part": 1}, last_evaluation_time=1.5e9
    )


def registry_of(snapshot: Snapshot, max_class_series: int = 20) -> CollectorRegistry:
    return build_registry(SnapshotBox(snapshot), max_class_series)


def series(registry: CollectorRegistry, name: str) -> dict[tuple[str, str], float]:
    """(class, mode) -> value of every series of a per-class family."""
    return {
        (s.labels["class"], s.labels["mode"]): s.value
        for family in registry.collect()
        for s in family.samples
        if s.name == name
    }


def reasons(registry: CollectorRegistry, name: str) -> dict[str, float]:
    return {
        s.labels["reason"]: s.value
        for family in registry.collect()
        for s in family.samples
        if s.name == name
    }


# -- values -------------------------------------------------------------------------------------


def test_before_any_step_only_settings_status_and_zero_totals_show() -> None:
    rule = evaluated([], threshold_imbalance=7.5, threshold_misprediction=0.25, samples=300)
    registry = registry_of(snap(rule, ready=False))
    value = registry.get_sample_value
    assert value("classimbalance_imbalance_ratio") is None
    assert value("classimbalance_imbalance_threshold_ratio") == 7.5
    assert value("classimbalance_misprediction_threshold_ratio") == 0.25
    assert value("classimbalance_samples_required") == 300
    assert value("classimbalance_samples_total") == 0
    assert value("classimbalance_steps_evaluated_total") == 0
    assert value("classimbalance_last_evaluated_step") is None
    assert value("classimbalance_last_evaluation_timestamp_seconds") is None
    assert value("classimbalance_status", {"classimbalance_status": "InProgress"}) == 1
    for check in ("imbalance", "misprediction"):
        assert value("classimbalance_issue_current", {"check": check}) == 0
        assert value("classimbalance_issue_found", {"check": check}) == 0
    assert series(registry, CLASS_SAMPLES) == {}
    assert series(registry, CLASS_FRACTION) == {}
    assert reasons(registry, "classimbalance_skipped_rows_total") == {}


def test_every_metric_equals_the_rules_counts() -> None:
    rule = rich_rule()
    registry = registry_of(
        snap(rule, skipped_files={"bad_index": 2}, last_evaluation_time=1_700_000_000.25)
    )
    value = registry.get_sample_value

    samples, _ = rule.combined_counts()
    seen = np.flatnonzero(samples)
    assert value("classimbalance_imbalance_ratio") == samples[seen].max() / samples[seen].min()
    assert value("classimbalance_samples_total") == rule.samples == 14
    assert value("classimbalance_steps_evaluated_total") == rule.steps_evaluated == 3
    assert value("classimbalance_last_evaluated_step") == rule.last_step == 2
    assert value("classimbalance_last_evaluation_timestamp_seconds") == 1_700_000_000.25
    assert value("classimbalance_imbalance_threshold_ratio") == rule.params.threshold_imbalance
    assert value("classimbalance_samples_required") == rule.params.samples

    expected: dict[tuple[str, str], tuple[float, float]] = {}
    for mode, counts in rule.counts_by_mode.items():
        mode_samples, mode_mispredicted = counts.trimmed()
        for c in np.flatnonzero(mode_samples).tolist():
            fraction = mode_mispredicted[c] / mode_samples[c]
            expected[str(c), mode] = (float(mode_samples[c]), float(fraction))
    assert set(expected) == {("0", "TRAIN"), ("1", "TRAIN"), ("2", "TRAIN"), ("3", "TRAIN")} | {
        ("0", "EVAL"),
        ("1", "EVAL"),
    }
    for (cls, mode), (count, fraction) in expected.items():
        labels = {"class": cls, "mode": mode}
        assert value(CLASS_SAMPLES, labels) == count
        assert value(CLASS_FRACTION, labels) == fraction
    assert set(series(registry, CLASS_SAMPLES)) == set(expected), "no other series, no zeros"

    assert reasons(registry, "classimbalance_skipped_rows_total") == {
        "ignored_label": rule.ignored,
        **rule.skipped_rows,
    }
    assert rule.ignored == 1
    assert set(rule.skipped_rows) == {"negative_label", "label_out_of_range"}
    assert reasons(registry, "classimbalance_skipped_batches_total") == dict(rule.skipped_batches)
    assert set(rule.skipped_batches) == {"missing_predictions", "truncated"}
    assert reasons(registry, "classimbalance_skipped_files_total") == {"bad_index": 2}


@pytest.mark.parametrize("status", [*STATES, "SomethingNew"])
def test_the_status_is_a_state_set_with_one_state_on(status: str) -> None:
    registry = registry_of(snap(evaluated([]), status=status))
    states = {
        state: registry.get_sample_value("classimbalance_status", {"classimbalance_status": state})
        for state in STATES
    }
    assert states == {state: float(state == status) for state in STATES}
    families = {f.name: f.type for f in registry.collect()}
    assert families["classimbalance_status"] == "stateset"


def test_issue_flags_tell_holds_now_from_has_held() -> None:
    rule = evaluated(
        [
            [batch([0, 0, 0, 0, 1], [0, 0, 0, 0, 0])],  # class 1: 1/1 mispredicted
            [batch([1] * 9, [1] * 9)],  # class 1: 1/10, the misprediction no longer holds
            [batch([0] * 200, [0] * 200)],  # 204/10 > 10: imbalance holds from here
        ]
    )
    assert rule.issue_step == 0
    registry = registry_of(snap(rule, status="IssuesFound"))
    value = registry.get_sample_value
    assert value("classimbalance_issue_current", {"check": "imbalance"}) == 1
    assert value("classimbalance_issue_current", {"check": "misprediction"}) == 0
    assert value("classimbalance_issue_found", {"check": "imbalance"}) == 1
    assert value("classimbalance_issue_found", {"check": "misprediction"}) == 1
    assert value("classimbalance_imbalance_ratio") == 204 / 10


def test_the_imbalance_ratio_is_absent_until_a_class_has_a_sample() -> None:
    ignored_only = [batch([-100, -100], [0, 1])]
    rule = evaluated([ignored_only])
    box = SnapshotBox(snap(rule))
    registry = CollectorRegistry()
    registry.register(ClassImbalanceCollector(box, 20))
    assert registry.get_sample_value("classimbalance_steps_evaluated_total") == 1
    assert registry.get_sample_value("classimbalance_imbalance_ratio") is None
    assert series(registry, CLASS_SAMPLES) == {}

    rule.evaluate_step(1, [batch([4], [4])])
    box.publish(snap(rule))
    assert registry.get_sample_value("classimbalance_imbalance_ratio") == 1.0
    assert series(registry, CLASS_SAMPLES) == {("4", "TRAIN"): 1.0}


def test_a_published_snapshot_shows_on_the_next_collect() -> None:
    rule = evaluated([[batch([0, 1], [0, 1])]])
    box = SnapshotBox(snap(rule))
    registry = build_registry(box, 20)
    assert registry.get_sample_value("classimbalance_samples_total") == 2
    rule.evaluate_step(1, [batch([0, 0, 0], [0, 0, 0])])
    assert registry.get_sample_value("classimbalance_samples_total") == 2, "the loop's own rule"
    box.publish(snap(rule))
    assert registry.get_sample_value("classimbalance_samples_total") == 5
    assert registry.get_sample_value("classimbalance_imbalance_ratio") == 4.0


# -- the cap on per-class series ----------------------------------------------------------------


def test_20000_classes_keep_at_most_2k_plus_1_series_per_mode_and_other_sums_the_rest() -> None:
    k, classes = Settings.of(base_trial="unused").metrics.max_class_series, 20_000
    rng = np.random.default_rng(7)
    steps = []
    for mode, size in (("TRAIN", 200_000), ("EVAL", 30_000)):
        labels = rng.integers(0, classes, size)
        predictions = np.where(rng.random(size) < 0.3, rng.integers(0, classes, size), labels)
        steps.append([batch(labels, predictions, mode=mode)])
    rule = evaluated(steps, max_classes=classes)
    registry = registry_of(snap(rule), max_class_series=k)

    # The kept set, computed independently: worst k by fraction and k scarcest, over all modes,
    # ties to the lowest class index.
    total, wrong = (a.tolist() for a in rule.combined_counts())
    seen = [c for c in range(len(total)) if total[c]]
    assert len(seen) > 19_000
    worst = sorted(seen, key=lambda c: (-wrong[c] / total[c], c))[:k]
    scarcest = sorted(seen, key=lambda c: (total[c], c))[:k]
    kept = set(worst) | set(scarcest)
    assert k < len(kept) <= 2 * k, "the two selections differ, yet may overlap"

    samples = series(registry, CLASS_SAMPLES)
    fractions = series(registry, CLASS_FRACTION)
    assert set(samples) == set(fractions)
    for mode, counts in rule.counts_by_mode.items():
        mode_samples, mode_wrong = (a.tolist() for a in counts.trimmed())
        shown = {int(c) for c, m in samples if m == mode and c != "other"}
        assert shown == {c for c in kept if c < len(mode_samples) and mode_samples[c]}
        assert len(shown) + 1 <= 2 * k + 1
        for c in shown:
            assert samples[str(c), mode] == mode_samples[c]
            assert fractions[str(c), mode] == mode_wrong[c] / mode_samples[c]
        rest = [c for c in range(len(mode_samples)) if c not in shown]
        rest_samples = sum(mode_samples[c] for c in rest)
        rest_wrong = sum(mode_wrong[c] for c in rest)
        assert samples["other", mode] == rest_samples
        assert fractions["other", mode] == rest_wrong / rest_samples
        assert sum(v for (_, m), v in samples.items() if m == mode) == counts.total


def test_zero_kept_classes_put_everything_under_other() -> None:
    rule = evaluated([[batch([0, 1, 1, 2], [0, 0, 1, 2])]])
    registry = registry_of(snap(rule), max_class_series=0)
    assert series(registry, CLASS_SAMPLES) == {("other", "TRAIN"): 4.0}
    assert series(registry, CLASS_FRACTION) == {("other", "TRAIN"): 0.25}


def test_a_class_seen_in_one_mode_only_has_no_series_in_the_other() -> None:
    rule = evaluated([[batch([0, 1], [0, 1]), batch([5], [5], mode="EVAL")]])
    registry = registry_of(snap(rule), max_class_series=20)
    assert set(series(registry, CLASS_SAMPLES)) == {("0", "TRAIN"), ("1", "TRAIN"), ("5", "EVAL")}


def test_kept_classes_break_ties_by_class_index() -> None:
    samples = np.array([3, 0, 3, 3, 1, 3], np.int64)
    mispredicted = np.array([0, 0, 3, 3, 0, 0], np.int64)
    assert kept_classes(samples, mispredicted, 1).tolist() == [2, 4]
    assert kept_classes(samples, mispredicted, 2).tolist() == [0, 2, 3, 4]
    assert kept_classes(samples, mispredicted, 9).tolist() == [0, 2, 3, 4, 5]


def test_a_negative_cap_is_refused() -> None:
    with pytest.raises(ValueError, match="max_class_series"):
        ClassImbalanceCollector(SnapshotBox(snap(evaluated([]))), -1)


# -- exposition ---------------------------------------------------------------------------------


def test_describe_names_every_family_collect_yields() -> None:
    collector = ClassImbalanceCollector(SnapshotBox(rich_snapshot()), 1)
    described = [(m.name, m.type) for m in collector.describe()]
    assert described == [(m.name, m.type) for m in collector.collect()]
    assert all(not m.samples for m in collector.describe())


def test_openmetrics_exposition_parses_with_types_and_units() -> None:
    text = openmetrics_text(registry_of(rich_snapshot(), max_class_series=1)).decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert families["classimbalance_status"].type == "stateset"
    assert families["classimbalance_samples"].type == "counter"
    assert families["classimbalance_skipped_rows"].type == "counter"
    assert families["classimbalance_class_samples"].type == "gauge"
    assert all(name.startswith("classimbalance_") for name in families)


def test_the_info_metric_names_the_trial_the_training_job_and_the_extra_labels() -> None:
    registry = CollectorRegistry()
    labels = [("training_job", "resnet-2026-12-01"), ("team", "vision")]
    registry.register(ClassImbalanceCollector(SnapshotBox(rich_snapshot()), 20, 10, labels))
    [info] = [s for f in registry.collect() for s in f.samples if s.name.endswith("_info")]
    assert info.name == "classimbalance_evaluation_info"
    assert info.value == 1
    assert info.labels == {
        "trial": rich_snapshot().trial,
        "training_job": "resnet-2026-12-01",
        "team": "vision",
    }
    bare = build_registry(SnapshotBox(rich_snapshot()), 20)
    assert bare.get_sample_value("classimbalance_evaluation_info", {"trial": "/trials/run-1"}) == 1
