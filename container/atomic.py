"""Atomic file writes: readers of the status file, reports and checkpoints never see half a file."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

_TEMPORARY_FLAGS = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_TEMPORARY_ATTEMPTS = 100


def write_text_atomically(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to a temporary file beside ``path``, flush it to disk, then rename.

    The rename is atomic on POSIX file systems, so a reader sees the old or the new content,
    never a mix; a crash leaves at most a stray ``.tmp`` file, never a truncated target.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = _create_temporary(target)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temporary, 0o644)
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


def _create_temporary(target: Path) -> tuple[int, str]:
    """A new file ``.NAME.RANDOM.tmp`` beside ``target``, created exclusively with mode 0600,
    as ``tempfile.mkstemp`` makes it: (descriptor, path). Not tempfile itself, whose imports
    (shutil, random, bz2, lzma) cost ~5 ms of the command's start-up, which writes the status
    file before it first looks at the trial."""
    for _ in range(_TEMPORARY_ATTEMPTS):
        temporary = os.path.join(target.parent, f".{target.name}.{os.urandom(6).hex()}.tmp")
        try:
            return os.open(temporary, _TEMPORARY_FLAGS, 0o600), temporary
        except FileExistsError:
            continue
    raise FileExistsError(f"no unused temporary name beside {target}")
