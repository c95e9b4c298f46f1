"""What a trial is, by its content: a checkpoint must resume the trial it was saved for.

A trial's path says where it is, not what it is: a trial deleted and written again at the same
path (a Kubernetes Job rerun over the same claim) is another trial, and counts of the old one
must not be merged into it. The first collections file names the collections and workers, and
the first event file holds the first step's tensors and the wall time smdebug stamps on every
record: together they differ between any two runs, however alike their settings.
"""

from __future__ import annotations

import hashlib

from evaluator.trial.contract import TrialStorage
from evaluator.trial.layout import (
    COLLECTIONS_PREFIX,
    INDEX_PREFIX,
    event_key,
    parse_collections_key,
    parse_index_key,
)


def trial_identity(storage: TrialStorage) -> str | None:
    """A digest of the first collections file and the first event file; None while either is
    not written yet (a trial that is starting). Costs two listings and two reads."""
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
    digest = hashlib.sha256()
    for key in (collections, event_key(*first)):
        digest.update(key.encode())
        digest.update(b"\0")
        digest.update(storage.read_bytes(key))
    return digest.hexdigest()[:32]
