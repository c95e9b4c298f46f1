"""Turn a ``--trial`` location and ``--reader`` choice into a :class:`TrialReader`."""

from __future__ import annotations

from evaluator.trial.interface import TrialError, TrialReader
from evaluator.trial.local import LocalStorage
from evaluator.trial.native import NativeTrialReader
from evaluator.trial.smdebug_backend import SmdebugTrialReader

READERS = ("native", "smdebug")


def open_trial(
    location: str, *, reader: str = "native", verify_payload_crc: bool = False
) -> TrialReader:
    """A reader for ``location`` (a folder; S3 comes later). Nothing is read until ``poll``.

    The trial may not exist yet: a rule container often starts before the training job writes.
    """
    if reader not in READERS:
        raise TrialError(f"Expected reader to be one of {', '.join(READERS)}, but got {reader!r}")
    if location.startswith("s3://"):
        raise TrialError(
            f"{location}: S3 trials are not supported in this version yet; copy the trial to a "
            "local folder (aws s3 sync) and pass that folder"
        )
    if reader == "smdebug":
        return SmdebugTrialReader(location)
    return NativeTrialReader(LocalStorage(location), verify_payload_crc=verify_payload_crc)
