"""ClassImbalanceRule end to end: the catalogue, whole runs against row-by-row references, the
``samples`` gate, findings and issue step, merge, and checkpoints."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any
from unittest.mock import patch

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from container.config import parse_rule_parameters
from evaluator.core import progress
from evaluator.core.checks import IMBALANCE, MISPREDICTION, Finding
from evaluator.core.counts import ClassCounts
from evaluator.core.normalise import Inputs, chunk
from evaluator.core.normalise import steps as chunk_or_batches
from evaluator.core.params import RuleParameters
from evaluator.core.rule import ClassImbalanceRule, WorkerBatch
from tests.core.cases import CASES, Case
from tests.core.reference import (
    assert_confusion_matches_sklearn,
    imbalance_holds,
    misprediction_holds,
)
from tests.core.strategies import Scenario, ScoreRun, scenarios, score_runs, simulate

CASE_IDS = list(CASES)
REJECTED = {name: case for name, case in CASES.items() if case.skipped_batches}

SCENARIO_SETTINGS = settings(
    max_examples=35, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


def _rule(**params: Any) -> ClassImbalanceRule:
    return ClassImbalanceRule(parse_rule_parameters(params))


def _batch(
    labels: Any, predictions: Any, *, mode: str = "TRAIN", source: str = "worker-0"
) -> WorkerBatch:
    return WorkerBatch(source, mode, {"labels": labels, "predictions": predictions})


def _run(scenario: Scenario, steps: Any = None) -> ClassImbalanceRule:
    rule = ClassImbalanceRule(parse_rule_parameters(scenario.params))
    for step, batches in scenario.steps if steps is None else steps:
        rule.evaluate_step(step, [b.worker_batch() for b in batches])
    return rule


def _clone(rule: ClassImbalanceRule) -> ClassImbalanceRule:
    return ClassImbalanceRule.from_state(rule.params, json.loads(json.dumps(rule.to_state())))


def _totals(rule: ClassImbalanceRule) -> dict[str, Any]:
    """Everything additive: counts and confusion per mode, ignored rows, skips by reason."""
    samples, mispredicted = rule.combined_counts()
    return {
        "counts_by_mode": {m: c.to_dict() for m, c in sorted(rule.counts_by_mode.items())},
        "combined": (samples.tolist(), mispredicted.tolist()),
        "samples": rule.samples,
        "ignored": rule.ignored,
        "skipped_rows": dict(rule.skipped_rows),
        "skipped_batches": dict(rule.skipped_batches),
    }


def _case_rule(case: Case, step: int = 7) -> ClassImbalanceRule:
    rule = ClassImbalanceRule(parse_rule_parameters(case.params))
    rule.evaluate_step(step, [WorkerBatch("worker-0", "TRAIN", case.tensors)])
    return rule


# -- the catalogue ---------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES.values(), ids=CASE_IDS)
def test_catalogue_case_counts_samples_mispredicted_and_skips(case: Case) -> None:
    rule = ClassImbalanceRule(parse_rule_parameters(case.params))
    result = rule.evaluate_step(7, [WorkerBatch("worker-0", "TRAIN", case.tensors)])

    samples, mispredicted = rule.combined_counts()
    assert samples.tolist() == list(case.samples)
    assert mispredicted.tolist() == list(case.mispredicted)
    assert rule.ignored == case.ignored
    assert dict(rule.skipped_rows) == dict(case.skipped_rows)
    assert dict(rule.skipped_batches) == dict(case.skipped_batches)
    assert result.counted == rule.samples == case.counted
    assert result.skipped_batches == sum(case.skipped_batches.values())


@pytest.mark.parametrize("case", CASES.values(), ids=CASE_IDS)
def test_catalogue_case_confusion_equals_sklearn_on_valid_rows(case: Case) -> None:
    rule = _case_rule(case)
    counts = rule.counts_by_mode.get("TRAIN", ClassCounts())
    labels = [label for label, _ in case.pairs]
    predicted = [guess for _, guess in case.pairs]
    assert_confusion_matches_sklearn(counts, labels, predicted)


@pytest.mark.parametrize("case", CASES.values(), ids=CASE_IDS)
def test_catalogue_case_adds_up_over_workers_modes_and_steps(case: Case) -> None:
    rule = ClassImbalanceRule(parse_rule_parameters(case.params))
    rule.evaluate_step(
        1,
        [
            WorkerBatch("worker-0", "TRAIN", case.tensors),
            WorkerBatch("worker-1", "EVAL", case.tensors),
        ],
    )
    rule.evaluate_step(2, [WorkerBatch("worker-0", "TRAIN", case.tensors)])

    samples, mispredicted = rule.combined_counts()
    assert samples.tolist() == [3 * v for v in case.samples]
    assert mispredicted.tolist() == [3 * v for v in case.mispredicted]
    assert rule.ignored == 3 * case.ignored
    assert dict(rule.skipped_rows) == {k: 3 * v for k, v in case.skipped_rows.items()}
    assert dict(rule.skipped_batches) == {k: 3 * v for k, v in case.skipped_batches.items()}
    if case.pairs:
        assert (
            rule.counts_by_mode["EVAL"].to_dict()
            == _case_rule(case).to_state()["counts_by_mode"]["TRAIN"]
        )


@pytest.mark.parametrize("case", REJECTED.values(), ids=list(REJECTED))
def test_rejected_batch_is_explained_in_problem_examples(case: Case) -> None:
    rule = _case_rule(case, step=7)
    [reason] = case.skipped_batches
    example = rule.problem_examples[reason]
    assert example.startswith("step 7, worker-0: ")
    assert case.message is not None
    assert case.message in example
    assert not rule.counts_by_mode, "a rejected batch must not count any row"
    assert rule.ignored == 0
    assert not rule.skipped_rows


def test_scores_without_argmax_say_to_set_argmax_to_true() -> None:
    rule = _rule()
    result = rule.evaluate_step(0, [_batch(np.array([0, 1]), np.array([[0.2, 0.8], [0.9, 0.1]]))])
    assert result.skipped_batches == 1
    assert rule.skipped_batches == Counter({"argmax_required": 1})
    assert "set argmax to true" in rule.problem_examples["argmax_required"]
    assert "(2, 2)" in rule.problem_examples["argmax_required"]


# -- whole runs against the references --------------------------------------------------------


@SCENARIO_SETTINGS
@given(scenarios(max_steps=24))
def test_run_counts_equal_sklearn_per_mode_and_combined(scenario: Scenario) -> None:
    rule = _run(scenario)
    expected = simulate(scenario)

    assert set(rule.counts_by_mode) == set(expected.rows_by_mode)
    for mode, (labels, predicted) in expected.rows_by_mode.items():
        assert_confusion_matches_sklearn(rule.counts_by_mode[mode], labels, predicted)
    combined = ClassCounts()
    labels, predicted = expected.all_rows()
    combined.add(np.asarray(labels, dtype=np.int64), np.asarray(predicted, dtype=np.int64))
    assert_confusion_matches_sklearn(combined, labels, predicted)

    samples, mispredicted = rule.combined_counts()
    size = samples.size
    assert samples.tolist() == expected.samples[:size].tolist()
    assert mispredicted.tolist() == expected.mispredicted[:size].tolist()
    assert not expected.samples[size:].any()
    assert rule.samples == len(labels)
    assert rule.ignored == expected.ignored
    assert rule.skipped_rows == expected.skipped_rows
    assert rule.skipped_batches == expected.skipped_batches
    assert rule.steps_evaluated == len(scenario.steps)
    assert rule.last_step == scenario.steps[-1][0]


@SCENARIO_SETTINGS
@given(scenarios())
def test_issue_step_is_first_step_where_reference_check_holds(scenario: Scenario) -> None:
    rule = _run(scenario)
    expected = simulate(scenario)
    assert rule.issue_step == expected.issue_step
    assert {f.check: f.step for f in rule.findings} == expected.first_step
    assert [f.step for f in rule.findings] == sorted(f.step for f in rule.findings)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_step_results_report_new_findings_once(scenario: Scenario) -> None:
    rule = ClassImbalanceRule(parse_rule_parameters(scenario.params))
    reported: list[Finding] = []
    for step, batches in scenario.steps:
        result = rule.evaluate_step(step, [b.worker_batch() for b in batches])
        assert result.step == step
        assert all(f.step == step for f in result.new_findings)
        reported.extend(result.new_findings)
    assert reported == rule.findings
    assert len({f.check for f in reported}) == len(reported)


# -- the samples gate and the thresholds -----------------------------------------------------

# Class 0 three times as often as class 1, all predicted right: imbalance 3 holds from the start.
_IMBALANCED = (np.array([0, 0, 0, 1]), np.array([0, 0, 0, 1]))


def test_no_finding_before_samples_labels_even_when_check_holds() -> None:
    rule = _rule(samples="10", threshold_imbalance="2")
    assert imbalance_holds([3, 1], 2.0), "the check must hold from the first step"
    for step in (0, 1):  # 4 and 8 labels
        result = rule.evaluate_step(step, [_batch(*_IMBALANCED)])
        assert result.new_findings == ()
        assert rule.issue_step is None
        assert rule.current_findings() == {}
    result = rule.evaluate_step(2, [_batch(*_IMBALANCED)])  # 12 labels
    assert [f.check for f in result.new_findings] == [IMBALANCE]
    assert rule.issue_step == 2


def test_finding_appears_at_exactly_the_step_the_count_reaches_samples() -> None:
    rule = _rule(samples=10, threshold_imbalance=2)
    labels = np.array([0, 0, 0, 0, 1])
    assert rule.evaluate_step(5, [_batch(labels, labels)]).new_findings == ()
    assert rule.samples == 5
    result = rule.evaluate_step(6, [_batch(labels, labels)])
    assert rule.samples == 10
    assert [f.check for f in result.new_findings] == [IMBALANCE]
    assert result.new_findings[0].step == 6
    assert rule.issue_step == 6


def test_default_samples_gate_is_500_labels_over_workers_and_modes() -> None:
    rule = _rule()
    assert rule.params.samples == 500
    ones = np.ones(200, dtype=np.int64)
    rule.evaluate_step(0, [_batch(ones, ones), _batch(ones, ones, mode="EVAL", source="w1")])
    rule.evaluate_step(1, [_batch(ones[:99], ones[:99])])
    assert rule.samples == 499
    mispredicted = np.zeros(1, dtype=np.int64)  # label 0 predicted as 1: 499:1 and 100 % wrong
    result = rule.evaluate_step(2, [_batch(mispredicted, ones[:1])])
    assert rule.samples == 500
    assert [f.check for f in result.new_findings] == [IMBALANCE, MISPREDICTION]
    assert rule.issue_step == 2


def test_ignored_and_skipped_rows_do_not_count_towards_samples() -> None:
    rule = _rule(samples=4, threshold_imbalance=1.5)
    labels = np.array([0, 0, 1, -100, -7, 2_000_000])
    rule.evaluate_step(0, [_batch(labels, np.zeros(6, dtype=np.int64))])
    assert rule.samples == 3
    assert rule.findings == []
    rule.evaluate_step(1, [_batch(np.array([0]), np.array([0]))])
    assert rule.samples == 4
    assert rule.issue_step == 1


def test_samples_zero_runs_the_checks_from_the_first_step() -> None:
    rule = _rule(samples=0, threshold_misprediction=0.5)
    result = rule.evaluate_step(0, [_batch(np.array([3]), np.array([1]))])
    assert [f.check for f in result.new_findings] == [MISPREDICTION]
    assert result.new_findings[0].classes == (3,)


def test_ratio_equal_to_threshold_is_not_an_issue_one_more_sample_is() -> None:
    rule = _rule(samples=0, threshold_imbalance="10", threshold_misprediction=1)
    rule.evaluate_step(0, [_batch(np.array([0] * 10 + [1]), np.array([0] * 10 + [1]))])
    assert rule.current_findings()[IMBALANCE] is None
    assert rule.issue_step is None
    rule.evaluate_step(1, [_batch(np.array([0]), np.array([0]))])
    finding = rule.current_findings()[IMBALANCE]
    assert finding is not None
    assert (finding.value, finding.classes, finding.step) == (11.0, (0, 1), 1)
    assert rule.issue_step == 1


def test_fraction_equal_to_threshold_is_not_an_issue_one_more_miss_is() -> None:
    rule = _rule(samples=0, threshold_misprediction="0.7")
    labels = np.zeros(10, dtype=np.int64)
    seven_wrong = np.array([1] * 7 + [0] * 3)
    rule.evaluate_step(0, [_batch(labels, seven_wrong)])
    assert rule.current_findings() == {IMBALANCE: None, MISPREDICTION: None}
    # 15 of 20 wrong = 0.75: above.
    rule.evaluate_step(1, [_batch(labels, np.array([1] * 8 + [0] * 2))])
    finding = rule.current_findings()[MISPREDICTION]
    assert finding is not None
    assert (finding.value, finding.classes) == (0.75, (0,))


def test_classes_without_samples_take_no_part_in_the_checks() -> None:
    rule = _rule(samples=0, threshold_imbalance=1, threshold_misprediction=0)
    labels = np.array([0, 5, 5, 0])
    rule.evaluate_step(0, [_batch(labels, labels)])
    samples, _ = rule.combined_counts()
    assert samples.tolist() == [2, 0, 0, 0, 0, 2]
    assert rule.findings == []
    assert rule.current_findings() == {IMBALANCE: None, MISPREDICTION: None}


def test_each_check_is_reported_once_and_issue_step_is_the_first() -> None:
    rule = _rule(samples=0, threshold_imbalance=2, threshold_misprediction=0.5)
    rule.evaluate_step(0, [_batch(*_IMBALANCED)])
    rule.evaluate_step(1, [_batch(*_IMBALANCED)])
    result = rule.evaluate_step(2, [_batch(np.array([1, 1, 1]), np.array([0, 0, 0]))])
    assert [(f.check, f.step) for f in rule.findings] == [(IMBALANCE, 0), (MISPREDICTION, 2)]
    assert [f.check for f in result.new_findings] == [MISPREDICTION]
    assert rule.issue_step == 0


def test_current_follows_the_last_step_while_findings_keep_the_first() -> None:
    rule = _rule(samples=0, threshold_imbalance=2, threshold_misprediction=1)
    rule.evaluate_step(0, [_batch(*_IMBALANCED)])  # 3:1
    rule.evaluate_step(1, [_batch(np.array([1, 1]), np.array([1, 1]))])  # 3:3
    assert rule.current_findings()[IMBALANCE] is None
    assert [(f.check, f.step) for f in rule.findings] == [(IMBALANCE, 0)]
    assert rule.issue_step == 0


# -- inputs: names, errors, examples ---------------------------------------------------------


def test_reader_error_is_a_skipped_batch_beside_counted_ones() -> None:
    rule = _rule()
    result = rule.evaluate_step(
        3,
        [
            WorkerBatch("worker-1", "TRAIN", error_reason="unreadable_record", error="bad crc"),
            _batch(np.array([0, 1]), np.array([0, 0])),
        ],
    )
    assert result.skipped_batches == 1
    assert result.counted == 2
    assert rule.skipped_batches == Counter({"unreadable_record": 1})
    assert rule.problem_examples["unreadable_record"] == "step 3, worker-1: bad crc"
    assert rule.samples == 2


def test_reader_error_without_message_is_explained_by_its_reason() -> None:
    rule = _rule()
    tensors = {"labels": np.array([0]), "predictions": np.array([0])}
    rule.evaluate_step(4, [WorkerBatch("w", "EVAL", tensors, error_reason="missing_file")])
    assert rule.problem_examples == {"missing_file": "step 4, w: missing_file"}
    assert rule.samples == 0, "tensors beside an error are not counted"


def test_problem_examples_keep_the_latest_message_of_at_most_32_reasons() -> None:
    rule = _rule()
    errors = [WorkerBatch("w", "TRAIN", error_reason=f"reason_{i:02}") for i in range(40)]
    rule.evaluate_step(0, errors)
    rule.evaluate_step(1, [WorkerBatch("w", "TRAIN", error_reason="reason_00", error="again")])
    assert sum(rule.skipped_batches.values()) == 41
    assert len(rule.problem_examples) == 32
    assert rule.problem_examples["reason_00"] == "step 1, w: again"
    assert "reason_35" not in rule.problem_examples


# -- merge -----------------------------------------------------------------------------------


@SCENARIO_SETTINGS
@given(scenarios(), st.data())
def test_merge_of_step_halves_equals_the_whole(scenario: Scenario, data: st.DataObject) -> None:
    cut = data.draw(st.integers(0, len(scenario.steps)), label="cut")
    first = _run(scenario, scenario.steps[:cut])
    second = _run(scenario, scenario.steps[cut:])
    whole = _run(scenario)
    first_found = {f.check: f for f in first.findings}
    second_found = {f.check: f for f in second.findings}

    first.merge(second)

    assert _totals(first) == _totals(whole)
    assert first.steps_evaluated == whole.steps_evaluated
    assert first.last_step == whole.last_step
    earliest = {
        check: min(found, key=lambda f: f.step)
        for check in (IMBALANCE, MISPREDICTION)
        if (found := [f for f in (first_found.get(check), second_found.get(check)) if f])
    }
    assert {f.check: f for f in first.findings} == earliest
    assert [f.step for f in first.findings] == sorted(f.step for f in first.findings)
    assert first.issue_step == min((f.step for f in earliest.values()), default=None)
    # A finding of the first half is the whole run's finding: the same counts up to that step.
    whole_found = {f.check: f for f in whole.findings}
    for check, finding in first_found.items():
        assert whole_found[check] == finding


@SCENARIO_SETTINGS
@given(scenarios(), st.data())
def test_merge_of_worker_subsets_equals_the_whole(scenario: Scenario, data: st.DataObject) -> None:
    picks = [
        [data.draw(st.booleans(), label=f"step {step} worker {i}") for i in range(len(batches))]
        for step, batches in scenario.steps
    ]
    part_a = tuple(
        (step, tuple(b for b, pick in zip(batches, chosen, strict=True) if pick))
        for (step, batches), chosen in zip(scenario.steps, picks, strict=True)
    )
    part_b = tuple(
        (step, tuple(b for b, pick in zip(batches, chosen, strict=True) if not pick))
        for (step, batches), chosen in zip(scenario.steps, picks, strict=True)
    )
    merged = _run(scenario, part_a)
    merged.merge(_run(scenario, part_b))
    assert _totals(merged) == _totals(_run(scenario))


@SCENARIO_SETTINGS
@given(scenarios(), st.data())
def test_merge_is_commutative(scenario: Scenario, data: st.DataObject) -> None:
    cut = data.draw(st.integers(0, len(scenario.steps)), label="cut")
    first = _run(scenario, scenario.steps[:cut])
    second = _run(scenario, scenario.steps[cut:])

    forward = _clone(first)
    forward.merge(_clone(second))
    backward = _clone(second)
    backward.merge(_clone(first))

    assert _totals(forward) == _totals(backward)
    assert forward.findings == backward.findings
    assert forward.issue_step == backward.issue_step
    assert forward.steps_evaluated == backward.steps_evaluated
    assert forward.last_step == backward.last_step


def test_merge_keeps_the_earliest_finding_of_each_check() -> None:
    def finding(check: str, step: int) -> Finding:
        return Finding(check, step, 2.0, 1.0, (0,), f"{check} at {step}")

    params = RuleParameters()
    later = ClassImbalanceRule(params, findings=[finding(IMBALANCE, 9)], last_step=9)
    earlier = ClassImbalanceRule(
        params,
        findings=[finding(MISPREDICTION, 3), finding(IMBALANCE, 5)],
        last_step=5,
    )
    later.merge(earlier)
    assert later.findings == [finding(MISPREDICTION, 3), finding(IMBALANCE, 5)]
    assert later.issue_step == 3
    assert later.last_step == 9


def test_merge_into_a_fresh_rule_copies_and_does_not_alias() -> None:
    source = _rule(samples=0)
    source.evaluate_step(4, [_batch(np.array([0, 1, 1]), np.array([1, 1, 0]))])
    target = _rule(samples=0)
    target.merge(source)
    assert target.last_step == 4
    assert _totals(target) == _totals(source)
    before = _totals(source)
    target.evaluate_step(5, [_batch(np.array([0, 1, 1]), np.array([1, 1, 0]))])
    assert _totals(source) == before


# -- checkpoints -----------------------------------------------------------------------------


@SCENARIO_SETTINGS
@given(scenarios())
def test_state_round_trips_through_json_exactly(scenario: Scenario) -> None:
    rule = _run(scenario)
    state = rule.to_state()
    text = json.dumps(state)
    restored = ClassImbalanceRule.from_state(rule.params, json.loads(text))

    assert restored.to_state() == state
    assert json.dumps(restored.to_state()) == text
    assert _totals(restored) == _totals(rule)
    assert restored.findings == rule.findings
    assert restored.current_findings() == rule.current_findings()

    # The restored rule carries on exactly as the original.
    last_step, last_batches = scenario.steps[-1]
    for carried_on in (rule, restored):
        carried_on.evaluate_step(last_step + 1, [b.worker_batch() for b in last_batches])
    assert restored.to_state() == rule.to_state()


def test_state_of_a_fresh_rule_round_trips() -> None:
    rule = _rule()
    state = json.loads(json.dumps(rule.to_state()))
    restored = ClassImbalanceRule.from_state(rule.params, state)
    assert restored.to_state() == rule.to_state()
    assert restored.samples == 0
    assert restored.combined_counts()[0].size == 0


def test_reference_checks_agree_with_the_rule_on_a_known_run() -> None:
    """A hand-checked run: both references and the rule say step 2 is the issue step."""
    rule = _rule(samples=6, threshold_imbalance=4, threshold_misprediction=0.6)
    steps = [
        (np.array([0, 0, 1]), np.array([0, 0, 1])),  # 3 labels: gated
        (np.array([0, 0, 1]), np.array([0, 0, 0])),  # 4:2, class 1 1/2 wrong: nothing
        (np.array([0, 0, 0, 0, 0]), np.array([0, 0, 0, 0, 0])),  # 9:2 = 4.5 > 4
    ]
    for step, (labels, predicted) in enumerate(steps):
        rule.evaluate_step(step, [_batch(labels, predicted)])
    samples, mispredicted = rule.combined_counts()
    assert samples.tolist() == [9, 2]
    assert mispredicted.tolist() == [0, 1]
    assert imbalance_holds(samples, 4)
    assert not misprediction_holds(samples, mispredicted, 0.6)
    assert rule.issue_step == 2
    assert [f.check for f in rule.findings] == [IMBALANCE]


@SCENARIO_SETTINGS
@given(scenarios(max_steps=24), st.booleans())
def test_chunked_evaluation_equals_step_by_step(scenario: Scenario, stop_early: bool) -> None:
    """A replay evaluates thousands of steps per call; it must be the same rule, exactly."""
    params = parse_rule_parameters(scenario.params)
    one_by_one = ClassImbalanceRule(params)
    expected_results = []
    for step, batches in scenario.steps:
        expected_results.append(one_by_one.evaluate_step(step, [b.worker_batch() for b in batches]))
        if stop_early and one_by_one.issue_step is not None:
            break
    steps = [(step, [b.worker_batch() for b in batches]) for step, batches in scenario.steps]
    for cells in (progress.CHUNK_CELLS, 3 * scenario.num_classes):  # one chunk, then many
        chunked = ClassImbalanceRule(params)
        with patch.object(progress, "CHUNK_CELLS", cells):
            results = chunked.evaluate_steps(steps, stop_at_first_issue=stop_early)
        assert results == expected_results
        assert chunked.to_state() == one_by_one.to_state()


def test_a_check_exactly_at_its_threshold_does_not_hold_now() -> None:
    """ratio == threshold_imbalance and fraction == threshold_misprediction: no issue, now."""
    rule = ClassImbalanceRule(
        RuleParameters(threshold_imbalance=4.0, threshold_misprediction=0.5, samples=0)
    )
    labels = np.array([0, 0, 0, 0, 1])  # 4:1, exactly the threshold
    predicted = np.array([0, 0, 1, 1, 1])  # class 0: 2 of 4 wrong, exactly 0.5
    rule.evaluate_step(0, [WorkerBatch("w", "TRAIN", {"labels": labels, "predictions": predicted})])
    assert rule.current_holds == {IMBALANCE: False, MISPREDICTION: False}
    assert rule.findings == []


# -- the whole-chunk path for the common form ------------------------------------------------


def _without_uniform_path(run: ScoreRun) -> tuple[list[Any], dict[str, Any]]:
    rule = ClassImbalanceRule(parse_rule_parameters(run.params))
    with patch.object(chunk_or_batches, "prepare_uniform", return_value=None):
        results = rule.evaluate_steps([(step, list(batches)) for step, batches in run.steps])
    return results, rule.to_state()


@SCENARIO_SETTINGS
@given(score_runs(), st.sampled_from([1, 4, 10_000]), st.sampled_from([1, 100, 4 << 20]))
def test_whole_chunk_path_equals_batch_by_batch(
    run: ScoreRun, chunk_steps: int, block_bytes: int
) -> None:
    """Labels and scores of a whole chunk normalised at once count exactly the rows the
    batch-by-batch path counts, with the same skips, findings and state, whatever the rows."""
    expected_results, expected_state = _without_uniform_path(run)
    rule = ClassImbalanceRule(parse_rule_parameters(run.params))
    cells = chunk_steps * (rule.params.max_classes + 1)
    with (
        patch.object(progress, "CHUNK_CELLS", cells),
        patch.object(chunk, "BLOCK_BYTES", block_bytes),
    ):
        results = rule.evaluate_steps([(step, list(batches)) for step, batches in run.steps])
    assert results == expected_results
    assert rule.to_state() == expected_state


UNIFORM_CHUNKS = {
    "int64_labels_float32_scores": (np.int64, np.float32),
    "uint8_labels_float16_scores": (np.uint8, np.float16),
    "int32_labels_float64_scores": (np.int32, np.float64),
}


@pytest.mark.parametrize("dtypes", UNIFORM_CHUNKS.values(), ids=UNIFORM_CHUNKS.keys())
def test_the_common_form_takes_the_whole_chunk_path(dtypes: tuple[Any, Any]) -> None:
    label_dtype, score_dtype = dtypes
    rng = np.random.default_rng(3)
    steps = [
        (
            step,
            [
                _batch(
                    rng.integers(0, 4, 8).astype(label_dtype),
                    rng.random((8, 4)).astype(score_dtype),
                    source=f"worker-{w}",
                )
                for w in range(2)
            ],
        )
        for step in range(5)
    ]
    rule = _rule(samples=0, argmax=True)
    prepared = chunk.prepare_uniform(steps, Inputs.of(rule.params))
    assert prepared is not None
    assert [len(p.rows) for p in prepared] == [2] * 5
    labels = np.concatenate([row[1] for p in prepared for row in p.rows])
    expected = np.concatenate([b.tensors["labels"] for _, bs in steps for b in bs])
    np.testing.assert_array_equal(labels, expected)


BATCH_BY_BATCH = {
    "a_nan_score": lambda labels, scores: (labels, np.where(np.eye(8, 4) > 0, np.nan, scores)),
    "an_ignored_label": lambda labels, scores: (np.r_[labels[:-1], -100], scores),
    "a_label_out_of_range": lambda labels, scores: (np.r_[labels[:-1], 9], scores),
    "index_predictions": lambda labels, scores: (labels, scores.argmax(axis=1)),
    "column_labels": lambda labels, scores: (labels.reshape(-1, 1), scores),
}


@pytest.mark.parametrize("change", BATCH_BY_BATCH.values(), ids=BATCH_BY_BATCH.keys())
def test_other_forms_and_problem_rows_take_the_batch_path(change: Any) -> None:
    rng = np.random.default_rng(4)
    labels, scores = rng.integers(0, 4, 8), rng.random((8, 4)).astype(np.float32)
    clean = _batch(labels, scores)
    odd = _batch(*change(labels, scores), source="worker-1")
    rule = _rule(samples=0, max_classes=5, argmax=True)
    inputs = Inputs.of(rule.params)
    assert chunk.prepare_uniform([(0, [clean]), (1, [clean])], inputs) is not None
    assert chunk.prepare_uniform([(0, [clean]), (1, [clean, odd])], inputs) is None
