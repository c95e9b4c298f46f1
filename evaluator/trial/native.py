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

Two part loaders share that logic. By default a listed index key is loaded from its index file
and ``read`` then opens the event file: two reads per (step, worker), free on a local disk. On
S3 each read is a billed request with tens of milliseconds of latency, so ``index_free=True``
uses the index key only as the signal that (step, worker) is complete (smdebug writes the event
file first) and GETs the event file alone: it describes itself (each record carries the tensor
name, mode and mode step), and its bytes are kept for ``read``. That is one GET per (step,
worker).

``marker_in_listing=True`` saves the end-marker HEAD too. ``training_job_end.ts`` sorts after
every ``index/`` key, so listing the trial root after the cursor returns the new index keys and
then the marker if it is there: one request answers both questions. A listing is not a snapshot,
so seeing the marker is followed by one more index listing (index files written just before it
may have landed while the first one ran). Should anything else sort after ``index/`` in the trial
(a folder some tool added), the root listing would page through it on every poll, so the reader
goes back to listing ``index/`` and HEADing the marker only after a listing brought nothing new.
Per poll on S3, once the collections files are read:

- the first poll: 1 HEAD for the marker (so that a finished trial needs no second listing);
- a poll that finds new steps: 1 LIST (one more per further 1000 keys) + 1 GET per new part;
- an idle poll: 1 LIST; the poll that sees the marker: 2 LIST.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any, NamedTuple, Protocol, runtime_checkable

from evaluator.trial.interface import StepRef, WorkerStep, WorkerTensors
from evaluator.trial.layout import (
    COLLECTIONS_PREFIX,
    END_MARKER,
    INDEX_PREFIX,
    event_key,
    index_key,
    is_safe_key,
    parse_collections_key,
    parse_index_key,
    worker_label,
)
from evaluator.trial.records import (
    HEADER_SIZE,
    RECORD_OVERHEAD,
    RecordError,
    iter_records,
    record_payload,
)
from evaluator.trial.tensors import (
    EventValue,
    decode_event_tensors,
    decode_tensor_at,
    describe_event,
)

MODES = frozenset({"TRAIN", "EVAL", "PREDICT", "GLOBAL"})
MODE_NUMBERS = {"1": "TRAIN", "2": "EVAL", "3": "PREDICT", "4": "GLOBAL"}
"""smdebug's ``ModeKeys`` values, as its writer puts them into the ``mode`` plugin data."""

INDEX_RETRY_POLLS = 3
"""Polls an unparsable index file is retried before it is dropped. smdebug renames finished
files into place, so a bad one is usually corrupt for good; retrying covers copy tools that
write in place. While it is retried its step is held back, so that step is never returned
without it by mistake. Index-free, the same bound applies to a missing or unparsable event file."""

INCOMPLETE_STEP_WINDOW = 1000
"""Incomplete steps kept waiting before the oldest are released anyway (smdebug's
``INCOMPLETE_STEP_WAIT_WINDOW``): a worker that died must not stall the rule or grow memory."""

STEPS_PER_POLL = 256
"""New steps one poll takes on. A finished trial or a reader far behind is handed over in
slices of this many steps (``backlog`` says more are ready), so the work and memory of one poll
are bounded however long the trial is: listings stop early, index and event files of later
steps are not loaded yet, and nothing waits in memory for steps the loop has not asked for."""

PROBLEM_EXAMPLES_KEPT = 32
"""Distinct reasons whose latest message is kept for the status, as the rule keeps its own."""

FIRST_SLICE_STEPS = 8
"""Index-free, the steps the first poll takes on, before the size of a step's files is known."""

UNREAD_STEP_LIMIT = 1024
"""Returned steps whose read locations are kept until read. Beyond that the oldest are dropped;
``read`` of such a step re-reads its index files, so this bounds memory without losing data."""

EVENT_HEAD_BYTES = 16 << 20
"""Index-free, how much of an event file the first GET asks for (a ranged GET). Files this
small (labels and predictions of any usual batch) arrive whole in one request. A larger file
holds tensors the rule may not want (weights, say): its index is read for the layout and the
wanted tensors are fetched by range when read, rather than downloading all of it."""

HELD_BYTES_LIMIT = 256 << 20
"""Index-free, event-file bytes kept between ``poll`` and ``read``. Replaying a finished trial
returns every step at once; beyond this, parts keep only their layout and ``read`` fetches the
wanted tensors by range (one more request each) instead of memory growing with the trial."""

RANGE_GAP_BYTES = 256 << 10
"""Wanted records closer than this are fetched in one ranged read: a request costs more than a
few hundred KiB of unwanted bytes."""


class TrialStorage(Protocol):
    """What the reader needs from where the trial lives (a local folder or an S3 prefix).

    Keys are relative to the trial root and use ``/``. A storage raises ``StorageUnavailable``
    for failures that may pass (throttling, 5xx, network) and ``TrialError`` for those that will
    not (no such bucket, access denied).
    """

    @property
    def location(self) -> str:
        """The trial's path or URI, for messages."""
        ...

    def exists(self) -> bool:
        """Whether the trial root exists yet."""
        ...

    def list_keys(
        self, prefix: str, start_after: str | None = None, max_keys: int | None = None
    ) -> list[str]:
        """Keys under ``prefix`` in lexical order, strictly after ``start_after``.

        With ``max_keys`` the storage may stop once it has at least that many (the first ones
        in order); fewer than ``max_keys`` means the listing reached the end.
        """
        ...

    def read_bytes(self, key: str) -> bytes:
        """The whole object; FileNotFoundError when missing."""
        ...

    def key_exists(self, key: str) -> bool:
        """Whether the object exists."""
        ...


@runtime_checkable
class RangeReadable(Protocol):
    """A storage that can return part of an object, where a whole object costs real money."""

    def read_range(self, key: str, start: int, length: int) -> tuple[bytes, int]:
        """Up to ``length`` bytes of ``key`` from ``start`` and the object's total size.

        Fewer bytes come back at the end of the object; FileNotFoundError when it is missing.
        """
        ...


class StorageUnavailable(OSError):
    """A storage call failed in a way that may pass (throttled, 5xx, network) after retries.

    ``poll`` answers it by returning nothing and trying again next time; a part whose file
    cannot be fetched is retried on later polls like a malformed one, then skipped.
    """


class _TensorSpan(NamedTuple):
    """Where one tensor's record lies in its event file (a named tuple: one per record read)."""

    name: str
    start: int
    length: int
    tensor_start: int = -1
    tensor_stop: int = -1
    """Index-free: where the record's ``TensorProto`` lies in the event file, found while the
    file was scanned, so that reading held bytes decodes just the tensor."""


@dataclass(frozen=True)
class _IndexedPart:
    """One worker's part of one step: what ``read`` needs to find its tensors.

    Described by its index file, or index-free by its event file, whose bytes from offset 0
    (the whole file, or its first ``EVENT_HEAD_BYTES``) are then kept in ``data`` until read.
    """

    step: int
    file_worker: str
    mode: str
    mode_step: int
    event_key: str
    spans: tuple[_TensorSpan, ...]
    data: bytes | None = field(default=None, repr=False, compare=False)

    @property
    def index_file_key(self) -> str:
        return index_key(self.step, self.file_worker)

    @cached_property
    def worker_step(self) -> WorkerStep:
        """Built once: a part is handed over and read, and both need it."""
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
    """Loaded parts, by file worker."""
    retrying: dict[str, int] = field(default_factory=dict)
    """File workers whose part could not be loaded yet -> failed attempts."""
    first_failed: dict[str, float] = field(default_factory=dict)
    """File workers whose part failed to load -> when it first did (the reader's clock)."""
    dropped: set[str] = field(default_factory=set)
    """File workers whose part was given up on: they did write the step, we cannot read it."""

    def workers_written(self) -> int:
        return len(self.parts) + len(self.retrying) + len(self.dropped)

    def knows(self, file_worker: str) -> bool:
        return (
            file_worker in self.parts or file_worker in self.retrying or file_worker in self.dropped
        )


class MalformedIndexError(ValueError):
    """An index file that is not what smdebug writes; the message says what is wrong."""


class MalformedEventFileError(ValueError):
    """An event file whose records do not describe one smdebug step; the message says why."""


_Loaded = _IndexedPart | OSError | ValueError
"""What loading one part gives: the part, or the error to retry or report."""


class NativeTrialReader:
    """Reads an smdebug trial through a :class:`TrialStorage`; implements ``TrialReader``.

    Counters for status and metrics: ``skipped`` (reason -> files given up on), ``late_parts``
    (worker files that arrived after their step was returned), ``forced_steps`` (steps released
    by the incomplete-step window), ``storage_errors`` (polls that found the storage
    unavailable), ``unheld_parts`` (index-free parts over ``held_bytes_limit``, read by range)
    and ``last_problem`` (the latest such event, in words).
    """

    def __init__(
        self,
        storage: TrialStorage,
        *,
        verify_payload_crc: bool = False,
        index_retry_polls: int = INDEX_RETRY_POLLS,
        incomplete_step_window: int = INCOMPLETE_STEP_WINDOW,
        unread_step_limit: int = UNREAD_STEP_LIMIT,
        index_free: bool = False,
        marker_in_listing: bool = False,
        fetch_threads: int = 1,
        event_head_bytes: int = EVENT_HEAD_BYTES,
        held_bytes_limit: int = HELD_BYTES_LIMIT,
        steps_per_poll: int = STEPS_PER_POLL,
        retry_seconds: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._storage = storage
        self._ranges = storage if isinstance(storage, RangeReadable) else None
        """Checked once: a runtime Protocol check costs microseconds on every part."""
        self._verify_payload_crc = verify_payload_crc
        self._index_retry_polls = index_retry_polls
        self._incomplete_step_window = max(1, incomplete_step_window)
        self._unread_step_limit = max(1, unread_step_limit)
        self._index_free = index_free
        self._list_root = marker_in_listing
        """Whether the root listing (index keys, then the marker) is used; cleared for good when
        other keys show up there."""
        self._head_when_idle = marker_in_listing
        self._fetch_threads = max(1, fetch_threads)
        self._event_head_bytes = max(RECORD_OVERHEAD, event_head_bytes)
        self._held_bytes_limit = max(0, held_bytes_limit)
        self._steps_per_poll = max(1, steps_per_poll)
        self._retry_seconds = max(0.0, retry_seconds)
        """A part that fails to load is retried for at least ``index_retry_polls`` polls and
        at least this long: polls come fast while a backlog is read, and a file still being
        copied needs time, not polls."""
        self._clock = clock
        self._backlog = False
        """Whether the last poll left listed steps for the next one."""
        self._bytes_loaded = 0
        self._parts_with_bytes = 0
        """Event-file bytes fetched at poll time so far, and the parts they came with."""

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
        self._listed_once = False
        self._bad_collections: set[str] = set()
        self._held_bytes = 0
        self._executor: ThreadPoolExecutor | None = None

        self.expected_workers: int | None = None
        """``num_workers`` from the collections files (the largest); None until one is read."""
        self.skipped: dict[str, int] = {}
        self.late_parts = 0
        self.forced_steps = 0
        self.storage_errors = 0
        self.unheld_parts = 0
        self.last_problem: str | None = None
        self.problem_examples: dict[str, str] = {}
        """The latest message per reason in ``skipped`` (``PROBLEM_EXAMPLES_KEPT`` reasons)."""

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

    @property
    def held_bytes(self) -> int:
        """Event-file bytes kept for steps not read yet (index-free only)."""
        return self._held_bytes

    def exists(self) -> bool:
        return self._storage.exists()

    def poll(self) -> list[StepRef]:
        try:
            return self._poll()
        except StorageUnavailable as error:
            # Nothing was returned and the cursor did not move: the next poll starts over.
            self.storage_errors += 1
            self.last_problem = f"{self.location}: {error}; trying again on the next poll"
            return []

    @property
    def backlog(self) -> bool:
        """Whether steps are ready beyond what the last poll returned: poll again now."""
        return self._backlog

    def training_ended(self) -> bool:
        return self._ended and not self._pending and not self._backlog

    def read(self, ref: StepRef, wanted: Callable[[str], bool]) -> list[WorkerTensors]:
        parts = self._unread.pop(ref.step, None)
        if parts is not None:
            self._unhold(parts.values())
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
        self._held_bytes = 0
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None
        close_storage = getattr(self._storage, "close", None)  # a local folder's watches
        if close_storage is not None:
            close_storage()

    # -- listing and completeness ----------------------------------------------------------

    def _poll(self) -> list[StepRef]:
        if not self._storage.exists():
            return []
        # Looked for before the first listing in any mode: replaying a finished trial then needs
        # no second listing to make sure of the files written before the marker.
        head_first = not self._head_when_idle or not self._listed_once
        ended = self._ended or (head_first and self._storage.key_exists(END_MARKER))
        if self.expected_workers is None:
            self._read_expected_workers()
        retries = self._unparsed()
        index_keys, marker, cut = self._list_index()
        self._listed_once = True
        listed, fresh = self._scan(index_keys, cut)
        self._load(retries + fresh)
        if not ended and marker is None and not fresh and not head_first:
            marker = self._storage.key_exists(END_MARKER)
        if not ended and marker:
            # Index files written just before the marker may have landed while that listing
            # ran; one started now sees all of them.
            ended = True
            keys, cut = self._list_bounded(INDEX_PREFIX, self._cursor)
            listed, fresh = self._scan(keys, cut)
            self._load(fresh)
        released = self._release_complete(ended) + self._release_beyond_window()
        refs = [ref for step, pending in released if (ref := self._hand_over(step, pending))]
        self._advance_cursor(listed)
        self._ended = ended
        return refs

    def _workers_per_step(self) -> int:
        """Parts a step is expected to have: the collections files' count, or the workers seen."""
        return max(self.expected_workers or 1, len(self._file_workers))

    def _step_bound(self) -> int:
        """New steps to take on per poll: ``steps_per_poll``, fewer where each step's event
        files are held in memory (index-free) and that many would not fit ``held_bytes_limit``."""
        if not self._parts_with_bytes:
            # Index-free, nothing says yet how large a step's files are: a short first slice
            # measures them before a long one could hold too many.
            return (
                min(self._steps_per_poll, FIRST_SLICE_STEPS)
                if self._index_free
                else self._steps_per_poll
            )
        step_bytes = self._bytes_loaded / self._parts_with_bytes * self._workers_per_step()
        return max(1, min(self._steps_per_poll, int(self._held_bytes_limit // max(step_bytes, 1))))

    def _list_bounded(self, prefix: str, start_after: str | None) -> tuple[list[str], bool]:
        """Keys after ``start_after``, enough for ``steps_per_poll`` new steps (and one key
        more), and whether the listing may have been cut short.

        A cut listing whose index keys span at most one step is repeated with a larger bound
        (a step with more workers than expected): a step is only taken on whole.
        """
        limit = self._step_bound() * self._workers_per_step() + 1
        while True:
            keys = self._storage.list_keys(prefix, start_after, limit)
            if len(keys) < limit:
                return keys, False
            steps = {parsed[0] for key in keys if (parsed := parse_index_key(key))}
            if len(steps) > 1:
                return keys, True
            limit *= 4

    def _list_index(self) -> tuple[list[str], bool | None, bool]:
        """Index keys after the cursor, whether the end marker was seen (None: not looked),
        and whether the listing may have been cut short by the per-poll bound.

        The root listing starts after the cursor, or after ``index/`` itself, which skips the
        ``collections/`` and ``events/`` keys that sort before it.
        """
        if not self._list_root:
            keys, cut = self._list_bounded(INDEX_PREFIX, self._cursor)
            return keys, None, cut
        keys, cut = self._list_bounded("", self._cursor or INDEX_PREFIX)
        index_keys = [key for key in keys if key.startswith(INDEX_PREFIX)]
        others = [key for key in keys if not key.startswith(INDEX_PREFIX) and key != END_MARKER]
        if others:
            self._list_root = False
            self.last_problem = (
                f"{self._where(others[0])} and {len(others) - 1} other key(s) sort after index/ "
                "in the trial: they are not smdebug's, so from now on only index/ is listed and "
                "the end marker is checked separately when a poll finds nothing new."
            )
        return index_keys, END_MARKER in keys, cut

    def _read_expected_workers(self) -> None:
        """Take ``_meta.num_workers`` from the collections files written so far (the largest)."""
        found: list[int] = []
        for key in self._storage.list_keys(COLLECTIONS_PREFIX):
            if parse_collections_key(key) is None or key in self._bad_collections:
                continue
            try:
                found.append(_num_workers(self._storage.read_bytes(key)))
            except StorageUnavailable:
                raise  # the file may be fine: try it again next poll
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

    def _unparsed(self) -> list[tuple[int, str]]:
        """Parts to load again, by key: their files may vanish from listings."""
        return [
            (step, file_worker)
            for step, pending in self._pending.items()
            for file_worker in pending.retrying
        ]

    def _scan(
        self, keys: list[str], cut: bool = False
    ) -> tuple[list[tuple[str, int]], list[tuple[int, str]]]:
        """Every index key taken on with its step, and the (step, file worker) parts not seen yet.

        At most ``steps_per_poll`` steps not pending yet are taken on; the rest wait for the
        next poll (``backlog``). A listing that may have been ``cut`` short may end in the
        middle of a step's keys, so its last step waits too: a step is only ever taken on with
        every key listed for it, or training's end could release it without some of its parts.
        """
        parsed_keys = [(key, parsed) for key in keys if (parsed := parse_index_key(key))]
        self._backlog = False
        if cut and parsed_keys:
            last_step = parsed_keys[-1][1][0]
            parsed_keys = [item for item in parsed_keys if item[1][0] != last_step]
            self._backlog = True
        listed = []
        fresh = []
        new_steps = 0
        bound = self._step_bound()
        for key, (step, file_worker) in parsed_keys:
            if step <= self._returned_through:
                listed.append((key, step))
                self._late(key)
                continue
            pending = self._pending.get(step)
            if pending is None:
                if new_steps >= bound:
                    self._backlog = True
                    break
                new_steps += 1
                pending = self._pending[step] = _PendingStep()
            listed.append((key, step))
            if not pending.knows(file_worker):
                self._file_workers.setdefault(worker_label(file_worker), file_worker)
                fresh.append((step, file_worker))
        return listed, fresh

    def _load(self, parts: list[tuple[int, str]]) -> None:
        """Load parts (in parallel when allowed) and record each outcome in listing order."""
        for (step, file_worker), loaded in zip(parts, self._fetch_all(parts), strict=True):
            pending = self._pending.get(step)
            if pending is not None:
                self._settle(step, file_worker, pending, loaded)

    def _fetch_all(self, parts: list[tuple[int, str]]) -> list[_Loaded]:
        """The outcome of loading each part, in order; only storage reads run in threads."""
        if len(parts) <= 1 or self._fetch_threads <= 1:
            return [self._fetch(step, file_worker) for step, file_worker in parts]
        if self._executor is None:
            self._executor = ThreadPoolExecutor(self._fetch_threads, "trial-fetch")
        return list(self._executor.map(lambda part: self._fetch(*part), parts))

    def _fetch(self, step: int, file_worker: str) -> _Loaded:
        """Load one part; errors that retrying may cure are returned, not raised."""
        try:
            if self._index_free:
                return self._fetch_event_part(step, file_worker)
            key = index_key(step, file_worker)
            return parse_index(self._storage.read_bytes(key), step, file_worker)
        except (OSError, ValueError) as error:
            return error

    def _fetch_event_part(self, step: int, file_worker: str) -> _IndexedPart:
        """One part from its event file alone: one GET, unless the file is large or empty."""
        key = event_key(step, file_worker)
        head, size = self._read_head(key)
        if size > len(head):
            part = self._fetch_index(step, file_worker)
            return replace(part, data=head if part.event_key == key else None)
        described = scan_event_file(
            head, step, where=self._where(key), verify_payload=self._verify_payload_crc
        )
        if described is None:
            # No tensor record, so nothing says the mode: smdebug's index does.
            return self._fetch_index(step, file_worker)
        mode, mode_step, spans = described
        return _IndexedPart(step, file_worker, mode, mode_step, key, spans, data=head)

    def _fetch_index(self, step: int, file_worker: str) -> _IndexedPart:
        return parse_index(
            self._storage.read_bytes(index_key(step, file_worker)), step, file_worker
        )

    def _read_head(self, key: str) -> tuple[bytes, int]:
        if self._ranges is not None:
            return self._ranges.read_range(key, 0, self._event_head_bytes)
        data = self._storage.read_bytes(key)
        return data, len(data)

    def _settle(self, step: int, file_worker: str, pending: _PendingStep, loaded: _Loaded) -> None:
        """Keep a loaded part, or count a failed attempt and give up after the last one."""
        if isinstance(loaded, _IndexedPart):
            pending.retrying.pop(file_worker, None)
            pending.parts[file_worker] = self._hold(loaded)
            return
        key = self._source_key(step, file_worker, loaded)
        if isinstance(loaded, FileNotFoundError) and not self._index_free:
            pending.retrying.pop(file_worker, None)
            pending.dropped.add(file_worker)
            self._problem("index_vanished", f"{self._where(key)} was listed, then disappeared.")
            return
        detail = _detail(loaded, self._where(key))
        attempts = pending.retrying.get(file_worker, 0) + 1
        first_failed = pending.first_failed.setdefault(file_worker, self._clock())
        if (
            attempts <= self._index_retry_polls
            or self._clock() - first_failed < self._retry_seconds
        ):
            pending.retrying[file_worker] = attempts
            self.last_problem = f"{detail} (will retry)"
            return
        pending.retrying.pop(file_worker, None)
        pending.dropped.add(file_worker)
        reason = self._skip_reason(loaded)
        hint = (
            " The event file is written before its index file, so it should be there; was it "
            "deleted, or the trial copied partly?"
            if reason == "missing_event_file"
            else " Re-copy the file from the training job's output if it was damaged in transit."
        )
        self._problem(
            reason,
            f"{detail}. Gave up after {attempts} attempts; worker {worker_label(file_worker)} is "
            f"left out of step {step}.{hint}",
        )

    def _source_key(self, step: int, file_worker: str, error: Exception | None = None) -> str:
        """The file a part is loaded from (index-free: the event file, unless its index failed)."""
        if self._index_free and not isinstance(error, MalformedIndexError):
            return event_key(step, file_worker)
        return index_key(step, file_worker)

    def _skip_reason(self, error: Exception) -> str:
        if not self._index_free or isinstance(error, MalformedIndexError):
            return "malformed_index"
        if isinstance(error, FileNotFoundError):
            return "missing_event_file"
        if isinstance(error, OSError):
            return "unreadable_event_file"
        return "malformed_event_file"

    def _hold(self, part: _IndexedPart) -> _IndexedPart:
        """Keep a part's bytes for ``read`` while within the budget, else only its layout."""
        if part.data is None:
            return part
        self._bytes_loaded += len(part.data)
        self._parts_with_bytes += 1
        if self._held_bytes + len(part.data) > self._held_bytes_limit:
            self.unheld_parts += 1
            return replace(part, data=None)
        self._held_bytes += len(part.data)
        return part

    def _unhold(self, parts: Iterable[_IndexedPart]) -> None:
        self._held_bytes -= sum(len(part.data) for part in parts if part.data is not None)

    def _release_complete(self, ended: bool) -> list[tuple[int, _PendingStep]]:
        """Pop the complete steps at the front of the pending ones, in step order.

        A step held back (incomplete, or a part still being retried) holds back every later
        step too: returning a later one first would make the held one arrive late.
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
                    "malformed_event_file" if self._index_free else "malformed_index",
                    f"{self._where(self._source_key(step, file_worker))} could not be "
                    "parsed before its step was released by the incomplete-step window.",
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
            self._unhold(self._unread.pop(next(iter(self._unread))).values())
        return StepRef(step=step, parts=tuple(part.worker_step for part in parts))

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
        """Load a part again whose form was dropped (read twice, or read late)."""
        file_worker = self._file_workers.get(worker_step.worker, worker_step.worker)
        loaded = self._fetch(step, file_worker)
        if isinstance(loaded, _IndexedPart):
            return loaded
        key = self._source_key(step, file_worker, loaded)
        reason = "missing_index" if not self._index_free else self._skip_reason(loaded)
        return _failed(
            worker_step,
            reason,
            f"{self._where(key)} cannot be read again ({loaded}); was it deleted?",
        )

    def _read_part(self, part: _IndexedPart, wanted: Callable[[str], bool]) -> WorkerTensors:
        """All wanted tensors of one worker's part, or none and the reason (never raises)."""
        worker_step = part.worker_step
        result = WorkerTensors(worker_step.worker, part.mode, part.mode_step)
        spans = [span for span in part.spans if wanted(span.name)]
        if not spans:
            return result
        where = self._where(part.event_key)
        data = part.data
        if data is not None:
            # Scanned index-free: the framing was checked then, the tensors are decoded now.
            held = [s for s in spans if s.tensor_start >= 0 and s.tensor_stop <= len(data)]
            for span in held:
                try:
                    result.tensors[span.name] = decode_tensor_at(
                        data, span.tensor_start, span.tensor_stop, span.name
                    )
                except ValueError as error:
                    return _failed(worker_step, *_decode_failure(span, where, error))
            if len(held) == len(spans):
                return result
            spans = [span for span in spans if span not in held]
        try:
            located = self._locate(part, spans, where)
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
        for buf, span, span_where in located:
            failure = self._decode_span(buf, span, span_where, wanted, result)
            if failure is not None:
                return _failed(worker_step, *failure)
        return result

    def _locate(
        self, part: _IndexedPart, spans: list[_TensorSpan], where: str
    ) -> list[tuple[bytes, _TensorSpan, str]]:
        """The bytes holding each wanted record, with the span relative to those bytes.

        Held bytes are used where they cover a record. Otherwise a storage that reads ranges
        fetches just the wanted records (neighbours in one request); one that does not reads
        the whole file, which on a local disk is the cheap way.
        """
        data = part.data or b""
        missing = [span for span in spans if _valid(span) and span.start + span.length > len(data)]
        if missing and self._ranges is None:
            whole = self._storage.read_bytes(part.event_key)
            return [(whole, span, where) for span in spans]
        fetched: dict[_TensorSpan, tuple[bytes, _TensorSpan, str]] = {}
        if missing and self._ranges is not None:
            for run in _runs(missing):
                first = run[0].start
                stop = max(span.start + span.length for span in run)
                chunk, _size = self._ranges.read_range(part.event_key, first, stop - first)
                chunk_where = f"{where} (bytes {first}-{stop - 1})"
                for span in run:
                    fetched[span] = (chunk, span._replace(start=span.start - first), chunk_where)
        return [fetched.get(span) or (data, span, where) for span in spans]

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
        except ValueError as error:
            return _decode_failure(span, where, error)
        result.tensors.update(decoded)
        return None

    def _where(self, key: str) -> str:
        return f"{self._storage.location.rstrip('/')}/{key}"

    def _problem(self, reason: str, message: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1
        self.last_problem = message
        if reason in self.problem_examples or len(self.problem_examples) < PROBLEM_EXAMPLES_KEPT:
            self.problem_examples[reason] = message


def scan_event_file(
    buf: bytes, step: int, *, where: str = "", verify_payload: bool = False
) -> tuple[str, int, tuple[_TensorSpan, ...]] | None:
    """``(mode, mode_step, spans)`` of an event file, as its index would give them.

    None when the file holds no tensor record (then only the index knows the mode). Raises
    RecordError for broken framing (``truncated`` for a short file) and MalformedEventFileError
    when the records are not one smdebug step. A missing mode is GLOBAL and a missing mode step
    is the global step, as smdebug's own event reader assumes.
    """
    described: tuple[str, int] | None = None
    spans: list[_TensorSpan] = []
    for offset, payload in iter_records(buf, verify_payload=verify_payload, where=where):
        try:
            event_step, values = describe_event(payload)
        except ValueError as error:
            raise MalformedEventFileError(
                f"record at offset {offset} of {where}: {error}; not an smdebug Event"
            ) from error
        if values and event_step != step:
            raise MalformedEventFileError(
                f"record at offset {offset} of {where} is for step {event_step}, but the file is "
                f"named for step {step}: it was not written for this step"
            )
        for value in values:
            mode = _mode_of(value, step, offset, where)
            if described is None:
                described = mode
            elif mode != described:
                raise MalformedEventFileError(
                    f"record at offset {offset} of {where} has mode {mode[0]} step {mode[1]}, "
                    f"an earlier one {described[0]} step {described[1]}: smdebug writes one "
                    "mode step per file"
                )
            base = offset + HEADER_SIZE
            spans.append(
                _TensorSpan(
                    value.tag,
                    offset,
                    len(payload) + RECORD_OVERHEAD,
                    base + value.tensor_start,
                    base + value.tensor_stop,
                )
            )
    if described is None:
        return None
    return described[0], described[1], tuple(spans)


def _mode_of(value: EventValue, step: int, offset: int, where: str) -> tuple[str, int]:
    raw_mode = value.plugins.get("mode")
    mode = "GLOBAL" if raw_mode is None else MODE_NUMBERS.get(raw_mode.strip())
    if mode is None:
        raise MalformedEventFileError(
            f"tensor {value.tag!r} at offset {offset} of {where} has mode {raw_mode!r}; smdebug "
            f"writes one of {sorted(MODE_NUMBERS)} (its ModeKeys)"
        )
    raw_step = value.plugins.get("mode_step")
    try:
        mode_step = step if raw_step is None else int(raw_step)
    except ValueError as error:
        raise MalformedEventFileError(
            f"tensor {value.tag!r} at offset {offset} of {where} has mode_step {raw_step!r}, "
            "not an integer"
        ) from error
    return mode, mode_step


def _decode_failure(span: _TensorSpan, where: str, error: ValueError) -> tuple[str, str]:
    """``(reason, message)`` for a record that could not be decoded."""
    if isinstance(error, RecordError):
        return error.reason, f"tensor {span.name!r}: {error}"
    return "decode_error", (
        f"tensor {span.name!r} in {where}: {error}. The record is not a tensor as "
        "smdebug writes it; check that the trial was written by smdebug."
    )


def _valid(span: _TensorSpan) -> bool:
    """Whether a span can be fetched at all; others are left to ``record_payload`` to report."""
    return span.start >= 0 and span.length >= RECORD_OVERHEAD


def _runs(spans: list[_TensorSpan]) -> list[list[_TensorSpan]]:
    """Spans grouped into runs that one ranged read covers (gaps under ``RANGE_GAP_BYTES``)."""
    runs: list[list[_TensorSpan]] = []
    stop = 0
    for span in sorted(spans, key=lambda span: span.start):
        if runs and span.start <= stop + RANGE_GAP_BYTES:
            runs[-1].append(span)
            stop = max(stop, span.start + span.length)
        else:
            runs.append([span])
            stop = span.start + span.length
    return runs


def _detail(error: Exception, where: str) -> str:
    """An error in words, naming the file unless the message already does."""
    if isinstance(error, FileNotFoundError):
        return f"{where} is missing"
    text = str(error) or type(error).__name__
    return text if where in text else f"{where}: {text}"


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
