"""TFRecord framing of smdebug event files, checked without trusting the index blindly.

An event file is a sequence of records: ``uint64 length`` (little-endian), ``uint32
masked_crc32c(length bytes)``, the payload, then a ``uint32`` footer. The footer is the payload's
masked CRC when the writer checksums payloads (TensorBoard) and a constant when it does not
(smdebug's default), so a reader has to accept both; only a real CRC can be verified.

The index gives ``start_idx``/``length`` for one whole record, so a reader can jump straight to
the tensors it wants. The header is always checked (an 8-byte CRC, remembered per length, so
nearly free) because a wrong offset or a rewritten file would otherwise yield a plausible-looking
but wrong payload. Payload CRCs are optional: they cost a copy and a pass over the data.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Final

import google_crc32c

from evaluator.trial.problems import TrialBytesError

__all__ = [
    "FOOTER_SIZE",
    "HEADER_SIZE",
    "RECORD_OVERHEAD",
    "SMDEBUG_CONSTANT_FOOTER",
    "RecordError",
    "iter_records",
    "masked_crc32c",
    "record_payload",
]

HEADER_SIZE: Final = 12
FOOTER_SIZE: Final = 4
RECORD_OVERHEAD: Final = HEADER_SIZE + FOOTER_SIZE

_HEADER = struct.Struct("<QI")
_FOOTER = struct.Struct("<I")
_LENGTH = struct.Struct("<Q")
_MASK_DELTA: Final = 0xA282EAD8
_U32: Final = 0xFFFFFFFF


def masked_crc32c(data: bytes | memoryview) -> int:
    """CRC32C of ``data``, masked as TFRecord does so that CRCs of CRCs stay well distributed."""
    # The C extension only takes ``bytes`` (it rejects memoryviews), hence the copy.
    crc: int = google_crc32c.value(data if isinstance(data, bytes) else bytes(data))
    return ((((crc >> 15) | (crc << 17)) & _U32) + _MASK_DELTA) & _U32


SMDEBUG_CONSTANT_FOOTER: Final = masked_crc32c(b"0x12345678")
"""The footer smdebug writes when it does not checksum payloads (its default)."""


class RecordError(TrialBytesError):
    """A record of an event file cannot be trusted.

    ``reason`` is a short stable key for metrics and status files: ``truncated``, ``bad_index``,
    ``length_crc``, ``length_mismatch`` or ``payload_crc``. The message names the file and the
    offset, says what was expected and found, and what that most likely means.
    """

    def __init__(self, reason: str, detail: str, *, where: str = "", offset: int = 0) -> None:
        self.reason = reason
        self.where = where
        self.offset = offset
        self.detail = detail
        location = f"record at offset {offset}" + (f" of {where}" if where else "")
        super().__init__(f"{location}: {detail}", reason=reason)


def record_payload(
    buf: bytes, start: int, length: int, *, verify_payload: bool, where: str = ""
) -> memoryview:
    """The payload of the one record the index places at ``buf[start:start + length]``.

    Returns a zero-copy view so that large tensors are never copied before NumPy sees them.
    """
    if start < 0 or length < RECORD_OVERHEAD:
        raise RecordError(
            "bad_index",
            f"the index gives start {start} and length {length}, but a record starts at a "
            f"non-negative offset and spans at least {RECORD_OVERHEAD} bytes of framing: "
            "the index file is corrupt",
            where=where,
            offset=start,
        )
    available = len(buf) - start
    if available < length:
        raise RecordError(
            "truncated",
            f"expected {length} bytes, found {max(available, 0)}: the file is truncated "
            "(still being written, or cut short by a crash or a partial copy)",
            where=where,
            offset=start,
        )
    payload_len, length_crc = _HEADER.unpack_from(buf, start)
    if length_crc != (_LENGTH_CRCS.get(payload_len) or _length_crc(payload_len)):
        raise _length_crc_error(payload_len, length_crc, where, start)
    if payload_len != length - RECORD_OVERHEAD:
        raise RecordError(
            "length_mismatch",
            f"the index says the record holds {length} bytes (a {length - RECORD_OVERHEAD}-byte"
            f" payload), its header says the payload is {payload_len} bytes: the index does not "
            "describe this event file (was the file rewritten after indexing?)",
            where=where,
            offset=start,
        )
    first = start + HEADER_SIZE
    if verify_payload:
        _verify_footer(buf, first, payload_len, where, start)
    return memoryview(buf)[first : first + payload_len]


def iter_records(
    buf: bytes, *, verify_payload: bool, where: str = ""
) -> Iterator[tuple[int, memoryview]]:
    """Every record of a whole event file as ``(offset, payload)``, in file order.

    For files without an index (or to cross-check one); a short tail is reported as
    ``truncated`` because that is what a file still being written looks like.
    """
    offset = 0
    end = len(buf)
    while offset < end:
        if end - offset < HEADER_SIZE:
            raise RecordError(
                "truncated",
                f"expected a {HEADER_SIZE}-byte record header, found {end - offset} bytes: the "
                "file is truncated (still being written, or cut short)",
                where=where,
                offset=offset,
            )
        payload_len = _checked_length(buf, offset, where)
        size = payload_len + RECORD_OVERHEAD
        if end - offset < size:
            raise RecordError(
                "truncated",
                f"expected {size} bytes, found {end - offset}: the file is truncated "
                "(still being written, or cut short)",
                where=where,
                offset=offset,
            )
        first = offset + HEADER_SIZE
        if verify_payload:
            _verify_footer(buf, first, payload_len, where, offset)
        yield offset, memoryview(buf)[first : first + payload_len]
        offset += size


def _checked_length(buf: bytes, start: int, where: str) -> int:
    """The payload length from the header at ``start``, after checking the header's CRC.

    The caller has made sure the 12 header bytes are present.
    """
    payload_len, length_crc = _HEADER.unpack_from(buf, start)
    if length_crc != (_LENGTH_CRCS.get(payload_len) or _length_crc(payload_len)):
        raise _length_crc_error(payload_len, length_crc, where, start)
    return int(payload_len)


_LENGTH_CRCS: dict[int, int] = {}
"""Masked CRCs of length fields seen so far. A tensor has the same size at every step, so a
handful of lengths cover a whole trial and the CRC is computed once per length."""
_MAX_CACHED_LENGTHS: Final = 4096


def _length_crc(payload_len: int) -> int:
    """The masked CRC a header must carry for ``payload_len``, remembered for next time."""
    if len(_LENGTH_CRCS) >= _MAX_CACHED_LENGTHS:
        _LENGTH_CRCS.clear()
    crc = _LENGTH_CRCS[payload_len] = masked_crc32c(_LENGTH.pack(payload_len))
    return crc


def _length_crc_error(payload_len: int, length_crc: int, where: str, start: int) -> RecordError:
    expected = _length_crc(payload_len)
    return RecordError(
        "length_crc",
        f"the header's length checksum is {length_crc:#010x}, expected {expected:#010x} for "
        f"the length field {payload_len}: the header is corrupt or the offset is not the start "
        "of a record",
        where=where,
        offset=start,
    )


def _verify_footer(buf: bytes, first: int, payload_len: int, where: str, start: int) -> None:
    """Check a real-CRC footer; smdebug's constant footer carries nothing to check."""
    (footer,) = _FOOTER.unpack_from(buf, first + payload_len)
    if footer == SMDEBUG_CONSTANT_FOOTER:
        return
    expected = masked_crc32c(buf[first : first + payload_len])
    if footer != expected:
        raise RecordError(
            "payload_crc",
            f"the footer is {footer:#010x}, expected the payload checksum {expected:#010x} (or "
            f"smdebug's constant {SMDEBUG_CONSTANT_FOOTER:#010x}): the payload or its footer is "
            "corrupt",
            where=where,
            offset=start,
        )
