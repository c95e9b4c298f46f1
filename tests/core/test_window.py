"""The recent window against a recount of the last steps: after every chunk, across chunk
sizes, after a merge of disjoint evaluations and after a checkpoint."""

from __future__ import annotations

import json
from dataclasses import dataclass
from unittest.mock import patch

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evaluator.core import (
    ClassImbalanceRule,
    RuleParameters,
    WindowLimitError,
    WorkerBatch,
    progress,
)
from evaluator.core import window as window_module
from evaluator.core.window import StepWindow

Step = tuple[int, np.ndarray, np.ndarray]
"""(step, labels, predicted class indices)."""


@dataclass(frozen=True)
class WindowRun:
    size: int
    previous: bool
    steps: list[Step]
    classes: int


@st.composite
def window_runs(draw: st.DrawFn) -> WindowRun:
    classes = draw(st.sampled_from([2, 3, 7, 40]))
    size = draw(st.integers(1, 6))
    count = draw(st.integers(0, 25))
    numbers = sorted(draw(st.sets(st.integers(0, 200), min_size=count, max_size=count)))
    steps = []
    for step in numbers:
        batch = draw(st.integers(0, 12))
        labels = np.array(
            draw(st.lists(st.integers(0, classes - 1), min_size=batch, max_size=batch))
        )
        predicted = np.array(
            draw(st.lists(st.integers(0, classes - 1), min_size=batch, max_size=batch))
        )
        steps.append((step, labels.astype(np.int64), predicted.astype(np.int64)))
    return WindowRun(size, draw(st.booleans()), steps, classes)


def recount(steps: list[Step], width: int) -> tuple[np.ndarray, np.ndarray]:
    samples = np.zeros(width, dtype=np.int64)
    wrong = np.zeros(width, dtype=np.int64)
    for _, labels, predicted in steps:
        np.add.at(samples, labels, 1)
        np.add.at(wrong, labels[labels != predicted], 1)
    return samples, wrong


def rule_for(run: WindowRun) -> ClassImbalanceRule:
    return ClassImbalanceRule(
        RuleParameters(samples=0, window_steps=run.size, minority_not_improving=run.previous)
    )


def batches(step: Step) -> list[WorkerBatch]:
    _, labels, predicted = step
    return [WorkerBatch("w", "TRAIN", {"labels": labels, "predictions": predicted})]


def assert_window_is_a_recount(rule: ClassImbalanceRule, done: list[Step], run: WindowRun) -> None:
    width = run.classes
    recent = rule.recent(np.arange(width, dtype=np.int64))
    assert recent is not None
    last = done[-run.size :] if done else []
    before = done[-2 * run.size : -run.size] if run.previous and len(done) > run.size else []
    assert [a.tolist() for a in (recent.samples, recent.mispredicted)] == [
        a.tolist() for a in recount(last, width)
    ]
    assert [a.tolist() for a in (recent.previous_samples, recent.previous_mispredicted)] == [
        a.tolist() for a in recount(before, width)
    ]
    assert (int(recent.steps), int(recent.previous_steps)) == (len(last), len(before))


@settings(max_examples=60, deadline=None)
@given(window_runs(), st.integers(1, 30))
def test_the_window_is_a_recount_of_the_last_steps_whatever_the_chunks(
    run: WindowRun, chunk_cells: int
) -> None:
    rule = rule_for(run)
    done: list[Step] = []
    position = 0
    with patch.object(progress, "CHUNK_CELLS", chunk_cells):
        while position < len(run.steps):
            size = 1 + position % 4
            chunk = run.steps[position : position + size]
            rule.evaluate_steps([(step[0], batches(step)) for step in chunk])
            done += chunk
            position += size
            assert_window_is_a_recount(rule, done, run)


@settings(max_examples=40, deadline=None)
@given(window_runs(), st.integers(0, 25))
def test_a_checkpoint_and_a_merge_give_the_same_window(run: WindowRun, cut: int) -> None:
    cut = min(cut, len(run.steps))
    first, second = run.steps[:cut], run.steps[cut:]
    whole = rule_for(run)
    whole.evaluate_steps([(s[0], batches(s)) for s in run.steps])

    resumed = rule_for(run)
    resumed.evaluate_steps([(s[0], batches(s)) for s in first])
    resumed = ClassImbalanceRule.from_state(
        resumed.params, json.loads(json.dumps(resumed.to_state()))
    )
    resumed.evaluate_steps([(s[0], batches(s)) for s in second])

    merged, other = rule_for(run), rule_for(run)
    merged.evaluate_steps([(s[0], batches(s)) for s in second])  # the later half first
    other.evaluate_steps([(s[0], batches(s)) for s in first])
    merged.merge(other)

    for rule in (whole, resumed, merged):
        assert_window_is_a_recount(rule, run.steps, run)
    assert whole.to_state() == resumed.to_state()
    assert merged.window is not None
    assert whole.window is not None
    assert merged.window.steps() == whole.window.steps()


def test_memory_follows_the_steps_labels_not_the_classes() -> None:
    window = StepWindow(3, previous=True)
    rule = ClassImbalanceRule(RuleParameters(samples=0, window_steps=3), window=window)
    for step in range(10):
        labels = np.array([step * 10_000, 5], dtype=np.int64)
        rule.evaluate_step(
            step, [WorkerBatch("w", "TRAIN", {"labels": labels, "predictions": labels})]
        )
    state = window.to_state()
    assert len(state["steps"]) == 6
    assert all(len(classes) == 2 for _, classes, _, _ in state["steps"])


def test_a_window_needs_a_step() -> None:
    with pytest.raises(ValueError, match="at least 1 step"):
        StepWindow(0)


def test_a_window_past_its_bound_is_refused_before_anything_is_counted() -> None:
    rule = ClassImbalanceRule(RuleParameters(samples=0, window_steps=4))
    labels = np.arange(10, dtype=np.int64)
    step = [WorkerBatch("w", "TRAIN", {"labels": labels, "predictions": labels})]
    with patch.object(window_module, "MAX_WINDOW_CELLS", 25):
        rule.evaluate_step(0, step)
        rule.evaluate_step(1, step)
        before = json.dumps(rule.to_state())
        with pytest.raises(WindowLimitError) as raised:
            rule.evaluate_step(2, step)
    assert json.dumps(rule.to_state()) == before, "the refused step left nothing behind"
    assert str(raised.value) == (
        "expected the recent window of window_steps=4 to keep at most 25 per-class counts, but "
        "its last 3 steps would hold 30 (10 classes a step): set window_steps to 2 or less"
    )


def test_merging_the_same_steps_from_other_workers_sums_them() -> None:
    first, second = (
        ClassImbalanceRule(RuleParameters(samples=0, window_steps=2)) for _ in range(2)
    )
    for step in range(3):
        for rule, labels in ((first, [0, 0, 1]), (second, [1, 2])):
            array = np.array(labels, dtype=np.int64)
            rule.evaluate_step(
                step, [WorkerBatch("w", "TRAIN", {"labels": array, "predictions": array})]
            )
    first.merge(second)
    recent = first.recent(np.arange(3, dtype=np.int64))
    assert recent is not None
    assert recent.samples.tolist() == [4, 4, 2], "steps 1 and 2 of both worker sets"
    assert int(recent.steps) == 2
    assert first.window is not None
    assert first.window.steps() == [1, 2]
