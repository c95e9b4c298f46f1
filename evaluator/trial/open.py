"""Turn a ``--trial`` location and ``--reader`` choice into a :class:`TrialReader`."""

from __future__ import annotations

import importlib.util
import os
from typing import Any, Literal, get_args

from evaluator.trial.contract import TrialError, TrialStorage
from evaluator.trial.interface import TrialReader
from evaluator.trial.local import LocalStorage
from evaluator.trial.native import NativeTrialReader
from evaluator.trial.selection import EVERYTHING, PartSelection
from evaluator.trial.smdebug_backend import SmdebugTrialReader

Reader = Literal["native", "smdebug"]
READERS: tuple[str, ...] = get_args(Reader)
"""The trial readers: ``native`` (this package's), ``smdebug`` (smdebug's own API)."""

LOCAL_HELD_BYTES = 32 << 20
"""Event-file bytes a local reader keeps between ``poll`` and ``read``: with a bounded slice of
steps per poll, a replay of any length stays small in memory while each file is read once."""

S3_FETCH_THREADS = 8
"""Parallel GETs per poll on S3: a poll that finds many (step, worker) files would otherwise
pay their latencies one after another."""


def open_trial(
    location: str,
    *,
    reader: str = "native",
    verify_payload_crc: bool = False,
    s3_endpoint_url: str | None = None,
    s3_fetch_threads: int = S3_FETCH_THREADS,
    retry_seconds: float = 0.0,
    end_grace: float = 0.0,
    selection: PartSelection = EVERYTHING,
) -> TrialReader:
    """A reader for ``location``: a folder, or ``s3://bucket/prefix``. Nothing is read until
    ``poll``, so a missing bucket or bad credentials show there, as a ``TrialError``.

    The trial may not exist yet: a rule container often starts before the training job writes.
    The native reader loads each (step, worker) from its event file alone (one read or GET). On
    S3 it sees the end marker in the same listing as the index keys; ``s3_endpoint_url``
    (else ``AWS_ENDPOINT_URL``) points it at an S3-compatible endpoint. An event file that is
    missing or unreadable when its step is listed is tried again on later polls for at least
    ``retry_seconds`` (a file still being copied) before its part is left out. After the end
    marker, steps that lack a worker are waited for up to ``end_grace`` seconds from when the
    marker was written (every rank writes it when it closes, the first one included). Only the
    parts ``selection`` names are loaded (a step range, one shard of several).
    """
    if reader not in READERS:
        raise TrialError(f"Expected reader to be one of {', '.join(READERS)}, but got {reader!r}")
    if reader == "smdebug" and importlib.util.find_spec("smdebug") is None:
        raise TrialError(smdebug_missing())
    if reader == "smdebug" and selection.shard_count > 1:
        raise TrialError(
            f"Expected the native reader for a shard ({selection.describe()}), but got reader "
            f"'smdebug', which reads every worker of every step: set reader to native"
        )
    if location.startswith("s3://"):
        return _open_s3(
            location,
            reader,
            verify_payload_crc,
            s3_endpoint_url,
            s3_fetch_threads,
            retry_seconds,
            end_grace,
            selection,
        )
    if reader == "smdebug":
        return SmdebugTrialReader(location)
    return NativeTrialReader(
        LocalStorage(location),
        verify_payload_crc=verify_payload_crc,
        held_bytes_limit=LOCAL_HELD_BYTES,
        retry_seconds=retry_seconds,
        end_grace=end_grace,
        selection=selection,
    )


def smdebug_missing() -> str:
    """Why reader ``smdebug`` cannot run here, and where it can: smdebug is an optional extra,
    left out of the slim image (classimbalance-rule:VERSION) and in the -smdebug one."""
    # Lazy: importlib.metadata imports email, zipfile and more (~8 ms), for this message only.
    import importlib.metadata  # noqa: PLC0415

    try:
        version = importlib.metadata.version("classimbalance-rule")
    except importlib.metadata.PackageNotFoundError:
        version = "VERSION"
    return (
        "Expected the smdebug package for reader 'smdebug', but it is not installed here: the "
        f"image classimbalance-rule:{version} has the native reader only, the image "
        f"classimbalance-rule:{version}-smdebug has smdebug too (outside an image: pip install "
        "'classimbalance-rule[smdebug]'); or set reader to native"
    )


def _open_s3(  # noqa: PLR0917  (private, one caller)
    location: str,
    reader: str,
    verify_payload_crc: bool,
    endpoint_url: str | None,
    fetch_threads: int,
    retry_seconds: float,
    end_grace: float,
    selection: PartSelection,
) -> TrialReader:
    # Lazy: boto3 takes a while to import and local trials never need it.
    from evaluator.trial.s3 import S3Storage, parse_s3_uri  # noqa: PLC0415

    bucket, prefix = parse_s3_uri(location)
    threads = max(1, fetch_threads)
    storage = S3Storage(bucket, prefix, endpoint_url=endpoint_url, max_pool=max(threads, 10))
    if reader == "smdebug":
        if endpoint_url is not None:
            # smdebug builds its own boto3 client, which only looks at the environment.
            os.environ["AWS_ENDPOINT_URL_S3"] = endpoint_url
        return SmdebugTrialReader(location, storage)
    return s3_native_reader(
        storage,
        verify_payload_crc=verify_payload_crc,
        fetch_threads=threads,
        retry_seconds=retry_seconds,
        end_grace=end_grace,
        selection=selection,
    )


def s3_native_reader(
    storage: TrialStorage,
    *,
    verify_payload_crc: bool = False,
    fetch_threads: int = S3_FETCH_THREADS,
    **options: Any,
) -> NativeTrialReader:
    """The native reader as ``open_trial`` sets it up for S3, where every request is billed and
    slow: the end marker found in the index listing (no HEAD per poll), and parallel GETs.
    Tests and tools that build their own ``S3Storage`` use it to get the same."""
    return NativeTrialReader(
        storage,
        verify_payload_crc=verify_payload_crc,
        marker_in_listing=True,
        fetch_threads=fetch_threads,
        **options,
    )
