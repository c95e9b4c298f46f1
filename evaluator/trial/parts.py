"""One (step, worker) part: its layout loaded from its event file, its wanted tensors read.

A part is loaded from its event file alone: one read on a local disk, one GET on S3. smdebug
writes the event file before the index file, so once the index key is listed the event file is
complete, and it describes itself (each record carries the tensor name, mode and mode step);
its bytes are kept for reading. The index file is read only when the event file alone does not
do: on a storage that reads ranges, a file larger than ``event_head_bytes`` (its first bytes are
fetched, the index gives the layout, and the wanted records are fetched by range when read), and
an event file with no tensor record (only the index says the mode).

Reading never raises: a record that cannot be used makes the part's ``WorkerTensors`` carry the
reason and a message naming the file, and the rule counts the batch as skipped. So do wanted
tensors that claim together more elements than one part may (``ElementBudget``, the reader's
``HELD_BYTES_LIMIT`` at 8 bytes an element): each is charged as it is decoded, still a view.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from evaluator.trial.contract import RangeReadable, TrialStorage
from evaluator.trial.interface import WorkerStep, WorkerTensors
from evaluator.trial.layout import event_key, index_key
from evaluator.trial.parsers import (
    MalformedIndexError,
    PartLayout,
    TensorSpan,
    parse_index,
    scan_event_file,
)
from evaluator.trial.problems import (
    DECODE_ERROR,
    MALFORMED_EVENT_FILE,
    MISSING_EVENT_FILE,
    UNREADABLE_EVENT_FILE,
    TrialBytesError,
)
from evaluator.trial.records import RECORD_OVERHEAD, RecordError, record_payload
from evaluator.trial.tensors import (
    ElementBudget,
    ElementBudgetError,
    decode_event_tensors,
    decode_tensor_at,
    tensor_view,
)

EVENT_HEAD_BYTES = 16 << 20
"""On a storage that reads ranges, how much of an event file the first GET asks for. Files this
small (labels and predictions of any usual batch) arrive whole in one request. A larger file
holds tensors the rule may not want (weights, say): its index is read for the layout and the
wanted tensors are fetched by range when read, rather than downloading all of it."""

RANGE_GAP_BYTES = 256 << 10
"""Wanted records closer than this are fetched in one ranged read: a request costs more than a
few hundred KiB of unwanted bytes."""


class PartFiles:
    """Loads parts from a storage and reads their tensors."""

    def __init__(
        self,
        storage: TrialStorage,
        *,
        part_bytes_limit: int,
        verify_payload_crc: bool = False,
        event_head_bytes: int = EVENT_HEAD_BYTES,
    ) -> None:
        self._storage = storage
        self._part_bytes_limit = part_bytes_limit
        """What the wanted tensors of one part may claim, at ``ELEMENT_BYTES`` an element."""
        self._ranges = storage if isinstance(storage, RangeReadable) else None
        """Checked once: a runtime Protocol check costs microseconds on every part."""
        self._verify_payload_crc = verify_payload_crc
        self._event_head_bytes = max(RECORD_OVERHEAD, event_head_bytes)
        self._location = storage.location.rstrip("/") + "/"
        """Once: every part names its file for messages, and the storage's location is fixed."""

    def where(self, key: str) -> str:
        """A key as a path or URI, for messages."""
        return self._location + key

    # -- loading ----------------------------------------------------------------------------

    def load(self, step: int, file_worker: str) -> PartLayout:
        """One part from its event file: one read, unless the file is large or holds no tensor.

        Raises OSError (FileNotFoundError for a missing file, ``StorageUnavailable``) or
        ValueError (``RecordError``, ``MalformedEventFileError``, ``MalformedIndexError``).
        """
        key = event_key(step, file_worker)
        head, size = self._read_head(key)
        if size > len(head):
            part = self._load_index(step, file_worker)
            return replace(part, data=head if part.event_key == key else None)
        described = scan_event_file(
            head, step, where=self.where(key), verify_payload=self._verify_payload_crc
        )
        if described is None:
            # No tensor record, so nothing says the mode: smdebug's index does.
            return self._load_index(step, file_worker)
        mode, mode_step, spans = described
        return PartLayout(step, file_worker, mode, mode_step, key, spans, data=head)

    def _load_index(self, step: int, file_worker: str) -> PartLayout:
        return parse_index(
            self._storage.read_bytes(index_key(step, file_worker)), step, file_worker
        )

    def _read_head(self, key: str) -> tuple[bytes, int]:
        if self._ranges is not None:
            return self._ranges.read_range(key, 0, self._event_head_bytes)
        data = self._storage.read_bytes(key)
        return data, len(data)

    # -- reading ----------------------------------------------------------------------------

    def read(self, part: PartLayout, wanted: Callable[[str], bool]) -> WorkerTensors:
        """All wanted tensors of one part, or none and the reason (never raises); none as well
        when together they claim more elements than ``part_bytes_limit`` allows."""
        worker_step = part.worker_step
        result = WorkerTensors(worker_step.worker, part.mode, part.mode_step)
        spans = [span for span in part.spans if wanted(span.name)]
        if not spans:
            return result
        where = self.where(part.event_key)
        budget = ElementBudget(self._part_bytes_limit)
        data = part.data
        if data is not None:
            # Scanned from held bytes: the framing was checked then, the tensors are decoded now.
            held = [s for s in spans if s.tensor_start >= 0 and s.tensor_stop <= len(data)]
            for span in held:
                try:
                    array = (
                        decode_tensor_at(data, span.tensor_start, span.tensor_stop, span.name)
                        if span.content is None
                        else tensor_view(data, span.content)
                    )
                    budget.charge(span.name, array, result.tensors.get(span.name))
                    result.tensors[span.name] = array
                except ValueError as error:
                    return failed(worker_step, *_decode_failure(span, where, error))
            if len(held) == len(spans):
                return result
            spans = [span for span in spans if span not in held]
        try:
            located = self._locate(part, spans, where)
        except FileNotFoundError:
            return failed(
                worker_step,
                MISSING_EVENT_FILE,
                f"{where} is missing, but {self.where(part.index_file_key)} lists it. The writer "
                "may have been killed between the two files, or the trial was copied partly; "
                "copy the events/ folder too.",
            )
        except (OSError, ValueError) as error:
            return failed(worker_step, UNREADABLE_EVENT_FILE, f"{where}: {error}")
        for buf, span, span_where in located:
            failure = self._decode_span(buf, span, span_where, wanted, result, budget=budget)
            if failure is not None:
                return failed(worker_step, *failure)
        return result

    def _locate(
        self, part: PartLayout, spans: list[TensorSpan], where: str
    ) -> list[tuple[bytes, TensorSpan, str]]:
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
        fetched: dict[TensorSpan, tuple[bytes, TensorSpan, str]] = {}
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
        span: TensorSpan,
        where: str,
        wanted: Callable[[str], bool],
        result: WorkerTensors,
        *,
        budget: ElementBudget,
    ) -> tuple[str, str] | None:
        """Decode one record into ``result``, charging ``budget``; return ``(reason, message)``
        when it fails."""
        try:
            payload = record_payload(
                buf, span.start, span.length, verify_payload=self._verify_payload_crc, where=where
            )
            for tag, array in decode_event_tensors(payload, wanted):
                budget.charge(tag, array, result.tensors.get(tag))
                result.tensors[tag] = array
        except ValueError as error:
            return _decode_failure(span, where, error)
        return None


def source_key(step: int, file_worker: str, error: Exception | None = None) -> str:
    """The file a part failed to load from: its event file, unless its index was the problem."""
    if isinstance(error, MalformedIndexError):
        return index_key(step, file_worker)
    return event_key(step, file_worker)


def skip_reason(error: Exception) -> str:
    """The reason a part that could not be loaded is counted under."""
    if isinstance(error, FileNotFoundError):
        return MISSING_EVENT_FILE
    if isinstance(error, OSError):
        return UNREADABLE_EVENT_FILE
    if isinstance(error, TrialBytesError):  # what is wrong with the bytes: truncated, ...
        return error.reason
    return MALFORMED_EVENT_FILE


def failed(worker_step: WorkerStep, reason: str, message: str) -> WorkerTensors:
    """A part that could not be read: no tensors, the reason and the message."""
    return WorkerTensors(
        worker_step.worker,
        worker_step.mode,
        worker_step.mode_step,
        error=message,
        error_reason=reason,
    )


def _decode_failure(span: TensorSpan, where: str, error: ValueError) -> tuple[str, str]:
    """``(reason, message)`` for a record that could not be decoded."""
    if isinstance(error, RecordError):
        return error.reason, f"tensor {span.name!r}: {error}"
    if isinstance(error, ElementBudgetError):
        return error.reason, f"{where}: {error}."
    return DECODE_ERROR, (
        f"tensor {span.name!r} in {where}: {error}. The record is not a tensor as "
        "smdebug writes it; check that the trial was written by smdebug."
    )


def _valid(span: TensorSpan) -> bool:
    """Whether a span can be fetched at all; others are left to ``record_payload`` to report."""
    return span.start >= 0 and span.length >= RECORD_OVERHEAD


def _runs(spans: list[TensorSpan]) -> list[list[TensorSpan]]:
    """Spans grouped into runs that one ranged read covers (gaps under ``RANGE_GAP_BYTES``)."""
    runs: list[list[TensorSpan]] = []
    stop = 0
    for span in sorted(spans, key=lambda span: span.start):
        if runs and span.start <= stop + RANGE_GAP_BYTES:
            runs[-1].append(span)
            stop = max(stop, span.start + span.length)
        else:
            runs.append([span])
            stop = span.start + span.length
    return runs
