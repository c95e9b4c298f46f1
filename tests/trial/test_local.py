"""LocalStorage behaves like an S3 listing: full keys, lexical order, StartAfter semantics."""

from __future__ import annotations

from pathlib import Path

import pytest

from evaluator.trial.local import LocalStorage

TREE = (
    "collections/000000000/worker_0_collections.json",
    "index/000000000/000000000000_worker_0.json",
    "index/000000000/000000000000_worker_0.json.tmp",
    "index/000000000/000000000000_worker_1.json",
    "index/000000000/000000000999_worker_0.json",
    "index/000000001/000000001000_worker_0.json",
    "index/000000002/000000002500_worker_0.json",
    "index/000000002/000000002500_worker_10.json",
    "index/000000002/000000002500_worker_2.json",
    "a.b",
    "a/x",
    "a-b/y",
    "training_job_end.ts",
)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    for key in TREE:
        (tmp_path / key).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / key).write_bytes(key.encode())
    return tmp_path


def reference_listing(prefix: str, start_after: str | None) -> list[str]:
    """What S3's ListObjectsV2(Prefix, StartAfter) returns for the same objects."""
    return sorted(
        key for key in TREE if key.startswith(prefix) and (start_after is None or key > start_after)
    )


# name -> (prefix, start_after)
LISTINGS: dict[str, tuple[str, str | None]] = {
    "everything": ("", None),
    "index_from_start": ("index/", None),
    "after_first_key": ("index/", "index/000000000/000000000000_worker_0.json"),
    "after_tmp": ("index/", "index/000000000/000000000000_worker_0.json.tmp"),
    "after_last_in_folder": ("index/", "index/000000000/000000000999_worker_0.json"),
    "after_folder_prefix": ("index/", "index/000000001/"),
    "after_missing_key": ("index/", "index/000000001/000000001500_worker_0.json"),
    "inside_last_folder": ("index/", "index/000000002/000000002500_worker_1"),
    "after_everything": ("index/", "index/999999999/"),
    "partial_name_prefix": ("index/00000000", None),
    "one_folder": ("index/000000002/", None),
    "slash_sorts_after_dot": ("a", None),
    "start_after_shorter_name": ("", "a"),
    "collections": ("collections/000000000/", None),
    "missing_prefix": ("nothing/", None),
}


@pytest.mark.parametrize(("prefix", "start_after"), LISTINGS.values(), ids=LISTINGS.keys())
def test_list_keys_matches_s3_semantics(tree: Path, prefix: str, start_after: str | None) -> None:
    assert LocalStorage(tree).list_keys(prefix, start_after) == reference_listing(
        prefix, start_after
    )


class CountingStorage(LocalStorage):
    """Records every folder scanned, to prove consumed folders are not opened."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.scanned: list[str] = []

    def _entries(self, folder_key: str, name_prefix: str) -> list[tuple[str, bool]]:
        self.scanned.append(folder_key)
        return super()._entries(folder_key, name_prefix)


def test_folders_before_the_cursor_are_not_scanned(tree: Path) -> None:
    storage = CountingStorage(tree)
    storage.list_keys("index/", "index/000000002/000000002500_worker_0.json")
    assert storage.scanned == ["index/", "index/000000002/"]


def test_missing_root(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "not-yet")
    assert not storage.exists()
    assert storage.list_keys("index/", None) == []
    assert not storage.key_exists("training_job_end.ts")


def test_read_bytes_and_key_exists(tree: Path) -> None:
    storage = LocalStorage(tree)
    assert storage.exists()
    assert storage.read_bytes("a/x") == b"a/x"
    assert storage.key_exists("training_job_end.ts")
    assert not storage.key_exists("index/000000000")
    with pytest.raises(FileNotFoundError):
        storage.read_bytes("index/000000000/000000000001_worker_0.json")


@pytest.mark.parametrize("key", ["../outside", "/etc/passwd", "a/../../outside", ""])
def test_keys_cannot_leave_the_trial(tree: Path, key: str) -> None:
    with pytest.raises(ValueError, match="inside the trial"):
        LocalStorage(tree).read_bytes(key)
