"""A trial in a local folder, seen through the same four calls an S3 prefix will offer.

The native reader only lists keys after a cursor, reads whole objects and checks that one
exists, which is what S3 does cheaply (ListObjectsV2 with StartAfter, GetObject, HeadObject).
Keeping the local folder to that shape lets an S3 storage replace it without touching the reader.
"""

from __future__ import annotations

import os
from pathlib import Path

from evaluator.trial.layout import is_safe_key


class LocalStorage:
    """Keys are paths relative to ``root`` with ``/`` separators, as S3 keys under a prefix."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self._root_prefix = os.path.join(os.fspath(root), "")

    @property
    def location(self) -> str:
        """The folder, for messages."""
        return str(self.root)

    def exists(self) -> bool:
        """Whether the trial folder exists (a training job may not have created it yet)."""
        return self.root.is_dir()

    def list_keys(self, prefix: str, start_after: str | None = None) -> list[str]:
        """Keys starting with ``prefix``, in lexical order, strictly after ``start_after``.

        Folders whose keys all sort at or before ``start_after`` are not opened, so following a
        trial costs one scan of ``index/`` (one entry per 1000 steps) plus the folders at or
        after the cursor, however many steps were consumed before. Missing folders list as
        empty: the trial may be created while we watch it.
        """
        folder, _, name_prefix = prefix.rpartition("/")
        keys: list[str] = []
        self._collect(f"{folder}/" if folder else "", name_prefix, start_after, keys)
        return keys

    def read_bytes(self, key: str) -> bytes:
        """The whole object; FileNotFoundError when it is missing."""
        with open(self._path(key), "rb") as handle:
            return handle.read()

    def key_exists(self, key: str) -> bool:
        """Whether an object (not a folder) exists at ``key``."""
        return os.path.isfile(self._path(key))

    def _path(self, key: str) -> str:
        """The file of ``key``; plain strings, since this runs for every file read."""
        if not is_safe_key(key):
            raise ValueError(f"key {key!r} is not a relative path inside the trial {self.root}")
        return self._root_prefix + key

    def _collect(
        self, folder_key: str, name_prefix: str, start_after: str | None, keys: list[str]
    ) -> None:
        """Append the keys under ``folder_key`` (which ends in ``/`` or is empty) in order."""
        for sort_name, is_folder in self._entries(folder_key, name_prefix):
            key = folder_key + sort_name
            if is_folder:
                if _folder_is_consumed(key, start_after):
                    continue
                self._collect(key, "", start_after, keys)
            elif start_after is None or key > start_after:
                keys.append(key)

    def _entries(self, folder_key: str, name_prefix: str) -> list[tuple[str, bool]]:
        """Sorted ``(name, is_folder)`` of one folder; folder names end with ``/``.

        The trailing ``/`` makes sorting names give the lexical order of the full keys, as S3
        lists them (``a.b`` sorts before ``a/x``). Tests wrap this method to count folder scans.
        """
        directory = self.root / folder_key if folder_key else self.root
        try:
            with os.scandir(directory) as scan:
                entries = [
                    (f"{entry.name}/", True) if entry.is_dir() else (entry.name, False)
                    for entry in scan
                    if entry.name.startswith(name_prefix)
                ]
        except (FileNotFoundError, NotADirectoryError):
            return []
        entries.sort()
        return entries


def _folder_is_consumed(folder_key: str, start_after: str | None) -> bool:
    """Whether every key under ``folder_key`` sorts at or before ``start_after``."""
    if start_after is None or start_after.startswith(folder_key):
        return False
    return folder_key < start_after
