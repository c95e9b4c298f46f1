"""TensorFlow's DataType numbers and how ``TensorProto`` stores each: the tables the tensor
decoder (``tensors.py``) reads by, kept apart from its code.

The numbers are tensorflow/core/framework/types.proto's and tensor.proto's, checked against
smdebug's copy (``tests/trial/test_tensors.py``, ``test_dtype_numbers_match_smdebug``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import numpy as np

# DataType numbers from tensorflow/core/framework/types.proto (checked against smdebug's copy).
DT_INVALID: Final = 0
DT_FLOAT: Final = 1
DT_DOUBLE: Final = 2
DT_INT32: Final = 3
DT_UINT8: Final = 4
DT_INT16: Final = 5
DT_INT8: Final = 6
DT_STRING: Final = 7
DT_COMPLEX64: Final = 8
DT_INT64: Final = 9
DT_BOOL: Final = 10
DT_BFLOAT16: Final = 14
DT_UINT16: Final = 17
DT_COMPLEX128: Final = 18
DT_HALF: Final = 19
DT_UINT32: Final = 22
DT_UINT64: Final = 23

DTYPE_NAMES: Final = {
    0: "DT_INVALID",
    1: "DT_FLOAT",
    2: "DT_DOUBLE",
    3: "DT_INT32",
    4: "DT_UINT8",
    5: "DT_INT16",
    6: "DT_INT8",
    7: "DT_STRING",
    8: "DT_COMPLEX64",
    9: "DT_INT64",
    10: "DT_BOOL",
    11: "DT_QINT8",
    12: "DT_QUINT8",
    13: "DT_QINT32",
    14: "DT_BFLOAT16",
    15: "DT_QINT16",
    16: "DT_QUINT16",
    17: "DT_UINT16",
    18: "DT_COMPLEX128",
    19: "DT_HALF",
    20: "DT_RESOURCE",
    21: "DT_VARIANT",
    22: "DT_UINT32",
    23: "DT_UINT64",
    24: "DT_FLOAT8_E5M2",
    25: "DT_FLOAT8_E4M3FN",
}
"""Names for error messages, including the types this reader does not decode."""

# TensorProto's typed repeated fields (dtype 1, tensor_shape 2 and tensor_content 4 are read
# with literal numbers in the decoder's hot loop).
FLOAT_VAL: Final = 5
DOUBLE_VAL: Final = 6
INT_VAL: Final = 7
STRING_VAL: Final = 8
SCOMPLEX_VAL: Final = 9
INT64_VAL: Final = 10
BOOL_VAL: Final = 11
DCOMPLEX_VAL: Final = 12
HALF_VAL: Final = 13
UINT32_VAL: Final = 16
UINT64_VAL: Final = 17

TYPED_FIELD_NAMES: Final = {
    FLOAT_VAL: "float_val",
    DOUBLE_VAL: "double_val",
    INT_VAL: "int_val",
    STRING_VAL: "string_val",
    SCOMPLEX_VAL: "scomplex_val",
    INT64_VAL: "int64_val",
    BOOL_VAL: "bool_val",
    DCOMPLEX_VAL: "dcomplex_val",
    HALF_VAL: "half_val",
    UINT32_VAL: "uint32_val",
    UINT64_VAL: "uint64_val",
}
FIXED32_FIELDS: Final = frozenset({FLOAT_VAL, SCOMPLEX_VAL})
FIXED64_FIELDS: Final = frozenset({DOUBLE_VAL, DCOMPLEX_VAL})


@dataclass(frozen=True)
class Kind:
    """How one DataType is stored: its raw dtype in ``tensor_content`` and its typed fields."""

    content: np.dtype[Any] | None
    fields: tuple[int, ...]
    result: np.dtype[Any]


def _kind(content: str | None, fields: tuple[int, ...], result: str) -> Kind:
    return Kind(None if content is None else np.dtype(content), fields, np.dtype(result))


KINDS: Final = {
    DT_FLOAT: _kind("<f4", (FLOAT_VAL,), "<f4"),
    DT_DOUBLE: _kind("<f8", (DOUBLE_VAL,), "<f8"),
    DT_INT32: _kind("<i4", (INT_VAL,), "<i4"),
    DT_UINT8: _kind("u1", (INT_VAL,), "u1"),
    DT_INT16: _kind("<i2", (INT_VAL,), "<i2"),
    DT_INT8: _kind("i1", (INT_VAL,), "i1"),
    DT_STRING: _kind(None, (STRING_VAL,), "U"),
    DT_COMPLEX64: _kind("<c8", (SCOMPLEX_VAL,), "<c8"),
    DT_INT64: _kind("<i8", (INT64_VAL,), "<i8"),
    # Bools are one byte each in tensor_content; read as bytes so that any non-zero is True.
    DT_BOOL: _kind("u1", (BOOL_VAL,), "?"),
    # bfloat16 bits are the upper half of a float32: widened, not rounded.
    DT_BFLOAT16: _kind("<u2", (HALF_VAL, INT_VAL), "<f4"),
    DT_UINT16: _kind("<u2", (INT_VAL,), "<u2"),
    DT_COMPLEX128: _kind("<c16", (DCOMPLEX_VAL,), "<c16"),
    # Older TensorFlow writers put half bit patterns in int_val rather than half_val.
    DT_HALF: _kind("<f2", (HALF_VAL, INT_VAL), "<f2"),
    DT_UINT32: _kind("<u4", (UINT32_VAL,), "<u4"),
    DT_UINT64: _kind("<u8", (UINT64_VAL,), "<u8"),
}
CONTENT_DTYPES: Final = {
    dtype: kind.content for dtype, kind in KINDS.items() if kind.content is not None
}
