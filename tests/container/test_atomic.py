"""Atomic writes: a reader sees the old or the new file, never a part, and no debris is left."""

from __future__ import annotations

import errno
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from container import atomic
from container.atomic import (
    LEGACY_TEMPORARY_AGE,
    FileWriteError,
    _create_temporary,
    _host_token,
    remove_stale_temporaries,
    write_text_atomically,
)


def test_replaces_the_content_whole(tmp_path: Path) -> None:
    target = tmp_path / "deep" / "status.json"
    write_text_atomically(target, "first")
    write_text_atomically(target, "second")
    assert target.read_text() == "second"
    assert sorted(p.name for p in target.parent.iterdir()) == ["status.json"]


def test_a_concurrent_reader_never_sees_a_partial_file(tmp_path: Path) -> None:
    target = tmp_path / "status.json"
    contents = ["a" * 200_000, "b" * 300_000]
    write_text_atomically(target, contents[0])
    seen: set[str] = set()
    done = threading.Event()

    def read_repeatedly() -> None:
        while not done.is_set():
            seen.add(target.read_text())

    reader = threading.Thread(target=read_repeatedly)
    reader.start()
    try:
        for i in range(60):
            write_text_atomically(target, contents[i % 2])
    finally:
        done.set()
        reader.join()
    assert seen <= set(contents)


def test_a_failed_write_leaves_the_old_file_and_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "status.json"
    write_text_atomically(target, "old")

    def refuse(*_args: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr("os.replace", refuse)
    with pytest.raises(OSError, match="disk full"):
        write_text_atomically(target, "new")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["status.json"]


def test_a_failed_write_says_which_file_why_and_what_to_change(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(FileWriteError) as caught:
        write_text_atomically(
            blocker / "status.json", "new", what="the status file", setting="status_file"
        )
    message = str(caught.value)
    assert message.startswith(f"cannot write the status file {blocker / 'status.json'}: ")
    assert "(EEXIST)" in message or "(ENOTDIR)" in message
    assert f"make {blocker} a folder" in message
    assert message.endswith("; set status_file to a writable path")
    assert isinstance(caught.value, OSError)


def test_a_full_disk_names_what_to_free(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "status.json"
    write_text_atomically(target, "old")

    def full(_handle: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("os.fsync", full)
    with pytest.raises(FileWriteError, match=r"No space left on device \(ENOSPC\): it needs 3 KiB"):
        write_text_atomically(target, "x" * 3000, what="the checkpoint")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["status.json"]


def test_the_folder_is_flushed_after_the_rename(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rename is what makes the new content the file's: only a flushed folder keeps it
    through a power cut."""
    target = tmp_path / "status.json"
    flushed: list[tuple[str, bool]] = []
    real_fsync = os.fsync

    def fsync(descriptor: int) -> None:
        path = os.readlink(f"/proc/self/fd/{descriptor}")
        flushed.append((path, target.exists()))
        real_fsync(descriptor)

    monkeypatch.setattr("os.fsync", fsync)
    write_text_atomically(target, "new")
    assert flushed[-1] == (str(tmp_path), True), "the folder, after the rename"


def test_no_unused_temporary_name_is_not_told_as_a_missing_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """EEXIST for every temporary name tried: the folder is one, making it one is no advice."""
    target = tmp_path / "status.json"

    def taken(*_args: object) -> int:
        raise FileExistsError(errno.EEXIST, "File exists")

    monkeypatch.setattr("os.open", taken)
    with pytest.raises(FileWriteError) as caught:
        write_text_atomically(target, "new", what="the status file", setting="status_file")
    message = str(caught.value)
    assert message.startswith(f"cannot write the status file {target}: File exists (EEXIST): ")
    assert "a folder" not in message
    assert f"new random names for its temporary in {tmp_path} was reported as taken" in message
    assert caught.value.errno == errno.EEXIST


def test_a_folder_that_cannot_be_flushed_after_the_rename_says_the_file_was_replaced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """EIO from the folder's fsync: the rename happened, the new content is the file's, only
    perhaps not on the disk; "cannot write" would say the old content stayed."""
    target = tmp_path / "ck.json"
    write_text_atomically(target, "old")
    real_fsync = os.fsync

    def fsync(descriptor: int) -> None:
        if os.readlink(f"/proc/self/fd/{descriptor}") == str(tmp_path):
            raise OSError(errno.EIO, "Input/output error")
        real_fsync(descriptor)

    monkeypatch.setattr("os.fsync", fsync)
    with pytest.raises(FileWriteError) as caught:
        write_text_atomically(target, "new", what="the checkpoint", setting="checkpoint_file")
    assert target.read_text() == "new"
    assert caught.value.replaced
    message = str(caught.value)
    assert message.startswith(
        f"the checkpoint {target} was replaced, but its folder could not be flushed to disk "
        f"after the rename: Input/output error (EIO): the new content may not survive a crash"
    )
    assert "cannot write" not in message
    assert message.endswith(f"check the device holding {tmp_path} (it reported an I/O error)")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck.json"]


def test_text_utf8_cannot_hold_is_written_as_its_escape(tmp_path: Path) -> None:
    """A path of undecodable bytes reaches Python as lone surrogates; every output quotes it."""
    target = tmp_path / "report.html"
    write_text_atomically(target, "trial-\udcff")
    assert target.read_text() == "trial-\\udcff"


def stale(folder: Path, name: str, *, age: float = 0.0) -> Path:
    path = folder / name
    path.write_text("left behind")
    if age:
        moment = time.time() - age
        os.utime(path, (moment, moment))
    return path


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", ""])
    child.wait()
    return child.pid  # reaped: no process has it (until the kernel hands it out again)


def here(pid: object) -> str:
    """``PID-HOST`` of a writer in this machine's boot and this process's pid namespace."""
    host = _host_token()
    assert host is not None, "needs /proc"
    return f"{pid}-{host}"


def elsewhere(pid: object) -> str:
    """``PID-HOST`` of a writer of another machine or pid namespace (another container)."""
    return f"{pid}-{'0' * 8 if _host_token() != '0' * 8 else '1' * 8}"


def test_a_temporary_is_named_after_its_file_writer_and_namespace(tmp_path: Path) -> None:
    handle, name = _create_temporary(tmp_path / "status.json")
    os.close(handle)
    host = _host_token()
    assert host is not None
    assert re.fullmatch("[0-9a-f]{8}", host)
    pattern = rf"\.status\.json\.{os.getpid()}-{host}-[0-9a-f]{{12}}\.tmp"
    assert re.fullmatch(pattern, Path(name).name)


def test_a_dead_writers_temporary_is_removed_at_the_first_write(tmp_path: Path) -> None:
    target = tmp_path / "status.json"
    left = stale(tmp_path, f".status.json.{here(dead_pid())}-0123456789ab.tmp")
    write_text_atomically(target, "new")
    assert not left.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["status.json"]


@dataclass(frozen=True)
class Temporary:
    """A file beside ``status.json`` and whether a run writing it may remove it."""

    id: str
    name: Callable[[], str]
    stale: bool
    age: float = 0.0


OLD = LEGACY_TEMPORARY_AGE + 60
"""Seconds since a temporary whose writer cannot be asked was last written, for it to count
as left behind; a recent one is 5 s old."""

TEMPORARIES = (
    Temporary("dead_writer", lambda: f".status.json.{here(dead_pid())}-0123456789ab.tmp", True),
    Temporary(
        "pid_beyond_any",
        lambda: f".status.json.{here('99999999999999999999')}-0123456789ab.tmp",
        True,
    ),
    Temporary(
        "pid_reused_since",  # our pid, written long before this process started
        lambda: f".status.json.{here(os.getpid())}-0123456789ab.tmp",
        True,
        age=30 * 86400,
    ),
    Temporary(
        "this_process_live", lambda: f".status.json.{here(os.getpid())}-0123456789ab.tmp", False
    ),
    Temporary("live_writer", lambda: f".status.json.{here(os.getppid())}-0123456789ab.tmp", False),
    # Another container's writer on a shared volume: its pid is no process here, or another.
    Temporary(
        "other_namespace_recent",
        lambda: f".status.json.{elsewhere(dead_pid())}-0123456789ab.tmp",
        False,
        age=5,
    ),
    Temporary(
        "other_namespace_old",
        lambda: f".status.json.{elsewhere(dead_pid())}-0123456789ab.tmp",
        True,
        age=OLD,
    ),
    Temporary(
        "other_namespace_pid_reused",  # here our pid, started after it was last written
        lambda: f".status.json.{elsewhere(os.getpid())}-0123456789ab.tmp",
        False,
        age=30,
    ),
    # The naming with the pid but without HOST: whose namespace the pid is of is unknown.
    Temporary(
        "pid_naming_recent", lambda: f".status.json.{dead_pid()}-0123456789ab.tmp", False, age=5
    ),
    Temporary(
        "pid_naming_old", lambda: f".status.json.{dead_pid()}-0123456789ab.tmp", True, age=OLD
    ),
    Temporary("earlier_naming_old", lambda: ".status.json.0123456789ab.tmp", True, age=OLD),
    Temporary("earlier_naming_recent", lambda: ".status.json.0123456789ab.tmp", False, age=5),
    Temporary("another_file", lambda: f".other.json.{here(dead_pid())}-0123456789ab.tmp", False),
    Temporary("longer_name", lambda: f".status.json.x.{here(dead_pid())}-0123456789ab.tmp", False),
    Temporary("not_our_naming", lambda: ".status.json.notours.tmp", False, age=OLD),
    Temporary(
        "uppercase_random", lambda: f".status.json.{here(dead_pid())}-0123456789AB.tmp", False
    ),
    Temporary(
        "uppercase_host",
        lambda: f".status.json.{here(dead_pid()).upper()}-0123456789ab.tmp",
        False,
        age=OLD,
    ),
)


@pytest.mark.parametrize("case", TEMPORARIES, ids=[c.id for c in TEMPORARIES])
def test_only_a_gone_writers_temporary_of_the_same_file_is_removed(
    case: Temporary, tmp_path: Path
) -> None:
    left = stale(tmp_path, case.name(), age=case.age)
    assert remove_stale_temporaries([tmp_path / "status.json"]) == int(case.stale)
    assert left.exists() is not case.stale


def test_without_a_namespace_of_its_own_every_temporary_is_judged_by_its_age(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No /proc to name this process's namespace: a pid in a name may be anyone's, and this
    process's own temporaries are named without HOST."""
    recent = stale(tmp_path, f".status.json.{here(dead_pid())}-0123456789ab.tmp", age=5)
    old = stale(tmp_path, f".status.json.{here(dead_pid())}-ba9876543210.tmp", age=OLD)
    monkeypatch.setattr(atomic, "_host_token", lambda: None)
    assert remove_stale_temporaries([tmp_path / "status.json"]) == 1
    assert recent.exists()
    assert not old.exists()
    handle, name = _create_temporary(tmp_path / "status.json")
    os.close(handle)
    assert re.fullmatch(rf"\.status\.json\.{os.getpid()}-[0-9a-f]{{12}}\.tmp", Path(name).name)


def test_a_folder_that_cannot_be_listed_is_no_error(tmp_path: Path) -> None:
    assert remove_stale_temporaries([tmp_path / "missing" / "status.json"]) == 0
