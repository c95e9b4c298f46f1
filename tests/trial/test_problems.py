"""The reader's problem log: every message counted under its reason, explained, and logged."""

from __future__ import annotations

import logging

import pytest

from evaluator.trial.problems import EXAMPLES_KEPT, ProblemLog


def test_skipped_files_and_notices_are_counted_apart_with_their_latest_message() -> None:
    problems = ProblemLog()
    problems.skipped("missing_event_file", "a is missing")
    problems.skipped("missing_event_file", "b is missing")
    problems.notice("storage_unavailable", "S3 said SlowDown")
    problems.retrying("c will be tried again")
    seen = problems.snapshot()
    assert seen.skipped_files == {"missing_event_file": 2}
    assert seen.notices == {"storage_unavailable": 1}
    assert seen.examples == {
        "missing_event_file": "b is missing",
        "storage_unavailable": "S3 said SlowDown",
    }
    assert seen.last == "c will be tried again"


def test_a_snapshot_is_a_copy_taken_again_only_after_a_change() -> None:
    problems = ProblemLog()
    first = problems.snapshot()
    assert problems.snapshot() is first, "asked after every step: cached"
    problems.skipped("late_part", "x arrived late")
    second = problems.snapshot()
    assert second is not first
    assert (dict(first.skipped_files), dict(second.skipped_files)) == ({}, {"late_part": 1})


def test_examples_are_bounded_but_counts_are_not() -> None:
    problems = ProblemLog()
    for number in range(EXAMPLES_KEPT + 5):
        problems.skipped(f"reason_{number:02d}", f"message {number}")
    seen = problems.snapshot()
    assert len(seen.skipped_files) == EXAMPLES_KEPT + 5
    assert len(seen.examples) == EXAMPLES_KEPT


def test_every_message_reaches_the_log_with_its_event_and_reason(
    caplog: pytest.LogCaptureFixture,
) -> None:
    problems = ProblemLog()
    with caplog.at_level(logging.DEBUG, logger="classimbalance.trial"):
        problems.skipped("malformed_index", "index 3 is not JSON")
        problems.notice("storage_unavailable", "S3 said SlowDown", level=logging.WARNING)
        problems.retrying("event file 4 is missing (will retry)")
    logged = [
        (record.levelname, getattr(record, "event", None), getattr(record, "reason", None))
        for record in caplog.records
    ]
    assert logged == [
        ("WARNING", "file_skipped", "malformed_index"),
        ("WARNING", "reader_notice", "storage_unavailable"),
        ("DEBUG", "reader_retry", None),
    ]
    assert caplog.records[0].getMessage() == "index 3 is not JSON"


def test_a_step_without_all_its_workers_is_counted_named_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    problems = ProblemLog()
    with caplog.at_level(logging.WARNING, logger="classimbalance.trial"):
        problems.incomplete_step(7, ("worker_1", "worker_2"), 2, "step 7 without worker_1, 2")
    seen = problems.snapshot()
    assert seen.skipped_files == {"missing_worker": 2}
    assert (seen.incomplete_step_count, seen.incomplete_steps) == (
        1,
        ((7, ("worker_1", "worker_2")),),
    )
    (record,) = caplog.records
    assert (getattr(record, "event", None), getattr(record, "missing_workers", None)) == (
        "step_incomplete",
        ["worker_1", "worker_2"],
    )


def test_every_parser_error_carries_the_reason_it_is_counted_under() -> None:
    from evaluator.trial.problems import DECODE_ERROR, TrialBytesError

    assert TrialBytesError("x").reason == DECODE_ERROR
    assert TrialBytesError("x", reason="truncated").reason == "truncated"
    assert isinstance(TrialBytesError("x"), ValueError)
