"""The native reader at the end of training: the end's grace, dead workers and one-pass runs.

Every rank writes the end marker when it closes, so the marker appears when the first rank
finishes; steps still missing a worker wait ``end_grace`` seconds from when the marker was
*written*. A replay of an old trial must therefore never wait, and a step released without a
worker is reported by name.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from devtools.write_trial import end_training, export_collections
from evaluator.trial.layout import END_MARKER
from evaluator.trial.native import NativeTrialReader
from tests.trial.test_native import native_reader, write_part

HOUR = 3600.0


def two_ranks_one_dying(trial: Path, *, steps: int = 5, died_after: int = 2) -> None:
    """worker_1 writes steps before ``died_after`` only; worker_0 writes every step, then ends."""
    for worker in ("worker_0", "worker_1"):
        export_collections(str(trial), worker, 2)
    for step in range(steps):
        write_part(trial, step, "worker_0")
        if step < died_after:
            write_part(trial, step, "worker_1")
    end_training(str(trial))


def age_marker(trial: Path, seconds: float) -> None:
    written = time.time() - seconds
    os.utime(trial / END_MARKER, (written, written))


def poll_all(reader: NativeTrialReader, limit: int = 50) -> list[int]:
    """Every step handed over, poll after poll, until the reader says training ended."""
    steps: list[int] = []
    for _ in range(limit):
        steps += [ref.step for ref in reader.poll()]
        if reader.training_ended():
            return steps
    raise AssertionError(f"not ended after {limit} polls; handed over {steps}")


def test_an_old_trial_with_a_dead_worker_is_replayed_without_waiting(tmp_path: Path) -> None:
    """Polled in slices of two steps: the first slice is complete, so only the marker's age,
    read when the end is first seen, keeps the later slices' incomplete steps from waiting."""
    trial = tmp_path / "trial"
    two_ranks_one_dying(trial)
    age_marker(trial, HOUR)
    reader = native_reader(trial, end_grace=60.0, steps_per_poll=2)
    assert poll_all(reader, limit=6) == [0, 1, 2, 3, 4]
    problems = reader.problems()
    assert problems.incomplete_steps == tuple((step, ("worker_1",)) for step in (2, 3, 4))
    assert problems.skipped_files == {"missing_worker": 3}
    assert "written by 1 of 2 workers, without worker_1" in (problems.last or "")
    assert "it is evaluated with the others" in (problems.last or "")


def test_a_fresh_marker_holds_incomplete_steps_for_the_grace(tmp_path: Path) -> None:
    trial = tmp_path / "trial"
    two_ranks_one_dying(trial)
    written = os.stat(trial / END_MARKER).st_mtime
    now = [written + 1.0]
    reader = native_reader(trial, end_grace=60.0, wall_clock=lambda: now[0])
    assert [ref.step for ref in reader.poll()] == [0, 1]
    assert reader.pending_steps == 3
    assert not reader.training_ended()
    now[0] = written + 59.0
    assert reader.poll() == []
    now[0] = written + 61.0
    assert [ref.step for ref in reader.poll()] == [2, 3, 4]
    assert reader.training_ended()
    assert "1 s after the end marker" not in (reader.problems().last or "")
    assert "60 s after the end marker (end_grace)" in (reader.problems().last or "")


def test_a_worker_that_never_wrote_a_step_is_named_by_its_collections_file(
    tmp_path: Path,
) -> None:
    trial = tmp_path / "trial"
    two_ranks_one_dying(trial, steps=2, died_after=0)
    reader = native_reader(trial)
    assert poll_all(reader) == [0, 1]
    assert reader.problems().incomplete_steps == ((0, ("worker_1",)), (1, ("worker_1",)))


def test_a_step_none_of_whose_parts_can_be_used_is_said_not_to_be_evaluated(
    tmp_path: Path,
) -> None:
    trial = tmp_path / "trial"
    two_ranks_one_dying(trial, steps=1, died_after=0)
    event = next((trial / "events").rglob("*worker_0.tfevents"))
    event.write_bytes(b"not a tfrecord")
    reader = native_reader(trial, part_retry_polls=0)
    assert poll_all(reader) == []
    last = reader.problems().examples["missing_worker"]
    assert "written by 1 of 2 workers, without worker_1" in last
    assert "no part of it could be used, so it is not evaluated" in last
