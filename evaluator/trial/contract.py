"""The contract between the native reader and where a trial lives, and the reader's errors.

A storage backend (a local folder, an S3 prefix; GCS or Azure next) implements ``TrialStorage``
and imports this module only: it never sees the reader, and the reader never sees a backend.
That keeps backends independent of each other and of the reader (an import-linter contract).

Failures come in two kinds, because the reader acts on them differently:

- ``StorageUnavailable``: may pass (throttling, a 5xx answer, the network). The reader returns
  nothing from that poll and tries again on the next one; nothing is lost or counted twice.
- ``TrialError``: will not pass by waiting (no such bucket, access refused, a trial that is not
  an smdebug trial). The evaluation ends with status Error and this message, which says what was
  expected, what was found and what to change.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable


class TrialError(Exception):
    """The trial cannot be read at all (missing, unreadable or malformed beyond one step).

    The message says what was expected, what was found and what to change.
    """


class StorageUnavailable(OSError):
    """A storage call failed in a way that may pass (throttled, 5xx, network) after retries.

    ``poll`` answers it by returning nothing and trying again next time; a part whose file
    cannot be fetched is retried on later polls like a malformed one, then skipped.
    """


class TrialStorage(Protocol):
    """What the reader needs from where the trial lives (a local folder or an S3 prefix).

    Keys are relative to the trial root and use ``/``. A storage raises ``StorageUnavailable``
    for failures that may pass and ``TrialError`` for those that will not.
    """

    @property
    def location(self) -> str:
        """The trial's path or URI, for messages."""
        ...

    @property
    def local_path(self) -> str | None:
        """The trial's folder when it is on this machine's file system (so the runtime can
        watch it for changes), None for remote storage."""
        ...

    def exists(self) -> bool:
        """Whether the trial root exists yet."""
        ...

    def list_keys(
        self, prefix: str, start_after: str | None = None, max_keys: int | None = None
    ) -> list[str]:
        """Keys under ``prefix`` in lexical order, strictly after ``start_after``.

        With ``max_keys`` the storage may stop once it has at least that many (the first ones
        in order); fewer than ``max_keys`` means the listing reached the end.
        """
        ...

    def read_bytes(self, key: str) -> bytes:
        """The whole object; FileNotFoundError when missing."""
        ...

    def key_exists(self, key: str) -> bool:
        """Whether the object exists."""
        ...

    def modified_time(self, key: str) -> float | None:
        """When the object was last written (Unix time); None when it does not exist or the
        storage does not say."""
        ...

    def close(self) -> None:
        """Release descriptors, watches or connections; idempotent."""
        ...


@runtime_checkable
class RangeReadable(Protocol):
    """A storage that can return part of an object, where a whole object costs real money."""

    def read_range(self, key: str, start: int, length: int) -> tuple[bytes, int]:
        """Up to ``length`` bytes of ``key`` from ``start`` and the object's total size.

        Fewer bytes come back at the end of the object; FileNotFoundError when it is missing.
        """
        ...


@dataclass(frozen=True)
class UnusableEntry:
    """An entry a listing left out because it cannot be followed or read: a symbolic link that
    loops or points at what cannot be looked at, a folder that cannot be opened."""

    key: str
    """The entry's key; a folder's ends with ``/``."""
    why: str
    """The system's word for it (``[Errno 40] Too many levels of symbolic links``)."""


@runtime_checkable
class ReportsUnusableEntries(Protocol):
    """A storage whose listings can meet entries they cannot follow (a local folder): it leaves
    them out, and says so once each, for the reader to count as skipped."""

    def take_unusable_entries(self) -> list[UnusableEntry]:
        """The entries left out since the last call, each only the first time it was met."""
        ...
