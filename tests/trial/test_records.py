"""TFRecord framing, checked against files written by smdebug's own RecordWriter."""

from __future__ import annotations

import contextlib
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

os.environ.setdefault("SMDEBUG_LOG_LEVEL", "warning")

from smdebug.core.tfrecord.record_writer import CHECKSUM_MAGIC_BYTES, RecordWriter
from smdebug.core.tfrecord.record_writer import masked_crc32c as smdebug_masked_crc32c

from evaluator.trial.records import (
    RECORD_OVERHEAD,
    SMDEBUG_CONSTANT_FOOTER,
    RecordError,
    iter_records,
    masked_crc32c,
    record_payload,
)

PAYLOADS = (b"first payload", b"", bytes(range(256)) * 40, b"\x00" * 3)


def write_with_smdebug(path: Path, payloads: tuple[bytes, ...], *, checksum: bool) -> bytes:
    writer = RecordWriter(str(path), write_checksum=checksum)
    for payload in payloads:
        writer.write_record(payload)
    writer.close()
    return path.read_bytes()


def offsets(payloads: tuple[bytes, ...]) -> list[int]:
    starts, offset = [], 0
    for payload in payloads:
        starts.append(offset)
        offset += len(payload) + RECORD_OVERHEAD
    return starts


@pytest.fixture(params=[True, False], ids=["real_crc_footer", "smdebug_constant_footer"])
def checksum(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


@pytest.fixture
def event_file(tmp_path: Path, checksum: bool) -> bytes:
    return write_with_smdebug(tmp_path / "file.tfevents", PAYLOADS, checksum=checksum)


# --- CRC --------------------------------------------------------------------------------------


def test_constant_footer_is_smdebugs() -> None:
    assert smdebug_masked_crc32c(CHECKSUM_MAGIC_BYTES) == SMDEBUG_CONSTANT_FOOTER


@given(st.binary(max_size=300))
def test_masked_crc32c_matches_smdebug(data: bytes) -> None:
    assert masked_crc32c(data) == smdebug_masked_crc32c(data)
    assert masked_crc32c(memoryview(data)) == masked_crc32c(data)


# --- well-formed files --------------------------------------------------------------------------


@pytest.mark.parametrize("verify", [True, False])
def test_iter_records_reads_every_record(event_file: bytes, verify: bool) -> None:
    records = list(iter_records(event_file, verify_payload=verify))
    assert [offset for offset, _ in records] == offsets(PAYLOADS)
    assert [bytes(payload) for _, payload in records] == list(PAYLOADS)


@pytest.mark.parametrize("verify", [True, False])
def test_record_payload_reads_each_indexed_record(event_file: bytes, verify: bool) -> None:
    for start, payload in zip(offsets(PAYLOADS), PAYLOADS, strict=True):
        length = len(payload) + RECORD_OVERHEAD
        view = record_payload(event_file, start, length, verify_payload=verify)
        assert isinstance(view, memoryview)
        assert view.obj is event_file  # zero copy
        assert bytes(view) == payload


def test_empty_file_has_no_records() -> None:
    assert list(iter_records(b"", verify_payload=True)) == []


# --- corruption ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Corruption:
    """Flip one byte of the first record and say which check must catch it."""

    byte: int
    checksum: bool
    verify: bool
    reason: str | None  # None: undetectable by design, the payload is returned


FIRST = PAYLOADS[0]
CORRUPTIONS = {
    "length_field": Corruption(0, True, False, "length_crc"),
    "length_crc": Corruption(9, False, False, "length_crc"),
    "payload_real_crc_verified": Corruption(13, True, True, "payload_crc"),
    "footer_real_crc_verified": Corruption(12 + len(FIRST) + 1, True, True, "payload_crc"),
    "payload_real_crc_not_verified": Corruption(13, True, False, None),
    # A constant footer carries no checksum: a corrupt payload cannot be detected.
    "payload_constant_footer_verified": Corruption(13, False, True, None),
    "footer_constant_not_verified": Corruption(12 + len(FIRST), False, False, None),
}


@pytest.mark.parametrize("case", CORRUPTIONS.values(), ids=CORRUPTIONS.keys())
def test_corruption(tmp_path: Path, case: Corruption) -> None:
    data = bytearray(write_with_smdebug(tmp_path / "f", PAYLOADS, checksum=case.checksum))
    data[case.byte] ^= 0x40
    buf = bytes(data)
    length = len(FIRST) + RECORD_OVERHEAD
    if case.reason is None:
        assert len(record_payload(buf, 0, length, verify_payload=case.verify)) == len(FIRST)
        return
    with pytest.raises(RecordError) as caught:
        record_payload(buf, 0, length, verify_payload=case.verify, where="events/x.tfevents")
    assert caught.value.reason == case.reason
    assert "record at offset 0 of events/x.tfevents" in str(caught.value)
    with pytest.raises(RecordError) as walked:
        list(iter_records(buf, verify_payload=case.verify))
    assert walked.value.reason == case.reason


def test_index_length_disagreeing_with_header(event_file: bytes) -> None:
    with pytest.raises(RecordError) as caught:
        record_payload(event_file, 0, len(FIRST) + RECORD_OVERHEAD + 2, verify_payload=False)
    assert caught.value.reason == "length_mismatch"
    assert f"payload is {len(FIRST)} bytes" in str(caught.value)


def test_offset_not_at_a_record(event_file: bytes) -> None:
    with pytest.raises(RecordError) as caught:
        record_payload(event_file, 1, 20, verify_payload=False)
    assert caught.value.reason == "length_crc"


@pytest.mark.parametrize(("start", "length"), [(-1, 20), (0, 15), (0, 0)])
def test_impossible_index_entries(event_file: bytes, start: int, length: int) -> None:
    with pytest.raises(RecordError) as caught:
        record_payload(event_file, start, length, verify_payload=False)
    assert caught.value.reason == "bad_index"


def test_truncated_message_says_what_and_why(event_file: bytes) -> None:
    length = len(FIRST) + RECORD_OVERHEAD
    with pytest.raises(RecordError) as caught:
        record_payload(event_file[:20], 0, length, verify_payload=False, where="events/a.tfevents")
    message = str(caught.value)
    assert caught.value.reason == "truncated"
    assert caught.value.where == "events/a.tfevents"
    assert f"expected {length} bytes, found 20" in message
    assert "truncated" in message


def test_every_cut_point_is_reported_as_truncation(event_file: bytes) -> None:
    boundaries = {*offsets(PAYLOADS), len(event_file)}
    for cut in range(len(event_file)):
        head = event_file[:cut]
        if cut in boundaries:
            complete = [o for o in offsets(PAYLOADS) if o < cut]
            assert [o for o, _ in iter_records(head, verify_payload=True)] == complete
        else:
            with pytest.raises(RecordError) as caught:
                list(iter_records(head, verify_payload=True))
            assert caught.value.reason == "truncated", cut
        for start, payload in zip(offsets(PAYLOADS), PAYLOADS, strict=True):
            length = len(payload) + RECORD_OVERHEAD
            if cut < start + length:
                with pytest.raises(RecordError) as caught:
                    record_payload(head, start, length, verify_payload=True)
                assert caught.value.reason == "truncated", (cut, start)


def test_record_error_is_a_value_error() -> None:
    assert issubclass(RecordError, ValueError)


# --- properties ---------------------------------------------------------------------------------


def frame(payload: bytes, *, real_crc: bool) -> bytes:
    """An independent TFRecord framer, written from the format description."""
    header = struct.pack("<Q", len(payload))
    footer = smdebug_masked_crc32c(payload) if real_crc else SMDEBUG_CONSTANT_FOOTER
    return (
        header
        + struct.pack("<I", smdebug_masked_crc32c(header))
        + payload
        + struct.pack("<I", footer)
    )


@given(st.lists(st.binary(max_size=64), max_size=5), st.booleans())
def test_framing_round_trip(payloads: list[bytes], real_crc: bool) -> None:
    buf = b"".join(frame(p, real_crc=real_crc) for p in payloads)
    assert [bytes(p) for _, p in iter_records(buf, verify_payload=True)] == payloads


@settings(max_examples=300)
@given(st.binary(max_size=200), st.booleans())
def test_random_bytes_raise_only_record_error(data: bytes, verify: bool) -> None:
    with contextlib.suppress(RecordError):
        list(iter_records(data, verify_payload=verify))


@settings(max_examples=300)
@given(
    st.binary(min_size=1, max_size=40),
    st.integers(min_value=0, max_value=80),
    st.integers(min_value=0, max_value=7),
    st.booleans(),
)
def test_bit_flips_raise_only_record_error(payload: bytes, at: int, bit: int, verify: bool) -> None:
    data = bytearray(frame(payload, real_crc=True) * 2)
    data[at % len(data)] ^= 1 << bit
    try:
        list(iter_records(bytes(data), verify_payload=verify))
        record_payload(bytes(data), 0, len(payload) + RECORD_OVERHEAD, verify_payload=verify)
    except RecordError:
        pass
