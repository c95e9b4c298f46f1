"""The native trial reader: follows a live smdebug trial at a cost that stays flat.

smdebug's own reader re-walks the whole index tree on every refresh and keeps every step it has
ever seen, so following a long run gets slower and bigger with each step. This reader keeps a
cursor instead: each poll lists only the index keys after the last step it returned, parses the
new ones, and keeps state only for the steps it has not returned yet (plus the read locations of
returned steps that were not read yet). Memory and per-poll cost depend on how far the slowest
worker lags behind, never on how many steps were consumed.

Completeness follows smdebug: a step is complete when every expected worker wrote it, or a later
step is complete, or training has ended. Two refinements make that safe on a live folder:

- The end marker is checked *before* listing. The marker is written after the last index file,
  so a listing that starts after we saw it contains every file.
- "A later step is complete" is applied one poll late. A listing is not a snapshot: a file that
  lands while the folder is being listed may be missed while a later one is seen. Every file of
  an earlier step was written before the later step's files, so it is visible to any listing
  that starts after the one that saw the later step complete.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from evaluator.trial.interface import StepRef, WorkerStep, WorkerTensors
from evaluator.trial.layout import (
    COLLECTIONS_PREFIX,
    END_MARKER,
    INDEX_PREFIX,
    index_key,
    is_safe_key,
    parse_collections_key,
    parse_index_key,
    worker_label,
)
from evaluator.trial.records import RecordError, record_payload
from evaluator.trial.tensors import decode_event_tensors

MODES = frozenset({"TRAIN", "EVAL", "PREDICT", "GLOBAL"})

INDEX_RETRY_POLLS = 3
"""Polls an unparsable index file is retried before it is dropped. smdebug renames finished
files into place, so a bad one is usually corrupt for good; retrying covers copy tools that
write in place. While it is retried its step is held back, so that step is never returned
without it by mistake."""

INCOMPLETE_STEP_WINDOW = 1000
"""Incomplete steps kept waiting before the oldest are released anyway (smdebug's
``INCOMPLETE_STEP_WAIT_WINDOW``): a worker that died must not stall the rule or grow memory."""

UNREAD_STEP_LIMIT = 1024
"""Returned steps whose read locations are kept until read. Beyond that the oldest are dropped;
``read`` of such a step re-reads its index files, so this bounds memory without losing data."""


class TrialStorage(Protocol):
    """What the reader needs from where the trial lives (a local folder now, S3 later).

    Keys are relative to the trial root and use ``/``.
    """

    @property
    def location(self) -> str:
        """The trial's path or URI, for messages."""
        ...

    def exists(self) -> bool:
        """Whether the trial root exists yet."""
        ...

    def list_keys(self, prefix: str, start_after: str | None = None) -> list[str]:
        """Keys under ``prefix`` in lexical order, strictly after ``start_after``."""
        ...

    def read_bytes(self, key: str) -> bytes:
        """The whole object; FileNotFoundError when missing."""
        ...

    def key_exists(self, key: str) -> bool:
        """Whether the object exists."""
        ...


@dataclass(frozen=True)
class _TensorSpan:
    """Where one tensor's record lies in its event file."""

    name: str
    start: int
    length: int


@dataclass(frozen=True)
class _IndexedPart:
    """One worker's index file for one step: what ``read`` needs to find its tensors."""

    step: int
    file_worker: str
    mode: str
    mode_step: int
    event_key: str
    spans: tuple[_TensorSpan, ...]

    @property
    def index_file_key(self) -> str:
        return index_key(self.step, self.file_worker)

    def worker_step(self) -> WorkerStep:
        return WorkerStep(
            worker=worker_label(self.file_worker),
            mode=self.mode,
            mode_step=self.mode_step,
            tensor_names=tuple(span.name for span in self.spans),
        )


@dataclass
class _PendingStep:
    """A step seen in the index but not returned yet."""

    parts: dict[str, _IndexedPart] = field(default_factory=dict)
    """Parsed index files, by file worker."""
    retrying: dict[str, int] = field(default_factory=dict)
    """File workers whose index could not be parsed yet -> failed attempts."""
    dropped: set[str] = field(default_factory=set)
    """File workers whose index was given up on: they did write the step, we cannot read it."""

    def workers_written(self) -> int:
        return len(self.parts) + len(self.retrying) + len(self.dropped)

    def knows(self, file_worker: str) -> bool:
        return (
            file_worker in self.parts or file_worker in self.retrying or file_worker in self.dropped
        )


class MalformedIndexError(ValueError):
    """An index file that is not what smdebug writes; the message says what is wrong."""


class NativeTrialReader:
    """Reads an smdebug trial through a :class:`TrialStorage`; implements ``TrialReader``.

    Counters for status and metrics: ``skipped`` (reason -> files given up on), ``late_parts``
    (worker files that arrived after their step was returned), ``forced_steps`` (steps released
    by the incomplete-step window) and ``last_problem`` (the latest such event, in words).
    """

    def __init__(
        self,
        storage: TrialStorage,
        *,
        verify_payload_crc: bool = False,
        index_retry_polls: int = INDEX_RETRY_POLLS,
        incomplete_step_window: int = INCOMPLETE_STEP_WINDOW,
        unread_step_limit: int = UNREAD_STEP_LIMIT,
    ) -> None:
        self._storage = storage
        self._verify_payload_crc = verify_payload_crc
        self._index_retry_polls = index_retry_polls
        self._incomplete_step_window = max(1, incomplete_step_window)
        self._unread_step_limit = max(1, unread_step_limit)

        self._cursor: str | None = None
        """The last index key of the returned steps; listings start after it."""
        self._returned_through = -1
        """The highest step returned; index files of steps up to it arrive late."""
        self._pending: dict[int, _PendingStep] = {}
        self._full_step_seen = -1
        """The highest step every expected worker had written, as of an earlier poll."""
        self._unread: dict[int, dict[str, _IndexedPart]] = {}
        """Returned steps not read yet: step -> worker label -> part (insertion = step order)."""
        self._file_workers: dict[str, str] = {}
        """Worker label -> file worker, to rebuild index keys of steps no longer in memory."""
        self._ended = False
        self._bad_collections: set[str] = set()

        self.expected_workers: int | None = None
        """``num_workers`` from the collections files (the largest); None until one is read."""
        self.skipped: dict[str, int] = {}
        self.late_parts = 0
        self.forced_steps = 0
        self.last_problem: str | None = None

    # -- TrialReader ---------------------------------------------------------------------------

    @property
    def location(self) -> str:
        return self._storage.location

    @property
    def workers(self) -> list[str]:
        """Every worker seen in an index key so far, as smdebug names them."""
        return sorted(self._file_workers)

    @property
    def pending_steps(self) -> int:
        """Steps seen but not complete yet: how far the slowest worker lags (memory held)."""
        return len(self._pending)

    @property
    def unread_steps(self) -> int:
        """Returned steps whose read locations are still held, waiting for ``read``."""
        return len(self._unread)

    def exists(self) -> bool:
        return self._storage.exists()

    def poll(self) -> list[StepRef]:
        if not self._storage.exists():
            return []
        ended = self._ended or self._storage.key_exists(END_MARKER)
        if self.expected_workers is None:
            self._read_expected_workers()
        self._retry_unparsed()
        listed = self._ingest(self._storage.list_keys(INDEX_PREFIX, self._cursor))
        released = self._release_complete(ended) + self._release_beyond_window()
        refs = [ref for step, pending in released if (ref := self._hand_over(step, pending))]
        self._advance_cursor(listed)
        self._ended = ended
        return refs

    def training_ended(self) -> bool:
        return self._ended and not self._pending

    def read(self, ref: StepRef, wanted: Callable[[str], bool]) -> list[WorkerTensors]:
        parts = self._unread.pop(ref.step, None)
        results = []
        for worker_step in ref.parts:
            part = parts.get(worker_step.worker) if parts is not None else None
            if part is None:
                part_or_error = self._reload_part(ref.step, worker_step)
                if isinstance(part_or_error, WorkerTensors):
                    results.append(part_or_error)
                    continue
                part = part_or_error
            results.append(self._read_part(part, wanted))
        return results

    def close(self) -> None:
        self._pending.clear()
        self._unread.clear()

    # -- listing and completeness ----------------------------------------------------------

    def _read_expected_workers(self) -> None:
        """Take ``_meta.num_workers`` from the collections files written so far (the largest)."""
        found: list[int] = []
        for key in self._storage.list_keys(COLLECTIONS_PREFIX):
            if parse_collections_key(key) is None or key in self._bad_collections:
                continue
            try:
                found.append(_num_workers(self._storage.read_bytes(key)))
            except (OSError, ValueError) as error:
                self._bad_collections.add(key)
                self._problem(
                    "malformed_collections",
                    f"{self._where(key)} cannot be used ({error}); smdebug hooks write "
                    '{"_meta": {"num_workers": N}} there. Steps wait for the other '
                    "collections files or the end marker.",
                )
        if found:
            self.expected_workers = max(found)

    def _retry_unparsed(self) -> None:
        """Retry index files that did not parse, by key: they may vanish from listings."""
        for step, pending in self._pending.items():
            for file_worker in list(pending.retrying):
                self._load_part(step, file_worker, pending)

    def _ingest(self, keys: list[str]) -> list[tuple[str, int]]:
        """Parse the index files not seen yet; return every index key listed with its step."""
        listed = []
        for key in keys:
            parsed = parse_index_key(key)
            if parsed is None:
                continue
            step, file_worker = parsed
            listed.append((key, step))
            if step <= self._returned_through:
                self._late(key)
                continue
            pending = self._pending.setdefault(step, _PendingStep())
            if not pending.knows(file_worker):
                self._file_workers.setdefault(worker_label(file_worker), file_worker)
                self._load_part(step, file_worker, pending)
        return listed

    def _load_part(self, step: int, file_worker: str, pending: _PendingStep) -> None:
        key = index_key(step, file_worker)
        try:
            part = parse_index(self._storage.read_bytes(key), step, file_worker)
        except FileNotFoundError:
            pending.retrying.pop(file_worker, None)
            pending.dropped.add(file_worker)
            self._problem("index_vanished", f"{self._where(key)} was listed, then disappeared.")
            return
        except (OSError, MalformedIndexError) as error:
            attempts = pending.retrying.get(file_worker, 0) + 1
            if attempts <= self._index_retry_polls:
                pending.retrying[file_worker] = attempts
                self.last_problem = f"{self._where(key)}: {error} (will retry)"
                return
            pending.retrying.pop(file_worker, None)
            pending.dropped.add(file_worker)
            self._problem(
                "malformed_index",
                f"{self._where(key)}: {error}. Gave up after {attempts} attempts; worker "
                f"{worker_label(file_worker)} is left out of step {step}. Re-copy the file "
                "from the training job's output if it was damaged in transit.",
            )
            return
        pending.retrying.pop(file_worker, None)
        pending.parts[file_worker] = part

    def _release_complete(self, ended: bool) -> list[tuple[int, _PendingStep]]:
        """Pop the complete steps at the front of the pending ones, in step order.

        A step held back (incomplete, or an index file still being retried) holds back every
        later step too: returning a later one first would make the held one arrive late.
        """
        full_now = self._highest_fully_written()
        released = []
        for step in sorted(self._pending):
            pending = self._pending[step]
            complete = ended or self._fully_written(pending) or step <= self._full_step_seen
            if not complete or pending.retrying:
                break
            released.append((step, self._pending.pop(step)))
        self._full_step_seen = max(self._full_step_seen, full_now)
        return released

    def _fully_written(self, pending: _PendingStep) -> bool:
        expected = self.expected_workers
        return expected is not None and pending.workers_written() >= expected

    def _highest_fully_written(self) -> int:
        """The highest pending step every expected worker has written (-1 if none)."""
        full = [step for step, pending in self._pending.items() if self._fully_written(pending)]
        return max(full, default=-1)

    def _release_beyond_window(self) -> list[tuple[int, _PendingStep]]:
        """Release the oldest incomplete steps while more than the window are waiting."""
        released = []
        while len(self._pending) > self._incomplete_step_window:
            step = min(self._pending)
            pending = self._pending.pop(step)
            for file_worker in pending.retrying:
                self._problem(
                    "malformed_index",
                    f"{self._where(index_key(step, file_worker))} could not be parsed before "
                    "its step was released by the incomplete-step window.",
                )
            self.forced_steps += 1
            self.last_problem = (
                f"step {step} released with {len(pending.parts)} of "
                f"{self.expected_workers} workers: more than {self._incomplete_step_window} "
                "steps were waiting for a worker that may have died."
            )
            released.append((step, pending))
        return released

    def _hand_over(self, step: int, pending: _PendingStep) -> StepRef | None:
        """Record a released step as returned and keep its read locations until it is read."""
        self._returned_through = max(self._returned_through, step)
        if not pending.parts:
            return None
        parts = sorted(pending.parts.values(), key=lambda part: worker_label(part.file_worker))
        self._unread[step] = {worker_label(part.file_worker): part for part in parts}
        while len(self._unread) > self._unread_step_limit:
            del self._unread[next(iter(self._unread))]
        return StepRef(step=step, parts=tuple(part.worker_step() for part in parts))

    def _advance_cursor(self, listed: list[tuple[str, int]]) -> None:
        """Move past the listed keys of returned steps, never past a step still pending.

        Keys sort by step, so the keys of returned steps are a prefix of the listing. Late
        files that sort after the cursor are listed (and counted) once, then passed.
        """
        for key, step in listed:
            if step > self._returned_through:
                break
            self._cursor = key

    def _late(self, key: str) -> None:
        self.late_parts += 1
        self.last_problem = (
            f"{self._where(key)} arrived after its step was returned (a later step was "
            "complete or training had ended); it is ignored."
        )

    # -- reading ----------------------------------------------------------------------------

    def _reload_part(self, step: int, worker_step: WorkerStep) -> _IndexedPart | WorkerTensors:
        """Re-read an index file whose parsed form was dropped (read twice, or read late)."""
        file_worker = self._file_workers.get(worker_step.worker, worker_step.worker)
        key = index_key(step, file_worker)
        try:
            return parse_index(self._storage.read_bytes(key), step, file_worker)
        except (OSError, ValueError) as error:
            return _failed(
                worker_step,
                "missing_index",
                f"{self._where(key)} cannot be read again ({error}); was it deleted?",
            )

    def _read_part(self, part: _IndexedPart, wanted: Callable[[str], bool]) -> WorkerTensors:
        """All wanted tensors of one worker's part, or none and the reason (never raises)."""
        worker_step = part.worker_step()
        result = WorkerTensors(worker_step.worker, part.mode, part.mode_step)
        spans = [span for span in part.spans if wanted(span.name)]
        if not spans:
            return result
        where = self._where(part.event_key)
        try:
            buf = self._storage.read_bytes(part.event_key)
        except FileNotFoundError:
            return _failed(
                worker_step,
                "missing_event_file",
                f"{where} is missing, but {self._where(part.index_file_key)} lists it. The writer "
                "may have been killed between the two files, or the trial was copied partly; "
                "copy the events/ folder too.",
            )
        except (OSError, ValueError) as error:
            return _failed(worker_step, "unreadable_event_file", f"{where}: {error}")
        for span in spans:
            failure = self._decode_span(buf, span, where, wanted, result)
            if failure is not None:
                return _failed(worker_step, *failure)
        return result

    def _decode_span(
        self,
        buf: bytes,
        span: _TensorSpan,
        where: str,
        wanted: Callable[[str], bool],
        result: WorkerTensors,
    ) -> tuple[str, str] | None:
        """Decode one record into ``result``; return ``(reason, message)`` when it fails."""
        try:
            payload = record_payload(
                buf, span.start, span.length, verify_payload=self._verify_payload_crc, where=where
            )
            decoded = decode_event_tensors(payload, wanted)
        except RecordError as error:
            return error.reason, f"tensor {span.name!r}: {error}"
        except ValueError as error:
            return "decode_error", (
                f"tensor {span.name!r} in {where}: {error}. The record is not a tensor as "
                "smdebug writes it; check that the trial was written by smdebug."
            )
        result.tensors.update(decoded)
        return None

    def _where(self, key: str) -> str:
        return f"{self._storage.location.rstrip('/')}/{key}"

    def _problem(self, reason: str, message: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1
        self.last_problem = message


def parse_index(raw: bytes, step: int, file_worker: str) -> _IndexedPart:
    """Check and keep what ``read`` needs from one index file.

    Raises MalformedIndexError naming the first thing that is not what smdebug writes.
    """
    try:
        document = json.loads(raw)
    except ValueError as error:
        raise MalformedIndexError(f"not JSON ({error}; {len(raw)} bytes)") from error
    meta = _field(document, "meta", dict, "the index")
    mode = _field(meta, "mode", str, "meta").strip()
    if mode not in MODES:
        raise MalformedIndexError(f"meta.mode is {mode!r}, expected one of {sorted(MODES)}")
    mode_step = _field(meta, "mode_step", int, "meta")
    payload = document.get("tensor_payload")
    payload = [] if payload is None else payload
    if not isinstance(payload, list):
        raise MalformedIndexError("tensor_payload is not a list")
    spans = tuple(_span(entry, position) for position, entry in enumerate(payload))
    event_key = _field(meta, "event_file_name", str, "meta") if spans else ""
    if spans and not is_safe_key(event_key):
        raise MalformedIndexError(
            f"meta.event_file_name {event_key!r} is not a relative path inside the trial"
        )
    return _IndexedPart(step, file_worker, mode, mode_step, event_key, spans)


def _span(entry: Any, position: int) -> _TensorSpan:
    where = f"tensor_payload[{position}]"
    name = _field(entry, "tensorname", str, where)
    start = _field(entry, "start_idx", int, where)
    length = _field(entry, "length", int, where)
    return _TensorSpan(name, start, length)


def _field(container: Any, name: str, kind: type[Any], where: str) -> Any:
    """``container[name]`` checked to be a ``kind`` (bools are not ints here)."""
    if not isinstance(container, dict):
        raise MalformedIndexError(f"{where} is not an object")
    value = container.get(name)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise MalformedIndexError(
            f"{where}.{name} should be a {kind.__name__}, found {type(value).__name__}"
        )
    return value


def _num_workers(raw: bytes) -> int:
    """``_meta.num_workers`` of a collections file (smdebug's default is 1)."""
    document = json.loads(raw)
    meta = document.get("_meta", {}) if isinstance(document, dict) else None
    if not isinstance(meta, dict):
        raise ValueError("no _meta object")
    workers = meta.get("num_workers", 1)
    if isinstance(workers, bool) or not isinstance(workers, int | str):
        raise ValueError(f"_meta.num_workers is {workers!r}")
    count = int(workers)
    if count < 1:
        raise ValueError(f"_meta.num_workers is {count}, expected at least 1")
    return count


def _failed(worker_step: WorkerStep, reason: str, message: str) -> WorkerTensors:
    return WorkerTensors(
        worker_step.worker,
        worker_step.mode,
        worker_step.mode_step,
        error=message,
        error_reason=reason,
    )
