"""Which parts of a trial a shard reads: ``PartSelection`` on its own, then the native reader
with a selection on trials written by smdebug's own writer.

A shard must read its own parts and nothing else (no event or index file of another shard's
part), still hand over every step (others' as empty steps, in order), and the shards of one
trial together must read exactly what one reader reads: every part once, every incomplete step
reported by one shard.
"""

from __future__ import annotations

import importlib.util
import re
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devtools.write_trial import end_training, export_collections, write_step
from evaluator.trial import SHARD_BY, PartSelection, ShardBy, StepRef, TrialError
from evaluator.trial.layout import event_key, index_key, parse_index_key, worker_label
from evaluator.trial.local import LocalStorage
from evaluator.trial.native import NativeTrialReader
from evaluator.trial.open import open_trial
from evaluator.trial.records import RECORD_OVERHEAD
from evaluator.trial.selection import block_shard, worker_number
from tests.container.trials import scores_batch, write_trial

Array = npt.NDArray[Any]

STEPS = 6
WORKERS = ("worker_0", "worker_1", "worker_2")
BY: tuple[ShardBy, ...] = ("steps", "workers")
MISSING = (2, "worker_2")
"""The part left out of the incomplete trial: worker_2 never wrote step 2."""

# -- PartSelection on its own ----------------------------------------------------------------

RANGES: dict[str, tuple[PartSelection, dict[int, bool]]] = {
    "no bounds": (PartSelection(), {0: True, 5: True, 10**9: True}),
    "start only": (PartSelection(start_step=3), {2: False, 3: True, 10**9: True}),
    "end only, exclusive": (PartSelection(end_step=4), {0: True, 3: True, 4: False}),
    "both": (PartSelection(start_step=3, end_step=7), {2: False, 3: True, 6: True, 7: False}),
}


@pytest.mark.parametrize("case", RANGES)
def test_a_step_range_selects_start_to_end_exclusive(case: str) -> None:
    selection, expected = RANGES[case]
    assert {step: selection.in_range(step) for step in expected} == expected
    assert {step: selection.part_selected(step, "worker_0") for step in expected} == expected


BLOCKS: dict[str, tuple[int, int, range]] = {
    "every step over 2 shards": (2, 1, range(20_000)),
    "every 10th step over 5 shards": (5, 1, range(0, 200_000, 10)),
    "every 500th step over 5 shards (smdebug's default interval)": (5, 1, range(0, 10**7, 500)),
    "blocks of 4 over 3 shards": (3, 4, range(40_000)),
    "blocks of 100 over 4 shards, every 100th step": (4, 100, range(0, 2 * 10**6, 100)),
}
"""shard_count, block_steps, the steps a hook saved."""


@pytest.mark.parametrize("case", BLOCKS)
def test_steps_spread_evenly_over_the_shards_whatever_the_stride(case: str) -> None:
    """The hash spreads strided steps as evenly as consecutive ones (round robin over step
    numbers would give every 500th step to one shard of 5): each shard within 5% of its share,
    a block's steps together, and every worker's part of a step with the step."""
    count, block, steps = BLOCKS[case]
    shards = [
        PartSelection(shard_index=i, shard_count=count, block_steps=block) for i in range(count)
    ]
    owners = [[i for i, s in enumerate(shards) if s.step_selected(step)] for step in steps]
    assert all(len(owner) == 1 for owner in owners), "every step in exactly one shard"
    sizes = np.bincount([owner[0] for owner in owners], minlength=count)
    assert np.all(np.abs(sizes / len(steps) - 1 / count) < 0.05 / count), sizes
    for step in steps[:50]:
        first = step - step % block
        assert shards[block_shard(first // block, count)].step_selected(step)
        for worker in ("worker_0", "worker_7", "algo-2"):
            assert [s.part_selected(step, worker) for s in shards] == [
                s.step_selected(step) for s in shards
            ]


def test_one_shard_has_every_step() -> None:
    selection = PartSelection(shard_count=1, block_steps=5)
    assert all(selection.step_selected(step) for step in (0, 7, 10**6))


WORKER_NUMBERS: dict[str, tuple[str, int]] = {
    "smdebug rank": ("worker_0", 0),
    "a large rank": ("worker_17", 17),
    "SageMaker host": ("algo-3", 3),
    "TF device label ends in its GPU": ("/job:worker/replica:0/task:1/device:GPU:2", 2),
    "no trailing number": ("chief", zlib.crc32(b"chief")),
    "a number inside only": ("w1x", zlib.crc32(b"w1x")),
    "empty": ("", zlib.crc32(b"")),
}


@pytest.mark.parametrize("case", WORKER_NUMBERS)
def test_worker_number_is_the_trailing_number_else_a_crc(case: str) -> None:
    name, expected = WORKER_NUMBERS[case]
    assert worker_number(name) == expected


def test_by_workers_deals_each_worker_to_one_shard_at_every_step() -> None:
    shards = [PartSelection(shard_index=i, shard_count=3, by="workers") for i in range(3)]
    for step in (0, 1, 99, 100, 12345):
        assert all(s.step_selected(step) for s in shards), "every shard may hold any step"
        for worker, owner in (("worker_0", 0), ("worker_1", 1), ("worker_5", 2), ("algo-4", 1)):
            assert [s.part_selected(step, worker) for s in shards] == [i == owner for i in range(3)]
    crc_owner = zlib.crc32(b"chief") % 3
    assert [s.part_selected(0, "chief") for s in shards] == [i == crc_owner for i in range(3)]


def test_by_workers_only_shard_0_reports_a_step() -> None:
    shards = [PartSelection(shard_index=i, shard_count=3, by="workers") for i in range(3)]
    assert [s.reports_step(7) for s in shards] == [True, False, False]
    ranged = PartSelection(start_step=10, shard_index=0, shard_count=3, by="workers")
    assert not ranged.reports_step(7), "a step outside the range is reported by none"


DESCRIPTIONS: dict[str, tuple[PartSelection, str]] = {
    "everything": (PartSelection(), "every step"),
    "a range": (PartSelection(start_step=5, end_step=9), "steps [5, 9)"),
    "open end": (PartSelection(start_step=5), "steps [5, end)"),
    "by steps": (
        PartSelection(shard_index=1, shard_count=3, block_steps=10),
        "shard 1 of 3 (by blocks of 10 steps)",
    ),
    "by single steps": (
        PartSelection(shard_index=0, shard_count=2),
        "shard 0 of 2 (by steps)",
    ),
    "by workers in a range": (
        PartSelection(end_step=50, shard_index=0, shard_count=2, by="workers"),
        "steps [0, 50), shard 0 of 2 (by workers)",
    ),
}


@pytest.mark.parametrize("case", DESCRIPTIONS)
def test_describe(case: str) -> None:
    selection, expected = DESCRIPTIONS[case]
    assert selection.describe() == expected
    assert selection.everything is (case == "everything")


def test_an_end_step_of_0_is_described_as_it_is() -> None:
    assert PartSelection(end_step=0).describe() == "steps [0, 0)"


INVALID: dict[str, tuple[dict[str, Any], str]] = {
    "no shard": (
        {"shard_count": 0},
        "Expected a shard index in [0, 0) of at least one shard, but got shard 0 of 0",
    ),
    "negative shard count": (
        {"shard_count": -2},
        "Expected a shard index in [0, -2) of at least one shard, but got shard 0 of -2",
    ),
    "index past the count": (
        {"shard_index": 2, "shard_count": 2},
        "Expected a shard index in [0, 2) of at least one shard, but got shard 2 of 2",
    ),
    "negative index": (
        {"shard_index": -1, "shard_count": 2},
        "Expected a shard index in [0, 2) of at least one shard, but got shard -1 of 2",
    ),
    "empty blocks": ({"block_steps": 0}, "Expected block_steps >= 1, but got 0"),
    "an unknown split": ({"by": "rows"}, "Expected shard by steps or workers, but got 'rows'"),
}


@pytest.mark.parametrize("case", INVALID)
def test_invalid_selections_raise_value_error_saying_why(case: str) -> None:
    given_fields, message = INVALID[case]
    with pytest.raises(ValueError, match=re.escape(message)):
        PartSelection(**given_fields)


def _worker_names() -> st.SearchStrategy[str]:
    return st.one_of(
        st.integers(0, 10_000).map(lambda n: f"worker_{n}"),
        st.integers(1, 64).map(lambda n: f"algo-{n}"),
        st.text(st.characters(codec="utf-8"), max_size=12),
    )


def test_the_tests_cover_every_way_of_splitting() -> None:
    assert BY == SHARD_BY


@settings(max_examples=100, deadline=None)
@given(
    steps=st.lists(st.integers(0, 10**7), min_size=1, max_size=20),
    workers=st.lists(_worker_names(), min_size=1, max_size=6),
    layout=st.tuples(st.integers(1, 5), st.sampled_from(BY), st.integers(1, 300)),
    bounds=st.tuples(st.none() | st.integers(0, 10**7), st.none() | st.integers(0, 10**7)),
)
def test_every_part_is_in_exactly_one_shard_of_n(
    steps: list[int],
    workers: list[str],
    layout: tuple[int, ShardBy, int],
    bounds: tuple[int | None, int | None],
) -> None:
    count, by, block_steps = layout
    start, end = bounds
    shards = [PartSelection(start, end, index, count, by, block_steps) for index in range(count)]
    for step in steps:
        wanted = 1 if shards[0].in_range(step) else 0
        assert sum(s.reports_step(step) for s in shards) == wanted, "one shard reports a step"
        for worker in workers:
            owners = [s for s in shards if s.part_selected(step, worker)]
            assert len(owners) == wanted
            assert all(s.step_selected(step) for s in owners)


# -- the native reader with a selection --------------------------------------------------------

Parts = dict[tuple[int, str], dict[str, Array]]
"""(step, worker) -> tensor name -> array, as read."""

_EVENT_KEY = re.compile(r"events/\d+/(?P<step>\d{12})_(?P<worker>.+)\.tfevents")


def part_of(key: str) -> tuple[int, str] | None:
    """The (step, worker) whose event or index file ``key`` is; None for any other key."""
    if parsed := parse_index_key(key):
        return parsed
    if found := _EVENT_KEY.fullmatch(key):
        return int(found["step"]), found["worker"]
    return None


class CountingStorage(LocalStorage):
    """A folder that records every key read, whole or by range (as S3 reads)."""

    def __init__(self, root: Path, *, ranges: bool = False) -> None:
        super().__init__(root)
        self.ranges = ranges
        self.keys_read: list[str] = []

    def read_bytes(self, key: str) -> bytes:
        self.keys_read.append(key)
        return super().read_bytes(key)

    def parts_read(self) -> set[tuple[int, str]]:
        return {part for key in self.keys_read if (part := part_of(key))}


class RangedCountingStorage(CountingStorage):
    """Also reads ranges: with a tiny ``event_head_bytes`` each part's layout comes from its
    index file and its tensors by range, so index files are read too."""

    def read_range(self, key: str, start: int, length: int) -> tuple[bytes, int]:
        self.keys_read.append(key)
        data = LocalStorage.read_bytes(self, key)
        return data[start : start + length], len(data)


STORAGES: dict[str, Callable[[Path], tuple[CountingStorage, dict[str, Any]]]] = {
    "whole event files": lambda root: (CountingStorage(root), {}),
    "by range from index files": lambda root: (
        RangedCountingStorage(root),
        {"event_head_bytes": RECORD_OVERHEAD},
    ),
}


@dataclass(frozen=True)
class ShardCase:
    selection: PartSelection
    selected: frozenset[tuple[int, str]]
    """The (step, worker) parts of the 6-step, 3-worker trial this shard reads."""


def _parts(steps: range | tuple[int, ...], workers: tuple[str, ...] = WORKERS) -> frozenset[Any]:
    return frozenset((step, worker) for step in steps for worker in workers)


SHARDS: dict[str, ShardCase] = {
    "steps: shard 0 of 2, blocks of 2": ShardCase(
        PartSelection(shard_index=0, shard_count=2, block_steps=2),
        _parts(tuple(s for s in range(STEPS) if block_shard(s // 2, 2) == 0)),
    ),
    "steps: shard 2 of 3, single steps": ShardCase(
        PartSelection(shard_index=2, shard_count=3, block_steps=1),
        _parts(tuple(s for s in range(STEPS) if block_shard(s, 3) == 2)),
    ),
    "workers: shard 1 of 2": ShardCase(
        PartSelection(shard_index=1, shard_count=2, by="workers"),
        _parts(range(STEPS), ("worker_1",)),
    ),
    "workers: shard 0 of 2": ShardCase(
        PartSelection(shard_index=0, shard_count=2, by="workers"),
        _parts(range(STEPS), ("worker_0", "worker_2")),
    ),
    "workers: shard 4 of 5 has no worker": ShardCase(
        PartSelection(shard_index=4, shard_count=5, by="workers"), frozenset()
    ),
    "a step range": ShardCase(PartSelection(start_step=2, end_step=5), _parts(range(2, 5))),
    "a range split by workers": ShardCase(
        PartSelection(start_step=3, shard_index=2, shard_count=3, by="workers"),
        _parts(range(3, STEPS), ("worker_2",)),
    ),
}


@pytest.fixture(scope="module")
def trial(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("selection") / "trial"
    write_trial(path, steps=STEPS, workers=len(WORKERS), make_batch=scores_batch([1, 1, 1], 4))
    return path


@pytest.fixture(scope="module")
def incomplete_trial(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same trial without worker_2's part of step 2 (it never wrote it)."""
    path = tmp_path_factory.mktemp("incomplete") / "trial"
    write_trial(path, steps=STEPS, workers=len(WORKERS), make_batch=scores_batch([1, 1, 1], 4))
    (path / index_key(*MISSING)).unlink()
    (path / event_key(*MISSING)).unlink()
    return path


def read_all(reader: NativeTrialReader) -> tuple[list[StepRef], Parts]:
    """Poll an ended trial to its end, as the loop does, reading every tensor of every part."""
    refs: list[StepRef] = []
    parts: Parts = {}
    for _ in range(100):
        for ref in reader.poll():
            refs.append(ref)
            for part in reader.read(ref, lambda _name: True):
                assert part.error is None, part.error
                assert (ref.step, part.worker) not in parts, "a part is read once"
                parts[(ref.step, part.worker)] = part.tensors
        if reader.training_ended():
            return refs, parts
    raise AssertionError("training never ended")


def shards_of(count: int, by: ShardBy) -> list[PartSelection]:
    return [
        PartSelection(shard_index=i, shard_count=count, by=by, block_steps=1) for i in range(count)
    ]


@pytest.mark.parametrize("storage_kind", STORAGES)
@pytest.mark.parametrize("case", SHARDS)
def test_a_shard_reads_only_its_own_parts_files(trial: Path, case: str, storage_kind: str) -> None:
    shard = SHARDS[case]
    storage, options = STORAGES[storage_kind](trial)
    _, parts = read_all(NativeTrialReader(storage, selection=shard.selection, **options))
    assert set(parts) == shard.selected
    assert storage.parts_read() == shard.selected, "no file of another shard's part is read"
    events_read = {key for key in storage.keys_read if key.startswith("events/")}
    assert events_read == {event_key(step, worker) for step, worker in shard.selected}


@pytest.mark.parametrize("case", SHARDS)
def test_other_shards_steps_come_as_empty_steps_in_order(trial: Path, case: str) -> None:
    shard = SHARDS[case]
    refs, _ = read_all(NativeTrialReader(LocalStorage(trial), selection=shard.selection))
    assert [ref.step for ref in refs] == list(range(STEPS)), "every step, once, in order"
    for ref in refs:
        expected = sorted(worker for step, worker in shard.selected if step == ref.step)
        assert [part.worker for part in ref.parts] == expected


def assert_same_parts(found: Parts, expected: Parts) -> None:
    assert found.keys() == expected.keys()
    for key, tensors in expected.items():
        assert found[key].keys() == tensors.keys()
        for name, array in tensors.items():
            assert found[key][name].dtype == array.dtype
            np.testing.assert_array_equal(found[key][name], array)


@pytest.mark.parametrize("by", BY)
@pytest.mark.parametrize("count", [1, 2, 3, 5])
def test_the_shards_together_read_what_one_reader_reads(
    trial: Path, count: int, by: ShardBy
) -> None:
    _, whole = read_all(NativeTrialReader(LocalStorage(trial)))
    assert len(whole) == STEPS * len(WORKERS)
    union: Parts = {}
    for selection in shards_of(count, by):
        _, parts = read_all(NativeTrialReader(LocalStorage(trial), selection=selection))
        assert not union.keys() & parts.keys(), "no part is read by two shards"
        union.update(parts)
    assert_same_parts(union, whole)


@pytest.mark.parametrize("by", BY)
@pytest.mark.parametrize("count", [1, 2, 3, 4])
def test_an_incomplete_step_is_reported_by_exactly_one_shard(
    incomplete_trial: Path, count: int, by: ShardBy
) -> None:
    whole = NativeTrialReader(LocalStorage(incomplete_trial))
    read_all(whole)
    assert whole.problems().incomplete_steps == ((2, ("worker_2",)),)
    reported = []
    missing_parts = 0
    for selection in shards_of(count, by):
        reader = NativeTrialReader(LocalStorage(incomplete_trial), selection=selection)
        refs, _ = read_all(reader)
        assert [ref.step for ref in refs] == list(range(STEPS))
        problems = reader.problems()
        reported += list(problems.incomplete_steps)
        assert problems.incomplete_step_count == len(problems.incomplete_steps)
        missing_parts += problems.skipped_files.get("missing_worker", 0)
    assert reported == [(2, ("worker_2",))]
    assert missing_parts == whole.problems().skipped_files["missing_worker"] == 1


def test_a_late_part_is_reported_only_by_the_shard_that_reads_it(tmp_path: Path) -> None:
    trial = tmp_path / "trial"
    workers = ("worker_0", "worker_1")
    for worker in workers:
        export_collections(str(trial), worker, len(workers))
    labels, scores = scores_batch([1, 1], 4)(np.random.default_rng(0), 0)
    tensors = {"labels": labels, "predictions": scores}

    def write(step: int, worker: str) -> None:
        write_step(str(trial), step, worker, tensors)

    write(0, "worker_0")
    end_training(str(trial))  # step 0 goes without worker_1
    readers = [
        NativeTrialReader(LocalStorage(trial), selection=selection)
        for selection in shards_of(2, "workers")
    ]
    for reader in readers:
        assert [ref.step for ref in reader.poll()] == [0]
    write(0, "worker_1")  # too late
    for reader in readers:
        assert reader.poll() == []
        assert reader.poll() == []
    late = [reader.problems().skipped_files.get("late_part", 0) for reader in readers]
    assert late == [0, 1], "worker_1's shard reads worker_1's parts"
    incomplete = [reader.problems().incomplete_steps for reader in readers]
    assert incomplete == [((0, ("worker_1",)),), ()], "shard 0 reports the step"


def test_open_trial_hands_the_selection_to_the_native_reader(trial: Path) -> None:
    selection = PartSelection(shard_index=1, shard_count=2, block_steps=3)
    reader = open_trial(str(trial), selection=selection)
    assert isinstance(reader, NativeTrialReader)
    refs, parts = read_all(reader)
    ours = [step for step in range(STEPS) if block_shard(step // 3, 2) == 1]
    assert {step for step, _ in parts} == set(ours)
    assert [len(ref.parts) for ref in refs] == [3 if s in ours else 0 for s in range(STEPS)]


@pytest.mark.parametrize("location", ["trial", "s3://bucket/job/debug"])
def test_open_trial_refuses_the_smdebug_reader_for_a_shard(tmp_path: Path, location: str) -> None:
    where = str(tmp_path / location) if "://" not in location else location
    selection = PartSelection(shard_index=1, shard_count=2)
    with pytest.raises(TrialError) as refused:
        open_trial(where, reader="smdebug", selection=selection)
    assert str(refused.value) == (
        "Expected the native reader for a shard (shard 1 of 2 (by steps)), but "
        "got reader 'smdebug', which reads every worker of every step: set reader to native"
    )


def test_open_trial_keeps_the_smdebug_reader_for_a_step_range_alone(tmp_path: Path) -> None:
    reader = open_trial(
        str(tmp_path / "trial"), reader="smdebug", selection=PartSelection(start_step=5)
    )
    assert not isinstance(reader, NativeTrialReader)
    assert reader.location == str(tmp_path / "trial")


def test_worker_labels_are_what_the_selection_sees() -> None:
    """The reader deals parts by their label, as the loop names workers: a TF device file
    worker is dealt by its device string's trailing number."""
    file_worker = "_job-worker_replica-0_task-0_device-GPU-1"
    label = worker_label(file_worker)
    assert label == "/job:worker/replica:0/task:0/device:GPU:1"
    shards = [PartSelection(shard_index=i, shard_count=2, by="workers") for i in range(2)]
    assert [s.part_selected(0, label) for s in shards] == [False, True]


def test_reader_smdebug_without_smdebug_names_the_image_that_has_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The slim image has no smdebug: its reader fails at once, naming the -smdebug tag."""
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "smdebug" else real(name, *a)
    )
    with pytest.raises(TrialError, match=r"classimbalance-rule:\S+-smdebug has smdebug too"):
        open_trial(str(tmp_path), reader="smdebug")
