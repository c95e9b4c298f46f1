"""A reader's record of what it could not use: counted, explained, logged, handed over as a copy.

Every message a reader has for its operator goes through one ``ProblemLog``, so nothing is said
in one place and lost in another: a file given up on is counted under its reason with the latest
message as an example (the status shows both), and logged as it happens; a notice (a storage
outage ridden out, a step released without all its workers) is counted and logged the same
way; a retry is logged at debug level and remembered as the latest message only.
"""

from __future__ import annotations

import logging

from evaluator.trial.interface import ReaderProblems

log = logging.getLogger("classimbalance.trial")

EXAMPLES_KEPT = 32
"""Distinct reasons whose latest message is kept for the status, as the rule keeps its own."""
INCOMPLETE_STEPS_KEPT = 100
"""Steps handed over without all their workers that are named in the status (all are counted)."""

# Reasons of files given up on, or never written (``skipped_files``). A file whose bytes are
# damaged is counted under what is wrong with them, as a batch read from it would be: the
# framing's ``truncated``, ``length_crc``, ``payload_crc`` (``RecordError``), ``decode_error``
# (a record that is not a protobuf Event), or ``malformed_event_file`` (well-formed records that
# are not one smdebug step: another step's, mixed modes, a mode smdebug does not write).
MALFORMED_COLLECTIONS = "malformed_collections"
MALFORMED_INDEX = "malformed_index"
MALFORMED_EVENT_FILE = "malformed_event_file"
DECODE_ERROR = "decode_error"
MISSING_EVENT_FILE = "missing_event_file"
UNREADABLE_EVENT_FILE = "unreadable_event_file"
LATE_PART = "late_part"
MISSING_WORKER = "missing_worker"
UNREADABLE_ENTRY = "unreadable_entry"
"""A folder entry a local listing cannot follow (a symbolic link that loops), left out."""

# Reasons of notices (``notices``).
STORAGE_UNAVAILABLE = "storage_unavailable"
UNHELD_PART = "unheld_part"
FOREIGN_KEYS = "foreign_keys"


class TrialBytesError(ValueError):
    """Bytes of a trial file that are not what smdebug writes: what every parser of trial bytes
    raises (index, collections and event files, records, the protobuf wire, tensors), so a
    caller catches one class. ``reason`` is the short stable key it is counted under; the
    message says what was expected, what was found and what to change."""

    reason: str = DECODE_ERROR

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason


class ProblemLog:
    """Counts by reason, the latest message per reason, and the log line for each."""

    def __init__(self) -> None:
        self._skipped: dict[str, int] = {}
        self._notices: dict[str, int] = {}
        self._examples: dict[str, str] = {}
        self._last: str | None = None
        self._incomplete: list[tuple[int, tuple[str, ...]]] = []
        self._incomplete_count = 0
        self._snapshot: ReaderProblems | None = None
        """Cached until the next change: the runtime asks after every step."""

    def skipped(self, reason: str, message: str) -> None:
        """A file given up on: its data is not counted."""
        self._count(self._skipped, reason, message)
        log.warning("%s", message, extra={"event": "file_skipped", "reason": reason})

    def incomplete_step(
        self, step: int, missing: tuple[str, ...], parts: int, message: str
    ) -> None:
        """A step handed over without ``parts`` expected parts (of workers ``missing``)."""
        self._count(self._skipped, MISSING_WORKER, message, parts)
        self._incomplete_count += 1
        if len(self._incomplete) < INCOMPLETE_STEPS_KEPT:
            self._incomplete.append((step, missing))
        log.warning(
            "%s",
            message,
            extra={"event": "step_incomplete", "step": step, "missing_workers": list(missing)},
        )

    def notice(self, reason: str, message: str, *, level: int = logging.INFO) -> None:
        """Something that loses no data by itself but that an operator should know of."""
        self._count(self._notices, reason, message)
        log.log(level, "%s", message, extra={"event": "reader_notice", "reason": reason})

    def retrying(self, message: str) -> None:
        """A part that will be tried again: only the latest such message is kept."""
        self._last = message
        self._snapshot = None
        log.debug("%s", message, extra={"event": "reader_retry"})

    def snapshot(self) -> ReaderProblems:
        if self._snapshot is None:
            self._snapshot = ReaderProblems(
                skipped_files=dict(self._skipped),
                notices=dict(self._notices),
                examples=dict(self._examples),
                last=self._last,
                incomplete_steps=tuple(self._incomplete),
                incomplete_step_count=self._incomplete_count,
            )
        return self._snapshot

    def _count(self, counts: dict[str, int], reason: str, message: str, number: int = 1) -> None:
        counts[reason] = counts.get(reason, 0) + number
        self._last = message
        if reason in self._examples or len(self._examples) < EXAMPLES_KEPT:
            self._examples[reason] = message
        self._snapshot = None
