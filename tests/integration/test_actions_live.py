"""Actions in live runs, with real processes: a training loop (the devtools writer) that stops
on the evaluator's stop file, and an action carried out exactly once across a ``kill -9`` and
a restart (the webhook's server on loopback counts the requests)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.container.actions.hookserver import hook_server
from tests.integration.processes import (
    free_port,
    read_truth,
    start_evaluator,
    start_writer,
    wait_for,
)

pytestmark = pytest.mark.slow

STEPS = 400


def status(path: Path) -> dict[str, Any]:
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError):
        return {}


def test_a_training_loop_stops_on_the_stop_file(
    tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    trial, truth, stop = tmp_path / "trial", tmp_path / "truth.jsonl", tmp_path / "shared" / "STOP"
    status_file = tmp_path / "status.json"
    actions = json.dumps([{"name": "stop_file", "path": str(stop)}])
    writer = start_writer(trial, truth, steps=STEPS, interval=0.02, workers=1, stop_file=stop)
    processes.append(writer)
    evaluator = start_evaluator(
        trial, status_file, free_port(), "--samples", "200", "--actions", actions
    )
    processes.append(evaluator)
    assert evaluator.wait(90) == 1, "IssuesFound"
    assert writer.wait(30) == 0
    written = read_truth(truth)
    assert 0 < len(written) < STEPS, "the loop stopped early, on the file"
    document = status(status_file)
    [action] = document["actions"]
    assert (action["outcome"], action["detail"]) == ("done", f"wrote the stop file {stop}")
    assert document["ended_by"] == "end_of_training"
    assert document["samples"] == sum(sum(entry["samples"]) for entry in written)
    content = json.loads(stop.read_text())
    assert content["stop"] is True
    assert content["issue_step"] == document["issue_step"]


def test_an_action_is_carried_out_once_across_a_kill_and_a_restart(
    tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    trial, truth = tmp_path / "trial", tmp_path / "truth.jsonl"
    status_file, checkpoint = tmp_path / "status.json", tmp_path / "checkpoint.json"
    with hook_server(200) as server:
        actions = json.dumps([{"name": "webhook", "url": server.url}])
        flags = ("--samples", "200", "--actions", actions, "--checkpoint-file", str(checkpoint))
        writer = start_writer(trial, truth, steps=120, interval=0.05, workers=2)
        processes.append(writer)
        first = start_evaluator(trial, status_file, free_port(), *flags)
        processes.append(first)

        def acted() -> bool:
            found = status(status_file).get("actions") or [{}]
            return found[0].get("outcome") == "done"

        wait_for(acted, 60)
        os.kill(first.pid, signal.SIGKILL)
        first.wait(10)
        assert len(server.requests) == 1
        second = start_evaluator(trial, status_file, free_port(), *flags)
        processes.append(second)
        assert writer.wait(60) == 0
        assert second.wait(60) == 1, "IssuesFound"
        assert len(server.requests) == 1, "the restarted evaluation did not post again"
    document = status(status_file)
    assert document["resumed_from_step"] is not None
    [action] = document["actions"]
    assert (action["outcome"], action["attempts"]) == ("done", 1)
    written = read_truth(truth)
    assert document["samples"] == sum(sum(entry["samples"]) for entry in written)
