"""The inotify binding: events parsed as the kernel lays them out, and the calls themselves."""

from __future__ import annotations

import errno
import os
import struct
from pathlib import Path

import pytest

from evaluator.linux.inotify import (
    IN_CREATE,
    IN_DELETE,
    IN_IGNORED,
    IN_ISDIR,
    IN_MOVED_FROM,
    IN_MOVED_TO,
    IN_ONLYDIR,
    IN_Q_OVERFLOW,
    Event,
    Inotify,
    parse_events,
)


def raw_event(wd: int, mask: int, cookie: int, name: bytes, padded_to: int = 16) -> bytes:
    """``struct inotify_event`` with the name NUL-padded as the kernel pads it."""
    length = 0 if not name else -(-(len(name) + 1) // padded_to) * padded_to
    return struct.pack("iIII", wd, mask, cookie, length) + name.ljust(length, b"\0")


# name -> (bytes read, events)
PARSED: dict[str, tuple[bytes, list[Event]]] = {
    "nothing": (b"", []),
    "one_file": (raw_event(1, IN_CREATE, 0, b"a.json"), [Event(1, IN_CREATE, 0, "a.json")]),
    "name_filling_the_padding": (
        raw_event(1, IN_CREATE, 0, b"x" * 15),
        [Event(1, IN_CREATE, 0, "x" * 15)],
    ),
    "folder": (
        raw_event(2, IN_CREATE | IN_ISDIR, 0, b"000000001"),
        [Event(2, IN_CREATE | IN_ISDIR, 0, "000000001")],
    ),
    "rename_pair": (
        raw_event(1, IN_MOVED_FROM, 7, b"a.tmp") + raw_event(1, IN_MOVED_TO, 7, b"a"),
        [Event(1, IN_MOVED_FROM, 7, "a.tmp"), Event(1, IN_MOVED_TO, 7, "a")],
    ),
    "overflow_without_name": (
        raw_event(-1, IN_Q_OVERFLOW, 0, b""),
        [Event(-1, IN_Q_OVERFLOW, 0, "")],
    ),
    "undecodable_name": (
        raw_event(1, IN_CREATE, 0, b"\xff"),
        [Event(1, IN_CREATE, 0, os.fsdecode(b"\xff"))],
    ),
}


@pytest.mark.parametrize(("data", "events"), PARSED.values(), ids=PARSED.keys())
def test_parse_events(data: bytes, events: list[Event]) -> None:
    assert parse_events(data) == events


def test_a_truncated_event_is_an_error() -> None:
    with pytest.raises(ValueError, match="truncated"):
        parse_events(raw_event(1, IN_CREATE, 0, b"a.json")[:-3])


def test_events_of_a_watched_folder(tmp_path: Path) -> None:
    with Inotify() as inotify:
        wd = inotify.add_watch(tmp_path, IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO)
        assert inotify.read_events() == []
        (tmp_path / "a.tmp").touch()
        os.replace(tmp_path / "a.tmp", tmp_path / "a")
        (tmp_path / "sub").mkdir()
        (tmp_path / "a").unlink()
        events = inotify.read_events()
        assert [(event.wd, event.mask, event.name) for event in events] == [
            (wd, IN_CREATE, "a.tmp"),
            (wd, IN_MOVED_FROM, "a.tmp"),
            (wd, IN_MOVED_TO, "a"),
            (wd, IN_CREATE | IN_ISDIR, "sub"),
            (wd, IN_DELETE, "a"),
        ]
        assert events[1].cookie == events[2].cookie != 0
        assert events[3].is_dir
        assert not events[0].is_dir
        inotify.rm_watch(wd)
        assert [(event.wd, event.mask) for event in inotify.read_events()] == [(wd, IN_IGNORED)]
        with pytest.raises(OSError, match="Invalid argument") as removed_twice:
            inotify.rm_watch(wd)
        assert removed_twice.value.errno == errno.EINVAL


def test_watch_errors_name_the_path(tmp_path: Path) -> None:
    (tmp_path / "file").touch()
    with Inotify() as inotify:
        with pytest.raises(FileNotFoundError, match="missing"):
            inotify.add_watch(tmp_path / "missing", IN_CREATE)
        with pytest.raises(NotADirectoryError):
            inotify.add_watch(tmp_path / "file", IN_CREATE | IN_ONLYDIR)


def test_the_same_folder_gives_the_same_watch(tmp_path: Path) -> None:
    (tmp_path / "link").symlink_to(tmp_path)
    with Inotify() as inotify:
        assert inotify.add_watch(tmp_path, IN_CREATE) == inotify.add_watch(
            tmp_path / "link", IN_CREATE
        )


def test_close_is_idempotent() -> None:
    inotify = Inotify()
    inotify.close()
    inotify.close()
    assert inotify.closed
    with pytest.raises(ValueError, match="closed"):
        _ = inotify.fd


def test_libc_is_found_without_spawning_ldconfig(monkeypatch: pytest.MonkeyPatch) -> None:
    """find_library("c") runs ``ldconfig -p`` in a subprocess on every call; the process's own
    symbols have inotify, so no process is spawned, however many instances are made."""
    import subprocess

    from evaluator.linux import inotify

    def no_process(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"a process was spawned: {args}")

    inotify._libc.cache_clear()
    monkeypatch.setattr(subprocess, "Popen", no_process)
    for _ in range(2):
        instance = inotify.Inotify()
        instance.close()
