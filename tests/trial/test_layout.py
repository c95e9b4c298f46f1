"""Trial paths, checked against the functions smdebug itself builds and parses them with."""

from __future__ import annotations

import pytest

from evaluator.trial.layout import (
    END_MARKER,
    event_key,
    index_folder,
    index_folder_of,
    index_key,
    is_safe_key,
    parse_collections_key,
    parse_index_key,
    worker_label,
)

smdebug_locations = pytest.importorskip("smdebug.core.locations")
smdebug_utils = pytest.importorskip("smdebug.core.utils")
smdebug_access = pytest.importorskip("smdebug.core.access_layer.utils")

TF_DEVICE = "/job:worker/replica:0/task:1/device:GPU:0"

# name -> (global step, worker name as written into file names)
KEY_CASES: dict[str, tuple[int, str]] = {
    "first_step": (0, "worker_0"),
    "last_of_first_folder": (999, "worker_3"),
    "first_of_second_folder": (1000, "worker_0"),
    "large_step": (123_456_789, "worker_12"),
    "sagemaker_host": (42, "algo-1"),
    "dotted_host": (7, "ip-10-0-0-1.ec2.internal"),
    "tf_device_sanitised": (5, smdebug_utils.serialize_tf_device(TF_DEVICE)),
    "underscores_everywhere": (3, "my_worker_name_2"),
}

# name -> key that is not an index file (the reader must ignore it)
NOT_INDEX_KEYS: dict[str, str] = {
    "tmp_being_written": "index/000000000/000000000005_worker_0.json.tmp",
    "wrong_folder_for_step": "index/000000001/000000000005_worker_0.json",
    "no_worker": "index/000000000/000000000005.json",
    "empty_worker": "index/000000000/000000000005_.json",
    "short_step": "index/000000000/5_worker_0.json",
    "short_folder": "index/0/000000000005_worker_0.json",
    "not_json": "index/000000000/000000000005_worker_0.csv",
    "nested": "index/000000000/x/000000000005_worker_0.json",
    "outside_index": "events/000000000005/000000000005_worker_0.json",
    "letters_in_step": "index/000000000/00000000000x_worker_0.json",
    "end_marker": END_MARKER,
}


@pytest.mark.parametrize(("step", "worker"), KEY_CASES.values(), ids=KEY_CASES.keys())
def test_index_key_is_what_smdebug_writes(step: int, worker: str) -> None:
    utils = smdebug_locations.IndexFileLocationUtils
    assert index_key(step, worker) == utils.get_index_key_for_step("", step, worker)
    assert index_folder(step) == f"index/{utils.get_index_prefix_for_step(step)}/"


@pytest.mark.parametrize(("step", "worker"), KEY_CASES.values(), ids=KEY_CASES.keys())
def test_event_key_is_what_smdebug_writes(step: int, worker: str) -> None:
    location = smdebug_locations.TensorFileLocation(step_num=step, worker_name=worker)
    assert event_key(step, worker) == location.get_file_location()


@pytest.mark.parametrize(("step", "worker"), KEY_CASES.values(), ids=KEY_CASES.keys())
def test_index_key_parses_back(step: int, worker: str) -> None:
    key = index_key(step, worker)
    assert parse_index_key(key) == (step, worker)
    assert index_folder_of(key) == index_folder(step)


@pytest.mark.parametrize(("step", "worker"), KEY_CASES.values(), ids=KEY_CASES.keys())
def test_worker_label_is_the_name_smdebug_reports(step: int, worker: str) -> None:
    path = f"/trial/{index_key(step, worker)}"
    assert worker_label(worker) == smdebug_utils.parse_worker_name_from_file(path)


def test_tf_device_label_round_trips() -> None:
    assert worker_label(smdebug_utils.serialize_tf_device(TF_DEVICE)) == TF_DEVICE


@pytest.mark.parametrize("key", NOT_INDEX_KEYS.values(), ids=NOT_INDEX_KEYS.keys())
def test_other_keys_are_not_index_keys(key: str) -> None:
    assert parse_index_key(key) is None


def test_index_keys_sort_by_step_then_worker() -> None:
    pairs = [(step, worker) for step in (0, 9, 10, 999, 1000, 10_000) for worker in ("a", "b_1")]
    keys = [index_key(step, worker) for step, worker in pairs]
    assert sorted(keys) == keys


def test_end_marker_is_smdebugs() -> None:
    assert smdebug_access.END_OF_JOB_FILENAME == END_MARKER


# name -> (key, worker or None)
COLLECTIONS_KEYS: dict[str, tuple[str, str | None]] = {
    "worker": ("collections/000000000/worker_0_collections.json", "worker_0"),
    "sagemaker": ("collections/000000000/algo-2_collections.json", "algo-2"),
    "tmp": ("collections/000000000/worker_0_collections.json.tmp", None),
    "other_folder": ("collections/000000001/worker_0_collections.json", None),
    "other_file": ("collections/000000000/readme.txt", None),
}


@pytest.mark.parametrize(("key", "worker"), COLLECTIONS_KEYS.values(), ids=COLLECTIONS_KEYS.keys())
def test_collections_key(key: str, worker: str | None) -> None:
    assert parse_collections_key(key) == worker


# name -> (key, stays inside the trial)
SAFE_KEYS: dict[str, tuple[str, bool]] = {
    "event_file": ("events/000000000001/000000000001_worker_0.tfevents", True),
    "parent": ("../secrets", False),
    "parent_inside": ("events/../../secrets", False),
    "absolute": ("/etc/passwd", False),
    "empty": ("", False),
    "double_slash": ("events//x", False),
    "dot": ("events/./x", False),
    "backslash": ("events\\..\\x", False),
}


@pytest.mark.parametrize(("key", "safe"), SAFE_KEYS.values(), ids=SAFE_KEYS.keys())
def test_is_safe_key(key: str, safe: bool) -> None:
    assert is_safe_key(key) is safe


@pytest.mark.parametrize("key", ["events/x", "index", "index/", "indexes/000/x"])
def test_index_folder_of_outside_index(key: str) -> None:
    assert index_folder_of(key) is None
