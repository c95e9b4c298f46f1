"""A new check is one ``Check`` implementation: registered, it is evaluated after every step and
shows in the findings, the status file and the metrics, with no other code touched.

The toy check here fires when some class has been seen, but fewer than ``minimum`` times. It is
run through the whole command (``run``), checkpointed and resumed, and read back from the status
file and from ``/metrics`` served on a real socket.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from prometheus_client.parser import text_string_to_metric_families

from container.app import Runtime, run
from container.config import Settings
from container.status import Status
from evaluator.core import (
    Check,
    ClassImbalanceRule,
    Finding,
    ImbalanceCheck,
    RuleParameters,
    Tallies,
    WorkerBatch,
    seed_checks,
)
from tests.container.lingering import lingering_run
from tests.container.trials import scores_batch, write_trial

IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
TOY = "rare_class"


@dataclass(frozen=True)
class RareClassCheck:
    """Some class seen fewer than ``minimum`` times."""

    minimum: int
    name: str = TOY

    def holds(self, tallies: Tallies) -> BoolArray:
        samples = tallies.samples
        return np.asarray(((samples > 0) & (samples < self.minimum)).any(axis=1), dtype=bool)

    def describe(self, tallies: Tallies, step: int) -> Finding | None:
        samples = tallies.samples
        rare = np.flatnonzero((samples > 0) & (samples < self.minimum))
        if rare.size == 0:
            return None
        return Finding(
            check=self.name,
            step=step,
            value=float(samples[rare].min()),
            threshold=float(self.minimum),
            classes=tuple(int(c) for c in rare),
            message=f"{rare.size} class(es) seen fewer than {self.minimum} times",
        )


def with_toy(minimum: int) -> Runtime:
    def checks(params: RuleParameters) -> Sequence[Check]:
        return (*seed_checks(params), RareClassCheck(minimum))

    return Runtime(checks=checks)


def settings_for(trial: Path, tmp_path: Path, **changes: object) -> Settings:
    defaults: dict[str, object] = {
        "status_file": str(tmp_path / "status.json"),
        "metrics_enabled": False,
        "idle_timeout": 30,
    }
    return Settings.of(
        base_trial=str(trial),
        rule=RuleParameters(argmax=True, samples=0, threshold_imbalance=1000.0),
        **{**defaults, **changes},
    )


def correct(labels: list[int]) -> WorkerBatch:
    """A batch predicted right: only the counts per class matter to the toy check."""
    array = np.asarray(labels, dtype=np.int64)
    return WorkerBatch("worker_0", "TRAIN", {"labels": array, "predictions": array})


def test_the_rule_evaluates_a_registered_check_like_the_seed_ones() -> None:
    params = RuleParameters(samples=0)
    rule = ClassImbalanceRule(params, checks=(*seed_checks(params), RareClassCheck(3)))
    labels = np.array([0, 0, 0, 1], dtype=np.int64)
    batch = {"labels": labels, "predictions": labels}
    from evaluator.core import WorkerBatch

    first = rule.evaluate_step(0, [WorkerBatch("w", "TRAIN", batch)])
    assert [f.check for f in first.new_findings] == [TOY]
    assert rule.current_holds == {"imbalance": False, "misprediction": False, TOY: True}
    rule.evaluate_step(
        1, [WorkerBatch("w", "TRAIN", {"labels": labels[3:], "predictions": labels[3:]})]
    )
    rule.evaluate_step(
        2, [WorkerBatch("w", "TRAIN", {"labels": labels[3:], "predictions": labels[3:]})]
    )
    assert rule.current_holds[TOY] is False  # class 1 seen 3 times now
    assert rule.issue_step == 0


def test_a_registered_check_reaches_the_status_file_and_the_verdict(tmp_path: Path) -> None:
    trial = write_trial(tmp_path / "trial", steps=6, make_batch=scores_batch([50, 50, 1], 200))
    assert 0 < trial.samples.get(2, 0) < 30 < min(trial.samples[0], trial.samples[1])
    without = run(settings_for(trial.path, tmp_path))
    assert without.status is Status.NO_ISSUES_FOUND
    outcome = run(settings_for(trial.path, tmp_path), with_toy(minimum=30))
    assert outcome.status is Status.ISSUES_FOUND
    written = json.loads((tmp_path / "status.json").read_text())
    assert written == outcome.document
    (finding,) = written["findings"]
    assert (finding["check"], finding["classes"]) == (TOY, [2])
    assert written["current"][TOY]["check"] == TOY
    assert written["issue_step"] == finding["step"]


def test_a_registered_check_resumes_from_a_checkpoint(tmp_path: Path) -> None:
    trial = write_trial(tmp_path / "trial", steps=6, make_batch=scores_batch([50, 50, 1], 200))
    settings = settings_for(trial.path, tmp_path, checkpoint_file=str(tmp_path / "c.json"))
    first = run(settings, with_toy(minimum=30))
    again = run(settings, with_toy(minimum=30))
    assert again.document["resumed_from_step"] == 5
    assert again.document["findings"] == first.document["findings"]


def scrape(port: int) -> dict[tuple[str, str], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {
        (sample.name, sample.labels.get("check", "")): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name.startswith("classimbalance_issue_")
    }


def test_a_registered_check_is_exported_by_the_metrics_server(tmp_path: Path) -> None:
    trial = write_trial(tmp_path / "trial", steps=6, make_batch=scores_batch([50, 50, 1], 200))
    with lingering_run(settings_for(trial.path, tmp_path), with_toy(minimum=30)) as lingering:
        samples = scrape(lingering.port)
    assert [outcome.status for outcome in lingering.outcomes] == [Status.ISSUES_FOUND]
    assert samples[("classimbalance_issue_found", TOY)] == 1.0
    assert samples[("classimbalance_issue_current", TOY)] == 1.0
    assert samples[("classimbalance_issue_found", "imbalance")] == 0.0
    assert {check for _, check in samples} == {"imbalance", "misprediction", TOY}


def test_a_checkpoint_of_other_checks_is_refused(tmp_path: Path) -> None:
    trial = write_trial(tmp_path / "trial", steps=6, make_batch=scores_batch([50, 50, 1], 200))
    settings = settings_for(trial.path, tmp_path, checkpoint_file=str(tmp_path / "c.json"))
    assert run(settings, with_toy(minimum=30)).status is Status.ISSUES_FOUND
    refused = run(settings)
    assert refused.status is Status.ERROR
    assert (
        "checks: saved ['imbalance', 'misprediction', 'rare_class'], now None"
        in (refused.document["error"])
    )


def test_a_check_of_a_known_kind_under_its_own_name_finds_once_under_that_name() -> None:
    params = RuleParameters(samples=0)
    strict = ImbalanceCheck(1.5, name="imbalance_strict")
    rule = ClassImbalanceRule(params, checks=(*seed_checks(params), strict))
    for step in range(3):
        rule.evaluate_step(step, [correct([0, 0, 0, 1])])
    assert [(f.check, f.step) for f in rule.findings] == [("imbalance_strict", 0)]
    assert rule.current_holds == {
        "imbalance": False,
        "misprediction": False,
        "imbalance_strict": True,
    }


def test_two_checks_of_one_name_are_refused() -> None:
    params = RuleParameters()
    with pytest.raises(ValueError, match="distinct names"):
        ClassImbalanceRule(params, checks=(*seed_checks(params), ImbalanceCheck(2.0)))
