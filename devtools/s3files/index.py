"""The endpoint's index: every bucket's sorted keys, sizes and times, read once at start."""

from __future__ import annotations

import hashlib
import os
import time
from email.utils import formatdate
from pathlib import Path
from typing import NamedTuple
from xml.sax.saxutils import escape


class _Object(NamedTuple):
    path: str
    size: int
    etag: str
    """Quoted, as S3 sends it: a digest of the key, size and modification time (not of the
    content, which would mean reading every file at start)."""
    modified: str
    """The Last-Modified header (whole seconds, as S3's)."""
    listed: str
    """The object's ``<Contents>`` element after its key."""


class _Bucket:
    """One subfolder of the root: its files by key, and the keys in UTF-8 byte order (which is
    code point order: keys that are not valid UTF-8 are left out)."""

    def __init__(self, name: str, folder: str) -> None:
        self.name = name
        self.objects: dict[str, _Object] = {}
        _scan(folder, "", self.objects, frozenset())
        self.keys = sorted(self.objects)


def _scan(
    folder: str, prefix: str, into: dict[str, _Object], ancestors: frozenset[tuple[int, int]]
) -> None:
    """Every regular file under ``folder`` into ``into`` by key (links followed, loops not)."""
    here = os.stat(folder)
    ancestors |= {(here.st_dev, here.st_ino)}
    with os.scandir(folder) as entries:
        for entry in entries:
            key = prefix + entry.name
            try:
                if entry.is_dir():
                    found = entry.stat()
                    if (found.st_dev, found.st_ino) not in ancestors:
                        _scan(entry.path, f"{key}/", into, ancestors)
                elif entry.is_file() and _encodable(key):
                    into[key] = _describe(key, entry.path, entry.stat())
            except FileNotFoundError:  # gone while scanning, or a broken link
                continue


def _describe(key: str, path: str, found: os.stat_result) -> _Object:
    digest = f"{key}\0{found.st_size}\0{found.st_mtime_ns}".encode()
    etag = f'"{hashlib.md5(digest, usedforsecurity=False).hexdigest()}"'
    seconds = int(found.st_mtime)
    iso = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(seconds))
    listed = (
        f"</Key><LastModified>{iso}</LastModified><ETag>{escape(etag)}</ETag>"
        f"<Size>{found.st_size}</Size><StorageClass>STANDARD</StorageClass></Contents>"
    )
    return _Object(path, found.st_size, etag, formatdate(seconds, usegmt=True), listed)


def _encodable(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _scan_root(root: Path) -> dict[str, _Bucket]:
    if not root.is_dir():
        raise FileNotFoundError(f"Expected a folder of buckets to serve, but {root} is not one")
    buckets: dict[str, _Bucket] = {}
    with os.scandir(root) as entries:
        for entry in entries:
            if entry.is_dir() and _bucket_name_ok(entry.name):
                buckets[entry.name] = _Bucket(entry.name, entry.path)
    return buckets


def _bucket_name_ok(name: str) -> bool:
    return name not in {"", ".", ".."} and "\0" not in name and _encodable(name)


def _key_ok(key: str) -> bool:
    """Whether a key can name a file under its bucket's folder: no NUL, no absolute path, no
    ``..``, ``.`` or empty segment (the index holds no such key anyway)."""
    return (
        "\0" not in key
        and _encodable(key)
        and all(part not in {"", ".", ".."} for part in key.split("/"))
    )


class _State(NamedTuple):
    buckets: dict[str, _Bucket]
    latency: float
