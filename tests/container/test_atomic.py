"""Atomic writes: a reader sees the old or the new file, never a part, and no debris is left."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from container.atomic import write_text_atomically


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
