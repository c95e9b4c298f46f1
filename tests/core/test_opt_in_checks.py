"""The opt-in checks, each against an independent numpy computation, and each in a case where
it and the seed's plain check disagree as they should."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evaluator.core import ClassImbalanceRule, RuleParameters, WorkerBatch, rule_checks, seed_checks
from evaluator.core.bounds import wilson_bounds, z_score
from evaluator.core.checks import (
    GuardedImbalanceCheck,
    GuardedMispredictionCheck,
    MinorityNotImprovingCheck,
    RecentMispredictionCheck,
    Tallies,
)


def batch(labels: list[int], predicted: list[int], mode: str = "TRAIN") -> list[WorkerBatch]:
    arrays = {"labels": np.array(labels), "predictions": np.array(predicted)}
    return [WorkerBatch("w", mode, arrays)]


def test_default_parameters_check_exactly_what_the_seed_rule_checks() -> None:
    assert rule_checks(RuleParameters()) == seed_checks(RuleParameters())


def test_confidence_swaps_in_the_guarded_forms_under_the_seed_names() -> None:
    checks = rule_checks(
        RuleParameters(confidence=0.9, window_steps=4, minority_not_improving=True)
    )
    assert [type(c) for c in checks] == [
        GuardedImbalanceCheck,
        GuardedMispredictionCheck,
        RecentMispredictionCheck,
        MinorityNotImprovingCheck,
    ]
    assert [c.name for c in checks] == [
        "imbalance",
        "misprediction",
        "recent_misprediction",
        "minority_not_improving",
    ]


# -- guarded misprediction ----------------------------------------------------------------------


def test_one_of_one_mispredicted_fires_the_plain_check_but_not_the_guarded_one() -> None:
    labels = [0] * 600 + [1]
    predicted = [0] * 600 + [0]
    plain = ClassImbalanceRule(RuleParameters(threshold_imbalance=1000))
    guarded = ClassImbalanceRule(RuleParameters(threshold_imbalance=1000, confidence=0.95))
    for rule in (plain, guarded):
        rule.evaluate_step(0, batch(labels, predicted))
    assert plain.current_holds["misprediction"] is True
    assert guarded.current_holds["misprediction"] is False
    assert [f.check for f in plain.findings] == ["misprediction"]
    assert guarded.findings == []


def test_four_hundred_of_five_hundred_fires_both() -> None:
    labels = [0] * 500 + [1] * 500
    predicted = [1] * 400 + [0] * 100 + [1] * 500
    guarded = ClassImbalanceRule(RuleParameters(confidence=0.95))
    guarded.evaluate_step(0, batch(labels, predicted))
    [finding] = guarded.findings
    lower, _ = wilson_bounds(400, 500, z_score(0.95))
    assert (finding.check, finding.classes, finding.value) == ("misprediction", (0,), float(lower))
    assert "400/500 = 0.800, at least 0.769" in finding.message
    assert "at confidence 0.95" in finding.message


@settings(max_examples=80, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 60), st.integers(0, 60)), min_size=1, max_size=6),
    st.sampled_from([0.5, 0.9, 0.95, 0.99]),
    st.sampled_from([0.3, 0.5, 0.7]),
)
def test_the_guarded_misprediction_check_is_the_wilson_lower_bound_above_the_threshold(
    classes: list[tuple[int, int]], confidence: float, threshold: float
) -> None:
    samples = np.array([n + m for n, m in classes], dtype=np.int64)
    wrong = np.array([m for _, m in classes], dtype=np.int64)
    check = GuardedMispredictionCheck(threshold, confidence)
    expected = any(
        n > 0 and float(wilson_bounds(m, n, z_score(confidence))[0]) > threshold
        for n, m in zip(samples.tolist(), wrong.tolist(), strict=True)
    )
    tallies = Tallies(samples, wrong)
    assert bool(check.holds(tallies.as_rows())[0]) is expected
    assert (check.describe(tallies, 0) is not None) is expected


@settings(max_examples=80, deadline=None)
@given(st.lists(st.integers(0, 400), min_size=1, max_size=6), st.sampled_from([1.5, 3.0, 10.0]))
def test_the_guarded_imbalance_check_bounds_the_shares_of_the_largest_and_smallest(
    counts: list[int], threshold: float
) -> None:
    samples = np.array(counts, dtype=np.int64)
    check = GuardedImbalanceCheck(threshold, 0.95)
    seen = [c for c in counts if c > 0]
    expected = False
    if seen:
        z, total = z_score(0.95), sum(seen)
        lower = float(wilson_bounds(max(seen), total, z)[0])
        upper = float(wilson_bounds(min(seen), total, z)[1])
        expected = lower / upper > threshold
        plain = max(seen) / min(seen) > threshold
        assert plain or not expected, "the guarded check never fires where the plain one does not"
    tallies = Tallies(samples, np.zeros_like(samples))
    assert bool(check.holds(tallies.as_rows())[0]) is expected
    assert (check.describe(tallies, 0) is not None) is expected


def test_a_few_samples_of_a_rare_class_do_not_prove_an_imbalance() -> None:
    samples = np.array([40, 3])  # ratio 13.3, but 43 labels say little about the shares
    assert (
        ClassImbalanceRule(RuleParameters(samples=0))
        .checks[0]
        .holds(Tallies(samples, np.zeros(2, np.int64)).as_rows())[0]
    )
    assert not GuardedImbalanceCheck(10, 0.95).holds(
        Tallies(samples, np.zeros(2, np.int64)).as_rows()
    )[0]
    large = samples * 1000
    assert GuardedImbalanceCheck(10, 0.95).holds(Tallies(large, np.zeros(2, np.int64)).as_rows())[0]


# -- recent misprediction -----------------------------------------------------------------------


def late_regression() -> list[tuple[list[int], list[int]]]:
    """Class 1 is learnt for 20 steps, then unlearnt for 4, then fixed again for 2."""
    good = ([0] * 8 + [1] * 8, [0] * 8 + [1] * 8)
    bad = ([0] * 8 + [1] * 8, [0] * 8 + [0] * 8)
    return [good] * 20 + [bad] * 4 + [good] * 2


def test_a_late_regression_fires_the_recent_check_only_and_a_late_fix_clears_it() -> None:
    rule = ClassImbalanceRule(RuleParameters(samples=0, window_steps=3))
    holds = []
    for step, (labels, predicted) in enumerate(late_regression()):
        rule.evaluate_step(step, batch(labels, predicted))
        holds.append(rule.current_holds)
    assert all(not h["misprediction"] for h in holds), "cumulatively class 1 is fine"
    recent = [h["recent_misprediction"] for h in holds]
    # Class 1's fraction over the last 3 steps from step 20: 1/3, 2/3, 1, 1, then 2/3, 1/3.
    assert recent == [False] * 20 + [False, False, True, True, False, False]
    [finding] = rule.findings
    assert (finding.check, finding.step, finding.classes) == ("recent_misprediction", 22, (1,))
    assert finding.message.startswith(
        "misprediction fraction over the last 3 steps above threshold_misprediction 0.7"
    )
    assert rule.current_findings()["recent_misprediction"] is None


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.lists(st.tuples(st.integers(0, 3), st.integers(0, 3)), max_size=10),
        min_size=1,
        max_size=20,
    ),
    st.integers(1, 5),
)
def test_the_recent_check_after_every_step_is_a_numpy_recount(
    steps: list[list[tuple[int, int]]], window: int
) -> None:
    rule = ClassImbalanceRule(RuleParameters(samples=0, window_steps=window))
    results = rule.evaluate_steps(
        [(i, batch([r[0] for r in rows], [r[1] for r in rows])) for i, rows in enumerate(steps)]
    )
    first = None
    for index in range(len(steps)):
        rows = [r for s in steps[max(0, index - window + 1) : index + 1] for r in s]
        samples = np.bincount([r[0] for r in rows], minlength=4)
        wrong = np.bincount([r[0] for r in rows if r[0] != r[1]], minlength=4)
        fractions = np.divide(wrong, samples, out=np.zeros(4), where=samples > 0)
        if first is None and bool((fractions > 0.7).any()):
            first = index
    found = [f.step for r in results for f in r.new_findings if f.check == "recent_misprediction"]
    assert found == ([] if first is None else [first])


# -- minority not improving ---------------------------------------------------------------------


def learning(minority_fixed: bool) -> list[tuple[list[int], list[int]]]:
    """Classes 0 and 1 (the majority) improve from step 4 on; class 2 (rare) improves only when
    ``minority_fixed``."""
    early = ([0] * 10 + [1] * 10 + [2] * 2, [1] * 5 + [0] * 5 + [0] * 5 + [1] * 5 + [0, 0])
    later_majority = [0] * 10 + [1] * 10
    later_minority = [2, 2] if minority_fixed else [0, 0]
    late = ([0] * 10 + [1] * 10 + [2] * 2, later_majority + later_minority)
    return [early] * 4 + [late] * 4


@pytest.mark.parametrize("fixed", [False, True], ids=["minority stuck", "minority improves"])
def test_minority_not_improving_fires_only_when_the_majority_improves_alone(fixed: bool) -> None:
    rule = ClassImbalanceRule(
        RuleParameters(
            samples=0, threshold_imbalance=100, window_steps=4, minority_not_improving=True
        )
    )
    for step, (labels, predicted) in enumerate(learning(fixed)):
        rule.evaluate_step(step, batch(labels, predicted))
    found = {f.check: f for f in rule.findings}
    if fixed:
        assert "minority_not_improving" not in found
        return
    finding = found["minority_not_improving"]
    assert (finding.step, finding.classes, finding.value, finding.threshold) == (7, (2,), 1.0, 1.0)
    assert "majority classes' fell from 0.500 to 0.000" in finding.message


def test_minority_not_improving_waits_for_two_full_windows() -> None:
    rule = ClassImbalanceRule(
        RuleParameters(
            samples=0, threshold_imbalance=100, window_steps=4, minority_not_improving=True
        )
    )
    for step, (labels, predicted) in enumerate(learning(False)[:7]):
        rule.evaluate_step(step, batch(labels, predicted))
        assert rule.current_holds["minority_not_improving"] is False
