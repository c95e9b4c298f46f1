"""The sidecar for real: a stand-in training job appends steps with smdebug's writer while the
evaluator follows in its own process, serving metrics that are scraped and compared with the
true counts; then kill -9 and restart, and SIGTERM.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from container.status import EXIT_CODES, Status
from tests.integration.processes import (
    Scrape,
    free_port,
    prefix_sums,
    read_truth,
    scrape,
    start_evaluator,
    start_writer,
    stop_process,
    wait_for,
)

pytestmark = pytest.mark.slow


def test_metrics_and_status_track_a_live_trial(
    tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    trial, truth_file, status_file = tmp_path / "trial", tmp_path / "truth.jsonl", tmp_path / "s"
    port = free_port()
    writer = start_writer(trial, truth_file, steps=40, interval=0.12, workers=2)
    processes.append(writer)
    evaluator = start_evaluator(trial, status_file, port, "--samples", "400")
    processes.append(evaluator)
    scrapes: list[Scrape] = []
    statuses: list[str] = []
    deadline = time.monotonic() + 90
    while evaluator.poll() is None and time.monotonic() < deadline:
        if (sample := scrape(port)) is not None:
            scrapes.append(sample)
        if status_file.exists():
            document = json.loads(status_file.read_text())
            if not statuses or statuses[-1] != document["status"]:
                statuses.append(document["status"])
        time.sleep(0.05)
    assert evaluator.wait(30) == 1, "IssuesFound: the trial's classes are 20:1 imbalanced"
    truth = read_truth(truth_file)
    sums = prefix_sums(truth)
    assert len(scrapes) > 10
    seen_totals = [s.samples_total for s in scrapes]
    assert seen_totals == sorted(seen_totals)
    for sample in scrapes:
        assert sample.samples_total in sums, "metrics always show a whole number of steps"
        assert sample.class_samples == {
            str(c): n for c, n in enumerate(sums[sample.samples_total]) if n > 0
        }
    assert len(set(seen_totals)) > 5, "the metrics moved step by step"
    assert statuses[0] == "InProgress"
    assert "IssuesFound" in statuses
    final = json.loads(status_file.read_text())
    assert final["terminal"] is True
    assert final["status"] == "IssuesFound"
    assert final["ended_by"] == "end_of_training"
    assert final["samples"] == sum(sum(e["samples"]) for e in truth)
    assert final["issue_step"] is not None


def test_kill_9_and_restart_resumes_with_exact_totals(
    tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    trial, truth_file, status_file = tmp_path / "trial", tmp_path / "truth.jsonl", tmp_path / "s"
    checkpoint = tmp_path / "checkpoint.json"
    writer = start_writer(trial, truth_file, steps=60, interval=0.05, workers=2)
    processes.append(writer)
    flags = (
        "--checkpoint-file",
        str(checkpoint),
        "--checkpoint-every-steps",
        "3",
        "--checkpoint-every-seconds",
        "0.2",
    )
    generator = random.Random(7)
    for _ in range(3):
        saved_before = checkpoint.stat().st_mtime_ns if checkpoint.exists() else 0
        evaluator = start_evaluator(trial, status_file, free_port(), *flags)
        processes.append(evaluator)
        # Kill at a random moment after this run has saved at least one checkpoint, so every
        # restart has something to resume (a loaded machine may take seconds to start Python).
        wait_for(
            lambda before=saved_before: (
                checkpoint.exists() and checkpoint.stat().st_mtime_ns != before
            ),
            60,
        )
        time.sleep(generator.uniform(0.0, 0.5))
        evaluator.send_signal(signal.SIGKILL)
        evaluator.wait(10)
    final_run = start_evaluator(trial, status_file, free_port(), *flags)
    processes.append(final_run)
    assert final_run.wait(90) in (0, 1)
    assert writer.wait(30) == 0
    truth = read_truth(truth_file)
    document = json.loads(status_file.read_text())
    assert document["resumed_from_step"] is not None, "a checkpoint was used"
    assert document["steps_evaluated"] == 60
    assert document["samples"] == sum(sum(e["samples"]) for e in truth)
    expected = [sum(e["samples"][c] for e in truth) for c in range(5)]
    assert [document["classes"][str(c)]["samples"] for c in range(5)] == expected
    wrong = [sum(e["mispredicted"][c] for e in truth) for c in range(5)]
    assert [document["classes"][str(c)]["mispredicted"] for c in range(5)] == wrong


def test_sigterm_stops_within_two_seconds_with_a_terminal_status(
    tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    trial, truth_file, status_file = tmp_path / "trial", tmp_path / "truth.jsonl", tmp_path / "s"
    writer = start_writer(trial, truth_file, steps=1000, interval=0.2, workers=1, end=False)
    processes.append(writer)
    port = free_port()
    evaluator = start_evaluator(trial, status_file, port, "--samples", "100000")
    processes.append(evaluator)
    wait_for(lambda: (s := scrape(port)) is not None and s.samples_total > 0, 30)
    started = time.monotonic()
    evaluator.send_signal(signal.SIGTERM)
    code = evaluator.wait(10)
    elapsed = time.monotonic() - started
    assert elapsed < 2.0
    assert code == EXIT_CODES[Status.STOPPED], "4: stopped before a verdict"
    document = json.loads(status_file.read_text())
    assert document["status"] == "Stopped"
    assert document["terminal"] is True
    assert document["ended_by"] == "stopped"


def test_the_evaluator_waits_for_a_trial_that_does_not_exist_yet(
    tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    trial, truth_file, status_file = tmp_path / "trial", tmp_path / "truth.jsonl", tmp_path / "s"
    evaluator = start_evaluator(trial, status_file, free_port(), "--samples", "10")
    processes.append(evaluator)
    wait_for(status_file.exists, 30)
    assert json.loads(status_file.read_text())["status"] == "InProgress"
    time.sleep(1.0)
    assert evaluator.poll() is None, "it waits instead of failing"
    writer = start_writer(trial, truth_file, steps=5, interval=0.01, workers=1, imbalance=1.0)
    processes.append(writer)
    assert writer.wait(60) == 0
    assert evaluator.wait(60) in (0, 1)
    assert json.loads(status_file.read_text())["steps_evaluated"] == 5


def test_python_is_not_left_running(tmp_path: Path) -> None:
    """The fixture's cleanup works: nothing of ours survives a test (sanity of the helpers)."""
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    stop_process(process)
    assert process.poll() is not None
    assert not os.path.exists(tmp_path / "never")
