"""Atomic writes: a reader sees the old or the new file, never a part, and no debris is left."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from container.atomic import FileWriteError, remove_stale_temporaries, write_text_atomically


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


def test_a_dead_writers_temporary_is_removed_at_the_first_write(tmp_path: Path) -> None:
    target = tmp_path / "status.json"
    left = stale(tmp_path, f".status.json.{dead_pid()}-0123456789ab.tmp")
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


TEMPORARIES = (
    Temporary("dead_writer", lambda: f".status.json.{dead_pid()}-0123456789ab.tmp", True),
    Temporary("pid_beyond_any", lambda: ".status.json.99999999999999999999-0123456789ab.tmp", True),
    Temporary(
        "pid_reused_since",  # our pid, written long before this process started
        lambda: f".status.json.{os.getpid()}-0123456789ab.tmp",
        True,
        age=30 * 86400,
    ),
    Temporary("this_process_live", lambda: f".status.json.{os.getpid()}-0123456789ab.tmp", False),
    Temporary("live_writer", lambda: f".status.json.{os.getppid()}-0123456789ab.tmp", False),
    Temporary("earlier_naming_old", lambda: ".status.json.0123456789ab.tmp", True, age=3600),
    Temporary("earlier_naming_recent", lambda: ".status.json.0123456789ab.tmp", False, age=5),
    Temporary("another_file", lambda: f".other.json.{dead_pid()}-0123456789ab.tmp", False),
    Temporary("longer_name", lambda: f".status.json.x.{dead_pid()}-0123456789ab.tmp", False),
    Temporary("not_our_naming", lambda: ".status.json.notours.tmp", False, age=3600),
    Temporary("uppercase_random", lambda: f".status.json.{dead_pid()}-0123456789AB.tmp", False),
)


@pytest.mark.parametrize("case", TEMPORARIES, ids=[c.id for c in TEMPORARIES])
def test_only_a_gone_writers_temporary_of_the_same_file_is_removed(
    case: Temporary, tmp_path: Path
) -> None:
    left = stale(tmp_path, case.name(), age=case.age)
    assert remove_stale_temporaries([tmp_path / "status.json"]) == int(case.stale)
    assert left.exists() is not case.stale


def test_a_folder_that_cannot_be_listed_is_no_error(tmp_path: Path) -> None:
    assert remove_stale_temporaries([tmp_path / "missing" / "status.json"]) == 0
