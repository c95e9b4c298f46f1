"""The runner: each action once, within its time budget, its failure its own outcome, and the
outcomes a checkpoint saved never repeated; then through the whole command: the status, the
summary, the metrics and a dry run."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from container.actions import (
    DONE,
    FAILED,
    PENDING,
    SKIPPED,
    WOULD_RUN,
    ActionOutcome,
    ActionRunner,
)
from container.app import run
from container.config import Settings
from container.metrics import build_registry
from container.snapshot import SnapshotBox, take_snapshot
from container.summary import format_summary
from evaluator.core import ClassImbalanceRule, RuleParameters
from tests.container.actions.hookserver import hook_server
from tests.container.actions.test_webhook import DOCUMENT
from tests.container.trials import scores_batch, write_trial


def test_each_pending_action_runs_once_and_a_saved_outcome_is_kept(tmp_path: Path) -> None:
    first, second = (
        {"name": "stop_file", "path": str(tmp_path / "a")},
        {"name": "stop_file", "path": str(tmp_path / "b")},
    )
    saved = [ActionOutcome(first, DONE, "wrote the stop file before the restart", "t", 1)]
    runner = ActionRunner([first, second], saved=saved)
    built: list[int] = []

    def document() -> dict[str, Any]:
        built.append(1)
        return DOCUMENT

    saves: list[tuple[str, ...]] = []
    assert runner.run_pending(
        document, lambda: saves.append(tuple(o.outcome for o in runner.outcomes))
    )
    assert saves == [(DONE, DONE)], "a checkpoint after each action that ran"
    assert [o.outcome for o in runner.outcomes] == [DONE, DONE]
    assert runner.outcomes[0].detail == "wrote the stop file before the restart"
    assert not (tmp_path / "a").exists(), "the saved action is not repeated"
    assert (tmp_path / "b").exists()
    assert runner.run_pending(document) is False
    assert built == [1], "the document is built only when an action runs"


def test_an_action_that_hangs_is_failed_when_its_budget_runs_out() -> None:
    with hook_server(("hang", 5.0)) as server:
        action = {"name": "webhook", "url": server.url, "timeout": 30, "retries": 0}
        runner = ActionRunner([action], timeout=0.5)
        started = time.monotonic()
        runner.run_pending(lambda: DOCUMENT)
        elapsed = time.monotonic() - started
    [outcome] = runner.outcomes
    assert outcome.outcome == FAILED
    # The runner's budget and the webhook's own socket timeout (what is left of the budget)
    # run out together: whichever is seen first, the action failed at the budget.
    assert outcome.detail.startswith("did not finish within action_timeout 0.5 s") or (
        outcome.detail.endswith("TimeoutError: timed out")
    ), outcome.detail
    assert elapsed < 2.0


def test_an_exception_in_an_action_is_its_outcome_not_the_evaluations() -> None:
    def broken(service: str) -> Any:
        raise RuntimeError(f"no credentials for {service}")

    runner = ActionRunner([{"name": "stoptraining", "training_job_prefix": "job"}], clients=broken)
    runner.run_pending(lambda: DOCUMENT)
    [outcome] = runner.outcomes
    assert (outcome.outcome, outcome.detail) == (
        FAILED,
        "RuntimeError: no credentials for sagemaker",
    )
    assert outcome.attempts == 1


def test_outcomes_round_trip_through_json() -> None:
    outcome = ActionOutcome({"name": "sms", "endpoint": "+1"}, FAILED, "why", "2026-12-01", 2)
    assert ActionOutcome.from_json(json.loads(json.dumps(outcome.to_json()))) == outcome


# -- through the command ------------------------------------------------------------------------


def settings_for(tmp_path: Path, trial: Path, **flat: Any) -> Settings:
    return Settings.of(
        base_trial=str(trial),
        rule=RuleParameters(argmax=True, samples=100),
        status_file=str(tmp_path / "status.json"),
        metrics_enabled=False,
        **flat,
    )


@pytest.mark.parametrize("dry_run", [False, True], ids=["carried out", "dry run"])
def test_the_outcomes_are_in_the_status_and_the_summary(tmp_path: Path, dry_run: bool) -> None:
    trial = write_trial(tmp_path / "trial", steps=10, make_batch=scores_batch([20, 1]))
    stop = tmp_path / "STOP"
    settings = settings_for(
        tmp_path,
        trial.path,
        actions=({"name": "stop_file", "path": str(stop)},),
        actions_dry_run=dry_run,
    )
    outcome = run(settings)
    [action] = outcome.document["actions"]
    assert action["action"] == {"name": "stop_file", "path": str(stop)}
    if dry_run:
        assert (action["outcome"], action["detail"]) == (
            WOULD_RUN,
            f"would write the stop file {stop}",
        )
        assert not stop.exists()
    else:
        assert (action["outcome"], action["detail"]) == (DONE, f"wrote the stop file {stop}")
        assert json.loads(stop.read_text())["issue_step"] == outcome.document["issue_step"]
    summary = format_summary(outcome.document, status_file="s.json")
    assert f"action 1 (stop_file): {action['outcome']}: {action['detail']}" in summary


def test_without_an_issue_the_actions_say_they_were_not_carried_out(tmp_path: Path) -> None:
    trial = write_trial(tmp_path / "trial", steps=10, make_batch=scores_batch([1, 1]))
    settings = settings_for(
        tmp_path,
        trial.path,
        actions=({"name": "stop_file", "path": str(tmp_path / "STOP")},),
        checkpoint_file=str(tmp_path / "checkpoint.json"),
    )
    outcome = run(settings)
    assert outcome.document["status"] == "NoIssuesFound"
    [action] = outcome.document["actions"]
    assert (action["outcome"], action["detail"]) == (SKIPPED, "not carried out: no issue was found")
    summary = format_summary(outcome.document, status_file="s.json")
    assert "action 1 (stop_file): skipped: not carried out: no issue was found" in summary
    saved = json.loads((tmp_path / "checkpoint.json").read_text())["actions"]
    assert [a["outcome"] for a in saved] == [PENDING], "a resumed run that finds it still acts"


def test_each_action_has_a_series_per_outcome() -> None:
    outcomes = (
        ActionOutcome({"name": "webhook", "url": "http://h/x"}, FAILED, "HTTP 500").to_json(),
        ActionOutcome({"name": "stop_file", "path": "/s"}, DONE, "wrote").to_json(),
    )
    snapshot = take_snapshot(
        ClassImbalanceRule(RuleParameters()),
        status="IssuesFound",
        trial="t",
        ready=True,
        actions=outcomes,
    )
    found = {
        (s.labels["action"], s.labels["position"], s.labels["outcome"]): s.value
        for family in build_registry(SnapshotBox(snapshot), 20).collect()
        for s in family.samples
        if s.name == "classimbalance_action_outcome"
    }
    assert found[("webhook", "1", "failed")] == 1.0
    assert found[("webhook", "1", "done")] == 0.0
    assert found[("stop_file", "2", "done")] == 1.0
    assert len(found) == 2 * 5


def test_a_dry_runs_would_run_is_carried_out_once_the_dry_run_is_off(tmp_path: Path) -> None:
    action = {"name": "stop_file", "path": str(tmp_path / "STOP")}
    dry = ActionRunner([action], dry_run=True)
    dry.run_pending(lambda: DOCUMENT)
    [would] = dry.outcomes
    assert would.outcome == WOULD_RUN
    assert not (tmp_path / "STOP").exists()
    assert ActionRunner([action], dry_run=True, saved=[would]).pending is False
    real = ActionRunner([action], saved=[would])
    assert real.pending
    real.run_pending(lambda: DOCUMENT)
    assert [o.outcome for o in real.outcomes] == [DONE]
    assert (tmp_path / "STOP").exists()
