"""Tensor decoding, checked against smdebug's protobuf classes, writer and reader.

The catalogue builds one serialized ``TensorProto`` per (dtype, encoding, shape): raw
``tensor_content`` as smdebug writes it, every typed field packed (protobuf's encoder) and
unpacked (hand-encoded, and confirmed by protobuf's parser to mean the same message).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

os.environ.setdefault("SMDEBUG_LOG_LEVEL", "warning")

from google.protobuf.internal.encoder import _VarintBytes  # type: ignore[import-untyped]
from smdebug.core.tfevent.event_file_reader import get_tensor_data
from smdebug.core.tfevent.proto.event_pb2 import Event
from smdebug.core.tfevent.proto.summary_pb2 import Summary
from smdebug.core.tfevent.proto.tensor_pb2 import TensorProto
from smdebug.core.tfevent.proto.tensor_shape_pb2 import TensorShapeProto
from smdebug.core.tfevent.util import make_tensor_proto

from devtools.write_trial import end_training, export_collections, for_smdebug, write_step
from evaluator.trial.protowire import WireError
from evaluator.trial.records import RecordError, iter_records, record_payload
from evaluator.trial.tensors import TensorDecodeError, decode_event_tensors, decode_tensor_proto

Array = npt.NDArray[Any]
U64 = (1 << 64) - 1
B, C = 4, 3
SHAPES: dict[str, tuple[int, ...]] = {"scalar": (), "B": (B,), "B1": (B, 1), "BC": (B, C)}
NAN32 = float(np.float32(np.nan))

# DataType numbers, from smdebug's types_pb2 (see test_dtype_numbers_match_smdebug).
DT = {
    "float32": 1,
    "float64": 2,
    "int32": 3,
    "uint8": 4,
    "int16": 5,
    "int8": 6,
    "string": 7,
    "complex64": 8,
    "int64": 9,
    "bool": 10,
    "bfloat16": 14,
    "uint16": 17,
    "complex128": 18,
    "float16": 19,
    "uint32": 22,
    "uint64": 23,
}
SPECIALS: dict[str, list[Any]] = {
    "int8": [-128, -1, 0, 1, 127, -7],
    "uint8": [0, 1, 255, 128, 7],
    "int16": [-32768, -1, 0, 32767, 300],
    "uint16": [0, 65535, 1, 32768],
    "int32": [-(2**31), -1, 0, 2**31 - 1, 70000],
    "uint32": [0, 2**32 - 1, 1, 2**31],
    "int64": [-(2**63), -1, 0, 2**63 - 1, 5],
    "uint64": [0, 2**64 - 1, 1, 2**63],
    "float32": [np.nan, np.inf, -np.inf, -0.0, 1.5, 1e-45, 3.4e38, 0.1],
    "float64": [np.nan, np.inf, -np.inf, -0.0, 1.5, 5e-324, 1.7e308, 0.1],
    "float16": [np.nan, np.inf, -np.inf, 65504.0, 6e-8, -0.0, 0.1],
    "bool": [True, False, False, True, True],
    "complex64": [1 + 2j, complex(np.nan, -np.inf), -0.0 + 0j, 0.1j],
    "complex128": [1 + 2j, complex(np.nan, -np.inf), -0.0 + 0j, 0.1j],
    "bfloat16": [np.nan, np.inf, -np.inf, -0.0, 1.5, 3.14159, 1e-40, -2.5e38],
    "string": ["a", "", "é", "日本語", "label 7", "x" * 40],
}
NUMPY_DTYPES = [d for d in SPECIALS if d not in ("bfloat16", "string")]


def sample(name: str, shape: tuple[int, ...]) -> Array:
    """The specials of ``name`` cycled to fill ``shape`` (bfloat16: its exact float32 values)."""
    values = SPECIALS[name]
    flat = [values[i % len(values)] for i in range(math.prod(shape))]
    if name == "string":
        return np.array(flat, dtype=str).reshape(shape)
    if name == "bfloat16":
        bits = np.array(flat, dtype=np.float32).view(np.uint32) & np.uint32(0xFFFF0000)
        return bits.view(np.float32).reshape(shape)
    return np.array(flat, dtype=name).reshape(shape)


def bfloat16_bits(values: Array) -> Array:
    return (values.view(np.uint32) >> 16).astype(np.uint16)


def writable(array: Array) -> Array:
    """``for_smdebug`` without its promotion of 0-d arrays to shape (1,)."""
    return for_smdebug(array.reshape(-1)).reshape(array.shape)


def shape_proto(shape: tuple[int, ...]) -> TensorShapeProto:
    return TensorShapeProto(dim=[TensorShapeProto.Dim(size=d) for d in shape])


def assert_exact(actual: Array, expected: Array) -> None:
    """Same shape, dtype and bits (NaN payloads and -0.0 included)."""
    assert actual.shape == expected.shape
    assert actual.dtype == expected.dtype
    if expected.dtype.kind == "U":
        assert actual.tolist() == expected.tolist()
    else:
        assert actual.tobytes() == expected.tobytes()


# --- hand encoding (confirmed against protobuf's parser in test_unpacked_encoding_is_valid) ---


def varint(value: int) -> bytes:
    return bytes(_VarintBytes(value & U64))


def tag(number: int, wire_type: int) -> bytes:
    return varint(number << 3 | wire_type)


def unpacked(field: int, kind: str, values: list[Any]) -> bytes:
    """Each value as its own field, as proto2 writers (and old TensorFlow) emit them."""
    if kind == "float":
        return b"".join(tag(field, 5) + struct.pack("<f", v) for v in values)
    if kind == "double":
        return b"".join(tag(field, 1) + struct.pack("<d", v) for v in values)
    if kind == "bytes":
        return b"".join(tag(field, 2) + varint(len(v)) + v for v in values)
    return b"".join(tag(field, 0) + varint(int(v)) for v in values)


def message(field: int, body: bytes) -> bytes:
    return tag(field, 2) + varint(len(body)) + body


def raw_event(*values: bytes) -> bytes:
    """An Event holding these serialized ``Summary.Value`` messages, byte for byte."""
    return message(5, b"".join(message(1, value) for value in values))


def value_bytes(tensor: bytes, name: bytes = b"name") -> bytes:
    return message(1, name) + message(8, tensor)


def packed_varints(field: int, values: list[int]) -> bytes:
    run = b"".join(varint(v) for v in values)
    return tag(field, 2) + varint(len(run)) + run


# --- the catalogue ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Typed:
    """Which typed field a dtype uses and how its values go on the wire."""

    field: int
    attribute: str | None  # the smdebug TensorProto attribute; None if smdebug lacks it
    kind: str  # "varint", "float", "double" or "bytes"
    to_wire: Callable[[Array], list[Any]]


def _complex_parts(values: Array) -> list[float]:
    pairs = np.stack([values.real, values.imag], axis=-1)
    return [float(x) for x in pairs.reshape(-1)]


TYPED: dict[str, Typed] = {
    "float32": Typed(5, "float_val", "float", lambda a: [float(x) for x in a.reshape(-1)]),
    "float64": Typed(6, "double_val", "double", lambda a: [float(x) for x in a.reshape(-1)]),
    "int32": Typed(7, "int_val", "varint", lambda a: a.reshape(-1).tolist()),
    "uint8": Typed(7, "int_val", "varint", lambda a: a.reshape(-1).tolist()),
    "int16": Typed(7, "int_val", "varint", lambda a: a.reshape(-1).tolist()),
    "int8": Typed(7, "int_val", "varint", lambda a: a.reshape(-1).tolist()),
    "uint16": Typed(7, "int_val", "varint", lambda a: a.reshape(-1).tolist()),
    "string": Typed(8, "string_val", "bytes", lambda a: [s.encode() for s in a.reshape(-1)]),
    "complex64": Typed(9, "scomplex_val", "float", _complex_parts),
    "int64": Typed(10, "int64_val", "varint", lambda a: a.reshape(-1).tolist()),
    "bool": Typed(11, "bool_val", "varint", lambda a: a.reshape(-1).tolist()),
    "complex128": Typed(12, "dcomplex_val", "double", _complex_parts),
    "float16": Typed(13, "half_val", "varint", lambda a: a.view(np.uint16).reshape(-1).tolist()),
    "bfloat16": Typed(13, "half_val", "varint", lambda a: bfloat16_bits(a).reshape(-1).tolist()),
    "uint32": Typed(16, None, "varint", lambda a: a.reshape(-1).tolist()),
    "uint64": Typed(17, None, "varint", lambda a: a.reshape(-1).tolist()),
}
OLD_HALF_WRITERS = {  # half and bfloat16 bit patterns in int_val, as older TensorFlow wrote them
    "float16": Typed(7, "int_val", "varint", TYPED["float16"].to_wire),
    "bfloat16": Typed(7, "int_val", "varint", TYPED["bfloat16"].to_wire),
}


@dataclass(frozen=True)
class Case:
    proto: bytes
    expected: Array


def content_case(name: str, shape: tuple[int, ...]) -> Case:
    expected = sample(name, shape)
    if name == "bfloat16":
        proto = TensorProto(
            dtype=DT[name],
            tensor_shape=shape_proto(shape),
            tensor_content=bfloat16_bits(expected).tobytes(),
        )
    else:  # exactly what smdebug's writer does
        proto = make_tensor_proto(writable(expected), "t")
    return Case(proto.SerializeToString(), expected)


def typed_case(name: str, shape: tuple[int, ...], typed: Typed, *, packed: bool) -> Case:
    expected = sample(name, shape)
    head = TensorProto(dtype=DT[name], tensor_shape=shape_proto(shape)).SerializeToString()
    values = typed.to_wire(expected)
    if not packed or typed.kind == "bytes":
        return Case(head + unpacked(typed.field, typed.kind, values), expected)
    if typed.attribute is None:
        return Case(head + packed_varints(typed.field, values), expected)
    proto = TensorProto(dtype=DT[name], tensor_shape=shape_proto(shape))
    getattr(proto, typed.attribute).extend(values)
    return Case(proto.SerializeToString(), expected)


def broadcast_case(name: str, shape: tuple[int, ...], *, packed: bool) -> Case:
    one = sample(name, (1,))
    case = typed_case(name, (1,), TYPED[name], packed=packed)
    head = TensorProto(dtype=DT[name], tensor_shape=shape_proto((1,))).SerializeToString()
    body = case.proto[len(head) :]
    proto = TensorProto(dtype=DT[name], tensor_shape=shape_proto(shape)).SerializeToString()
    return Case(proto + body, np.broadcast_to(one, shape))


def build_catalogue() -> dict[str, Case]:
    cases: dict[str, Case] = {}
    for shape_name, shape in SHAPES.items():
        for name in SPECIALS:
            if name != "string":
                cases[f"content-{name}-{shape_name}"] = content_case(name, shape)
            for packed in (True, False):
                encoding = "packed" if packed else "unpacked"
                typed = TYPED[name]
                cases[f"typed-{name}-{encoding}-{shape_name}"] = typed_case(
                    name, shape, typed, packed=packed
                )
            for name_, typed in OLD_HALF_WRITERS.items():
                cases[f"int_val-{name_}-{shape_name}"] = typed_case(
                    name_, shape, typed, packed=True
                )
    for name in ("float32", "int8", "int64", "bool", "float16", "bfloat16", "uint64", "string"):
        for packed in (True, False):
            cases[f"broadcast-{name}-{'packed' if packed else 'unpacked'}"] = broadcast_case(
                name, (B, C), packed=packed
            )
    strings = np.array(["a", "", "é", "日本語"], dtype=str)
    cases["smdebug-strings-dt_invalid"] = Case(
        make_tensor_proto(strings, "t").SerializeToString(), strings
    )
    split = np.array([1, -2, 3, -4, 5], dtype=np.int64)
    cases["int64-two-packed-runs"] = Case(
        TensorProto(dtype=9, tensor_shape=shape_proto((5,))).SerializeToString()
        + packed_varints(10, [1, -2])
        + packed_varints(10, [3])
        + unpacked(10, "varint", [-4, 5]),
        split,
    )
    cases["empty-matrix"] = Case(
        TensorProto(dtype=1, tensor_shape=shape_proto((0, C))).SerializeToString(),
        np.zeros((0, C), dtype=np.float32),
    )
    return cases


CATALOGUE = build_catalogue()


@pytest.mark.parametrize("case", CATALOGUE.values(), ids=CATALOGUE.keys())
def test_catalogue(case: Case) -> None:
    assert_exact(decode_tensor_proto(case.proto), case.expected)
    assert_exact(decode_tensor_proto(memoryview(case.proto)), case.expected)


@pytest.mark.parametrize("case", CATALOGUE.values(), ids=CATALOGUE.keys())
def test_catalogue_inside_an_event(case: Case) -> None:
    value = Summary.Value(tag="name", tensor=TensorProto.FromString(case.proto))
    event = Event(wall_time=1.0, step=3, summary=Summary(value=[value]))
    payload = event.SerializeToString()
    # Protobuf re-serialises unpacked fields packed, so also splice the original bytes in.
    for buf in (payload, raw_event(value_bytes(case.proto))):
        ((name, array),) = decode_event_tensors(buf)
        assert name == "name"
        assert_exact(array, case.expected)


PACKABLE = [n for n, t in TYPED.items() if t.attribute is not None and t.kind != "bytes"]


@pytest.mark.parametrize("name", PACKABLE)
def test_unpacked_encoding_is_valid(name: str) -> None:
    """The hand encoder agrees with protobuf's parser, so the unpacked cases are real ones."""
    packed = typed_case(name, (B, C), TYPED[name], packed=True).proto
    loose = typed_case(name, (B, C), TYPED[name], packed=False).proto
    assert packed != loose
    assert TensorProto.FromString(loose).SerializeToString() == packed


def test_dtype_numbers_match_smdebug() -> None:
    from smdebug.core.tfevent.proto import types_pb2

    names = {
        "float32": "DT_FLOAT",
        "float64": "DT_DOUBLE",
        "int32": "DT_INT32",
        "uint8": "DT_UINT8",
        "int16": "DT_INT16",
        "int8": "DT_INT8",
        "string": "DT_STRING",
        "complex64": "DT_COMPLEX64",
        "int64": "DT_INT64",
        "bool": "DT_BOOL",
        "bfloat16": "DT_BFLOAT16",
        "uint16": "DT_UINT16",
        "complex128": "DT_COMPLEX128",
        "float16": "DT_HALF",
        "uint32": "DT_UINT32",
        "uint64": "DT_UINT64",
    }
    assert {n: types_pb2.DataType.Value(dt) for n, dt in names.items()} == DT


def test_content_arrays_are_zero_copy_views() -> None:
    payload = CATALOGUE["content-float32-BC"].proto
    array = decode_tensor_proto(payload)
    assert not array.flags.writeable
    assert not array.flags.owndata


def test_int8_stays_signed_where_smdebug_reads_uint8() -> None:
    values = np.array([-1, -128, 127], dtype=np.int8)
    proto = make_tensor_proto(writable(values), "t")
    assert get_tensor_data(proto).tolist() == [255, 128, 127]  # smdebug's defect
    assert_exact(decode_tensor_proto(proto.SerializeToString()), values)


# --- errors -------------------------------------------------------------------------------------


def proto(dtype: int, shape: tuple[int, ...], **fields: Any) -> bytes:
    message = TensorProto(dtype=dtype, tensor_shape=shape_proto(shape), **fields)
    return bytes(message.SerializeToString())


@dataclass(frozen=True)
class Bad:
    data: bytes
    error: type[ValueError]
    message: str


BAD = {
    "content_too_short": Bad(
        proto(1, (2, 3), tensor_content=bytes(20)),
        TensorDecodeError,
        r"expected 6 elements for shape \(2, 3\), found 5",
    ),
    "content_partial_element": Bad(
        proto(1, (2,), tensor_content=bytes(6)), TensorDecodeError, "found 1.5"
    ),
    "typed_too_few": Bad(
        proto(1, (3,), float_val=[1.0, 2.0]),
        TensorDecodeError,
        r"expected 3 elements for shape \(3,\), found 2 \(DT_FLOAT in float_val\)",
    ),
    "typed_missing": Bad(proto(9, (2,)), TensorDecodeError, "expected 2 elements.*found 0"),
    "scalar_without_value": Bad(proto(3, ()), TensorDecodeError, r"shape \(\), found 0"),
    "resource": Bad(proto(20, (1,), tensor_content=b"x"), TensorDecodeError, "DT_RESOURCE"),
    "qint8": Bad(proto(11, (1,), int_val=[1]), TensorDecodeError, "DT_QINT8"),
    "unknown_dtype": Bad(proto(99, (1,), tensor_content=b"x"), TensorDecodeError, "unknown"),
    "dt_invalid_content": Bad(proto(0, (1,), tensor_content=b"x"), TensorDecodeError, "DT_INVALID"),
    "unknown_rank": Bad(
        TensorProto(dtype=1, tensor_shape=TensorShapeProto(unknown_rank=True)).SerializeToString(),
        TensorDecodeError,
        "unknown rank",
    ),
    "unknown_dim": Bad(proto(1, (-1,), float_val=[1.0]), TensorDecodeError, "size -1"),
    "absurd_shape": Bad(
        proto(1, (1 << 40, 1 << 40), float_val=[1.0]), TensorDecodeError, "too large"
    ),
    "absurd_empty_shape": Bad(proto(1, (0, 1 << 40, 1 << 40)), TensorDecodeError, "too large"),
    "string_content": Bad(
        proto(7, (1,), tensor_content=b"abc"), TensorDecodeError, "never writes for strings"
    ),
    "invalid_utf8": Bad(proto(7, (1,), string_val=[b"\xff"]), TensorDecodeError, "UTF-8"),
    "complex_odd": Bad(proto(8, (1,), scomplex_val=[1.0]), TensorDecodeError, "pairs"),
    "float_val_as_varint": Bad(
        proto(1, (1,)) + tag(5, 0) + varint(1), WireError, "float_val has wire type 0"
    ),
    "int_val_as_fixed32": Bad(proto(3, (1,)) + tag(7, 5) + bytes(4), WireError, "int_val"),
    "string_as_varint": Bad(proto(7, (1,)) + tag(8, 0) + varint(1), WireError, "string_val"),
    "dtype_as_bytes": Bad(tag(1, 2) + varint(1) + b"x", WireError, "TensorProto.dtype"),
    "shape_as_varint": Bad(tag(2, 0) + varint(1), WireError, "tensor_shape"),
    "packed_floats_partial": Bad(
        proto(1, (1,)) + tag(5, 2) + varint(3) + bytes(3), WireError, "multiple of 4"
    ),
    "truncated": Bad(proto(1, (4,), tensor_content=bytes(16))[:-3], WireError, "truncated"),
}


@pytest.mark.parametrize("case", BAD.values(), ids=BAD.keys())
def test_bad_tensor(case: Bad) -> None:
    with pytest.raises(case.error, match=case.message):
        decode_tensor_proto(case.data)


def bad_value() -> bytes:
    return value_bytes(proto(9, (2, 3), tensor_content=bytes(8)), b"labels")


def test_event_errors_name_the_tensor() -> None:
    with pytest.raises(TensorDecodeError, match="tensor 'labels': expected 6 elements"):
        decode_event_tensors(raw_event(bad_value()))
    truncated = value_bytes(proto(9, (2,), tensor_content=bytes(16))[:-1], b"labels")
    with pytest.raises(WireError, match=r"tensor 'labels': .*truncated"):
        decode_event_tensors(raw_event(truncated))


def test_event_structure_errors() -> None:
    with pytest.raises(WireError, match=r"Event\.summary"):
        decode_event_tensors(tag(5, 0) + varint(1))
    with pytest.raises(WireError, match=r"Summary\.value"):
        decode_event_tensors(tag(5, 2) + varint(2) + tag(1, 0) + varint(1))
    with pytest.raises(TensorDecodeError, match="tag is not valid UTF-8"):
        decode_event_tensors(raw_event(message(1, b"\xff") + message(8, b"")))


# --- events -------------------------------------------------------------------------------------


def event_payload(values: list[Summary.Value]) -> bytes:
    return bytes(Event(wall_time=1.0, step=5, summary=Summary(value=values)).SerializeToString())


def tensor_value(name: str, array: Array) -> Summary.Value:
    return Summary.Value(tag=name, tensor=make_tensor_proto(writable(array), name))


def test_several_values_in_order_and_non_tensors_skipped() -> None:
    labels = np.arange(5, dtype=np.int64)
    predictions = np.eye(5, dtype=np.float32)
    payload = event_payload(
        [
            tensor_value("labels", labels),
            Summary.Value(tag="loss", simple_value=0.5),
            tensor_value("predictions", predictions),
        ]
    )
    decoded = decode_event_tensors(payload)
    assert [name for name, _ in decoded] == ["labels", "predictions"]
    assert_exact(decoded[0][1], labels)
    assert_exact(decoded[1][1], predictions)
    assert decode_event_tensors(payload, lambda name: name == "predictions")[0][0] == "predictions"


def test_unwanted_tensors_are_not_decoded() -> None:
    payload = raw_event(bad_value(), value_bytes(proto(9, (1,), int64_val=[7])))
    with pytest.raises(TensorDecodeError):
        decode_event_tensors(payload)
    ((name, array),) = decode_event_tensors(payload, lambda name: name == "name")
    assert (name, array.tolist()) == ("name", [7])


def test_tag_after_tensor_is_still_seen_first() -> None:
    payload = raw_event(message(8, proto(9, (1,), int64_val=[7])) + message(1, b"z"))
    assert decode_event_tensors(payload, lambda name: name == "y") == []
    assert decode_event_tensors(payload, lambda name: name == "z")[0][0] == "z"


def test_events_without_tensors() -> None:
    assert decode_event_tensors(Event(file_version="brain.Event:2").SerializeToString()) == []
    assert decode_event_tensors(b"") == []


def test_memoryview_of_another_format() -> None:
    payload = event_payload([tensor_value("x", np.arange(3, dtype=np.int32))])
    ((_, array),) = decode_event_tensors(memoryview(payload).cast("c"))
    assert array.tolist() == [0, 1, 2]
    ((_, array),) = decode_event_tensors(memoryview(bytearray(payload)))
    assert array.tolist() == [0, 1, 2]
    spread = bytes(b for byte in payload for b in (byte, 0))
    ((_, array),) = decode_event_tensors(memoryview(spread)[::2])
    assert array.tolist() == [0, 1, 2]


# --- the real path: smdebug's FileWriter, index files and reader --------------------------------

WRITTEN = [
    "int8",
    "int16",
    "uint16",
    "uint32",
    "uint64",
    "float16",
    "float32",
    "float64",
    "int32",
    "int64",
    "bool",
    "uint8",
]
SMDEBUG_READS_CORRECTLY = ["float32", "int64", "int32", "float64", "uint8"]
STEP = 3


def written_arrays() -> dict[str, Array]:
    arrays = {f"{name}_B": sample(name, (B,)) for name in WRITTEN}
    arrays.update({f"{name}_BC": sample(name, (B, C)) for name in WRITTEN})
    return arrays


@pytest.fixture(scope="module")
def trial(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("trial")
    export_collections(str(path), "worker_0", 1, names=tuple(written_arrays()))
    write_step(str(path), STEP, "worker_0", written_arrays())
    end_training(str(path))
    return path


def read_indexed(trial: Path) -> dict[str, Array]:
    index = json.loads((trial / "index/000000000/000000000003_worker_0.json").read_text())
    event_file = (trial / index["meta"]["event_file_name"]).read_bytes()
    decoded: dict[str, Array] = {}
    for entry in index["tensor_payload"]:
        payload = record_payload(
            event_file, entry["start_idx"], entry["length"], verify_payload=True
        )
        ((name, array),) = decode_event_tensors(payload)
        assert name == entry["tensorname"]
        decoded[name] = array
    return decoded


def test_files_written_by_smdebug(trial: Path) -> None:
    decoded = read_indexed(trial)
    expected = written_arrays()
    assert decoded.keys() == expected.keys()
    for name, array in expected.items():
        assert_exact(decoded[name], array)


def test_whole_event_file_without_index(trial: Path) -> None:
    (event_file,) = trial.glob("events/*/*.tfevents")
    buf = event_file.read_bytes()
    names = [
        name
        for _, payload in iter_records(buf, verify_payload=True)
        for name, _ in decode_event_tensors(payload)
    ]
    assert names == list(written_arrays())


@pytest.mark.parametrize("name", SMDEBUG_READS_CORRECTLY)
def test_same_values_as_smdebugs_reader(trial: Path, name: str) -> None:
    from smdebug.trials import create_trial

    reference = create_trial(str(trial))
    decoded = read_indexed(trial)
    for shape in ("B", "BC"):
        theirs = np.asarray(reference.tensor(f"{name}_{shape}").value(STEP))
        assert_exact(decoded[f"{name}_{shape}"], theirs)


# --- properties ---------------------------------------------------------------------------------

ERRORS = (RecordError, WireError, TensorDecodeError)


@settings(max_examples=500)
@given(st.binary(max_size=200))
def test_random_bytes_raise_only_decode_errors(data: bytes) -> None:
    for decode in (decode_event_tensors, decode_tensor_proto):
        with contextlib.suppress(*ERRORS):
            decode(data)


VALID = [
    event_payload([tensor_value("labels", np.arange(-3, 5, dtype=np.int64))]),
    event_payload([tensor_value("p", np.eye(3, dtype=np.float16))]),
    event_payload(
        [
            Summary.Value(
                tag="t", tensor=TensorProto.FromString(CATALOGUE["typed-int8-packed-BC"].proto)
            )
        ]
    ),
]


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(VALID),
    st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), min_size=1, max_size=4),
    st.integers(0, 10_000),
)
def test_mutated_events_raise_only_decode_errors(
    payload: bytes, edits: list[tuple[int, int]], cut: int
) -> None:
    data = bytearray(payload)
    for at, byte in edits:
        data[at % len(data)] = byte
    for candidate in (bytes(data), bytes(data[: cut % (len(data) + 1)])):
        with contextlib.suppress(*ERRORS):
            decode_event_tensors(candidate)


arrays = hnp.arrays(
    dtype=st.sampled_from([np.dtype(d) for d in NUMPY_DTYPES]),
    shape=hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=6),
)


@settings(max_examples=300)
@given(arrays)
def test_round_trip_through_smdebug_serialisation(array: Array) -> None:
    ((name, decoded),) = decode_event_tensors(event_payload([tensor_value("x", array)]))
    assert name == "x"
    assert_exact(decoded, array)


@settings(max_examples=100)
@given(
    st.lists(
        st.text(alphabet=st.characters(exclude_characters="\x00", exclude_categories=["Cs"])),
        max_size=6,
    )
)
def test_strings_round_trip_through_smdebug(strings: list[str]) -> None:
    array = np.array(strings, dtype=str)
    ((_, decoded),) = decode_event_tensors(event_payload([tensor_value("s", array)]))
    assert decoded.tolist() == strings
    assert decoded.dtype.kind == "U"


def test_a_parts_budget_counts_the_elements_its_broadcasts_fill() -> None:
    """A broadcast is charged the elements it fills, not the one value it holds; one that
    replaces a broadcast of the same name gives its elements back; the limit itself is allowed;
    a tensor whose every element was written is paid for by its bytes and not charged."""
    from evaluator.trial.tensors import ELEMENT_BYTES, ElementBudget, ElementBudgetError

    budget = ElementBudget(10 * ELEMENT_BYTES)
    assert budget.limit == 10
    budget.charge("a_labels", np.broadcast_to(np.int64(1), (6,)))
    budget.charge("b_labels", np.broadcast_to(np.int64(1), (3,)))
    budget.charge(
        "b_labels", np.broadcast_to(np.int64(1), (4,)), replaced=np.broadcast_to(np.int64(1), (3,))
    )
    assert budget.claimed == 10
    budget.charge("written_labels", np.zeros(1_000_000))  # every element in the file
    budget.charge("one_value", np.broadcast_to(np.int64(1), (1,)))
    assert budget.claimed == 10
    with pytest.raises(ElementBudgetError, match=r"more than 10 elements: tensor 'c_labels'"):
        budget.charge("c_labels", np.broadcast_to(np.float32(0), (2,)))
    assert issubclass(ElementBudgetError, TensorDecodeError)
    assert ElementBudgetError("x").reason == "decode_error"
