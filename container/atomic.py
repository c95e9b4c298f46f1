"""Atomic file writes: readers of the status file, reports and checkpoints never see half a file,
a failed write leaves the previous file whole and no temporary behind, and the temporaries a
killed writer could not remove are removed by the next run that writes the same file.

A temporary is named ``.NAME.PID-RANDOM.tmp`` after its target and the process writing it, so a
later run can tell a dead writer's leftover from a live writer's file in progress and removes
only the first: exactly the temporaries of the files it writes itself, never another file.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import time
from pathlib import Path

log = logging.getLogger("classimbalance.files")

_TEMPORARY_FLAGS = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_TEMPORARY_ATTEMPTS = 100
_RANDOM_BYTES = 6

LEGACY_TEMPORARY_AGE = 600.0
"""Seconds after which a temporary of the earlier naming (``.NAME.RANDOM.tmp``, without the
writer's pid) counts as left behind: far longer than one write takes (a 100 MB status on a
10 MB/s disk takes 10 s), so only a killed writer's leftover is that old."""

_CLEANED: set[str] = set()
"""Targets whose stale temporaries this process already removed: once per file and process, at
its first write or when a run names the files it will write (``remove_stale_temporaries``)."""


class FileWriteError(OSError):
    """A file could not be written; ``str`` says which, the system's reason and what to change.

    An ``OSError`` (with the cause's ``errno`` and ``strerror``), so a caller that handles any
    failure of the file system handles this one too."""

    def __init__(
        self, path: Path, cause: OSError, *, what: str, setting: str | None, size: int
    ) -> None:
        super().__init__(cause.errno, cause.strerror or str(cause), str(path))
        self.path = path
        self.what = what
        self.setting = setting
        self.size = size

    def __str__(self) -> str:
        code = errno.errorcode.get(self.errno or 0, "")
        reason = f"{self.strerror} ({code})" if code else str(self.strerror)
        instead = f"; set {self.setting} to a writable path" if self.setting else ""
        return f"cannot write {self.what} {self.path}: {reason}: {self._advice()}{instead}"

    def _advice(self) -> str:
        folder = self.path.parent
        if self.errno in (errno.ENOSPC, errno.EDQUOT):
            return (
                f"it needs {_kib(self.size)} KiB free on the file system holding {folder}"
                f"{_free_space(folder)} (the new file is written whole beside the old one, "
                f"which it then replaces): free space there"
            )
        if self.errno in (errno.EACCES, errno.EPERM):
            return f"let user {os.getuid()} create and rename files in {folder}"
        if self.errno == errno.EROFS:
            return f"mount the file system holding {folder} writable"
        if self.errno in (errno.ENOENT, errno.ENOTDIR, errno.EEXIST):
            return f"make {folder} a folder"
        if self.errno == errno.EISDIR:
            return f"{self.path} is a folder: name a file"
        if self.errno == errno.EIO:
            return f"check the device holding {folder} (it reported an I/O error)"
        return f"check the file system holding {folder}"


def _kib(size: int) -> int:
    return max(1, -(-size // 1024))


def _free_space(folder: Path) -> str:
    """``, which has N KiB`` (free to this user), as far as the file system says."""
    try:
        stats = os.statvfs(folder)
    except OSError:
        return ""
    return f", which has {stats.f_bavail * stats.f_frsize // 1024} KiB"


def write_text_atomically(
    path: str | os.PathLike[str],
    text: str,
    *,
    what: str = "the file",
    setting: str | None = None,
    error: type[FileWriteError] = FileWriteError,
) -> None:
    """Write ``text`` to a temporary file beside ``path``, flush it to disk, rename it over
    ``path``, then flush the folder: the rename is what makes the new content the file's, and
    only a flushed folder keeps the rename through a power cut.

    The rename is atomic on POSIX file systems, so a reader sees the old or the new content,
    never a mix. Any failure removes the temporary and raises ``error`` (a ``FileWriteError``
    naming ``what`` and the ``setting`` that chooses the path); ``path`` keeps its previous
    content. Text that UTF-8 cannot hold (a lone surrogate, from a path of undecodable bytes)
    is written as its backslash escape rather than failing the write.
    """
    target = Path(path)
    data = text.encode("utf-8", errors="backslashreplace")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        if str(target) not in _CLEANED:
            remove_stale_temporaries([target])
        _write_and_rename(target, data)
    except OSError as exc:
        if isinstance(exc, FileWriteError):
            raise
        raise error(target, exc, what=what, setting=setting, size=len(data)) from exc


def _write_and_rename(target: Path, data: bytes) -> None:
    handle, temporary = _create_temporary(target)
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temporary, 0o644)
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    _flush_folder(target.parent)


def _flush_folder(folder: Path) -> None:
    """fsync the folder, so the rename outlives a crash of the machine. A folder this process
    cannot open for reading (write and search permission only), or a file system that does
    not flush folders (EINVAL: some network and FUSE file systems), keeps the rename that
    already happened: the write is whole either way, only not yet certain on the disk."""
    try:
        descriptor = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except PermissionError:
        return
    try:
        os.fsync(descriptor)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(descriptor)


def _create_temporary(target: Path) -> tuple[int, str]:
    """A new file ``.NAME.PID-RANDOM.tmp`` beside ``target``, created exclusively with mode
    0600, as ``tempfile.mkstemp`` makes it: (descriptor, path). Not tempfile itself, whose
    imports (shutil, random, bz2, lzma) cost ~5 ms of the command's start-up, which writes the
    status file before it first looks at the trial."""
    for _ in range(_TEMPORARY_ATTEMPTS):
        name = f".{target.name}.{os.getpid()}-{os.urandom(_RANDOM_BYTES).hex()}.tmp"
        temporary = os.path.join(target.parent, name)
        try:
            return os.open(temporary, _TEMPORARY_FLAGS, 0o600), temporary
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, f"no unused temporary name beside {target}")


def remove_stale_temporaries(targets: list[Path]) -> int:
    """Remove the temporaries that writers of ``targets`` left behind when they were killed
    (``kill -9``, a lost node) before they could remove them; how many were removed.

    Only temporaries of exactly these files, by this module's naming, and only those whose
    writer is gone: no process has its pid any more, or the process with its pid started after
    the temporary was last written (the pid was reused, as a restarted container's pid 1 is).
    A live writer's temporary stays, this process's own included. A file that cannot be
    listed or removed is left alone: the write that follows says what is wrong, if anything."""
    removed = 0
    for target in targets:
        _CLEANED.add(str(target))
        for temporary in _stale_temporaries(target):
            try:
                os.unlink(temporary)
            except FileNotFoundError:
                continue  # removed meanwhile (by another run cleaning up)
            except OSError:
                break
            removed += 1
    if removed:
        log.info(
            "removed %d temporary file(s) left by an earlier run that was killed while writing",
            removed,
            extra={"event": "stale_temporaries_removed", "count": removed},
        )
    return removed


def _stale_temporaries(target: Path) -> list[str]:
    pattern = re.compile(
        rf"\.{re.escape(target.name)}\.(?:(?P<pid>[0-9]+)-)?[0-9a-f]{{{2 * _RANDOM_BYTES}}}\.tmp"
    )
    prefix = f".{target.name}."
    stale = []
    try:
        with os.scandir(target.parent) as entries:
            candidates = [
                (entry, matched)
                for entry in entries
                if entry.name.startswith(prefix) and (matched := pattern.fullmatch(entry.name))
            ]
    except OSError:
        return []
    for entry, matched in candidates:
        try:
            if not entry.is_file(follow_symlinks=False):
                continue
            written_at = entry.stat(follow_symlinks=False).st_mtime
        except OSError:
            continue  # gone meanwhile: its writer renamed or removed it
        pid = matched.group("pid")
        if _writer_gone(int(pid) if pid else None, written_at):
            stale.append(entry.path)
    return stale


def _writer_gone(pid: int | None, written_at: float) -> bool:
    """Whether the writer of a temporary last written at ``written_at`` can no longer be
    writing it. ``pid`` None: the earlier naming, judged by its age alone."""
    if pid is None:
        return time.time() - written_at > LEGACY_TEMPORARY_AGE
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # alive, another user's
    except OverflowError:
        return True  # no pid is that large
    started = _process_start(pid)
    return started is not None and started > written_at


def _process_start(pid: int) -> float | None:
    """When process ``pid`` started (seconds since the epoch), rounded down to the second the
    kernel's boot time is given in, so never later than it really started; None where there
    is no /proc to ask (or the process just ended)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stream:
            fields = stream.read().rsplit(b")", 1)[1].split()
        with open("/proc/stat", "rb") as stream:
            boot = next(int(line.split()[1]) for line in stream if line.startswith(b"btime "))
        return boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError, StopIteration):
        return None
