"""What a trial is, by its content: a checkpoint must resume the trial it was saved for.

A trial's path says where it is, not what it is: a trial deleted and written again at the same
path (a Kubernetes Job rerun over the same claim) is another trial, and counts of the old one
must not be merged into it. The first collections file names the collections and workers, and
the first event file holds the first step's tensors and the wall time smdebug stamps on every
record: together they differ between any two runs, however alike their settings.

An identity keeps the keys it was made of. A resumed run hashes those same keys again rather
than whatever is first now: a worker whose first step lands late would otherwise change which
file is first and refuse a checkpoint of the very same trial. Only the first ``HEAD_BYTES`` of
each file are hashed: the wall times are at its start, and an event file of dense tensors can
be hundreds of megabytes.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from evaluator.trial.contract import RangeReadable, TrialStorage
from evaluator.trial.layout import (
    COLLECTIONS_PREFIX,
    INDEX_PREFIX,
    event_key,
    is_safe_key,
    parse_collections_key,
    parse_index_key,
)

HEAD_BYTES = 64 << 10


@dataclass(frozen=True)
class TrialIdentity:
    """The digest of the first bytes of ``keys``, in order."""

    keys: tuple[str, ...]
    digest: str

    def to_json(self) -> dict[str, Any]:
        return {"keys": list(self.keys), "digest": self.digest}

    @classmethod
    def from_json(cls, document: object) -> TrialIdentity | None:
        """The identity a checkpoint saved; None for a checkpoint older than identities with
        keys (nothing to compare, as for one saved before identities)."""
        if not isinstance(document, Mapping):
            return None
        keys, digest = document.get("keys"), document.get("digest")
        if not isinstance(keys, list) or not all(
            isinstance(k, str) and is_safe_key(k) for k in keys
        ):
            raise ValueError(
                f"trial_identity.keys must be a list of keys inside the trial, found {keys!r}"
            )
        if not isinstance(digest, str):
            raise ValueError(f"trial_identity.digest must be a string, found {digest!r}")
        return cls(tuple(keys), digest)


def trial_identity(storage: TrialStorage) -> TrialIdentity | None:
    """The identity of the trial as it is now: its first collections file and first event file;
    None while either is not written yet (a trial that is starting). Two listings, two reads."""
    keys = _first_keys(storage)
    if keys is None:
        return None
    digest = _digest(storage, keys)
    return None if digest is None else TrialIdentity(keys, digest)


def same_trial(storage: TrialStorage, saved: TrialIdentity) -> bool | None:
    """Whether the trial is the one ``saved`` was made of: True or False, or None while that
    cannot be told (no trial there yet, or one that has not written its first step).

    A saved file that is gone from a trial that has begun means the trial was written again."""
    digest = _digest(storage, saved.keys)
    if digest is not None:
        return digest == saved.digest
    if not storage.exists() or _first_keys(storage) is None:
        return None
    return False


def _first_keys(storage: TrialStorage) -> tuple[str, ...] | None:
    collections = next(
        (key for key in storage.list_keys(COLLECTIONS_PREFIX) if parse_collections_key(key)),
        None,
    )
    first = next(
        (
            parsed
            for key in storage.list_keys(INDEX_PREFIX, None, 8)
            if (parsed := parse_index_key(key))
        ),
        None,
    )
    if collections is None or first is None:
        return None
    return (collections, event_key(*first))


def _digest(storage: TrialStorage, keys: Sequence[str]) -> str | None:
    """The digest of the keys' first bytes; None when one of them does not exist."""
    # Lazy: hashlib loads OpenSSL (a few ms), and a trial is hashed only for a checkpoint or a
    # shard's state.
    import hashlib  # noqa: PLC0415

    digest = hashlib.sha256()
    for key in keys:
        try:
            head = _head(storage, key)
        except FileNotFoundError:
            return None
        digest.update(key.encode())
        digest.update(b"\0")
        digest.update(head)
    return digest.hexdigest()[:32]


def _head(storage: TrialStorage, key: str) -> bytes:
    if isinstance(storage, RangeReadable):
        return storage.read_range(key, 0, HEAD_BYTES)[0]
    root = storage.local_path
    if root is not None:
        descriptor = os.open(os.path.join(root, key), os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        try:
            return os.read(descriptor, HEAD_BYTES)
        finally:
            os.close(descriptor)
    return storage.read_bytes(key)[:HEAD_BYTES]


class IdentityOf:
    """A reader's view of its trial's identity: computed once, and checked against a saved one.

    Failures that may pass (a storage unavailable now, a file being replaced) answer None, to be
    asked again later; a trial that cannot be read at all raises ``TrialError`` as anywhere."""

    def __init__(self, storage: TrialStorage) -> None:
        self._storage = storage
        self._identity: TrialIdentity | None = None

    def current(self) -> TrialIdentity | None:
        if self._identity is None:
            try:
                if self._storage.exists():
                    self._identity = trial_identity(self._storage)
            except (OSError, ValueError):
                return None
        return self._identity

    def same_as(self, saved: TrialIdentity) -> bool | None:
        try:
            return same_trial(self._storage, saved)
        except (OSError, ValueError):
            return None
