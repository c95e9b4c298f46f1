"""Shards merge into exactly the evaluation of one process: ledgers, replay and merge_states.

The reference is the rule itself evaluating every step and worker in one pass (its counts are
proven against plain numpy and sklearn in test_rule); a merge of shards, split by step ranges,
by arbitrary step sets or by workers, must give the same totals, findings, issue step, checks
now, window and history, whatever the order of the states.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from container.config import parse_rule_parameters
from evaluator.core import (
    ClassImbalanceRule,
    LedgerLimitError,
    ShardMergeError,
    StepLedger,
    WorkerBatch,
    merge_states,
)
from tests.core.strategies import Scenario, scenarios

PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

OPT_IN: tuple[dict[str, Any], ...] = (
    {},
    {"window_steps": 2},
    {"window_steps": 2, "minority_not_improving": True},
    {"confidence": 0.9},
)
"""Parameter sets beside the seed's: the recent window (both comparisons) and Wilson bounds."""


def _steps(scenario: Scenario, keep: Any = None) -> list[tuple[int, list[WorkerBatch]]]:
    """The scenario's steps as the rule takes them; ``keep(step, worker)`` picks parts."""
    picked = []
    for step, batches in scenario.steps:
        parts = [b.worker_batch() for b in batches if keep is None or keep(step, int(b.source[-1]))]
        if parts:
            picked.append((step, parts))
    return picked


def _one_process(scenario: Scenario, params: dict[str, Any]) -> ClassImbalanceRule:
    rule = ClassImbalanceRule(parse_rule_parameters(params))
    rule.evaluate_steps(_steps(scenario))
    return rule


def _shard_state(scenario: Scenario, params: dict[str, Any], keep: Any) -> dict[str, Any]:
    rule = ClassImbalanceRule(parse_rule_parameters(params), ledger=StepLedger())
    for step, parts in _steps(scenario, keep):  # step by step, as a live shard sees them
        rule.evaluate_step(step, parts)
    state: dict[str, Any] = json.loads(json.dumps(rule.to_state()))
    return state


def _outcome(rule: ClassImbalanceRule) -> dict[str, Any]:
    """Everything a status shows of the rule: totals, findings, verdicts, window, history."""
    return {
        "counts": {m: c.to_dict() for m, c in sorted(rule.counts_by_mode.items())},
        "steps_evaluated": rule.steps_evaluated,
        "last_step": rule.last_step,
        "findings": rule.findings,
        "issue_step": rule.issue_step,
        "current_holds": rule.current_holds,
        "current_findings": rule.current_findings(),
        "ignored": rule.ignored,
        "skipped_rows": dict(rule.skipped_rows),
        "skipped_batches": dict(rule.skipped_batches),
        "window": None if rule.window is None else rule.window.to_state(),
        "history": rule.history.to_state(),
    }


@st.composite
def split_runs(draw: st.DrawFn) -> tuple[Scenario, dict[str, Any], str, list[int]]:
    """A scenario, its parameters, how it is split and into which shard each step goes."""
    scenario = draw(scenarios(max_steps=12))
    params = {**scenario.params, **draw(st.sampled_from(OPT_IN))}
    by = draw(st.sampled_from(["ranges", "steps", "workers"]))
    shards = draw(st.integers(1, 4))
    if by == "ranges":  # contiguous ranges: sorted shard numbers
        owner = sorted(draw(st.integers(0, shards - 1)) for _ in scenario.steps)
    else:
        owner = [draw(st.integers(0, shards - 1)) for _ in scenario.steps]
    return scenario, params, by, owner


@PROPERTY
@given(split_runs(), st.randoms(use_true_random=False))
def test_merged_shards_equal_one_process(
    run: tuple[Scenario, dict[str, Any], str, list[int]], random: Any
) -> None:
    scenario, params, by, owner = run
    shard_count = max(owner) + 1
    position = {step: index for index, (step, _) in enumerate(scenario.steps)}
    states = []
    for shard in range(shard_count):
        if by == "workers":
            keep = lambda step, worker, shard=shard: worker % shard_count == shard  # noqa: E731
        else:
            keep = lambda step, worker, shard=shard: owner[position[step]] == shard  # noqa: E731
        states.append(_shard_state(scenario, params, keep))
    random.shuffle(states)
    merged = merge_states(parse_rule_parameters(params), states, shared_steps=by == "workers")
    assert _outcome(merged) == _outcome(_one_process(scenario, params))


@PROPERTY
@given(scenarios(max_steps=10))
def test_a_merge_of_merges_equals_one_merge(scenario: Scenario) -> None:
    """A merged rule keeps the combined ledger, so merges can be merged again (a tree)."""
    params = scenario.params
    parity = [_shard_state(scenario, params, lambda step, _w, p=p: step % 4 == p) for p in range(4)]
    rules = parse_rule_parameters(params)
    left = merge_states(rules, parity[:2]).to_state()
    right = merge_states(rules, parity[2:]).to_state()
    assert _outcome(merge_states(rules, [left, right])) == _outcome(merge_states(rules, parity))


def _two_step_states() -> list[dict[str, Any]]:
    params = parse_rule_parameters({"samples": 0, "threshold_imbalance": 2.0})
    return [_state(params, 0, [0, 0, 0, 1]), _state(params, 1, [1, 1])]


def test_a_later_shard_alone_finds_what_the_merge_does_not() -> None:
    """Why the replay: step 1's shard alone sees only class 1 (no imbalance), step 0's shard
    sees 3:1 (an issue at step 0); merged, step 0 is still the issue step, and the counts after
    step 1 (3:3) no longer hold it."""
    params = parse_rule_parameters({"samples": 0, "threshold_imbalance": 2.0})
    merged = merge_states(params, _two_step_states())
    assert merged.issue_step == 0
    assert merged.current_holds == {"imbalance": False, "misprediction": False}


def test_checkpoint_merge_keeps_each_sides_findings_which_shards_must_not() -> None:
    """Step 1's shard alone sees 3:1 and finds an imbalance there; with step 0's three labels
    of class 0 before it, step 1 is at 4:3, no issue. ``ClassImbalanceRule.merge`` (right for
    a checkpoint, whose steps came first) keeps the shard's finding; the replay does not."""
    params = parse_rule_parameters({"samples": 0, "threshold_imbalance": 2.0})
    states = [_state(params, 0, [0, 0, 0]), _state(params, 1, [1, 1, 1, 0])]
    first, second = (ClassImbalanceRule.from_state(params, state) for state in states)
    first.merge(second)
    assert first.issue_step == 1
    merged = merge_states(params, states)
    assert merged.issue_step is None
    assert merged.findings == []


def _state(params: Any, step: int, labels: list[int]) -> dict[str, Any]:
    rule = ClassImbalanceRule(params, ledger=StepLedger())
    array = np.asarray(labels)
    rule.evaluate_step(step, [WorkerBatch("w0", "TRAIN", {"labels": array, "predictions": array})])
    return rule.to_state()


def test_a_step_in_two_shards_of_steps_is_refused() -> None:
    states = _two_step_states()
    params = parse_rule_parameters({"samples": 0, "threshold_imbalance": 2.0})
    with pytest.raises(ShardMergeError, match=r"more than one state \(the first: step 0\)"):
        merge_states(params, [states[0], states[0]])


def test_a_checkpoint_without_a_ledger_is_refused() -> None:
    params = parse_rule_parameters({"samples": 0})
    state = ClassImbalanceRule(params).to_state()
    with pytest.raises(ShardMergeError, match=r"no ledger.*--emit-state"):
        merge_states(params, [state])


def test_a_ledger_that_disagrees_with_its_totals_is_refused() -> None:
    params = parse_rule_parameters({"samples": 0, "threshold_imbalance": 2.0})
    states = _two_step_states()
    states[1]["counts_by_mode"]["TRAIN"]["samples"][1] += 1
    with pytest.raises(ShardMergeError, match="damaged or edited"):
        merge_states(params, states)


def test_ledger_is_bounded_with_a_message_that_says_how_many_steps_fit() -> None:
    ledger = StepLedger(limit=10)
    per_step = np.ones((3, 4), dtype=np.int64)
    ledger.record([0, 1], per_step[:2], per_step[:2])
    with pytest.raises(LedgerLimitError, match="at most about 2 steps"):
        ledger.record([2, 3], per_step[:2], per_step[:2])


def test_ledger_round_trips_and_rejects_damage() -> None:
    ledger = StepLedger()
    rng = np.random.default_rng(0)
    per_step = rng.integers(0, 3, size=(50, 7))
    ledger.record(list(range(0, 100, 2)), per_step, per_step // 2)
    state = json.loads(json.dumps(ledger.to_state()))
    again = StepLedger.from_state(state)
    assert [a.tolist() for a in again.arrays()] == [a.tolist() for a in ledger.arrays()]
    with pytest.raises(ValueError, match="cannot be decoded"):
        StepLedger.from_state({**state, "classes": "not base64!"})
    with pytest.raises(ValueError, match="disagree"):
        StepLedger.from_state(
            {**state, "classes": state["steps"]}
        )  # 50 values, for some 230 entries
