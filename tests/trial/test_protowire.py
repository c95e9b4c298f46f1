"""The wire-format reader, checked against protobuf's own encoder (the one smdebug uses)."""

from __future__ import annotations

import contextlib
import os
import struct
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

os.environ.setdefault("SMDEBUG_LOG_LEVEL", "warning")

from google.protobuf.internal.encoder import _VarintBytes  # type: ignore[import-untyped]
from smdebug.core.tfevent.proto.event_pb2 import Event
from smdebug.core.tfevent.proto.summary_pb2 import Summary
from smdebug.core.tfevent.proto.tensor_pb2 import TensorProto

from evaluator.trial.protowire import (
    FIXED32,
    FIXED64,
    LEN,
    VARINT,
    WireError,
    decode_packed_fixed,
    decode_packed_varints,
    iter_fields,
    read_varint,
    skip_field,
    to_int32,
    to_int64,
)

U64 = (1 << 64) - 1


def varint(value: int) -> bytes:
    """protobuf's encoding of ``value`` (negative numbers as 64-bit two's complement)."""
    return bytes(_VarintBytes(value & U64))


def tag(number: int, wire_type: int) -> bytes:
    return varint(number << 3 | wire_type)


def fields(buf: bytes) -> list[tuple[int, int, int, int]]:
    return list(iter_fields(buf, 0, len(buf)))


# --- varints ------------------------------------------------------------------------------------


@given(st.integers(min_value=0, max_value=U64))
def test_read_varint_unsigned(value: int) -> None:
    encoded = varint(value)
    assert read_varint(encoded + b"\xff", 0, len(encoded)) == (value, len(encoded))


@given(st.integers(min_value=-(1 << 63), max_value=(1 << 63) - 1))
def test_negative_int64_is_a_ten_byte_varint(value: int) -> None:
    encoded = TensorProto(int64_val=[value]).SerializeToString()[2:]  # packed: tag, length
    decoded, end = read_varint(encoded, 0, len(encoded))
    assert to_int64(decoded) == value
    assert end == len(encoded)
    if value < 0:
        assert len(encoded) == 10


@given(st.integers(min_value=-(1 << 31), max_value=(1 << 31) - 1))
def test_int32_fields_sign_extend(value: int) -> None:
    encoded = TensorProto(int_val=[value]).SerializeToString()[2:]
    assert to_int32(read_varint(encoded, 0, len(encoded))[0]) == value


MALFORMED_VARINTS = {
    "empty": b"",
    "unterminated": b"\x80\x80",
    "eleven_bytes": b"\xff" * 10 + b"\x01",
}


@pytest.mark.parametrize("data", MALFORMED_VARINTS.values(), ids=MALFORMED_VARINTS.keys())
def test_malformed_varint(data: bytes) -> None:
    with pytest.raises(WireError):
        read_varint(data, 0, len(data))


def test_varint_stops_at_message_bound_not_buffer_end() -> None:
    data = b"\x80\x01"
    with pytest.raises(WireError, match="past the end"):
        read_varint(data, 0, 1)


# --- fields -------------------------------------------------------------------------------------


def test_iter_fields_every_wire_type_of_a_real_event() -> None:
    value = Summary.Value(tag="t", simple_value=1.5)
    event = Event(wall_time=2.5, step=-3, summary=Summary(value=[value]))
    buf = event.SerializeToString()
    found = fields(buf)
    assert [(n, w) for n, w, _, _ in found] == [(1, FIXED64), (2, VARINT), (5, LEN)]
    (_, _, wall, wall_end), (_, _, step, _), (_, _, first, end) = found
    assert struct.unpack("<d", buf[wall:wall_end]) == (2.5,)
    assert to_int64(step) == -3
    assert Summary.FromString(buf[first:end]) == Summary(value=[value])
    (_, _, v_first, v_end) = fields(buf[first:end])[0]
    inner = buf[first:end][v_first:v_end]
    assert [(n, w) for n, w, _, _ in fields(inner)] == [(1, LEN), (2, FIXED32)]


def test_iter_fields_on_a_slice_of_a_memoryview() -> None:
    buf = b"junk" + Event(step=7, file_version="x").SerializeToString() + b"junk"
    view = memoryview(buf)
    assert [(n, w) for n, w, _, _ in iter_fields(view, 4, len(buf) - 4)] == [(2, 0), (3, 2)]


def test_multi_byte_tags_and_lengths() -> None:
    payload = bytes(300)
    buf = tag(16, LEN) + varint(len(payload)) + payload + tag(2000, VARINT) + varint(5)
    assert fields(buf) == [(16, LEN, 4, 304), (2000, VARINT, 5, len(buf))]


def test_groups_are_skipped_with_nesting() -> None:
    group = tag(7, 3) + tag(1, VARINT) + varint(1) + tag(8, 3) + tag(8, 4) + tag(7, 4)
    buf = tag(2, VARINT) + varint(9) + group + tag(3, FIXED32) + bytes(4)
    found = fields(buf)
    assert [(n, w) for n, w, _, _ in found] == [(2, VARINT), (7, 3), (3, FIXED32)]
    _, _, body, body_end = found[1]
    assert buf[body:body_end] == group[1:-1]
    assert skip_field(buf, 3, len(buf), 7, 3) == 2 + len(group)


@dataclass(frozen=True)
class Bad:
    data: bytes
    message: str


MALFORMED_MESSAGES = {
    "field_number_zero": Bad(b"\x00\x01", "field number 0"),
    "field_number_zero_long_tag": Bad(b"\x80\x00", "field number 0"),
    "wire_type_6": Bad(tag(1, 6) + b"\x00", "cannot start a field"),
    "wire_type_7": Bad(tag(1, 7), "cannot start a field"),
    "end_group_without_start": Bad(tag(1, 4), "cannot start a field"),
    "length_past_end": Bad(tag(1, LEN) + varint(5) + b"abc", "truncated"),
    "fixed64_past_end": Bad(tag(1, FIXED64) + bytes(7), "truncated"),
    "fixed32_past_end": Bad(tag(1, FIXED32) + bytes(3), "truncated"),
    "varint_value_missing": Bad(tag(1, VARINT), "end of the message"),
    "unclosed_group": Bad(tag(1, 3) + tag(2, VARINT) + varint(1), "end of the message"),
    "mismatched_group": Bad(tag(1, 3) + tag(2, 4), "does not close"),
    "huge_length": Bad(tag(1, LEN) + varint(U64), "truncated"),
    "tag_too_large": Bad(varint(1 << 40), "invalid field number"),
}


@pytest.mark.parametrize("case", MALFORMED_MESSAGES.values(), ids=MALFORMED_MESSAGES.keys())
def test_malformed_message(case: Bad) -> None:
    with pytest.raises(WireError, match=case.message):
        fields(case.data)


def test_deeply_nested_groups_do_not_recurse() -> None:
    depth = 5000
    buf = tag(1, 3) * depth + tag(1, 4) * depth
    assert len(fields(buf)) == 1


# --- packed numbers -----------------------------------------------------------------------------


def packed_int64(values: list[int]) -> bytes:
    """The packed run protobuf writes for ``int64_val`` (field 10), without tag and length."""
    encoded = TensorProto(int64_val=values).SerializeToString()
    if not values:
        return b""
    _, start = read_varint(encoded, 1, len(encoded))
    return bytes(encoded[start:])


int64s = st.integers(min_value=-(1 << 63), max_value=(1 << 63) - 1)


@given(st.lists(int64s, max_size=80))
def test_packed_varints_match_protobuf(values: list[int]) -> None:
    run = packed_int64(values)
    decoded = decode_packed_varints(b"xx" + run, 2, 2 + len(run))
    assert decoded.dtype == np.uint64
    assert decoded.view(np.int64).tolist() == values


@given(st.lists(st.integers(min_value=0, max_value=127), min_size=30, max_size=80))
def test_packed_single_byte_varints_fast_path(values: list[int]) -> None:
    run = bytes(values)
    assert decode_packed_varints(run, 0, len(run)).tolist() == values


@pytest.mark.parametrize("size", [3, 100], ids=["python_loop", "numpy"])
def test_packed_varints_cut_mid_value(size: int) -> None:
    run = packed_int64([-1] * size)
    with pytest.raises(WireError):
        decode_packed_varints(run, 0, len(run) - 1)


@pytest.mark.parametrize("size", [1, 10], ids=["python_loop", "numpy"])
def test_packed_varint_longer_than_ten_bytes(size: int) -> None:
    run = (b"\xff" * 10 + b"\x01") * size
    with pytest.raises(WireError, match="longer than 10 bytes"):
        decode_packed_varints(run, 0, len(run))


def test_packed_fixed_is_a_view() -> None:
    values = np.array([1.5, -np.inf, np.nan], dtype="<f4")
    buf = b"\x00" + values.tobytes()
    decoded = decode_packed_fixed(buf, 1, len(buf), np.dtype("<f4"))
    assert decoded.tobytes() == values.tobytes()
    assert decoded.base is not None


def test_packed_fixed_wrong_size() -> None:
    with pytest.raises(WireError, match="not a multiple of 8"):
        decode_packed_fixed(bytes(12), 0, 12, np.dtype("<f8"))


# --- robustness ---------------------------------------------------------------------------------


@settings(max_examples=500)
@given(st.binary(max_size=120))
def test_random_bytes_raise_only_wire_error(data: bytes) -> None:
    with contextlib.suppress(WireError):
        fields(data)
    with contextlib.suppress(WireError):
        decode_packed_varints(data, 0, len(data))
