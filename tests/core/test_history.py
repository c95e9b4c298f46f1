"""The history: bounded however long the run, exact at every point it keeps, the same however
the steps were chunked or the run restarted, and pinned where the checks start and first hold."""

from __future__ import annotations

import itertools
import json
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evaluator.core import ClassImbalanceRule, History, HistoryPoint, RuleParameters, WorkerBatch
from evaluator.core.history import worst_classes
from tests.core.strategies import Scenario, scenarios


def _rule(scenario: Scenario, capacity: int = 4, per_point: int = 3) -> ClassImbalanceRule:
    return ClassImbalanceRule(
        RuleParameters(**scenario.params),
        history=History(capacity=capacity, classes_per_point=per_point),
    )


def _steps(scenario: Scenario) -> list[tuple[int, list[WorkerBatch]]]:
    return [(step, [b.worker_batch() for b in batches]) for step, batches in scenario.steps]


def _reference_worst(samples: list[int], wrong: list[int], limit: int) -> list[list[int]]:
    """The worst-predicted classes by brute force: sort by fraction (exact rationals), then
    index."""
    from fractions import Fraction

    seen = [c for c, n in enumerate(samples) if n]
    ranked = sorted(seen, key=lambda c: (-Fraction(wrong[c], samples[c]), c))
    return [[c, samples[c], wrong[c]] for c in ranked[:limit]]


@settings(max_examples=120, deadline=None)
@given(scenarios(max_steps=24), st.integers(4, 8), st.integers(1, 4))
def test_every_point_is_exact_and_chunking_does_not_matter(
    scenario: Scenario, capacity: int, per_point: int
) -> None:
    stepwise = _rule(scenario, capacity, per_point)
    after: dict[int, tuple[list[int], list[int]]] = {}
    for index, (step, batches) in enumerate(_steps(scenario), start=1):
        stepwise.evaluate_step(step, batches)
        samples, wrong = stepwise.combined_counts()
        after[index] = (samples.tolist(), wrong.tolist())
    chunked = _rule(scenario, capacity, per_point)
    chunked.evaluate_steps(_steps(scenario))
    assert chunked.history == stepwise.history
    history = stepwise.history
    grid = [p for p in history.points if not p.pinned]
    assert len(grid) <= capacity
    assert all(p.evaluated % history.every == 0 for p in grid)
    for point in history.points:
        samples, wrong = after[point.evaluated]
        assert point.samples == sum(samples)
        seen = [n for n in samples if n]
        assert point.imbalance_ratio == (max(seen) / min(seen) if seen else None)
        assert [list(e) for e in point.classes] == _reference_worst(samples, wrong, per_point)
        assert point.step == scenario.steps[point.evaluated - 1][0]
        assert point.checks_active == (sum(samples) >= scenario.params["samples"])


@settings(max_examples=60, deadline=None)
@given(scenarios(max_steps=24), st.integers(1, 23))
def test_a_restart_from_the_saved_state_keeps_the_same_history(
    scenario: Scenario, cut: int
) -> None:
    whole = _rule(scenario)
    whole.evaluate_steps(_steps(scenario))
    first = _rule(scenario)
    first.evaluate_steps(_steps(scenario)[:cut])
    saved = json.loads(json.dumps(first.to_state()))
    resumed = ClassImbalanceRule.from_state(RuleParameters(**scenario.params), saved)
    resumed.evaluate_steps(_steps(scenario)[cut:])
    assert resumed.history == whole.history


def _batch(labels: list[int], predicted: list[int]) -> list[WorkerBatch]:
    return [
        WorkerBatch(
            "worker_0",
            "TRAIN",
            {"labels": np.asarray(labels), "predictions": np.asarray(predicted)},
        )
    ]


def test_a_long_run_keeps_between_half_and_all_of_the_capacity_evenly_spaced() -> None:
    rule = ClassImbalanceRule(RuleParameters(samples=10**9))
    steps = [(s, _batch([s % 3, 1], [1, 1])) for s in range(5000)]
    rule.evaluate_steps(steps)
    history = rule.history
    assert history.capacity // 2 <= len(history.points) <= history.capacity
    assert history.every == 32  # 5000 / 32 = 156 points
    gaps = {b.evaluated - a.evaluated for a, b in itertools.pairwise(history.points)}
    assert gaps == {history.every}


def test_the_checks_start_and_each_first_finding_are_pinned_through_coarsening() -> None:
    rule = ClassImbalanceRule(RuleParameters(samples=30, threshold_imbalance=3))
    # 2 labels a step, class 0 only from step 40 on: balanced until then.
    steps = [(s, _batch([0, 1] if s < 40 else [0, 0], [0, 1])) for s in range(3001)]
    rule.evaluate_steps(steps)
    pinned = {(p.step, p.pinned) for p in rule.history.points if p.pinned}
    start = 14  # 15 steps x 2 labels = 30 = samples
    issue = rule.issue_step
    assert issue is not None
    assert issue > start
    assert pinned == {(start, True), (issue, True)}
    by_step = {p.step: p for p in rule.history.points}
    assert by_step[start].checks_active
    assert not by_step[start].holding
    assert "imbalance" in by_step[issue].holding
    assert all(not p.checks_active for p in rule.history.points if p.step < start)


def test_a_point_survives_json() -> None:
    point = HistoryPoint(7, 8, 100, 2.5, ((3, 10, 9), (1, 40, 2)), ("imbalance",), True, True)
    assert HistoryPoint.from_json(json.loads(json.dumps(point.to_json()))) == point
    history = History(capacity=3, every=4, points=[point])
    assert History.from_state(json.loads(json.dumps(history.to_state()))) == history


def test_a_checkpoint_saved_before_the_history_resumes_with_an_empty_one() -> None:
    rule = ClassImbalanceRule(RuleParameters())
    rule.evaluate_step(0, _batch([0, 1], [0, 0]))
    state: dict[str, Any] = rule.to_state()
    del state["history"]
    assert ClassImbalanceRule.from_state(RuleParameters(), state).history == History()


def test_merging_two_evaluations_starts_the_history_again() -> None:
    left, right = ClassImbalanceRule(RuleParameters()), ClassImbalanceRule(RuleParameters())
    left.evaluate_step(0, _batch([0], [0]))
    right.evaluate_step(1, _batch([1], [0]))
    left.merge(right)
    assert left.history.points == []


@pytest.mark.parametrize(
    ("samples", "wrong", "limit", "expected"),
    [
        ([0, 0], [0, 0], 3, ()),
        ([4, 0, 2], [1, 0, 2], 5, ((2, 2, 2), (0, 4, 1))),
        ([3, 3, 3, 3], [1, 1, 1, 1], 2, ((0, 3, 1), (1, 3, 1))),  # ties: the lower index
        ([10, 5], [3, 0], 0, ()),
    ],
)
def test_worst_classes(
    samples: list[int], wrong: list[int], limit: int, expected: tuple[tuple[int, int, int], ...]
) -> None:
    assert worst_classes(np.asarray(samples), np.asarray(wrong), limit) == expected


def test_a_capacity_below_two_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 2"):
        History(capacity=1)


def test_a_history_with_room_for_no_more_than_its_pins_is_refused() -> None:
    """Pins beyond the capacity would make the history depend on how steps were chunked."""
    with pytest.raises(ValueError, match="above the 3 pinned points"):
        ClassImbalanceRule(RuleParameters(), history=History(capacity=3))
