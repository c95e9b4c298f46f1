"""Shard states on disk: written and read back whole, refused with a reason when they are not
a shard's state (missing, damaged, another file, another version), and the readers' problems of
every shard added up as one reader's."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from container.checkpoint import Checkpoint, save_checkpoint
from container.config import Settings
from container.sharding import (
    STATE_FORMAT,
    STATE_VERSION,
    ShardState,
    StateError,
    merged_problems,
    part_selection,
    problems_from_json,
    problems_to_json,
    read_state,
    save_state,
    shard_info,
)
from container.snapshot import take_snapshot
from container.status import RunInfo, build_status, write_status
from evaluator.core import ClassImbalanceRule, RuleParameters, StepLedger, WorkerBatch
from evaluator.trial import NO_PROBLEMS, PartSelection, ReaderProblems, TrialIdentity

IDENTITY = TrialIdentity(
    keys=(
        "collections/000000000/worker_0_collections.json",
        "events/000000000000/000000000000_worker_0.tfevents",
    ),
    digest="0123abcd",
)
PROBLEMS = ReaderProblems(
    skipped_files={"missing_worker": 2, "late_part": 1},
    notices={"storage_unavailable": 3},
    examples={"missing_worker": "step 4 was written by 1 of 2 workers", "late_part": "late"},
    incomplete_steps=((4, ("worker_1",)), (9, ("worker_0", "worker_1"))),
    incomplete_step_count=2,
)


def rule_state() -> dict[str, Any]:
    """The state of a shard's rule that evaluated two steps, with its ledger, as JSON has it
    (lists for tuples)."""
    rule = ClassImbalanceRule(RuleParameters(argmax=True, samples=4), ledger=StepLedger())
    rng = np.random.default_rng(0)
    for step in (3, 8):
        labels = rng.integers(0, 3, size=6)
        scores = rng.standard_normal((6, 3)).astype(np.float32)
        rule.evaluate_step(
            step, [WorkerBatch("worker_0", "TRAIN", {"labels": labels, "predictions": scores})]
        )
    state: dict[str, Any] = json.loads(json.dumps(rule.to_state()))
    return state


def a_state(path: Path, **changes: Any) -> ShardState:
    fields: dict[str, Any] = {
        "path": str(path),
        "evaluation": {
            "trial": "s3://bucket/job/debug",
            "rule": {"argmax": True, "samples": 4},
            "modes": None,
        },
        "selection": PartSelection(
            start_step=2, end_step=50, shard_index=1, shard_count=3, by="workers", block_steps=7
        ),
        "rule_state": rule_state(),
        "trial_identity": IDENTITY,
        "reader": PROBLEMS,
        "steps_seen": 12,
        "ended_by": "end_of_training",
        "warnings": ("a warning",),
        "tensor_names": ("labels", "predictions"),
        "version": "0.1.0",
    }
    fields.update(changes)
    return ShardState(**fields)


def saved_document(path: Path) -> dict[str, Any]:
    document = json.loads(path.read_text())
    assert isinstance(document, dict)
    return document


# -- round trip -------------------------------------------------------------------------------

ROUND_TRIPS: dict[str, dict[str, Any]] = {
    "a shard of workers in a range": {},
    "a range alone, no identity, no problems": {
        "selection": PartSelection(start_step=10),
        "trial_identity": None,
        "reader": NO_PROBLEMS,
        "warnings": (),
        "tensor_names": (),
        "ended_by": None,
    },
    "a shard of steps": {
        "selection": PartSelection(shard_index=0, shard_count=4, by="steps", block_steps=100)
    },
}


@pytest.mark.parametrize("case", ROUND_TRIPS)
def test_a_saved_state_reads_back_the_same(tmp_path: Path, case: str) -> None:
    path = tmp_path / "shards" / "shard-1.state.json"
    state = a_state(path, **ROUND_TRIPS[case])
    save_state(str(path), state)
    assert read_state(str(path)) == state
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name], "no temporary left"
    document = saved_document(path)
    assert (document["format"], document["version"]) == (STATE_FORMAT, STATE_VERSION)
    assert document["written_by"] == state.version


def test_a_state_of_version_1_dense_counts_only_still_reads(tmp_path: Path) -> None:
    path = tmp_path / "s.state.json"
    state = a_state(path)
    save_state(str(path), state)
    document = saved_document(path)
    path.write_text(json.dumps({**document, "version": 1}))
    assert read_state(str(path)) == state


def test_the_rule_state_read_back_restores_the_rule_and_its_ledger(tmp_path: Path) -> None:
    path = tmp_path / "s.state.json"
    save_state(str(path), a_state(path))
    params = RuleParameters(argmax=True, samples=4)
    rule = ClassImbalanceRule.from_state(params, read_state(str(path)).rule_state)
    assert rule.ledger is not None
    assert rule.ledger.steps.tolist() == [3, 8]
    assert rule.samples == 12


# -- refusals ---------------------------------------------------------------------------------


def write_json(document: Any) -> Callable[[Path], object]:
    return lambda path: path.write_text(json.dumps(document))


def write_status_file(path: Path) -> None:
    snapshot = take_snapshot(
        ClassImbalanceRule(RuleParameters()), status="IssuesFound", trial="t", ready=False
    )
    write_status(str(path), build_status(snapshot, RunInfo("t", "native", None, time.time())))


def write_checkpoint(path: Path) -> None:
    rule = ClassImbalanceRule(RuleParameters(), ledger=StepLedger())
    save_checkpoint(str(path), {"trial": "t"}, Checkpoint(5, rule.to_state(), 6))


def damaged(change: Callable[[dict[str, Any]], object]) -> Callable[[Path], None]:
    """A state saved whole, then changed in one place."""

    def write(path: Path) -> None:
        save_state(str(path), a_state(path))
        document = saved_document(path)
        change(document)
        path.write_text(json.dumps(document))

    return write


UNREADABLE: dict[str, tuple[Callable[[Path], object], tuple[str, ...]]] = {
    "not JSON": (
        lambda path: path.write_text('{"format": "classimbalance'),
        ("cannot be read (",),
    ),
    "not UTF-8": (lambda path: path.write_bytes(b"\xff\xfe{}"), ("cannot be read (",)),
    "a status file": (
        write_status_file,
        ("written with --emit-state, but it is not one (a status file or a checkpoint?)",),
    ),
    "a checkpoint": (
        write_checkpoint,
        ("written with --emit-state, but it is not one (a status file or a checkpoint?)",),
    ),
    "a JSON list": (
        write_json([1, 2]),
        ("written with --emit-state, but it is not one",),
    ),
    "a newer version": (
        damaged(lambda d: d.update(version=3)),
        ("has version 3, expected one of 1, 2: evaluate its shard again with this version",),
    ),
    "no version": (
        damaged(lambda d: d.pop("version")),
        ("has version None, expected one of 1, 2",),
    ),
    "the version as text": (damaged(lambda d: d.update(version="1")), ("has version '1'",)),
    "no shard": (damaged(lambda d: d.pop("shard")), ("is damaged (KeyError: 'shard')",)),
    "no rule state": (
        damaged(lambda d: d.pop("rule_state")),
        ("is damaged (KeyError: 'rule_state')",),
    ),
    "no evaluation": (
        damaged(lambda d: d.pop("evaluation")),
        ("is damaged (KeyError: 'evaluation')",),
    ),
    "no steps_seen": (
        damaged(lambda d: d.pop("steps_seen")),
        ("is damaged (KeyError: 'steps_seen')",),
    ),
    "a shard index that is no number": (
        damaged(lambda d: d["shard"].update(index="one")),
        ("is damaged (ValueError: invalid literal for int()",),
    ),
    "a shard index past the count": (
        damaged(lambda d: d["shard"].update(index=3)),
        ("is damaged (ValueError: Expected a shard index in [0, 3)",),
    ),
    "an unknown split": (
        damaged(lambda d: d["shard"].update(by="rows")),
        ("is damaged (ValueError: Expected shard by steps or workers, but got 'rows')",),
    ),
    "a rule state that is a string": (
        damaged(lambda d: d.update(rule_state="counts")),
        ("is damaged (ValueError:",),
    ),
    "the reader's problems as a list": (
        damaged(lambda d: d.update(reader=[1])),
        ("is damaged (AttributeError:",),
    ),
    "a count that is no number": (
        damaged(lambda d: d["reader"]["skipped_files"].update(late_part="many")),
        ("is damaged (ValueError:",),
    ),
    "a trial identity outside the trial": (
        damaged(lambda d: d["trial_identity"].update(keys=["../../etc/passwd"])),
        ("is damaged (ValueError: trial_identity.keys must be a list of keys inside the trial",),
    ),
    "a shard that is a list": (
        damaged(lambda d: d.update(shard=[0, 2])),
        ("is damaged (TypeError:",),
    ),
}


@pytest.mark.parametrize("case", UNREADABLE)
def test_a_file_that_is_no_usable_state_is_refused_saying_why(tmp_path: Path, case: str) -> None:
    write, expected = UNREADABLE[case]
    path = tmp_path / "shard-0.state.json"
    write(path)
    with pytest.raises(StateError) as refused:
        read_state(str(path))
    message = str(refused.value)
    assert message.startswith((f"shard state {path} ", f"expected {path} ")), message
    for part in expected:
        assert part in message
    if "is damaged" in message:
        assert message.endswith(": evaluate its shard again")


def test_a_missing_state_names_it_and_says_to_run_its_shard_again(tmp_path: Path) -> None:
    path = tmp_path / "shards" / "shard-2.state.json"
    with pytest.raises(StateError) as refused:
        read_state(str(path))
    assert str(refused.value) == (
        f"shard state {path} does not exist: its shard has not finished, or failed (see its "
        f"status file and log); run that shard again"
    )
    assert isinstance(refused.value.__cause__, FileNotFoundError)


def test_a_folder_given_as_a_state_is_refused(tmp_path: Path) -> None:
    with pytest.raises(StateError, match="cannot be read"):
        read_state(str(tmp_path))


# -- the readers' problems --------------------------------------------------------------------

PROBLEM_SETS: dict[str, ReaderProblems] = {
    "none": NO_PROBLEMS,
    "every kind": PROBLEMS,
    "a TF device worker missing": ReaderProblems(
        skipped_files={"missing_worker": 1},
        incomplete_steps=((0, ("/job:worker/replica:0/task:0/device:GPU:1",)),),
        incomplete_step_count=1,
    ),
}


@pytest.mark.parametrize("case", PROBLEM_SETS)
def test_problems_round_trip_through_json(case: str) -> None:
    problems = PROBLEM_SETS[case]
    text = json.dumps(problems_to_json(problems))
    assert problems_from_json(json.loads(text)) == problems


def test_problems_from_an_empty_map_are_none() -> None:
    assert problems_from_json({}) == NO_PROBLEMS


def test_merged_problems_add_counts_and_merge_incomplete_steps_by_step() -> None:
    shard_0 = ReaderProblems(
        skipped_files={"missing_worker": 2, "late_part": 1},
        notices={"storage_unavailable": 1},
        examples={"missing_worker": "from shard 0", "late_part": "late in shard 0"},
        incomplete_steps=((4, ("worker_2",)), (9, ("worker_1",))),
        incomplete_step_count=2,
    )
    shard_1 = ReaderProblems(
        skipped_files={"missing_worker": 1, "malformed_event_file": 1},
        notices={"storage_unavailable": 2, "foreign_keys": 1},
        examples={"missing_worker": "from shard 1", "malformed_event_file": "bad"},
        incomplete_steps=((2, ("worker_0",)), (9, ("worker_0",))),
        incomplete_step_count=3,
    )
    merged = merged_problems([shard_0, shard_1], kept=20)
    assert merged.skipped_files == {"missing_worker": 3, "late_part": 1, "malformed_event_file": 1}
    assert merged.notices == {"storage_unavailable": 3, "foreign_keys": 1}
    assert merged.examples == {
        "missing_worker": "from shard 1",
        "late_part": "late in shard 0",
        "malformed_event_file": "bad",
    }
    assert merged.incomplete_steps == (
        (2, ("worker_0",)),
        (4, ("worker_2",)),
        (9, ("worker_0", "worker_1")),
    )
    assert merged.incomplete_step_count == 5
    assert merged_problems([shard_1, shard_0], kept=20).incomplete_steps == merged.incomplete_steps


def test_merged_problems_keep_the_first_incomplete_steps() -> None:
    shards = [
        ReaderProblems(
            incomplete_steps=tuple((step, ("worker_0",)) for step in range(start, 40, 2)),
            incomplete_step_count=20,
        )
        for start in (0, 1)
    ]
    merged = merged_problems(shards, kept=5)
    assert [step for step, _ in merged.incomplete_steps] == [0, 1, 2, 3, 4]
    assert merged.incomplete_step_count == 40, "the count is of every one"


def test_merged_problems_of_no_shard_are_none() -> None:
    assert merged_problems([], kept=20) == NO_PROBLEMS


# -- the shard of the settings ----------------------------------------------------------------


def test_the_settings_shard_and_what_the_status_says_of_it() -> None:
    settings = Settings.of(
        base_trial="t",
        start_step=10,
        end_step=90,
        emit_state="s/shard-2.state.json",
        shard_count=3,
        shard_index=2,
        shard_by="workers",
        shard_steps=5,
    )
    selection = part_selection(settings)
    assert selection == PartSelection(10, 90, 2, 3, "workers", 5)
    assert shard_info(settings) == {
        "state_file": "s/shard-2.state.json",
        "index": 2,
        "count": 3,
        "by": "workers",
        "shard_steps": 5,
        "start_step": 10,
        "end_step": 90,
        "described": "steps [10, 90), shard 2 of 3 (by workers)",
    }
    assert shard_info(Settings.of(base_trial="t")) is None, "no state: not a shard"
    assert part_selection(Settings.of(base_trial="t")).everything
