"""Decode the tensors of an smdebug ``Event`` payload straight from the wire format.

The path is ``Event.summary`` (5) -> ``Summary.value`` (1, repeated) -> ``Value.tag`` (1) and
``Value.tensor`` (8, a TensorFlow ``TensorProto``). Everything else (wall time, step, the plugin
metadata carrying the mode) is skipped by length: the index already gives the mode and step.
Where no index is read (on S3 each extra object costs a request), :func:`describe_event` gives
the step, the tags and the plugin metadata without decoding any tensor.

A ``TensorProto`` carries its numbers either as raw little-endian ``tensor_content`` (what
smdebug always writes for numbers) or in a typed repeated field (what TensorFlow writes for
small or constant tensors, packed or not). Both are read, for every dtype, and the result is
exact: int8 stays signed (smdebug's reader returns uint8), bfloat16 widens losslessly to float32,
and half-precision bit patterns become float16.

Where a singular field appears twice the last one wins (protobuf would merge two sub-messages;
no writer emits that). Strings become a NumPy ``str`` array, which cannot hold trailing NULs.

The bytes come from a file anyone who can write the trial controls, so every claim in them that
would drive an allocation or a loop is held to what the record holds, or to a named bound,
before it is acted on: dimensions (each, their product, their number), a broadcast value's
shape, the number of fields of a ``TensorProto`` (each unpacked value is one), the cells of a
string array. A claim beyond them raises ``TensorDecodeError`` saying which bound and why.
Those bounds hold one tensor; what the broadcast tensors taken from one part claim together is
held to the reader's budget by :class:`ElementBudget`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Final, NamedTuple

import numpy as np
import numpy.typing as npt

from evaluator.core.text import quoted
from evaluator.trial.dtypes import (
    CONTENT_DTYPES,
    DT_BFLOAT16,
    DT_BOOL,
    DT_COMPLEX64,
    DT_COMPLEX128,
    DT_HALF,
    DT_INVALID,
    DT_STRING,
    DTYPE_NAMES,
    FIXED32_FIELDS,
    FIXED64_FIELDS,
    KINDS,
    STRING_VAL,
    TYPED_FIELD_NAMES,
)
from evaluator.trial.problems import TrialBytesError
from evaluator.trial.protowire import (
    FIXED32,
    FIXED64,
    LEN,
    VARINT,
    Buffer,
    WireError,
    decode_packed_fixed,
    decode_packed_varints,
    iter_fields,
    read_varint,
    to_int32,
    to_int64,
    wire_type_name,
)

__all__ = [
    "DTYPE_NAMES",
    "ELEMENT_BYTES",
    "MAX_BROADCAST_ELEMENTS",
    "MAX_RANK",
    "MAX_STRING_CELLS",
    "MAX_TENSOR_FIELDS",
    "ElementBudget",
    "ElementBudgetError",
    "EventValue",
    "TensorDecodeError",
    "decode_event_tensors",
    "decode_tensor_at",
    "decode_tensor_proto",
    "describe_event",
    "tensor_view",
]

Array = npt.NDArray[Any]


class TensorDecodeError(TrialBytesError):
    """A well-formed message whose tensor cannot be turned into an array (wrong element count,
    unsupported dtype, undecodable string)."""


class ElementBudgetError(TensorDecodeError):
    """The tensors taken from one part claim more elements than its budget (``ElementBudget``)."""


_MAX_ELEMENTS: Final = 1 << 48
"""Far more elements than any real tensor: a shape beyond this is corrupt, not just large."""

MAX_BROADCAST_ELEMENTS: Final = 1 << 24
"""Elements one typed value may fill (TensorFlow's broadcast of a constant tensor). They lie in
no byte of the record, yet the rule turns labels and scores into int64 and float64 rows: 16 Mi
elements cost 128 MiB once materialised, half the reader's ``HELD_BYTES_LIMIT`` (256 MiB, the
most event-file bytes it keeps), which a ``tensor_content`` that large would have had to bring.
No writer broadcasts labels or predictions (smdebug writes ``tensor_content``), and a shape of
10^12 elements with one value would otherwise hang the rule for minutes."""

MAX_RANK: Final = 64
"""Dimensions a shape may have: NumPy's limit (TensorFlow's is 254), so a tensor beyond it
could not be an array anyway; refused as soon as the shape's bytes pass it, so that a shape of
millions of empty dims is not walked to the end."""

MAX_TENSOR_FIELDS: Final = 1 << 16
"""Fields one ``TensorProto`` may have. A writer puts a handful there (dtype, shape, version,
the content or one packed run per typed field); only unpacked repeated values (hand-made, or a
proto2-era encoder) add a field per element, and each costs a Python step and object. Past this
many the message is refused rather than walked: 8 Mi unpacked values in a 16 MiB record took
45 s and 2.5 GB."""

MAX_STRING_CELLS: Final = 1 << 24
"""Characters of a string array (elements x the longest element): NumPy's ``str`` arrays are
fixed-width, 4 bytes a character, so this is 64 MiB. One long string beside many empty ones
would otherwise claim terabytes."""

ELEMENT_BYTES: Final = 8
"""What one element of a labels or predictions tensor costs once the rule holds it: labels
become int64 rows and scores float64 ones (``evaluator.core.normalise``), whatever the dtype
they were written in, and a broadcast fills its whole shape."""


class ElementBudget:
    """The elements the broadcast tensors taken from one part claim, held to a budget.

    Each tensor is within its own bounds (a broadcast within ``MAX_BROADCAST_ELEMENTS``), yet a
    part may hold any number of tensors the regexes want, and the rule concatenates them: 100
    broadcasts of 16 Mi elements would be 12.5 GiB from a few KiB of file. A broadcast is
    charged its element count as it is decoded (it is still a view then), before anything is
    materialised; past ``limit_bytes / ELEMENT_BYTES`` elements :meth:`charge` raises
    ``ElementBudgetError`` and the part is skipped. A tensor whose every element is in the
    file (``tensor_content``, or one typed value per element) is not charged: its size is paid
    for by bytes someone wrote, and a real segmentation batch of 16 x 512 x 512 x 21 scores must
    not be refused for its size.
    """

    __slots__ = ("claimed", "limit", "limit_bytes")

    def __init__(self, limit_bytes: int) -> None:
        self.limit_bytes = max(0, limit_bytes)
        self.limit = self.limit_bytes // ELEMENT_BYTES
        """Elements all tensors of the part may claim together."""
        self.claimed = 0

    def charge(self, tag: str, array: Array, replaced: Array | None = None) -> None:
        """Charge ``array`` (named ``tag``), refunding the tensor of that name it replaces."""
        self.claimed += _claimed(array) - (0 if replaced is None else _claimed(replaced))
        if self.claimed > self.limit:
            raise ElementBudgetError(
                f"the broadcast tensors of this part that the regexes want claim more than "
                f"{self.limit:,} elements: tensor {quoted(tag)} (shape {_shape_text(array.shape)}"
                f", {array.size:,} elements) brings them to {self.claimed:,}. Held by the rule "
                f"as int64 or float64 rows ({ELEMENT_BYTES} bytes each) they would take more than "
                f"the {self.limit_bytes >> 20} MiB of the reader's HELD_BYTES_LIMIT, so the part "
                "is skipped before any of them is materialised. smdebug writes one labels and "
                "one predictions tensor per step and worker: check that labels_regex and "
                "predictions_regex match only those"
            )


def _claimed(array: Array) -> int:
    """The elements of ``array`` that no byte of the file holds: all of a broadcast view (a
    stride of 0: one value repeated), none of a tensor whose elements were all written."""
    return array.size if array.size > 1 and 0 in array.strides else 0


_MAX_CACHED_KEY_BYTES: Final = 256
"""The longest shape or plugin metadata the decoding caches keep: smdebug's are a few dozen
bytes, and a cache of 4096 long keys would hold whatever a hostile file repeats there."""


_F32: Final = np.dtype("<f4")
_F64: Final = np.dtype("<f8")
_U2: Final = np.dtype("<u2")


def decode_event_tensors(
    payload: memoryview[Any] | bytes, wanted: Callable[[str], bool] | None = None
) -> list[tuple[str, Array]]:
    """``(tag, array)`` for every tensor value of an Event whose tag ``wanted`` accepts.

    Unwanted tensors are skipped by their length prefix, never decoded. Arrays built from
    ``tensor_content`` are read-only views into ``payload``: they keep it alive, and callers
    that need to write must copy.
    """
    buf = _as_buffer(payload)
    found: list[tuple[str, Array]] = []
    for number, wire_type, start, stop in iter_fields(buf, 0, len(buf)):
        if number == 5:
            _expect(wire_type, LEN, "Event.summary")
            _summary_tensors(buf, start, stop, wanted, found)
    return found


class EventValue(NamedTuple):
    """One tensor value of an Event as an index would describe it, without the tensor.

    A named tuple: one is built for every record a reader scans, and it costs a third of a
    frozen dataclass to make."""

    tag: str
    plugins: dict[str, str]
    """``SummaryMetadata.plugin_data``: plugin name -> content (smdebug's mode and mode_step)."""
    tensor_start: int = 0
    tensor_stop: int = 0
    """Where the serialized ``TensorProto`` lies in the payload: a reader that keeps the bytes
    decodes it later with :func:`decode_tensor_at`, without walking the Event again."""


def describe_event(payload: memoryview[Any] | bytes) -> tuple[int, list[EventValue]]:
    """``Event.step`` and the tensor values of an Event, tensors skipped by length.

    smdebug writes each tensor's mode and mode step into ``Value.metadata`` (plugins ``mode`` and
    ``mode_step``, see ``smdebug/core/writer.py``), so an event file describes itself as fully
    as its index does. Values without a tensor are left out: smdebug indexes only tensors.
    """
    buf = _as_buffer(payload)
    step = 0  # proto3 leaves a zero step out
    values: list[EventValue] = []
    for number, wire_type, start, stop in iter_fields(buf, 0, len(buf)):
        if number == 2:
            _expect(wire_type, VARINT, "Event.step")
            step = to_int64(start)
        elif number == 5:
            _expect(wire_type, LEN, "Event.summary")
            for inner, inner_type, first, end in iter_fields(buf, start, stop):
                if inner == 1:
                    _expect(inner_type, LEN, "Summary.value")
                    value = _describe_value(buf, first, end)
                    if value is not None:
                        values.append(value)
    return step, values


def _describe_value(buf: Buffer, start: int, stop: int) -> EventValue | None:
    plugins: dict[str, str] = {}
    tag, tensor = _value_fields(buf, start, stop, plugins)
    return None if tensor is None else EventValue(tag, plugins, *tensor)


def _value_fields(
    buf: Buffer, start: int, stop: int, plugins: dict[str, str] | None
) -> tuple[str, tuple[int, int] | None]:
    """The tag of one ``Summary.Value`` and where its tensor lies (None: no tensor).

    The metadata's plugins go into ``plugins`` when given; decoding skips the metadata.
    """
    tag = ""
    tensor: tuple[int, int] | None = None
    for number, wire_type, first, end in iter_fields(buf, start, stop):
        if number == 1:
            _expect(wire_type, LEN, "Summary.Value.tag")
            tag = _utf8(buf, first, end, "Summary.Value.tag")
        elif number == 8:
            _expect(wire_type, LEN, "Summary.Value.tensor")
            tensor = (first, end)  # a singular field seen twice: the last one wins
        elif number == 9 and plugins is not None:
            _expect(wire_type, LEN, "Summary.Value.metadata")
            plugins.update(_plugin_data(buf, first, end))
    return tag, tensor


def _plugin_data(buf: Buffer, start: int, stop: int) -> dict[str, str]:
    """The plugins of the ``SummaryMetadata`` in ``buf[start:stop]``, parsed once per bytes.

    Read-only: the dict is shared by every record with the same metadata.
    """
    if stop - start > _MAX_CACHED_KEY_BYTES:
        unusual: dict[str, str] = {}
        _plugins(buf, start, stop, unusual)
        return unusual
    raw = bytes(buf[start:stop])
    known = _PLUGIN_DATA.get(raw)
    if known is None:
        known = {}
        _plugins(buf, start, stop, known)
        if len(_PLUGIN_DATA) >= _MAX_CACHED_PLUGIN_DATA:
            _PLUGIN_DATA.clear()
        _PLUGIN_DATA[raw] = known
    return known


_PLUGIN_DATA: dict[bytes, dict[str, str]] = {}
"""Decoded ``SummaryMetadata`` bytes. Every tensor of every worker at one step carries the same
mode and mode step, so all but the first of a step's records cost a dict lookup, not a parse."""
_MAX_CACHED_PLUGIN_DATA: Final = 4096


def _plugins(buf: Buffer, start: int, stop: int, plugins: dict[str, str]) -> None:
    """``SummaryMetadata.plugin_data`` (1): repeated in smdebug's copy, singular in TF's."""
    for number, wire_type, first, end in iter_fields(buf, start, stop):
        if number != 1:
            continue
        _expect(wire_type, LEN, "SummaryMetadata.plugin_data")
        name = content = ""
        for field_number, field_type, a, b in iter_fields(buf, first, end):
            if field_number == 1:
                _expect(field_type, LEN, "PluginData.plugin_name")
                name = _utf8(buf, a, b, "PluginData.plugin_name")
            elif field_number == 2:
                _expect(field_type, LEN, "PluginData.content")
                content = _utf8(buf, a, b, "PluginData.content")
        plugins[name] = content


def decode_tensor_at(payload: memoryview[Any] | bytes, start: int, stop: int, tag: str) -> Array:
    """The tensor :func:`describe_event` placed at ``payload[start:stop]`` (named ``tag`` in
    errors), decoded exactly as :func:`decode_event_tensors` would."""
    buf = _as_buffer(payload)
    try:
        return _tensor(buf, start, stop)
    except TensorDecodeError as error:
        raise TensorDecodeError(f"tensor {quoted(tag)}: {error}") from error
    except WireError as error:
        raise WireError(f"tensor {quoted(tag)}: {error}") from error


def tensor_view(payload: bytes, content: tuple[int, tuple[int, ...], int]) -> Array:
    """The tensor whose raw content the compiled scan located (``TensorSpan.content``): the
    read-only zero-copy array :func:`decode_tensor_at` would build, without walking its
    ``TensorProto`` again."""
    dtype, shape, offset = content
    return np.ndarray(shape, CONTENT_DTYPES[dtype], payload, offset)


def decode_tensor_proto(buf: memoryview[Any] | bytes) -> Array:
    """The array a serialized ``TensorProto`` holds, shaped as its ``tensor_shape`` says."""
    view = _as_buffer(buf)
    return _tensor(view, 0, len(view))


def _as_buffer(payload: memoryview[Any] | bytes) -> Buffer:
    """Bytes stay bytes; a memoryview becomes a flat, contiguous view of unsigned bytes."""
    if isinstance(payload, memoryview) and (payload.format != "B" or payload.ndim != 1):
        return payload.cast("B") if payload.c_contiguous else memoryview(payload.tobytes())
    if isinstance(payload, memoryview) and not payload.c_contiguous:
        return memoryview(payload.tobytes())
    return payload


def _expect(wire_type: int, expected: int, what: str) -> None:
    if wire_type != expected:
        raise _wrong_wire_type(wire_type, expected, what)


def _wrong_wire_type(wire_type: int, expected: int, what: str) -> WireError:
    return WireError(
        f"{what} has wire type {wire_type_name(wire_type)}, expected "
        f"{wire_type_name(expected)}: these bytes are not the TensorFlow message they claim to be"
    )


def _summary_tensors(
    buf: Buffer,
    start: int,
    stop: int,
    wanted: Callable[[str], bool] | None,
    found: list[tuple[str, Array]],
) -> None:
    for number, wire_type, first, end in iter_fields(buf, start, stop):
        if number == 1:
            _expect(wire_type, LEN, "Summary.value")
            item = _value_tensor(buf, first, end, wanted)
            if item is not None:
                found.append(item)


def _value_tensor(
    buf: Buffer, start: int, stop: int, wanted: Callable[[str], bool] | None
) -> tuple[str, Array] | None:
    """The ``(tag, array)`` of one ``Summary.Value``, or None if it has no tensor or is unwanted.

    The tag is looked at before the tensor is decoded, wherever it appears in the message.
    """
    tag, tensor = _value_fields(buf, start, stop, None)
    if tensor is None or (wanted is not None and not wanted(tag)):
        return None
    return tag, decode_tensor_at(buf, *tensor, tag)


def _utf8(buf: Buffer, start: int, stop: int, what: str) -> str:
    try:
        return str(buf[start:stop], "utf-8")
    except UnicodeDecodeError as error:
        raise TensorDecodeError(f"{what} is not valid UTF-8 ({error.reason})") from error


_SHAPES: dict[bytes, tuple[int, ...]] = {}
"""Decoded ``TensorShapeProto`` bytes. A tensor has the same shape (and dim names) at every
step, so after the first step a shape costs a copy of a few dozen bytes and a dict lookup."""
_MAX_CACHED_SHAPES: Final = 4096


def _tensor(buf: Buffer, start: int, stop: int) -> Array:
    """Decode the ``TensorProto`` in ``buf[start:stop]``."""
    dtype = DT_INVALID
    shape: tuple[int, ...] = ()
    content: tuple[int, int] | None = None
    typed: dict[int, list[tuple[int, int, int]]] = {}
    # Wire types are checked inline: this runs for every tensor read.
    for fields, (number, wire_type, first, end) in enumerate(iter_fields(buf, start, stop), 1):
        if fields > MAX_TENSOR_FIELDS:
            raise TensorDecodeError(
                f"the TensorProto has more than {MAX_TENSOR_FIELDS:,} fields (in "
                f"{stop - start:,} bytes): writers pack repeated values, so these bytes are "
                "not a tensor a writer made"
            )
        if number == 4:
            if wire_type != 2:
                raise _wrong_wire_type(wire_type, LEN, "TensorProto.tensor_content")
            content = (first, end)  # a singular field seen twice: the last one wins
        elif number == 1:
            if wire_type != 0:
                raise _wrong_wire_type(wire_type, VARINT, "TensorProto.dtype")
            dtype = to_int32(first)
        elif number == 2:
            if wire_type != 2:
                raise _wrong_wire_type(wire_type, LEN, "TensorProto.tensor_shape")
            shape = _SHAPES.get(bytes(buf[first:end])) or _shape(buf, first, end)
        elif number in TYPED_FIELD_NAMES:
            typed.setdefault(number, []).append((wire_type, first, end))
    if content is not None and content[1] > content[0]:
        return _from_content(buf, content[0], content[1], dtype, shape)
    if dtype == DT_INVALID:
        # smdebug writes string tensors with string_val and no dtype at all.
        dtype = DT_STRING
    return _from_typed(buf, typed, dtype, shape)


def _unsupported(dtype: int) -> TensorDecodeError:
    return TensorDecodeError(
        f"unsupported dtype {DTYPE_NAMES.get(dtype, 'unknown')} ({dtype}): this reader decodes "
        "numeric, bool and string tensors"
    )


def _shape(buf: Buffer, start: int, stop: int) -> tuple[int, ...]:
    dims: list[int] = []
    for number, wire_type, first, end in iter_fields(buf, start, stop):
        if number == 2:
            if wire_type != 2:
                raise _wrong_wire_type(wire_type, LEN, "TensorShapeProto.dim")
            if len(dims) == MAX_RANK:
                raise TensorDecodeError(
                    f"the tensor shape has more than {MAX_RANK} dimensions (in {stop - start:,} "
                    f"bytes): an array has at most {MAX_RANK}"
                )
            dims.append(_dim_size(buf, first, end))
        elif number == 3:
            _expect(wire_type, VARINT, "TensorShapeProto.unknown_rank")
            if first:
                raise TensorDecodeError(
                    "the tensor shape has unknown rank: a saved tensor value needs a full shape"
                )
    shape = tuple(dims)
    # The empty shape is falsy: caching it would not save a lookup.
    if shape and stop - start <= _MAX_CACHED_KEY_BYTES:
        if len(_SHAPES) >= _MAX_CACHED_SHAPES:
            _SHAPES.clear()
        _SHAPES[bytes(buf[start:stop])] = shape
    return shape


def _dim_size(buf: Buffer, start: int, stop: int) -> int:
    """The size of one ``TensorShapeProto.Dim``.

    Every writer puts ``size`` first and at most a short ``name`` after it; that layout is read
    directly, anything else by walking the fields.
    """
    if start + 1 < stop and buf[start] == 0x08:
        size = buf[start + 1]
        if size < 0x80:
            pos = start + 2
        else:
            size, pos = read_varint(buf, start + 1, stop)
        if pos == stop or (
            buf[pos] == 0x12
            and pos + 1 < stop
            and buf[pos + 1] < 0x80
            and pos + 2 + buf[pos + 1] == stop
        ):
            return _checked_dim(size)
    size = 0
    for number, wire_type, first, _ in iter_fields(buf, start, stop):
        if number == 1:
            _expect(wire_type, VARINT, "TensorShapeProto.Dim.size")
            size = first
    return _checked_dim(size)


def _checked_dim(size: int) -> int:
    if size >= _MAX_ELEMENTS:
        shown = size - (1 << 64) if size >= 1 << 63 else size
        raise TensorDecodeError(
            f"a dimension has size {shown}: a saved tensor value needs known dimensions below "
            f"{_MAX_ELEMENTS}"
        )
    return size


def _element_count(shape: tuple[int, ...]) -> int:
    """Elements of ``shape``, refusing shapes NumPy could not even represent empty."""
    if math.prod(d for d in shape if d) >= _MAX_ELEMENTS:
        raise TensorDecodeError(
            f"shape {_shape_text(shape)} is too large to be a real tensor ({_MAX_ELEMENTS:,} "
            "elements or more): it is corrupt"
        )
    return math.prod(shape)


def _shape_text(shape: tuple[int, ...]) -> str:
    """A shape for messages: up to 64 dims of up to 15 digits would be a kilobyte."""
    text = str(shape)
    return text if len(text) <= 120 else f"{text[:120]}... ({len(shape)} dimensions)"


def _from_content(buf: Buffer, first: int, end: int, dtype: int, shape: tuple[int, ...]) -> Array:
    """A zero-copy array over raw little-endian content (bool and bfloat16 are converted)."""
    storage = CONTENT_DTYPES.get(dtype)
    if storage is None:
        if dtype == DT_STRING:
            raise TensorDecodeError(
                "DT_STRING tensor has tensor_content, which TensorFlow never writes for strings "
                "(it uses string_val)"
            )
        raise _unsupported(dtype)
    count = _element_count(shape)
    if end - first != count * storage.itemsize:
        raise TensorDecodeError(
            f"expected {count} elements for shape {_shape_text(shape)}, found "
            f"{(end - first) / storage.itemsize:g} ({end - first} bytes of {DTYPE_NAMES[dtype]} "
            f"tensor_content, {storage.itemsize} per element)"
        )
    if dtype == DT_BOOL:
        return np.frombuffer(buf, storage, count, first).astype(np.bool_).reshape(shape)
    if dtype == DT_BFLOAT16:
        return _widen_bfloat16(np.frombuffer(buf, storage, count, first)).reshape(shape)
    return np.ndarray(shape, storage, buf, first)


def _widen_bfloat16(bits: Array) -> Array:
    """bfloat16 bit patterns as float32: the same bits in the upper half, so exact."""
    return (bits.astype(np.uint32) << 16).view(_F32)


def _from_typed(
    buf: Buffer,
    typed: dict[int, list[tuple[int, int, int]]],
    dtype: int,
    shape: tuple[int, ...],
) -> Array:
    """Values from the typed repeated field this dtype uses, broadcast if there is just one."""
    kind = KINDS.get(dtype)
    if kind is None:
        raise _unsupported(dtype)
    count = _element_count(shape)
    field = next((f for f in kind.fields if f in typed), kind.fields[0])
    values = _typed_values(buf, field, typed.get(field, []), dtype)
    found = values.shape[0]
    if found == count:
        return values.reshape(shape)
    if found == 1:
        # TensorFlow stores a tensor whose elements are all equal as that one value. A read-only
        # broadcast view fills the shape without allocating it, but whoever reads it does.
        if count > MAX_BROADCAST_ELEMENTS:
            raise TensorDecodeError(
                f"shape {_shape_text(shape)} claims {count:,} elements filled by one "
                f"{DTYPE_NAMES[dtype]} value in {TYPED_FIELD_NAMES[field]}; a broadcast value "
                f"may fill at most {MAX_BROADCAST_ELEMENTS:,} (a tensor this large is written "
                "as tensor_content)"
            )
        try:
            return np.broadcast_to(values, shape)
        except ValueError as error:
            raise TensorDecodeError(f"cannot fill shape {_shape_text(shape)}: {error}") from error
    raise TensorDecodeError(
        f"expected {count} elements for shape {_shape_text(shape)}, found {found} "
        f"({DTYPE_NAMES[dtype]} in {TYPED_FIELD_NAMES[field]})"
    )


def _typed_values(buf: Buffer, field: int, parts: list[tuple[int, int, int]], dtype: int) -> Array:
    """Concatenate the packed runs and single values of one typed field, in wire order."""
    if field == STRING_VAL:
        return _strings(buf, parts)
    chunks = [_typed_chunk(buf, field, wire_type, first, end) for wire_type, first, end in parts]
    if not chunks:
        raw: Array = np.empty(0, dtype=_storage_dtype(field))
    elif len(chunks) == 1:
        raw = chunks[0]
    else:
        raw = np.concatenate(chunks)
    return _typed_to_result(raw, field, dtype)


def _storage_dtype(field: int) -> np.dtype[Any]:
    if field in FIXED32_FIELDS:
        return _F32
    if field in FIXED64_FIELDS:
        return _F64
    return np.dtype(np.uint64)


def _typed_chunk(buf: Buffer, field: int, wire_type: int, first: int, end: int) -> Array:
    """One packed run (wire type LEN) or one unpacked value of a numeric typed field."""
    if field in FIXED32_FIELDS or field in FIXED64_FIELDS:
        fixed = _F32 if field in FIXED32_FIELDS else _F64
        if wire_type not in (LEN, FIXED32 if fixed is _F32 else FIXED64):
            raise WireError(
                f"TensorProto.{TYPED_FIELD_NAMES[field]} has wire type "
                f"{wire_type_name(wire_type)}: not a TensorProto"
            )
        return decode_packed_fixed(buf, first, end, fixed)
    if wire_type == VARINT:
        return np.array([first], dtype=np.uint64)
    if wire_type != LEN:
        raise WireError(
            f"TensorProto.{TYPED_FIELD_NAMES[field]} has wire type "
            f"{wire_type_name(wire_type)}: not a TensorProto"
        )
    return decode_packed_varints(buf, first, end)


def _typed_to_result(raw: Array, field: int, dtype: int) -> Array:
    """Reinterpret a typed field's wire values as the tensor's dtype.

    Varint fields arrive as raw 64-bit patterns: signed ones are two's complement, and narrower
    integers are truncated exactly as protobuf truncates an int32 field.
    """
    if field in FIXED32_FIELDS or field in FIXED64_FIELDS:
        if dtype in (DT_COMPLEX64, DT_COMPLEX128):
            return _complex(raw, dtype)
        return raw.astype(KINDS[dtype].result, copy=False)
    if dtype == DT_BOOL:
        return raw.astype(np.bool_)
    if dtype == DT_HALF:
        return _low_bits(raw, _U2).view(np.float16)
    if dtype == DT_BFLOAT16:
        return _widen_bfloat16(_low_bits(raw, _U2))
    return _low_bits(raw, KINDS[dtype].result)


def _low_bits(raw: npt.NDArray[np.uint64], target: np.dtype[Any]) -> Array:
    """The low ``target.itemsize`` bytes of each value, reinterpreted as ``target``.

    Masking before the cast keeps the conversion well defined for sign-extended values.
    """
    if target.itemsize == 8:
        return raw.view(target)
    unsigned = np.dtype(f"<u{target.itemsize}")
    mask = np.uint64((1 << (8 * target.itemsize)) - 1)
    return (raw & mask).astype(unsigned).view(target)


def _complex(raw: Array, dtype: int) -> Array:
    if raw.shape[0] % 2:
        raise TensorDecodeError(
            f"{DTYPE_NAMES[dtype]} typed values hold {raw.shape[0]} numbers: complex values "
            "come as (real, imaginary) pairs"
        )
    return np.ascontiguousarray(raw).view(KINDS[dtype].result)


def _strings(buf: Buffer, parts: list[tuple[int, int, int]]) -> Array:
    values: list[str] = []
    for wire_type, first, end in parts:
        if wire_type != LEN:
            raise WireError(
                f"TensorProto.string_val has wire type {wire_type_name(wire_type)}: not a "
                "TensorProto"
            )
        values.append(_utf8(buf, first, end, f"string element {len(values)}"))
    longest = max(map(len, values), default=0)
    if len(values) * longest > MAX_STRING_CELLS:
        raise TensorDecodeError(
            f"{len(values):,} strings of up to {longest:,} characters make an array of "
            f"{len(values) * longest:,} characters, more than {MAX_STRING_CELLS:,}"
        )
    return np.array(values, dtype=str)
