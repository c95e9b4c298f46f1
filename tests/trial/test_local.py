"""LocalStorage behaves like an S3 listing: full keys, lexical order, StartAfter semantics.

Every listing is checked against what S3 would return for the files on disk at that moment,
in both ways the storage can list: scanning each folder, and folders kept up to date by
inotify events (also with the rescan safety net on each call, which must never find a miss).
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from evaluator.linux.inotify import IN_Q_OVERFLOW, Event, Inotify
from evaluator.trial import local
from evaluator.trial.local import INOTIFY_FILESYSTEMS, LocalStorage, filesystem_type

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

# name -> LocalStorage keyword arguments
MODES: dict[str, dict[str, Any]] = {
    "scanning": {"incremental": False},
    "incremental": {"incremental": True},
    "incremental_rescanning_each_call": {"incremental": True, "rescan_seconds": 0},
}


def write_tree(root: Path, keys: tuple[str, ...] = TREE) -> None:
    for key in keys:
        (root / key).parent.mkdir(parents=True, exist_ok=True)
        (root / key).write_bytes(key.encode())


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    write_tree(tmp_path)
    return tmp_path


@pytest.fixture
def open_storage() -> Iterator[Callable[..., LocalStorage]]:
    """Makes storages and closes them all afterwards (no inotify descriptor outlives a test)."""
    opened: list[LocalStorage] = []

    def make(root: Path, **options: Any) -> LocalStorage:
        opened.append(LocalStorage(root, **options))
        return opened[-1]

    yield make
    for storage in opened:
        storage.close()


@pytest.fixture(params=MODES.values(), ids=MODES.keys())
def storage_of(
    request: pytest.FixtureRequest, open_storage: Callable[..., LocalStorage]
) -> Callable[[Path], LocalStorage]:
    return lambda root: open_storage(root, **request.param)


def reference_listing(
    prefix: str, start_after: str | None, keys: Any = TREE, max_keys: int | None = None
) -> list[str]:
    """What S3's ListObjectsV2(Prefix, StartAfter, MaxKeys) returns for the same objects."""
    listed = sorted(
        key for key in keys if key.startswith(prefix) and (start_after is None or key > start_after)
    )
    return listed if max_keys is None else listed[:max_keys]


def keys_on_disk(root: Path) -> list[str]:
    """Every file under ``root`` as a key: the objects S3 would hold (folders are no objects)."""
    found = []
    for folder, _folders, files in os.walk(root, followlinks=True):
        relative = os.path.relpath(folder, root)
        found += [name if relative == "." else f"{relative}/{name}" for name in files]
    return sorted(found)


def cursors(keys: list[str]) -> list[str | None]:
    """Start-after values around every key: the key, just before and after it, its folders."""
    found: set[str] = {""}
    for key in keys:
        found |= {key, key[:-1], f"{key}/", f"{key}\0", f"{key}~"}
        parts = key.split("/")
        for depth in range(1, len(parts)):
            folder = "/".join(parts[:depth])
            found |= {folder, f"{folder}/", f"{folder}.", f"{folder}0"}
    return [None, *sorted(found)]


def assert_lists_like_s3(
    storage: LocalStorage,
    root: Path,
    prefixes: tuple[str, ...],
    max_keys_values: tuple[int | None, ...] = (None, 1, 3),
) -> None:
    on_disk = keys_on_disk(root)
    for prefix in prefixes:
        for start_after in cursors(on_disk):
            for max_keys in max_keys_values:
                listed = storage.list_keys(prefix, start_after, max_keys)
                expected = reference_listing(prefix, start_after, on_disk, max_keys)
                assert listed == expected, (prefix, start_after, max_keys)


# name -> (prefix, start_after)
LISTINGS: dict[str, tuple[str, str | None]] = {
    "everything": ("", None),
    "index_from_start": ("index/", None),
    "after_first_key": ("index/", "index/000000000/000000000000_worker_0.json"),
    "after_tmp": ("index/", "index/000000000/000000000000_worker_0.json.tmp"),
    "after_last_in_folder": ("index/", "index/000000000/000000000999_worker_0.json"),
    "after_folder_prefix": ("index/", "index/000000001/"),
    "after_folder_name_without_slash": ("index/", "index/000000001"),
    "after_missing_key": ("index/", "index/000000001/000000001500_worker_0.json"),
    "inside_last_folder": ("index/", "index/000000002/000000002500_worker_1"),
    "after_everything": ("index/", "index/999999999/"),
    "before_the_prefix": ("index/", "a"),
    "after_the_prefix": ("index/", "z"),
    "partial_name_prefix": ("index/00000000", None),
    "partial_name_prefix_after_cursor": ("index/00000000", "index/000000001/x"),
    "one_folder": ("index/000000002/", None),
    "slash_sorts_after_dot": ("a", None),
    "start_after_shorter_name": ("", "a"),
    "start_after_dot_name": ("", "a.b"),
    "start_after_inside_slash_folder": ("", "a/"),
    "collections": ("collections/000000000/", None),
    "missing_prefix": ("nothing/", None),
}


@pytest.mark.parametrize(("prefix", "start_after"), LISTINGS.values(), ids=LISTINGS.keys())
def test_list_keys_matches_s3_semantics(
    tree: Path, storage_of: Callable[[Path], LocalStorage], prefix: str, start_after: str | None
) -> None:
    storage = storage_of(tree)
    for _again in range(2):  # the second time from the kept folders
        assert storage.list_keys(prefix, start_after) == reference_listing(prefix, start_after)


# name -> max_keys
MAX_KEYS: dict[str, int | None] = {
    "none": None,
    "zero": 0,
    "one": 1,
    "two": 2,
    "all": 13,
    "more": 99,
}


@pytest.mark.parametrize("max_keys", MAX_KEYS.values(), ids=MAX_KEYS.keys())
def test_max_keys_gives_the_first_keys(
    tree: Path, storage_of: Callable[[Path], LocalStorage], max_keys: int | None
) -> None:
    expected = reference_listing("", None, max_keys=max_keys)
    assert storage_of(tree).list_keys("", None, max_keys) == expected


def test_max_keys_stops_the_walk(tree: Path, open_storage: Callable[..., LocalStorage]) -> None:
    storage = open_storage(tree, incremental=False)
    opened = record_folders_opened(storage)
    assert storage.list_keys("index/", None, max_keys=1) == [TREE[1]]
    assert opened == ["index/", "index/000000000/"]


def test_negative_max_keys_is_refused(tree: Path) -> None:
    with pytest.raises(ValueError, match="max_keys"):
        LocalStorage(tree, incremental=False).list_keys("", None, -1)


def test_every_cursor_position(tree: Path, storage_of: Callable[[Path], LocalStorage]) -> None:
    assert_lists_like_s3(storage_of(tree), tree, ("", "index/", "index/000000002/", "a"))


# name -> a change to the TREE between two listings
CHANGES: dict[str, Callable[[Path], None]] = {
    "file_added": lambda root: (root / "index/000000002/000000002501_worker_0.json").touch(),
    "file_removed": lambda root: (root / "index/000000002/000000002500_worker_2.json").unlink(),
    "tmp_renamed_into_place": lambda root: os.replace(
        root / "index/000000000/000000000000_worker_0.json.tmp",
        root / "index/000000000/000000000001_worker_0.json",
    ),
    "file_renamed_over_another": lambda root: os.replace(
        root / "index/000000000/000000000000_worker_0.json.tmp",
        root / "index/000000000/000000000000_worker_1.json",
    ),
    "folder_added": lambda root: write_tree(root, ("index/000000003/000000003000_worker_0.json",)),
    "empty_folder_added": lambda root: (root / "index/000000003").mkdir(),
    "folder_removed": lambda root: shutil.rmtree(root / "index/000000001"),
    "folder_removed_and_recreated": lambda root: (
        shutil.rmtree(root / "index/000000002"),
        write_tree(root, ("index/000000002/000000002999_worker_0.json",)),
    ),
    "folder_renamed": lambda root: os.rename(root / "index/000000001", root / "index/000000004"),
    "parent_renamed_and_recreated": lambda root: (
        os.rename(root / "index", root / "old-index"),
        write_tree(root, ("index/000000002/000000002000_worker_0.json",)),
    ),
    "file_replaced_by_folder": lambda root: (
        (root / "a.b").unlink(),
        write_tree(root, ("a.b/z",)),
    ),
    "folder_replaced_by_file": lambda root: (
        shutil.rmtree(root / "a"),
        (root / "a").write_text("now a file"),
    ),
    "name_around_the_slash": lambda root: write_tree(root, ("a0", "a/.x", "a-", "index/0")),
    "root_removed": shutil.rmtree,
}


@pytest.mark.parametrize("change", CHANGES.values(), ids=CHANGES.keys())
def test_listings_follow_changes_between_calls(
    tmp_path: Path, storage_of: Callable[[Path], LocalStorage], change: Callable[[Path], None]
) -> None:
    root = tmp_path / "trial"
    write_tree(root)
    storage = storage_of(root)
    prefixes = ("", "index/", "a")
    assert_lists_like_s3(storage, root, prefixes, (None, 2))  # keeps the folders it opens
    change(root)
    assert_lists_like_s3(storage, root, prefixes, (None, 2))
    assert storage.listing_repairs == 0


def record_folders_opened(storage: LocalStorage) -> list[str]:
    """Record every folder a listing opens, from a scan or a kept listing."""
    opened: list[str] = []
    entries = storage._entries

    def recording(folder_key: str, name_prefix: str) -> Any:
        opened.append(folder_key)
        return entries(folder_key, name_prefix)

    storage._entries = recording  # type: ignore[method-assign]
    return opened


def record_folder_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record every time a folder's entries are read from the file system."""
    reads: list[str] = []
    scan, read_folder = LocalStorage._scan, local._read_folder

    def scanning(storage: LocalStorage, folder_key: str, name_prefix: str) -> list[str]:
        reads.append(folder_key)
        return scan(storage, folder_key, name_prefix)

    def reading(path: str) -> Any:
        reads.append(path)
        return read_folder(path)

    monkeypatch.setattr(LocalStorage, "_scan", scanning)
    monkeypatch.setattr(local, "_read_folder", reading)
    return reads


def test_folders_before_the_cursor_are_not_opened(
    tree: Path, storage_of: Callable[[Path], LocalStorage]
) -> None:
    storage = storage_of(tree)
    opened = record_folders_opened(storage)
    storage.list_keys("index/", "index/000000002/000000002500_worker_0.json")
    assert opened == ["index/", "index/000000002/"]


def test_kept_folders_are_not_read_again(
    tree: Path, open_storage: Callable[..., LocalStorage], monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = open_storage(tree, incremental=True)
    cursor = "index/000000002/000000002500_worker_0.json"
    storage.list_keys("index/", cursor)
    reads = record_folder_reads(monkeypatch)
    (tree / "index/000000002/000000002600_worker_0.json").touch()
    (tree / "index/000000002/000000002500_worker_9.json").touch()
    assert storage.list_keys("index/", cursor) == [
        "index/000000002/000000002500_worker_10.json",
        "index/000000002/000000002500_worker_2.json",
        "index/000000002/000000002500_worker_9.json",
        "index/000000002/000000002600_worker_0.json",
    ]
    assert reads == []


def test_files_that_landed_before_a_listing_are_always_in_it(
    tmp_path: Path, storage_of: Callable[[Path], LocalStorage]
) -> None:
    """The reader's completeness logic: a listing never misses a file renamed into place
    before it started, while a writer keeps landing files concurrently."""
    folder = tmp_path / "index" / "000000000"
    folder.mkdir(parents=True)
    storage = storage_of(tmp_path)
    landed = 0

    def write() -> None:
        nonlocal landed
        for step in range(300):
            temporary = folder / f"{step:012d}_worker_0.json.tmp"
            temporary.touch()
            os.replace(temporary, folder / f"{step:012d}_worker_0.json")
            landed = step + 1

    writer = threading.Thread(target=write)
    writer.start()
    try:
        while writer.is_alive():
            landed_before = {f"index/000000000/{step:012d}_worker_0.json" for step in range(landed)}
            assert landed_before - set(storage.list_keys("index/")) == set()
    finally:
        writer.join()
    assert storage.list_keys("index/") == keys_on_disk(tmp_path)
    assert storage.listing_repairs == 0


# -- folders kept up to date by events ----------------------------------------------------------


def test_an_overflow_forgets_every_kept_folder(
    tree: Path, open_storage: Callable[..., LocalStorage], monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = open_storage(tree, incremental=True)
    storage.list_keys("")
    (tree / "index/000000002/000000002600_worker_0.json").touch()
    (tree / "a.b").unlink()
    assert storage._inotify is not None
    storage._inotify.read_events()  # those events are lost, as in a full queue
    reads = record_folder_reads(monkeypatch)
    storage._apply([Event(wd=-1, mask=IN_Q_OVERFLOW, cookie=0, name="")])
    assert storage.list_keys("") == keys_on_disk(tree)
    assert len(reads) == 9  # the root and its 8 folders, read afresh
    assert (storage.incremental, storage.listing_repairs) == (True, 0)


def test_missed_events_are_repaired_by_the_rescan_and_scanning_takes_over(
    tree: Path, open_storage: Callable[..., LocalStorage]
) -> None:
    storage = open_storage(tree, incremental=True, rescan_seconds=0)
    storage.list_keys("index/")
    (tree / "index/000000002/000000002600_worker_0.json").touch()
    assert storage._inotify is not None
    storage._inotify.read_events()  # the event never arrives
    assert storage.list_keys("index/") == reference_listing("index/", None, keys_on_disk(tree))
    assert (storage.incremental, storage.listing_repairs) == (False, 1)
    (tree / "index/000000002/000000002700_worker_0.json").touch()
    assert storage.list_keys("index/") == reference_listing("index/", None, keys_on_disk(tree))


def test_without_the_rescan_a_missed_event_stays_missed(
    tree: Path, open_storage: Callable[..., LocalStorage]
) -> None:
    """Shows what the safety net is for (and that listings really come from the events)."""
    storage = open_storage(tree, incremental=True)
    storage.list_keys("index/")
    (tree / "index/000000002/000000002600_worker_0.json").touch()
    assert storage._inotify is not None
    storage._inotify.read_events()
    assert "index/000000002/000000002600_worker_0.json" not in storage.list_keys("index/")


def test_folders_with_symbolic_links_are_scanned(
    tmp_path: Path, storage_of: Callable[[Path], LocalStorage]
) -> None:
    """A link to a folder lists as that folder; what it points at can change without an event
    in the folder holding the link, so such folders are never kept."""
    root = tmp_path / "trial"
    write_tree(root, ("index/000000000/000000000000_worker_0.json", "elsewhere/x"))
    storage = storage_of(root)
    assert_lists_like_s3(storage, root, ("", "index/"))
    (root / "index/000000001").symlink_to(root / "index/000000000")
    assert_lists_like_s3(storage, root, ("", "index/"))
    (root / "index/000000001").unlink()
    (root / "index/000000001").symlink_to(root / "elsewhere")
    assert_lists_like_s3(storage, root, ("", "index/"))
    (root / "elsewhere/y").touch()
    assert_lists_like_s3(storage, root, ("", "index/"))
    assert storage.listing_repairs == 0


class KeepingTwo(LocalStorage):
    FOLDERS_KEPT = 2


def test_only_the_most_recently_listed_folders_are_kept(tree: Path) -> None:
    storage = KeepingTwo(tree, incremental=True)
    try:
        for folder in ("index/000000000/", "index/000000001/", "index/000000002/"):
            storage.list_keys(folder)
        assert list(storage._folders) == ["index/000000001/", "index/000000002/"]
        assert len(storage._by_wd) == 2
        (tree / "index/000000000/000000000500_worker_0.json").touch()
        assert_lists_like_s3(storage, tree, ("", "index/"))
        assert storage.listing_repairs == 0
    finally:
        storage.close()


def test_a_watch_that_cannot_be_added_leaves_the_folder_scanned(
    tree: Path, open_storage: Callable[..., LocalStorage], monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = open_storage(tree, incremental=True)
    assert storage._inotify is not None

    def no_more_watches(path: str, mask: int) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)

    monkeypatch.setattr(storage._inotify, "add_watch", no_more_watches)
    assert_lists_like_s3(storage, tree, ("", "index/"))
    assert storage._folders == {}


def test_close_releases_inotify_and_listings_go_on_scanning(
    tree: Path, open_storage: Callable[..., LocalStorage]
) -> None:
    storage = open_storage(tree, incremental=True)
    storage.list_keys("")
    inotify = storage._inotify
    assert inotify is not None
    storage.close()
    storage.close()
    assert inotify.closed
    assert not storage.incremental
    (tree / "index/000000002/000000002600_worker_0.json").touch()
    assert storage.list_keys("") == keys_on_disk(tree)


def test_a_dropped_storage_releases_its_descriptor(tree: Path) -> None:
    storage = LocalStorage(tree, incremental=True)
    inotify = storage._inotify
    assert inotify is not None
    del storage
    assert inotify.closed


# -- when to use events ---------------------------------------------------------------------

MOUNTINFO = r"""
22 27 0:21 / /proc rw,relatime - proc proc rw
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard
30 27 0:27 / /dev/shm rw,relatime - tmpfs tmpfs rw,size=24683656k
40 27 0:40 /export /mnt/nfs rw,relatime shared:5 - nfs4 server:/export rw,vers=4.2
41 40 0:41 / /mnt/nfs/local rw,relatime - xfs /dev/vdb rw
42 27 0:42 / /mnt/nfs2 rw,relatime - ext4 /dev/vdc rw
43 27 0:43 / /mnt/with\040space rw,relatime - btrfs /dev/vdd rw
44 27 0:44 / /opt/ml rw,relatime master:1 shared:2 - fuse.s3fs s3fs rw,user_id=0
45 27 0:45 / /opt/ml rw,relatime - overlay overlay rw,lowerdir=/a,upperdir=/b
46 27 0:46 / /data rw,relatime - virtiofs data rw
47 27 0:47 / /shared rw - 9p shared rw,trans=virtio
48 27 0:48 / /cifs rw - cifs //host/share rw
garbage line
49 27 0:49 / /broken rw -
"""

# name -> (path, file system type)
FILESYSTEMS: dict[str, tuple[str, str | None]] = {
    "root": ("/work/trial", "ext4"),
    "mount_point_itself": ("/dev/shm", "tmpfs"),
    "under_a_mount": ("/dev/shm/trial/index", "tmpfs"),
    "network": ("/mnt/nfs/trial", "nfs4"),
    "local_mount_inside_network": ("/mnt/nfs/local/trial", "xfs"),
    "name_sharing_a_prefix": ("/mnt/nfs2/trial", "ext4"),
    "escaped_space": ("/mnt/with space/trial", "btrfs"),
    "stacked_mounts_take_the_last": ("/opt/ml/output/tensors", "overlay"),
    "virtiofs": ("/data/trial", "virtiofs"),
    "9p": ("/shared/trial", "9p"),
    "cifs": ("/cifs/trial", "cifs"),
    "malformed_entry_ignored": ("/broken/trial", "ext4"),
}


@pytest.mark.parametrize(("path", "fstype"), FILESYSTEMS.values(), ids=FILESYSTEMS.keys())
def test_filesystem_type_from_mountinfo(path: str, fstype: str | None) -> None:
    assert filesystem_type(MOUNTINFO, path) == fstype


def test_no_mount_covers_a_relative_path() -> None:
    assert filesystem_type(MOUNTINFO, "relative/trial") is None


# name -> (file system type, whether events are used)
AUTOMATIC: dict[str, tuple[str | None, bool]] = {
    "ext4": ("ext4", True),
    "tmpfs": ("tmpfs", True),
    "overlay": ("overlay", True),
    "nfs": ("nfs4", False),
    "fuse": ("fuse.sshfs", False),
    "unknown": (None, False),
}


@pytest.mark.parametrize(("fstype", "uses_events"), AUTOMATIC.values(), ids=AUTOMATIC.keys())
def test_automatic_mode_uses_events_only_on_local_file_systems(
    tree: Path,
    open_storage: Callable[..., LocalStorage],
    monkeypatch: pytest.MonkeyPatch,
    fstype: str | None,
    uses_events: bool,
) -> None:
    monkeypatch.setattr(local, "_filesystem_type_of", lambda _root: fstype)
    storage = open_storage(tree)
    assert storage.list_keys("") == sorted(TREE)
    assert storage.incremental is uses_events


def test_automatic_mode_on_this_machine(
    tree: Path, open_storage: Callable[..., LocalStorage]
) -> None:
    storage = open_storage(tree)
    storage.list_keys("")
    assert storage.incremental is (local._filesystem_type_of(tree) in INOTIFY_FILESYSTEMS)


def test_automatic_mode_decides_once_the_root_exists(
    tmp_path: Path, open_storage: Callable[..., LocalStorage], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(local, "_filesystem_type_of", lambda _root: "ext4")
    storage = open_storage(tmp_path / "trial")
    assert storage.list_keys("index/") == []
    assert not storage.incremental
    write_tree(tmp_path / "trial")
    assert storage.list_keys("index/") == reference_listing("index/", None)
    assert storage.incremental


class Unavailable:
    def __init__(self) -> None:
        raise OSError(errno.EMFILE, "too many inotify instances")


def test_without_inotify_listings_scan(
    tree: Path, open_storage: Callable[..., LocalStorage], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(local, "_filesystem_type_of", lambda _root: "ext4")
    monkeypatch.setattr(local, "Inotify", Unavailable)
    storage = open_storage(tree)
    assert storage.list_keys("") == sorted(TREE)
    assert not storage.incremental
    with pytest.raises(OSError, match="inotify"):
        LocalStorage(tree, incremental=True)


def test_incremental_false_never_uses_inotify(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local, "Inotify", Unavailable)
    storage = LocalStorage(tree, incremental=False)
    assert_lists_like_s3(storage, tree, ("", "index/"))
    assert not storage.incremental


# -- the property: whatever happens on disk, a listing equals a fresh scan -------------------

NAMES = ("a", "a-b", "a.b", "a0", "b.json", "b.json.tmp")
"""Names around the ``/`` in sort order: ``-`` and ``.`` sort before it, ``0`` after."""
paths = st.lists(st.sampled_from(NAMES), min_size=1, max_size=3).map("/".join)
cursor_values = st.none() | paths | paths.map(lambda path: f"{path}/") | st.just("")
operations = st.one_of(
    st.tuples(st.just("write"), paths),
    st.tuples(st.just("land"), paths),
    st.tuples(st.just("mkdir"), paths),
    st.tuples(st.just("rename"), paths, paths),
    st.tuples(st.just("remove"), paths),
    st.tuples(
        st.just("list"),
        st.sampled_from(["", "a", "a/", "a.b/", "a/a", "b"]),
        cursor_values,
        st.none() | st.integers(0, 4),
    ),
)


def run(root: Path, operation: tuple[Any, ...]) -> None:
    """One change on disk; those the file system refuses (a file as a parent, a folder
    into itself ...) change nothing, as they would for a training job."""
    kind, path = operation[0], root / operation[1]
    try:
        if kind == "write":
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("x")
        elif kind == "land":  # as smdebug does
            path.parent.mkdir(parents=True, exist_ok=True)
            temporary = path.with_name(f"{path.name}.tmp")
            temporary.write_text("x")
            os.replace(temporary, path)
        elif kind == "mkdir":
            path.mkdir(parents=True, exist_ok=True)
        elif kind == "rename":
            target = root / operation[2]
            target.parent.mkdir(parents=True, exist_ok=True)
            os.rename(path, target)
        elif path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    except OSError:
        pass


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    steps=st.lists(operations, max_size=30),
    kind=st.sampled_from([LocalStorage, KeepingTwo]),
    rescan_seconds=st.sampled_from([0.0, 3600.0]),
)
def test_incremental_listings_equal_a_fresh_scan(
    steps: list[tuple[Any, ...]], kind: type[LocalStorage], rescan_seconds: float
) -> None:
    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory)
        storage = kind(root, incremental=True, rescan_seconds=rescan_seconds)
        try:
            for operation in steps:
                if operation[0] == "list":
                    _kind, prefix, start_after, max_keys = operation
                    expected = reference_listing(prefix, start_after, keys_on_disk(root), max_keys)
                    assert storage.list_keys(prefix, start_after, max_keys) == expected
                else:
                    run(root, operation)
            assert_lists_like_s3(storage, root, ("", "a"))
            assert (storage.incremental, storage.listing_repairs) == (True, 0)
        finally:
            storage.close()


def test_inotify_is_available_here() -> None:
    """The incremental tests above need it; the container image runs on Linux."""
    Inotify().close()


# -- reading objects -------------------------------------------------------------------------

OBJECT_SIZES = {"empty": 0, "one_byte": 1, "an_event_file": 12_508, "past_a_64k_read": 65_537}


@pytest.mark.parametrize("size", OBJECT_SIZES.values(), ids=OBJECT_SIZES.keys())
def test_read_bytes_returns_the_whole_object(tmp_path: Path, size: int) -> None:
    content = os.urandom(size)
    (tmp_path / "events").mkdir()
    (tmp_path / "events" / "file").write_bytes(content)
    assert LocalStorage(tmp_path, incremental=False).read_bytes("events/file") == content


def test_read_bytes_of_a_file_that_grew_after_fstat_reads_to_its_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "file").write_bytes(b"x" * 10)
    real_fstat = os.fstat

    def fstat_then_grow(descriptor: int) -> os.stat_result:
        result = real_fstat(descriptor)
        with open(tmp_path / "file", "ab") as handle:
            handle.write(b"y" * 100_000)
        return result

    monkeypatch.setattr(local.os, "fstat", fstat_then_grow)
    data = LocalStorage(tmp_path, incremental=False).read_bytes("file")
    assert data == b"x" * 10 + b"y" * 100_000


MISSING_OBJECTS = {"no_such_file": ("nothing", FileNotFoundError), "a_folder": ("events", OSError)}


@pytest.mark.parametrize("case", MISSING_OBJECTS.values(), ids=MISSING_OBJECTS.keys())
def test_read_bytes_of_what_is_not_a_file_raises(
    tmp_path: Path, case: tuple[str, type[Exception]]
) -> None:
    key, error = case
    (tmp_path / "events").mkdir()
    with pytest.raises(error):
        LocalStorage(tmp_path, incremental=False).read_bytes(key)


# -- entries that cannot be followed -------------------------------------------------------------


def test_a_link_that_loops_is_left_out_and_reported_once(
    tmp_path: Path, storage_of: Callable[[Path], LocalStorage]
) -> None:
    """Added after the folder was kept (an event) or there from the start (a scan): either way
    the listing is every other key, and the entry is reported the first time only."""
    root = tmp_path / "trial"
    write_tree(root, ("index/000000000/000000000000_worker_0.json", "index/000000001/x"))
    storage = storage_of(root)
    assert storage.list_keys("index/") == [
        "index/000000000/000000000000_worker_0.json",
        "index/000000001/x",
    ]
    (root / "index/000000000/self").symlink_to("self")
    (root / "index/loop_a").symlink_to("loop_b")
    (root / "index/loop_b").symlink_to("loop_a")
    for _ in range(2):
        assert storage.list_keys("index/") == [
            "index/000000000/000000000000_worker_0.json",
            "index/000000001/x",
        ]
    entries = storage.take_unusable_entries()
    assert sorted(entry.key for entry in entries) == [
        "index/000000000/self",
        "index/loop_a",
        "index/loop_b",
    ]
    assert all("Too many levels of symbolic links" in entry.why for entry in entries)
    assert storage.take_unusable_entries() == []
    cursor = "index/000000000/000000000000_worker_0.json"
    assert storage.list_keys("index/", cursor) == ["index/000000001/x"]
    assert storage.take_unusable_entries() == []


def test_entries_past_the_kept_ones_are_counted_once_not_named(
    tmp_path: Path, storage_of: Callable[[Path], LocalStorage], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before: past ``UNUSABLE_ENTRIES_KEPT`` entries were neither named nor counted, so the
    status said fewer were left out than were. Now each is counted once however often its
    folder is scanned (the most one scan of the folder met), without its key being kept."""
    monkeypatch.setattr(local, "UNUSABLE_ENTRIES_KEPT", 2)
    root = tmp_path / "trial"
    write_tree(root, ("index/000000000/000000000000_worker_0.json", "index/000000001/x"))
    storage = storage_of(root)
    for name in ("a", "b", "c", "d", "e"):
        (root / f"index/000000000/loop_{name}").symlink_to(f"loop_{name}")
    (root / "index/000000001/loop").symlink_to("loop")
    for _ in range(3):
        assert storage.list_keys("index/") == [
            "index/000000000/000000000000_worker_0.json",
            "index/000000001/x",
        ]
    named = storage.take_unusable_entries()
    assert len(named) == 2
    assert storage.unnamed_unusable_entries == 4
    (root / "index/000000001/another").symlink_to("another")
    (root / "index/000000002").symlink_to("000000002")  # a folder that loops
    for _ in range(2):
        storage.list_keys("index/")
    assert storage.take_unusable_entries() == []
    assert storage.unnamed_unusable_entries == 6
    storage.list_keys("index/000000002/")  # the folder itself, which cannot be opened
    assert storage.unnamed_unusable_entries == 7
    storage.list_keys("index/")
    assert storage.unnamed_unusable_entries == 7


def test_the_reader_counts_every_unusable_entry_and_says_once_that_it_stops_naming_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reader counts the unnamed entries under the same reason as the named ones, and one
    message says that further ones are counted without being named."""
    from devtools.write_trial import end_training, export_collections, write_step
    from evaluator.trial.native import NativeTrialReader

    monkeypatch.setattr(local, "UNUSABLE_ENTRIES_KEPT", 3)
    trial = tmp_path / "trial"
    export_collections(str(trial), "worker_0", 1)
    write_step(str(trial), 0, "worker_0", {"labels": [0, 1], "predictions": [0, 1]})
    for number in range(7):
        (trial / f"index/loop_{number}").symlink_to(f"loop_{number}")
    end_training(str(trial))
    reader = NativeTrialReader(LocalStorage(trial, incremental=False))
    try:
        assert [ref.step for ref in reader.poll()] == [0]
        assert reader.poll() == []
        problems = reader.problems()
        assert problems.skipped_files == {"unreadable_entry": 7}
        assert (
            "further ones are counted under unreadable_entry"
            in problems.examples["unreadable_entry"]
        )
        assert reader.problems() is problems, "unchanged, the same snapshot"
    finally:
        reader.close()


def test_a_folder_that_loops_lists_as_empty_and_is_reported(
    tmp_path: Path, storage_of: Callable[[Path], LocalStorage]
) -> None:
    root = tmp_path / "trial"
    write_tree(root, ("index/000000000/000000000000_worker_0.json",))
    (root / "collections").symlink_to("collections")
    storage = storage_of(root)
    assert storage.list_keys("collections/000000000/") == []
    assert [entry.key for entry in storage.take_unusable_entries()] == ["collections/000000000/"]
    assert storage.modified_time("collections/000000000/x") is None


def test_a_trial_folder_that_loops_is_a_trial_error(tmp_path: Path) -> None:
    root = tmp_path / "trial"
    root.symlink_to("trial")
    with pytest.raises(local.TrialError, match="symbolic link that loops"):
        LocalStorage(root, incremental=False).exists()
    assert not LocalStorage(tmp_path / "not-yet", incremental=False).exists()
