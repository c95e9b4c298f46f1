"""The native reader, proven on trials written by smdebug's own FileWriter.

Values are checked against the arrays written and against smdebug's ``create_trial`` (every
worker, for the dtypes smdebug decodes correctly). Completeness, following and damage are
driven by named scenarios so each rule of the reader has a case that shows it.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from devtools.write_trial import end_training, export_collections, write_step
from evaluator.trial import StepRef, TrialError, WorkerTensors
from evaluator.trial.contract import StorageUnavailable
from evaluator.trial.layout import event_key, index_key, worker_label
from evaluator.trial.local import LocalStorage
from evaluator.trial.native import NativeTrialReader
from evaluator.trial.open import open_trial
from evaluator.trial.records import HEADER_SIZE, RECORD_OVERHEAD

Array = npt.NDArray[Any]

SMDEBUG_SAFE_DTYPES = frozenset({"float32", "float64", "int32", "int64", "uint8"})
"""Dtypes smdebug 1.0.34 reads back correctly; the others are checked against what was written."""

TF_DEVICES = (
    "/job:worker/replica:0/task:0/device:GPU:0",
    "/job:worker/replica:0/task:0/device:GPU:1",
)


def tf_file_worker(device: str) -> str:
    """How smdebug's TF hook names a device in file names (``serialize_tf_device``)."""
    return device.replace("/", "_").replace(":", "-")


# -- trials written with smdebug's writer ----------------------------------------------------


@dataclass(frozen=True)
class TrialCase:
    """A trial to write: which workers, which steps, and which tensors each part holds."""

    tensors: Mapping[str, tuple[str, tuple[int, ...]]]
    """tensor name -> (dtype, shape)"""
    steps: tuple[int, ...] = (0, 1, 2, 3)
    workers: tuple[str, ...] = ("worker_0",)
    """Worker names as written into file names."""
    modes: tuple[str, ...] = ("TRAIN",)
    """Mode of the i-th written step is ``modes[i % len(modes)]``."""


@dataclass
class WrittenTrial:
    """What a trial holds, as handed to the writer."""

    path: Path
    values: dict[tuple[int, str], dict[str, Array]] = field(default_factory=dict)
    """(step, worker label) -> tensor name -> array"""
    modes: dict[int, tuple[str, int]] = field(default_factory=dict)
    """step -> (mode, mode_step)"""


TRIAL_CASES: dict[str, TrialCase] = {
    "one_worker_labels_predictions": TrialCase(
        {"labels": ("int64", (16,)), "predictions": ("float32", (16, 4))}, steps=(0, 1, 2, 3, 4)
    ),
    "four_workers_train_eval_interleaved": TrialCase(
        {"labels": ("int32", (8,)), "predictions": ("float64", (8, 3))},
        steps=tuple(range(7)),
        workers=("worker_0", "worker_1", "worker_2", "worker_3"),
        modes=("TRAIN", "TRAIN", "EVAL"),
    ),
    "smdebug_safe_dtypes_and_shapes": TrialCase(
        {
            "f32": ("float32", (2, 3)),
            "f64": ("float64", (5,)),
            "i32": ("int32", (2, 2, 2)),
            "i64": ("int64", (1,)),
            "u8": ("uint8", (7,)),
        },
        modes=("TRAIN", "EVAL"),
    ),
    "other_dtypes_four_workers": TrialCase(
        {
            "i8": ("int8", (6,)),
            "i16": ("int16", (2, 3)),
            "u16": ("uint16", (4,)),
            "u32": ("uint32", (3,)),
            "u64": ("uint64", (2, 2)),
            "f16": ("float16", (5,)),
        },
        steps=(0, 1, 2),
        workers=("worker_0", "worker_1", "worker_2", "worker_3"),
    ),
    "steps_across_index_folders": TrialCase(
        {"labels": ("uint8", (4,))},
        steps=(0, 1, 999, 1000, 1001, 2500, 10_000),
        workers=("worker_0", "worker_1"),
    ),
    "sagemaker_host_workers": TrialCase(
        {"labels": ("int64", (3,)), "predictions": ("float32", (3, 2))},
        workers=("algo-1", "algo-2"),
        modes=("TRAIN", "EVAL", "PREDICT"),
    ),
    "tf_device_workers": TrialCase(
        {"labels": ("int64", (3,))},
        workers=tuple(tf_file_worker(device) for device in TF_DEVICES),
    ),
}


def make_array(dtype: str, shape: tuple[int, ...], seed: int) -> Array:
    """Deterministic values spanning the dtype, with its extremes first (-1 for signed ints)."""
    rng = np.random.default_rng(seed)
    kind = np.dtype(dtype)
    if kind.kind == "f":
        values = (rng.standard_normal(shape) * 100).astype(kind)
        extremes: list[float | int] = [-1.5, float(np.finfo(kind).max)]
    else:
        info = np.iinfo(kind)
        values = rng.integers(info.min, info.max, size=shape, dtype=kind, endpoint=True)
        extremes = [info.min, info.max, -1] if info.min < 0 else [info.min, info.max]
    flat = values.reshape(-1)
    count = min(len(extremes), flat.size)
    flat[:count] = np.array(extremes[:count], dtype=kind)
    return values


def write_case(path: Path, case: TrialCase, *, end: bool = True) -> WrittenTrial:
    """Write ``case`` with smdebug's FileWriter, the way a hook with every worker saving does."""
    written = WrittenTrial(path)
    for worker in case.workers:
        export_collections(str(path), worker, len(case.workers), tuple(case.tensors))
    mode_steps: dict[str, int] = {}
    for position, step in enumerate(case.steps):
        mode = case.modes[position % len(case.modes)]
        mode_step = mode_steps.get(mode, 0)
        mode_steps[mode] = mode_step + 1
        written.modes[step] = (mode, mode_step)
        for worker_number, worker in enumerate(case.workers):
            arrays = {
                name: make_array(dtype, shape, seed=step * 1000 + worker_number * 10 + number)
                for number, (name, (dtype, shape)) in enumerate(case.tensors.items())
            }
            write_step(str(path), step, worker, arrays, mode=mode, mode_step=mode_step)
            written.values[(step, worker_label(worker))] = arrays
    if end:
        end_training(str(path))
    return written


def native_reader(path: Path, **options: Any) -> NativeTrialReader:
    return NativeTrialReader(LocalStorage(path), **options)


class RangedLocalStorage(LocalStorage):
    """A folder that also reads ranges, as S3 does: with a small ``event_head_bytes`` the reader
    takes each part's layout from its index file and fetches the wanted records by range, which
    is how it treats event files too large to fetch whole."""

    def read_range(self, key: str, start: int, length: int) -> tuple[bytes, int]:
        data = self.read_bytes(key)
        return data[start : start + length], len(data)


def large_file_reader(path: Path, **options: Any) -> NativeTrialReader:
    """A reader that uses the index files: every event file counts as a large one."""
    return NativeTrialReader(RangedLocalStorage(path), event_head_bytes=RECORD_OVERHEAD, **options)


def given_up(reader: NativeTrialReader) -> dict[str, int]:
    """Files the reader gave up on once listed, by reason: not the parts that arrived late or
    never arrived (``late_part``, ``missing_worker``)."""
    files = dict(reader.problems().skipped_files)
    files.pop("late_part", None)
    files.pop("missing_worker", None)
    return files


def late_parts(reader: NativeTrialReader) -> int:
    return reader.problems().skipped_files.get("late_part", 0)


def read_everything(reader: NativeTrialReader) -> dict[tuple[int, str], WorkerTensors]:
    """Poll an ended trial once and read every tensor of every worker."""
    parts = {}
    for ref in reader.poll():
        for part in reader.read(ref, lambda _name: True):
            assert part.error is None, part.error
            parts[(ref.step, part.worker)] = part
    assert reader.training_ended()
    return parts


def assert_same_array(actual: Array, expected: Array) -> None:
    assert actual.dtype == expected.dtype
    assert actual.shape == expected.shape
    np.testing.assert_array_equal(actual, expected)


@pytest.fixture(autouse=True)
def _no_smdebug_end_delay(monkeypatch: pytest.MonkeyPatch) -> None:
    """smdebug sleeps 1 s after it sees the end marker; tests need not wait."""
    monkeypatch.setenv("SMDEBUG_TRAINING_END_DELAY_REFRESH", "0")


@pytest.mark.parametrize("case", TRIAL_CASES.values(), ids=TRIAL_CASES.keys())
def test_reads_back_what_smdebug_wrote(tmp_path: Path, case: TrialCase) -> None:
    written = write_case(tmp_path / "trial", case)
    parts = read_everything(native_reader(written.path))
    assert parts.keys() == written.values.keys()
    for (step, worker), part in parts.items():
        assert (part.mode, part.mode_step) == written.modes[step]
        assert part.tensors.keys() == written.values[(step, worker)].keys()
        for name, expected in written.values[(step, worker)].items():
            assert_same_array(part.tensors[name], expected)


@pytest.mark.parametrize("case", TRIAL_CASES.values(), ids=TRIAL_CASES.keys())
def test_matches_smdebug_worker_by_worker(tmp_path: Path, case: TrialCase) -> None:
    from smdebug.trials import create_trial

    written = write_case(tmp_path / "trial", case)
    parts = read_everything(native_reader(written.path))
    trial = create_trial(str(written.path))
    compared = set()
    for step in trial.steps():
        mode, mode_step = trial.mode_modestep(step)
        for name in trial.tensor_names(step=step):
            if case.tensors[name][0] not in SMDEBUG_SAFE_DTYPES:
                continue
            tensor = trial.tensor(name)
            for worker in tensor.workers(step):
                part = parts[(step, worker)]
                assert (part.mode, part.mode_step) == (mode.name, mode_step)
                assert_same_array(part.tensors[name], tensor.value(step, worker=worker))
                compared.add((step, worker, name))
    safe = {name for name, (dtype, _shape) in case.tensors.items() if dtype in SMDEBUG_SAFE_DTYPES}
    assert compared == {(step, worker, name) for step, worker in parts for name in safe}


# -- completeness ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Write:
    """Write ``step`` for these worker numbers, in this order."""

    step: int
    workers: tuple[int, ...]


@dataclass(frozen=True)
class End:
    """Write the end marker."""


@dataclass(frozen=True)
class Poll:
    """Poll once; expect these steps, each with this many parts (all expected if omitted)."""

    steps: tuple[int, ...] = ()
    parts: tuple[int, ...] | None = None


@dataclass(frozen=True)
class Scenario:
    actions: tuple[Write | End | Poll, ...]
    expected_workers: int | None = 4
    """``num_workers`` in the collections files; None writes no collections file."""
    late_parts: int = 0
    ended: bool = False


SCENARIOS: dict[str, Scenario] = {
    "waits_for_every_worker": Scenario(
        (
            Write(0, (0, 1)),
            Poll(),
            Write(0, (2,)),
            Poll(),
            Write(0, (3,)),
            Poll((0,)),
            Poll(),
        )
    ),
    # One poll late on purpose: the listing that saw step 1 complete may have missed a file of
    # step 0 that landed while it ran (see completeness.py).
    "later_complete_step_releases_earlier": Scenario(
        (Write(0, (0, 1)), Poll(), Write(1, (0, 1, 2, 3)), Poll(), Poll((0, 1), (2, 4)))
    ),
    "end_marker_releases_partial_steps": Scenario(
        (Write(0, (0,)), Write(1, (0, 1)), Poll(), End(), Poll((0, 1), (1, 2))), ended=True
    ),
    "files_land_out_of_lexical_order": Scenario(
        (
            Write(0, (3,)),
            Write(0, (1,)),
            Poll(),
            Write(1, (3,)),
            Write(0, (2,)),
            Poll(),
            Write(0, (0,)),
            Poll((0,)),
            Write(1, (2, 0, 1)),
            Poll((1,)),
        )
    ),
    "late_part_is_ignored_and_counted": Scenario(
        (Write(0, (0,)), End(), Poll((0,), (1,)), Write(0, (1,)), Poll(), Poll()),
        expected_workers=2,
        late_parts=1,
        ended=True,
    ),
    "single_worker_returns_at_once": Scenario(
        (Write(0, (0,)), Poll((0,)), Write(1, (0,)), Write(2, (0,)), Poll((1, 2))),
        expected_workers=1,
    ),
    "no_collections_file_waits_for_the_end": Scenario(
        (Write(0, (0,)), Write(1, (0,)), Poll(), End(), Poll((0, 1))),
        expected_workers=None,
        ended=True,
    ),
    "many_polls_never_repeat_a_step": Scenario(
        (Write(0, (0, 1)), Poll((0,)), *[Poll()] * 5, End(), *[Poll()] * 3),
        expected_workers=2,
        ended=True,
    ),
    "ended_before_the_first_poll": Scenario(
        (Write(0, (0, 1)), Write(1, (1,)), Write(2, (0, 1)), End(), Poll((0, 1, 2), (2, 1, 2))),
        expected_workers=2,
        ended=True,
    ),
}


def write_part(trial: Path, step: int, worker: str) -> None:
    write_step(str(trial), step, worker, {"labels": np.arange(4, dtype=np.int64) + step})


@pytest.mark.parametrize("scenario", SCENARIOS.values(), ids=SCENARIOS.keys())
def test_completeness(tmp_path: Path, scenario: Scenario) -> None:
    trial = tmp_path / "trial"
    if scenario.expected_workers is not None:
        export_collections(str(trial), "worker_0", scenario.expected_workers)
    reader = native_reader(trial)
    returned: list[int] = []
    for action in scenario.actions:
        if isinstance(action, Write):
            for worker in action.workers:
                write_part(trial, action.step, f"worker_{worker}")
        elif isinstance(action, End):
            end_training(str(trial))
        else:
            refs = reader.poll()
            assert [ref.step for ref in refs] == list(action.steps)
            if action.parts is not None:
                assert [len(ref.parts) for ref in refs] == list(action.parts)
            returned += [ref.step for ref in refs]
    assert len(returned) == len(set(returned))
    assert late_parts(reader) == scenario.late_parts
    assert reader.training_ended() is scenario.ended
    assert given_up(reader) == {}


def test_steps_carry_mode_and_tensor_names(tmp_path: Path) -> None:
    trial = tmp_path / "trial"
    export_collections(str(trial), "worker_0", 2)
    write_step(
        str(trial), 7, "worker_1", {"b": np.ones(2), "a": np.ones(2)}, mode="EVAL", mode_step=3
    )
    write_step(str(trial), 7, "worker_0", {"c": np.ones(2)}, mode="EVAL", mode_step=3)
    (ref,) = native_reader(trial).poll()
    assert [(part.worker, part.mode, part.mode_step) for part in ref.parts] == [
        ("worker_0", "EVAL", 3),
        ("worker_1", "EVAL", 3),
    ]
    assert ref.parts[1].tensor_names == ("b", "a")
    assert ref.tensor_names == ("a", "b", "c")


def test_tmp_files_are_ignored(tmp_path: Path) -> None:
    trial = tmp_path / "trial"
    export_collections(str(trial), "worker_0", 1)
    write_part(trial, 0, "worker_0")
    tmp_index = trial / f"{index_key(1, 'worker_0')}.tmp"
    tmp_index.write_text('{"meta": {"mode": "TR')
    (trial / f"{event_key(1, 'worker_0')}.tmp").parent.mkdir(parents=True)
    (trial / f"{event_key(1, 'worker_0')}.tmp").write_bytes(b"\x00" * 5)
    reader = native_reader(trial)
    assert [ref.step for ref in reader.poll()] == [0]
    assert reader.poll() == []
    tmp_index.unlink()
    write_part(trial, 1, "worker_0")
    assert [ref.step for ref in reader.poll()] == [1]
    assert given_up(reader) == {}
    assert reader.problems().last is None


def test_missing_trial_folder_is_waited_for(tmp_path: Path) -> None:
    trial = tmp_path / "not-yet"
    reader = native_reader(trial)
    assert not reader.exists()
    assert reader.poll() == []
    assert reader.poll() == []
    assert not reader.training_ended()
    export_collections(str(trial), "worker_0", 1)
    write_part(trial, 0, "worker_0")
    assert reader.exists()
    assert [ref.step for ref in reader.poll()] == [0]


def test_malformed_collections_file_is_counted_once(tmp_path: Path) -> None:
    trial = tmp_path / "trial"
    write_part(trial, 0, "worker_0")
    (trial / "collections" / "000000000").mkdir(parents=True)
    (trial / "collections" / "000000000" / "worker_0_collections.json").write_text("{")
    reader = native_reader(trial)
    assert reader.poll() == []
    assert reader.poll() == []
    assert given_up(reader) == {"malformed_collections": 1}
    assert "worker_0_collections.json" in (reader.problems().last or "")
    end_training(str(trial))
    assert [ref.step for ref in reader.poll()] == [0]


# -- malformed index files -------------------------------------------------------------------

GOOD_META = {
    "mode": "TRAIN",
    "mode_step": 0,
    "event_file_name": "events/000000000000/000000000000_worker_0.tfevents",
}

# name -> content of the index file of step 0
MALFORMED_INDEXES: dict[str, bytes] = {
    "empty_file": b"",
    "not_json": b'{"meta": {"mode": "TRA',
    "not_an_object": b"[]",
    "no_meta": json.dumps({"tensor_payload": []}).encode(),
    "unknown_mode": json.dumps({"meta": {**GOOD_META, "mode": "TRAINING"}}).encode(),
    "mode_step_not_int": json.dumps({"meta": {**GOOD_META, "mode_step": "0"}}).encode(),
    "payload_not_a_list": json.dumps({"meta": GOOD_META, "tensor_payload": {}}).encode(),
    "start_idx_missing": json.dumps(
        {"meta": GOOD_META, "tensor_payload": [{"tensorname": "labels", "length": 9}]}
    ).encode(),
    "event_file_outside_trial": json.dumps(
        {
            "meta": {**GOOD_META, "event_file_name": "../../etc/passwd"},
            "tensor_payload": [{"tensorname": "labels", "start_idx": 0, "length": 99}],
        }
    ).encode(),
}


@pytest.mark.parametrize("content", MALFORMED_INDEXES.values(), ids=MALFORMED_INDEXES.keys())
def test_malformed_index_is_retried_then_skipped(tmp_path: Path, content: bytes) -> None:
    trial = tmp_path / "trial"
    export_collections(str(trial), "worker_0", 1)
    write_part(trial, 0, "worker_0")
    (trial / index_key(0, "worker_0")).write_bytes(content)
    write_part(trial, 1, "worker_0")
    reader = large_file_reader(trial, part_retry_polls=2)
    assert reader.poll() == []
    assert reader.poll() == []
    assert given_up(reader) == {}
    assert [ref.step for ref in reader.poll()] == [1]
    assert given_up(reader) == {"malformed_index": 1}
    assert index_key(0, "worker_0") in (reader.problems().last or "")
    assert reader.poll() == []


def test_a_malformed_index_is_not_read_when_the_event_file_says_it_all(tmp_path: Path) -> None:
    """The production path for event files of usual size: the index only says "complete"."""
    trial = tmp_path / "trial"
    export_collections(str(trial), "worker_0", 1)
    write_part(trial, 0, "worker_0")
    (trial / index_key(0, "worker_0")).write_bytes(MALFORMED_INDEXES["not_json"])
    reader = native_reader(trial)
    (ref,) = reader.poll()
    assert reader.read(ref, lambda _name: True)[0].tensors["labels"].tolist() == [0, 1, 2, 3]
    assert given_up(reader) == {}


def test_index_fixed_while_retried_is_used(tmp_path: Path) -> None:
    trial = tmp_path / "trial"
    export_collections(str(trial), "worker_0", 1)
    write_part(trial, 0, "worker_0")
    good = (trial / index_key(0, "worker_0")).read_bytes()
    (trial / index_key(0, "worker_0")).write_bytes(good[: len(good) // 2])
    write_part(trial, 1, "worker_0")
    reader = large_file_reader(trial)
    assert reader.poll() == []
    (trial / index_key(0, "worker_0")).write_bytes(good)
    refs = reader.poll()
    assert [ref.step for ref in refs] == [0, 1]
    assert reader.read(refs[0], lambda _name: True)[0].tensors["labels"].tolist() == [0, 1, 2, 3]
    assert given_up(reader) == {}


# -- damaged event files ---------------------------------------------------------------------


def first_record_start(trial: Path, worker: str) -> int:
    index = json.loads((trial / index_key(0, worker)).read_text())
    return int(index["tensor_payload"][0]["start_idx"])


def delete(path: Path, _start: int) -> None:
    path.unlink()


def truncate(path: Path, _start: int) -> None:
    path.write_bytes(path.read_bytes()[:-10])


def flip_byte(offset_in_record: int) -> Any:
    def damage(path: Path, start: int) -> None:
        data = bytearray(path.read_bytes())
        data[start + offset_in_record] ^= 0xFF
        path.write_bytes(bytes(data))

    return damage


def flip_footer(path: Path, start: int) -> None:
    data = bytearray(path.read_bytes())
    payload_len = int.from_bytes(data[start : start + 8], "little")
    data[start + HEADER_SIZE + payload_len] ^= 0xFF
    path.write_bytes(bytes(data))


@dataclass(frozen=True)
class Damage:
    apply: Any
    """(event file path, start of the first record) -> None"""
    reason: str
    """The worker's error reason when its file is damaged after its step was listed."""
    skip_reason: str = "malformed_event_file"
    """The reason the part is given up on when its file is damaged before it is loaded."""
    verify_payload_crc: bool = False


DAMAGE: dict[str, Damage] = {
    "missing_event_file": Damage(delete, "missing_event_file", "missing_event_file"),
    "truncated": Damage(truncate, "truncated", "truncated"),
    "length_crc": Damage(flip_byte(8), "length_crc", "length_crc"),
    "payload_crc": Damage(flip_footer, "payload_crc", "payload_crc", verify_payload_crc=True),
    "not_protobuf": Damage(flip_byte(HEADER_SIZE), "decode_error", "decode_error"),
}


def damaged_trial(tmp_path: Path) -> Path:
    trial = tmp_path / "trial"
    export_collections(str(trial), "worker_0", 2)
    for worker in ("worker_0", "worker_1"):
        write_step(str(trial), 0, worker, {"labels": np.arange(3), "predictions": np.ones((3, 2))})
    return trial


@pytest.mark.parametrize("damage", DAMAGE.values(), ids=DAMAGE.keys())
def test_damaged_event_file_gives_a_worker_error(tmp_path: Path, damage: Damage) -> None:
    """Damaged between poll and read, with its bytes not held (over ``held_bytes_limit``)."""
    trial = damaged_trial(tmp_path)
    reader = native_reader(trial, verify_payload_crc=damage.verify_payload_crc, held_bytes_limit=0)
    (ref,) = reader.poll()
    event_file = trial / event_key(0, "worker_1")
    damage.apply(event_file, first_record_start(trial, "worker_1"))
    good, bad = reader.read(ref, lambda _name: True)
    assert good.error is None
    assert set(good.tensors) == {"labels", "predictions"}
    assert (bad.worker, bad.error_reason, bad.tensors) == ("worker_1", damage.reason, {})
    assert event_key(0, "worker_1") in (bad.error or "")


@pytest.mark.parametrize("damage", DAMAGE.values(), ids=DAMAGE.keys())
def test_damaged_event_file_is_retried_then_left_out(tmp_path: Path, damage: Damage) -> None:
    """Damaged before its step is listed: the part is tried again, then given up on."""
    trial = damaged_trial(tmp_path)
    damage.apply(trial / event_key(0, "worker_1"), first_record_start(trial, "worker_1"))
    reader = native_reader(trial, verify_payload_crc=damage.verify_payload_crc, part_retry_polls=1)
    assert reader.poll() == []
    assert given_up(reader) == {}
    (ref,) = reader.poll()
    assert [part.worker for part in ref.parts] == ["worker_0"]
    assert set(reader.read(ref, lambda _name: True)[0].tensors) == {"labels", "predictions"}
    assert given_up(reader) == {damage.skip_reason: 1}
    assert event_key(0, "worker_1") in reader.problems().examples[damage.skip_reason]


def test_payload_crc_check_accepts_smdebugs_constant_footer(tmp_path: Path) -> None:
    written = write_case(tmp_path / "trial", TRIAL_CASES["one_worker_labels_predictions"])
    parts = read_everything(native_reader(written.path, verify_payload_crc=True))
    assert len(parts) == len(written.values)


# -- reading ---------------------------------------------------------------------------------


def test_read_only_wanted_tensors(tmp_path: Path) -> None:
    written = write_case(tmp_path / "trial", TRIAL_CASES["one_worker_labels_predictions"])
    reader = native_reader(written.path)
    ref = reader.poll()[0]
    (part,) = reader.read(ref, lambda name: name == "labels")
    assert list(part.tensors) == ["labels"]
    (nothing,) = reader.read(ref, lambda _name: False)
    assert (nothing.tensors, nothing.error) == ({}, None)


def test_step_read_twice_or_after_eviction_is_read_again(tmp_path: Path) -> None:
    case = TRIAL_CASES["four_workers_train_eval_interleaved"]
    written = write_case(tmp_path / "trial", case)
    reader = native_reader(written.path, unread_step_limit=2)
    refs = reader.poll()
    assert reader.unread_steps == 2
    for ref in [refs[0], refs[-1], refs[-1]]:
        for part in reader.read(ref, lambda _name: True):
            expected = written.values[(ref.step, part.worker)]
            assert_same_array(part.tensors["labels"], expected["labels"])
    # Only step 5 is still unread, with every byte of its four event files.
    step_5 = sum((written.path / event_key(5, worker)).stat().st_size for worker in case.workers)
    assert (reader.unread_steps, reader.held_bytes) == (1, step_5)


def test_event_file_deleted_before_a_late_read(tmp_path: Path) -> None:
    written = write_case(tmp_path / "trial", TRIAL_CASES["one_worker_labels_predictions"])
    reader = native_reader(written.path, unread_step_limit=1)
    refs = reader.poll()
    (written.path / event_key(0, "worker_0")).unlink()
    (part,) = reader.read(refs[0], lambda _name: True)
    assert part.error_reason == "missing_event_file"


# -- following a live trial, and what it costs -----------------------------------------------


def test_following_returns_each_step_once_in_order(tmp_path: Path) -> None:
    trial = tmp_path / "trial"
    workers = [f"worker_{i}" for i in range(4)]
    for worker in workers:
        export_collections(str(trial), worker, len(workers))
    reader = native_reader(trial)
    returned: list[StepRef] = []
    rng = np.random.default_rng(0)
    for step in range(40):
        for worker in rng.permutation(workers):
            write_part(trial, step, str(worker))
            returned += reader.poll()
    end_training(str(trial))
    returned += reader.poll()
    assert [ref.step for ref in returned] == list(range(40))
    assert all(len(ref.parts) == 4 for ref in returned)
    assert reader.training_ended()


class CountingStorage(LocalStorage):
    """Records the folders each poll scans and the keys each listing returns."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.scanned: list[str] = []
        self.listed: list[list[str]] = []

    def list_keys(
        self, prefix: str, start_after: str | None = None, max_keys: int | None = None
    ) -> list[str]:
        keys = super().list_keys(prefix, start_after, max_keys)
        self.listed.append(keys)
        return keys

    def _entries(self, folder_key: str, name_prefix: str) -> Sequence[str]:
        self.scanned.append(folder_key)
        return super()._entries(folder_key, name_prefix)


def test_polls_only_touch_the_current_index_folder(tmp_path: Path) -> None:
    trial = tmp_path / "trial"
    export_collections(str(trial), "worker_0", 1)
    for step in (0, 1, 500, 999, 1000, 1999, 2000, 2999, 3000, 3001):
        write_part(trial, step, "worker_0")
    storage = CountingStorage(trial)
    reader = NativeTrialReader(storage)
    poll_to_the_end(reader, ended=False)
    storage.scanned.clear()
    storage.listed.clear()
    write_part(trial, 3002, "worker_0")
    assert [ref.step for ref in reader.poll()] == [3002]
    assert storage.scanned == ["index/", "index/000000003/"]
    assert storage.listed == [[index_key(3002, "worker_0")]]


def test_following_costs_and_memory_stay_flat(tmp_path: Path) -> None:
    trial = tmp_path / "trial"
    for worker in ("worker_0", "worker_1"):
        export_collections(str(trial), worker, 2)
    storage = CountingStorage(trial)
    reader = NativeTrialReader(storage)
    for step in range(950, 1100):
        storage.scanned.clear()
        storage.listed.clear()
        write_part(trial, step, "worker_1")
        write_part(trial, step, "worker_0")
        (ref,) = reader.poll()
        reader.read(ref, lambda _name: True)
        index_scans = [folder for folder in storage.scanned if folder.startswith("index/")]
        assert len(index_scans) <= 3  # index/, the cursor's folder and the new step's folder
        assert [len(keys) for keys in storage.listed[-1:]] == [2]
        assert (reader.pending_steps, reader.unread_steps) == (0, 0)


POLL_BOUNDS = {
    "one_step_per_poll": 1,
    "two_steps_per_poll": 2,
    "a_prime_number": 5,
    "more_than_the_trial": 256,
}


def poll_to_the_end(
    reader: NativeTrialReader, *, ended: bool = True
) -> list[tuple[StepRef, list[WorkerTensors]]]:
    """Poll and read until training ended (or, with ``ended`` False, until no backlog is left),
    as the loop does: again at once while ``backlog``."""
    seen = []
    for _ in range(1000):
        refs = reader.poll()
        seen += [(ref, reader.read(ref, lambda _name: True)) for ref in refs]
        if reader.training_ended() or (not ended and not reader.backlog):
            return seen
        assert reader.backlog or not refs, "a poll with steps left must say so"
    raise AssertionError("training never ended")


@pytest.mark.parametrize("bound", POLL_BOUNDS.values(), ids=POLL_BOUNDS.keys())
@pytest.mark.parametrize(
    "case",
    [TRIAL_CASES["four_workers_train_eval_interleaved"], TRIAL_CASES["steps_across_index_folders"]],
    ids=["four_workers", "across_index_folders"],
)
def test_bounded_polls_hand_over_the_same_steps(
    tmp_path: Path, case: TrialCase, bound: int
) -> None:
    written = write_case(tmp_path / "trial", case)
    whole = poll_to_the_end(native_reader(written.path))
    reader = native_reader(written.path, steps_per_poll=bound)
    sliced: list[tuple[StepRef, list[WorkerTensors]]] = []
    while not reader.training_ended():
        refs = reader.poll()
        assert len(refs) <= bound
        assert reader.pending_steps <= bound  # nothing is loaded ahead of its slice
        sliced += [(ref, reader.read(ref, lambda _name: True)) for ref in refs]
    assert [ref for ref, _ in sliced] == [ref for ref, _ in whole]
    for (_, parts), (_, expected) in zip(sliced, whole, strict=True):
        assert [(p.worker, p.error) for p in parts] == [(p.worker, None) for p in expected]
        for part, other in zip(parts, expected, strict=True):
            for name, array in other.tensors.items():
                assert_same_array(part.tensors[name], array)
    assert not reader.backlog


def test_a_step_with_more_workers_than_expected_is_never_split(tmp_path: Path) -> None:
    """The collections file says one worker, three wrote: a one-step listing bound would cut
    a step in three; the reader lists further instead, so the end marker cannot release a step
    without parts that are already there."""
    trial = tmp_path / "trial"
    export_collections(str(trial), "worker_0", 1)
    for step in range(4):
        for worker in ("worker_0", "worker_1", "worker_2"):
            write_part(trial, step, worker)
    end_training(str(trial))
    reader = native_reader(trial, steps_per_poll=1)
    refs = []
    while not reader.training_ended():
        refs += reader.poll()
    assert [ref.step for ref in refs] == [0, 1, 2, 3]
    assert all(len(ref.parts) == 3 for ref in refs)
    assert late_parts(reader) == 0


def test_a_finished_trial_is_not_ended_until_its_backlog_is_handed_over(tmp_path: Path) -> None:
    written = write_case(tmp_path / "trial", TRIAL_CASES["one_worker_labels_predictions"])
    reader = native_reader(written.path, steps_per_poll=2)
    assert [ref.step for ref in reader.poll()] == [0, 1]
    assert reader.backlog
    assert not reader.training_ended()
    assert [ref.step for ref in reader.poll()] == [2, 3]
    assert [ref.step for ref in reader.poll()] == [4]
    assert not reader.backlog
    assert reader.training_ended()


def test_incomplete_step_window_releases_the_oldest(tmp_path: Path) -> None:
    trial = tmp_path / "trial"
    export_collections(str(trial), "worker_0", 2)
    for step in range(6):
        write_part(trial, step, "worker_0")
    reader = native_reader(trial, incomplete_step_window=3)
    assert [ref.step for ref in reader.poll()] == [0, 1, 2]
    problems = reader.problems()
    assert (problems.incomplete_step_count, reader.pending_steps) == (3, 3)
    assert problems.skipped_files == {"missing_worker": 3}
    assert problems.incomplete_steps == tuple(
        (step, ("1 worker not seen at any step",)) for step in (0, 1, 2)
    )
    assert "worker" in (problems.last or "")


# -- the factory -----------------------------------------------------------------------------


def test_open_trial_gives_the_native_reader_by_default(tmp_path: Path) -> None:
    reader = open_trial(str(tmp_path / "trial"))
    assert isinstance(reader, NativeTrialReader)
    assert reader.location == str(tmp_path / "trial")
    assert not reader.exists()


# name -> (location, reader, message fragment)
OPEN_ERRORS: dict[str, tuple[str, str, str]] = {
    "s3_without_bucket": ("s3:///prefix", "native", "bucket"),
    "unknown_reader": ("/tmp/trial", "tensorflow", "reader"),
}


@pytest.mark.parametrize(
    ("location", "reader", "fragment"), OPEN_ERRORS.values(), ids=OPEN_ERRORS.keys()
)
def test_open_trial_refuses(location: str, reader: str, fragment: str) -> None:
    with pytest.raises(TrialError, match=fragment):
        open_trial(location, reader=reader)


def test_copied_trial_reads_the_same(tmp_path: Path) -> None:
    """Offsets are relative to the trial, so a moved or synced copy reads identically."""
    written = write_case(tmp_path / "trial", TRIAL_CASES["sagemaker_host_workers"])
    copy = tmp_path / "copy"
    shutil.copytree(written.path, copy)
    original = read_everything(native_reader(written.path))
    copied = read_everything(native_reader(copy))
    assert original.keys() == copied.keys()
    for key, part in original.items():
        for name, array in part.tensors.items():
            assert_same_array(copied[key].tensors[name], array)


def test_a_missing_event_file_is_waited_for_by_time_not_only_by_polls(tmp_path: Path) -> None:
    """Polls come back to back while a backlog is read: the retry bound is also a time."""
    written = write_case(tmp_path / "trial", TRIAL_CASES["one_worker_labels_predictions"])
    event = written.path / event_key(1, "worker_0")
    hidden = event.with_suffix(".hidden")
    event.rename(hidden)
    now = [0.0]
    reader = native_reader(written.path, retry_seconds=2.0, clock=lambda: now[0])
    assert [ref.step for ref in reader.poll()] == [0]
    for _ in range(10):  # far more polls than part_retry_polls, all within the window
        assert reader.poll() == []
    now[0] = 1.5
    hidden.rename(event)
    assert [ref.step for ref in reader.poll()] == [1, 2, 3, 4]
    assert given_up(reader) == {}


def test_a_missing_event_file_is_given_up_after_the_window(tmp_path: Path) -> None:
    written = write_case(tmp_path / "trial", TRIAL_CASES["one_worker_labels_predictions"])
    (written.path / event_key(1, "worker_0")).unlink()
    now = [0.0]
    reader = native_reader(written.path, retry_seconds=2.0, clock=lambda: now[0])
    steps = [ref.step for ref in reader.poll()]
    for moment in (0.5, 1.0, 1.9, 2.1):
        now[0] = moment
        steps += [ref.step for ref in reader.poll()]
    assert steps == [0, 2, 3, 4]
    assert given_up(reader) == {"missing_event_file": 1}
    assert "000000000001_worker_0.tfevents" in reader.problems().examples["missing_event_file"]


def test_reductions_are_listed_as_smdebug_lists_them(tmp_path: Path) -> None:
    """Records of ``smdebug/reductions/<reduction>/<tensor>`` are reductions of the tensor,
    not tensors: the step lists the raw tensors, as smdebug's reader does."""
    from smdebug.trials import create_trial

    trial = tmp_path / "trial"
    export_collections(str(trial), "worker_0", 1, ("outputs", "targets"))
    tensors = {
        "outputs": np.ones((4, 2), dtype=np.float32),
        "smdebug/reductions/max/outputs": np.float32(1.0),
        "targets": np.arange(4, dtype=np.int64),
        "smdebug/reductions/abs_l2_norm/targets": np.float32(3.7),
    }
    write_step(str(trial), 0, "worker_0", tensors)
    end_training(str(trial))
    (ref,) = native_reader(trial).poll()
    assert ref.tensor_names == ("outputs", "targets")
    assert set(create_trial(str(trial)).tensor_names(step=0)) == set(ref.tensor_names)
    (part,) = native_reader(trial).read(ref, lambda _name: True)
    assert set(part.tensors) == {"outputs", "targets"}


def test_a_part_with_reductions_only_lists_no_tensor(tmp_path: Path) -> None:
    trial = tmp_path / "trial"
    export_collections(str(trial), "worker_0", 1)
    write_step(str(trial), 0, "worker_0", {"smdebug/reductions/max/labels": np.int64(3)})
    end_training(str(trial))
    reader = native_reader(trial)
    (ref,) = reader.poll()
    assert ref.parts[0].tensor_names == ()
    assert given_up(reader) == {}


# -- entries that cannot be followed, storage outages --------------------------------------------


def test_entries_that_loop_are_skipped_once_and_the_rest_is_read(tmp_path: Path) -> None:
    trial = tmp_path / "trial"
    for worker in ("worker_0", "worker_1"):
        export_collections(str(trial), worker, 2)
        for step in range(3):
            write_part(trial, step, worker)
    (trial / index_key(1, "worker_1")).unlink()
    (trial / index_key(1, "worker_1")).symlink_to(index_key(1, "worker_1").rsplit("/", 1)[1])
    (trial / "index/loop").symlink_to("loop")
    (trial / "collections/000000000/loop").symlink_to("loop")
    end_training(str(trial))
    reader = native_reader(trial)
    refs = reader.poll()
    assert [(ref.step, [p.worker for p in ref.parts]) for ref in refs] == [
        (0, ["worker_0", "worker_1"]),
        (1, ["worker_0"]),
        (2, ["worker_0", "worker_1"]),
    ]
    assert reader.poll() == []
    assert reader.problems().skipped_files == {"unreadable_entry": 3, "missing_worker": 1}
    example = reader.problems().examples["unreadable_entry"]
    assert "Too many levels of symbolic links" in example
    assert "fix or remove it" in example


def test_an_index_folder_that_loops_is_a_trial_error(tmp_path: Path) -> None:
    trial = tmp_path / "trial"
    export_collections(str(trial), "worker_0", 1)
    (trial / "index").symlink_to("index")
    with pytest.raises(TrialError, match="index/ of index files"):
        native_reader(trial).poll()


class _Unavailable(LocalStorage):
    def exists(self) -> bool:
        raise StorageUnavailable("S3 list failed with SlowDown after retries")


def test_exists_rides_out_an_outage_and_says_so(tmp_path: Path) -> None:
    reader = NativeTrialReader(_Unavailable(tmp_path))
    assert reader.exists() is False
    assert reader.poll() == []
    problems = reader.problems()
    assert problems.notices == {"storage_unavailable": 2}
    assert "SlowDown" in problems.examples["storage_unavailable"]
