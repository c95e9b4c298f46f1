"""Linux inotify through libc: watch folders, read what happened in them since the last read.

The standard library has no inotify binding and a third-party one is not worth a dependency for
five calls, so they go through ``ctypes``. Two users: the local trial storage keeps its folder
listings current from the events (``evaluator.trial.local``), and the runtime wakes up when an
index file lands (``container.watch``).

What callers may rely on: the kernel queues an event inside the file system call that caused it
(``creat``, ``rename``, ``unlink`` ...), before that call returns. So once a read of the queue
finds it empty (EAGAIN), every change completed before that read began is among the events
returned so far. The exceptions are announced: ``IN_Q_OVERFLOW`` when the queue was full and
events were dropped, ``IN_IGNORED`` when a watch went away. Events only come from changes made
through this machine's kernel, which is why network file systems need another way to notice.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import os
import struct
from dataclasses import dataclass
from typing import Self

# Events, from <sys/inotify.h>: the ones the storage and the runtime watch for.
IN_CLOSE_WRITE = 0x00000008
IN_MOVED_FROM = 0x00000040
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE = 0x00000200
IN_DELETE_SELF = 0x00000400
IN_MOVE_SELF = 0x00000800
# Sent whatever the mask.
IN_UNMOUNT = 0x00002000
IN_Q_OVERFLOW = 0x00004000
IN_IGNORED = 0x00008000
# Options of inotify_add_watch.
IN_ONLYDIR = 0x01000000
# Flag in the mask of an event about a folder (rather than a file) inside the watched folder.
IN_ISDIR = 0x40000000
# Flags of inotify_init1 (O_NONBLOCK and O_CLOEXEC on every Linux architecture we run on).
IN_NONBLOCK = 0o4000
IN_CLOEXEC = 0o2000000

_HEADER = struct.Struct("iIII")  # int wd; uint32 mask, cookie, len; then char name[len]
_READ_SIZE = 64 << 10
"""Bytes per read; must hold at least one event with the longest name (16 + NAME_MAX + 1)."""


@dataclass(frozen=True, slots=True)
class Event:
    """One ``struct inotify_event``: ``name`` is empty for events about the watched folder."""

    wd: int
    mask: int
    cookie: int
    name: str

    @property
    def is_dir(self) -> bool:
        """Whether ``name`` is a folder (IN_ISDIR)."""
        return bool(self.mask & IN_ISDIR)


def parse_events(data: bytes) -> list[Event]:
    """The events in what one ``read`` of an inotify descriptor returned.

    The kernel never splits an event across reads. Names are NUL-padded to an alignment and
    decoded like ``os.listdir`` decodes them (``os.fsdecode``), so they compare equal.
    """
    events: list[Event] = []
    offset = 0
    while offset + _HEADER.size <= len(data):
        wd, mask, cookie, length = _HEADER.unpack_from(data, offset)
        offset += _HEADER.size
        raw_name = data[offset : offset + length].split(b"\0", 1)[0]
        offset += length
        events.append(Event(wd, mask, cookie, os.fsdecode(raw_name)))
    if offset != len(data):
        raise ValueError(f"truncated inotify event: {len(data) - offset} byte(s) left over")
    return events


@functools.cache
def _libc() -> ctypes.CDLL:
    """The C library, once per process: the symbols this process already has (Python links
    libc), where ``ctypes.util.find_library("c")`` would spawn ``ldconfig -p`` on every call
    (two processes per run, for two readers); the library it names only where the process's
    own symbols lack inotify."""
    own = ctypes.CDLL(None, use_errno=True)
    if hasattr(own, "inotify_init1"):
        return own
    # Lazy: ctypes.util imports subprocess (~3 ms), needed only where this fallback runs.
    from ctypes.util import find_library  # noqa: PLC0415

    return ctypes.CDLL(find_library("c"), use_errno=True)


class Inotify:
    """One non-blocking, close-on-exec inotify instance.

    The constructor raises ``OSError`` where inotify cannot be had: not Linux, no such libc
    functions, or the per-user limit of instances reached (EMFILE).
    """

    def __init__(self) -> None:
        try:
            libc = _libc()
            init1 = libc.inotify_init1
            self._add_watch = libc.inotify_add_watch
            self._rm_watch = libc.inotify_rm_watch
        except (OSError, AttributeError) as error:
            raise OSError(errno.ENOSYS, f"inotify is not available: {error}") from error
        init1.argtypes = [ctypes.c_int]
        init1.restype = ctypes.c_int
        self._add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
        self._add_watch.restype = ctypes.c_int
        self._rm_watch.argtypes = [ctypes.c_int, ctypes.c_int]
        self._rm_watch.restype = ctypes.c_int
        fd = init1(IN_NONBLOCK | IN_CLOEXEC)
        if fd < 0:
            code = ctypes.get_errno()
            raise OSError(code, f"inotify_init1: {os.strerror(code)}")
        self._fd: int | None = fd

    @property
    def fd(self) -> int:
        """The descriptor, for ``select``; ValueError once closed."""
        if self._fd is None:
            raise ValueError("the inotify instance is closed")
        return self._fd

    @property
    def closed(self) -> bool:
        return self._fd is None

    def add_watch(self, path: str | os.PathLike[str], mask: int) -> int:
        """Watch ``path`` for ``mask``; the watch descriptor that events will carry.

        Watching a folder that is already watched returns its existing descriptor (and replaces
        its mask unless IN_MASK_ADD): callers that key watches by path must expect that.
        """
        wd = int(self._add_watch(self.fd, os.fsencode(path), mask))
        if wd < 0:
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code), os.fspath(path))
        return wd

    def rm_watch(self, wd: int) -> None:
        """Stop a watch; an IN_IGNORED event for ``wd`` follows. OSError (EINVAL) when the
        watch is already gone, e.g. its folder was deleted."""
        if self._rm_watch(self.fd, wd) < 0:
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code))

    def read_events(self) -> list[Event]:
        """Every queued event, reading until the queue is empty (never blocks)."""
        events: list[Event] = []
        while True:
            try:
                data = os.read(self.fd, _READ_SIZE)
            except BlockingIOError:
                return events
            if not data:
                return events
            events.extend(parse_events(data))

    def close(self) -> None:
        """Release the descriptor and with it every watch; safe to call again."""
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
