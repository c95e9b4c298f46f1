"""Trial bytes that claim more than they hold, and the typed errors of every parser of them.

A TensorProto is data from a file anyone who can write the trial controls. A valid one whose
shape claimed 10^12 elements filled by one ``int64_val`` (TensorFlow's broadcast) hung the
rule for minutes (killed after 60 s, the steps after it lost); 8 Mi unpacked values in a 16 MiB
record took 45 s and 2.5 GB to decode, 8 Mi empty dims 28 s, one long string beside many empty
ones asked NumPy for 16 TiB. Each claim is now held to what the record holds or to a named
bound in ``evaluator/trial/tensors.py``, and the part is skipped with its reason while every
other step is counted exactly. Every case that could hang or grow runs in a child under
``bounded.run_bounded``, its hostile bytes made here and handed over on stdin.

Every parser of trial bytes (index, collections and event files, records, the wire format,
tensors) raises only ``TrialBytesError`` subclasses, whatever the bytes: a catalogue of
malformed inputs per parser holds that (deep JSON nesting raised ``RecursionError``). A file
given up on is counted in the status's ``skipped.files`` under what is wrong with its bytes
(``truncated``, ``length_crc``, ``decode_error``, ``malformed_event_file``), the keys the
README documents.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from devtools.fuzz_kernels import (
    FILE_VERSION_EVENT,
    FIXED32,
    Field,
    Message,
    encode,
    event,
    event_file,
    len_field,
    masked_crc,
    metadata,
    summary_value,
    tensor_proto,
    varint,
    varint_field,
)
from devtools.write_trial import end_training, export_collections, write_step
from evaluator.trial.layout import event_key
from evaluator.trial.parsers import (
    MAX_WORKERS,
    MalformedCollectionsError,
    MalformedEventFileError,
    MalformedIndexError,
    parse_index,
    parse_num_workers,
    scan_event_file,
    scan_event_file_python,
)
from evaluator.trial.problems import TrialBytesError
from evaluator.trial.protowire import WireError, decode_packed_varints, iter_fields
from evaluator.trial.records import RecordError, iter_records, record_payload
from evaluator.trial.tensors import (
    MAX_BROADCAST_ELEMENTS,
    MAX_RANK,
    MAX_STRING_CELLS,
    MAX_TENSOR_FIELDS,
    TensorDecodeError,
    decode_event_tensors,
    decode_tensor_at,
    decode_tensor_proto,
    describe_event,
)
from tests.faults.bounded import Bounded, evaluator, python, run_bounded

SECONDS = 60.0
"""Wall-clock limit of one child: a case takes a second or two (the evaluator's start-up
included); the regressions ran for minutes."""
PEAK_MIB = 600
"""Peak resident memory a child may reach: these take under 150 MiB (numpy's import and a
16 MiB hostile record included); the regressions took 2.5 GB or asked for terabytes."""
STEPS = 12
BAD_STEP = 5
BATCH = 4


# -- the evaluator on a trial whose one part claims 10^12 elements ----------------------------


def labels_and_predictions() -> dict[str, Any]:
    labels = np.arange(BATCH) % 3
    return {"labels": labels, "predictions": np.eye(3, dtype=np.float32)[labels]}


def smdebug_trial(folder: Path) -> Path:
    """STEPS steps of one worker written by smdebug's own writer, and the end marker."""
    export_collections(str(folder), "worker_0", 1)
    for step in range(STEPS):
        write_step(str(folder), step, "worker_0", labels_and_predictions())
    end_training(str(folder))
    return folder


def hand_written_step(step: int, labels: Message | bytes) -> bytes:
    """The event file of one step whose labels tensor is ``labels``, predictions as smdebug's."""
    meta = metadata(b"1", str(step).encode())
    predictions = labels_and_predictions()["predictions"]
    scores = tensor_proto(1, predictions.shape, content=predictions.astype("<f4").tobytes())
    return event_file(
        [
            FILE_VERSION_EVENT,
            event(step, [summary_value(b"labels", labels, meta)]),
            event(step, [summary_value(b"predictions", scores, meta)]),
        ]
    )


def evaluate(trial: Path, tmp_path: Path) -> tuple[Bounded, dict[str, Any]]:
    status = tmp_path / "status.json"
    run = run_bounded(
        evaluator(
            "--trial", str(trial), "--poll-interval", "0.05", "--argmax", "true", "--samples", "1",
            "--status-file", str(status),
            "--html-report", "false", "--read-retries", "0", "--read-retry-delay", "0",
            "--metrics-enabled", "false",
        ),
        seconds=SECONDS,
        cwd=tmp_path,
    )  # fmt: skip
    assert status.exists(), run.stderr[-3000:]
    return run, json.loads(status.read_text())


@dataclass(frozen=True)
class HostileLabels:
    """A labels tensor in step BAD_STEP that the rule cannot be handed: the step's batch is
    skipped with ``reason``, every other step counted exactly."""

    id: str
    labels: Message
    says: str


HOSTILE_LABELS = (
    HostileLabels(
        "broadcast_of_10e12_elements",
        tensor_proto(9, (10**12,), typed=[varint_field(10, 1)]),
        f"a broadcast value may fill at most {MAX_BROADCAST_ELEMENTS:,}",
    ),
    HostileLabels(
        "broadcast_just_past_the_bound",
        tensor_proto(9, (MAX_BROADCAST_ELEMENTS + 1,), typed=[varint_field(10, 1)]),
        f"claims {MAX_BROADCAST_ELEMENTS + 1:,} elements filled by one DT_INT64 value",
    ),
    HostileLabels(
        "broadcast_of_a_float_in_many_dims",
        tensor_proto(1, (10**3,) * 4, typed=[Field(5, FIXED32, struct.pack("<f", 1.0))]),
        "filled by one DT_FLOAT value in float_val",
    ),
)


@pytest.mark.parametrize("case", HOSTILE_LABELS, ids=[c.id for c in HOSTILE_LABELS])
def test_a_part_claiming_more_than_it_holds_is_skipped_and_the_rest_counted(
    tmp_path: Path, case: HostileLabels
) -> None:
    """Before: 10^12 elements hung the rule (killed after 60 s, 10 minutes with SIGTERM)."""
    trial = smdebug_trial(tmp_path / "trial")
    (trial / event_key(BAD_STEP, "worker_0")).write_bytes(hand_written_step(BAD_STEP, case.labels))
    run, status = evaluate(trial, tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    assert status["skipped"]["batches"] == {"decode_error": 1}
    assert case.says in status["skipped"]["examples"]["decode_error"]
    assert f"step {BAD_STEP}" in status["skipped"]["examples"]["decode_error"]
    assert status["samples"] == (STEPS - 1) * BATCH
    assert run.seconds < 30, f"took {run.seconds:.1f} s"
    assert run.peak_rss_mib < PEAK_MIB


def test_a_broadcast_at_the_bound_is_still_counted(tmp_path: Path) -> None:
    """The bound is a limit, not a ban: a broadcast of exactly that many labels is counted."""
    trial = smdebug_trial(tmp_path / "trial")
    labels = tensor_proto(9, (MAX_BROADCAST_ELEMENTS,), typed=[varint_field(10, 2)])
    predictions = tensor_proto(9, (MAX_BROADCAST_ELEMENTS,), typed=[varint_field(10, 2)])
    meta = metadata(b"1", str(BAD_STEP).encode())
    data = event_file(
        [
            event(BAD_STEP, [summary_value(b"labels", labels, meta)]),
            event(BAD_STEP, [summary_value(b"predictions", predictions, meta)]),
        ]
    )
    (trial / event_key(BAD_STEP, "worker_0")).write_bytes(data)
    run, status = evaluate(trial, tmp_path)
    assert run.returncode == 1, run.stderr[-3000:]  # 16 Mi labels of class 2: imbalanced
    assert status["skipped"]["batches"] == {}
    assert status["samples"] == (STEPS - 1) * BATCH + MAX_BROADCAST_ELEMENTS
    assert run.peak_rss_mib < 2 * PEAK_MIB  # 16 Mi labels, materialised by the rule


def test_the_broadcast_bound_fits_the_readers_memory_budget() -> None:
    """Materialised as int64 or float64 (as the rule does), a broadcast at the bound costs no
    more than half of what the reader may hold of event-file bytes."""
    from evaluator.trial.native import HELD_BYTES_LIMIT

    assert MAX_BROADCAST_ELEMENTS * 8 <= HELD_BYTES_LIMIT // 2


def budget_busting_step() -> bytes:
    """The event file of step BAD_STEP with 99 broadcasts, each within
    ``MAX_BROADCAST_ELEMENTS``: 33 labels tensors of 16 Mi labels and 66 predictions tensors of
    8 Mi x 2 scores, 1.66 Gi elements, 13 GiB once the rule holds them, in 30 KiB."""
    meta = metadata(b"1", str(BAD_STEP).encode())
    labels = tensor_proto(9, (MAX_BROADCAST_ELEMENTS,), typed=[varint_field(10, 1)])
    scores = tensor_proto(
        1, (MAX_BROADCAST_ELEMENTS // 2, 2), typed=[Field(5, FIXED32, struct.pack("<f", 0.5))]
    )
    values = [summary_value(f"labels_{i:02}".encode(), labels, meta) for i in range(33)]
    values += [summary_value(f"predictions_{i:02}".encode(), scores, meta) for i in range(66)]
    data = event_file([FILE_VERSION_EVENT, *(event(BAD_STEP, [value]) for value in values)])
    assert len(data) < 64 << 10, "the claims cost the writer nothing"
    return data


def test_a_part_whose_tensors_claim_more_than_its_budget_is_skipped(tmp_path: Path) -> None:
    """Before: the rule concatenated the 99 broadcasts of ``budget_busting_step`` (a
    MemoryError in this child's 4 GiB, the evaluation ended as an internal error). The part's
    tensors are held to ``HELD_BYTES_LIMIT`` (32 Mi elements at 8 bytes each): the third labels
    tensor is past it, the part is skipped with ``decode_error`` before anything is
    materialised, and every other step is counted exactly."""
    trial = smdebug_trial(tmp_path / "trial")
    (trial / event_key(BAD_STEP, "worker_0")).write_bytes(budget_busting_step())
    run, status = evaluate(trial, tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    assert status["skipped"]["batches"] == {"decode_error": 1}
    example = status["skipped"]["examples"]["decode_error"]
    assert "claim more than 33,554,432 elements" in example, example
    assert "'labels_02'" in example, example
    assert "HELD_BYTES_LIMIT" in example, example
    assert f"step {BAD_STEP}" in example, example
    assert status["samples"] == (STEPS - 1) * BATCH
    assert run.peak_rss_mib < PEAK_MIB


@pytest.mark.parametrize("held_bytes_limit", [1 << 20, 0], ids=["held", "read_again"])
def test_the_parts_budget_holds_whether_its_bytes_are_held_or_read_again(
    tmp_path: Path, held_bytes_limit: int
) -> None:
    """Both ways a part's tensors are decoded are charged: from the bytes held since the poll,
    and from the file read again at ``read`` (bytes over ``held_bytes_limit``). Decoded in this
    process: the broadcasts are views until the rule would materialise them."""
    from evaluator.trial.local import LocalStorage
    from evaluator.trial.native import NativeTrialReader

    trial = smdebug_trial(tmp_path / "trial")
    (trial / event_key(BAD_STEP, "worker_0")).write_bytes(budget_busting_step())
    reader = NativeTrialReader(
        LocalStorage(trial, incremental=False), held_bytes_limit=held_bytes_limit
    )
    read = {}
    while refs := reader.poll():
        for ref in refs:
            (read[ref.step],) = reader.read(ref, lambda _name: True)
    reader.close()
    assert sorted(read) == list(range(STEPS))
    bad = read.pop(BAD_STEP)
    assert bad.error_reason == "decode_error"
    assert bad.error is not None
    assert "'labels_02'" in bad.error
    assert bad.tensors == {}
    assert all(
        part.error is None and set(part.tensors) == {"labels", "predictions"}
        for part in read.values()
    )


# -- one TensorProto's claims, decoded in a bounded child -------------------------------------


def tag(number: int, wire: int) -> bytes:
    return varint(number << 3 | wire)


def header(dtype: int, shape: tuple[int, ...]) -> bytes:
    return encode(tensor_proto(dtype, shape))


@dataclass(frozen=True)
class Claim:
    """A TensorProto whose bytes claim an allocation or a loop they do not pay for; decoding
    it raises ``TensorDecodeError`` saying ``says``, at once and in little memory."""

    id: str
    build: Callable[[], bytes]
    says: str
    before: str
    """What it cost before the bound (measured on this machine)."""


N = 8 << 20
CLAIMS = (
    Claim(
        "broadcast_of_10e12_elements",
        lambda: encode(tensor_proto(9, (10**12,), typed=[varint_field(10, 1)])),
        "a broadcast value may fill at most",
        "decoded at once to a view the rule then walked for minutes",
    ),
    Claim(
        "dims_whose_product_overflows_int64",
        lambda: encode(tensor_proto(1, (1 << 40, 1 << 40, 1 << 40), content=bytes(4))),
        "too large to be a real tensor",
        "refused already",
    ),
    Claim(
        "a_negative_dim",
        lambda: encode(tensor_proto(1, (2, -1), content=bytes(4))),
        "a dimension has size -1",
        "refused already",
    ),
    Claim(
        "eight_million_empty_dims",
        lambda: header(1, ()) + tag(2, 2) + varint(2 * N) + (tag(2, 2) + b"\x00") * N,
        f"more than {MAX_RANK} dimensions",
        "28 s, then NumPy's untyped ValueError",
    ),
    Claim(
        "eight_million_unpacked_values",
        lambda: header(9, (N,)) + (tag(10, 0) + b"\x01") * N,
        f"more than {MAX_TENSOR_FIELDS:,} fields",
        "45 s and 2.5 GB",
    ),
    Claim(
        "four_million_one_value_packed_runs",
        lambda: header(9, (N // 2,)) + (tag(10, 2) + b"\x01\x01") * (N // 2),
        f"more than {MAX_TENSOR_FIELDS:,} fields",
        "51 s and 1.4 GB",
    ),
    Claim(
        "four_million_unpacked_floats",
        lambda: header(1, (N // 2,)) + (tag(5, 5) + struct.pack("<f", 1.0)) * (N // 2),
        f"more than {MAX_TENSOR_FIELDS:,} fields",
        "36 s and 1.3 GB",
    ),
    Claim(
        "one_long_string_beside_many_empty_ones",
        lambda: (
            header(7, (60_001,))
            + tag(8, 2)
            + varint(1 << 20)
            + b"x" * (1 << 20)
            + (tag(8, 2) + b"\x00") * 60_000
        ),
        f"more than {MAX_STRING_CELLS:,}",
        "a 16 TiB allocation, refused by NumPy's untyped MemoryError after 26 s",
    ),
    Claim(
        "four_million_strings",
        lambda: header(7, (N // 2,)) + (tag(8, 2) + b"\x00") * (N // 2),
        f"more than {MAX_TENSOR_FIELDS:,} fields",
        "26 s",
    ),
)

DECODE_IN_A_CHILD = (
    "import json, resource, sys, time\n"
    "from evaluator.trial.problems import TrialBytesError\n"
    "from evaluator.trial.tensors import decode_tensor_proto\n"
    "data = sys.stdin.buffer.read()\n"
    "start = time.monotonic()\n"
    "try:\n"
    "    decode_tensor_proto(data)\n"
    "    outcome = ['decoded', '']\n"
    "except TrialBytesError as error:\n"
    "    outcome = [type(error).__name__, str(error)]\n"
    "print(json.dumps([*outcome, time.monotonic() - start]))\n"
)


@pytest.mark.parametrize("case", CLAIMS, ids=[c.id for c in CLAIMS])
def test_a_tensor_claim_is_refused_at_once(case: Claim) -> None:
    run = run_bounded(python(DECODE_IN_A_CHILD), seconds=SECONDS, stdin=case.build())
    assert run.returncode == 0, run.stderr[-3000:]
    error, message, seconds = json.loads(run.stdout)
    assert error == "TensorDecodeError", message
    assert case.says in message
    assert len(message) < 600
    assert seconds < 5, f"took {seconds:.1f} s (before the bound: {case.before})"
    assert run.peak_rss_mib < PEAK_MIB


CACHES_IN_A_CHILD = (
    "import sys\n"
    "from devtools.fuzz_kernels import encode, event, len_field, plugin, summary_value, "
    "tensor_proto, varint_field\n"
    "from evaluator.trial.tensors import decode_tensor_proto, describe_event\n"
    "size = int(sys.argv[1])\n"
    "for i in range(4096):\n"
    "    unique = b'%08x' % i * (size // 8)\n"
    "    meta = len_field(9, (plugin(b'mode', b'1'), plugin(b'x', unique)))\n"
    "    describe_event(encode(event(7, [summary_value(b't', tensor_proto(1, ()), meta)])))\n"
    "    dim = len_field(2, (varint_field(1, 1), len_field(2, unique)))\n"
    "    proto = (varint_field(1, 1), len_field(2, (dim,)), len_field(4, bytes(4)))\n"
    "    assert decode_tensor_proto(encode(proto)).shape == (1,)\n"
)


def test_the_decoding_caches_keep_no_long_keys() -> None:
    """4096 records, each with its own 64 KiB of plugin metadata and of dim name: the caches of
    shapes and plugin data held all of it (512 MiB) before keys were bounded in size."""
    code = CACHES_IN_A_CHILD.replace("int(sys.argv[1])", str(64 << 10))
    run = run_bounded(python(code), seconds=SECONDS)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.peak_rss_mib < 250


# -- every parser of trial bytes raises only its typed errors ---------------------------------


def deep_json(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def index_json(**meta: Any) -> bytes:
    base: dict[str, Any] = {"mode": "TRAIN", "mode_step": 1, "event_file_name": "events/x"}
    payload = [{"tensorname": "labels", "start_idx": 0, "length": 20}]
    return json.dumps({"meta": {**base, **meta}, "tensor_payload": payload}).encode()


def index_span(**span: Any) -> bytes:
    entry = {"tensorname": "labels", "start_idx": 0, "length": 20, **span}
    meta = {"mode": "TRAIN", "mode_step": 1, "event_file_name": "events/x"}
    return json.dumps({"meta": meta, "tensor_payload": [entry]}).encode()


MALFORMED_JSON: dict[str, bytes] = {
    "empty": b"",
    "not_utf8": b"\xff\xfe\x00",
    "utf16_bom_garbage": b"\xfe\xff\x00{\x00",
    "nested_200000_deep": deep_json(200_000),
    "nested_objects_deep": b'{"a":' * 100_000 + b"1" + b"}" * 100_000,
    "number_of_5000_digits": b"9" * 5000,
    "a_list": b"[1, 2]",
    "a_string": b'"x"',
    "nan": b"NaN",
    "truncated": b'{"meta": {"mode"',
}
MALFORMED_INDEX: dict[str, bytes] = {
    **MALFORMED_JSON,
    "meta_not_an_object": b'{"meta": []}',
    "mode_not_a_mode": index_json(mode="x" * 100_000),
    "mode_step_a_bool": index_json(mode_step=True),
    "event_file_outside_the_trial": index_json(event_file_name="../" * 50_000 + "etc/passwd"),
    "start_beyond_int64": index_span(start_idx=1 << 64),
    "length_below_int64": index_span(length=-(1 << 64)),
    "length_a_float": index_span(length=1e300),
    "payload_not_a_list": b'{"meta": {"mode": "TRAIN", "mode_step": 1}, "tensor_payload": {}}',
    "entry_not_an_object": b'{"meta": {"mode": "TRAIN", "mode_step": 1}, "tensor_payload": [1]}',
}
MALFORMED_COLLECTIONS: dict[str, bytes] = {
    **MALFORMED_JSON,
    "meta_a_list": b'{"_meta": []}',
    "workers_a_bool": b'{"_meta": {"num_workers": true}}',
    "workers_a_float": b'{"_meta": {"num_workers": 2.5}}',
    "workers_zero": b'{"_meta": {"num_workers": 0}}',
    "workers_a_word": b'{"_meta": {"num_workers": "two"}}',
    "workers_of_5000_digits_in_a_string": b'{"_meta": {"num_workers": "' + b"9" * 5000 + b'"}}',
    "workers_of_4000_digits": b'{"_meta": {"num_workers": ' + b"9" * 4000 + b"}}",
    "workers_a_trillion": b'{"_meta": {"num_workers": 1000000000000}}',
}


@pytest.mark.parametrize("raw", MALFORMED_INDEX.values(), ids=MALFORMED_INDEX.keys())
def test_the_index_parser_raises_only_its_typed_error(raw: bytes) -> None:
    with pytest.raises(MalformedIndexError) as raised:
        parse_index(raw, 1, "worker_0")
    assert raised.value.reason == "malformed_index"
    assert len(str(raised.value)) < 600


@pytest.mark.parametrize("raw", MALFORMED_COLLECTIONS.values(), ids=MALFORMED_COLLECTIONS.keys())
def test_the_collections_parser_raises_only_its_typed_error(raw: bytes) -> None:
    with pytest.raises(MalformedCollectionsError) as raised:
        parse_num_workers(raw)
    assert raised.value.reason == "malformed_collections"
    assert len(str(raised.value)) < 600


def test_the_collections_parser_takes_up_to_the_bound() -> None:
    assert parse_num_workers(b'{"_meta": {"num_workers": "%d"}}' % MAX_WORKERS) == MAX_WORKERS


def frame(payload: bytes, length: int | None = None) -> bytes:
    head = struct.pack("<Q", len(payload) if length is None else length)
    return head + struct.pack("<I", masked_crc(head)) + payload + struct.pack("<I", 0)


def one_value(tensor: Message | bytes, meta: Field | None = None, step: int = 7) -> bytes:
    meta = metadata(b"1", b"7") if meta is None else meta
    return event_file([event(step, [summary_value(b"t", tensor, meta)])])


GOOD_TENSOR = tensor_proto(1, (1,), content=bytes(4))
MALFORMED_EVENT_FILES: dict[str, tuple[bytes, type[TrialBytesError], str]] = {
    "short_header": (b"\x01\x02\x03", RecordError, "truncated"),
    "length_of_2_to_63": (frame(b"", 1 << 63), RecordError, "truncated"),
    "length_crc_wrong": (b"\x05" + bytes(15), RecordError, "length_crc"),
    "not_protobuf": (frame(b"\xff\xff\xff"), MalformedEventFileError, "decode_error"),
    "groups_nested_100000_deep_unclosed": (
        frame(tag(15, 3) * 100_000),
        MalformedEventFileError,
        "decode_error",
    ),
    "tag_not_utf8": (
        event_file([event(7, [(len_field(1, b"\xff"), len_field(8, GOOD_TENSOR))])]),
        MalformedEventFileError,
        "decode_error",
    ),
    "another_step": (
        one_value(GOOD_TENSOR, step=8),
        MalformedEventFileError,
        "malformed_event_file",
    ),
    "mode_of_100000_characters": (
        one_value(GOOD_TENSOR, metadata(b"x" * 100_000, b"7")),
        MalformedEventFileError,
        "malformed_event_file",
    ),
    "mode_step_of_5000_digits": (
        one_value(GOOD_TENSOR, metadata(b"1", b"9" * 5000)),
        MalformedEventFileError,
        "malformed_event_file",
    ),
}


@pytest.mark.parametrize("case", MALFORMED_EVENT_FILES.values(), ids=MALFORMED_EVENT_FILES.keys())
@pytest.mark.parametrize(
    "scan", [scan_event_file, scan_event_file_python], ids=["public", "python"]
)
def test_the_event_file_scan_raises_only_its_typed_errors(
    scan: Callable[..., Any], case: tuple[bytes, type[TrialBytesError], str]
) -> None:
    data, error, reason = case
    with pytest.raises(error) as raised:
        scan(data, 7, where="events/x")
    assert raised.value.reason == reason
    assert len(str(raised.value)) < 1000


MALFORMED_TENSORS: dict[str, bytes] = {
    "random": bytes(range(256)),
    "unknown_rank": header(1, ()) + tag(2, 2) + b"\x02\x18\x01",
    "dtype_unsupported": encode(tensor_proto(20, (1,), content=bytes(4))),
    "content_for_strings": encode(tensor_proto(7, (1,), content=b"ab")),
    "content_one_byte_short": encode(tensor_proto(1, (2,), content=bytes(7))),
    "typed_values_too_few": encode(tensor_proto(9, (3,), typed=[len_field(10, b"\x01\x02")])),
    "typed_wire_type_wrong": encode(tensor_proto(1, (1,), typed=[varint_field(5, 1)])),
    "packed_varint_cut": encode(tensor_proto(9, (1,), typed=[len_field(10, b"\x80" * 80)])),
    "packed_fixed_misaligned": encode(tensor_proto(1, (1,), typed=[len_field(5, bytes(5))])),
    "complex_odd": encode(tensor_proto(8, (1,), typed=[len_field(9, bytes(4))])),
    "string_not_utf8": encode(tensor_proto(7, (1,), typed=[len_field(8, b"\xff")])),
    "string_not_length_delimited": encode(tensor_proto(7, (1,), typed=[varint_field(8, 1)])),
    "sixty_five_dims": encode(tensor_proto(1, (1,) * (MAX_RANK + 1), content=bytes(4))),
    "group_unclosed": header(1, (1,)) + tag(3, 3),
    "varint_of_eleven_bytes": b"\x08" + b"\xff" * 11,
}


@pytest.mark.parametrize("data", MALFORMED_TENSORS.values(), ids=MALFORMED_TENSORS.keys())
def test_the_tensor_decoders_raise_only_their_typed_errors(data: bytes) -> None:
    with pytest.raises((TensorDecodeError, WireError)) as raised:
        decode_tensor_proto(data)
    assert raised.value.reason == "decode_error"
    record = encode(event(7, [summary_value(b"t", data, None)]))
    with pytest.raises(TrialBytesError):
        decode_event_tensors(record)
    start = record.index(data)
    with pytest.raises(TrialBytesError):
        decode_tensor_at(record, start, start + len(data), "t" * 100_000)


MALFORMED_RECORDS: dict[str, tuple[bytes, int, int]] = {
    "negative_start": (frame(b"x"), -1, 17),
    "short_length": (frame(b"x"), 0, 3),
    "start_of_2_to_70": (frame(b"x"), 1 << 70, 17),
    "length_of_2_to_70": (frame(b"x"), 0, 1 << 70),
    "length_mismatch": (frame(b"xy"), 0, 17),
    "length_crc": (b"\x01" + bytes(16), 0, 17),
}


@pytest.mark.parametrize("case", MALFORMED_RECORDS.values(), ids=MALFORMED_RECORDS.keys())
def test_the_record_readers_raise_only_their_typed_error(case: tuple[bytes, int, int]) -> None:
    data, start, length = case
    with pytest.raises(RecordError):
        record_payload(data, start, length, verify_payload=True)
    with pytest.raises(RecordError):
        list(iter_records(data[:-1], verify_payload=True))


@pytest.mark.parametrize(
    "data", [b"\x00", b"\x0f", b"\x08", b"\x0a\x05", b"\x80" * 20, b"\x0b\x14"],
    ids=["field_0", "wire_type_7", "varint_cut", "length_past_the_end", "tag_overlong",
         "group_end_mismatched"],
)  # fmt: skip
def test_the_wire_format_raises_only_its_typed_error(data: bytes) -> None:
    with pytest.raises(WireError):
        list(iter_fields(data, 0, len(data)))
    with pytest.raises(TrialBytesError):
        describe_event(data)


def test_packed_varints_raise_only_their_typed_error() -> None:
    with pytest.raises(WireError):
        decode_packed_varints(b"\x80" * 100, 0, 100)


def test_every_parser_error_is_one_class() -> None:
    """A new caller catches ``TrialBytesError`` and misses none (each is a ValueError too)."""
    errors = [MalformedIndexError, MalformedCollectionsError, MalformedEventFileError]
    errors += [RecordError, WireError, TensorDecodeError]
    assert all(issubclass(error, TrialBytesError) for error in errors)
    assert issubclass(TrialBytesError, ValueError)


# -- a file given up on is counted under what is wrong with its bytes -------------------------


def test_files_given_up_on_are_counted_under_their_fault(tmp_path: Path) -> None:
    """The status's ``skipped.files`` names the fault (the README's keys), not one
    ``malformed_event_file`` for all of them; the other steps are counted exactly."""
    trial = smdebug_trial(tmp_path / "trial")
    damaged = {
        2: ("truncated", lambda data: data[:-3]),
        4: ("length_crc", lambda data: data[:8] + bytes([data[8] ^ 0xFF]) + data[9:]),
        6: ("decode_error", lambda data: data[:12] + b"\x00" + data[13:]),
        8: ("malformed_event_file", lambda data: hand_written_step(9, GOOD_TENSOR)),
    }
    for step, (_, damage) in damaged.items():
        path = trial / event_key(step, "worker_0")
        path.write_bytes(damage(path.read_bytes()))
    run, status = evaluate(trial, tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    assert status["skipped"]["files"] == {reason: 1 for reason, _ in damaged.values()}
    assert status["samples"] == (STEPS - len(damaged)) * BATCH


# -- the parser fuzzer ------------------------------------------------------------------------


def test_the_parser_fuzzer_reports_an_untyped_error_with_a_reproducer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A parser that lets an untyped error out (as deep JSON did) is a finding whose reproducer
    replays it; a typed refusal is not."""
    from devtools import fuzz_parsers
    from evaluator.trial import parsers

    checker = fuzz_parsers.Checker()
    nested = fuzz_parsers.Input("collections", deep_json(200_000), 0)
    checker.check(nested)
    assert checker.counts["collections_refused"] == 1

    def untyped(raw: bytes) -> int:
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(parsers, "parse_num_workers", untyped)
    with pytest.raises(fuzz_parsers.Finding, match="untyped RecursionError"):
        checker.check(nested)
    run = fuzz_parsers.fuzz(
        checker, [nested], seconds=1, rng=fuzz_parsers.random.Random(0), out=tmp_path,
        inflight=fuzz_parsers.Inflight(None),
    )  # fmt: skip
    assert run.finding is not None
    assert fuzz_parsers.read_reproducer(run.finding) == nested
    assert fuzz_parsers.replay(run.finding) == 1


def test_the_parser_fuzzer_holds_decoded_tensors_to_their_bytes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without the broadcast bound, the 10^12-element labels decode at once, to a view: the
    fuzzer's size check is what finds that, not a timer."""
    from devtools import fuzz_parsers
    from evaluator.trial import tensors

    hostile = hand_written_step(7, tensor_proto(9, (10**12,), typed=[varint_field(10, 1)]))
    checker = fuzz_parsers.Checker()
    checker.check(fuzz_parsers.Input("event", hostile, 7))
    monkeypatch.setattr(tensors, "MAX_BROADCAST_ELEMENTS", 10**13)
    with pytest.raises(fuzz_parsers.Finding, match="1,000,000,000,000 elements"):
        checker.check(fuzz_parsers.Input("event", hostile, 7))
