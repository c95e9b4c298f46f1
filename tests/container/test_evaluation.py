"""The evaluation loop over a live trial: each step once, in order, as it lands."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from container.evaluation import EndReason, Evaluation, FollowOptions
from container.stopping import StopRequest
from devtools.write_trial import end_training, export_collections, write_step
from evaluator.core import ClassImbalanceRule, RuleParameters
from evaluator.trial.open import open_trial


def labels_and_predictions(step: int) -> dict[str, np.ndarray]:
    labels = np.full(10, step % 3, dtype=np.int64)
    return {"labels": labels, "predictions": labels.copy()}


def test_follows_a_trial_as_steps_land_and_ends_at_the_marker(tmp_path: Path) -> None:
    trial = tmp_path / "trial"
    rule = ClassImbalanceRule(RuleParameters(samples=0))
    progress: list[int] = []
    evaluation = Evaluation(
        open_trial(str(trial)), rule, on_step=lambda result: progress.append(result.step)
    )

    def train() -> None:
        export_collections(str(trial), "worker_0", 1)
        for step in range(8):
            write_step(str(trial), step, "worker_0", labels_and_predictions(step))
        end_training(str(trial))

    writer = threading.Thread(target=train)
    writer.start()
    try:
        end = evaluation.follow(FollowOptions(poll_interval=0.01, idle_timeout=30))
    finally:
        writer.join()
    assert end is EndReason.END_OF_TRAINING
    assert rule.steps_evaluated == 8
    assert rule.samples == 80
    assert rule.last_step == 7
    assert progress == list(range(8)), "each step once, in order"


def test_a_stop_request_ends_following_promptly(tmp_path: Path) -> None:
    trial = tmp_path / "trial"
    export_collections(str(trial), "worker_0", 1)
    write_step(str(trial), 0, "worker_0", labels_and_predictions(0))
    evaluation = Evaluation(open_trial(str(trial)), ClassImbalanceRule(RuleParameters()))
    stop = StopRequest()
    timer = threading.Timer(0.2, stop.set)
    timer.start()
    end = evaluation.follow(FollowOptions(poll_interval=5.0, idle_timeout=None), stop=stop)
    timer.join()
    assert end is EndReason.STOPPED
    assert evaluation.rule.steps_evaluated == 1


def test_idle_timeout_uses_the_injected_clock(tmp_path: Path) -> None:
    trial = tmp_path / "trial"
    trial.mkdir()
    now = [0.0]

    def clock() -> float:
        now[0] += 10.0
        return now[0]

    evaluation = Evaluation(open_trial(str(trial)), ClassImbalanceRule(RuleParameters()))
    end = evaluation.follow(FollowOptions(poll_interval=0.0, idle_timeout=25.0), clock=clock)
    assert end is EndReason.IDLE_TIMEOUT


def test_unselected_modes_are_not_evaluated(tmp_path: Path) -> None:
    trial = tmp_path / "trial"
    export_collections(str(trial), "worker_0", 1)
    for step in range(6):
        write_step(
            str(trial),
            step,
            "worker_0",
            labels_and_predictions(step),
            mode="EVAL" if step % 2 else "TRAIN",
        )
    end_training(str(trial))
    evaluation = Evaluation(
        open_trial(str(trial)), ClassImbalanceRule(RuleParameters()), modes={"EVAL"}
    )
    assert evaluation.follow(FollowOptions(once=True)) is EndReason.END_OF_TRAINING
    assert evaluation.rule.steps_evaluated == 3
    assert evaluation.steps_seen == 6
    assert set(evaluation.rule.counts_by_mode) == {"EVAL"}
