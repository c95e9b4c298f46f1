"""Atomic file writes: readers of the status file, reports and checkpoints never see half a file,
a failed write leaves the previous file whole and no temporary behind, and the temporaries a
killed writer could not remove are removed by the next run that writes the same file.

A temporary is named ``.NAME.PID-HOST-RANDOM.tmp`` after its target, the process writing it and
HOST, a short hash of the machine's boot and the writer's pid namespace (``_host_token``), so a
later run can tell a dead writer's leftover from a live writer's file in progress and removes
only the first: exactly the temporaries of the files it writes itself, never another file. A
pid names a process only within one pid namespace of one machine, and a shared volume may be
written from several (another container, another pod): a temporary of another HOST, or of an
earlier naming without one, is judged by its age instead (``LEGACY_TEMPORARY_AGE``).
"""

from __future__ import annotations

import contextlib
import errno
import functools
import logging
import os
import re
import time
import zlib
from pathlib import Path

log = logging.getLogger("classimbalance.files")

_TEMPORARY_FLAGS = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_TEMPORARY_ATTEMPTS = 100
_RANDOM_BYTES = 6
_HOST_DIGITS = 8

LEGACY_TEMPORARY_AGE = 600.0
"""Seconds after which a temporary whose writer this process cannot ask about counts as left
behind: one of another machine or pid namespace (another HOST), of the earlier namings without
the writer's pid (``.NAME.RANDOM.tmp``) or HOST (``.NAME.PID-RANDOM.tmp``), or any when this
process has no HOST of its own. Far longer than one write takes (a 100 MB status on a 10 MB/s
disk takes 10 s), so only a killed writer's leftover is that old."""

_CLEANED: set[str] = set()
"""Targets whose stale temporaries this process already removed: once per file and process, at
its first write or when a run names the files it will write (``remove_stale_temporaries``)."""


class _NoTemporaryName(FileExistsError):
    """Every random name tried for a temporary was taken (EEXIST, but not of the folder)."""


class FileWriteError(OSError):
    """A file could not be written; ``str`` says which, the system's reason and what to change.

    An ``OSError`` (with the cause's ``errno`` and ``strerror``), so a caller that handles any
    failure of the file system handles this one too. ``replaced``: the new content did replace
    the file, only the folder could not be flushed after the rename, so it may not outlive a
    crash of the machine."""

    def __init__(
        self,
        path: Path,
        cause: OSError,
        *,
        what: str,
        setting: str | None,
        size: int,
        replaced: bool = False,
    ) -> None:
        super().__init__(cause.errno, cause.strerror or str(cause), str(path))
        self.path = path
        self.what = what
        self.setting = setting
        self.size = size
        self.replaced = replaced
        self.no_temporary_name = isinstance(cause, _NoTemporaryName)

    def __str__(self) -> str:
        code = errno.errorcode.get(self.errno or 0, "")
        reason = f"{self.strerror} ({code})" if code else str(self.strerror)
        if self.replaced:
            return (
                f"{self.what} {self.path} was replaced, but its folder could not be flushed "
                f"to disk after the rename: {reason}: the new content may not survive a crash "
                f"or power cut of the machine; {self._advice()}"
            )
        instead = f"; set {self.setting} to a writable path" if self.setting else ""
        return f"cannot write {self.what} {self.path}: {reason}: {self._advice()}{instead}"

    def _advice(self) -> str:
        folder = self.path.parent
        if self.no_temporary_name:
            return (
                f"each of {_TEMPORARY_ATTEMPTS} new random names for its temporary in {folder} "
                f"was reported as taken, which only a faulty file system does: check the file "
                f"system holding {folder}"
            )
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
    content. Only a folder that cannot be flushed after the rename raises with the new content
    in place (``replaced``: it may not survive a crash of the machine). Text that UTF-8 cannot
    hold (a lone surrogate, from a path of undecodable bytes) is written as its backslash
    escape rather than failing the write.
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
    try:
        _flush_folder(target.parent)
    except OSError as exc:
        raise error(target, exc, what=what, setting=setting, size=len(data), replaced=True) from exc


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
    """A new file ``.NAME.PID-HOST-RANDOM.tmp`` beside ``target`` (``.NAME.PID-RANDOM.tmp``
    where there is no HOST), created exclusively with mode 0600, as ``tempfile.mkstemp`` makes
    it: (descriptor, path). Not tempfile itself, whose imports (shutil, random, bz2, lzma) cost
    ~5 ms of the command's start-up, which writes the status file before it first looks at the
    trial."""
    host = _host_token()
    writer = f"{os.getpid()}-{host}" if host else str(os.getpid())
    for _ in range(_TEMPORARY_ATTEMPTS):
        name = f".{target.name}.{writer}-{os.urandom(_RANDOM_BYTES).hex()}.tmp"
        temporary = os.path.join(target.parent, name)
        try:
            return os.open(temporary, _TEMPORARY_FLAGS, 0o600), temporary
        except FileExistsError:
            continue
    raise _NoTemporaryName(errno.EEXIST, os.strerror(errno.EEXIST), str(target))


@functools.cache
def _host_token() -> str | None:
    """HOST: 8 hex digits naming this boot of this machine and this process's pid namespace,
    the extent within which a pid names one process (a CRC-32 of the kernel's boot id and the
    namespace's inode; neither alone: every machine's first namespace has the same inode).
    None where /proc cannot tell: every temporary is then judged by its age."""
    try:
        with open("/proc/sys/kernel/random/boot_id", "rb") as stream:
            boot = stream.read().strip()
        namespace = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return None
    if not boot:
        return None
    return f"{zlib.crc32(boot + b'/' + str(namespace).encode()):0{_HOST_DIGITS}x}"


def remove_stale_temporaries(targets: list[Path]) -> int:
    """Remove the temporaries that writers of ``targets`` left behind when they were killed
    (``kill -9``, a lost node) before they could remove them; how many were removed.

    Only temporaries of exactly these files, by this module's naming, and only those whose
    writer is gone: for a writer of this process's HOST, no process has its pid any more, or
    the process with its pid started after the temporary was last written (the pid was reused,
    as a restarted container's pid 1 is); for any other, the temporary was last written more
    than ``LEGACY_TEMPORARY_AGE`` ago. A live writer's temporary stays, this process's own and
    another container's on a shared volume included. A file that cannot be
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
        rf"\.{re.escape(target.name)}\."
        rf"(?:(?P<pid>[0-9]+)-(?:(?P<host>[0-9a-f]{{{_HOST_DIGITS}}})-)?)?"
        rf"[0-9a-f]{{{2 * _RANDOM_BYTES}}}\.tmp"
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
        if _writer_gone(int(pid) if pid else None, matched.group("host"), written_at):
            stale.append(entry.path)
    return stale


def _writer_gone(pid: int | None, host: str | None, written_at: float) -> bool:
    """Whether the writer of a temporary last written at ``written_at`` can no longer be
    writing it. By its ``pid`` only when its ``host`` is this process's: elsewhere that pid is
    another process or none, although the writer may be writing (another container on the same
    volume). Otherwise (another HOST, an earlier naming without one, or without the pid: None)
    by its age alone."""
    if pid is None or host is None or host != _host_token():
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
