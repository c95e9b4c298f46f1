"""The native trial reader: follows a live smdebug trial at a cost that stays flat.

smdebug's own reader re-walks the whole index tree on every refresh and keeps every step it has
ever seen, so following a long run gets slower and bigger with each step. This reader keeps a
cursor instead: each poll lists only the index keys after the last step it returned, loads the
new parts, and keeps state only for the steps it has not returned yet (plus the read locations
of returned steps that were not read yet). Memory and per-poll cost depend on how far the
slowest worker lags behind, never on how many steps were consumed.

The pieces it drives: ``StepCompleteness`` decides when a step is complete (smdebug's rule,
made safe on a live folder); ``PartFiles`` loads each (step, worker) from its event file, one
read or GET per part, and reads its tensors; ``ProblemLog`` counts and explains whatever could
not be used. What is left here is talking to the storage: listing, retrying, holding bytes.

The end marker is checked *before* listing. The marker is written after the last index file,
so a listing that starts after we saw it contains every file.

``marker_in_listing=True`` (S3) saves the end-marker HEAD too. ``training_job_end.ts`` sorts
after every ``index/`` key, so listing the trial root after the cursor returns the new index
keys and then the marker if it is there: one request answers both questions. A listing is not a
snapshot, so seeing the marker is followed by one more index listing (index files written just
before it may have landed while the first one ran). Should anything else sort after ``index/``
in the trial (a folder some tool added), the root listing would page through it on every poll,
so the reader goes back to listing ``index/`` and HEADing the marker only after a listing
brought nothing new. Per poll on S3, once the collections files are read:

- the first poll: 1 HEAD for the marker (so that a finished trial needs no second listing);
- a poll that finds new steps: 1 LIST (one more per further 1000 keys) + 1 GET per new part;
- an idle poll: 1 LIST; the poll that sees the marker: 2 LIST.
"""

from __future__ import annotations

import errno
import logging
import os
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Protocol, runtime_checkable

from evaluator.core.text import shortened
from evaluator.trial.completeness import (
    INCOMPLETE_STEP_WINDOW,
    ReleasedStep,
    StepCompleteness,
)
from evaluator.trial.contract import (
    ReportsUnusableEntries,
    StorageUnavailable,
    TrialError,
    TrialStorage,
    UnusableEntry,
)
from evaluator.trial.identity import IdentityOf, TrialIdentity
from evaluator.trial.interface import ReaderProblems, StepRef, WorkerStep, WorkerTensors
from evaluator.trial.layout import (
    COLLECTIONS_PREFIX,
    END_MARKER,
    INDEX_PREFIX,
    parse_collections_key,
    parse_index_key,
    worker_label,
)
from evaluator.trial.parsers import PartLayout, parse_num_workers
from evaluator.trial.parts import EVENT_HEAD_BYTES, PartFiles, failed, skip_reason, source_key
from evaluator.trial.problems import (
    FOREIGN_KEYS,
    LATE_PART,
    MALFORMED_COLLECTIONS,
    STORAGE_UNAVAILABLE,
    UNHELD_PART,
    UNREADABLE_ENTRY,
    ProblemLog,
)
from evaluator.trial.selection import EVERYTHING, PartSelection

PART_RETRY_POLLS = 3
"""Polls a part that fails to load is retried before it is given up on. smdebug renames
finished files into place, so a bad one is usually corrupt for good; retrying covers copy tools
that write in place. While it is retried its step is held back, so that step is never returned
without it by mistake."""

STEPS_PER_POLL = 256
"""New steps one poll takes on. A finished trial or a reader far behind is handed over in
slices of this many steps (``backlog`` says more are ready), so the work and memory of one poll
are bounded however long the trial is: listings stop early, event files of later steps are not
loaded yet, and nothing waits in memory for steps the loop has not asked for."""

FIRST_SLICE_STEPS = 8
"""The steps the first poll takes on, before the size of a step's files is known."""

UNREAD_STEP_LIMIT = 1024
"""Returned steps whose read locations are kept until read. Beyond that the oldest are dropped;
``read`` of such a step loads its files again, so this bounds memory without losing data."""

HELD_BYTES_LIMIT = 256 << 20
"""Event-file bytes kept between ``poll`` and ``read``. Replaying a finished trial returns many
steps at once; beyond this, parts keep only their layout and ``read`` fetches the wanted
tensors again (by range where the storage can) instead of memory growing with the trial.
It is also the most one part's wanted tensors may claim once the rule holds them (at 8 bytes an
element: 32 Mi elements), whatever ``held_bytes_limit`` a reader is given: past it the part is
skipped as ``decode_error`` (``tensors.ElementBudget``)."""

_Loaded = PartLayout | OSError | ValueError
"""What loading one part gives: the part, or the error to retry or report."""


class _Elsewhere:
    """A part another shard reads (``PartSelection``): settled without being loaded, so the
    step's completeness is decided on every worker, as in one process."""


ELSEWHERE = _Elsewhere()
_Held = PartLayout | _Elsewhere


@runtime_checkable
class _CountsUnnamedEntries(Protocol):
    """A storage that names only so many of the entries its listings leave out and counts the
    rest (``LocalStorage``: past ``UNUSABLE_ENTRIES_KEPT``)."""

    @property
    def unnamed_unusable_entries(self) -> int: ...


class NativeTrialReader:
    """Reads an smdebug trial through a :class:`TrialStorage`; implements ``TrialReader``."""

    def __init__(
        self,
        storage: TrialStorage,
        *,
        verify_payload_crc: bool = False,
        part_retry_polls: int = PART_RETRY_POLLS,
        incomplete_step_window: int = INCOMPLETE_STEP_WINDOW,
        unread_step_limit: int = UNREAD_STEP_LIMIT,
        marker_in_listing: bool = False,
        fetch_threads: int = 1,
        event_head_bytes: int = EVENT_HEAD_BYTES,
        held_bytes_limit: int = HELD_BYTES_LIMIT,
        steps_per_poll: int = STEPS_PER_POLL,
        retry_seconds: float = 0.0,
        end_grace: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        selection: PartSelection = EVERYTHING,
    ) -> None:
        self._storage = storage
        self._selection = selection
        """The parts this reader loads; the others are handed over as empty steps."""
        self._files = PartFiles(
            storage,
            part_bytes_limit=HELD_BYTES_LIMIT,
            verify_payload_crc=verify_payload_crc,
            event_head_bytes=event_head_bytes,
        )
        self._steps: StepCompleteness[_Held] = StepCompleteness(
            window=incomplete_step_window, end_grace=end_grace
        )
        self._end_grace = end_grace
        self._wall_clock = wall_clock
        """Unix time, to compare with when the end marker was written (its mtime)."""
        self._problems = ProblemLog()
        self._part_retry_polls = part_retry_polls
        self._retry_seconds = max(0.0, retry_seconds)
        """A part that fails to load is retried for at least ``part_retry_polls`` polls and
        at least this long: polls come fast while a backlog is read, and a file still being
        copied needs time, not polls."""
        self._clock = clock
        self._unread_step_limit = max(1, unread_step_limit)
        self._list_root = marker_in_listing
        """Whether the root listing (index keys, then the marker) is used; cleared for good when
        other keys show up there."""
        self._head_when_idle = marker_in_listing
        self._fetch_threads = max(1, fetch_threads)
        self._held_bytes_limit = max(0, held_bytes_limit)
        self._steps_per_poll = max(1, steps_per_poll)
        self._bytes_loaded = 0
        self._parts_with_bytes = 0
        """Event-file bytes fetched at poll time so far, and the parts they came with."""
        self._held_bytes = 0
        self._attempts: dict[tuple[int, str], tuple[int, float, Exception]] = {}
        """(step, file worker) of parts that failed to load -> (attempts, when the first one
        failed on the reader's clock, the last error)."""
        self._unread: dict[int, dict[str, PartLayout]] = {}
        """Returned steps not read yet: step -> worker label -> part (insertion = step order)."""
        self._file_workers: dict[str, str] = {}
        """Worker label -> file worker, to load again parts of steps no longer in memory."""
        self._listed_once = False
        self._bad_collections: set[str] = set()
        self._executor: ThreadPoolExecutor | None = None
        self._identity = IdentityOf(storage)
        self._collections_workers: set[str] = set()
        """File workers that wrote a collections file: the names of workers that never wrote
        a step (reports only; completeness counts the workers that wrote index files)."""
        self._unnamed_entries = 0
        """Entries the storage's listings left out without naming them: the first is counted
        by the message that says so, the rest are added to ``problems`` (``_merged``)."""
        self._merged: tuple[ReaderProblems, int, ReaderProblems] | None = None

    # -- TrialReader ---------------------------------------------------------------------------

    @property
    def location(self) -> str:
        return self._storage.location

    @property
    def local_path(self) -> str | None:
        return self._storage.local_path

    def exists(self) -> bool:
        """Whether the trial is there; False while its storage is unavailable (as ``poll``
        returns nothing then), which is counted and said like a poll's outage."""
        try:
            return self._storage.exists()
        except StorageUnavailable as error:
            self._problems.notice(
                STORAGE_UNAVAILABLE,
                f"{self.location}: {error}; looking for the trial again on the next poll",
                level=logging.WARNING,
            )
            return False

    def poll(self) -> list[StepRef]:
        try:
            return self._poll()
        except StorageUnavailable as error:
            # Nothing was returned and the cursor did not move: the next poll starts over.
            self._problems.notice(
                STORAGE_UNAVAILABLE,
                f"{self.location}: {error}; trying again on the next poll",
                level=logging.WARNING,
            )
            return []

    @property
    def backlog(self) -> bool:
        """Whether steps are ready beyond what the last poll returned: poll again now."""
        return self._steps.backlog

    def training_ended(self) -> bool:
        return self._steps.finished

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
            results.append(self._files.read(part, wanted))
        return results

    def problems(self) -> ReaderProblems:
        problems = self._problems.snapshot()
        extra = self._unnamed_entries - 1
        if extra <= 0:
            return problems
        if self._merged is None or self._merged[0] is not problems or self._merged[1] != extra:
            skipped = dict(problems.skipped_files)
            skipped[UNREADABLE_ENTRY] = skipped.get(UNREADABLE_ENTRY, 0) + extra
            self._merged = (problems, extra, replace(problems, skipped_files=skipped))
        return self._merged[2]

    def identity(self) -> TrialIdentity | None:
        return self._identity.current()

    def same_trial(self, saved: TrialIdentity) -> bool | None:
        return self._identity.same_as(saved)

    def close(self) -> None:
        self._unread.clear()
        self._held_bytes = 0
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None
        self._storage.close()

    # -- diagnostics: what the reader holds, for tests and benchmarks --------------------------

    @property
    def expected_workers(self) -> int | None:
        """``num_workers`` from the collections files (the largest); None until one is read."""
        return self._steps.expected_workers

    @property
    def pending_steps(self) -> int:
        """Steps seen but not complete yet: how far the slowest worker lags (memory held)."""
        return self._steps.pending_steps

    @property
    def unread_steps(self) -> int:
        """Returned steps whose read locations are still held, waiting for ``read``."""
        return len(self._unread)

    @property
    def held_bytes(self) -> int:
        """Event-file bytes kept for steps not read yet."""
        return self._held_bytes

    # -- one poll ------------------------------------------------------------------------------

    def _poll(self) -> list[StepRef]:
        storage, steps = self._storage, self._steps
        if not storage.exists():
            return []
        # Looked for before the first listing in any mode: replaying a finished trial then needs
        # no second listing to make sure of the files written before the marker.
        head_first = not self._head_when_idle or not self._listed_once
        ended = steps.ended or (head_first and storage.key_exists(END_MARKER))
        if steps.expected_workers is None:
            self._read_expected_workers()
        retries = steps.unsettled()
        keys, marker, cut = self._list_index()
        self._listed_once = True
        fresh = self._take(keys, cut)
        self._load(retries + fresh)
        if not ended and marker is None and not fresh and not head_first:
            marker = storage.key_exists(END_MARKER)
        if not ended and marker:
            # Index files written just before the marker may have landed while that listing
            # ran; one started now sees all of them.
            ended = True
            keys, cut = self._list_bounded(INDEX_PREFIX, steps.cursor)
            self._load(self._take(keys, cut))
        if ended and not steps.ended:
            steps.end(at=self._marker_time())
        self._report_unusable()
        released = steps.release(now=self._wall_clock())
        return [ref for step in released if (ref := self._hand_over(step))]

    def _marker_time(self) -> float:
        """When the end marker was written, asked once when the end is first seen (one HEAD):
        the end's grace runs from then, so an old trial's replay never waits, even for a step
        that lacks a worker in a later slice of a long backlog."""
        now = self._wall_clock()
        written = self._storage.modified_time(END_MARKER)
        return now if written is None else min(written, now)

    def _take(self, keys: list[str], cut: bool) -> list[tuple[int, str]]:
        """Hand a listing to the completeness rule; the parts to load now."""
        listed = [(key, *parsed) for key in keys if (parsed := parse_index_key(key))]
        taken = self._steps.take(listed, new_steps=self._step_bound(), cut=cut)
        for key in taken.late:
            parsed = parse_index_key(key)
            if parsed and not self._selection.part_selected(parsed[0], worker_label(parsed[1])):
                continue
            self._problems.skipped(
                LATE_PART,
                f"{self._files.where(key)} arrived after its step was returned (a later step "
                "was complete or training had ended); it is ignored.",
            )
        for _step, file_worker in taken.fresh:
            self._file_workers.setdefault(worker_label(file_worker), file_worker)
        return taken.fresh

    # -- listing -------------------------------------------------------------------------------

    def _step_bound(self) -> int:
        """New steps to take on per poll: ``steps_per_poll``, fewer where that many steps'
        event files would not fit ``held_bytes_limit``."""
        if not self._parts_with_bytes:
            # Nothing says yet how large a step's files are: a short first slice measures them
            # before a long one could hold too many.
            return min(self._steps_per_poll, FIRST_SLICE_STEPS)
        step_bytes = self._bytes_loaded / self._parts_with_bytes * self._steps.workers_per_step()
        return max(1, min(self._steps_per_poll, int(self._held_bytes_limit // max(step_bytes, 1))))

    def _list_bounded(self, prefix: str, start_after: str | None) -> tuple[list[str], bool]:
        """Keys after ``start_after``, enough for the step bound (and one key more), and
        whether the listing may have been cut short.

        A cut listing whose index keys span at most one step is repeated with a larger bound
        (a step with more workers than expected): a step is only taken on whole.
        """
        limit = self._step_bound() * self._steps.workers_per_step() + 1
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
        cursor = self._steps.cursor
        if not self._list_root:
            keys, cut = self._list_bounded(INDEX_PREFIX, cursor)
            return keys, None, cut
        keys, cut = self._list_bounded("", cursor or INDEX_PREFIX)
        index_keys = [key for key in keys if key.startswith(INDEX_PREFIX)]
        others = [key for key in keys if not key.startswith(INDEX_PREFIX) and key != END_MARKER]
        if others:
            self._list_root = False
            self._problems.notice(
                FOREIGN_KEYS,
                f"{self._files.where(others[0])} and {len(others) - 1} other key(s) sort after "
                "index/ in the trial: they are not smdebug's, so from now on only index/ is "
                "listed and the end marker is checked separately when a poll finds nothing new.",
            )
        return index_keys, END_MARKER in keys, cut

    def _read_expected_workers(self) -> None:
        """Take ``_meta.num_workers`` from the collections files written so far (the largest)."""
        found: list[int] = []
        for key in self._storage.list_keys(COLLECTIONS_PREFIX):
            file_worker = parse_collections_key(key)
            if file_worker is None or key in self._bad_collections:
                continue
            self._collections_workers.add(file_worker)
            try:
                found.append(parse_num_workers(self._storage.read_bytes(key)))
            except StorageUnavailable:
                raise  # the file may be fine: try it again next poll
            except (OSError, ValueError) as error:
                self._bad_collections.add(key)
                self._problems.skipped(
                    MALFORMED_COLLECTIONS,
                    f"{self._files.where(key)} cannot be used ({error}); smdebug hooks write "
                    '{"_meta": {"num_workers": N}} there. Steps wait for the other '
                    "collections files or the end marker.",
                )
        if found:
            self._steps.expected_workers = max(found)

    def _report_unusable(self) -> None:
        """Count each entry the storage's listings left out (a symbolic link that loops), once,
        named or, past what the storage names, by one message; an unusable ``index/`` leaves
        nothing to read, so it is the trial's error."""
        if not isinstance(self._storage, ReportsUnusableEntries):
            return
        for entry in self._storage.take_unusable_entries():
            if entry.key == INDEX_PREFIX:
                raise TrialError(
                    f"Expected the folder {self._files.where(INDEX_PREFIX)} of index files, but "
                    f"it cannot be opened ({entry.why}): it is a symbolic link that loops or "
                    "points at what cannot be read; fix or remove it"
                )
            self._problems.skipped(UNREADABLE_ENTRY, _unusable_message(entry, self._files.where))
        if isinstance(self._storage, _CountsUnnamedEntries):
            unnamed = self._storage.unnamed_unusable_entries
            if unnamed and not self._unnamed_entries:
                self._problems.skipped(
                    UNREADABLE_ENTRY,
                    f"{self.location}: more entries cannot be followed than are named; this one "
                    "and further ones are counted under unreadable_entry, not named. smdebug "
                    "writes no symbolic links: fix or remove the links that loop in the trial",
                )
            self._unnamed_entries = max(self._unnamed_entries, unnamed)

    # -- loading parts -------------------------------------------------------------------------

    def _load(self, parts: list[tuple[int, str]]) -> None:
        """Load parts (in parallel when allowed) and record each outcome in listing order;
        parts other shards read are settled without a read."""
        if not self._selection.everything:
            selected = self._selection.part_selected
            for step, file_worker in parts:
                if not selected(step, worker_label(file_worker)):
                    self._steps.settle(step, file_worker, ELSEWHERE)
            parts = [(s, w) for s, w in parts if selected(s, worker_label(w))]
        for (step, file_worker), loaded in zip(parts, self._fetch_all(parts), strict=True):
            self._settle(step, file_worker, loaded)

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
            return self._files.load(step, file_worker)
        except (OSError, ValueError) as error:
            return error

    def _settle(self, step: int, file_worker: str, loaded: _Loaded) -> None:
        """Keep a loaded part, or count a failed attempt and give up after the last one."""
        if isinstance(loaded, PartLayout):
            self._attempts.pop((step, file_worker), None)
            self._steps.settle(step, file_worker, self._hold(loaded))
            return
        detail = _detail(loaded, self._files.where(source_key(step, file_worker, loaded)))
        now = self._clock()
        attempts, first_failed, _ = self._attempts.get((step, file_worker), (0, now, loaded))
        attempts += 1
        if attempts <= self._part_retry_polls or now - first_failed < self._retry_seconds:
            self._attempts[(step, file_worker)] = (attempts, first_failed, loaded)
            self._problems.retrying(f"{detail} (will retry)")
            return
        self._attempts.pop((step, file_worker), None)
        self._steps.settle(step, file_worker, None)
        reason = skip_reason(loaded)
        self._problems.skipped(
            reason,
            f"{detail}. Gave up after {attempts} attempts; worker {worker_label(file_worker)} is "
            f"left out of step {step}.{_give_up_hint(loaded)}",
        )

    def _hold(self, part: PartLayout) -> PartLayout:
        """Keep a part's bytes for ``read`` while within the budget, else only its layout."""
        if part.data is None:
            return part
        self._bytes_loaded += len(part.data)
        self._parts_with_bytes += 1
        if self._held_bytes + len(part.data) > self._held_bytes_limit:
            self._problems.notice(
                UNHELD_PART,
                f"{self._files.where(part.event_key)}: the event-file bytes held for reading "
                f"are at held_bytes_limit ({self._held_bytes_limit} bytes); its tensors are "
                "fetched again when read.",
                level=logging.DEBUG,
            )
            return replace(part, data=None)
        self._held_bytes += len(part.data)
        return part

    def _unhold(self, parts: Iterable[PartLayout]) -> None:
        self._held_bytes -= sum(len(part.data) for part in parts if part.data is not None)

    # -- handing over and reading --------------------------------------------------------------

    def _hand_over(self, released: ReleasedStep[_Held]) -> StepRef | None:
        """Keep a released step's read locations until it is read; None if nothing is left,
        an empty step when every part is another shard's."""
        step = released.step
        if released.forced:
            self._report_unsettled(released)
        if (released.missing or released.unseen) and self._selection.reports_step(step):
            self._report_missing(released)
        if not released.parts:
            return None
        loaded = {
            part.worker_step.worker: part
            for part in released.parts.values()
            if isinstance(part, PartLayout)
        }
        if not loaded:
            return StepRef(step=step, parts=())
        if len(loaded) > 1:
            loaded = dict(sorted(loaded.items()))
        self._unread[step] = loaded
        while len(self._unread) > self._unread_step_limit:
            self._unhold(self._unread.pop(next(iter(self._unread))).values())
        return StepRef(step=step, parts=tuple(part.worker_step for part in loaded.values()))

    def _report_unsettled(self, released: ReleasedStep[_Held]) -> None:
        step = released.step
        for file_worker in released.unsettled:
            attempt = self._attempts.pop((step, file_worker), None)
            error: Exception = attempt[2] if attempt else FileNotFoundError()
            self._problems.skipped(
                skip_reason(error),
                f"{_detail(error, self._files.where(source_key(step, file_worker, error)))}; "
                "its step was released by the incomplete-step window before it could be read.",
            )

    def _report_missing(self, released: ReleasedStep[_Held]) -> None:
        """A step handed over without some expected workers: never silently."""
        expected = self._steps.expected_workers or 0
        written = (*released.parts, *released.given_up, *released.unsettled)
        missing = tuple(worker_label(name) for name in released.missing)
        # A worker that never wrote a step is named by its collections file when it wrote one.
        named = sorted(self._collections_workers - {*written, *released.missing})
        missing += tuple(worker_label(name) for name in named[: released.unseen])
        unnamed = released.unseen - len(named[: released.unseen])
        if unnamed:
            plural = "s" if unnamed > 1 else ""
            missing += (f"{unnamed} worker{plural} not seen at any step",)
        if released.forced:
            why = (
                f"more than {self._steps.window} steps were waiting for a worker that may have died"
            )
        elif released.by_end:
            why = (
                f"training ended and they had not written it {self._end_grace:g} s after the "
                "end marker (end_grace)"
            )
        else:
            why = (
                "a later step was written by every worker (smdebug's rule: a worker may not "
                "save every step)"
            )
        if released.parts:
            outcome = (
                "it is evaluated with the others; the missing workers' labels of this step are "
                "not counted, and parts arriving later are counted under late_part."
            )
        else:
            outcome = "no part of it could be used, so it is not evaluated."
        self._problems.incomplete_step(
            released.step,
            missing,
            expected - len(written),
            f"step {released.step} was written by {len(written)} of {expected} workers, without "
            f"{', '.join(missing)}: {why}; {outcome}",
        )

    def _reload_part(self, step: int, worker_step: WorkerStep) -> PartLayout | WorkerTensors:
        """Load a part again whose layout was dropped (read twice, or read late)."""
        file_worker = self._file_workers.get(worker_step.worker, worker_step.worker)
        loaded = self._fetch(step, file_worker)
        if isinstance(loaded, PartLayout):
            return loaded
        return failed(
            worker_step,
            skip_reason(loaded),
            f"{self._files.where(source_key(step, file_worker, loaded))} cannot be read again "
            f"({loaded}); was it deleted?",
        )


def _give_up_hint(error: Exception) -> str:
    """What to do about a part given up on, by what its last attempt raised."""
    if isinstance(error, FileNotFoundError):
        return (
            " The event file is written before its index file, so it should be there; was it "
            "deleted, or the trial copied partly?"
        )
    if isinstance(error, PermissionError):
        return (
            f" This user (uid {os.geteuid()}) may not read it: make the trial readable by it "
            "(chmod -R a+rX on the trial), or run the evaluator as a user that may."
        )
    if isinstance(error, OSError) and error.errno == errno.ELOOP:
        return " A symbolic link on its path loops: fix or remove it."
    return " Re-copy the file from the training job's output if it was damaged in transit."


def _unusable_message(entry: UnusableEntry, where: Callable[[str], str]) -> str:
    """What an entry left out of the listings costs, and what to do about it."""
    parsed = parse_index_key(entry.key)
    if parsed is not None:
        lost = f"worker {worker_label(parsed[1])}'s part of step {parsed[0]} is left out"
    elif entry.key.startswith(INDEX_PREFIX):
        lost = "the index files under it, if any, are left out"
    else:
        lost = "it is left out"
    return (
        f"{shortened(where(entry.key))} cannot be followed ({entry.why}): {lost}. smdebug "
        "writes no symbolic links; a link that loops or points at what cannot be read was put "
        "there by something else: fix or remove it"
    )


def _detail(error: Exception, where: str) -> str:
    """An error in words, naming the file unless the message already does."""
    if isinstance(error, FileNotFoundError):
        return f"{where} is missing"
    text = str(error) or type(error).__name__
    return text if where in text else f"{where}: {text}"
