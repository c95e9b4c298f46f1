"""Differential fuzzing of the compiled kernels against their Python references, for a fixed time.

    python -m devtools.fuzz_kernels --seconds 60 [--corpus DIR ...] [--kernels SO] [--out DIR]
    python -m devtools.fuzz_kernels --replay FILE     (run one reproducer again)

``make fuzz`` builds evaluator/compiled/_kernels.c a second time under AddressSanitizer and
UBSan and names that build with ``--kernels``: it is loaded as ``evaluator.compiled._kernels``
before anything imports the evaluator, and the run stops unless that file is the module in use.

Every mutant event file is held to the contract of the compiled ``scan_event_file``: it either
declines (None), or returns exactly what the Python reference ``scan_event_file_python`` returns
(mode, mode step, and each span's name, offsets and lengths), and then the reference did not
raise; every content descriptor it returns gives, through ``tensor_view``, the array
``decode_tensor_at`` decodes (dtype, shape and bytes), and it returns none where that decode
raises. ``argmax_finite`` and ``step_counts`` are checked against numpy on random arrays.

Seeds: event files written by smdebug's own writer (``devtools.write_trial``: every dtype, every
mode, 0-d and empty tensors, non-ASCII and reduction tags, checksummed footers) into a temporary
trial, hand-encoded files smdebug cannot write (typed fields, broadcast values, odd modes,
several values per record), and the event files under each ``--corpus`` folder. Mutations: bit
flips, byte edits, insertions, deletions, truncations, splices of two files, record drops,
copies and swaps, header lengths rewritten with a valid CRC, and edits of the protobuf tree
(varint values, field numbers, wire types, lengths, overlong varints, groups, deep nesting,
strings), re-framed so that they reach the parsers rather than fail the framing's CRC.

The run is a child process. A sanitizer report kills it; the parent then writes the input the
child was running (kept in a memory-mapped file) as a reproducer. Exit 0: no finding; exit 1: a
finding, whose reproducer (hex) is in ``--out``.
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import mmap
import os
import random
import re
import struct
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import google_crc32c
import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:  # imported at run time only once the build to test is loaded
    from evaluator.compiled import Kernels

os.environ.setdefault("SMDEBUG_LOG_LEVEL", "warning")

Array = npt.NDArray[Any]
REPO: Final = Path(__file__).resolve().parents[1]
KERNELS_MODULE: Final = "evaluator.compiled._kernels"
FINDING_EXIT: Final = 3
"""The child's exit code for a finding it reported itself (a sanitizer's is anything else)."""
HUNG: Final = -1000
"""What the parent makes of a child that overran its time by minutes."""
MAX_INPUT: Final = 4 << 20
"""Mutants larger than this are not run (the in-flight copy of a crash's input holds this)."""
U64: Final = (1 << 64) - 1

# -- the protobuf wire format, by hand: a tree that can say what protobuf's encoder cannot ------

VARINT, FIXED64, LEN, START_GROUP, END_GROUP, FIXED32 = 0, 1, 2, 3, 4, 5


@dataclass(frozen=True)
class Field:
    """One field as it goes on the wire. ``value``: an int (varint), bytes (fixed, bytes, or
    the raw rest of an invalid wire type) or the fields of a sub-message (LEN, group)."""

    number: int
    wire: int
    value: int | bytes | tuple[Field, ...]
    key_pad: int = 0
    """Extra continuation bytes in the key's varint (an overlong but valid encoding)."""
    value_pad: int = 0
    """Extra continuation bytes in the varint value or the length."""
    length_delta: int = 0
    """Added to the length a LEN field declares (0: its real length)."""

    @cached_property
    def encoded(self) -> bytes:
        """The field's bytes, once: a mutant shares every field but one path with its seed."""
        return encode_field(self)


Message = tuple[Field, ...]


def varint(value: int, pad: int = 0) -> bytes:
    """``value`` (taken modulo 2^64) as a varint, with ``pad`` extra continuation bytes."""
    value &= U64
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    if pad:
        out.append(value | 0x80)
        out.extend(b"\x80" * (pad - 1))
        out.append(0)
    else:
        out.append(value)
    return bytes(out)


def encode(message: Message) -> bytes:
    return b"".join(field.encoded for field in message)


def encode_field(field: Field) -> bytes:
    key = varint(field.number << 3 | field.wire, field.key_pad)
    value = field.value
    if field.wire == VARINT:
        number = value if isinstance(value, int) else len(_body(value))
        return key + varint(number, field.value_pad)
    if field.wire == LEN:
        body = _body(value)
        return key + varint(len(body) + field.length_delta, field.value_pad) + body
    if field.wire == START_GROUP:
        return key + _body(value) + varint(field.number << 3 | END_GROUP)
    return key + _body(value)  # fixed widths, and the invalid wire types' raw bytes


def _body(value: int | bytes | Message) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, int):
        return varint(value)
    return encode(value)


def len_field(number: int, value: bytes | Message) -> Field:
    return Field(number, LEN, value)


def varint_field(number: int, value: int) -> Field:
    return Field(number, VARINT, value & U64)


def parse(data: bytes, depth: int = 0, max_depth: int = 8) -> Message | None:
    """The fields of ``data`` when it is a message that encodes back to the same bytes (LEN
    fields become sub-messages where their bytes are such a message); None otherwise."""
    fields: list[Field] = []
    pos, end = 0, len(data)
    while pos < end:
        key = _read_varint(data, pos)
        if key is None:
            return None
        tag, pos = key
        number, wire = tag >> 3, tag & 7
        if number == 0:
            return None
        if wire == VARINT:
            read = _read_varint(data, pos)
            if read is None:
                return None
            fields.append(Field(number, VARINT, read[0]))
            pos = read[1]
        elif wire in (FIXED64, FIXED32):
            size = 8 if wire == FIXED64 else 4
            if pos + size > end:
                return None
            fields.append(Field(number, wire, data[pos : pos + size]))
            pos += size
        elif wire == LEN:
            read = _read_varint(data, pos)
            if read is None or read[1] + read[0] > end:
                return None
            size, pos = read
            body = data[pos : pos + size]
            inner = parse(body, depth + 1) if depth < max_depth and 0 < size <= 1 << 16 else None
            fields.append(Field(number, LEN, body if inner is None else inner))
            pos += size
        else:
            return None
    message = tuple(fields)
    return message if encode(message) == data else None


def _read_varint(data: bytes, pos: int) -> tuple[int, int] | None:
    result = shift = 0
    for index in range(pos, min(len(data), pos + 10)):
        result |= (data[index] & 0x7F) << shift
        if data[index] < 0x80:
            return result & U64, index + 1
        shift += 7
    return None


# -- smdebug's messages ---------------------------------------------------------------------------

MODE_STEP_PLUGIN = b"mode_step"
MODE_PLUGIN = b"mode"
REDUCTION_TAG = b"smdebug/reductions/labels/max"


def plugin(name: bytes, content: bytes) -> Field:
    """``SummaryMetadata.plugin_data``: PluginData(plugin_name, content)."""
    return len_field(1, (len_field(1, name), len_field(2, content)))


def metadata(mode: bytes | None = b"1", mode_step: bytes | None = b"0") -> Field:
    """``Summary.Value.metadata`` as smdebug's writer fills it: mode_step first, then mode
    (None leaves a plugin out)."""
    plugins = []
    if mode_step is not None:
        plugins.append(plugin(MODE_STEP_PLUGIN, mode_step))
    if mode is not None:
        plugins.append(plugin(MODE_PLUGIN, mode))
    return len_field(9, tuple(plugins))


def summary_value(tag: bytes, tensor: bytes | Message | None, meta: Field | None) -> Message:
    """A ``Summary.Value`` in protobuf's field order: tag, tensor, metadata."""
    fields = [len_field(1, tag)]
    if tensor is not None:
        fields.append(len_field(8, tensor))
    if meta is not None:
        fields.append(meta)
    return tuple(fields)


def event(step: int | None, values: Sequence[Message], wall_time: float | None = 1.5) -> Message:
    """An ``Event`` with a ``Summary`` of ``values`` (a zero or None step left out)."""
    fields = []
    if wall_time is not None:
        fields.append(Field(1, FIXED64, struct.pack("<d", wall_time)))
    if step:
        fields.append(varint_field(2, step))
    if values:
        fields.append(len_field(5, tuple(len_field(1, value) for value in values)))
    return tuple(fields)


FILE_VERSION_EVENT: Final = (
    Field(1, FIXED64, struct.pack("<d", 1.5)),
    len_field(3, b"brain.Event:2"),
)


def tensor_proto(
    dtype: int | None,
    shape: Sequence[int] | None,
    *,
    content: bytes | None = None,
    typed: Sequence[Field] = (),
    dim_names: bool = False,
) -> Message:
    """A ``TensorProto``: dtype (1), tensor_shape (2) of dims, tensor_content (4), then
    ``typed`` fields as given (packed or not)."""
    fields: list[Field] = []
    if dtype is not None:
        fields.append(varint_field(1, dtype))
    if shape is not None:
        dims = tuple(
            len_field(2, (varint_field(1, size), *([len_field(2, b"d")] if dim_names else [])))
            for size in shape
        )
        fields.append(len_field(2, dims))
    if content is not None:
        fields.append(len_field(4, content))
    return (*fields, *typed)


def masked_crc(data: bytes) -> int:
    """TFRecord's masked CRC32C (google_crc32c, not the evaluator's records module)."""
    crc = int(google_crc32c.value(data))
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF


SMDEBUG_FOOTER: Final = masked_crc(b"0x12345678")


def frame_record(payload: bytes, footer: str | bytes = "constant") -> bytes:
    """One TFRecord: length, its masked CRC, the payload, a footer: smdebug's constant, the
    payload's real CRC ("crc"), a wrong CRC ("bad") or the given 4 bytes."""
    head = struct.pack("<Q", len(payload))
    if isinstance(footer, bytes):
        tail = footer
    elif footer == "constant":
        tail = struct.pack("<I", SMDEBUG_FOOTER)
    else:
        crc = masked_crc(payload)
        tail = struct.pack("<I", crc if footer == "crc" else crc ^ 0x1)
    return head + struct.pack("<I", masked_crc(head)) + payload + tail


def frame(payloads: Iterable[bytes], footer: str = "constant") -> bytes:
    return b"".join(frame_record(payload, footer) for payload in payloads)


def event_file(events: Iterable[Message], footer: str = "constant") -> bytes:
    return frame((encode(message) for message in events), footer)


# -- seeds ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Seed:
    name: str
    data: bytes
    step: int
    smdebug: bool
    """Written by smdebug's writer: the compiled scan must take it on (never decline)."""


SEED_STEP: Final = 7
_STEP_IN_NAME: Final = re.compile(r"^(\d+)_")


def smdebug_tensor_sets() -> dict[str, tuple[dict[str, Array], str, int | None]]:
    """(tensors, mode, mode_step) per worker name: what the seed trial's writer writes."""
    rng = np.random.default_rng(0)
    numeric = ["float32", "float64", "float16", "int8", "int16", "int32", "int64"]
    numeric += ["uint8", "uint16", "uint32", "uint64", "complex64", "complex128", "bool"]
    grid = np.arange(12).reshape(4, 3) * 7 - 20
    every_dtype = {f"{name}_BC": grid.astype(name) for name in numeric}
    return {
        "worker_0": (
            {
                "labels": rng.integers(0, 5, 16).astype(np.int64),
                "predictions": rng.random((16, 5), dtype=np.float32),
            },
            "TRAIN",
            None,
        ),
        "worker_1": (every_dtype, "EVAL", 3),
        "worker_2": (
            {
                "scalar": np.array(2.5, dtype=np.float64),
                "empty": np.zeros((0, 3), dtype=np.float32),
                "étiquettes/日本": np.arange(6, dtype=np.int32).reshape(2, 3),
                REDUCTION_TAG.decode(): np.array([4], dtype=np.int64),
                "x" * 200: np.arange(3, dtype=np.uint8),
            },
            "PREDICT",
            0,
        ),
        "worker_3": ({"labels": np.arange(3, dtype=np.int64)}, "GLOBAL", 123456789012),
    }


def write_smdebug_seeds(trial: Path) -> list[Seed]:
    """Event files written by smdebug's own FileWriter, one per (step, worker)."""
    from smdebug.core.modes import ModeKeys
    from smdebug.core.writer import FileWriter

    from devtools.write_trial import for_smdebug, write_step

    for worker, (tensors, mode, mode_step) in smdebug_tensor_sets().items():
        write_step(str(trial), SEED_STEP, worker, tensors, mode=mode, mode_step=mode_step)
    # With payload CRCs in the footers, which write_step does not ask for.
    writer = FileWriter(
        trial_dir=str(trial), step=SEED_STEP, worker="worker_9", write_checksum=True
    )
    checksummed: dict[str, Array] = {"labels": np.arange(5), "predictions": np.eye(5, dtype="f4")}
    for name, value in checksummed.items():
        writer.write_tensor(for_smdebug(value), name, mode=ModeKeys.TRAIN, mode_step=2)
    writer.close()
    return [
        Seed(f"smdebug/{path.name}", path.read_bytes(), SEED_STEP, smdebug=True)
        for path in sorted(trial.glob("events/*/*.tfevents"))
    ]


def _packed(number: int, values: Iterable[int]) -> Field:
    return len_field(number, b"".join(varint(v) for v in values))


def hand_seeds() -> list[Seed]:
    """Files smdebug's writer does not produce but the evaluator reads: the forms the compiled
    scan may leave to Python, and malformed ones it must decline."""
    meta = metadata(b"1", b"7")
    f32 = np.arange(6, dtype="<f4").tobytes()

    def one(tensor: Message | bytes | None, meta: Field | None = meta, tag: bytes = b"t") -> bytes:
        return event_file([event(SEED_STEP, [summary_value(tag, tensor, meta)])])

    forms: dict[str, bytes] = {
        "content": one(tensor_proto(1, (2, 3), content=f32, dim_names=True)),
        "content-0d": one(tensor_proto(2, (), content=struct.pack("<d", 0.5))),
        "content-no-shape": one(tensor_proto(9, None, content=struct.pack("<q", -3))),
        "content-half": one(tensor_proto(19, (4,), content=np.ones(4, "<f2").tobytes())),
        "content-bfloat16": one(tensor_proto(14, (2,), content=b"\x80\x3f\x00\x40")),
        "content-bool": one(tensor_proto(10, (3,), content=b"\x00\x01\x02")),
        "content-wrong-size": one(tensor_proto(1, (2, 3), content=f32[:-1])),
        "content-big-dims": one(tensor_proto(1, (1 << 40, 1 << 40), content=f32)),
        "typed-packed": one(tensor_proto(9, (3,), typed=[_packed(10, [1, U64, 3])])),
        "typed-unpacked": one(
            tensor_proto(3, (2,), typed=[varint_field(7, 5), varint_field(7, 6)])
        ),
        "typed-broadcast": one(tensor_proto(1, (2, 2), typed=[Field(5, FIXED32, f32[4:8])])),
        "typed-half-int-val": one(tensor_proto(19, (2,), typed=[_packed(7, [0x3C00, 0x4000])])),
        "strings": one(tensor_proto(None, (2,), typed=[len_field(8, b"a"), len_field(8, b"bc")])),
        "empty-tensor": one(()),
        "mode-missing": one(tensor_proto(1, (1,), content=f32[:4]), metadata(None, b"7")),
        "mode-step-missing": one(tensor_proto(1, (1,), content=f32[:4]), metadata(b"2", None)),
        "no-metadata": one(tensor_proto(1, (1,), content=f32[:4]), None),
        "mode-spaced": one(tensor_proto(1, (1,), content=f32[:4]), metadata(b" 2", b" 7")),
        "mode-bad": one(tensor_proto(1, (1,), content=f32[:4]), metadata(b"x", b"-5")),
        "reduction-only": one(tensor_proto(1, (1,), content=f32[:4]), tag=REDUCTION_TAG),
        "tag-invalid-utf8": one(tensor_proto(1, (1,), content=f32[:4]), tag=b"\xff\xfe"),
        "tag-unicode": one(tensor_proto(1, (1,), content=f32[:4]), tag="é日".encode()),
        "no-tensor-record": event_file([FILE_VERSION_EVENT, event(SEED_STEP, [])]),
        "empty-file": b"",
        "two-values-one-record": event_file(
            [
                FILE_VERSION_EVENT,
                event(
                    SEED_STEP,
                    [
                        summary_value(b"labels", tensor_proto(9, (2,), content=bytes(16)), meta),
                        summary_value(b"scores", tensor_proto(1, (2, 3), content=f32), meta),
                    ],
                ),
            ],
            footer="crc",
        ),
        "wrong-step": event_file(
            [
                event(
                    SEED_STEP + 1, [summary_value(b"t", tensor_proto(1, (), content=f32[:4]), meta)]
                )
            ]
        ),
        "group-in-value": event_file(
            [
                event(
                    SEED_STEP,
                    [
                        (
                            *summary_value(b"t", tensor_proto(1, (), content=f32[:4]), meta),
                            Field(3, START_GROUP, (varint_field(1, 1),)),
                        )
                    ],
                )
            ]
        ),
    }
    return [Seed(f"hand/{name}", data, SEED_STEP, smdebug=False) for name, data in forms.items()]


def corpus_seeds(folders: Sequence[Path], limit: int, rng: random.Random) -> list[Seed]:
    """Up to ``limit`` event files (``*.tfevents``) under ``folders``, a random choice, no file
    larger than ``MAX_INPUT``; the step from the file name, as smdebug names event files."""
    paths = sorted(path for folder in folders for path in folder.rglob("*.tfevents"))
    chosen = rng.sample(paths, limit) if len(paths) > limit else paths
    seeds = []
    for path in chosen:
        if path.stat().st_size > MAX_INPUT:
            continue
        named = _STEP_IN_NAME.match(path.name)
        seeds.append(Seed(str(path), path.read_bytes(), int(named[1]) if named else 0, False))
    return seeds


# -- the contract -----------------------------------------------------------------------------


class Finding(Exception):
    """A compiled kernel broke its contract with its reference; the message says how."""


MODES: Final = frozenset({"TRAIN", "EVAL", "PREDICT", "GLOBAL"})
SCORE_DTYPES: Final = (np.dtype("<f2"), np.dtype("<f4"), np.dtype("<f8"))


class Checker:
    """The compiled kernels and the references they are held to."""

    def __init__(self, kernels: Kernels, path: str) -> None:
        from evaluator.trial import parsers, records, tensors

        self.kernels = kernels
        self.path = path
        """The extension module's file."""
        self.counts: Counter[str] = Counter()
        self._calls = 0
        self._python_scan = parsers.scan_event_file_python
        self._public_scan = parsers.scan_event_file
        self._scan_errors: tuple[type[Exception], ...] = (
            records.RecordError,
            parsers.MalformedEventFileError,
        )
        self._decode = tensors.decode_tensor_at
        self._view = tensors.tensor_view

    @classmethod
    def load(cls, path: str | None = None) -> Checker:
        """The kernels of this checkout, or the build at ``path`` (loaded as the evaluator's
        kernels before the evaluator is imported: must come before any evaluator import)."""
        if path is not None:
            if KERNELS_MODULE in sys.modules:
                raise RuntimeError(f"{KERNELS_MODULE} is already imported: load {path} first")
            spec = importlib.util.spec_from_file_location(KERNELS_MODULE, path)
            if spec is None or spec.loader is None:
                raise RuntimeError(f"{path} is not an extension module")
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            sys.modules[KERNELS_MODULE] = module
        from evaluator import compiled

        kernels = compiled.kernels()
        if kernels is None:
            raise RuntimeError(f"the compiled kernels are not in use: {compiled.unavailable}")
        loaded = str(sys.modules[KERNELS_MODULE].__file__)
        if path is not None and not os.path.samefile(loaded, path):
            raise RuntimeError(f"the kernels in use are {loaded}, not {path}")
        return cls(kernels, loaded)

    # -- scan_event_file ----------------------------------------------------------------------

    def scan(self, buf: bytes, step: int, verify: bool, *, public: bool = True) -> str:
        """Check the compiled scan of ``buf`` against the reference; the outcome: "accepted",
        "empty" (no tensor record), "declined" (left to Python, which read it) or "refused"
        (declined, and Python raised its typed error). Raises Finding."""
        # Every other call reads a copy that ends where its allocation ends: a bytes object
        # has a NUL after its last byte, so a read one byte past its end goes unseen.
        self._calls += 1
        given = buf if self._calls % 2 else np.frombuffer(buf, np.uint8).copy().data
        try:
            fast = self.kernels.scan_event_file(given, step, verify)
        except Exception as error:  # any exception from the C is a finding
            raise Finding(f"the compiled scan raised {error!r}") from error
        try:
            expected = self._python_scan(buf, step, verify_payload=verify)
        except self._scan_errors as error:
            if fast is not None:
                raise Finding(
                    f"the compiled scan returned {_shown(fast)}, the Python scan raised {error!r}"
                ) from error
            if public:
                self._check_public_error(buf, step, verify, error)
            return "refused"
        except Exception as error:
            raise Finding(f"the Python scan raised an untyped {error!r}") from error
        outcome = "declined" if fast is None else self._compare(buf, fast, expected)
        if public:
            self._check_public(buf, step, verify, fast, expected)
        return outcome

    def _compare(self, buf: bytes, fast: Any, expected: Any) -> str:
        if fast == (None, 0, None):
            if expected is not None:
                raise Finding(f"the compiled scan found no tensor record, Python {expected!r}")
            return "empty"
        if not (isinstance(fast, tuple) and len(fast) == 3 and isinstance(fast[2], tuple)):
            raise Finding(f"the compiled scan returned {_shown(fast)}: not (mode, step, spans)")
        if expected is None:
            raise Finding(f"the compiled scan returned {_shown(fast)}, Python found no tensor")
        mode, mode_step, spans = fast
        if mode not in MODES or (mode, mode_step) != expected[:2] or type(mode_step) is not int:
            raise Finding(f"mode {mode!r} step {mode_step!r}, Python {expected[:2]!r}")
        if len(spans) != len(expected[2]):
            raise Finding(f"{len(spans)} spans, Python {len(expected[2])}: {_shown(fast)}")
        for span, reference in zip(spans, expected[2], strict=True):
            if not (isinstance(span, tuple) and len(span) == 6):
                raise Finding(f"span {span!r} is not a 6-tuple")
            if span[:5] != tuple(reference[:5]) or not all(type(v) is int for v in span[1:5]):
                raise Finding(f"span {span[:5]!r}, Python {tuple(reference[:5])!r}")
            self._check_content(buf, span)
        return "accepted"

    def _check_content(self, buf: bytes, span: tuple[Any, ...]) -> None:
        name, _, _, start, stop, content = span
        try:
            decoded = self._decode(buf, start, stop, name)
        except ValueError as error:
            if content is not None:
                raise Finding(f"span {span!r} has content, decoding raises {error!r}") from error
            return
        if content is None:
            self.counts["content_left_to_python"] += 1
            return
        if not (
            isinstance(content, tuple)
            and len(content) == 3
            and type(content[0]) is int
            and isinstance(content[1], tuple)
            and all(type(d) is int for d in content[1])
            and type(content[2]) is int
        ):
            raise Finding(f"content {content!r} is not (dtype, shape, offset)")
        try:
            viewed = self._view(buf, content)
        except Exception as error:  # a descriptor that cannot be viewed
            raise Finding(f"tensor_view(buf, {content!r}) raised {error!r}") from error
        if (viewed.dtype, viewed.shape) != (decoded.dtype, decoded.shape):
            raise Finding(
                f"content {content!r} views {viewed.dtype} {viewed.shape}, decoding gives "
                f"{decoded.dtype} {decoded.shape}"
            )
        if viewed.tobytes() != decoded.tobytes():  # bit for bit: NaN payloads and -0.0 too
            raise Finding(f"content {content!r} views other values than decoding gives")
        self.counts["content_viewed"] += 1

    def _check_public(self, buf: bytes, step: int, verify: bool, fast: Any, expected: Any) -> None:
        """``parsers.scan_event_file``, the C with its fallback, gives the reference's answer
        (and the compiled scan's content descriptors when it took the file on)."""
        try:
            found = self._public_scan(buf, step, verify_payload=verify)
        except Exception as error:
            raise Finding(f"scan_event_file raised {error!r}, the Python scan did not") from error
        if expected is None or found is None:
            if found is not expected:
                raise Finding(f"scan_event_file gave {found!r}, the Python scan {expected!r}")
            return
        contents = [None] * len(expected[2]) if fast is None else [s[5] for s in fast[2]]
        if (
            found[:2] != expected[:2]
            or [tuple(s[:5]) for s in found[2]] != [tuple(s[:5]) for s in expected[2]]
            or [s.content for s in found[2]] != contents
        ):
            raise Finding(f"scan_event_file gave {found!r}, the Python scan {expected!r}")

    def _check_public_error(self, buf: bytes, step: int, verify: bool, error: Exception) -> None:
        try:
            found = self._public_scan(buf, step, verify_payload=verify)
        except Exception as raised:
            if type(raised) is not type(error) or str(raised) != str(error):
                raise Finding(f"scan_event_file raised {raised!r}, Python {error!r}") from raised
        else:
            raise Finding(f"scan_event_file returned {found!r}, the Python scan raised {error!r}")

    # -- argmax_finite ------------------------------------------------------------------------

    def argmax(self, arrays: Sequence[Array], out: Array) -> str:
        """Check ``argmax_finite(arrays, out)`` against numpy: the arrays in order, each
        checked for its form and room in ``out`` (ValueError), the first with a NaN or an
        infinity ending the call (False); else every row's first maximum, and True."""
        before = out.copy()
        failure, finite, filled = None, True, 0
        expected: list[Array] = []
        for array in arrays:
            rows = array.shape[0] if array.ndim == 2 else 0
            if not (
                array.ndim == 2
                and array.dtype in SCORE_DTYPES
                and array.shape[1] >= 1
                and array.flags.c_contiguous
            ):
                failure = "form"
                break
            if out.size - filled < rows:
                failure = "room"
                break
            filled += rows
            if not np.isfinite(array).all():
                finite = False
                break
            expected.append(np.argmax(array, axis=1))
        try:
            result = self.kernels.argmax_finite(list(arrays), out)
        except ValueError as error:
            if failure is None:
                raise Finding(f"argmax_finite raised {error!r} on {_arrays(arrays)}") from error
            outcome = "refused"
        else:
            if failure is not None:
                raise Finding(f"argmax_finite returned {result!r}, not a ValueError ({failure})")
            if result is not finite:
                raise Finding(f"argmax_finite returned {result!r}, numpy: all finite {finite}")
            if finite and expected and not np.array_equal(out[:filled], np.concatenate(expected)):
                raise Finding(f"argmax_finite wrote {out[:filled]} for {_arrays(arrays)}")
            outcome = "finite" if finite else "not_finite"
        if not np.array_equal(out[filled:], before[filled:]):
            raise Finding(f"argmax_finite wrote past the rows it was given: {out} for {before}")
        return outcome

    # -- step_counts --------------------------------------------------------------------------

    def step_counts(
        self, labels: Array, predicted: Array, stops: Array, samples: Array, wrong: Array
    ) -> str:
        """Check ``step_counts`` against bincounts of each step's rows, added to the counts."""
        shapes_fit = (
            labels.shape == predicted.shape
            and samples.size == wrong.size
            and stops.size > 0
            and samples.size % stops.size == 0
        )
        width = samples.size // stops.size if shapes_fit else 0
        bounds = [0, *stops.tolist()]
        stops_fit = all(a <= b for a, b in itertools.pairwise(bounds))
        stops_fit = stops_fit and bounds[-1] == labels.size  # every row in some step
        visited = labels[: bounds[-1]] if stops_fit else labels[:0]
        labels_fit = bool(((visited >= 0) & (visited < width)).all())
        expect_error = not (shapes_fit and stops_fit and labels_fit)
        expected_samples = samples.reshape(-1).copy()
        expected_wrong = wrong.reshape(-1).copy()
        if not expect_error:
            for step, (first, stop) in enumerate(itertools.pairwise(bounds)):
                rows, guesses = labels[first:stop], predicted[first:stop]
                cells = slice(step * width, (step + 1) * width)
                expected_samples[cells] += np.bincount(rows, minlength=width)
                expected_wrong[cells] += np.bincount(rows[guesses != rows], minlength=width)
        try:
            self.kernels.step_counts(labels, predicted, stops, samples, wrong)
        except ValueError as error:
            if not expect_error:
                raise Finding(f"step_counts raised {error!r} for stops {stops}") from error
            return "refused"
        if expect_error:
            raise Finding(f"step_counts accepted labels {labels}, stops {stops}, width {width}")
        if not (
            np.array_equal(samples.reshape(-1), expected_samples)
            and np.array_equal(wrong.reshape(-1), expected_wrong)
        ):
            raise Finding(f"step_counts gave {samples} {wrong}, numpy {expected_samples} ...")
        return "counted"


def _shown(value: Any, limit: int = 600) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _arrays(arrays: Sequence[Array]) -> str:
    return _shown([(a.dtype.str, a.shape, a.tolist()) for a in arrays])


# -- random arrays ----------------------------------------------------------------------------


def _scores(rng: np.random.Generator, dtype: np.dtype[Any], size: int, special: float) -> Array:
    """Scores with many ties, signed zeros, subnormals and extremes; NaN or infinities with
    probability ``special`` per value."""
    info = np.finfo(dtype)
    pool = np.array(
        [
            0.0,
            -0.0,
            1.0,
            -1.0,
            0.5,
            float(info.smallest_subnormal),
            -float(info.smallest_subnormal),
            float(info.max),
            float(-info.max),
            float(info.tiny),
        ],
        dtype=dtype,
    )
    values = np.where(
        rng.random(size) < 0.5,
        pool[rng.integers(0, pool.size, size)],
        rng.standard_normal(size).astype(dtype),
    ).astype(dtype)
    odd = rng.random(size) < special
    values[odd] = np.array([np.nan, np.inf, -np.inf], dtype=dtype)[rng.integers(0, 3, odd.sum())]
    return values


def _misaligned(array: Array, shift: int) -> Array:
    """The same values in a read-only view ``shift`` bytes into a buffer (numpy's frombuffer)."""
    raw = bytes(shift) + array.tobytes()
    view = np.frombuffer(raw, dtype=array.dtype, count=array.size, offset=shift)
    return view.reshape(array.shape)


def argmax_case(rng: np.random.Generator) -> tuple[list[Array], Array]:
    """Score batches (float16/32/64, mostly one width, some misaligned, some empty, now and then
    a wrong form) and an ``out`` with room for them (now and then too little)."""
    dtype = SCORE_DTYPES[int(rng.integers(0, 3))]
    width = int(rng.integers(1, 7))
    special = float(rng.choice([0.0, 0.0, 0.01, 0.2]))
    arrays: list[Array] = []
    for _ in range(int(rng.integers(0, 5))):
        columns = width if rng.random() < 0.8 else int(rng.integers(1, 7))
        rows = int(rng.integers(0, 12))
        array = _scores(rng, dtype, rows * columns, special).reshape(rows, columns)
        if rng.random() < 0.3:
            array = _misaligned(array, int(rng.integers(1, 8)))
        if rng.random() < 0.03:
            array = _wrong_form(rng, array)
        arrays.append(array)
    rows_total = sum(a.shape[0] if a.ndim else 0 for a in arrays)
    room = rows_total + int(rng.integers(0, 3)) - (1 if rng.random() < 0.05 else 0)
    return arrays, np.full(max(room, 0), -7, dtype=np.int64)


def _wrong_form(rng: np.random.Generator, array: Array) -> Array:
    forms: list[Callable[[Array], Array]] = [
        lambda a: a.reshape(-1),
        lambda a: a.reshape(1, *a.shape),
        lambda a: a.astype(np.int32),
        lambda a: a.astype(a.dtype.newbyteorder(">")),
        lambda a: np.zeros((a.shape[0], 0), dtype=a.dtype),
        lambda a: np.repeat(a, 2, axis=1)[:, ::2] if a.size else a[:, :0],
        lambda a: a.astype(np.longdouble),
    ]
    with np.errstate(invalid="ignore"):  # NaN to int32
        return forms[int(rng.integers(0, len(forms)))](array)


def step_counts_case(rng: np.random.Generator) -> tuple[Array, Array, Array, Array, Array]:
    """Labels and predictions over steps, mostly valid; now and then a label outside the width,
    stops that fall or overrun, or matrices that disagree."""
    steps = int(rng.integers(0 if rng.random() < 0.02 else 1, 6))
    width = int(rng.integers(1, 7))
    sizes = rng.integers(0, 10, steps)
    rows = int(sizes.sum()) + int(rng.integers(0, 3))
    labels = rng.integers(0, width, rows).astype(np.int64)
    predicted = np.where(rng.random(rows) < 0.5, labels, rng.integers(-1, width + 1, rows))
    predicted = predicted.astype(np.int64)
    if rows and rng.random() < 0.05:
        labels[int(rng.integers(0, rows))] = int(rng.choice([-1, width, 1 << 40, -(1 << 62)]))
    stops = np.cumsum(sizes, dtype=np.int64)
    if steps and rng.random() < 0.05:
        stops[int(rng.integers(0, steps))] += int(rng.choice([-3, -1, 1, 40]))
    samples = rng.integers(0, 3, (steps, width)).astype(np.int64)
    wrong = np.zeros((steps, width), dtype=np.int64)
    if rng.random() < 0.02:
        wrong = np.zeros((steps, width + 1), dtype=np.int64)
    return labels, predicted, stops, samples, wrong


# -- mutations ----------------------------------------------------------------------------------

INTERESTING_INTS: Final = (
    0, 1, 2, 3, 4, 5, 7, 8, 9, 10, 14, 17, 18, 19, 22, 23, 24, 0x7F, 0x80, 0xFF, 0x100, 0x7FFF,
    0xFFFF, 2**31 - 1, 2**31, 2**32 - 1, 2**32, 2**32 + 1, 2**47, 2**48 - 1, 2**48, 2**63 - 1,
    2**63, U64, U64 - 1,
)  # fmt: skip
INTERESTING_TEXTS: Final = (
    b"", b"0", b"1", b"2", b"3", b"4", b"5", b" 2", b"2 ", b"\t3\n", b"x", b"-5", b"-", b"-0",
    b"007", b"+4", b"1_0", "٣".encode(), "\uff11".encode(), b"99999999999999999999",
    b"999999999999999999", b"-999999999999999999", b"9223372036854775808", MODE_PLUGIN,
    MODE_STEP_PLUGIN, REDUCTION_TAG, b"smdebug/reductions", "é".encode(), b"\xff", b"\xc3",
    b"\xed\xa0\x80", b"\x80abc", b"labels", b"predictions", b"\x00",
)  # fmt: skip
INTERESTING_NUMBERS: Final = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 13, 17, 2**29 - 1, 2**29)
INTERESTING_STEPS: Final = (
    0, 1, -1, SEED_STEP - 1, SEED_STEP + 1, 2**62, -(2**63), 2**63 - 1, 2**63, -(2**63) - 1, 2**64,
)  # fmt: skip
"""Steps beyond int64 too: an index key may name one (layout accepts any number of digits)."""


CONTENT_ITEMSIZES: Final = {
    1: 4, 2: 8, 3: 4, 4: 1, 5: 2, 6: 1, 8: 8, 9: 8, 17: 2, 18: 16, 19: 2, 22: 4, 23: 8,
    10: 1, 14: 2,
}  # fmt: skip
"""tensor_content bytes per element of each numeric DataType (bool and bfloat16 included)."""
TYPED_FIELDS: Final = {
    1: (5, FIXED32), 2: (6, FIXED64), 3: (7, VARINT), 4: (7, VARINT), 5: (7, VARINT),
    6: (7, VARINT), 7: (8, LEN), 8: (9, FIXED32), 9: (10, VARINT), 10: (11, VARINT),
    14: (13, VARINT), 17: (7, VARINT), 18: (12, FIXED64), 19: (13, VARINT), 22: (16, VARINT),
    23: (17, VARINT),
}  # fmt: skip
"""The typed field (number, wire type of one element) each DataType's values go in."""


def random_tensor(rng: random.Random) -> Message:
    """A TensorProto of a random dtype (any of TensorFlow's, some invalid), shape (0-d, empty
    dims, many dims) and storage: tensor_content of the right size or nearly, typed values
    packed or not, or a single broadcast value."""
    dtype = rng.choice((*CONTENT_ITEMSIZES, *CONTENT_ITEMSIZES, 0, 7, 11, 20, 26, 2**32 + 1, U64))
    ndim = rng.choice((0, 0, 1, 1, 1, 2, 2, 3, 4, 33))
    shape = [rng.choice((0, 1, 1, 2, 3, 5)) for _ in range(ndim)]
    count = 1
    for size in shape:
        count *= size
    form = rng.random()
    if form < 0.6:
        size = count * CONTENT_ITEMSIZES.get(dtype, 1) + rng.choice((0, 0, 0, 0, 1, -1, 4))
        content = rng.randbytes(min(max(size, 0), 1 << 16))  # 33 dims of 5: not that much
        return tensor_proto(dtype, shape, content=content, dim_names=rng.random() < 0.3)
    number, wire = TYPED_FIELDS.get(dtype, (rng.randrange(5, 18), VARINT))
    values = min(count, 64) if form < 0.85 else 1  # 33 dims of 5 would be 5^33 values
    if wire in (FIXED32, FIXED64):
        width = 4 if wire == FIXED32 else 8
        values *= 2 if dtype in (8, 18) else 1
        if rng.random() < 0.5:
            typed = [Field(number, wire, rng.randbytes(width)) for _ in range(values)]
        else:
            typed = [len_field(number, rng.randbytes(width * values))]
    elif wire == LEN:
        typed = [len_field(number, rng.choice(INTERESTING_TEXTS)) for _ in range(values)]
    elif rng.random() < 0.5:
        typed = [varint_field(number, rng.choice(INTERESTING_INTS)) for _ in range(values)]
    else:
        run = b"".join(varint(rng.choice(INTERESTING_INTS)) for _ in range(values))
        typed = [len_field(number, run)]
    return tensor_proto(None if dtype == 0 else dtype, shape, typed=typed)


@dataclass(frozen=True)
class Record:
    payload: bytes | Message
    footer: str | bytes


@dataclass(frozen=True)
class Parsed:
    records: tuple[Record, ...]
    tail: bytes
    """Bytes after the last whole record (a truncated one, or garbage)."""


def split_records(data: bytes) -> Parsed:
    """The records of an event file, leniently (no CRC checked); payloads that are messages
    become trees, footers are named when they are smdebug's constant or the real CRC."""
    records: list[Record] = []
    offset = 0
    while len(data) - offset >= 16:
        (length,) = struct.unpack_from("<Q", data, offset)
        if length > len(data) - offset - 16:
            break
        payload = data[offset + 12 : offset + 12 + length]
        raw_footer = data[offset + 12 + length : offset + 16 + length]
        (value,) = struct.unpack("<I", raw_footer)
        footer: str | bytes = raw_footer
        if value == SMDEBUG_FOOTER:
            footer = "constant"
        elif value == masked_crc(payload):
            footer = "crc"
        tree = parse(payload)
        records.append(Record(payload if tree is None else tree, footer))
        offset += 16 + length
    return Parsed(tuple(records), data[offset:])


def _paths(message: Message, prefix: tuple[int, ...] = ()) -> Iterator[tuple[int, ...]]:
    for index, field in enumerate(message):
        path = (*prefix, index)
        yield path
        if isinstance(field.value, tuple):
            yield from _paths(field.value, path)


def _get(message: Message, path: tuple[int, ...]) -> Field:
    field = message[path[0]]
    for index in path[1:]:
        assert isinstance(field.value, tuple)
        field = field.value[index]
    return field


def _put(message: Message, path: tuple[int, ...], new: Sequence[Field]) -> Message:
    """``message`` with the field at ``path`` replaced by ``new`` (none: deleted)."""
    index = path[0]
    if len(path) == 1:
        return (*message[:index], *new, *message[index + 1 :])
    field = message[index]
    assert isinstance(field.value, tuple)
    changed = replace(field, value=_put(field.value, path[1:], new))
    return (*message[:index], changed, *message[index + 1 :])


class Mutator:
    """Mutants of the seeds, each a few stacked edits: of the protobuf tree (re-framed), of the
    records, of the framing, or of raw bytes."""

    def __init__(self, seeds: Sequence[Seed], rng: random.Random) -> None:
        self.seeds = list(seeds)
        self.rng = rng
        self._parsed = [split_records(seed.data) for seed in self.seeds]
        self._paths = {
            id(record.payload): list(_paths(record.payload))
            for parsed in self._parsed
            for record in parsed.records
            if isinstance(record.payload, tuple)
        }
        """Every path of each seed record's tree (the seeds keep the trees, so ids stay)."""
        self._tree_ops: list[Callable[[Field], Sequence[Field]]] = [
            self._set_varint, self._set_varint, self._set_text, self._resize, self._renumber,
            self._rewire, self._overlong, self._length, self._drop, self._duplicate,
            self._group, self._nest, self._insert, self._set_text,
        ]  # fmt: skip

    def mutant(self) -> tuple[bytes, int, bool]:
        rng = self.rng
        index = rng.randrange(len(self.seeds))
        seed, parsed = self.seeds[index], self._parsed[index]
        step = seed.step if rng.random() < 0.9 else rng.choice(INTERESTING_STEPS)
        verify = rng.random() < 0.5
        records, tail = list(parsed.records), parsed.tail
        raw: bytes | None = None
        for _ in range(rng.choice((1, 1, 1, 2, 2, 3, 4))):
            choice = rng.random()
            if raw is None and records and choice < 0.6:
                at = rng.randrange(len(records))
                records[at] = self._mutate_record(records[at])
            elif raw is None and choice < 0.85:
                records = self._mutate_records(records)
            else:
                if raw is None:
                    raw = self._frame(records, tail)
                raw = self._mutate_bytes(raw)
        data = self._frame(records, tail) if raw is None else raw
        return data, step, verify

    @staticmethod
    def _frame(records: Sequence[Record], tail: bytes) -> bytes:
        return (
            b"".join(
                frame_record(
                    r.payload if isinstance(r.payload, bytes) else encode(r.payload), r.footer
                )
                for r in records
            )
            + tail
        )

    def _mutate_record(self, record: Record) -> Record:
        rng = self.rng
        if rng.random() < 0.05:
            return replace(record, footer=rng.choice(("constant", "crc", "bad", b"\0\0\0\0")))
        payload = record.payload
        if isinstance(payload, bytes) or not payload:
            raw = payload if isinstance(payload, bytes) else b""
            return replace(record, payload=self._mutate_bytes(raw))
        paths = self._paths.get(id(payload)) or list(_paths(payload))
        if rng.random() < 0.15:  # a new tensor where a Summary.Value holds one
            tensors = [p for p in paths if len(p) == 3 and _get(payload, p).number == 8]
            if tensors:
                where = rng.choice(tensors)
                new = replace(_get(payload, where), value=random_tensor(rng))
                return replace(record, payload=_put(payload, where, [new]))
        path = rng.choice(paths)
        op = rng.choice(self._tree_ops)
        return replace(record, payload=_put(payload, path, op(_get(payload, path))))

    # tree edits: each takes a field and returns what replaces it

    def _set_varint(self, field: Field) -> Sequence[Field]:
        if field.wire != VARINT:
            return self._set_text(field)
        value = int(field.value) if isinstance(field.value, int) else 0
        choices = (*INTERESTING_INTS, value + 1, value - 1, value ^ (1 << self.rng.randrange(64)))
        return [replace(field, value=self.rng.choice(choices) & U64)]

    def _set_text(self, field: Field) -> Sequence[Field]:
        if field.wire != LEN:
            return [field]
        rng = self.rng
        text = rng.choice(INTERESTING_TEXTS)
        if rng.random() < 0.2:
            text = rng.randbytes(rng.randrange(0, 12))
        return [replace(field, value=text, length_delta=0)]

    def _resize(self, field: Field) -> Sequence[Field]:
        """Tensor content (or any bytes) cut or grown by an element's size, or a byte."""
        if field.wire != LEN:
            return [field]
        body = _body(field.value)
        size = self.rng.choice((1, 2, 4, 8, 16))
        grown = body + self.rng.randbytes(size) if self.rng.random() < 0.5 else body[:-size]
        return [replace(field, value=grown, length_delta=0)]

    def _renumber(self, field: Field) -> Sequence[Field]:
        number = self.rng.choice((*INTERESTING_NUMBERS, field.number + 1, max(field.number - 1, 0)))
        return [replace(field, number=number)]

    def _rewire(self, field: Field) -> Sequence[Field]:
        wire = self.rng.randrange(8)
        body = _body(field.value)
        value: int | bytes | Message
        if wire == VARINT:
            value = field.value if isinstance(field.value, int) else len(body)
        elif wire in (FIXED64, FIXED32):
            size = 8 if wire == FIXED64 else 4
            value = (body + bytes(size))[:size]
        elif wire == START_GROUP:
            value = field.value if isinstance(field.value, tuple) else ()
        elif wire == LEN:
            value = field.value if not isinstance(field.value, int) else varint(field.value)
        else:
            value = b""
        return [replace(field, wire=wire, value=value)]

    def _overlong(self, field: Field) -> Sequence[Field]:
        pad = self.rng.choice((1, 2, 3, 9))
        if self.rng.random() < 0.5:
            return [replace(field, key_pad=pad)]
        return [replace(field, value_pad=pad)]

    def _length(self, field: Field) -> Sequence[Field]:
        if field.wire != LEN:
            return self._set_varint(field)
        delta = self.rng.choice((-1, 1, -2, 2, 7, -len(_body(field.value)) - 1, 1 << 40, 1 << 63))
        return [replace(field, length_delta=delta)]

    def _drop(self, field: Field) -> Sequence[Field]:
        return []

    def _duplicate(self, field: Field) -> Sequence[Field]:
        return [field, field]

    def _group(self, field: Field) -> Sequence[Field]:
        """The field as a group, or a group (well formed or not) next to it."""
        choice = self.rng.randrange(3)
        if choice == 0 and isinstance(field.value, tuple):
            return [replace(field, wire=START_GROUP)]
        if choice == 1:
            return [field, Field(self.rng.choice((3, 6, 11)), START_GROUP, (field,))]
        unclosed = Field(self.rng.choice((1, 2, 7)), END_GROUP, b"")
        return [field, unclosed] if self.rng.random() < 0.5 else [unclosed, field]

    def _nest(self, field: Field) -> Sequence[Field]:
        """Deep nesting: LEN messages inside each other, or groups inside each other (closed,
        or one left open)."""
        depth = self.rng.choice(
            (10, 100, 300, 1000, 3000) if self.rng.random() < 0.1 else (10, 100)
        )
        choice = self.rng.randrange(3)
        if choice == 0 and depth < 3000:
            body = b""
            for _ in range(depth):
                body = varint(1 << 3 | LEN) + varint(len(body)) + body
            return [replace(field, wire=LEN, value=body, length_delta=0)]
        opened = varint(field.number << 3 | START_GROUP) * depth
        closed = varint(field.number << 3 | END_GROUP) * (depth - (choice == 2))
        return [Field(1, START_GROUP, opened + closed)]

    def _insert(self, field: Field) -> Sequence[Field]:
        rng = self.rng
        number = rng.choice(INTERESTING_NUMBERS)
        new = rng.choice(
            (
                varint_field(number, rng.choice(INTERESTING_INTS)),
                len_field(number, rng.choice(INTERESTING_TEXTS)),
                Field(number, FIXED32, rng.randbytes(4)),
                Field(number, FIXED64, rng.randbytes(8)),
                metadata(rng.choice((b"1", b"2", b" 3", None)), rng.choice((b"5", b"-1", None))),
            )
        )
        return [field, new] if rng.random() < 0.5 else [new, field]

    # record and byte edits

    def _mutate_records(self, records: list[Record]) -> list[Record]:
        rng = self.rng
        other = self._parsed[rng.randrange(len(self._parsed))].records
        choice = rng.randrange(5)
        if choice == 0 and records:
            del records[rng.randrange(len(records))]
        elif choice == 1 and records:
            at = rng.randrange(len(records))
            records.insert(at, records[at])
        elif choice == 2 and len(records) > 1:
            a, b = rng.sample(range(len(records)), 2)
            records[a], records[b] = records[b], records[a]
        elif choice == 3 and other:
            records.insert(rng.randrange(len(records) + 1), rng.choice(other))
        else:
            records.insert(rng.randrange(len(records) + 1), Record(FILE_VERSION_EVENT, "constant"))
        return records

    def _mutate_bytes(self, data: bytes) -> bytes:
        rng = self.rng
        buf = bytearray(data)
        choice = rng.randrange(9)
        if choice == 0 and buf:  # bit flips
            for _ in range(rng.choice((1, 1, 2, 8))):
                buf[rng.randrange(len(buf))] ^= 1 << rng.randrange(8)
        elif choice == 1 and buf:  # interesting bytes
            for _ in range(rng.choice((1, 2, 4))):
                buf[rng.randrange(len(buf))] = rng.choice((0, 1, 0x7F, 0x80, 0xFF, 0x0A, 0x12))
        elif choice == 2:  # insertion
            at = rng.randrange(len(buf) + 1)
            buf[at:at] = rng.randbytes(rng.choice((1, 2, 4, 16)))
        elif choice == 3 and buf:  # deletion
            at = rng.randrange(len(buf))
            del buf[at : at + rng.choice((1, 2, 4, 16, 64))]
        elif choice == 4:  # truncation
            del buf[rng.randrange(len(buf) + 1) :]
        elif choice == 5:  # splice with another seed
            other = self.seeds[rng.randrange(len(self.seeds))].data
            buf = buf[: rng.randrange(len(buf) + 1)] + other[rng.randrange(len(other) + 1) :]
        elif choice in (6, 7):  # a record length rewritten, with a valid length CRC
            self._edit_length(buf)
        elif buf:  # a range copied elsewhere
            at, size = rng.randrange(len(buf)), rng.choice((1, 4, 12, 64))
            chunk = buf[at : at + size]
            to = rng.randrange(len(buf) + 1)
            buf[to:to] = chunk
        return bytes(buf[:MAX_INPUT])

    def _edit_length(self, buf: bytearray) -> None:
        starts, offset = [], 0
        while len(buf) - offset >= 16:
            starts.append(offset)
            (length,) = struct.unpack_from("<Q", buf, offset)
            if length > len(buf) - offset - 16:
                break
            offset += 16 + length
        if not starts:
            return
        at = self.rng.choice(starts)
        (length,) = struct.unpack_from("<Q", buf, at)
        rest = len(buf) - at - 16
        new = self.rng.choice((0, 1, length - 1, length + 1, rest, rest + 1, 2**63, U64, 2**32))
        head = struct.pack("<Q", new & U64)
        buf[at : at + 12] = head + struct.pack("<I", masked_crc(head))


# -- the run ------------------------------------------------------------------------------------


class Inflight:
    """The input being run, in a memory-mapped file: a crash leaves it for the parent."""

    HEAD: Final = struct.Struct("<BB6x24sQ")
    """Kind, flag (verify_payload, or which array kernel), the step or the seed in decimal
    (steps may lie beyond int64), the input's length."""
    SCAN, ARRAYS = 1, 2

    def __init__(self, path: Path | None) -> None:
        self._map: mmap.mmap | None = None
        if path is not None:
            with path.open("w+b") as file:
                file.truncate(self.HEAD.size + MAX_INPUT)
                self._map = mmap.mmap(file.fileno(), 0)

    def scan(self, data: bytes, step: int, verify: bool) -> None:
        if self._map is not None:
            head = self.HEAD.pack(self.SCAN, verify, str(step).encode(), len(data))
            self._map[: self.HEAD.size] = head
            self._map[self.HEAD.size : self.HEAD.size + len(data)] = data

    def arrays(self, kind: int, seed: int) -> None:
        if self._map is not None:
            self._map[: self.HEAD.size] = self.HEAD.pack(self.ARRAYS, kind, str(seed).encode(), 0)

    @classmethod
    def read(cls, path: Path) -> tuple[int, int, int, bytes]:
        raw = path.read_bytes()
        kind, flag, value, length = cls.HEAD.unpack_from(raw)
        number = int(value.rstrip(b"\0") or b"0")
        return kind, flag, number, raw[cls.HEAD.size : cls.HEAD.size + length]


def write_reproducer(out: Path, what: str, step: int, verify: bool, data: bytes) -> Path:
    """A scan input as text: a header and the bytes in hex, 32 to a line."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"scan-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}.hex"
    lines = [
        f"# {what}",
        f"# replay: python -m devtools.fuzz_kernels --replay {path}",
        f"step {step}",
        f"verify_payload {int(verify)}",
        *(data[i : i + 32].hex() for i in range(0, len(data), 32)),
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def read_reproducer(path: Path) -> tuple[int, bool, bytes]:
    step, verify, chunks = 0, False, []
    for line in path.read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        if line.startswith("step "):
            step = int(line.split()[1])
        elif line.startswith("verify_payload "):
            verify = line.split()[1] == "1"
        else:
            chunks.append(bytes.fromhex(line))
    return step, verify, b"".join(chunks)


def array_check(checker: Checker, kind: int, seed: int) -> str:
    """One random argmax_finite (kind 0) or step_counts (kind 1) case from ``seed``."""
    rng = np.random.default_rng(seed)
    if kind == 0:
        return "argmax_" + checker.argmax(*argmax_case(rng))
    return "step_counts_" + checker.step_counts(*step_counts_case(rng))


@dataclass
class Run:
    executions: int = 0
    seconds: float = 0.0
    finding: Path | str | None = None


def fuzz(
    checker: Checker,
    seeds: Sequence[Seed],
    *,
    seconds: float,
    rng: random.Random,
    out: Path,
    inflight: Inflight,
) -> Run:
    """Mutants of ``seeds`` and random arrays, checked until ``seconds`` have passed or a
    finding; every 8th execution is an array case."""
    for seed in seeds:  # every seed itself first; smdebug's must not be declined
        inflight.scan(seed.data, seed.step, True)
        try:
            outcome = checker.scan(seed.data, seed.step, True)
            if seed.smdebug and outcome != "accepted":
                raise Finding(f"the compiled scan {outcome} a file smdebug wrote ({seed.name})")
        except Finding as finding:
            return Run(finding=write_reproducer(out, str(finding), seed.step, True, seed.data))
    mutator = Mutator(seeds, rng)
    run = Run()
    start = time.monotonic()
    deadline = start + seconds
    while time.monotonic() < deadline:
        run.executions += 1
        if run.executions % 8 == 0:
            kind, seed_value = run.executions // 8 % 2, rng.getrandbits(63)
            inflight.arrays(kind, seed_value)
            try:
                checker.counts[array_check(checker, kind, seed_value)] += 1
            except Finding as finding:
                run.finding = f"{finding} (replay: --replay-arrays {kind}:{seed_value})"
                break
            continue
        data, step, verify = mutator.mutant()
        if len(data) > MAX_INPUT:
            continue
        inflight.scan(data, step, verify)
        try:
            outcome = checker.scan(data, step, verify, public=run.executions % 16 == 1)
        except Finding as finding:
            run.finding = write_reproducer(out, str(finding), step, verify, data)
            break
        checker.counts["scan_" + outcome] += 1
    run.seconds = time.monotonic() - start
    return run


def summary(run: Run, checker: Checker, seeds: Sequence[Seed]) -> str:
    counts = checker.counts
    scans = sum(v for k, v in counts.items() if k.startswith("scan_"))
    argmax = sum(v for k, v in counts.items() if k.startswith("argmax_"))
    steps = sum(v for k, v in counts.items() if k.startswith("step_counts_"))
    rate = run.executions / run.seconds if run.seconds else 0.0
    return (
        f"fuzz_kernels: {run.executions:,} executions in {run.seconds:.1f} s ({rate:,.0f}/s) "
        f"with {checker.path}\n"
        f"  scan_event_file {scans:,}: accepted {counts['scan_accepted']:,} "
        f"(tensors viewed through their content {counts['content_viewed']:,}, left to the "
        f"decoder {counts['content_left_to_python']:,}), no tensor record "
        f"{counts['scan_empty']:,}, declined {counts['scan_declined']:,} (Python read them), "
        f"refused {counts['scan_refused']:,} (declined, Python raised)\n"
        f"  argmax_finite {argmax:,} (finite {counts['argmax_finite']:,}, not finite "
        f"{counts['argmax_not_finite']:,}, refused {counts['argmax_refused']:,}); step_counts "
        f"{steps:,} (refused {counts['step_counts_refused']:,})\n"
        f"  seeds: {sum(s.smdebug for s in seeds)} written by smdebug, "
        f"{sum(s.name.startswith('hand/') for s in seeds)} hand-encoded, "
        f"{sum(not s.smdebug and not s.name.startswith('hand/') for s in seeds)} from --corpus"
    )


def child(args: argparse.Namespace) -> int:
    checker = Checker.load(args.kernels)
    if args.kernels is not None and "libasan" not in Path("/proc/self/maps").read_text():
        print(f"warning: {args.kernels} runs without AddressSanitizer", file=sys.stderr)
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory(prefix="fuzz-kernels-") as folder:
        seeds = write_smdebug_seeds(Path(folder) / "trial")
    seeds += hand_seeds()
    seeds += corpus_seeds([Path(c) for c in args.corpus], args.corpus_files, rng)
    inflight = Inflight(Path(args.inflight) if args.inflight else None)
    run = fuzz(checker, seeds, seconds=args.seconds, rng=rng, out=Path(args.out), inflight=inflight)
    print(summary(run, checker, seeds), flush=True)
    if run.finding is not None:
        print(f"fuzz_kernels: FINDING (seed {args.seed}): {run.finding}", file=sys.stderr)
        if isinstance(run.finding, Path):
            print(run.finding.read_text().splitlines()[0], file=sys.stderr)
        return FINDING_EXIT
    print("fuzz_kernels: no finding")
    return 0


def supervise(args: argparse.Namespace, argv: Sequence[str]) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    inflight = out / f"inflight-{os.getpid()}.bin"
    command = [sys.executable, "-m", "devtools.fuzz_kernels", *argv]
    command += ["--child", "--inflight", str(inflight), "--seed", str(args.seed)]
    try:  # setting up takes seconds (tens under the sanitizers); much longer is a hang
        code = subprocess.run(command, cwd=REPO, check=False, timeout=args.seconds + 300).returncode
    except subprocess.TimeoutExpired:
        code = HUNG
    if code == 0:
        inflight.unlink(missing_ok=True)
        return 0
    if code == FINDING_EXIT or not inflight.exists():
        inflight.unlink(missing_ok=True)
        return 1
    kind, flag, value, data = Inflight.read(inflight)
    inflight.unlink()
    if kind == Inflight.SCAN:
        where = write_reproducer(
            out, f"the fuzz run died (exit {code}) in scan_event_file", value, bool(flag), data
        )
        said = f"the input it was running: {where}"
    elif kind == Inflight.ARRAYS:
        said = f"in {('argmax_finite', 'step_counts')[flag]}: --replay-arrays {flag}:{value}"
    else:
        said = "before it ran any input"
    how = {1: "the driver raised (the traceback above)", HUNG: "it hung, and was killed"}.get(
        code, "a sanitizer's report above"
    )
    print(f"fuzz_kernels: FINDING: the run died (exit {code}: {how}); {said}", file=sys.stderr)
    return 1


def replay(args: argparse.Namespace) -> int:
    checker = Checker.load(args.kernels)
    try:
        if args.replay_arrays:
            kind, seed = (int(part) for part in args.replay_arrays.split(":"))
            print(array_check(checker, kind, seed))
        else:
            step, verify, data = read_reproducer(Path(args.replay))
            print(f"{len(data)} bytes, step {step}, verify_payload {verify}")
            print("compiled:", _shown(checker.kernels.scan_event_file(data, step, verify), 4000))
            print(checker.scan(data, step, verify))
    except Finding as finding:
        print(f"FINDING: {finding}")
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        prog="python -m devtools.fuzz_kernels",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--seconds", type=float, default=60.0, help="how long to fuzz")
    parser.add_argument("--corpus", nargs="*", default=[], help="folders of event files to add")
    parser.add_argument("--corpus-files", type=int, default=300, help="at most this many of them")
    parser.add_argument("--kernels", help="the kernels' .so to test (the sanitized build)")
    parser.add_argument("--out", default=str(Path(tempfile.gettempdir()) / "fuzz-kernels"),
                        help="where reproducers go")  # fmt: skip
    parser.add_argument("--seed", type=int, default=None, help="the random seed (default: time)")
    parser.add_argument("--replay", help="run one reproducer file again")
    parser.add_argument("--replay-arrays", help="KIND:SEED, an array case again")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--inflight", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.replay or args.replay_arrays:
        return replay(args)
    if args.seed is None:
        args.seed = int(time.time())
    return child(args) if args.child else supervise(args, argv)


if __name__ == "__main__":
    sys.exit(main())
