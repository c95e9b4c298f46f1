"""The command's summary (``container.summary``), from status documents of real evaluations:
the worst-predicted and the scarcest classes past 20, the classes above a threshold now with
the counts behind their fractions, and the status file named."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from container.snapshot import take_snapshot
from container.status import RunInfo, build_status
from container.summary import format_summary
from evaluator.core import ClassImbalanceRule, RuleParameters, WorkerBatch


def many_classes_document() -> dict[str, Any]:
    rule = ClassImbalanceRule(RuleParameters(samples=0, threshold_imbalance=1000))
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 30, size=3000)
    predicted = np.where(rng.random(3000) < labels / 30, (labels + 1) % 30, labels)
    rule.evaluate_step(0, [WorkerBatch("w", "TRAIN", {"labels": labels, "predictions": predicted})])
    snapshot = take_snapshot(rule, status="IssuesFound", trial="t", ready=False)
    return build_status(snapshot, RunInfo("t", "native", None, 0.0))


def test_with_more_than_20_classes_the_summary_shows_the_worst_and_the_scarcest() -> None:
    document = many_classes_document()
    summary = format_summary(document, status_file="out/status.json")
    classes = document["classes"]
    worst = sorted(classes, key=lambda c: (-classes[c]["misprediction_fraction"], int(c)))[:10]
    scarcest = sorted(classes, key=lambda c: (classes[c]["samples"], int(c)))[:10]
    lines = summary.splitlines()
    start = next(i for i, line in enumerate(lines) if "the 10 worst-predicted" in line)
    shown = [
        line.split()[1] if line.startswith("    *") else line.split()[0]
        for line in lines[start + 2 : start + 12]
    ]
    assert shown == worst
    middle = next(i for i, line in enumerate(lines) if "the 10 scarcest" in line)
    shown = [line.lstrip(" *").split()[0] for line in lines[middle + 2 : middle + 12]]
    assert shown == scarcest
    assert "30 classes" in summary
    assert "every class is in the status file" in summary
    assert summary.rstrip().endswith("status file: out/status.json (IssuesFound)")


def test_the_summary_marks_the_classes_above_the_threshold_now_with_their_counts() -> None:
    document = many_classes_document()
    summary = format_summary(document, status_file="s.json")
    above = [c for c, e in document["classes"].items() if e["misprediction_fraction"] > 0.7]
    assert above, "the catalogue needs classes above the threshold"
    line = next(
        line for line in summary.splitlines() if "above threshold_misprediction 0.7 now:" in line
    )
    worst = document["classes"][
        max(above, key=lambda c: document["classes"][c]["misprediction_fraction"])
    ]
    assert f"{worst['mispredicted']}/{worst['samples']}" in line
    assert "mostly mistaken for" in line
    marked = {row.split()[1] for row in summary.splitlines() if row.startswith("    * ")}
    assert marked == set(above)


@pytest.mark.parametrize("confidence", [None, 0.95], ids=["plain", "guarded"])
def test_with_confidence_the_summary_says_what_the_guarded_checks_say(
    confidence: float | None,
) -> None:
    rule = ClassImbalanceRule(
        RuleParameters(samples=0, threshold_imbalance=1000, confidence=confidence)
    )
    labels = np.array([0] * 600 + [1])
    predicted = np.array([0] * 600 + [0])  # class 1: 1 of 1 mispredicted
    rule.evaluate_step(0, [WorkerBatch("w", "TRAIN", {"labels": labels, "predictions": predicted})])
    status = "IssuesFound" if rule.issue_step is not None else "NoIssuesFound"
    snapshot = take_snapshot(rule, status=status, trial="t", ready=False)
    summary = format_summary(
        build_status(snapshot, RunInfo("t", "native", None, 0.0)), status_file="s"
    )
    marked = [row for row in summary.splitlines() if row.startswith("    * ")]
    if confidence is None:
        assert "above threshold_misprediction 0.7 now: 1 class (class 1: 1/1 = 1.000" in summary
        assert "misprediction holds" in summary
        assert len(marked) == 1
    else:
        assert "no class above threshold_misprediction 0.7 at confidence 0.95 now" in summary
        assert "misprediction does not hold" in summary
        assert marked == []


def test_the_summary_ends_with_where_the_report_is_when_one_was_written() -> None:
    document = many_classes_document()
    with_report = format_summary(document, status_file="s.json", report_file="s.html")
    assert with_report.splitlines()[-1] == "  report: s.html (HTML; open it in a browser)"
    assert "report:" not in format_summary(document, status_file="s.json")
