"""Where smdebug puts things inside a trial, as pure functions on storage keys.

Keys are relative to the trial root and always use ``/``, so the same helpers serve a local
folder and an S3 prefix. They mirror ``smdebug/core/locations.py`` and ``smdebug/core/utils.py``
of smdebug 1.0.34, which is what every framework hook writes with.

Worker names appear twice: as written into file names (the *file worker*, e.g. ``worker_0``,
``algo-1`` or ``_job-worker_replica-0_task-0_device-GPU-0``) and as smdebug reports them (the
*label*, e.g. ``/job:worker/replica:0/task:0/device:GPU:0``). TensorFlow device strings contain
``/`` and ``:``, which cannot go into a file name, so smdebug's TF hook replaces ``/`` with ``_``
and ``:`` with ``-``; the leading ``_`` that results is how its reader recognises such a name.
"""

from __future__ import annotations

import re

INDEX_PREFIX = "index/"
COLLECTIONS_PREFIX = "collections/000000000/"
END_MARKER = "training_job_end.ts"
STEPS_PER_INDEX_FOLDER = 1000
"""smdebug groups index files by ``step // 1000`` so no folder (or S3 listing page) grows."""

REDUCTIONS_PREFIX = "smdebug/reductions/"
"""Records named ``smdebug/reductions/<reduction>/<tensor>`` hold a reduction (min, max, norm
...) of a tensor, saved instead of or beside it; smdebug's reader lists them as reductions of
that tensor, never as tensors, and so does this reader."""

_INDEX_KEY = re.compile(r"index/(?P<folder>\d{9,})/(?P<step>\d{12,})_(?P<worker>[^/]+)\.json")
_COLLECTIONS_KEY = re.compile(r"collections/000000000/(?P<worker>[^/]+)_collections\.json")


def index_folder(step: int) -> str:
    """The folder (with trailing ``/``) holding the index files of ``step``."""
    return f"{INDEX_PREFIX}{step // STEPS_PER_INDEX_FOLDER:09d}/"


def index_key(step: int, file_worker: str) -> str:
    """The index file of one worker's part of one step."""
    return f"{index_folder(step)}{step:012d}_{file_worker}.json"


def event_key(step: int, file_worker: str) -> str:
    """Where smdebug writes the event file of (step, worker); index files name it explicitly."""
    return f"events/{step:012d}/{step:012d}_{file_worker}.tfevents"


def parse_index_key(key: str) -> tuple[int, str] | None:
    """``(step, file_worker)`` of an index key, or None for anything else.

    ``.tmp`` files (still being written), stray files and keys whose folder does not match their
    step give None: the caller ignores them. Requiring the exact round trip also keeps lexical
    key order equal to step order, which the reader's cursor relies on.
    """
    match = _INDEX_KEY.fullmatch(key)
    if match is None:
        return None
    step = int(match["step"])
    file_worker = match["worker"]
    if index_key(step, file_worker) != key:
        return None
    return step, file_worker


def index_folder_of(key: str) -> str | None:
    """The index folder (with trailing ``/``) a key lies in, or None outside ``index/``."""
    if not key.startswith(INDEX_PREFIX):
        return None
    rest = key[len(INDEX_PREFIX) :]
    slash = rest.find("/")
    if slash <= 0:
        return None
    return f"{INDEX_PREFIX}{rest[: slash + 1]}"


def parse_collections_key(key: str) -> str | None:
    """The file worker of a ``<worker>_collections.json`` key, or None for anything else."""
    match = _COLLECTIONS_KEY.fullmatch(key)
    return None if match is None else match["worker"]


def worker_label(file_worker: str) -> str:
    """The worker name smdebug reports for a file worker (undoes the TF device sanitising)."""
    if file_worker.startswith("_"):
        return file_worker.replace("_", "/").replace("-", ":")
    return file_worker


def is_safe_key(key: str) -> bool:
    """Whether a key from a file (an index's ``event_file_name``) stays inside the trial.

    Index files are data, not code: a key such as ``../../etc/passwd`` must not make the reader
    open files outside the trial.
    """
    if not key or key.startswith("/") or "\\" in key:
        return False
    return all(part not in {"", ".", ".."} for part in key.split("/"))
