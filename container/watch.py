"""Waiting for the next step: inotify on local trials, the poll interval everywhere.

smdebug renames each index file into place, so an inotify watch on the newest index folder
wakes the loop within milliseconds of a step landing, instead of up to a poll interval later.
Watches are only a shortcut: the loop still polls at the interval, which covers S3, network
file systems that deliver no events, and any event missed while a watch was being set up.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import os
import select
from pathlib import Path

from container.stopping import StopRequest

log = logging.getLogger("classimbalance.watch")

_IN_CLOSE_WRITE = 0x00000008
_IN_MOVED_TO = 0x00000080
_IN_CREATE = 0x00000100
_IN_NONBLOCK = 0o4000
_IN_CLOEXEC = 0o2000000
_MASK = _IN_CLOSE_WRITE | _IN_MOVED_TO | _IN_CREATE


class _Inotify:
    """The three inotify calls, through libc (no third-party package needed)."""

    def __init__(self) -> None:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        self._add_watch = libc.inotify_add_watch
        self._add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
        self.fd = int(libc.inotify_init1(_IN_NONBLOCK | _IN_CLOEXEC))
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1 failed")

    def add_watch(self, path: str) -> None:
        if self._add_watch(self.fd, os.fsencode(path), _MASK) < 0:
            errno = ctypes.get_errno()
            raise OSError(errno, os.strerror(errno), path)

    def drain(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while os.read(self.fd, 65536):
                pass

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)


class StepWaiter:
    """Sleeps until a stop, a file event under the trial's index, or the timeout."""

    def __init__(self, trial_root: str | None) -> None:
        self._root = Path(trial_root) if trial_root else None
        self._inotify: _Inotify | None = None
        self._watched: set[str] = set()
        if self._root is not None:
            try:
                self._inotify = _Inotify()
            except (OSError, AttributeError) as error:
                log.info("inotify unavailable (%s): polling only", error)

    @property
    def uses_inotify(self) -> bool:
        return self._inotify is not None

    def wait(self, timeout: float, stop: StopRequest) -> None:
        """Return after ``timeout`` seconds, or earlier on a stop or a new file."""
        readable = [stop.wake_fd]
        if self._inotify is not None:
            self._watch_newest()
            readable.append(self._inotify.fd)
        ready, _, _ = select.select(readable, [], [], max(timeout, 0.0))
        if self._inotify is not None and self._inotify.fd in ready:
            self._inotify.drain()

    def _watch_newest(self) -> None:
        """Watch the trial root, index/ and its newest folder: where the next step lands."""
        if self._root is None or self._inotify is None:
            return
        index = self._root / "index"
        candidates = [self._root, index]
        with contextlib.suppress(OSError):
            folders = [e.name for e in os.scandir(index) if e.is_dir()]
            if folders:
                candidates.append(index / max(folders))
        for path in map(str, candidates):
            if path in self._watched:
                continue
            try:
                self._inotify.add_watch(path)
                self._watched.add(path)
            except OSError:
                continue  # not there yet: the poll interval covers it

    def close(self) -> None:
        if self._inotify is not None:
            self._inotify.close()
            self._inotify = None
