"""The floor: the same bytes read and counted with numpy, with no decoding framework.

Per (step, worker): read the index file (JSON) for the records' offsets, read the event file,
walk the few protobuf fields down to each tensor's ``tensor_content`` (Event.summary.value
.tensor, about ten varints), ``np.frombuffer`` it, then one ``bincount`` of (label, argmax
prediction differs) pairs. No CRC checks, no validation, no error handling: a lower bound
for any reader of this format in Python, not a reader.

    python -m bench.floor --trial bench/out/trials/s1000-w1-c10-b256
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import emit, peak_rss_mb, per_step_stats
from bench.trials import load_meta, trial_classes

RECORD_HEADER = 12  # u64 length + u32 masked CRC of the length
RECORD_FOOTER = 4  # u32 masked CRC of the data
DTYPES = {1: "<f4", 2: "<f8", 3: "<i4", 4: "u1", 5: "<i2", 6: "i1", 9: "<i8", 10: "?", 19: "<f2"}
"""TensorFlow DataType numbers -> numpy dtypes (the ones smdebug writes for these tensors)."""


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    byte = buf[pos]
    if byte < 0x80:
        return byte, pos + 1
    result, shift = byte & 0x7F, 7
    pos += 1
    while True:
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7


def _seek(buf: bytes, pos: int, end: int, wanted: int) -> tuple[int, int, int]:
    """Find field ``wanted`` in ``buf[pos:end]``: (start, end) of its bytes (length-delimited)
    or (value, value) of a varint, and the position after it."""
    while pos < end:
        key, pos = _varint(buf, pos)
        wire = key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
            if key >> 3 == wanted:
                return value, value, pos
        elif wire == 2:
            length, pos = _varint(buf, pos)
            if key >> 3 == wanted:
                return pos, pos + length, pos + length
            pos += length
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        else:
            raise ValueError(f"wire type {wire}")
    raise ValueError(f"no field {wanted}")


def decode_record(buf: bytes, start: int, length: int) -> np.ndarray:
    """The tensor in one record: Event(5: summary) -> Summary(1: value) -> Value(8: tensor)
    -> TensorProto(1: dtype, 2: shape, 4: tensor_content), fields in the order written."""
    end = start + length - RECORD_FOOTER
    begin, end, _ = _seek(buf, start + RECORD_HEADER, end, 5)
    begin, end, _ = _seek(buf, begin, end, 1)
    begin, end, _ = _seek(buf, begin, end, 8)
    dtype, _, pos = _seek(buf, begin, end, 1)
    shape_start, shape_end, pos = _seek(buf, pos, end, 2)
    dims = []
    while shape_start < shape_end:
        dim_start, dim_end, shape_start = _seek(buf, shape_start, shape_end, 2)
        dims.append(_seek(buf, dim_start, dim_end, 1)[0])
    content_start, content_end, _ = _seek(buf, pos, end, 4)
    kind = np.dtype(DTYPES[dtype])
    array = np.frombuffer(
        buf, dtype=kind, count=(content_end - content_start) // kind.itemsize, offset=content_start
    )
    return array.reshape(dims)


def index_files(trial: Path) -> list[Path]:
    """Every index file, in step then worker order (folder and file names sort that way)."""
    found = []
    index = trial / "index"
    for folder in sorted(os.scandir(index), key=lambda entry: entry.name):
        found += sorted(Path(folder.path).glob("*.json"))
    return found


def run(trial: Path, classes: int) -> dict[str, Any]:
    counts = np.zeros(2 * classes, dtype=np.int64)  # [class c right, class c wrong, ...]
    per_step: list[float] = []
    started = time.perf_counter()
    files = index_files(trial)
    step_started = started
    current_step = None
    for path in files:
        step = int(path.name[:12])
        if step != current_step:
            now = time.perf_counter()
            if current_step is not None:
                per_step.append(now - step_started)
                step_started = now
            current_step = step
        index = json.loads(path.read_bytes())
        with open(trial / index["meta"]["event_file_name"], "rb") as handle:
            buf = handle.read()
        tensors = {
            entry["tensorname"]: decode_record(buf, entry["start_idx"], entry["length"])
            for entry in index["tensor_payload"]
        }
        labels = tensors["labels"].reshape(-1)
        predicted = tensors["predictions"].argmax(axis=-1)
        counts += np.bincount(2 * labels + (predicted != labels), minlength=2 * classes)
    total = time.perf_counter() - started
    if current_step is not None:
        per_step.append(started + total - step_started)
    steps = len(per_step)
    wrong = counts[1::2]
    samples = counts[0::2] + wrong
    return {
        "system": "floor",
        "mode": "replay",
        "trial": str(trial),
        "steps": steps,
        "busy_s": round(total, 4),
        "us_per_step": round(total / steps * 1e6, 1) if steps else None,
        "steps_per_s": round(steps / total, 1) if total > 0 else None,
        "samples": samples.tolist(),
        "mispredicted": wrong.tolist(),
        "rss_mb": peak_rss_mb(),
        **per_step_stats(per_step),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--trial", required=True, type=Path)
    parser.add_argument("--classes", type=int, default=None)
    args = parser.parse_args(argv)
    classes = trial_classes(load_meta(args.trial), args.classes)
    emit(run(args.trial, classes))


if __name__ == "__main__":
    main()
