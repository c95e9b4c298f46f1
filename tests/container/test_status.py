"""The status document, built from a snapshot: what the metrics say, and the examples behind
every skipped reason."""

from __future__ import annotations

import json

import numpy as np

from container.snapshot import take_snapshot
from container.status import RunInfo, Status, build_status, readable_json
from evaluator.core import ClassImbalanceRule, RuleParameters, WorkerBatch
from evaluator.trial import ReaderProblems


def test_examples_of_a_reason_both_files_and_batches_have_keep_both() -> None:
    rule = ClassImbalanceRule(RuleParameters(samples=0))
    labels = np.array([0, 1], dtype=np.int64)
    rule.evaluate_step(
        0,
        [
            WorkerBatch("worker_0", "TRAIN", {"labels": labels, "predictions": labels}),
            WorkerBatch("worker_1", "TRAIN", error_reason="missing_event_file", error="read: gone"),
        ],
    )
    reader = ReaderProblems(
        skipped_files={"missing_event_file": 1, "late_part": 1},
        examples={"missing_event_file": "listed: gone", "late_part": "too late"},
    )
    snapshot = take_snapshot(
        rule, status=str(Status.IN_PROGRESS), trial="t", ready=True, reader=reader
    )
    document = build_status(snapshot, RunInfo("t", "native", None, 0.0), terminal=False)
    assert document["skipped"]["batches"] == {"missing_event_file": 1}
    assert document["skipped"]["files"] == {"missing_event_file": 1, "late_part": 1}
    assert document["skipped"]["examples"] == {
        "missing_event_file": "step 0, worker_1: read: gone",
        "files/missing_event_file": "listed: gone",
        "late_part": "too late",
    }


def test_the_document_says_what_the_snapshot_says() -> None:
    rule = ClassImbalanceRule(RuleParameters(samples=0, threshold_imbalance=2.0))
    labels = np.array([0, 0, 0, 1], dtype=np.int64)
    rule.evaluate_step(3, [WorkerBatch("w", "EVAL", {"labels": labels, "predictions": labels})])
    snapshot = take_snapshot(rule, status=str(Status.ISSUES_FOUND), trial="t", ready=True)
    document = build_status(snapshot, RunInfo("t", "native", None, 0.0), terminal=False)
    assert document["imbalance_ratio"] == snapshot.imbalance_ratio == 3.0
    assert document["classes"] == {
        "0": {"samples": 3, "mispredicted": 0, "misprediction_fraction": 0.0, "mistaken_for": []},
        "1": {"samples": 1, "mispredicted": 0, "misprediction_fraction": 0.0, "mistaken_for": []},
    }
    assert document["issue_step"] == snapshot.issue_step == 3
    assert document["current"]["imbalance"]["step"] == 3
    assert document["current"]["misprediction"] is None
    assert document["message"].startswith("RuleEvaluationConditionMet")


def test_the_status_is_written_as_readable_json_that_parses_back_exactly() -> None:
    document = {
        "rule": "ClassImbalance",
        "empty": {},
        "classes": {
            str(c): {"samples": c, "mistaken_for": [{"class": 1, "count": 2}]} for c in range(30)
        },
        "findings": [{"check": "imbalance", "classes": list(range(200)), "message": "x"}],
        "nested": {"a": {"b": {"c": list(range(20))}}},
    }
    text = readable_json(document)
    assert json.loads(text) == document
    lines = text.splitlines()
    assert '    "7": {"samples": 7, "mistaken_for": [{"class": 1, "count": 2}]},' in lines
    assert lines[0] == "{"
    assert lines[-1] == "}"
    assert readable_json({"a": {"samples": 3, "classes": [1, 2]}}) == (
        '{\n  "a": {"samples": 3, "classes": [1, 2]}\n}'
    )
