"""The compiled kernels against their references: the scan against the Python scan, the numeric
kernels against numpy, and a whole evaluation with and without them.

The scan's contract (devtools/fuzz_kernels.py's ``Checker`` holds every call to it): for every
input the compiled ``scan_event_file`` either declines (None), or returns exactly what
``scan_event_file_python`` returns, which then must not have raised; each content descriptor
views the array ``decode_tensor_at`` decodes, and there is none where that decode raises. On
the files smdebug's own writer produces it never declines. Named cases pin what each form gives
(taken on, left to Python, refused); hypothesis runs event files built by smdebug's protobuf
classes and by hand (any dtype, shape, mode, tag, field order), whole or corrupted.
"""

from __future__ import annotations

import json
import random
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from smdebug.core.tfevent.proto.event_pb2 import Event
from smdebug.core.tfevent.proto.summary_pb2 import Summary, SummaryMetadata
from smdebug.core.tfevent.util import make_tensor_proto
from smdebug.core.tfrecord.record_writer import RecordWriter

from container.app import run
from container.config import Settings
from devtools.fuzz_kernels import (
    END_GROUP,
    FILE_VERSION_EVENT,
    FIXED32,
    FIXED64,
    LEN,
    REDUCTION_TAG,
    SEED_STEP,
    START_GROUP,
    VARINT,
    Checker,
    Field,
    Message,
    Mutator,
    Seed,
    encode,
    event,
    event_file,
    frame,
    hand_seeds,
    len_field,
    masked_crc,
    metadata,
    parse,
    random_tensor,
    step_counts_case,
    summary_value,
    tensor_proto,
    varint,
    varint_field,
    write_smdebug_seeds,
)
from devtools.write_trial import for_smdebug
from evaluator import compiled
from evaluator.core import RuleParameters
from evaluator.trial.layout import REDUCTIONS_PREFIX
from tests.compiled import require_kernels
from tests.container.trials import write_trial

KERNELS = require_kernels()

Array = npt.NDArray[Any]
REPO = Path(__file__).resolve().parents[2]
F32 = np.arange(6, dtype="<f4").tobytes()


@pytest.fixture(scope="module", autouse=True)
def compiled_in_use() -> Iterator[None]:
    """Another test's evaluation may have left the pure-Python path on; these need the C."""
    compiled.use_compiled(True)
    yield
    compiled.use_compiled(True)


CHECKER = Checker(KERNELS, str(getattr(KERNELS, "__file__", "")))


def one_value(
    tensor: bytes | Message | None,
    meta: Field | None = None,
    *,
    tag: bytes = b"t",
    step: int | None = SEED_STEP,
    footer: str = "constant",
) -> bytes:
    meta = metadata(b"1", b"7") if meta is None else meta
    return event_file([FILE_VERSION_EVENT, event(step, [summary_value(tag, tensor, meta)])], footer)


def content(dtype: int = 1, shape: tuple[int, ...] = (2, 3), data: bytes = F32) -> Message:
    return tensor_proto(dtype, shape, content=data)


def raw_value(*fields: Field) -> bytes:
    """One Summary.Value of exactly these fields, in this order, in a whole file."""
    return event_file([event(SEED_STEP, [tuple(fields)])])


def with_record_length(data: bytes, length: int) -> bytes:
    """The first record's length field replaced, its CRC made valid for the new length."""
    head = struct.pack("<Q", length)
    return head + struct.pack("<I", masked_crc(head)) + data[12:]


# -- named cases ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    data: bytes
    outcome: str
    """accepted (the C took it on), empty (no tensor record), declined (the C left it to Python,
    which read it), refused (left to Python, which raised its typed error)."""
    contents: tuple[bool, ...] | None = None
    """Accepted: whether each span carries a content descriptor."""
    mode: tuple[str, int] | None = None
    step: int = SEED_STEP
    verify: bool = True


def nested(depth: int) -> bytes:
    body = b""
    for _ in range(depth):
        body = varint(1 << 3 | LEN) + varint(len(body)) + body
    return body


TENSOR = content(1, (1,), F32[:4])
TAG = len_field(1, b"t")
TENSOR_FIELD = len_field(8, TENSOR)
META = metadata(b"1", b"7")

CASES: dict[str, Case] = {
    # content descriptors: plain numeric tensor_content whose size matches the shape
    "content_float32": Case(one_value(content()), "accepted", (True,)),
    "content_0d": Case(one_value(content(2, (), struct.pack("<d", 0.5))), "accepted", (True,)),
    "content_without_shape_is_0d": Case(
        one_value(tensor_proto(9, None, content=bytes(8))), "accepted", (True,)
    ),
    "content_half": Case(one_value(content(19, (4,), bytes(8))), "accepted", (True,)),
    "content_complex128": Case(one_value(content(18, (1,), bytes(16))), "accepted", (True,)),
    "content_uint64_with_dim_names": Case(
        one_value(tensor_proto(23, (1, 1), content=bytes(8), dim_names=True)),
        "accepted",
        (True,),
    ),
    "content_dtype_above_32_bits_is_truncated": Case(
        one_value(content(2**32 + 1)), "accepted", (True,)
    ),
    "content_bfloat16_is_converted": Case(
        one_value(content(14, (2,), bytes(4))), "accepted", (False,)
    ),
    "content_bool_is_converted": Case(
        one_value(content(10, (3,), b"\0\1\2")), "accepted", (False,)
    ),
    "content_string_dtype": Case(one_value(content(7, (1,), b"ab")), "accepted", (False,)),
    "content_one_byte_short": Case(one_value(content(1, (2, 3), F32[:-1])), "accepted", (False,)),
    "content_one_byte_long": Case(one_value(content(1, (2, 3), F32 + b"\0")), "accepted", (False,)),
    "content_product_overflows_64_bits": Case(
        one_value(content(1, (1 << 40, 1 << 40, 1 << 40), F32)), "accepted", (False,)
    ),
    "content_dim_of_2_to_48": Case(one_value(content(4, (1 << 48,), b"x")), "accepted", (False,)),
    "content_33_dims": Case(one_value(content(4, (1,) * 33, b"x")), "accepted", (False,)),
    "content_unknown_rank": Case(
        one_value((varint_field(1, 1), len_field(2, (varint_field(3, 1),)), len_field(4, F32))),
        "accepted",
        (False,),
    ),
    "content_twice_the_last_wins": Case(
        one_value((*content(1, (1,), F32[:4]), len_field(4, F32[:8]))), "accepted", (False,)
    ),
    "typed_int64_packed": Case(
        one_value(tensor_proto(9, (2,), typed=[len_field(10, varint(5) + varint(2**64 - 1))])),
        "accepted",
        (False,),
    ),
    "typed_broadcast_float": Case(
        one_value(tensor_proto(1, (2, 2), typed=[Field(5, FIXED32, F32[4:8])])),
        "accepted",
        (False,),
    ),
    "strings": Case(
        one_value(tensor_proto(None, (2,), typed=[len_field(8, b"a"), len_field(8, b"b")])),
        "accepted",
        (False,),
    ),
    "empty_tensor_proto": Case(one_value(()), "accepted", (False,)),
    # modes and mode steps
    "mode_train": Case(one_value(TENSOR, metadata(b"1", b"7")), "accepted", mode=("TRAIN", 7)),
    "mode_eval": Case(one_value(TENSOR, metadata(b"2", b"0")), "accepted", mode=("EVAL", 0)),
    "mode_predict": Case(one_value(TENSOR, metadata(b"3", b"7")), "accepted", mode=("PREDICT", 7)),
    "mode_global": Case(one_value(TENSOR, metadata(b"4", b"7")), "accepted", mode=("GLOBAL", 7)),
    "mode_missing_is_global": Case(
        one_value(TENSOR, metadata(None, b"3")), "accepted", mode=("GLOBAL", 3)
    ),
    "mode_step_missing_is_the_step": Case(
        one_value(TENSOR, metadata(b"2", None)), "accepted", mode=("EVAL", SEED_STEP)
    ),
    "no_metadata": Case(one_value(TENSOR, len_field(9, ())), "accepted", mode=("GLOBAL", 7)),
    "mode_step_negative": Case(
        one_value(TENSOR, metadata(b"1", b"-5")), "accepted", mode=("TRAIN", -5)
    ),
    "mode_step_leading_zeros": Case(
        one_value(TENSOR, metadata(b"1", b"007")), "accepted", mode=("TRAIN", 7)
    ),
    "mode_step_18_digits": Case(
        one_value(TENSOR, metadata(b"1", b"9" * 18)), "accepted", mode=("TRAIN", int("9" * 18))
    ),
    "mode_step_huge_left_to_python": Case(
        one_value(TENSOR, metadata(b"1", b"9" * 20)), "declined", mode=("TRAIN", int("9" * 20))
    ),
    "mode_spaced_left_to_python": Case(
        one_value(TENSOR, metadata(b" 2", b"7")), "declined", mode=("EVAL", 7)
    ),
    "mode_step_spaced_left_to_python": Case(
        one_value(TENSOR, metadata(b"2", b" 7")), "declined", mode=("EVAL", 7)
    ),
    "mode_step_plus_left_to_python": Case(
        one_value(TENSOR, metadata(b"2", b"+7")), "declined", mode=("EVAL", 7)
    ),
    "mode_step_unicode_digit_left_to_python": Case(
        one_value(TENSOR, metadata(b"2", "٣".encode())), "declined", mode=("EVAL", 3)
    ),
    "mode_x_refused": Case(one_value(TENSOR, metadata(b"x", b"7")), "refused"),
    "mode_5_refused": Case(one_value(TENSOR, metadata(b"5", b"7")), "refused"),
    "mode_empty_refused": Case(one_value(TENSOR, metadata(b"", b"7")), "refused"),
    "mode_step_not_a_number_refused": Case(one_value(TENSOR, metadata(b"1", b"x")), "refused"),
    "mode_step_minus_alone_refused": Case(one_value(TENSOR, metadata(b"1", b"-")), "refused"),
    "two_mode_steps_in_one_file_refused": Case(
        event_file(
            [
                event(SEED_STEP, [summary_value(b"a", TENSOR, metadata(b"1", b"7"))]),
                event(SEED_STEP, [summary_value(b"b", TENSOR, metadata(b"1", b"8"))]),
            ]
        ),
        "refused",
    ),
    "mode_of_a_reduction_counts": Case(
        event_file(
            [
                event(SEED_STEP, [summary_value(REDUCTION_TAG, TENSOR, metadata(b"2", b"7"))]),
                event(SEED_STEP, [summary_value(b"b", TENSOR, metadata(b"1", b"7"))]),
            ]
        ),
        "refused",
    ),
    "reductions_only": Case(
        one_value(TENSOR, tag=REDUCTION_TAG), "accepted", (), mode=("TRAIN", 7)
    ),
    # tags
    "tag_non_ascii": Case(one_value(TENSOR, tag="étiquette/日本".encode()), "accepted", (True,)),
    "tag_missing_is_empty": Case(raw_value(TENSOR_FIELD, META), "accepted", (True,)),
    "tag_after_tensor": Case(raw_value(META, TENSOR_FIELD, TAG), "accepted", (True,)),
    "tag_twice_the_last_wins": Case(
        raw_value(TAG, TENSOR_FIELD, len_field(1, b"u"), META), "accepted", (True,)
    ),
    "tag_invalid_utf8_refused": Case(one_value(TENSOR, tag=b"\xff\xfe"), "refused"),
    "tag_surrogate_refused": Case(one_value(TENSOR, tag=b"\xed\xa0\x80"), "refused"),
    "tag_invalid_utf8_without_tensor_refused": Case(
        raw_value(len_field(1, b"\xc3"), META), "refused"
    ),
    "plugin_name_invalid_utf8_refused": Case(
        one_value(TENSOR, len_field(9, (len_field(1, (len_field(1, b"\xff"),)),))), "refused"
    ),
    # records and steps
    "no_tensor_record": Case(event_file([FILE_VERSION_EVENT, event(SEED_STEP, [])]), "empty"),
    "empty_file": Case(b"", "empty"),
    "values_without_tensors": Case(
        event_file([event(SEED_STEP, [summary_value(b"s", None, META)])]), "empty"
    ),
    "wrong_step_refused": Case(one_value(TENSOR, step=SEED_STEP + 1), "refused"),
    "wrong_step_without_tensor": Case(
        event_file([event(SEED_STEP + 1, [summary_value(b"s", None, META)])]), "empty"
    ),
    "step_0_left_out": Case(one_value(TENSOR, step=None), "accepted", (True,), step=0),
    "step_negative": Case(one_value(TENSOR, step=-3), "accepted", (True,), step=-3),
    "step_beyond_64_bits_left_to_python": Case(one_value(TENSOR), "refused", step=2**63),
    "step_below_64_bits_left_to_python": Case(b"", "declined", step=-(2**63) - 1),
    "step_last_one_wins": Case(
        event_file([(varint_field(2, 99), *event(SEED_STEP, [summary_value(b"t", TENSOR, META)]))]),
        "accepted",
        (True,),
    ),
    "several_values_in_one_record": Case(
        event_file(
            [
                event(
                    SEED_STEP,
                    [
                        summary_value(b"labels", content(9, (2,), bytes(16)), META),
                        summary_value(b"scores", content(), META),
                        summary_value(REDUCTION_TAG, TENSOR, META),
                    ],
                )
            ]
        ),
        "accepted",
        (True, True),
    ),
    "several_records_real_crc_footers": Case(
        event_file([event(SEED_STEP, [summary_value(b"a", TENSOR, META)])] * 3, footer="crc"),
        "accepted",
        (True, True, True),
    ),
    "bad_payload_crc_verified_refused": Case(one_value(TENSOR, footer="bad"), "refused"),
    "bad_payload_crc_not_verified": Case(
        one_value(TENSOR, footer="bad"), "accepted", (True,), verify=False
    ),
    # framing
    "truncated_record_refused": Case(one_value(TENSOR)[:-1], "refused"),
    "truncated_header_refused": Case(one_value(TENSOR) + b"\0" * 11, "refused"),
    "bad_length_crc_refused": Case(
        one_value(TENSOR)[:8] + b"\0\0\0\0" + one_value(TENSOR)[12:], "refused"
    ),
    "length_2_to_63_with_a_valid_crc_refused": Case(
        with_record_length(one_value(TENSOR), 1 << 63), "refused"
    ),
    "length_2_to_64_minus_1_with_a_valid_crc_refused": Case(
        with_record_length(one_value(TENSOR), 2**64 - 1), "refused"
    ),
    # the wire format
    "overlong_varints": Case(
        raw_value(
            Field(1, LEN, b"t", key_pad=3, value_pad=2),
            Field(8, LEN, TENSOR, key_pad=1),
            META,
        ),
        "accepted",
        (True,),
    ),
    "varint_of_11_bytes_refused": Case(raw_value(Field(1, LEN, b"t", value_pad=10)), "refused"),
    "field_number_0_refused": Case(raw_value(TAG, Field(0, VARINT, 1)), "refused"),
    "field_number_above_2_to_29_refused": Case(raw_value(TAG, Field(2**29, VARINT, 1)), "refused"),
    "length_past_the_message_refused": Case(
        raw_value(TAG, Field(8, LEN, TENSOR, length_delta=1), META), "refused"
    ),
    "summary_as_varint_refused": Case(
        event_file([(varint_field(2, SEED_STEP), varint_field(5, 1))]), "refused"
    ),
    "step_as_bytes_refused": Case(event_file([(len_field(2, b"x"),)]), "refused"),
    "tensor_as_fixed64_refused": Case(raw_value(TAG, Field(8, FIXED64, bytes(8))), "refused"),
    "wire_type_7_refused": Case(raw_value(TAG, Field(3, 7, b"")), "refused"),
    "end_group_alone_refused": Case(raw_value(TAG, Field(3, END_GROUP, b"")), "refused"),
    "group_in_value_left_to_python": Case(
        raw_value(TAG, TENSOR_FIELD, META, Field(3, START_GROUP, (varint_field(1, 1),))),
        "declined",
    ),
    "group_in_event_left_to_python": Case(
        event_file(
            [(*event(SEED_STEP, [summary_value(b"t", TENSOR, META)]), Field(6, START_GROUP, ()))]
        ),
        "declined",
    ),
    "group_in_tensor_proto": Case(
        one_value((*TENSOR, Field(15, START_GROUP, ()))), "accepted", (False,)
    ),
    "groups_nested_10000_deep_left_to_python": Case(
        raw_value(
            TAG,
            TENSOR_FIELD,
            META,
            Field(3, START_GROUP, varint(3 << 3 | 3) * 9999 + varint(3 << 3 | 4) * 9999),
        ),
        "declined",
    ),
    "messages_nested_300_deep_skipped": Case(
        raw_value(TAG, TENSOR_FIELD, META, len_field(3, nested(300))), "accepted", (True,)
    ),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_scan(case: Case) -> None:
    assert CHECKER.scan(case.data, case.step, case.verify) == case.outcome
    if case.outcome != "accepted":
        return
    found = KERNELS.scan_event_file(case.data, case.step, case.verify)
    assert found is not None
    mode, mode_step, spans = found
    assert spans is not None
    if case.contents is not None:
        assert tuple(span[5] is not None for span in spans) == case.contents
    if case.mode is not None:
        assert (mode, mode_step) == case.mode


def test_left_to_python_means_read_by_python() -> None:
    """A form the C declines is still read: by the Python scan, behind the public entry."""
    from evaluator.trial.parsers import scan_event_file

    for name, case in CASES.items():
        if case.outcome == "declined" and case.mode is not None:
            described = scan_event_file(case.data, case.step, verify_payload=case.verify)
            assert described is not None, name
            assert described[:2] == case.mode, name


# -- the encoders these tests build with are the real ones ------------------------------------


def test_hand_framing_is_smdebugs(tmp_path: Path) -> None:
    payloads = [b"first", b"", bytes(range(256)) * 3]
    for checksum in (True, False):
        writer = RecordWriter(str(tmp_path / f"{checksum}.tfevents"), write_checksum=checksum)
        for payload in payloads:
            writer.write_record(payload)
        writer.close()
        written = (tmp_path / f"{checksum}.tfevents").read_bytes()
        assert written == frame(payloads, "crc" if checksum else "constant")


def test_hand_encoding_is_protobufs() -> None:
    array = np.arange(6, dtype=np.float32).reshape(2, 3)
    proto = make_tensor_proto(for_smdebug(array), "scores")
    value = Summary.Value(
        tag="scores",
        tensor=proto,
        metadata=SummaryMetadata(
            plugin_data=[
                SummaryMetadata.PluginData(plugin_name="mode_step", content="7"),
                SummaryMetadata.PluginData(plugin_name="mode", content="1"),
            ]
        ),
    )
    theirs = Event(wall_time=1.5, step=3, summary=Summary(value=[value])).SerializeToString()
    tree = parse(theirs)
    assert tree is not None
    assert encode(tree) == theirs
    ours = event(3, [summary_value(b"scores", parse(proto.SerializeToString()), META)])
    assert encode(ours) == theirs


# -- what smdebug's writer writes: never declined, and the same as its index files -------------


@pytest.fixture(scope="module")
def smdebug_trial(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fuzzer's seed trial (every dtype and mode, 0-d and empty tensors, odd tags, real CRC
    footers) and a trial of steps in alternating modes, both by smdebug's FileWriter."""
    folder = tmp_path_factory.mktemp("smdebug")
    write_smdebug_seeds(folder / "seeds")
    modes = ["TRAIN", "EVAL", "PREDICT", "GLOBAL"]

    def batch(rng: np.random.Generator, step: int) -> tuple[Array, Array]:
        dtype = ("float32", "float16", "float64")[step % 3]
        return rng.integers(0, 4, 8), rng.random((8, 4)).astype(dtype)

    write_trial(
        folder / "trial", steps=6, make_batch=batch, workers=2, modes=lambda s: modes[s % 4]
    )
    return folder


def smdebug_event_files(folder: Path) -> list[Path]:
    files = sorted(folder.rglob("events/*/*.tfevents"))
    bench = REPO / "bench" / "out" / "trials"  # written by `make bench`, when there
    if bench.is_dir():
        extra = sorted(bench.glob("*/events/*/*.tfevents"))
        files += random.Random(0).sample(extra, min(200, len(extra)))
    return files


def test_files_smdebug_writes_are_never_declined(smdebug_trial: Path) -> None:
    files = smdebug_event_files(smdebug_trial)
    assert len(files) >= 17
    for path in files:
        data, step = path.read_bytes(), int(path.name.split("_")[0])
        for verify in (True, False):
            assert CHECKER.scan(data, step, verify) == "accepted", path
        trial = path.parents[2]
        index_name = path.name.replace(".tfevents", ".json")
        index = json.loads((trial / "index" / f"{step // 1000:09d}" / index_name).read_text())
        found = KERNELS.scan_event_file(data, step, True)
        assert found is not None
        assert found[2] is not None
        mode, mode_step, spans = found
        assert (mode, mode_step) == (index["meta"]["mode"], index["meta"]["mode_step"])
        indexed = [
            (entry["tensorname"], entry["start_idx"], entry["length"])
            for entry in index["tensor_payload"]
            if not entry["tensorname"].startswith(REDUCTIONS_PREFIX)
        ]
        assert [span[:3] for span in spans] == indexed
        for span in spans:
            decoded = CHECKER._decode(data, span[3], span[4], span[0])
            plain = decoded.dtype != np.bool_ and decoded.size and decoded.dtype.kind != "U"
            assert (span[5] is not None) == bool(plain), (path, span)


def test_smdebug_seed_corpus_covers_every_mode_and_dtype(smdebug_trial: Path) -> None:
    modes, dtypes = set(), set()
    for path in smdebug_event_files(smdebug_trial):
        found = KERNELS.scan_event_file(path.read_bytes(), int(path.name.split("_")[0]), True)
        assert found is not None
        assert found[2] is not None
        modes.add(found[0])
        dtypes.update(span[5][0] for span in found[2] if span[5] is not None)
    assert modes == {"TRAIN", "EVAL", "PREDICT", "GLOBAL"}
    assert dtypes == {1, 2, 3, 4, 5, 6, 8, 9, 17, 18, 19, 22, 23}


# -- properties -------------------------------------------------------------------------------

NUMERIC = ["float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8"]
NUMERIC += ["uint16", "uint32", "uint64", "complex64", "complex128", "bool"]
TEXTS = st.one_of(
    st.sampled_from([b"1", b"2", b"3", b"4", b"0", b"7", b"-5", b" 2", b"x", b"", b"9" * 20]),
    st.from_regex(rb"-?[0-9]{1,19}", fullmatch=True),
    st.binary(max_size=4),
)
TAGS = st.one_of(
    st.sampled_from([b"labels", b"predictions", REDUCTION_TAG, b"smdebug/reductions/x", b""]),
    st.text(max_size=8).map(str.encode),
    st.binary(max_size=4),
)


def writable(array: Array) -> Array:
    """``for_smdebug`` without its promotion of 0-d arrays to shape (1,)."""
    return for_smdebug(array.reshape(-1)).reshape(array.shape)


@st.composite
def tensors(draw: st.DrawFn) -> bytes | Message | None:
    """A TensorProto: smdebug's encoding of a numpy array, or a hand-encoded one of any dtype,
    shape and storage (devtools.fuzz_kernels.random_tensor), or garbage, or none."""
    kind = draw(st.sampled_from(["smdebug", "smdebug", "hand", "hand", "garbage", "none"]))
    if kind == "smdebug":
        array = draw(
            hnp.arrays(
                st.sampled_from([np.dtype(name) for name in NUMERIC]),
                hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4),
            )
        )
        return bytes(make_tensor_proto(writable(array), "t").SerializeToString())
    if kind == "hand":
        return random_tensor(draw(st.randoms(use_true_random=False)))
    return draw(st.binary(max_size=24)) if kind == "garbage" else None


@st.composite
def event_files(draw: st.DrawFn) -> tuple[bytes, int, bool]:
    """A whole event file: records of tensor values (mostly one mode step per file, as smdebug
    writes), other events, in protobuf's field order or shuffled; then maybe corrupted."""
    step = draw(st.sampled_from([0, 1, SEED_STEP, -1, 2**62, 2**63 - 1]))
    mode, mode_step = draw(TEXTS), draw(st.none() | TEXTS)
    records: list[bytes] = []
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(st.sampled_from(["values", "values", "values", "version", "empty"]))
        if kind == "version":
            records.append(encode(FILE_VERSION_EVENT))
            continue
        if kind == "empty":
            records.append(b"")
            continue
        values = []
        for _ in range(draw(st.integers(1, 3))):
            own = draw(st.booleans()) and draw(st.integers(0, 9)) == 0
            meta = metadata(draw(TEXTS), draw(TEXTS)) if own else metadata(mode, mode_step)
            fields = list(summary_value(draw(TAGS), draw(tensors()), meta))
            if draw(st.booleans()):
                fields = draw(st.permutations(fields))
            values.append(tuple(fields))
        event_step = step if draw(st.integers(0, 9)) else draw(st.sampled_from([0, step + 1]))
        records.append(encode(event(event_step, values)))
    data = frame(records, draw(st.sampled_from(["constant", "crc"])))
    verify = draw(st.booleans())
    if draw(st.integers(0, 2)) == 0:
        mutator = Mutator([Seed("drawn", data, step, False)], draw(st.randoms()))
        data, step, verify = mutator.mutant()
    return data, step, verify


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(event_files())
def test_scan_equals_python_or_declines(drawn: tuple[bytes, int, bool]) -> None:
    data, step, verify = drawn
    CHECKER.scan(data, step, verify)  # raises Finding on any difference


SEEDS = hand_seeds()


@settings(max_examples=300, deadline=None)
@given(st.randoms(use_true_random=False))
def test_scan_of_mutants_equals_python_or_declines(rng: random.Random) -> None:
    """The fuzzer's mutations (devtools/fuzz_kernels.py) of its hand-encoded seeds."""
    data, step, verify = Mutator(SEEDS, rng).mutant()
    CHECKER.scan(data, step, verify)


# -- argmax_finite ------------------------------------------------------------------------------


def check_argmax(arrays: list[Array], room: int = 0) -> str:
    rows = sum(a.shape[0] for a in arrays if a.ndim == 2)
    return CHECKER.argmax(arrays, np.full(rows + room, -7, dtype=np.int64))


def misaligned(array: Array, shift: int = 1) -> Array:
    raw = bytes(shift) + array.tobytes()
    return np.frombuffer(raw, array.dtype, array.size, shift).reshape(array.shape)


F16_TINY = np.float16(2**-24)  # the smallest subnormal half

ARGMAX_CASES: dict[str, tuple[list[Array], str]] = {
    "first_maximum_wins": ([np.array([[1, 3, 3], [2, 2, 2]], "f4")], "finite"),
    "negative_zero_ties_zero": ([np.array([[-0.0, 0.0], [0.0, -0.0]], "f8")], "finite"),
    "all_negative": ([np.array([[-3, -1, -2]], "f2")], "finite"),
    "half_subnormals": ([np.array([[0, F16_TINY], [F16_TINY * 3, F16_TINY * 2]], "f2")], "finite"),
    "half_max_and_smallest_normal": ([np.array([[6.1e-5, 65504, -65504]], "f2")], "finite"),
    "double_subnormal": ([np.array([[0.0, 5e-324]], "f8")], "finite"),
    "nan": ([np.array([[0, np.nan, 1]], "f4")], "not_finite"),
    "infinity": ([np.array([[0, 1], [np.inf, 0]], "f8")], "not_finite"),
    "negative_infinity_half": ([np.array([[-np.inf, 1]], "f2")], "not_finite"),
    "nan_in_a_later_batch": ([np.eye(2, dtype="f4"), np.array([[np.nan, 0]], "f4")], "not_finite"),
    "misaligned_views": (
        [misaligned(np.array([[1, 5, 2]], d), s) for d in ("f2", "f4", "f8") for s in (1, 3)],
        "finite",
    ),
    "batches_of_other_widths": ([np.eye(2, dtype="f4"), np.eye(5, dtype="f4")[1:]], "finite"),
    "empty_batches": (
        [np.zeros((0, 3), "f4"), np.eye(3, dtype="f4"), np.zeros((0, 3), "f4")],
        "finite",
    ),
    "no_batches": ([], "finite"),
    "one_column": ([np.array([[np.float16(3)], [np.float16(-1)]])], "finite"),
    "integer_scores_refused": ([np.eye(2, dtype="i8")], "refused"),
    "float128_refused": ([np.eye(2, dtype=np.longdouble)], "refused"),
    "big_endian_refused": ([np.eye(2, dtype=">f4")], "refused"),
    "one_dimension_refused": ([np.ones(3, "f4")], "refused"),
    "three_dimensions_refused": ([np.ones((1, 2, 2), "f4")], "refused"),
    "no_columns_refused": ([np.zeros((2, 0), "f4")], "refused"),
    "not_contiguous_refused": ([np.eye(4, dtype="f4")[:, ::2]], "refused"),
}


@pytest.mark.parametrize(("arrays", "outcome"), ARGMAX_CASES.values(), ids=ARGMAX_CASES.keys())
def test_argmax(arrays: list[Array], outcome: str) -> None:
    assert check_argmax(arrays, room=2) == outcome


def test_argmax_refuses_an_out_too_small_or_of_another_form() -> None:
    scores = [np.eye(3, dtype="f4")]
    for out in (
        np.zeros(2, np.int64),
        np.zeros(3, np.int32),
        np.zeros(3, np.float64),
        np.zeros(3, np.uint64),
    ):
        with pytest.raises(ValueError, match=r"out must be|room in out"):
            KERNELS.argmax_finite(scores, out)
    for out in (np.zeros(6, np.int64)[::2], np.frombuffer(bytes(24), np.int64)):
        with pytest.raises((BufferError, ValueError)):  # the buffer protocol's refusal
            KERNELS.argmax_finite(scores, out)


def test_argmax_of_every_half() -> None:
    """Every finite float16 against its neighbours, ties and negation: the C's conversion of
    half bit patterns (subnormals included) orders them as numpy does."""
    every = np.arange(1 << 16, dtype=np.uint16).view(np.float16)
    finite = every[np.isfinite(every)]
    order = np.random.default_rng(0).permutation(finite.size)
    pairs = [
        np.stack([finite, finite[order]], axis=1),
        np.stack([finite, finite], axis=1),
        np.stack([finite, -finite], axis=1),
        np.stack([np.sort(finite)[:-1], np.sort(finite)[1:]], axis=1),
    ]
    assert check_argmax([np.ascontiguousarray(p) for p in pairs]) == "finite"


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(["<f2", "<f4", "<f8"]),
    st.lists(st.tuples(st.integers(0, 6), st.integers(0, 7)), max_size=4),
    st.integers(1, 5),
    st.data(),
)
def test_argmax_equals_numpy(
    dtype: str, batches: list[tuple[int, int]], width: int, data: st.DataObject
) -> None:
    elements = st.one_of(
        st.sampled_from([0.0, -0.0, 1.0, -1.0]),
        st.floats(width=8 * np.dtype(dtype).itemsize, allow_nan=True, allow_infinity=True),
    )
    arrays = [
        misaligned(data.draw(hnp.arrays(np.dtype(dtype), (rows, width), elements=elements)), shift)
        for rows, shift in batches
    ]
    check_argmax(arrays, room=data.draw(st.integers(0, 2)))


# -- step_counts --------------------------------------------------------------------------------

I64 = np.int64


def counts_case(
    labels: list[int], predicted: list[int], stops: list[int], width: int
) -> tuple[Array, Array, Array, Array, Array]:
    steps = len(stops)
    return (
        np.array(labels, I64),
        np.array(predicted, I64),
        np.array(stops, I64),
        np.zeros((steps, width), I64),
        np.zeros((steps, width), I64),
    )


STEP_COUNTS_CASES: dict[str, tuple[tuple[Array, Array, Array, Array, Array], str]] = {
    "two_steps": (counts_case([0, 1, 1, 2], [0, 0, 1, 1], [2, 4], 3), "counted"),
    "an_empty_step": (counts_case([0, 1], [1, 1], [1, 1, 2], 2), "counted"),
    "no_rows": (counts_case([], [], [0, 0], 4), "counted"),
    "rows_after_the_last_stop_refused": (counts_case([0, 1, 1], [0, 1, 0], [2], 2), "refused"),
    "label_at_the_width_refused": (counts_case([0, 2], [0, 2], [2], 2), "refused"),
    "negative_label_refused": (counts_case([-1], [0], [1], 2), "refused"),
    "falling_stops_refused": (counts_case([0, 0, 0], [0, 0, 0], [2, 1], 1), "refused"),
    "stop_past_the_rows_refused": (counts_case([0], [0], [2], 1), "refused"),
    "negative_stop_refused": (counts_case([0], [0], [-1], 1), "refused"),
    "no_steps_refused": (counts_case([], [], [], 1), "refused"),
}


@pytest.mark.parametrize(
    ("arrays", "outcome"), STEP_COUNTS_CASES.values(), ids=STEP_COUNTS_CASES.keys()
)
def test_step_counts(arrays: tuple[Array, Array, Array, Array, Array], outcome: str) -> None:
    assert CHECKER.step_counts(*arrays) == outcome


def test_step_counts_adds_to_the_counts_it_is_given() -> None:
    labels, predicted, stops, samples, wrong = counts_case([1, 1], [0, 1], [2], 2)
    samples += 5
    KERNELS.step_counts(labels, predicted, stops, samples, wrong)
    assert samples.tolist() == [[5, 7]]
    assert wrong.tolist() == [[0, 1]]


@pytest.mark.parametrize(
    "change",
    [
        lambda a: (a[0].astype(np.int32), *a[1:]),
        lambda a: (a[0].astype(np.uint64), *a[1:]),
        lambda a: (a[0].astype(np.float64), *a[1:]),
        lambda a: (a[0], a[1][:-1], *a[2:]),
        lambda a: (*a[:4], np.zeros((2, 1), I64)),
        lambda a: (*a[:3], np.zeros((2, 3), I64)[:, ::2], a[4]),
    ],
    ids=["int32", "uint64", "float64", "shorter_predictions", "narrower_wrong", "strided"],
)
def test_step_counts_refuses_other_forms(change: Callable[[Any], Any]) -> None:
    arrays = change(counts_case([0, 1], [0, 0], [1, 2], 2))
    with pytest.raises(ValueError, match=r"int64|disagree|contiguous"):
        KERNELS.step_counts(*arrays)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 2**63 - 1))
def test_step_counts_equals_bincounts(seed: int) -> None:
    CHECKER.step_counts(*step_counts_case(np.random.default_rng(seed)))


# -- a whole evaluation, compiled and in pure Python --------------------------------------------


@pytest.fixture
def both_paths() -> Iterator[None]:
    yield
    compiled.use_compiled(True)


def batches(dtype: str, nan_at: int | None) -> Callable[[np.random.Generator, int], Any]:
    def batch(rng: np.random.Generator, step: int) -> tuple[Array, Array]:
        labels = rng.choice(4, size=32, p=[0.7, 0.2, 0.08, 0.02])
        scores = rng.standard_normal((32, 4))
        scores[np.arange(32), labels] += 1.5
        if step == nan_at:
            scores[3, 1] = np.nan
        if step == 6:
            labels[0] = 9  # beyond the scores' classes
        return labels.astype(np.int64), scores.astype(dtype)

    return batch


TRIALS = {
    # every mode, two workers, an event file cut short: the compiled scan declines it, and
    # the Python scan says why; the whole-chunk path with the compiled argmax and counts
    "float16_every_mode_one_file_cut": ("float16", None, "000000000004_worker_1.tfevents"),
    # a NaN score: the compiled argmax says so, and the chunk is counted batch by batch
    "float64_with_a_nan_score": ("float64", 5, None),
}


@pytest.mark.parametrize("form", TRIALS.values(), ids=TRIALS.keys())
def test_an_evaluation_is_the_same_with_and_without_the_kernels(
    tmp_path: Path,
    both_paths: None,
    monkeypatch: pytest.MonkeyPatch,
    form: tuple[str, int | None, str | None],
) -> None:
    dtype, nan_at, cut = form
    modes = ["TRAIN", "EVAL", "TRAIN", "PREDICT", "GLOBAL"]
    trial = tmp_path / "trial"
    write_trial(
        trial, steps=12, make_batch=batches(dtype, nan_at), workers=2, modes=lambda s: modes[s % 5]
    )
    if cut is not None:
        damaged = next(trial.rglob(cut))
        damaged.write_bytes(damaged.read_bytes()[:-7])
    calls: dict[str, int] = {}
    for name in ("scan_event_file", "argmax_finite", "step_counts"):
        original = getattr(KERNELS, name)

        def counted(*args: Any, _name: str = name, _original: Any = original) -> Any:
            calls[_name] = calls.get(_name, 0) + 1
            return _original(*args)

        monkeypatch.setattr(KERNELS, name, counted)
    documents = {}
    for pure_python in (False, True):
        settings_ = Settings.of(
            base_trial=str(trial),
            status_file=str(tmp_path / f"status-{pure_python}.json"),
            rule=RuleParameters(argmax=True, samples=50, threshold_imbalance=3.0),
            metrics_enabled=False,
            poll_interval=0.02,
            idle_timeout=30,
            read_retries=1,
            read_retry_delay=0.02,
            pure_python=pure_python,
        )
        before = dict(calls)
        outcome = run(settings_)
        assert compiled.in_use() is not pure_python
        if pure_python:
            assert calls == before, "the pure-Python run called the kernels"
        else:
            assert calls.keys() == {"scan_event_file", "argmax_finite", "step_counts"}
        document = dict(outcome.document)
        for volatile in ("started_at", "updated_at"):
            document.pop(volatile)
        documents[pure_python] = (outcome.status, document)
    assert documents[False] == documents[True]
    skipped = documents[False][1]["skipped"]
    assert bool(skipped["files"]) is (cut is not None), skipped
    assert bool(skipped["rows"]) is (nan_at is not None), skipped
