"""The log while an evaluation runs: skip warnings exact and rate-limited, the progress line,
the terminal's redrawn line, and the waiting-for-the-trial lines."""

from __future__ import annotations

import io
import logging
from collections import Counter

import numpy as np
import pytest

from container.progress import ProgressLog, SkipLog, WaitingLog
from evaluator.core import ClassImbalanceRule, RuleParameters, WorkerBatch


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records]


def test_skips_are_said_once_per_new_reason_then_at_most_every_interval_with_exact_counts(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    skips = SkipLog(Counter({"missing_labels": 2}), interval=30, clock=clock)
    with caplog.at_level(logging.WARNING):
        for step in range(100):  # 4 batches a step, every one skipped: a chunk's worth
            clock.now = step * 1.0
            skips.step(step, ["argmax_required"] * 4)
        skips.step(100, ["batch_size_mismatch"])
    said = messages(caplog)
    assert said[0] == (
        "step 0: 4 batch(es) skipped; skipped so far by reason: "
        "{'missing_labels': 2, 'argmax_required': 4}"
    )
    assert said[1] == (
        "step 30: 4 batch(es) skipped (120 since the last message); skipped so far by reason: "
        "{'missing_labels': 2, 'argmax_required': 124}"
    )
    assert len(said) == 5  # steps 0, 30, 60, 90 and the new reason at once
    assert said[-1].startswith("step 100: 1 batch(es) skipped (37 since the last message)")
    assert "'batch_size_mismatch': 1" in said[-1]


def _rule_with(labels: list[int]) -> ClassImbalanceRule:
    rule = ClassImbalanceRule(RuleParameters(samples=4))
    batch = {"labels": np.asarray(labels), "predictions": np.asarray(labels)}
    rule.evaluate_step(7, [WorkerBatch("w", "TRAIN", batch)])
    return rule


def test_the_progress_line_comes_at_its_interval_while_following(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    progress = ProgressLog(60, stream=io.StringIO(), clock=clock)
    rule = _rule_with([0, 0, 0, 1])
    with caplog.at_level(logging.INFO):
        for second in range(0, 185, 5):
            clock.now = second
            progress.waiting(rule)
    assert (
        messages(caplog)
        == [
            "following: step 7, 1 steps, 4 labels, imbalance ratio 3 (threshold_imbalance 10); "
            "no issue so far"
        ]
        * 3
    )


def test_a_terminal_gets_a_redrawn_line_and_a_pipe_nothing() -> None:
    clock = Clock()
    rule = _rule_with([0, 1])
    terminal, pipe = Terminal(), io.StringIO()
    for stream in (terminal, pipe):
        progress = ProgressLog(0, stream=stream, clock=clock)
        for tick in range(10):
            clock.now = tick * 0.1
            progress.evaluated(rule)
        progress.clear()
    drawn = terminal.getvalue()
    assert drawn.count("\r\x1b[Kstep 7, 1 steps, 2 labels") == 5  # at most 5 redraws a second
    assert drawn.endswith("\r\x1b[K")  # cleared before anything else is written
    assert pipe.getvalue() == ""
    assert ProgressLog(0, stream=Terminal(), redraw=False, clock=clock)._terminal is False


def test_waiting_for_the_trial_is_said_at_once_then_every_minute(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    waiting = WaitingLog("/debug-output", 1800, clock=clock)
    with caplog.at_level(logging.INFO):
        for second in range(0, 130, 10):
            clock.now = second
            waiting.missing()
        waiting.found()
        waiting.found()
    said = messages(caplog)
    assert said[0].startswith("waiting for the trial at /debug-output: it does not exist yet")
    assert "gives up after idle_timeout=1800 s without it" in said[0]
    assert [m.split("(waited ")[1].split(" s")[0] for m in said[:3]] == ["0", "60", "120"]
    assert said[3:] == ["the trial at /debug-output exists now; evaluating it"]
