"""The evaluation loop over a live trial: each step once, in order, as it lands."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

from container.config import FollowSettings, TrialSettings
from container.evaluation import EndReason, Evaluation
from container.stopping import StopRequest
from devtools.write_trial import end_training, export_collections, write_step
from evaluator.core import ClassImbalanceRule, RuleParameters
from evaluator.trial import StepRef, WorkerStep, WorkerTensors
from evaluator.trial.open import open_trial


def labels_and_predictions(step: int) -> dict[str, np.ndarray]:
    labels = np.full(10, step % 3, dtype=np.int64)
    return {"labels": labels, "predictions": labels.copy()}


def test_follows_a_trial_as_steps_land_and_ends_at_the_marker(tmp_path: Path) -> None:
    trial = tmp_path / "trial"
    rule = ClassImbalanceRule(RuleParameters(samples=0))
    progress: list[int] = []
    evaluation = Evaluation(
        open_trial(str(trial)),
        rule,
        following=FollowSettings(poll_interval=0.01, idle_timeout=30),
        on_step=lambda _evaluation, result: progress.append(result.step),
    )

    def train() -> None:
        export_collections(str(trial), "worker_0", 1)
        for step in range(8):
            write_step(str(trial), step, "worker_0", labels_and_predictions(step))
        end_training(str(trial))

    writer = threading.Thread(target=train)
    writer.start()
    try:
        end = evaluation.follow()
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
    evaluation = Evaluation(
        open_trial(str(trial)),
        ClassImbalanceRule(RuleParameters()),
        following=FollowSettings(poll_interval=5.0, idle_timeout=None),
    )
    stop = StopRequest()
    timer = threading.Timer(0.2, stop.set)
    timer.start()
    end = evaluation.follow(stop=stop)
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

    evaluation = Evaluation(
        open_trial(str(trial)),
        ClassImbalanceRule(RuleParameters()),
        following=FollowSettings(poll_interval=0.0, idle_timeout=25.0),
    )
    end = evaluation.follow(clock=clock)
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
        open_trial(str(trial)),
        ClassImbalanceRule(RuleParameters()),
        trial=TrialSettings(str(trial), modes=("EVAL",)),
        following=FollowSettings(once=True),
    )
    assert evaluation.follow() is EndReason.END_OF_TRAINING
    assert evaluation.rule.steps_evaluated == 3
    assert evaluation.steps_seen == 6
    assert set(evaluation.rule.counts_by_mode) == {"EVAL"}


class ScriptedReader:
    """A reader whose polls return scripted step numbers (and whether more are ready)."""

    def __init__(self, script: list[tuple[list[int], bool]]) -> None:
        self.script = list(script)
        self.backlog = False
        self.location = "scripted"

    def exists(self) -> bool:
        return True

    def poll(self) -> list[StepRef]:
        steps, self.backlog = self.script.pop(0) if self.script else ([], False)
        return [
            StepRef(step, (WorkerStep("worker_0", "TRAIN", step, ("labels",)),)) for step in steps
        ]

    def training_ended(self) -> bool:
        return False

    def read(self, ref: StepRef, wanted: object) -> list[WorkerTensors]:
        labels = np.zeros(4, dtype=np.int64)
        return [
            WorkerTensors("worker_0", "TRAIN", ref.step, {"labels": labels, "predictions": labels})
        ]

    def close(self) -> None:
        return None


def waits_while_following(script: list[tuple[list[int], bool]], polls: int) -> list[float]:
    """The waits the loop asks for over ``polls`` polls of a scripted reader."""
    waits: list[float] = []
    stop = StopRequest()
    reader = ScriptedReader(script)

    def wait(seconds: float, _: StopRequest) -> None:
        waits.append(seconds)
        if len(waits) >= polls:
            stop.set()

    options = FollowSettings(poll_interval=1.0, max_poll_interval=8.0, idle_timeout=None)
    evaluation = Evaluation(
        reader, ClassImbalanceRule(RuleParameters(samples=0)), following=options
    )
    evaluation.follow(stop=stop, wait=wait, clock=lambda: 0.0)
    return waits


WAIT_SCRIPTS = {
    "a_step_then_quiet_backs_off_to_the_maximum": (
        [([0], False)],
        [1.0, 2.0, 4.0, 8.0, 8.0, 8.0],
    ),
    "a_step_resets_the_back_off": (
        [([0], False), ([], False), ([], False), ([1], False), ([], False)],
        [1.0, 2.0, 4.0, 1.0, 2.0, 4.0],
    ),
    "a_backlog_is_read_without_waiting": (
        [([0, 1], True), ([2, 3], True), ([4], False)],
        [1.0, 2.0, 4.0],
    ),
}


@pytest.mark.parametrize("case", WAIT_SCRIPTS.values(), ids=WAIT_SCRIPTS.keys())
def test_waits_between_polls(case: tuple[list[tuple[list[int], bool]], list[float]]) -> None:
    script, expected = case
    assert waits_while_following(script, len(expected)) == expected


def test_once_reads_the_whole_backlog_before_it_ends() -> None:
    reader = ScriptedReader([([0, 1], True), ([2, 3], True), ([4], False)])
    evaluation = Evaluation(
        reader, ClassImbalanceRule(RuleParameters(samples=0)), following=FollowSettings(once=True)
    )
    waits: list[float] = []
    end = evaluation.follow(wait=lambda seconds, _: waits.append(seconds))
    assert end is EndReason.ONCE
    assert evaluation.rule.steps_evaluated == 5
    assert waits == []


def test_a_resumed_evaluation_reads_nothing_until_the_trial_is_its_own(tmp_path: Path) -> None:
    """A restart while the trial was deleted and is not there again yet: nothing is polled (no
    step is handed over and left uncounted), the checkpoint keeps the saved identity, and the
    steps after the checkpoint are counted once the same trial is back (restored from a copy)."""
    trial, copy = tmp_path / "trial", tmp_path / "copy"
    export_collections(str(trial), "worker_0", 1)
    for step in range(5):
        write_step(str(trial), step, "worker_0", labels_and_predictions(step))
    saved = open_trial(str(trial)).identity()
    assert saved is not None
    shutil.copytree(trial, copy)
    shutil.rmtree(trial)
    reader = open_trial(str(trial))
    polls: list[int] = []
    poll = reader.poll
    reader.poll = lambda: polls.append(1) or poll()  # type: ignore[method-assign]
    evaluation = Evaluation(
        reader,
        ClassImbalanceRule(RuleParameters(samples=0)),
        delivered_through=2,
        resumed_from=("c.json", saved),
    )
    assert evaluation.evaluate_available() == 0
    assert polls == []
    assert evaluation.checkpoint().trial_identity == saved
    shutil.copytree(copy, trial)
    assert evaluation.evaluate_available() == 2
    assert evaluation.rule.last_step == 4
    assert polls == [1]
    assert evaluation.resumed_from is None


def test_the_names_remembered_for_messages_stay_few_and_short(tmp_path: Path) -> None:
    trial = tmp_path / "trial"
    export_collections(str(trial), "worker_0", 1)
    for step in range(3):
        tensors = labels_and_predictions(step)
        # names anyone can write: many, and long (an index file holds whatever it is given)
        tensors.update({f"{step}_{i}_" + "x" * 20_000: np.zeros(1) for i in range(80)})
        write_step(str(trial), step, "worker_0", tensors)
    end_training(str(trial))
    evaluation = Evaluation(
        open_trial(str(trial)),
        ClassImbalanceRule(RuleParameters()),
        trial=TrialSettings(str(trial)),
        following=FollowSettings(once=True),
    )
    assert evaluation.follow() is EndReason.END_OF_TRAINING
    assert evaluation.rule.steps_evaluated == 3
    assert 0 < len(evaluation.tensor_names_seen) <= 64
    assert max(map(len, evaluation.tensor_names_seen)) <= 16 * 1024
    assert not evaluation._wanted, "sets of 1.6 MB of names are decided, not remembered"
