"""What smdebug's files hold, as pure functions of their bytes: index, collections, event file.

``layout.py`` says where smdebug puts each file; this module says what is in them and checks it.
Nothing here reads a file or knows a storage: each parser takes bytes and returns what the
reader needs, or raises a ``TrialBytesError`` (``problems.py``; a ``ValueError``) whose message
names the first thing that is not what smdebug 1.0.34 writes, and nothing else, whatever the
bytes: ``devtools/fuzz_parsers.py`` holds every parser to that. Files are data from a job anyone
may control, so every field is checked for its type and range (record offsets and lengths fit
an int64, ``num_workers`` is at most ``MAX_WORKERS``), paths taken from them must stay inside
the trial, and values quoted in messages are shortened.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from evaluator import compiled
from evaluator.core.text import quoted
from evaluator.trial.interface import WorkerStep
from evaluator.trial.layout import REDUCTIONS_PREFIX, index_key, is_safe_key, worker_label
from evaluator.trial.problems import (
    DECODE_ERROR,
    MALFORMED_COLLECTIONS,
    MALFORMED_EVENT_FILE,
    MALFORMED_INDEX,
    TrialBytesError,
)
from evaluator.trial.records import HEADER_SIZE, RECORD_OVERHEAD, iter_records
from evaluator.trial.tensors import EventValue, describe_event

MODES = frozenset({"TRAIN", "EVAL", "PREDICT", "GLOBAL"})
MODE_NUMBERS = {"1": "TRAIN", "2": "EVAL", "3": "PREDICT", "4": "GLOBAL"}
"""smdebug's ``ModeKeys`` values, as its writer puts them into the ``mode`` plugin data."""


class MalformedIndexError(TrialBytesError):
    """An index file that is not what smdebug writes; the message says what is wrong."""

    reason = MALFORMED_INDEX


class MalformedEventFileError(TrialBytesError):
    """An event file whose records do not describe one smdebug step; the message says why.

    ``reason``: ``decode_error`` when a record is not a protobuf Event at all,
    ``malformed_event_file`` when well-formed records are not one smdebug step."""

    reason = MALFORMED_EVENT_FILE


class MalformedCollectionsError(TrialBytesError):
    """A collections file without a usable ``_meta.num_workers``; the message says why."""

    reason = MALFORMED_COLLECTIONS


INT64_MIN = -(1 << 63)
INT64_MAX = (1 << 63) - 1
"""An index's record offsets and lengths are int64 in smdebug and in the storage calls they
drive (a seek, an HTTP range): a number outside is refused where it is parsed, not where it
would overflow. (A mode step is only reported, so any integer is kept, as smdebug does.)"""

MAX_WORKERS = 1 << 20
"""The most ``_meta.num_workers`` a collections file may claim: a step waits for that many
workers, so a claim of 10^12 would hold every step until the end marker. A million ranks is far
beyond any training job."""

_JSON_ERRORS = (ValueError, RecursionError)
"""What ``json.loads`` raises for bytes that are not JSON: ``JSONDecodeError`` and
``UnicodeDecodeError`` are ``ValueError``s, too many digits a plain one, and nesting deeper than
the interpreter's recursion limit (``[[[[...``) a ``RecursionError``."""


def _load_json(raw: bytes, error: type[TrialBytesError]) -> Any:
    """The document in ``raw``, or ``error`` saying why it is none."""
    try:
        return json.loads(raw)
    except _JSON_ERRORS as failure:
        why = (
            "nested deeper than the interpreter's recursion limit"
            if isinstance(failure, RecursionError)
            else quoted(str(failure))
        )
        raise error(f"not JSON ({why}; {len(raw):,} bytes)") from None


class TensorSpan(NamedTuple):
    """Where one tensor's record lies in its event file (a named tuple: one per record read)."""

    name: str
    start: int
    length: int
    tensor_start: int = -1
    tensor_stop: int = -1
    """Where the record's ``TensorProto`` lies in the event file, when it was found by scanning
    the file, so that reading held bytes decodes just the tensor (-1: not known)."""
    content: tuple[int, tuple[int, ...], int] | None = None
    """``(dtype, shape, offset)`` of the tensor's raw ``tensor_content`` in the event file when
    the compiled scan found a plain numeric one whose size matches its shape: reading it is
    then one array view, without walking the ``TensorProto`` again (None: decode it)."""


@dataclass(frozen=True)
class PartLayout:
    """One worker's part of one step: what reading needs to find its tensors.

    Described by its event file (whose bytes from offset 0, the whole file or its first bytes,
    may be kept in ``data`` until read), or by its index file when the event file is too large
    to fetch whole or holds no tensor record.
    """

    step: int
    file_worker: str
    mode: str
    mode_step: int
    event_key: str
    spans: tuple[TensorSpan, ...]
    data: bytes | None = field(default=None, repr=False, compare=False)

    @property
    def index_file_key(self) -> str:
        return index_key(self.step, self.file_worker)

    @property
    def worker_step(self) -> WorkerStep:
        """Built once: a part is handed over and read, and both need it. (Kept in the
        instance's ``__dict__`` by hand: ``functools.cached_property`` takes a lock on Python
        3.11, which costs more than building it.)"""
        built: WorkerStep | None = self.__dict__.get("_worker_step")
        if built is None:
            built = WorkerStep(
                worker=worker_label(self.file_worker),
                mode=self.mode,
                mode_step=self.mode_step,
                tensor_names=tuple(span.name for span in self.spans),
            )
            self.__dict__["_worker_step"] = built
        return built


# -- index files ------------------------------------------------------------------------------


def parse_index(raw: bytes, step: int, file_worker: str) -> PartLayout:
    """Check and keep what reading needs from one index file.

    Raises MalformedIndexError naming the first thing that is not what smdebug writes.
    """
    document = _load_json(raw, MalformedIndexError)
    meta = _field(document, "meta", dict, "the index")
    mode = _field(meta, "mode", str, "meta").strip()
    if mode not in MODES:
        raise MalformedIndexError(f"meta.mode is {quoted(mode)}, expected one of {sorted(MODES)}")
    mode_step = _field(meta, "mode_step", int, "meta")
    payload = document.get("tensor_payload")
    payload = [] if payload is None else payload
    if not isinstance(payload, list):
        raise MalformedIndexError("tensor_payload is not a list")
    spans = tuple(
        span
        for position, entry in enumerate(payload)
        if not (span := _span(entry, position)).name.startswith(REDUCTIONS_PREFIX)
    )
    event_key = _field(meta, "event_file_name", str, "meta") if spans else ""
    if spans and not is_safe_key(event_key):
        raise MalformedIndexError(
            f"meta.event_file_name {quoted(event_key)} is not a relative path inside the trial"
        )
    return PartLayout(step, file_worker, mode, mode_step, event_key, spans)


def _span(entry: Any, position: int) -> TensorSpan:
    where = f"tensor_payload[{position}]"
    name = _field(entry, "tensorname", str, where)
    start = _int64_field(entry, "start_idx", where)
    length = _int64_field(entry, "length", where)
    return TensorSpan(name, start, length)


def _int64_field(container: Any, name: str, where: str) -> int:
    """``container[name]``, an int that fits an int64 (``INT64_MIN``)."""
    value: int = _field(container, name, int, where)
    if not INT64_MIN <= value <= INT64_MAX:
        raise MalformedIndexError(
            f"{where}.{name} is {quoted(str(value))}, outside the int64 range smdebug writes"
        )
    return value


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


# -- collections files ------------------------------------------------------------------------


def parse_num_workers(raw: bytes) -> int:
    """``_meta.num_workers`` of a collections file (smdebug's default is 1).

    Raises MalformedCollectionsError for anything else, undecodable bytes included.
    """
    document = _load_json(raw, MalformedCollectionsError)
    meta = document.get("_meta", {}) if isinstance(document, dict) else None
    if not isinstance(meta, dict):
        raise MalformedCollectionsError("no _meta object")
    workers = meta.get("num_workers", 1)
    if isinstance(workers, bool) or not isinstance(workers, int | str):
        raise MalformedCollectionsError(
            f"_meta.num_workers is {quoted(repr(workers))}, expected a whole number"
        )
    try:
        count = int(workers)
    except ValueError:
        raise MalformedCollectionsError(
            f"_meta.num_workers is {quoted(repr(workers))}, expected a whole number"
        ) from None
    if not 1 <= count <= MAX_WORKERS:
        raise MalformedCollectionsError(
            f"_meta.num_workers is {quoted(str(count))}, expected 1 to {MAX_WORKERS:,}"
        )
    return count


# -- event files ------------------------------------------------------------------------------


def scan_event_file(
    buf: bytes, step: int, *, where: str = "", verify_payload: bool = False
) -> tuple[str, int, tuple[TensorSpan, ...]] | None:
    """``(mode, mode_step, spans)`` of an event file, as its index would give them.

    None when the file holds no tensor record (then only the index knows the mode). Raises
    RecordError for broken framing (``truncated`` for a short file) and MalformedEventFileError
    when the records are not one smdebug step. A missing mode is GLOBAL and a missing mode step
    is the global step, as smdebug's own event reader assumes.

    The compiled scan answers first; whatever it declines (an uncommon form, or bytes that are
    not what smdebug writes) is scanned here, which reads it or raises the typed error.
    """
    kernels = compiled.kernels()
    if kernels is not None:
        fast = kernels.scan_event_file(buf, step, verify_payload)
        if fast is not None:
            mode, mode_step, found = fast
            if mode is None or found is None:
                return None  # no tensor record
            return mode, mode_step, tuple(TensorSpan(*span) for span in found)
    return scan_event_file_python(buf, step, where=where, verify_payload=verify_payload)


def scan_event_file_python(
    buf: bytes, step: int, *, where: str = "", verify_payload: bool = False
) -> tuple[str, int, tuple[TensorSpan, ...]] | None:
    """``scan_event_file`` in Python: the reference the compiled scan is held equal to."""
    described: tuple[str, int] | None = None
    spans: list[TensorSpan] = []
    for offset, payload in iter_records(buf, verify_payload=verify_payload, where=where):
        try:
            event_step, values = describe_event(payload)
        except ValueError as error:  # every one is a TrialBytesError; any other, one now
            raise MalformedEventFileError(
                f"record at offset {offset} of {where}: {error}; not an smdebug Event",
                reason=DECODE_ERROR,
            ) from error
        if values and event_step != step:
            raise MalformedEventFileError(
                f"record at offset {offset} of {where} is for step {event_step}, but the file is "
                f"named for step {step}: it was not written for this step"
            )
        for value in values:
            mode = mode_of(value, step, offset, where)
            if described is None:
                described = mode
            elif mode != described:
                raise MalformedEventFileError(
                    f"record at offset {offset} of {where} has mode {mode[0]} step {mode[1]}, "
                    f"an earlier one {described[0]} step {described[1]}: smdebug writes one "
                    "mode step per file"
                )
            if value.tag.startswith(REDUCTIONS_PREFIX):
                continue  # a reduction of a tensor (its mode counts), not a tensor
            base = offset + HEADER_SIZE
            spans.append(
                TensorSpan(
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


def mode_of(value: EventValue, step: int, offset: int, where: str) -> tuple[str, int]:
    """``(mode, mode_step)`` of one summary value, from the ``mode`` plugin data smdebug adds."""
    raw_mode = value.plugins.get("mode")
    mode = "GLOBAL" if raw_mode is None else MODE_NUMBERS.get(raw_mode.strip())
    if mode is None:
        raise MalformedEventFileError(
            f"tensor {quoted(value.tag)} at offset {offset} of {where} has mode "
            f"{quoted(str(raw_mode))}; smdebug writes one of {sorted(MODE_NUMBERS)} (its ModeKeys)"
        )
    raw_step = value.plugins.get("mode_step")
    if raw_step is None:
        return mode, step
    try:
        return mode, int(raw_step)
    except ValueError:  # not a number, or more digits than int() converts
        raise MalformedEventFileError(
            f"tensor {quoted(value.tag)} at offset {offset} of {where} has mode_step "
            f"{quoted(raw_step)}, not an integer"
        ) from None
