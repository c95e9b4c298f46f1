"""Sparse, huge class indices: the same evaluation as dense ones, only the class ids differ.

A trial whose classes are 0..C-1 and the same trial with some classes moved far up (class c
becomes c + 999,000: one label of 999,999 beside a few small ones) must be evaluated alike:
every count, confusion pair, finding (its step, value and classes, its message), the step each
check first holds, the history, the recent window, the checkpoint and the status document are
the dense run's with each class id mapped, however the steps are chunked. The dense run itself
is proven against plain numpy and scikit-learn (``test_rule``, ``reference``); the map is
increasing, so ties, which go to the lower class index, go the same way.

The sparse run must also stay sparse: its counts, checkpoint and chunk matrices hold the classes
seen, never a million entries.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any
from unittest.mock import patch

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from container.config import parse_rule_parameters
from container.snapshot import take_snapshot
from container.status import RunInfo, build_status
from evaluator.core import progress
from evaluator.core.checks import Finding
from evaluator.core.counts import ClassCounts
from evaluator.core.ledger import StepLedger
from evaluator.core.rule import ClassImbalanceRule, StepResult
from evaluator.core.shards import merge_states
from tests.core.strategies import Batch, Scenario, scenarios

GAP = 999_000
"""What a moved class is moved up by: class 999 of a 1,000-class scenario becomes 999,999."""

SPARSE_SETTINGS = settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)

OPT_IN = (
    {},
    {"confidence": 0.9},
    {"window_steps": 2},
    {"window_steps": 3, "minority_not_improving": True},
    {"window_steps": 2, "confidence": 0.8},
)

Relabel = Callable[[int], int]


def _moved(num_classes: int, split: int) -> Relabel:
    """Classes from ``split`` up moved up by ``GAP`` (increasing); other values (ignored,
    negative) stay, and ``num_classes`` (out of range) becomes the new ``max_classes``."""

    def relabel(value: int) -> int:
        return value + GAP if value >= split else value

    return relabel


def _sparse_batch(batch: Batch, relabel: Relabel) -> Batch:
    def moved(values: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        dtype = np.int32 if values.dtype == np.int16 else values.dtype  # int16 cannot hold 1e6
        return np.asarray([relabel(int(v)) for v in values.tolist()], dtype=dtype)

    return Batch(batch.source, batch.mode, moved(batch.labels), moved(batch.predictions))


def _sparse(scenario: Scenario, split: int, extra: dict[str, Any]) -> tuple[Scenario, Scenario]:
    """(the dense scenario with ``extra`` parameters, its sparse twin)."""
    relabel = _moved(scenario.num_classes, split)
    dense = Scenario(scenario.num_classes, {**scenario.params, **extra}, scenario.steps)
    steps = tuple(
        (step, tuple(_sparse_batch(b, relabel) for b in batches)) for step, batches in dense.steps
    )
    params = {**dense.params, "max_classes": relabel(scenario.num_classes)}
    return dense, Scenario(relabel(scenario.num_classes), params, steps)


@st.composite
def twins(draw: st.DrawFn) -> tuple[Scenario, Scenario, Relabel]:
    scenario = draw(scenarios(max_steps=16))
    split = draw(st.integers(0, scenario.num_classes - 1))
    extra = draw(st.sampled_from(OPT_IN))
    dense, sparse = _sparse(scenario, split, extra)
    return dense, sparse, _moved(scenario.num_classes, split)


def _steps(scenario: Scenario) -> list[tuple[int, list[Any]]]:
    return [(step, [b.worker_batch() for b in batches]) for step, batches in scenario.steps]


def _evaluate(scenario: Scenario, *, ledger: bool = False) -> tuple[ClassImbalanceRule, Any]:
    rule = ClassImbalanceRule(parse_rule_parameters(scenario.params))
    if ledger:
        rule.ledger = StepLedger()
    results = [rule.evaluate_step(step, batches) for step, batches in _steps(scenario)]
    return rule, results


_CLASS_IN_TEXT = re.compile(r"class (\d+)")


def _text(message: str, relabel: Relabel) -> str:
    return _CLASS_IN_TEXT.sub(lambda m: f"class {relabel(int(m[1]))}", message)


def _finding(finding: Finding, relabel: Relabel) -> Finding:
    return Finding(
        finding.check,
        finding.step,
        finding.value,
        finding.threshold,
        tuple(relabel(c) for c in finding.classes),
        _text(finding.message, relabel),
    )


def _result(result: StepResult, relabel: Relabel) -> StepResult:
    found = tuple(_finding(f, relabel) for f in result.new_findings)
    return StepResult(
        result.step, result.counted, found, result.skipped_batches, result.skipped_reasons
    )


def _seen(counts: ClassCounts) -> dict[int, tuple[int, int]]:
    classes, samples, mispredicted = counts.columns()
    return {
        int(c): (int(n), int(w))
        for c, n, w in zip(classes.tolist(), samples.tolist(), mispredicted.tolist(), strict=True)
        if n
    }


def _pairs(counts: ClassCounts) -> list[tuple[int, int, int]]:
    labels, predicted, times = counts.confusion.triples()
    return list(zip(labels.tolist(), predicted.tolist(), times.tolist(), strict=True))


def assert_relabelled(dense: ClassImbalanceRule, sparse: ClassImbalanceRule, relabel: Relabel):
    """Every figure of ``sparse`` is ``dense``'s with its class ids relabelled."""
    assert sorted(sparse.counts_by_mode) == sorted(dense.counts_by_mode)
    for mode, counts in dense.counts_by_mode.items():
        other = sparse.counts_by_mode[mode]
        assert _seen(other) == {relabel(c): v for c, v in _seen(counts).items()}, mode
        assert _pairs(other) == [(relabel(a), relabel(b), n) for a, b, n in _pairs(counts)]
        assert other.total == counts.total
    assert sparse.findings == [_finding(f, relabel) for f in dense.findings]
    assert sparse.issue_step == dense.issue_step
    assert sparse.current_holds == dense.current_holds
    assert sparse.current_findings() == {
        check: None if f is None else _finding(f, relabel)
        for check, f in dense.current_findings().items()
    }
    assert [p.to_json() for p in sparse.history.points] == [
        {**p.to_json(), "classes": [[relabel(c), n, w] for c, n, w in p.classes]}
        for p in dense.history.points
    ]
    assert sparse.history.every == dense.history.every
    classes, _, _ = dense.combined_columns()
    ids = np.asarray([relabel(c) for c in classes.tolist()], dtype=np.int64)
    recent, other_recent = dense.recent(classes), sparse.recent(ids)
    assert (recent is None) == (other_recent is None)
    if recent is not None and other_recent is not None:
        for name in ("samples", "mispredicted", "previous_samples", "previous_mispredicted"):
            assert getattr(other_recent, name).tolist() == getattr(recent, name).tolist(), name
        assert int(other_recent.steps) == int(recent.steps)
    assert sparse.ignored == dense.ignored
    assert sparse.skipped_rows == dense.skipped_rows
    assert sparse.skipped_batches == dense.skipped_batches


def assert_stays_sparse(rule: ClassImbalanceRule) -> None:
    """No array of the rule or its state is as wide as the largest class index."""
    distinct = sum(int(c.columns()[0].size) for c in rule.counts_by_mode.values())
    for counts in rule.counts_by_mode.values():
        if counts.num_classes > GAP:
            assert counts.sparse
            assert counts.samples.size <= distinct
    state = json.dumps(rule.to_state())
    assert len(state) < 50_000 + 200 * distinct, "the checkpoint holds the classes seen only"


@SPARSE_SETTINGS
@given(twins())
def test_sparse_class_ids_evaluate_as_the_dense_ones(
    twin: tuple[Scenario, Scenario, Relabel],
) -> None:
    dense_scenario, sparse_scenario, relabel = twin
    dense, dense_results = _evaluate(dense_scenario)
    sparse, sparse_results = _evaluate(sparse_scenario)
    assert sparse_results == [_result(r, relabel) for r in dense_results]
    assert_relabelled(dense, sparse, relabel)
    assert_stays_sparse(sparse)


@SPARSE_SETTINGS
@given(twins(), st.sampled_from([1, 7, 64]), st.booleans())
def test_sparse_classes_in_any_chunks_equal_step_by_step(
    twin: tuple[Scenario, Scenario, Relabel], cells: int, stop_early: bool
) -> None:
    """The chunk's compact columns, cut to any number of steps, change nothing."""
    _, sparse_scenario, _ = twin
    one_by_one, expected = _evaluate(sparse_scenario)
    if stop_early:
        one_by_one = ClassImbalanceRule(parse_rule_parameters(sparse_scenario.params))
        expected = []
        for step, batches in _steps(sparse_scenario):
            expected.append(one_by_one.evaluate_step(step, batches))
            if one_by_one.issue_step is not None:
                break
    chunked = ClassImbalanceRule(parse_rule_parameters(sparse_scenario.params))
    with patch.object(progress, "CHUNK_CELLS", cells):
        results = chunked.evaluate_steps(_steps(sparse_scenario), stop_at_first_issue=stop_early)
    assert results == expected
    assert chunked.to_state() == one_by_one.to_state()


@SPARSE_SETTINGS
@given(twins())
def test_sparse_state_round_trips_and_resumes_exactly(
    twin: tuple[Scenario, Scenario, Relabel],
) -> None:
    _, sparse_scenario, _ = twin
    whole, _ = _evaluate(sparse_scenario)
    params = parse_rule_parameters(sparse_scenario.params)
    state = json.loads(json.dumps(whole.to_state()))
    restored = ClassImbalanceRule.from_state(params, state)
    assert restored.to_state() == whole.to_state()
    # a checkpoint halfway, then the rest of the steps on the restored rule
    steps = _steps(sparse_scenario)
    half = len(steps) // 2
    first = ClassImbalanceRule(params)
    first.evaluate_steps(steps[:half])
    resumed = ClassImbalanceRule.from_state(params, json.loads(json.dumps(first.to_state())))
    resumed.evaluate_steps(steps[half:])
    assert resumed.to_state() == whole.to_state()


@SPARSE_SETTINGS
@given(twins(), st.integers(2, 3))
def test_sparse_shards_merge_into_the_single_evaluation(
    twin: tuple[Scenario, Scenario, Relabel], shard_count: int
) -> None:
    """Shards of the steps, each with its ledger of sparse class ids, replay exactly."""
    _, sparse_scenario, _ = twin
    whole, _ = _evaluate(sparse_scenario)
    params = parse_rule_parameters(sparse_scenario.params)
    states = []
    for shard in range(shard_count):
        rule = ClassImbalanceRule(params)
        rule.ledger = StepLedger()
        for index, (step, batches) in enumerate(_steps(sparse_scenario)):
            rule.evaluate_step(step, batches if index % shard_count == shard else [])
        states.append(json.loads(json.dumps(rule.to_state())))
    merged = merge_states(params, states, shared_steps=True)
    assert merged.findings == whole.findings
    assert merged.issue_step == whole.issue_step
    assert merged.combined_columns()[1].tolist() == whole.combined_columns()[1].tolist()
    assert [p.to_json() for p in merged.history.points] == [
        p.to_json() for p in whole.history.points
    ]


def _relabel_document(document: dict[str, Any], relabel: Relabel) -> dict[str, Any]:
    """The status document of the dense run as the sparse run's must be."""

    def mistaken(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{**entry, "class": relabel(entry["class"])} for entry in entries]

    def table(classes: dict[str, Any]) -> dict[str, Any]:
        return {
            str(relabel(int(c))): {**entry, "mistaken_for": mistaken(entry["mistaken_for"])}
            for c, entry in classes.items()
        }

    def finding(found: dict[str, Any] | None) -> dict[str, Any] | None:
        if found is None:
            return None
        out = {
            **found,
            "classes": [relabel(c) for c in found["classes"]],
            "message": _text(found["message"], relabel),
        }
        if "mistaken_for" in found:
            out["mistaken_for"] = {
                str(relabel(int(c))): mistaken(e) for c, e in found["mistaken_for"].items()
            }
        return out

    out = dict(document)
    out["classes"] = table(document["classes"])
    out["findings"] = [finding(f) for f in document["findings"]]
    out["current"] = {check: finding(f) for check, f in document["current"].items()}
    out["modes"] = {
        mode: {
            **figures,
            "classes": table(figures["classes"]),
            "current": {check: finding(f) for check, f in figures["current"].items()},
        }
        for mode, figures in document["modes"].items()
    }
    matrix = document["confusion_matrix"]
    out["confusion_matrix"] = {**matrix, "classes": [relabel(c) for c in matrix["classes"]]}
    out["history"] = [
        {**point, "classes": [[relabel(c), n, w] for c, n, w in point["classes"]]}
        for point in document["history"]
    ]
    return out


@SPARSE_SETTINGS
@given(twins())
def test_the_status_of_sparse_classes_is_the_dense_one_relabelled(
    twin: tuple[Scenario, Scenario, Relabel],
) -> None:
    """What the status promises per class (a table keyed by class index, classes with a
    sample only) holds for sparse indices: the snapshot and the status never spread them."""
    dense_scenario, sparse_scenario, relabel = twin
    run = RunInfo(trial="t", reader="native", modes=None, started_at=0.0)
    documents = []
    for scenario in (dense_scenario, sparse_scenario):
        rule, _ = _evaluate(scenario)
        snapshot = take_snapshot(rule, status="InProgress", trial="t", ready=True)
        assert snapshot.combined.samples.size <= dense_scenario.num_classes
        document = build_status(snapshot, run, now=0.0, terminal=False)
        document.pop("parameters")
        documents.append(document)
    assert documents[1] == _relabel_document(documents[0], relabel)
