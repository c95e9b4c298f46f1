"""Waiting for the next step: inotify on local trials, the poll interval everywhere.

smdebug renames each index file into place, so an inotify watch on the newest index folder
wakes the loop within milliseconds of a step landing, instead of up to a poll interval later.
Watches are only a shortcut: the loop still polls at the interval, which covers S3, network
file systems that deliver no events, and any event missed while a watch was being set up.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
from pathlib import Path

from container.stopping import StopRequest
from evaluator.linux import IN_CLOSE_WRITE, IN_CREATE, IN_MOVED_TO, Inotify

log = logging.getLogger("classimbalance.watch")

_MASK = IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE
FRESH_WATCH_WAIT = 0.01
"""Seconds waited after a watch was just added: files that landed between the poll's listing
and the watch raise no event, so one more quick look covers them instead of a whole interval
(at start-up, and each time a new 1000-step index folder appears)."""


class StepWaiter:
    """Sleeps until a stop, a file event under the trial's index, or the timeout."""

    def __init__(self, trial_root: str | None) -> None:
        self._root = Path(trial_root) if trial_root else None
        self._inotify: Inotify | None = None
        self._watched: set[str] = set()
        self._ancestor: tuple[str, int] | None = None
        """(path, watch) of the nearest existing folder above a trial root that does not exist
        yet: its creation then wakes the wait, not the next poll interval."""
        if self._root is not None:
            try:
                self._inotify = Inotify()
            except OSError as error:
                log.info("inotify unavailable (%s): polling only", error)

    @property
    def uses_inotify(self) -> bool:
        """Whether file events can wake the wait (a diagnostic for tests; the wait works
        either way)."""
        return self._inotify is not None

    def wait(self, timeout: float, stop: StopRequest) -> None:
        """Return after ``timeout`` seconds, or earlier on a stop or a new file."""
        readable = [stop.wake_fd]
        if self._inotify is not None:
            if self._watch_newest():
                timeout = min(timeout, FRESH_WATCH_WAIT)
            readable.append(self._inotify.fd)
        ready, _, _ = select.select(readable, [], [], max(timeout, 0.0))
        if self._inotify is not None and self._inotify.fd in ready:
            self._inotify.read_events()  # only the wake-up matters, not what happened

    def _watch_newest(self) -> bool:
        """Watch the trial root, index/ and its newest folder: where the next step lands.

        Returns whether a watch was added just now."""
        if self._root is None or self._inotify is None:
            return False
        if not _is_dir(self._root):
            return self._watch_ancestor(self._root, self._inotify)
        self._drop_ancestor(self._inotify)  # the trial is there: its parent's events are noise
        added = False
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
                self._inotify.add_watch(path, _MASK)
                self._watched.add(path)
                added = True
            except OSError:
                continue  # not there yet: the poll interval covers it
        return added

    def _watch_ancestor(self, root: Path, inotify: Inotify) -> bool:
        """Watch the nearest existing folder above the missing trial root (whether one was
        added just now): a sidecar started before training sees the trial appear at once."""
        folder = root.parent
        while not _is_dir(folder) and folder != folder.parent:
            folder = folder.parent
        path = str(folder)
        if self._ancestor is not None and self._ancestor[0] == path:
            return False
        self._drop_ancestor(inotify)  # a nearer folder exists now
        try:
            self._ancestor = (path, inotify.add_watch(path, IN_CREATE | IN_MOVED_TO))
        except OSError:
            return False  # unreadable: the poll interval covers it
        return True

    def _drop_ancestor(self, inotify: Inotify) -> None:
        if self._ancestor is not None:
            with contextlib.suppress(OSError):
                inotify.rm_watch(self._ancestor[1])
            self._ancestor = None

    def close(self) -> None:
        if self._inotify is not None:
            self._inotify.close()
            self._inotify = None


def _is_dir(path: Path) -> bool:
    """Whether ``path`` is a folder we can watch; a link that loops or a folder above it that
    this user may not search is none (the reader says why; the wait only loses its shortcut)."""
    try:
        return path.is_dir()
    except OSError:
        return False
