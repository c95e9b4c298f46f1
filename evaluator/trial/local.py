"""A trial in a local folder, seen through the same four calls an S3 prefix will offer.

The native reader only lists keys after a cursor, reads whole objects and checks that one
exists, which is what S3 does cheaply (ListObjectsV2 with StartAfter, GetObject, HeadObject).
Keeping the local folder to that shape lets an S3 storage replace it without touching the reader.

Listing is the one call that would grow with the trial: a following reader lists ``index/`` on
every poll, and reading a folder costs time in proportion to its entries (about 2 ms for the
4000 index files of 1000 steps of 4 workers, even on tmpfs), so the cost of a step grew through
each 1000-step folder. On local file systems the storage therefore keeps the sorted names of the
folders it lists up to date from inotify events (see ``evaluator.linux.inotify``) and answers
from them by bisection: a poll costs the same at the start and at the end of a folder.

Correctness rests on one property of inotify: the kernel queues an event inside the file system
call that made the change. A listing reads the queue until it is empty when it starts, so it
sees every file created or renamed into place before it started, exactly as a fresh scan would;
the reader's completeness logic (a step is complete once its index files were listed) relies on
a listing never missing such a file. Where events cannot be trusted the storage scans each
folder on each call, as it always did:

* file systems where changes can come from another machine (NFS, CIFS, FUSE, 9p, virtiofs,
  Ceph ...): only types in ``INOTIFY_FILESYSTEMS`` are followed by events;
* no inotify (another OS, the per-user limit of instances or watches reached);
* folders holding symbolic links (what a link points at can change without an event) or lying
  on another mount than the trial root;
* after a dropped-event overflow, a deleted or moved folder: those folders are scanned afresh;
* if the periodic rescan (``rescan_seconds``) ever finds a difference the events do not explain,
  for good (``listing_repairs`` counts it).

An entry that cannot be followed (a symbolic link that loops) is left out of listings and
reported once for the reader to count as skipped (past ``UNUSABLE_ENTRIES_KEPT``, not named); a
folder this user may not read raises ``TrialError`` saying who the evaluator runs as and why.
"""

from __future__ import annotations

import bisect
import contextlib
import errno
import logging
import os
import re
import stat
import sys
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from evaluator.core.text import shortened
from evaluator.linux.inotify import (
    IN_CREATE,
    IN_DELETE,
    IN_DELETE_SELF,
    IN_IGNORED,
    IN_MOVE_SELF,
    IN_MOVED_FROM,
    IN_MOVED_TO,
    IN_ONLYDIR,
    IN_Q_OVERFLOW,
    IN_UNMOUNT,
    Event,
    Inotify,
)
from evaluator.trial.contract import TrialError, UnusableEntry
from evaluator.trial.layout import is_safe_key

log = logging.getLogger("classimbalance.trial.local")

RESCAN_SECONDS = 30.0
"""How often a folder kept up to date by events is read again and compared, as a safety net:
a difference the events do not explain means they cannot be trusted here, and from then on
every listing scans."""

INOTIFY_FILESYSTEMS = frozenset(
    {"ext2", "ext3", "ext4", "xfs", "btrfs", "tmpfs", "overlay", "zfs", "f2fs", "ramfs"}
)
"""File system types whose every change goes through this machine's kernel, hence raises an
inotify event. Anything else (nfs, cifs, fuse.*, 9p, virtiofs, ceph, lustre ...) can change
under us from elsewhere without one, so it is scanned on each listing."""

_WATCH_MASK = (
    IN_CREATE | IN_MOVED_TO | IN_DELETE | IN_MOVED_FROM | IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR
)
_ADDED = IN_CREATE | IN_MOVED_TO
_REMOVED = IN_DELETE | IN_MOVED_FROM
_GONE = IN_DELETE_SELF | IN_MOVE_SELF | IN_IGNORED | IN_UNMOUNT
_MOUNTINFO = "/proc/self/mountinfo"

UNUSABLE_ENTRIES_KEPT = 10_000
"""Entries that cannot be followed whose keys are remembered, so that each is named once
although its folder is scanned on every listing. Further ones (a hostile or broken trial) are
left out and counted, not named (``unnamed_unusable_entries``)."""
_MOUNTINFO_ESCAPE = re.compile(r"\\([0-7]{3})")


class LocalStorage:
    """Keys are paths relative to ``root`` with ``/`` separators, as S3 keys under a prefix.

    ``incremental``: None decides by itself (events where the root's file system delivers them
    and inotify works), True uses events on any file system (OSError if inotify is unavailable),
    False scans every folder on every listing. Call ``close`` to release the inotify descriptor.
    """

    FOLDERS_KEPT = 8
    """Folders whose listing is kept up to date, the most recently listed: a following reader
    lists ``index/`` and the one or two folders at its cursor; replays walk on and evict."""

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        incremental: bool | None = None,
        rescan_seconds: float = RESCAN_SECONDS,
    ) -> None:
        self.root = Path(root)
        self._root_prefix = os.path.join(os.fspath(root), "")
        self.rescan_seconds = rescan_seconds
        self.listing_repairs = 0
        """Rescans that found what the events had missed (each switches to scanning): for tests."""
        self._lock = threading.Lock()
        self._decided = incremental is not None
        self._inotify: Inotify | None = None
        self._release: weakref.finalize[[], LocalStorage] | None = None
        self._root_device: int | None = None
        self._folders: OrderedDict[str, _Folder] = OrderedDict()
        self._by_wd: dict[int, _Folder] = {}
        self._watch_failure_logged = False
        self._unusable: list[UnusableEntry] = []
        """Entries met since the last ``take_unusable_entries`` that listings left out."""
        self._unusable_seen: set[str] = set()
        self._unnamed: dict[str, int] = {}
        if incremental:
            self._start_inotify()

    @property
    def location(self) -> str:
        """The folder, for messages."""
        return str(self.root)

    @property
    def local_path(self) -> str:
        """The folder itself: the runtime watches it for new steps."""
        return str(self.root)

    @property
    def incremental(self) -> bool:
        """Whether listings come from folders kept up to date by inotify (else: scans)."""
        return self._inotify is not None

    def exists(self) -> bool:
        """Whether the trial folder exists (a training job may not have created it yet); a
        root that loops or that this user may not look at raises ``TrialError``."""
        try:
            return stat.S_ISDIR(os.stat(self.root).st_mode)
        except (FileNotFoundError, NotADirectoryError):
            return False
        except OSError as error:
            raise TrialError(self._unusable_folder(os.fspath(self.root), error)) from error

    def take_unusable_entries(self) -> list[UnusableEntry]:
        """Entries listings left out since the last call (``ReportsUnusableEntries``)."""
        with self._lock:
            taken, self._unusable = self._unusable, []
        return taken

    @property
    def unnamed_unusable_entries(self) -> int:
        """Entries left out past the ``UNUSABLE_ENTRIES_KEPT`` named ones: per folder the most one
        scan met (none twice), one that cannot be opened as its key without ``/``."""
        with self._lock:
            return sum(self._unnamed.values())

    def list_keys(
        self, prefix: str, start_after: str | None = None, max_keys: int | None = None
    ) -> list[str]:
        """Keys starting with ``prefix``, in lexical order, strictly after ``start_after``.

        Folders whose keys all sort at or before ``start_after`` are not opened, so following a
        trial costs one look at ``index/`` (one entry per 1000 steps) plus the folders at or
        after the cursor, however many steps were consumed before. Missing folders list as
        empty: the trial may be created while we watch it. ``max_keys`` returns only the first
        keys and stops walking there, which bounds the work of one call.
        """
        if max_keys is not None and max_keys < 0:
            raise ValueError(f"max_keys must be at least 0, got {max_keys}")
        limit = sys.maxsize if max_keys is None else max_keys
        folder, _, name_prefix = prefix.rpartition("/")
        keys: list[str] = []
        if limit == 0:
            return keys
        with self._lock:
            if self._uses_events():
                # Every change completed before this point is applied before anything is served.
                self._apply(self._read_events())
                self._rescan_due_folders()
            self._collect(f"{folder}/" if folder else "", name_prefix, start_after, keys, limit)
        return keys

    def read_bytes(self, key: str) -> bytes:
        """The whole object (FileNotFoundError when it is missing) in one unbuffered read of the
        size ``fstat`` gives and one byte more, to see a file that grew: half the cost of
        ``open().read()`` for the small event files read at every step."""
        descriptor = os.open(self._path(key), os.O_RDONLY | os.O_CLOEXEC)
        try:
            size = os.fstat(descriptor).st_size
            data = os.read(descriptor, size + 1)
            if len(data) <= size:
                return data
            chunks = [data]
            while chunk := os.read(descriptor, max(size, 1 << 16)):
                chunks.append(chunk)
            return b"".join(chunks)
        finally:
            os.close(descriptor)

    def key_exists(self, key: str) -> bool:
        """Whether an object (not a folder) exists at ``key``."""
        return os.path.isfile(self._path(key))

    def modified_time(self, key: str) -> float | None:
        """The file's modification time, None when it does not exist."""
        try:
            return os.stat(self._path(key)).st_mtime
        except OSError:  # missing, or a link that cannot be followed: the caller's clock
            return None

    def close(self) -> None:
        """Release the inotify descriptor and its watches; later listings scan. Idempotent."""
        with self._lock:
            self._stop_inotify()
            self._decided = True

    def _path(self, key: str) -> str:
        """The file of ``key``; plain strings, since this runs for every file read."""
        if not is_safe_key(key):
            raise ValueError(f"key {key!r} is not a relative path inside the trial {self.root}")
        return self._root_prefix + key

    # -- walking -----------------------------------------------------------------------------

    def _collect(
        self,
        folder_key: str,
        name_prefix: str,
        start_after: str | None,
        keys: list[str],
        limit: int,
    ) -> bool:
        """Append the keys under ``folder_key`` (which ends in ``/`` or is empty) in order.

        Returns True once ``keys`` holds ``limit`` keys. Only the entries from the first one
        after the cursor are looked at: ``_first_unconsumed`` finds it by bisection, and the
        checks in the loop state the rule it applies.
        """
        names = self._entries(folder_key, name_prefix)
        start = max(
            bisect.bisect_left(names, name_prefix),
            _first_unconsumed(names, folder_key, start_after),
        )
        for position in range(start, len(names)):
            name = names[position]
            if not name.startswith(name_prefix):
                break  # names with the prefix are contiguous, and none come after this one
            key = folder_key + name
            if name.endswith("/"):
                if _folder_is_consumed(key, start_after):
                    continue
                if self._collect(key, "", start_after, keys, limit):
                    return True
            elif start_after is None or key > start_after:
                keys.append(key)
                if len(keys) >= limit:
                    return True
        return False

    def _entries(self, folder_key: str, name_prefix: str) -> Sequence[str]:
        """Sorted names of one folder, folder names ending with ``/``, some perhaps without
        ``name_prefix``; called for every folder a listing opens (tests wrap it to count them).

        The trailing ``/`` makes sorting names give the lexical order of the full keys, as S3
        lists them (``a.b`` sorts before ``a/x``). The sequence may be a kept listing: callers
        only read it, and only until the next ``list_keys``.
        """
        if self._inotify is not None and self._root_device is not None:
            names = self._kept_names(folder_key)
            if names is not None:
                return names
        return self._scan(folder_key, name_prefix)

    def _scan(self, folder_key: str, name_prefix: str) -> list[str]:
        """Sorted names read now (those starting with ``name_prefix``); an entry whose kind cannot
        be told, or a folder that cannot be opened, is left out and reported; denied: TrialError."""
        path = self._folder_path(folder_key)
        names: list[str] = []
        unnamed = 0
        try:
            with os.scandir(path) as scan:
                for entry in scan:
                    if not entry.name.startswith(name_prefix):
                        continue
                    try:
                        names.append(f"{entry.name}/" if entry.is_dir() else entry.name)
                    except OSError as error:
                        unnamed += self._left_out(folder_key + entry.name, error)
        except (FileNotFoundError, NotADirectoryError):
            return []
        except PermissionError as error:
            raise TrialError(self._unusable_folder(path, error)) from error
        except OSError as error:
            self._unnamed[folder_key[:-1]] = self._left_out(folder_key, error)
            return []
        if unnamed > self._unnamed.get(folder_key, 0):
            self._unnamed[folder_key] = unnamed
        names.sort()
        return names

    def _left_out(self, key: str, error: OSError) -> int:
        """Remember an entry a listing leaves out, to be named once; 1 if past the kept ones."""
        if key in self._unusable_seen or len(self._unusable_seen) >= UNUSABLE_ENTRIES_KEPT:
            return int(key not in self._unusable_seen)
        self._unusable_seen.add(key)
        why = f"[Errno {error.errno}] {error.strerror}" if error.strerror else str(error)
        self._unusable.append(UnusableEntry(key, why))
        return 0

    def _unusable_folder(self, path: str, error: OSError) -> str:
        """Why a folder cannot be read, as what to change."""
        where = shortened(path)
        what = "the trial folder" if path == os.fspath(self.root) else "the trial's folder"
        if error.errno == errno.ELOOP:
            return (
                f"Expected {what} {where} to be a folder, but it is a symbolic link that loops "
                f"({error.strerror}): point --trial / base_trial at the real folder"
            )
        if not isinstance(error, PermissionError):
            return f"Expected to read {what} {where}, but cannot ({error}): check it"
        try:
            owner = os.lstat(path)
            mode = owner.st_mode & 0o7777
            found = f"owned by uid {owner.st_uid}, gid {owner.st_gid}, mode {mode:04o}"
        except OSError:
            found = "not even to be looked at (a folder above it is not searchable)"
        return (
            f"Expected to read {what} {where}, but this user may not ({error.strerror}): "
            f"the evaluator runs as uid {os.geteuid()}, gid {os.getegid()}, and the folder is "
            f"{found}. Make the trial readable by this user (chmod -R a+rX on the trial), or run "
            f"the evaluator as the user or a group that may read it (in Kubernetes: runAsUser, "
            f"fsGroup)"
        )

    def _folder_path(self, folder_key: str) -> str:
        return self._root_prefix + folder_key if folder_key else os.fspath(self.root)

    # -- folders kept up to date by events ---------------------------------------------------

    def _uses_events(self) -> bool:
        """Whether this listing is served from kept folders; decides on the first listing
        after the root appears (its file system is only known then)."""
        if self._root_device is None and (self._inotify is not None or not self._decided):
            try:
                root = os.stat(self.root)
            except OSError:
                return False
            if not stat.S_ISDIR(root.st_mode):
                return False
            if not self._decided:
                self._decided = True
                fstype = _filesystem_type_of(self.root)
                if fstype not in INOTIFY_FILESYSTEMS:
                    log.info("%s is on %s: listings scan folders", self.root, fstype or "?")
                    return False
                try:
                    self._start_inotify()
                except OSError as error:
                    log.info("inotify unavailable (%s): listings scan folders", error)
                    return False
            self._root_device = root.st_dev
        return self._inotify is not None

    def _start_inotify(self) -> None:
        inotify = Inotify()
        self._inotify = inotify
        # A reader dropped without close() must not hold the descriptor till the process ends.
        self._release = weakref.finalize(self, inotify.close)

    def _stop_inotify(self) -> None:
        self._folders.clear()
        self._by_wd.clear()
        if self._release is not None:
            self._release()  # closes the descriptor, which ends every watch with it
            self._release = None
        self._inotify = None

    def _kept_names(self, folder_key: str) -> list[str] | None:
        """The kept listing of ``folder_key``, starting to keep it if needed; None: scan it.

        The folder's identity (device and inode) is checked on each visit, one ``stat``: a
        parent folder renamed, or a symbolic link on the way changed, brings another folder to
        the same path without an event on the watched one.
        """
        path = self._folder_path(folder_key)
        folder = self._folders.get(folder_key)
        try:
            status = os.stat(path)
        except OSError:
            status = None
        if status is None or not stat.S_ISDIR(status.st_mode):
            if folder is not None:
                self._forget(folder)
            return None
        if folder is not None and folder.identity != (status.st_dev, status.st_ino):
            self._forget(folder)
            folder = None
        if folder is None:
            if status.st_dev != self._root_device:
                return None  # another mount inside the trial: its type is unknown
            folder = self._keep(folder_key, path)
            if folder is None:
                return None
        self._folders.move_to_end(folder_key)
        return folder.names

    def _keep(self, folder_key: str, path: str) -> _Folder | None:
        """Watch a folder, then read it: a change after the read raises an event; one between
        the two raises an event too, whose replay onto the read gives the same result."""
        assert self._inotify is not None
        try:
            wd = self._inotify.add_watch(path, _WATCH_MASK)
        except OSError as error:
            if error.errno not in (errno.ENOENT, errno.ENOTDIR) and not self._watch_failure_logged:
                self._watch_failure_logged = True
                log.warning("cannot watch %s (%s): scanning it on each listing", path, error)
            return None
        if wd in self._by_wd:
            return None  # the same folder under another key (a symbolic link): scan this one
        read = _read_folder(path)
        if read is None or read.links or read.identity[0] != self._root_device:
            self._unwatch(wd)
            return None
        folder = _Folder(folder_key, path, wd, read.identity, read.names, time.monotonic())
        self._folders[folder_key] = folder
        self._by_wd[wd] = folder
        while len(self._folders) > self.FOLDERS_KEPT:
            self._forget(next(iter(self._folders.values())))
        return folder

    def _forget(self, folder: _Folder) -> None:
        """Stop keeping a folder; the next visit reads it afresh."""
        if self._folders.get(folder.key) is folder:
            del self._folders[folder.key]
        if self._by_wd.get(folder.wd) is folder:
            del self._by_wd[folder.wd]
            self._unwatch(folder.wd)

    def _unwatch(self, wd: int) -> None:
        if self._inotify is not None:
            with contextlib.suppress(OSError):  # EINVAL: the kernel removed it already
                self._inotify.rm_watch(wd)

    def _read_events(self) -> list[Event]:
        assert self._inotify is not None
        try:
            return self._inotify.read_events()
        except (OSError, ValueError) as error:
            log.warning("reading inotify events failed (%s): listings scan from now on", error)
            self._stop_inotify()
            return []

    def _apply(self, events: Iterable[Event]) -> None:
        """Bring the kept folders up to date with ``events``, in the order they happened.

        A file added may be a symbolic link, which a scan follows (a link to a folder lists as
        that folder) and whose target can change without an event here: a folder holding one
        is forgotten. Checked once per batch, for the names still there at its end, so the
        ``.tmp`` name of a file renamed into place costs nothing.
        """
        added: dict[int, set[str]] = {}
        for event in events:
            if event.mask & IN_Q_OVERFLOW:
                # Events were dropped: nothing kept can be trusted until read again.
                for kept in list(self._folders.values()):
                    self._forget(kept)
                continue
            folder = self._by_wd.get(event.wd)
            if folder is None:
                continue  # a watch we stopped; its last events were still queued
            if event.mask & _GONE:
                self._forget(folder)
                continue
            _apply_event(folder.names, event)
            if event.mask & _ADDED and not event.is_dir:
                added.setdefault(event.wd, set()).add(event.name)
        for wd, names in added.items():
            folder = self._by_wd.get(wd)
            if folder is not None and any(
                _contains(folder.names, name) and _is_link(f"{folder.path}/{name}")
                for name in names
            ):
                self._forget(folder)

    def _rescan_due_folders(self) -> None:
        """The safety net: read each kept folder again every ``rescan_seconds`` and compare.

        Changes between the last drain and the rescan are in the queue by the time the rescan
        ends, so the queue is read again and its events applied to both the kept names and the
        rescan: whatever still differs was missed by the events. Done before the walk, so the
        names a walk iterates over never change under it.
        """
        now = time.monotonic()
        for folder in list(self._folders.values()):
            if self._inotify is None:
                return
            if self._by_wd.get(folder.wd) is not folder:
                continue  # forgotten by the events of an earlier rescan
            if now - folder.scanned_at < self.rescan_seconds:
                continue
            read = _read_folder(folder.path)
            events = self._read_events()
            if read is not None:
                for event in events:
                    if event.wd == folder.wd:
                        _apply_event(read.names, event)
            self._apply(events)
            if self._by_wd.get(folder.wd) is not folder:
                continue
            if read is None or read.links or read.identity != folder.identity:
                self._forget(folder)  # no longer the watched folder there: the walk looks again
                continue
            if read.names != folder.names:
                self._repair(folder, read.names)
                return
            folder.scanned_at = now

    def _repair(self, folder: _Folder, fresh: list[str]) -> None:
        missed = sorted(set(fresh) - set(folder.names))
        stale = sorted(set(folder.names) - set(fresh))
        self.listing_repairs += 1
        log.warning(
            "the kept listing of %s missed %d name(s) (%s) and kept %d gone (%s): inotify "
            "events cannot be trusted here, listings scan from now on",
            folder.path,
            len(missed),
            ", ".join(missed[:3]),
            len(stale),
            ", ".join(stale[:3]),
        )
        self._stop_inotify()


@dataclass(eq=False, slots=True)
class _Folder:
    """The kept listing of one watched folder."""

    key: str
    path: str
    wd: int
    identity: tuple[int, int]
    names: list[str]
    scanned_at: float


@dataclass(frozen=True, slots=True)
class _Read:
    """One folder read through its descriptor, so that identity and names are the same one's."""

    identity: tuple[int, int]
    names: list[str]
    links: bool


def _read_folder(path: str) -> _Read | None:
    """Read the folder at ``path``; None when there is no folder there (any more)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return None  # gone, or not to be opened: the listing scans it and says why
    try:
        status = os.fstat(fd)
        names: list[str] = []
        links = False
        with os.scandir(fd) as scan:
            # Inside the block: for some entries is_dir() needs a stat relative to the folder.
            for entry in scan:
                try:
                    links = links or entry.is_symlink()
                    names.append(f"{entry.name}/" if entry.is_dir() else entry.name)
                except OSError:
                    links = True  # not to be kept: a scan leaves it out and reports it
    except OSError:
        return None
    finally:
        os.close(fd)
    names.sort()
    return _Read((status.st_dev, status.st_ino), names, links)


def _apply_event(names: list[str], event: Event) -> None:
    """Apply one event about an entry of a folder to its sorted ``names`` (folders end with /).

    A name added twice or removed when absent is left alone. Applied in order, the events of a
    name leave it as the last one says, whatever ``names`` held before: that is why events
    queued between a watch and the first read of the folder may be replayed onto that read.
    """
    if not event.mask & (_ADDED | _REMOVED) or not event.name:
        return
    name = f"{event.name}/" if event.is_dir else event.name
    index = bisect.bisect_left(names, name)
    present = index < len(names) and names[index] == name
    if event.mask & _ADDED:
        if not present:
            names.insert(index, name)
    elif present:
        del names[index]


def _contains(names: Sequence[str], name: str) -> bool:
    index = bisect.bisect_left(names, name)
    return index < len(names) and names[index] == name


def _is_link(path: str) -> bool:
    """Whether ``path`` is a symbolic link; a name already gone is none (its removal event is
    queued, and a later link there raises an event of its own)."""
    try:
        return stat.S_ISLNK(os.lstat(path).st_mode)
    except OSError:
        return False


def _first_unconsumed(names: Sequence[str], folder_key: str, start_after: str | None) -> int:
    """Where in ``names`` (of the folder ``folder_key``) the keys after ``start_after`` begin.

    Everything before it is a file at or before the cursor or a consumed folder, everything from
    it on is kept by ``_collect``'s checks: the entries after the cursor, and before them the
    one folder the cursor lies in (``rest[:slash + 1]``), which sorts just before the cursor.
    """
    if start_after is None:
        return 0
    if not start_after.startswith(folder_key):
        # Every key under the folder sorts on the same side of the cursor as the folder.
        return 0 if folder_key > start_after else len(names)
    rest = start_after[len(folder_key) :]
    index = bisect.bisect_right(names, rest)
    slash = rest.find("/")
    if slash >= 0 and index > 0 and names[index - 1] == rest[: slash + 1]:
        return index - 1
    return index


def _folder_is_consumed(folder_key: str, start_after: str | None) -> bool:
    """Whether every key under ``folder_key`` sorts at or before ``start_after``."""
    if start_after is None or start_after.startswith(folder_key):
        return False
    return folder_key < start_after


def filesystem_type(mountinfo: str, path: str) -> str | None:
    """The type of the file system holding ``path`` (absolute, symbolic links resolved),
    from the text of ``/proc/self/mountinfo``; None if no mount point covers it.

    The longest mount point that is ``path`` or one of its parents wins; of equal ones the
    last listed, which is mounted on top. Lines look like ``36 35 98:0 /root /mnt/point rw,
    noatime shared:1 - ext4 /dev/sda1 rw``: the mount point is the fifth field (spaces and
    the like written as octal escapes), the type follows the ``-`` separator.
    """
    best: tuple[int, str] | None = None
    for line in mountinfo.splitlines():
        fields = line.split()
        if len(fields) < 7 or "-" not in fields[6:]:
            continue
        separator = fields.index("-", 6)
        if separator + 1 >= len(fields):
            continue
        mount_point = _MOUNTINFO_ESCAPE.sub(lambda match: chr(int(match[1], 8)), fields[4])
        if not _is_within(path, mount_point):
            continue
        if best is None or len(mount_point) >= best[0]:
            best = (len(mount_point), fields[separator + 1])
    return best[1] if best is not None else None


def _is_within(path: str, folder: str) -> bool:
    if folder == "/":
        return path.startswith("/")
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def _filesystem_type_of(root: Path) -> str | None:
    """The file system type of ``root``, None when it cannot be told (then: scan)."""
    try:
        with open(_MOUNTINFO, "rb") as handle:
            mountinfo = os.fsdecode(handle.read())
    except OSError:
        return None
    return filesystem_type(mountinfo, os.path.realpath(root))
