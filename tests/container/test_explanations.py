"""The explanations end to end: the status, the metrics and the summary say what each class is
mistaken for, each mode's verdict, the recent window and the class names, checked against the
truth counted with plain numpy as the trial was written (smdebug's own writer)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from prometheus_client.registry import CollectorRegistry

from container.cli import main
from container.metrics import build_registry
from container.snapshot import SnapshotBox, take_snapshot
from evaluator.core import ClassImbalanceRule, RuleParameters, WorkerBatch
from tests.container.test_cli import evaluate as evaluate_with_the_cli
from tests.container.trials import TrialTruth, scores_batch, write_trial

REPO = Path(__file__).resolve().parents[2]
NAMES = ("cat", "dog", "bird", "fish")


def evaluate(trial: Path, tmp_path: Path, *flags: str) -> tuple[int, dict[str, Any], str]:
    code, document = evaluate_with_the_cli(trial, tmp_path, "--argmax", "true", *flags)
    return code, document, str(tmp_path / "status.json")


def json_log_run(tmp_path: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    """The command as a process with ``--log-format json``: what stdout and stderr carry."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "container",
            *flags,
            "--status-file",
            str(tmp_path / "status.json"),
            "--metrics-enabled",
            "false",
            "--log-format",
            "json",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
        check=False,
    )


def expected_top(truth: TrialTruth, label: int, k: int = 3) -> list[dict[str, Any]]:
    row = {p: n for (c, p), n in truth.confusion.items() if c == label}
    ranked = sorted(row, key=lambda p: (-row[p], p))[:k]
    return [
        {"class": p, "count": row[p], "fraction": round(row[p] / truth.samples[label], 6)}
        for p in ranked
    ]


@pytest.fixture
def mixed_trial(tmp_path: Path) -> TrialTruth:
    """4 classes, a weak model, two workers, TRAIN and EVAL steps."""
    return write_trial(
        tmp_path / "trial",
        steps=12,
        workers=2,
        make_batch=scores_batch([8, 4, 2, 1], batch=48, skill=0.6),
        modes=lambda s: "EVAL" if s % 4 == 3 else "TRAIN",
    )


def test_every_class_says_what_it_is_mistaken_for_overall_and_per_mode(
    mixed_trial: TrialTruth, tmp_path: Path
) -> None:
    code, doc, _ = evaluate(mixed_trial.path, tmp_path, "--samples", "100")
    assert code in (0, 1)
    for c, entry in doc["classes"].items():
        assert entry["mistaken_for"] == expected_top(mixed_trial, int(c))
    total = sum(mixed_trial.confusion.values())
    assert total == sum(e["mispredicted"] for e in doc["classes"].values())
    for mode, figures in doc["modes"].items():
        counted = mixed_trial.samples_by_mode[mode]
        assert {int(c): e["samples"] for c, e in figures["classes"].items()} == counted
        assert figures["samples"] == sum(counted.values())
        ratio = max(counted.values()) / min(counted.values())
        assert figures["imbalance_ratio"] == pytest.approx(ratio)
        assert figures["checks_active"] is (figures["samples"] >= 100)
        assert figures["holds"]["imbalance"] is (ratio > 10)
    for check, finding in doc["current"].items():
        if finding is not None:
            for c, top in finding["mistaken_for"].items():
                assert top == doc["classes"][c]["mistaken_for"], check


def test_class_names_appear_in_the_status_and_the_summary(
    mixed_trial: TrialTruth, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    names = tmp_path / "names.txt"
    names.write_text("\n".join(NAMES) + "\n")
    code, doc, status_file = evaluate(
        mixed_trial.path, tmp_path, "--samples", "100", "--class-names-file", str(names)
    )
    assert code in (0, 1)
    assert {c: e["name"] for c, e in doc["classes"].items()} == {
        str(i): n for i, n in enumerate(NAMES)
    }
    for entry in doc["classes"].values():
        for confusion in entry["mistaken_for"]:
            assert confusion["name"] == NAMES[confusion["class"]]
    out = capsys.readouterr().out
    assert "class 0 (cat)" in out
    assert f"status file: {status_file} ({doc['status']})" in out


def test_names_that_do_not_cover_the_classes_are_an_error_with_both_numbers(
    mixed_trial: TrialTruth, tmp_path: Path
) -> None:
    code, doc, _ = evaluate(mixed_trial.path, tmp_path, "--class-names", "cat,dog")
    assert code == 2
    assert doc["status"] == "Error"
    assert "class_names has 2 names (classes 0 to 1), but the trial has 4 classes" in doc["error"]


def test_class_names_and_a_names_file_together_are_refused(tmp_path: Path) -> None:
    names = tmp_path / "names.txt"
    names.write_text("a\nb\n")
    code = main(
        [
            "--trial",
            str(tmp_path),
            "--status-file",
            str(tmp_path / "s.json"),
            "--class-names",
            "a,b",
            "--class-names-file",
            str(names),
        ]
    )
    assert code == 2
    error = json.loads((tmp_path / "s.json").read_text())["error"]
    assert "class_names (from flag --class-names) and class_names_file (from flag" in error


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("cat\n\ndog\n", "line 2 is empty (class 1 needs a name)"),
        ("", "no name given"),
        (b"\xff\xfe".decode("latin-1"), None),
    ],
    ids=["blank line", "empty file", "latin-1 text"],
)
def test_a_bad_names_file_is_an_error_that_names_the_line(
    mixed_trial: TrialTruth, tmp_path: Path, content: str, message: str | None
) -> None:
    names = tmp_path / "names.txt"
    if message is None:
        names.write_bytes(b"\xff\xfe")
        message = "to be UTF-8 text, but byte 0 is not"
    else:
        names.write_text(content)
    code, doc, _ = evaluate(mixed_trial.path, tmp_path, "--class-names-file", str(names))
    assert code == 2
    assert message in doc["error"]


def test_the_recent_window_is_in_the_status(tmp_path: Path) -> None:
    truth = write_trial(tmp_path / "trial", steps=10, make_batch=scores_batch([1, 1, 1], batch=20))
    code, doc, _ = evaluate(truth.path, tmp_path, "--samples", "0", "--window-steps", "4")
    assert code in (0, 1)
    assert doc["recent_window"] == {
        "window_steps": 4,
        "steps": 4,
        "previous_steps": 0,
        "samples": 4 * 20,
    }
    assert sum(e["recent"]["samples"] for e in doc["classes"].values()) == 80
    assert "recent_misprediction" in doc["current"]


# -- metrics ------------------------------------------------------------------------------------


def rule_with_confusions() -> ClassImbalanceRule:
    """Class 2 is mostly predicted as 1 in TRAIN and as 0 in EVAL."""
    rule = ClassImbalanceRule(RuleParameters(samples=0, threshold_imbalance=100))
    train = {
        "labels": np.array([0] * 10 + [1] * 10 + [2] * 10),
        "predictions": np.array([0] * 10 + [1] * 10 + [1] * 7 + [0] * 2 + [2]),
    }
    evaluation = {
        "labels": np.array([0] * 5 + [2] * 5),
        "predictions": np.array([0] * 5 + [0] * 4 + [2]),
    }
    rule.evaluate_step(0, [WorkerBatch("w", "TRAIN", train), WorkerBatch("w", "EVAL", evaluation)])
    return rule


def samples_of(registry: CollectorRegistry, name: str) -> list[tuple[dict[str, str], float]]:
    return [
        (dict(s.labels), s.value)
        for family in registry.collect()
        for s in family.samples
        if s.name == name
    ]


def test_the_failing_classes_top_confusion_per_mode_is_a_series() -> None:
    snapshot = take_snapshot(rule_with_confusions(), status="InProgress", trial="t", ready=True)
    registry = build_registry(SnapshotBox(snapshot), 20)
    assert samples_of(registry, "classimbalance_class_confusion_ratio") == [
        ({"class": "2", "mistaken_for": "0", "mode": "EVAL"}, 4 / 5),
        ({"class": "2", "mistaken_for": "1", "mode": "TRAIN"}, 7 / 10),
    ]
    assert (
        samples_of(
            build_registry(SnapshotBox(snapshot), 20, 0), "classimbalance_class_confusion_ratio"
        )
        == []
    )
    modes = samples_of(registry, "classimbalance_mode_issue_current")
    assert modes == [
        ({"check": "imbalance", "mode": "EVAL"}, 0.0),
        ({"check": "misprediction", "mode": "EVAL"}, 1.0),
        ({"check": "imbalance", "mode": "TRAIN"}, 0.0),
        ({"check": "misprediction", "mode": "TRAIN"}, 1.0),
    ]
    assert samples_of(registry, "classimbalance_mode_imbalance_ratio") == [
        ({"mode": "EVAL"}, 1.0),
        ({"mode": "TRAIN"}, 1.0),
    ]


def test_class_names_label_every_class_series() -> None:
    snapshot = take_snapshot(
        rule_with_confusions(), status="InProgress", trial="t", ready=True, class_names=NAMES
    )
    registry = build_registry(SnapshotBox(snapshot), 1)
    classes = samples_of(registry, "classimbalance_class_samples")
    assert {(labels["class"], labels["class_name"]) for labels, _ in classes} == {
        ("1", "dog"),  # the scarcest
        ("2", "bird"),  # the worst-predicted
        ("other", "other"),
    }
    [(labels, _), *_] = samples_of(registry, "classimbalance_class_confusion_ratio")
    assert labels["class_name"] == "bird"
    assert labels["mistaken_for_name"] in {"cat", "dog"}


def test_the_recent_misprediction_series_follow_the_window() -> None:
    rule = ClassImbalanceRule(RuleParameters(samples=0, window_steps=1))
    labels = np.array([0, 0, 1, 1])
    rule.evaluate_step(0, [WorkerBatch("w", "TRAIN", {"labels": labels, "predictions": labels})])
    rule.evaluate_step(
        1, [WorkerBatch("w", "TRAIN", {"labels": labels, "predictions": np.array([0, 1, 0, 0])})]
    )
    registry = build_registry(
        SnapshotBox(take_snapshot(rule, status="InProgress", trial="t", ready=True)), 20
    )
    assert samples_of(registry, "classimbalance_class_recent_misprediction_ratio") == [
        ({"class": "0"}, 0.5),
        ({"class": "1"}, 1.0),
    ]
    assert samples_of(registry, "classimbalance_recent_window_steps") == [({}, 1.0)]


# -- the JSON log -------------------------------------------------------------------------------


def test_with_json_logs_the_ended_event_carries_the_verdict_and_stdout_is_empty(
    mixed_trial: TrialTruth, tmp_path: Path
) -> None:
    result = json_log_run(
        tmp_path, "--trial", str(mixed_trial.path), "--argmax", "true", "--samples", "100"
    )
    assert result.stdout == ""
    events = [json.loads(line) for line in result.stderr.splitlines()]
    [ended] = [e for e in events if e.get("event") == "ended"]
    document = json.loads((tmp_path / "status.json").read_text())
    assert ended["status"] == document["status"]
    assert ended["findings"] == document["findings"]
    assert ended["issue_step"] == document["issue_step"]
    assert ended["figures"]["samples"] == document["samples"] == sum(mixed_trial.samples.values())
    assert ended["figures"]["threshold_imbalance"] == 10.0
    assert ended["reason"] == "end_of_training"


def test_with_json_logs_a_settings_error_is_a_json_line_too(tmp_path: Path) -> None:
    result = json_log_run(tmp_path, "--trial", str(tmp_path), "--samples", "many")
    assert result.returncode == 2
    events = [json.loads(line) for line in result.stderr.splitlines()]
    assert [e["event"] for e in events] == ["error"]
    assert "samples" in events[0]["message"]


def test_a_resumed_run_has_the_same_window_as_one_that_never_stopped(tmp_path: Path) -> None:
    truth = write_trial(
        tmp_path / "trial", steps=14, make_batch=scores_batch([3, 2, 1], batch=24, skill=0.8)
    )
    window = ("--samples", "0", "--window-steps", "4", "--minority-not-improving", "true")
    whole_dir, parts_dir = tmp_path / "whole", tmp_path / "parts"
    whole_dir.mkdir()
    parts_dir.mkdir()
    _, whole, _ = evaluate(truth.path, whole_dir, *window)
    checkpoint = str(parts_dir / "checkpoint.json")
    _, first, _ = evaluate(
        truth.path, parts_dir, *window, "--checkpoint-file", checkpoint, "--end-step", "6"
    )
    assert first["steps_evaluated"] == 6
    _, resumed, _ = evaluate(truth.path, parts_dir, *window, "--checkpoint-file", checkpoint)
    assert resumed["resumed_from_step"] == 5
    for key in ("recent_window", "classes", "current", "findings", "issue_step"):
        assert resumed[key] == whole[key], key
