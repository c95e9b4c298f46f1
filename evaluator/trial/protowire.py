"""Just enough of the protobuf wire format to walk smdebug's Event messages.

The protobuf runtime that smdebug pins (3.20.3) has no compiled wheel for current Pythons, and
its pure-Python parser builds a Python object for every field: about 150 us per tensor. Walking
the wire format directly, and handing packed numbers to NumPy without a Python object per
element, costs a few microseconds. Every function takes a buffer plus ``[start, stop)`` bounds
so that nested messages are read in place, never copied.

Malformed input raises :class:`WireError` only: every read is bounds-checked, every loop
advances, and nesting (groups) is tracked with a counter rather than recursion.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from evaluator.trial.problems import TrialBytesError

__all__ = [
    "END_GROUP",
    "FIXED32",
    "FIXED64",
    "LEN",
    "START_GROUP",
    "VARINT",
    "Buffer",
    "WireError",
    "decode_packed_fixed",
    "decode_packed_varints",
    "iter_fields",
    "read_varint",
    "skip_field",
    "to_int32",
    "to_int64",
    "wire_type_name",
]

Buffer = bytes | memoryview
"""A byte buffer indexed as unsigned bytes (a memoryview must have format ``B``)."""

VARINT: Final = 0
FIXED64: Final = 1
LEN: Final = 2
START_GROUP: Final = 3
END_GROUP: Final = 4
FIXED32: Final = 5

_WIRE_TYPE_NAMES: Final = {
    VARINT: "varint",
    FIXED64: "fixed64",
    LEN: "length-delimited",
    START_GROUP: "start-group",
    END_GROUP: "end-group",
    FIXED32: "fixed32",
}
_MAX_VARINT_BYTES: Final = 10
_MAX_FIELD_NUMBER: Final = (1 << 29) - 1
_U64: Final = (1 << 64) - 1
_SMALL_PACKED: Final = 64
"""Below this many bytes a Python loop beats NumPy's per-call overhead for packed varints."""


class WireError(TrialBytesError):
    """The bytes are not a well-formed protobuf message (truncated, or not protobuf at all)."""


def wire_type_name(wire_type: int) -> str:
    """A readable name for error messages."""
    return f"{wire_type} ({_WIRE_TYPE_NAMES.get(wire_type, 'invalid')})"


def read_varint(buf: Buffer, pos: int, stop: int) -> tuple[int, int]:
    """The unsigned varint at ``pos`` (up to 64 bits) and the position after it."""
    if pos >= stop:
        raise WireError(f"expected a varint at byte {pos}, found the end of the message")
    byte = buf[pos]
    if byte < 0x80:
        return byte, pos + 1
    result = byte & 0x7F
    shift = 7
    limit = min(stop, pos + _MAX_VARINT_BYTES)
    end = pos + 1
    while end < limit:
        byte = buf[end]
        end += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result & _U64, end
        shift += 7
    if end - pos >= _MAX_VARINT_BYTES:
        raise WireError(f"varint at byte {pos} is longer than {_MAX_VARINT_BYTES} bytes")
    raise WireError(f"varint at byte {pos} runs past the end of the message at byte {stop}")


def to_int64(value: int) -> int:
    """Reinterpret a decoded varint as int64 (negative numbers are 10-byte two's complement)."""
    return value - (1 << 64) if value >= 1 << 63 else value


def to_int32(value: int) -> int:
    """Reinterpret a decoded varint as int32, truncating as protobuf does."""
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value >= 1 << 31 else value


def iter_fields(buf: Buffer, start: int, stop: int) -> Iterator[tuple[int, int, int, int]]:
    """Every field of the message in ``buf[start:stop]`` as ``(number, wire_type, a, b)``.

    For varints ``a`` is the value (unsigned 64-bit) and ``b`` the position after it; for every
    other wire type ``[a, b)`` is the field's data (for groups, the bytes between the markers),
    so callers skip a field simply by not looking at it. One-byte tags, values and lengths are
    read inline: they are almost all of them, and a call costs more than the read.
    """
    # The hot loop of the whole reader: wire types are literals (not the module constants)
    # because a global lookup per field is measurable, and LEN is tested first because nearly
    # every field on the path to a tensor is a message or bytes.
    pos = start
    while pos < stop:
        tag = buf[pos]
        pos += 1
        if tag >= 0x80:
            tag, pos = _read_tag(buf, pos - 1, stop)
        elif tag < 8:
            raise WireError(f"invalid field number 0 in the tag at byte {pos - 1}")
        wire_type = tag & 7
        if wire_type == 2:
            # Lengths below 16 KiB (one or two bytes) cover every field but huge tensors.
            size = buf[pos] if pos < stop else 0x80
            if size < 0x80:
                pos += 1
            elif pos + 1 < stop and buf[pos + 1] < 0x80:
                size = (size & 0x7F) | buf[pos + 1] << 7
                pos += 2
            else:
                size, pos = read_varint(buf, pos, stop)
            end = pos + size
        elif wire_type == 0:
            if pos < stop and buf[pos] < 0x80:
                value = buf[pos]
                pos += 1
            else:
                value, pos = read_varint(buf, pos, stop)
            yield tag >> 3, 0, value, pos
            continue
        elif wire_type == 1:
            end = pos + 8
        elif wire_type == 5:
            end = pos + 4
        elif wire_type == 3:
            body_end, after = _skip_group(buf, pos, stop, tag >> 3)
            yield tag >> 3, 3, pos, body_end
            pos = after
            continue
        else:
            raise WireError(
                f"field {tag >> 3} has wire type {wire_type_name(wire_type)} in the tag ending "
                f"at byte {pos}, which cannot start a field"
            )
        if end > stop:
            raise WireError(
                f"field {tag >> 3} ({_WIRE_TYPE_NAMES[wire_type]}) at byte {pos} needs bytes up "
                f"to {end}, the message ends at {stop}: truncated"
            )
        yield tag >> 3, wire_type, pos, end
        pos = end


def _read_tag(buf: Buffer, pos: int, stop: int) -> tuple[int, int]:
    """A multi-byte tag, checked for a valid field number."""
    tag, end = read_varint(buf, pos, stop)
    if tag < 8 or tag >> 3 > _MAX_FIELD_NUMBER:
        raise WireError(f"invalid field number {tag >> 3} in the tag at byte {pos}")
    return tag, end


def skip_field(buf: Buffer, pos: int, stop: int, number: int, wire_type: int) -> int:
    """The position after the data of a field whose tag ended at ``pos``."""
    if wire_type == VARINT:
        return read_varint(buf, pos, stop)[1]
    if wire_type == LEN:
        size, pos = read_varint(buf, pos, stop)
        end = pos + size
    elif wire_type == FIXED64:
        end = pos + 8
    elif wire_type == FIXED32:
        end = pos + 4
    elif wire_type == START_GROUP:
        return _skip_group(buf, pos, stop, number)[1]
    else:
        raise WireError(
            f"field {number} has wire type {wire_type_name(wire_type)} in the tag ending at "
            f"byte {pos}, which cannot start a field"
        )
    if end > stop:
        raise WireError(
            f"field {number} ({_WIRE_TYPE_NAMES[wire_type]}) at byte {pos} needs bytes up to "
            f"{end}, the message ends at {stop}: truncated"
        )
    return end


def _skip_group(buf: Buffer, pos: int, stop: int, number: int) -> tuple[int, int]:
    """Where the body of group ``number`` (opened just before ``pos``) ends, and where its
    end-group tag ends.

    Iterative with an explicit stack so that deeply nested garbage cannot exhaust recursion.
    """
    open_groups = [number]
    while True:
        tag_at = pos
        tag, pos = read_varint(buf, pos, stop)
        inner, wire_type = tag >> 3, tag & 7
        if inner == 0 or inner > _MAX_FIELD_NUMBER:
            raise WireError(f"invalid field number {inner} in the tag at byte {tag_at}")
        if wire_type == END_GROUP:
            if inner != open_groups[-1]:
                raise WireError(
                    f"end-group tag for field {inner} at byte {tag_at} does not close the open "
                    f"group {open_groups[-1]}: not a well-formed message"
                )
            open_groups.pop()
            if not open_groups:
                return tag_at, pos
        elif wire_type == START_GROUP:
            open_groups.append(inner)
        else:
            pos = skip_field(buf, pos, stop, inner, wire_type)


def decode_packed_varints(buf: Buffer, start: int, stop: int) -> npt.NDArray[np.uint64]:
    """The packed varints in ``buf[start:stop]`` as raw unsigned 64-bit values.

    Callers reinterpret (``view(np.int64)``, ``astype``) for signed or narrower fields. Long
    runs are decoded with NumPy, without a Python object per element.
    """
    if stop <= start:
        return np.empty(0, dtype=np.uint64)
    data = bytes(buf[start:stop])
    if data.isascii():  # every value below 128: one byte each, the common case for labels
        return np.frombuffer(data, dtype=np.uint8).astype(np.uint64)
    if len(data) < _SMALL_PACKED:
        return np.array(_varints_loop(data, 0, len(data)), dtype=np.uint64)
    raw = np.frombuffer(data, dtype=np.uint8)
    return _varints_vectorised(raw, raw >= 0x80)


def _varints_loop(buf: Buffer, pos: int, stop: int) -> list[int]:
    values = []
    while pos < stop:
        value, pos = read_varint(buf, pos, stop)
        values.append(value)
    return values


def _varints_vectorised(
    raw: npt.NDArray[np.uint8], more: npt.NDArray[np.bool_]
) -> npt.NDArray[np.uint64]:
    """Group bytes into varints by their continuation bits and OR the shifted 7-bit digits."""
    if more[-1]:
        raise WireError("packed varints end in the middle of a varint: truncated")
    ends = np.flatnonzero(~more)
    starts = np.empty_like(ends)
    starts[0] = 0
    starts[1:] = ends[:-1] + 1
    lengths = ends - starts + 1
    if int(lengths.max()) > _MAX_VARINT_BYTES:
        raise WireError(f"a packed varint is longer than {_MAX_VARINT_BYTES} bytes")
    digit = np.arange(raw.size, dtype=np.int64) - np.repeat(starts, lengths)
    shifted = (raw & 0x7F).astype(np.uint64) << (digit * 7).astype(np.uint64)
    return np.bitwise_or.reduceat(shifted, starts)


def decode_packed_fixed(
    buf: Buffer, start: int, stop: int, dtype: np.dtype[Any]
) -> npt.NDArray[Any]:
    """Packed fixed-width numbers (``<f4``, ``<f8``, ...) as a zero-copy view."""
    size = stop - start
    if size % dtype.itemsize:
        raise WireError(
            f"packed {dtype.name} data of {size} bytes is not a multiple of {dtype.itemsize}"
        )
    return np.frombuffer(buf, dtype=dtype, count=size // dtype.itemsize, offset=start)
